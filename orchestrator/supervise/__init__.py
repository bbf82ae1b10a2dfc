"""Stage 6, supervise: keep a launched runtime healthy (state machine, state file, teardown)."""
