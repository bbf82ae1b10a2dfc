"""Shared fixtures for the family tests: one models directory per session with Kokoro-82M's int8
model assembled from its PyPI parts (so no test writes into the machine's own models directory)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def kokoro_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TAILOR_MODELS_DIR holding kokoro-82m/packaged/kokoro-v1.0.int8.onnx (assembled once)."""
    from runtime.families.kokoro import assemble

    directory = tmp_path_factory.mktemp("models")
    assemble.assemble(directory / "kokoro-82m" / "packaged")
    return directory
