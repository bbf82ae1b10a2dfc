"""Where model files go, and how much disk is free there.

``TAILOR_MODELS_DIR`` wins. Otherwise root (uid 0) uses ``/var/lib/tailor/models``, the
usual place for a system service's state; other users get ``$HOME/.cache/tailor/models``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

MODELS_DIR_VARIABLE = "TAILOR_MODELS_DIR"
SYSTEM_MODELS_DIR = "/var/lib/tailor/models"


def models_dir(environ: Mapping[str, str], *, is_root_user: bool) -> str:
    """The models directory as an absolute host path (not yet under any probe root)."""
    explicit = environ.get(MODELS_DIR_VARIABLE, "").strip()
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit)) if not explicit.startswith("/") else explicit
    if is_root_user:
        return SYSTEM_MODELS_DIR
    home = environ.get("HOME", "").strip() or os.path.expanduser("~")
    return str(Path(home) / ".cache" / "tailor" / "models")


def free_bytes(path: str) -> tuple[int | None, str | None]:
    """Free bytes (for unprivileged users) on the filesystem holding ``path`` or its nearest
    existing parent, and a note when it cannot be measured."""
    candidate = Path(path)
    while not candidate.exists() and candidate != candidate.parent:
        candidate = candidate.parent
    try:
        stats = os.statvfs(candidate)
    except OSError as exc:
        return None, f"Free disk space for the models directory {path} could not be measured at {candidate}: {exc.strerror or exc}."
    return stats.f_bavail * stats.f_frsize, None
