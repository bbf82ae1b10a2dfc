"""The wheelhouse archive the tailor role pushes to every host (air-gapped install).

Its wheels are gathered exactly as for the runtime image (``orchestrator.launch.image``): the
project's own wheel built from this source (or the installed wheel's version), plus the
runtime's dependency wheels copied from ``--wheelhouse DIR`` (offline) or downloaded for the
hosts' Python and architecture. The tar is byte-deterministic (sorted names, zero mtimes and
owners) so Ansible's ``copy`` sees an unchanged archive on the next run and pushes nothing.
"""

from __future__ import annotations

import hashlib
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from orchestrator import __version__
from orchestrator.errors import LaunchError


def build_archive(dest: Path, *, wheelhouse: Path | None, python_version: str = "3.11",
                  log: Callable[[str], None] = lambda _m: None) -> Path:
    """Write ``dest`` (a .tar of wheels) and return it; unchanged bytes when nothing changed."""
    from orchestrator.launch.image import FLAVORS, prepare_wheelhouse

    with tempfile.TemporaryDirectory(prefix="tailor-wheels-") as tmp:
        names = prepare_wheelhouse(Path(tmp), FLAVORS["cpu"], python_version=python_version,
                                   wheelhouse=wheelhouse, log=log)
        if not any(n.startswith("tailor_deploy-") for n in names):
            raise LaunchError("the wheelhouse has no tailor-deploy wheel", "pass --wheelhouse with it")
        write_deterministic_tar(Path(tmp), sorted(names), dest)
    log(f"wheelhouse archive {dest} ({len(names)} wheels, sha256 {digest(dest)[:12]})")
    return dest


def write_deterministic_tar(src: Path, names: list[str], dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    with tarfile.open(partial, "w", format=tarfile.GNU_FORMAT) as tar:
        for name in names:
            path = src / name
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode, info.uid, info.gid = path.stat().st_size, 0, 0o644, 0, 0
            with open(path, "rb") as fh:
                tar.addfile(info, fh)
    if dest.exists() and digest(dest) == digest(partial):
        partial.unlink()  # keep the old file (and its mtime) when the bytes are the same
        return
    partial.replace(dest)


def digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def project_version() -> str:
    return __version__

