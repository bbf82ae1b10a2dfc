"""The engine interface: phoneme ids in, float32 mono audio out.

Text handling (sentence splitting, phonemization, phoneme ids) happens before an engine is
called; an engine only runs the acoustic model + vocoder of one Piper/VITS voice. Engines are
created through :func:`runtime.engines.create_engine` and must be safe to call from one
worker thread at a time per instance (the scheduler owns concurrency).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

    from runtime.settings import Settings


class EngineError(RuntimeError):
    """An engine failed to load or to synthesize. The message says which voice and why."""


@dataclass(frozen=True)
class SynthesisItem:
    """One utterance (usually one sentence) to synthesize."""

    phoneme_ids: Sequence[int]
    length_scale: float = 1.0
    """>1 is slower speech; the API's ``speed`` maps to ``voice_length_scale / speed``."""
    noise_scale: float = 0.667
    noise_w: float = 0.8
    speaker_id: int | None = None


@dataclass(frozen=True)
class TimedAudio:
    """One utterance's audio and the model's own duration of every phoneme id it read."""

    audio: np.ndarray
    """Float32 mono samples, as ``Engine.synthesize`` returns them."""
    id_samples: np.ndarray
    """int64, one per phoneme id of the item (padding and punctuation ids included): samples of
    ``audio`` that id occupies, in order; they add up to ``len(audio)``."""


@dataclass(frozen=True)
class EngineOptions:
    """How an engine should run, straight from the plan's settings."""

    device: str = "cpu"
    precision: str = "fp32"
    intra_op_threads: int = 1
    inter_op_threads: int = 1
    ort_execution_mode: str = "sequential"
    ort_graph_optimization: str = "all"
    ort_memory_arena: bool = True
    cudnn_benchmark: bool = False
    torch_compile: bool = False
    shape_buckets: bool = False
    """Pad batches to bucket shapes (phoneme ids, frames, batch size: ``runtime.engines.shapes``)."""
    cuda_graphs: bool = False
    """Capture the flow and generator as one CUDA graph per (batch, frame) bucket at warm-up."""
    device_index: int = 0
    """Which visible CUDA device (``cuda:N``); the engine chain spreads workers over ``gpus`` of them."""
    gpus: int = 1
    """CUDA devices the workers are spread over (``TAILOR_GPUS``)."""
    fallback_device: str = "cpu"
    """Device of the fallback engines (``TAILOR_FALLBACK_DEVICE``)."""
    fallback_threads: int = 0
    """Intra-op threads of each fallback instance; 0: as ``intra_op_threads`` (``TAILOR_FALLBACK_THREADS``)."""
    allow_spinning: bool = False
    """Let idle intra-op threads spin instead of sleeping. Only for an instance that runs while
    nothing else does (the solo-wide instance): there it measured 12 % faster with 2 threads;
    next to other workers spinning threads steal their CPU."""

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineOptions:
        """Every option from the setting of the same name (``intra_op_threads`` from
        ``threads_per_worker``), except the per-instance ones, which keep their defaults."""
        return cls(**{
            f.name: getattr(settings, _SETTING_NAMES.get(f.name, f.name))
            for f in dataclasses.fields(cls) if f.name not in _PER_INSTANCE
        })

    def for_worker(self, worker: int) -> EngineOptions:
        """The options of worker ``worker``'s instance: on CUDA, device ``worker mod gpus``."""
        if self.device != "cuda" or self.gpus <= 1:
            return self
        return dataclasses.replace(self, device_index=worker % self.gpus)

    def for_fallback(self, device: str) -> EngineOptions:
        """A fallback engine's own options: fp32 (it must work when the primary's half precision
        or CUDA does not), its own thread count, no CUDA-only tuning."""
        return dataclasses.replace(
            self, device=device, precision="fp32", device_index=0, gpus=1,
            intra_op_threads=self.fallback_threads or self.intra_op_threads,
            cudnn_benchmark=False, torch_compile=False, shape_buckets=False, cuda_graphs=False,
            allow_spinning=False)


_SETTING_NAMES = {"intra_op_threads": "threads_per_worker"}
"""EngineOptions fields whose Settings field has another name."""
_PER_INSTANCE = frozenset({"device_index", "allow_spinning"})
"""EngineOptions fields that are no setting: the engine chain sets them per instance."""


class Engine(Protocol):
    name: str
    """``onnx``, ``torch``..."""
    device: str
    sample_rate: int

    def synthesize(self, item: SynthesisItem) -> np.ndarray:
        """Float32 mono samples in [-1, 1] at ``sample_rate``."""
        ...

    def synthesize_batch(self, items: Sequence[SynthesisItem]) -> list[np.ndarray]:
        """One array per item, each trimmed to its own exact length."""
        ...

    def close(self) -> None: ...


class TimedEngine(Engine, Protocol):
    """An engine that can also say where each phoneme id lies in its audio (the model's own
    durations): what word-level timestamps need. Optional; ``supports_durations`` says whether
    this instance can (e.g. an ONNX export without a duration tensor cannot)."""

    supports_durations: bool

    def synthesize_timed(self, item: SynthesisItem) -> TimedAudio: ...


class EngineFactory(Protocol):
    def __call__(self, model_path: Path, sample_rate: int, options: EngineOptions) -> Engine: ...
