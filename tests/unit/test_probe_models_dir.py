"""Models directory choice and its free space."""

from __future__ import annotations

import os
from pathlib import Path

from orchestrator.probe.models_dir import SYSTEM_MODELS_DIR, free_bytes, models_dir


def test_variable_wins() -> None:
    assert models_dir({"TAILOR_MODELS_DIR": "/srv/models", "HOME": "/home/a"}, is_root_user=True) == "/srv/models"


def test_relative_variable_is_made_absolute() -> None:
    assert models_dir({"TAILOR_MODELS_DIR": "models"}, is_root_user=False) == os.path.abspath("models")


def test_root_user_default() -> None:
    assert models_dir({"HOME": "/root"}, is_root_user=True) == SYSTEM_MODELS_DIR == "/var/lib/tailor/models"


def test_user_default_under_home_cache() -> None:
    assert models_dir({"HOME": "/home/ana"}, is_root_user=False) == "/home/ana/.cache/tailor/models"


def test_free_bytes_of_nearest_existing_parent(tmp_path: Path) -> None:
    missing = tmp_path / "not" / "yet" / "models"
    free, problem = free_bytes(str(missing))
    stats = os.statvfs(tmp_path)
    assert problem is None
    assert free is not None
    # the same filesystem as tmp_path; other writers may change it slightly between the two calls
    assert abs(free - stats.f_bavail * stats.f_frsize) < 256 * 2**20
