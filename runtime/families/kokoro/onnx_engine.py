"""Kokoro-82M run by onnxruntime: ``tokens`` int64 [1, n + 2] (the ids with a 0 at each end), ``style``
float32 [1, 256] (the voice's row for n), ``speed`` float32 [1]; out: float32 audio at 24 kHz.

One session per worker (with that worker's threads); the voices of a worker share it, since a voice is
only a style array. onnx-community's export names its inputs ``input_ids``/``style``/``speed``: both work.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from runtime.engines.base import EngineError, EngineOptions
from runtime.engines.ort import providers, session_options
from runtime.families.kokoro.voices import StyleVoice
from runtime.text.frontend import TextChunk

_LOG = logging.getLogger("tailor.runtime.kokoro")

MAX_TOKENS = 510
"""Ids per call the model was trained for (512 with the two pads)."""
SAMPLE_RATE = 24000
ARENA_SHRINK_EVERY = 16
"""As for Piper's engine: every 16th run hands the CPU arena's free regions back (RSS stays bounded)."""


class KokoroSession:
    """One onnxruntime session of the Kokoro model, shared by one worker's voices."""

    def __init__(self, model: bytes | str, precision: str, options: EngineOptions) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - onnxruntime is a runtime dependency
            raise EngineError(f"onnxruntime is not installed: {exc}") from exc
        self.precision = precision
        self.device = options.device
        try:
            self._session = ort.InferenceSession(
                model, sess_options=session_options(options),
                providers=providers(options.device, options.device_index))
        except EngineError:
            raise
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise EngineError(f"onnxruntime could not load the Kokoro-82M model: {exc}") from exc
        names = [i.name for i in self._session.get_inputs()]
        self._tokens = next((n for n in ("tokens", "input_ids") if n in names), "")
        if not self._tokens or not {"style", "speed"} <= set(names):
            raise EngineError(f"this ONNX file is not a Kokoro-82M model: inputs {names}, expected tokens "
                              "(or input_ids), style and speed")
        speed_type = next(i.type for i in self._session.get_inputs() if i.name == "speed")
        self._speed_dtype = np.int32 if "int" in speed_type else np.float32
        self._lock = threading.Lock()
        self._runs = 0
        self._plain = ort.RunOptions()
        self._shrink = ort.RunOptions()
        if options.ort_memory_arena and options.device == "cpu":
            self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self.refs = 0

    def run(self, ids: Sequence[int], style: np.ndarray, speed: float) -> np.ndarray:
        if len(ids) == 0:
            raise EngineError("cannot synthesize an empty token sequence")
        if len(ids) > MAX_TOKENS:
            raise EngineError(f"{len(ids)} tokens is more than Kokoro-82M takes per call ({MAX_TOKENS})")
        feeds: dict[str, Any] = {
            self._tokens: np.asarray([[0, *ids, 0]], dtype=np.int64),
            "style": np.asarray(style, dtype=np.float32).reshape(1, -1),
            "speed": np.asarray([speed], dtype=self._speed_dtype),
        }
        try:
            with self._lock:
                self._runs += 1
                shrink = self._runs % ARENA_SHRINK_EVERY == 0
                outputs = self._session.run(None, feeds, self._shrink if shrink else self._plain)
        except Exception as exc:
            raise EngineError(f"Kokoro onnx inference failed: {exc}") from exc
        return np.asarray(outputs[0], dtype=np.float32).reshape(-1)

    def close(self) -> None:
        self._session = None


class KokoroOnnxVoice:
    """One worker's instance for one voice: the worker's session and the voice's styles."""

    name = "onnx"
    sample_rate = SAMPLE_RATE

    def __init__(self, session: KokoroSession, voice: StyleVoice, release: Any) -> None:
        self._session = session
        self._voice = voice
        self._release = release
        self.device = session.device
        self.precision = session.precision

    def synthesize(self, chunks: Sequence[TextChunk], speeds: Sequence[float]) -> list[np.ndarray]:
        audio = []
        for chunk, speed in zip(chunks, speeds, strict=True):
            if not chunk.phoneme_ids:
                raise ValueError("text has no phonemes in this voice")
            ids = chunk.phoneme_ids[:MAX_TOKENS]
            audio.append(self._session.run(ids, self._voice.style_for(len(ids)), speed))
        return audio

    def close(self) -> None:
        if self._release is not None:
            self._release()
            self._release = None


__all__ = ["MAX_TOKENS", "SAMPLE_RATE", "KokoroOnnxVoice", "KokoroSession"]
