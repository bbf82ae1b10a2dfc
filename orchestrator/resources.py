"""Where the shipped templates and profiles live.

In a wheel they are packaged under ``orchestrator/_data``; in a source checkout (editable
install or tests) they are the top-level ``templates/`` and ``profiles/`` directories.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    packaged = _PACKAGE_DIR / "_data" / name
    if packaged.is_dir():
        return packaged
    return _PACKAGE_DIR.parent / name


def templates_dir() -> Path:
    """Directory holding the jinja2 templates (compose, env, k8s, systemd, Dockerfiles)."""
    return _data_dir("templates")


def profiles_dir() -> Path:
    """Directory holding the built-in profile YAML files."""
    return _data_dir("profiles")
