"""The ONNX engine: one Piper/VITS voice model run by onnxruntime.

Session options come from :class:`EngineOptions` (the plan's settings). onnxruntime is imported
here only, so the orchestrator never pays for it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from runtime.engines.base import EngineError, EngineOptions, SynthesisItem, TimedAudio
from runtime.engines.ort import ArenaShrinkingRuns, session_with_output
from runtime.engines.ort import providers as _providers
from runtime.engines.ort import session_options as _session_options

_LOG = logging.getLogger("tailor.runtime.onnx")


class OnnxEngine:
    """Runs one voice model with onnxruntime. One caller at a time per instance."""

    name = "onnx"

    def __init__(self, model_path: Path, sample_rate: int, options: EngineOptions) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - onnxruntime is a runtime dependency
            raise EngineError(f"onnxruntime is not installed: {exc}") from exc
        model_path = Path(model_path)
        if not model_path.is_file():
            raise EngineError(f"voice model {model_path} does not exist or is not a file")
        if options.precision != "fp32" and options.device != "cuda":
            raise EngineError(
                f"precision {options.precision} needs device=cuda; the onnx engine on CPU runs fp32"
            )
        if options.precision != "fp32":
            _LOG.warning(
                "precision %s requested: the onnx engine runs %s in the precision it was exported "
                "in (fp32); use the torch engine for fp16/bf16", options.precision, model_path.name,
            )
        self.sample_rate = int(sample_rate)
        self.device = options.device
        self._options = options
        self._model_path = model_path
        try:
            self._session = ort.InferenceSession(
                str(model_path), sess_options=_session_options(options), providers=_providers(options.device, options.device_index)
            )
        except EngineError:
            raise
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise EngineError(f"onnxruntime could not load {model_path.name}: {exc}") from exc
        self._runs = ArenaShrinkingRuns(shrink=options.ort_memory_arena)
        self._input_names = {i.name for i in self._session.get_inputs()}
        missing = {"input", "input_lengths", "scales"} - self._input_names
        if missing:
            raise EngineError(
                f"{model_path.name} is not a Piper voice model: missing inputs {sorted(missing)}"
            )
        _LOG.debug("loaded %s with providers %s", model_path.name, self._session.get_providers())

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers())

    def _feeds(self, item: SynthesisItem) -> dict[str, np.ndarray]:
        if len(item.phoneme_ids) == 0:
            raise EngineError("cannot synthesize an empty phoneme sequence")
        ids = np.asarray(item.phoneme_ids, dtype=np.int64)[np.newaxis, :]
        feeds: dict[str, np.ndarray] = {
            "input": ids,
            "input_lengths": np.array([ids.shape[1]], dtype=np.int64),
            "scales": np.array([item.noise_scale, item.length_scale, item.noise_w], dtype=np.float32),
        }
        if "sid" in self._input_names:
            feeds["sid"] = np.array([item.speaker_id or 0], dtype=np.int64)
        return feeds

    def synthesize(self, item: SynthesisItem) -> np.ndarray:
        feeds = self._feeds(item)
        try:
            outputs = self._runs.run(self._session, feeds)
        except Exception as exc:
            raise EngineError(f"onnx inference failed: {exc}") from exc
        audio = np.asarray(outputs[0], dtype=np.float32).reshape(-1)
        return audio

    supports_durations = True
    """Where the ``onnx`` package is installed and the export has its one duration (``Ceil``) tensor;
    :meth:`synthesize_timed` says otherwise when it is not."""

    def synthesize_timed(self, item: SynthesisItem) -> TimedAudio:
        """The audio and the model's own samples per phoneme id, from one run of a second session
        of the same file whose duration tensor (the ``Ceil`` of the duration predictor's output, in
        frames) is made a graph output. That session is built on first use and shared by every
        instance with the same options (``InferenceSession.run`` is thread-safe)."""
        feeds = self._feeds(item)
        session = _timed_session(self._model_path, self._options)
        try:
            audio_out, frames_out = session.run(None, feeds)[:2]
        except Exception as exc:
            raise EngineError(f"onnx inference failed: {exc}") from exc
        audio = np.asarray(audio_out, dtype=np.float32).reshape(-1)
        frames = np.rint(np.asarray(frames_out, dtype=np.float64).reshape(-1)[: len(item.phoneme_ids)]).astype(np.int64)
        total = int(frames.sum())
        hop = audio.size // total if total > 0 else 0
        if total <= 0 or hop * total != audio.size:
            raise EngineError(
                f"{self._model_path.name}: the duration tensor ({total} frames) does not divide the "
                f"audio ({audio.size} samples); word timestamps are not available for this voice")
        return TimedAudio(audio, frames * hop)

    def synthesize_batch(self, items: Sequence[SynthesisItem]) -> list[np.ndarray]:
        # The exported Piper graph shares one `scales` tensor per batch and returns no per-item
        # lengths, so exact trimming of a padded batch is impossible: run item by item.
        return [self.synthesize(item) for item in items]

    def close(self) -> None:
        self._session = None


def duration_tensor(model: Any) -> str:
    """The name of a Piper/VITS export's duration tensor: the output of its one ``Ceil`` node
    (``ceil(exp(logw) * mask * length_scale)``, frames per phoneme id)."""
    names = [out for node in model.graph.node if node.op_type == "Ceil" for out in node.output]
    if len(names) != 1:
        raise EngineError(f"expected one Ceil node (the durations) in the voice model, found {len(names)}; "
                          "word timestamps are not available for this voice")
    return str(names[0])


def _timed_session(model_path: Path, options: EngineOptions) -> Any:
    stat = model_path.stat()
    key = ("piper", str(model_path.resolve()), stat.st_size, stat.st_mtime_ns)
    session, _name = session_with_output(key, lambda: str(model_path), duration_tensor, options, model_path.name)
    return session
