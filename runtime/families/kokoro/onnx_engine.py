"""Kokoro-82M run by onnxruntime: ``tokens`` int64 [1, n + 2] (the ids with a 0 at each end), ``style``
float32 [1, 256] (the voice's row for n), ``speed`` float32 [1]; out: float32 audio at 24 kHz.

One session per worker (with that worker's threads); the voices of a worker share it, since a voice is
only a style array. onnx-community's export names its inputs ``input_ids``/``style``/``speed``: both work.

Word timestamps: the duration predictor's frames per token (``Round`` -> ``Clip`` (at least one frame)
-> ``Cast``, what the alignment's ``CumSum`` adds up) become an extra output of a second session of the
same model (:func:`runtime.engines.ort.session_with_output`: built on the first timed request, one per
process, not per worker). Measured on the packaged int8 model: the audio is exactly 600 samples per
frame (25 ms at 24 kHz), at every speed; the engine checks that the frames divide the audio on every
call rather than assume it. Not on the one session itself: loading a session from modified bytes
instead of the file costs ~80 MB more RSS per worker, and the timed session is only paid for by a
process that serves captioned speech.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from runtime.engines.base import EngineError, EngineOptions, TimedAudio
from runtime.engines.ort import ArenaShrinkingRuns, providers, session_options, session_with_output
from runtime.families.kokoro.phonemes import MAX_TOKENS, chunk_ids, model_ids
from runtime.families.kokoro.voices import StyleVoice
from runtime.text.frontend import TextChunk

_LOG = logging.getLogger("tailor.runtime.kokoro")

SAMPLE_RATE = 24000


class KokoroSession:
    """One onnxruntime session of the Kokoro model, shared by one worker's voices."""

    def __init__(self, model: bytes | str, precision: str, options: EngineOptions,
                 timed: tuple[tuple[object, ...], Callable[[], bytes | str]] | None = None) -> None:
        """``timed``: (the model's identity, how to read it again) for the timed session; None: no
        word timestamps from this session."""
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
        self._runs = ArenaShrinkingRuns(shrink=options.ort_memory_arena and options.device == "cpu")
        self.refs = 0
        self._timed = timed
        self._options = options

    @property
    def supports_durations(self) -> bool:
        return self._timed is not None

    def _feeds(self, ids: Sequence[int], style: np.ndarray, speed: float) -> dict[str, Any]:
        if len(ids) == 0:
            raise EngineError("cannot synthesize an empty token sequence")
        if len(ids) > MAX_TOKENS:
            raise EngineError(f"{len(ids)} tokens is more than Kokoro-82M takes per call ({MAX_TOKENS})")
        return {
            self._tokens: np.asarray([model_ids(ids)], dtype=np.int64),
            "style": np.asarray(style, dtype=np.float32).reshape(1, -1),
            "speed": np.asarray([speed], dtype=self._speed_dtype),
        }

    def run(self, ids: Sequence[int], style: np.ndarray, speed: float) -> np.ndarray:
        feeds = self._feeds(ids, style, speed)
        try:
            outputs = self._runs.run(self._session, feeds)
        except Exception as exc:
            raise EngineError(f"Kokoro onnx inference failed: {exc}") from exc
        return np.asarray(outputs[0], dtype=np.float32).reshape(-1)

    def run_timed(self, ids: Sequence[int], style: np.ndarray, speed: float) -> TimedAudio:
        """The audio and samples per token the model read (``model_ids(ids)``: the pads included)."""
        if self._timed is None:
            raise EngineError("this Kokoro-82M session reports no durations")
        feeds = self._feeds(ids, style, speed)
        key, model = self._timed
        session, _name = session_with_output(key, model, duration_tensor, self._options, "the Kokoro-82M model")
        try:
            outputs = session.run(None, feeds)
        except Exception as exc:
            raise EngineError(f"Kokoro onnx inference failed: {exc}") from exc
        audio = np.asarray(outputs[0], dtype=np.float32).reshape(-1)
        return timed_audio(audio, np.asarray(outputs[-1]), len(feeds[self._tokens][0]))

    def close(self) -> None:
        self._session = None


def timed_audio(audio: np.ndarray, frames: np.ndarray, tokens: int) -> TimedAudio:
    """Frames per token to samples per token, checked: one per token, and a whole number of samples per
    frame that adds up to exactly the audio (EngineError otherwise: no timestamps from a guess)."""
    counts = np.rint(np.asarray(frames, dtype=np.float64).reshape(-1)).astype(np.int64)
    total = int(counts.sum())
    hop = audio.size // total if total > 0 else 0
    if counts.size != tokens or total <= 0 or hop * total != audio.size or np.any(counts < 0):
        raise EngineError(f"Kokoro-82M's durations ({counts.size} tokens, {total} frames) do not match its "
                          f"{tokens} tokens and {audio.size} samples; word timestamps are not available")
    return TimedAudio(audio, counts * hop)


def duration_tensor(model: Any) -> str:
    """The name of Kokoro-82M's frames-per-token tensor: its one ``Round`` (the predicted durations
    divided by speed), then the ``Clip`` and ``Cast`` that follow it (at least one frame, int64)."""
    rounds = [node for node in model.graph.node if node.op_type == "Round"]
    if len(rounds) != 1:
        raise EngineError(f"expected one Round node (the durations) in the Kokoro-82M model, found {len(rounds)}; "
                          "word timestamps are not available with this model file")
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    name = str(rounds[0].output[0])
    for op in ("Clip", "Cast"):
        following = [node for node in consumers.get(name, []) if node.op_type == op]
        if len(following) == 1:
            name = str(following[0].output[0])
    return name


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
            ids = chunk_ids(chunk)
            audio.append(self._session.run(ids, self._voice.style_for(len(ids)), speed))
        return audio

    @property
    def supports_durations(self) -> bool:
        return self._session.supports_durations

    def synthesize_timed(self, chunk: TextChunk, speed: float) -> TimedAudio:
        """One chunk's audio and samples per token as the model read them (``phonemes.model_ids``)."""
        ids = chunk_ids(chunk)
        return self._session.run_timed(ids, self._voice.style_for(len(ids)), speed)

    def close(self) -> None:
        if self._release is not None:
            self._release()
            self._release = None


__all__ = ["MAX_TOKENS", "SAMPLE_RATE", "KokoroOnnxVoice", "KokoroSession", "duration_tensor", "timed_audio"]
