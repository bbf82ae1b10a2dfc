"""A stand-in streaming engine (text in, float32 blocks out) and loaders for the seam's tests.

``ToneEngine`` honours the shape XTTS-v2's and IndexTTS2's engines have (``voices()``,
``sample_rate_hz``, ``stream(text, voice, language, speed)``, ``close()``) with a stated rule: a
sentence lasts ``SECONDS_PER_CHAR`` per character, in three blocks, a sine at the voice's pitch. It
records how many calls overlap on one engine object, which must never exceed one when the family is
not concurrent-safe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np

from runtime.engines.base import EngineOptions
from runtime.families.base import FamilyContext
from runtime.families.spec import FamilySpec, MemoryModel
from runtime.families.streaming import StreamingFamily

SAMPLE_RATE = 16000
SECONDS_PER_CHAR = 0.02
PITCH = {"tone-high": 660.0, "tone-low": 220.0}
OPENED: list[ToneEngine] = []


class ToneEngine:
    sample_rate_hz = SAMPLE_RATE

    def __init__(self, options: EngineOptions) -> None:
        self.options = options
        self.closed = False
        self.active = 0
        self.most_active = 0
        self.calls: list[tuple[str, str, str | None, float]] = []
        self._lock = threading.Lock()
        OPENED.append(self)

    def voices(self) -> list[str]:
        return sorted(PITCH)

    def stream(self, text: str, voice: str, language: str | None = None, speed: float = 1.0) -> Iterator[np.ndarray]:
        with self._lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            self.calls.append((text, voice, language, speed))
        try:
            total = round(len(text) * SECONDS_PER_CHAR * SAMPLE_RATE / speed)
            t = np.arange(total, dtype=np.float32) / SAMPLE_RATE
            wave = (0.5 * np.sin(2 * np.pi * PITCH[voice] * t)).astype(np.float32)
            for block in np.array_split(wave, 3):
                time.sleep(0.01)
                yield block
        finally:
            with self._lock:
                self.active -= 1

    def close(self) -> None:
        self.closed = True


def spec(name: str = "tone", loader: str = "tests.families.fake_engine:load") -> FamilySpec:
    return FamilySpec(
        name=name, description="test tones", devices={"cpu": ("fp32",)}, engines={"cpu": ("tone",)},
        streaming="token-chunk",
        batches=False, concurrent_safe=False, components=(), licence="test", commercial_use=True,
        install="nothing (a test stand-in)", loader=loader, weights="none", sample_rate_hz=SAMPLE_RATE,
        memory=MemoryModel(overhead_ram_bytes={"tone": 0}))


def load(family_spec: FamilySpec, context: FamilyContext) -> StreamingFamily:
    return StreamingFamily(family_spec, context, ToneEngine, engine_name="tone", shared=False, chunk_chars=80,
                           first_chunk_chars=40, default_voice="tone-high")


def load_broken(family_spec: FamilySpec, context: FamilyContext) -> StreamingFamily:
    raise RuntimeError("weights are corrupt")


def load_not_a_family(family_spec: FamilySpec, context: FamilyContext) -> object:
    return object()


def load_engine_fails(family_spec: FamilySpec, context: FamilyContext) -> StreamingFamily:
    def refuse(options: EngineOptions) -> ToneEngine:
        raise OSError("no such checkpoint: /models/tone/model.pth")

    return StreamingFamily(family_spec, context, refuse, engine_name="tone", shared=False)
