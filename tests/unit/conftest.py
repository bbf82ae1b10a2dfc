"""Unit-tier fixtures shared by the command-line tests."""

from __future__ import annotations

import pytest

from orchestrator.plan.user_config import PASS_THROUGH
from runtime.settings import VARIABLES


@pytest.fixture
def clean_runtime_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No runtime variable from the developer's shell leaks into a plan (they rank above config)."""
    for name in [v.name for v in VARIABLES] + list(PASS_THROUGH):
        monkeypatch.delenv(name, raising=False)
