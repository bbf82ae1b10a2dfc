"""Writing files so that a reader never sees half of one: the one atomic writer.

Every file Tailor writes for a later reader (plan.json, facts.json, state.json, rendered
configs) goes through :func:`write_text_atomic`: a temporary file in the same directory,
flushed and fsynced, then ``os.replace``d over the target, then the directory fsynced, so
after a crash the path holds either the old or the new content, never a mix.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_text_atomic(path: Path, text: str, *, mode: int = 0o644) -> Path:
    """Replace ``path`` with ``text`` atomically and durably; the file gets ``mode``."""
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_directory(directory)
    return path


def write_json_atomic(path: Path, data: Any, *, mode: int = 0o644) -> Path:
    """``data`` as indented, key-sorted JSON (a stable diff between runs), written atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode=mode)


def _fsync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry is; some filesystems refuse O_RDONLY
    # fsync on directories, which costs durability there but never correctness.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
