"""Benchmarks of the runtime and the orchestrator (a regular package: a dependency of coqui-tts,
pysbd, installs a top-level ``benchmarks`` package that would otherwise shadow this folder)."""
