"""What a model family declares: devices and precisions, streaming and batching, components,
licence, how it is installed and loaded, and a memory model the planner calls.

This module is pure data and arithmetic: no numpy, torch or onnxruntime, so the orchestrator can
import it to plan for a (model, machine) pair on a machine that has none of them. Each family's
declaration lives in :mod:`runtime.families.catalog`; its loader (which does import the heavy
libraries) is named by an import path and resolved only in the runtime.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Device = Literal["cpu", "cuda"]
Precision = Literal["fp32", "fp16", "bf16", "int8"]
Streaming = Literal["sentence", "token-chunk"]

BYTES_PER_PARAM: Mapping[str, float] = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "int8": 1.0}


@dataclass(frozen=True)
class Component:
    """One part of a model (a GPT, a vocoder, a speaker encoder...)."""

    name: str
    params: int
    """Parameter count."""
    optional: bool = False
    """The model works without it (a reduction may drop it, e.g. IndexTTS2's emotion model)."""
    offloadable: bool = False
    """It may run on the CPU while the rest runs on the GPU (a reduction may move it)."""
    full_precision_only: bool = False
    """It stays fp32 whatever precision the family runs in (IndexTTS2's s2mel and BigVGAN)."""


@dataclass(frozen=True)
class MemoryModel:
    """Filled in per family; see ``FamilySpec.memory`` and the planner's use of it."""

    runtime_overhead_ram_bytes: int
    """Python, the serving stack and the family's libraries, before any weights."""
    load_peak_factor: float = 2.0
    """Peak RAM while loading, as a multiple of the weights' RAM size (a checkpoint read into
    memory, then copied into the model); 1.0 when loaded with mmap."""
    cuda_context_bytes: int = 500 * 1024**2
    per_stream_ram_bytes: int = 0
    """Per concurrent request: caches (KV cache, conditioning) and buffers, in host RAM."""
    per_stream_vram_bytes: int = 0
    """Per concurrent request on CUDA (KV cache, conditioning latents)."""
    activation_per_item_bytes: Mapping[str, int] = field(default_factory=dict)
    """Working memory per batch item, by device (``cpu`` in RAM, ``cuda`` in VRAM), at fp32."""


@dataclass(frozen=True)
class FamilySpec:
    name: str
    """The name used by ``--model``, ``model:``, ``TAILOR_MODEL`` and the OpenAI ``model`` field."""
    description: str
    devices: Mapping[str, tuple[str, ...]]
    """Precisions allowed on each device, preferred first."""
    streaming: Streaming
    batches: bool
    concurrent_safe: bool
    """One loaded instance may serve several requests at once."""
    components: tuple[Component, ...]
    licence: str
    commercial_use: bool
    install: str
    """The pip extra (``tailor-deploy[kokoro]``) or the image that brings the family's libraries."""
    loader: str
    """``module:function`` building the family's runtime from a local model directory."""
    weights: str
    """Where the weights are looked for, in words (shown by ``deploy models``)."""
    memory: MemoryModel
    sample_rate_hz: int
    separate_process: bool = False
    """It runs as its own engine process or container (pins that differ from Tailor's)."""

    @property
    def params(self) -> int:
        return sum(c.params for c in self.components)
