from orchestrator.cli.app import run

run()
