"""Serving: the speech service, admission, the batching scheduler, engine chains, the audio
cache, memory watchdogs and metrics."""
