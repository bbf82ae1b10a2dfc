"""Where families find and put model files.

``TAILOR_MODELS_DIR`` wins; otherwise root uses ``/var/lib/tailor/models`` and other users
``$HOME/.cache/tailor/models`` (the rule the orchestrator's probe reports as the models directory).
A family's own files live in a folder named after it (``kokoro-82m/``). Models prepared when an
image was built live under ``<prefix>/share/tailor/models`` of the runtime's Python environment and
are found there too (read-only).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

SYSTEM_MODELS_DIR = Path("/var/lib/tailor/models")


def models_dir(setting: str, environ: Mapping[str, str]) -> Path:
    """The writable models directory: ``setting`` (TAILOR_MODELS_DIR) or the default for this user."""
    if setting.strip():
        return Path(setting.strip()).expanduser()
    if os.geteuid() == 0:
        return SYSTEM_MODELS_DIR
    home = environ.get("HOME", "").strip() or os.path.expanduser("~")
    return Path(home) / ".cache" / "tailor" / "models"


def image_models_dir() -> Path:
    """Models prepared into the Python environment when an image was built (read-only)."""
    return Path(sys.prefix) / "share" / "tailor" / "models"


def family_dirs(family: str, setting: str, environ: Mapping[str, str]) -> list[Path]:
    """Folders holding ``family``'s files, the writable one first."""
    return [models_dir(setting, environ) / family, image_models_dir() / family]


__all__ = ["SYSTEM_MODELS_DIR", "family_dirs", "image_models_dir", "models_dir"]
