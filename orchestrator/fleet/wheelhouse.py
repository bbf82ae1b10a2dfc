"""The wheelhouse archive the tailor role pushes to every host (air-gapped install).

Its wheels are gathered exactly as for the runtime image (``orchestrator.launch.image``): the
project's own wheel built from this source (or the installed wheel's version), plus the
runtime's dependency wheels copied from ``--wheelhouse DIR`` (offline) or downloaded for the
hosts' Python and architecture. The tar is byte-deterministic (sorted names, zero mtimes and
owners) so Ansible's ``copy`` sees an unchanged archive on the next run and pushes nothing.

Building the project's wheel takes about a minute on a small controller, so the archive is kept
with a key beside it (``wheelhouse.tar.key``): a hash of the package's sources (every file that
goes into the wheel), the --wheelhouse directory's wheels (names, sizes, times), the hosts'
Python and the dependency requirements. An unchanged key reuses the archive as it is; a changed
source file, wheel or option builds it again.
"""

from __future__ import annotations

import hashlib
import json
import platform
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from orchestrator import __version__
from orchestrator.errors import LaunchError

KEY_SUFFIX = ".key"
SOURCE_PARTS = ("orchestrator", "runtime", "templates", "profiles", "fleet", "pyproject.toml", "README.md", "LICENSE")
"""What the project's wheel is built from (pyproject.toml: packages, force-include, readme, licence)."""
_KEY_FORMAT = 1


def build_archive(dest: Path, *, wheelhouse: Path | None, python_version: str = "3.11",
                  log: Callable[[str], None] = lambda _m: None) -> Path:
    """Write ``dest`` (a .tar of wheels) and return it; unchanged bytes when nothing changed, and
    no build at all when the key of its inputs is the one recorded beside it."""
    from orchestrator.launch.image import FLAVORS, prepare_wheelhouse

    key = archive_key(wheelhouse=wheelhouse, python_version=python_version)
    if cached(dest, key):
        log(f"wheelhouse archive {dest} is up to date (inputs {key[:12]} unchanged): not rebuilt")
        return dest
    with tempfile.TemporaryDirectory(prefix="tailor-wheels-") as tmp:
        names = prepare_wheelhouse(Path(tmp), FLAVORS["cpu"], python_version=python_version,
                                   wheelhouse=wheelhouse, log=log)
        if not any(n.startswith("tailor_deploy-") for n in names):
            raise LaunchError("the wheelhouse has no tailor-deploy wheel", "pass --wheelhouse with it")
        write_deterministic_tar(Path(tmp), sorted(names), dest)
    sha = digest(dest)
    _write_key(dest, key, sha)
    log(f"wheelhouse archive {dest} ({len(names)} wheels, sha256 {sha[:12]})")
    return dest


def archive_key(*, wheelhouse: Path | None, python_version: str) -> str:
    """A hash of everything the archive is made from (see the module docstring)."""
    from orchestrator.launch.image import FLAVORS, dependency_requirements, project_root

    h = hashlib.sha256()
    h.update(json.dumps({"format": _KEY_FORMAT, "version": __version__, "python": python_version,
                         "machine": platform.machine()}, sort_keys=True).encode())
    root = project_root()
    if root is not None:
        h.update(b"sources\0" + source_digest(root).encode())
    if wheelhouse is not None:
        for wheel in sorted(wheelhouse.glob("*.whl")) if wheelhouse.is_dir() else ():
            st = wheel.stat()
            h.update(f"wheel\0{wheel.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    else:
        h.update(("requirements\0" + "\n".join(dependency_requirements(FLAVORS["cpu"].extras))).encode())
    return h.hexdigest()


def source_digest(root: Path) -> str:
    """A hash of every file the project's wheel is built from (names and contents)."""
    h = hashlib.sha256()
    for path in _source_files(root):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        with open(path, "rb") as fh:
            h.update(hashlib.sha256(fh.read()).digest())
    return h.hexdigest()


def _source_files(root: Path) -> Iterator[Path]:
    for part in SOURCE_PARTS:
        top = root / part
        if top.is_file():
            yield top
            continue
        if not top.is_dir():
            continue
        for path in sorted(top.rglob("*")):
            rel = path.relative_to(root).parts
            if any(p.startswith(".") or p == "__pycache__" for p in rel) or path.suffix in (".pyc", ".pyo"):
                continue
            if path.is_file():
                yield path


def cached(dest: Path, key: str) -> bool:
    """Whether ``dest`` was built from inputs with this key and is intact."""
    path = dest.with_name(dest.name + KEY_SUFFIX)
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(recorded, dict) or recorded.get("key") != key or not dest.is_file():
        return False
    return bool(recorded.get("sha256") == digest(dest))


def _write_key(dest: Path, key: str, sha: str) -> None:
    path = dest.with_name(dest.name + KEY_SUFFIX)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps({"key": key, "sha256": sha}, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


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

