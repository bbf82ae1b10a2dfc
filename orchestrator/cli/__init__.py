"""The `deploy` command line: thin typer commands over the pure services."""
