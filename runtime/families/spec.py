"""What a model family declares: devices and precisions, streaming and batching, components,
licence, how it is installed and loaded, and a memory model the planner calls.

This module is pure data and arithmetic: no numpy, torch or onnxruntime, so the orchestrator can
import it to plan for a (model, machine) pair on a machine that has none of them. Each family's
declaration lives in :mod:`runtime.families.catalog`; its loader (which does import the heavy
libraries) is named by an import path and resolved only in the runtime.

The memory model, in one place (every figure per family is in the catalog, with its source):

* **weights**: each component at its precision (``params x bytes per parameter``, or the real
  file size where one is known); a ``full_precision_only`` component stays fp32; a component
  offloaded from the GPU runs on the CPU in fp32; a dropped optional component costs nothing.
* **RAM after loading**: the serving process's overhead (interpreter, server, libraries; plus
  the CUDA host libraries when the GPU is used), then per instance (worker): the weights that
  live on the CPU (times the engine's instance factor: an onnxruntime session holds more than
  its file), the engine process of a family that runs in its own process, and the *load
  residue*: ``load_retained_fraction`` of the bytes read while loading, freed but kept by the
  allocator. A GPU family that keeps a host copy of its weights (Piper) adds it once.
* **load peak**: loading reads the largest checkpoint into RAM on top of what is already held:
  ``(load_peak_factor - load_retained_fraction) x`` its bytes above the after-loading figure.
  With mmap the checkpoint is read through the page cache (reclaimable), so the peak is the
  after-loading figure.
* **per request in flight**: host RAM (text, audio buffers, conditioning; on the CPU also the
  activations), and on CUDA the per-stream caches plus activations per batch item, halved in
  fp16/bf16.
* **VRAM**: a CUDA context per process, the GPU-placed weights per instance, then the per-item
  figure times the items in flight.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

Device = Literal["cpu", "cuda"]
Precision = Literal["fp32", "fp16", "bf16", "int8"]
Engine = Literal["onnx", "torch"]
Streaming = Literal["sentence", "token-chunk"]

MIB = 1024**2
GIB = 1024**3

BYTES_PER_PARAM: Mapping[str, float] = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "int8": 1.0}
HALF_PRECISIONS = frozenset({"fp16", "bf16"})
OFFLOAD_PRECISION = "fp32"
"""A component offloaded from the GPU runs on the CPU in fp32 (half precision on a CPU is slow
or unsupported for most operators)."""


@dataclass(frozen=True)
class Component:
    """One part of a model (a GPT, a vocoder, a speaker encoder...)."""

    name: str
    params: int
    """Parameter count."""
    role: str = ""
    """What it does, in a few words (shown by ``deploy models``)."""
    optional: bool = False
    """The model works without it (a reduction may drop it, e.g. IndexTTS2's emotion model)."""
    offloadable: bool = False
    """It may run on the CPU while the rest runs on the GPU (a reduction may move it)."""
    full_precision_only: bool = False
    """It stays fp32 whatever precision the family runs in (IndexTTS2's s2mel and BigVGAN)."""
    file_bytes: Mapping[str, int] = field(default_factory=dict)
    """Real size of its weights by precision where known; it replaces ``params x bytes per
    parameter`` (an int8 ONNX file keeps some tensors in fp32). A half precision missing here
    is derived from the fp32 size."""
    checkpoint_bytes: int | None = None
    """Bytes read from disk when the precision has no file of its own (default: the fp32 size;
    IndexTTS2's emotion model is stored in bf16)."""

    def precision_at(self, precision: str) -> str:
        """The precision this component runs in when the family runs in ``precision``."""
        return "fp32" if self.full_precision_only else precision

    def weight_bytes(self, precision: str) -> int:
        """Bytes of its weights in memory when the family runs in ``precision``."""
        own = self.precision_at(precision)
        if own in self.file_bytes:
            return self.file_bytes[own]
        if "fp32" in self.file_bytes:
            return int(self.file_bytes["fp32"] * BYTES_PER_PARAM[own] / BYTES_PER_PARAM["fp32"])
        return int(self.params * BYTES_PER_PARAM[own])

    def load_bytes(self, precision: str) -> int:
        """Bytes read into RAM to load it: its own file at ``precision`` if there is one, else
        the checkpoint (converted after loading)."""
        own = self.precision_at(precision)
        if own in self.file_bytes:
            return self.file_bytes[own]
        return self.checkpoint_bytes if self.checkpoint_bytes is not None else self.weight_bytes("fp32")


@dataclass(frozen=True)
class MemoryModel:
    """A family's memory figures; :meth:`FamilySpec.footprint` combines them (see the module doc)."""

    overhead_ram_bytes: Mapping[str, int]
    """The serving process before any weights, by engine: Python, the server, the libraries."""
    overhead_detail: Mapping[str, str] = field(default_factory=dict)
    """What the overhead holds, by engine (the budget's detail column)."""
    cuda_context_bytes: int = 500 * MIB
    """VRAM of one process's CUDA context (kernels and library workspaces)."""
    cuda_host_ram_bytes: int = 0
    """Host RAM the CUDA libraries add to a process that uses the GPU."""
    engine_process_ram_bytes: int = 0
    """A family in its own engine process: that process's interpreter and libraries, per instance."""
    instance_ram_factor: Mapping[str, float] = field(default_factory=dict)
    """RSS of one instance on the CPU as a multiple of its weights, by engine (1.0 if absent)."""
    cpu_instance_ram_bytes: int | None = None
    """Measured RSS of one CPU instance; replaces weights x factor (Piper's onnx session)."""
    gpu_host_copy_bytes: int = 0
    """Host copy of the weights a GPU process keeps (once per process)."""
    load_peak_factor: float = 1.0
    """RAM held while loading the largest checkpoint, as a multiple of its bytes (the file read
    into memory, plus a copy when the module is built on the CPU before it moves)."""
    load_retained_fraction: Mapping[str, float] = field(default_factory=dict)
    """Share of the bytes read while loading that stays resident afterwards (freed, but kept by
    the allocator), by engine (0 if absent: an onnxruntime session's measured RSS includes it)."""
    mmap_supported: bool = False
    """The loader can map its checkpoints instead of reading them (a reduction: lower load peak)."""
    per_stream_ram_bytes: Mapping[str, int] = field(default_factory=dict)
    """Host RAM per request in flight, by device: text, audio buffers, conditioning."""
    per_stream_vram_bytes: int = 0
    """VRAM per request in flight on CUDA: KV cache, conditioning latents."""
    activation_per_item_bytes: Mapping[str, int] = field(default_factory=dict)
    """Working memory per batch item at fp32, by device (``cpu`` in RAM, ``cuda`` in VRAM);
    halved on CUDA in fp16/bf16."""


@dataclass(frozen=True)
class Placement:
    """Where and how a family is loaded: what the planner decides and the loader is told."""

    engine: str
    device: str
    precision: str
    dropped: frozenset[str] = frozenset()
    """Optional components left out."""
    offloaded: frozenset[str] = frozenset()
    """Components run on the CPU while the rest runs on the GPU."""
    mmap: bool = False
    """Checkpoints mapped rather than read (lower load peak)."""

    def describe(self) -> str:
        parts = [f"{self.engine} on {self.device}, {self.precision}"]
        if self.dropped:
            parts.append("without " + ", ".join(sorted(self.dropped)))
        if self.offloaded:
            parts.append(", ".join(sorted(self.offloaded)) + " on the CPU")
        if self.mmap:
            parts.append("mmap")
        return "; ".join(parts)


@dataclass(frozen=True)
class WeightLine:
    """One component's weights in a footprint."""

    component: str
    device: str
    precision: str
    bytes: int


@dataclass(frozen=True)
class Footprint:
    """Memory of one family in one placement, as the planner's budget consumes it.

    RAM rows are per process (overhead, shared host copy), per worker (instance) and per
    request in flight; VRAM rows per process (context), per worker (weights) and per item.
    """

    overhead_ram_bytes: int
    weights_ram_per_worker_bytes: int
    """Per instance: CPU-placed weights, load residue, and a separate engine process."""
    weights_ram_shared_bytes: int
    """Once per process: the host copy a GPU family keeps."""
    per_request_ram_bytes: int
    cuda_context_bytes: int
    weights_vram_per_worker_bytes: int
    per_item_vram_bytes: int
    load_transient_ram_bytes: int = 0
    """RAM above the after-loading figure while the largest checkpoint is being loaded."""
    context_per_worker: bool = False
    """Each instance is its own process with its own CUDA context (a separate-process family)."""
    engine: str = "onnx"
    overhead_detail: str = ""
    weights: tuple[WeightLine, ...] = ()
    """Itemised weights (component, device, precision, bytes)."""

    def ram_after_load(self, workers: int = 1) -> int:
        return self.overhead_ram_bytes + self.weights_ram_shared_bytes + self.weights_ram_per_worker_bytes * workers

    def ram_load_peak(self, workers: int = 1) -> int:
        """Instances load one after another: one load transient on top of everything loaded."""
        return self.ram_after_load(workers) + self.load_transient_ram_bytes

    def ram_serving(self, workers: int = 1, streams: int = 1) -> int:
        return self.ram_after_load(workers) + self.per_request_ram_bytes * streams

    def vram_after_load(self, workers: int = 1) -> int:
        if not self.weights_vram_per_worker_bytes and not self.cuda_context_bytes:
            return 0
        contexts = workers if self.context_per_worker else 1
        return self.cuda_context_bytes * contexts + self.weights_vram_per_worker_bytes * workers

    def vram_peak(self, workers: int = 1, items: int = 1) -> int:
        after = self.vram_after_load(workers)
        return after + self.per_item_vram_bytes * items if after else 0


@dataclass(frozen=True)
class Estimate:
    """A family's memory in one placement with ``workers`` instances and ``streams`` requests in
    flight: the figures ``deploy models`` shows and the unit tests hold to the field reports."""

    placement: Placement
    weights_bytes: int
    """All kept components at their precision, wherever they run."""
    ram_after_load_bytes: int
    ram_load_peak_bytes: int
    ram_serving_bytes: int
    """After loading, plus the requests in flight (the RSS once the first sentence is done)."""
    vram_after_load_bytes: int
    vram_peak_bytes: int


class PlacementError(ValueError):
    """A placement the family cannot take (unknown component, a device it has no precision on...)."""


@dataclass(frozen=True)
class FamilySpec:
    name: str
    """The name used by ``--model``, ``model:``, ``TAILOR_MODEL`` and the OpenAI ``model`` field."""
    description: str
    devices: Mapping[str, tuple[str, ...]]
    """Precisions allowed on each device, preferred first."""
    engines: Mapping[str, tuple[str, ...]]
    """Engines (``onnx``, ``torch``) allowed on each device, preferred first."""
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
    sources: tuple[str, ...] = ()
    """Where the memory figures come from (measurements, field reports), for ``deploy models``."""

    @property
    def params(self) -> int:
        return sum(c.params for c in self.components)

    def component(self, name: str) -> Component:
        for c in self.components:
            if c.name == name:
                return c
        raise PlacementError(f"{self.name} has no component {name!r}; it has: "
                             + ", ".join(c.name for c in self.components))

    @property
    def optional_components(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.components if c.optional)

    @property
    def offloadable_components(self) -> tuple[str, ...]:
        """In the order a planner moves them to the CPU (their pipeline order)."""
        return tuple(c.name for c in self.components if c.offloadable)

    def check(self, placement: Placement) -> None:
        """Raise :class:`PlacementError` for a placement this family cannot take."""
        if placement.device not in self.devices:
            raise PlacementError(f"{self.name} does not run on {placement.device} (it runs on "
                                 + " or ".join(self.devices) + ")")
        if placement.precision not in self.devices[placement.device]:
            raise PlacementError(f"{self.name} has no {placement.precision} on {placement.device} (it has "
                                 + ", ".join(self.devices[placement.device]) + ")")
        if placement.engine not in self.engines[placement.device]:
            raise PlacementError(f"{self.name} does not run with the {placement.engine} engine on "
                                 f"{placement.device} (it uses " + " or ".join(self.engines[placement.device]) + ")")
        for name in placement.dropped:
            if not self.component(name).optional:
                raise PlacementError(f"{self.name}: component {name} cannot be dropped (optional: "
                                     + (", ".join(self.optional_components) or "none") + ")")
        for name in placement.offloaded:
            if not self.component(name).offloadable:
                raise PlacementError(f"{self.name}: component {name} cannot run on the CPU beside the GPU "
                                     "(offloadable: " + (", ".join(self.offloadable_components) or "none") + ")")
        if placement.offloaded and placement.device != "cuda":
            raise PlacementError(f"{self.name}: offloading to the CPU only applies on cuda")
        if placement.mmap and not self.memory.mmap_supported:
            raise PlacementError(f"{self.name}'s loader cannot map its weights (mmap)")

    def footprint(self, placement: Placement) -> Footprint:
        """The memory of this family in ``placement`` (see the module doc for the model)."""
        self.check(placement)
        m = self.memory
        on_gpu = placement.device == "cuda"
        kept = [c for c in self.components if c.name not in placement.dropped]
        lines: list[WeightLine] = []
        for c in kept:
            if on_gpu and c.name not in placement.offloaded:
                lines.append(WeightLine(c.name, "cuda", c.precision_at(placement.precision),
                                        c.weight_bytes(placement.precision)))
            else:
                precision = placement.precision if not on_gpu else OFFLOAD_PRECISION
                lines.append(WeightLine(c.name, "cpu", c.precision_at(precision), c.weight_bytes(precision)))
        cpu_weights = sum(w.bytes for w in lines if w.device == "cpu")
        gpu_weights = sum(w.bytes for w in lines if w.device == "cuda")
        if not on_gpu and m.cpu_instance_ram_bytes is not None:
            instance = m.cpu_instance_ram_bytes
        else:
            instance = int(cpu_weights * m.instance_ram_factor.get(placement.engine, 1.0))
        loads = [c.load_bytes(placement.precision if not on_gpu or c.name not in placement.offloaded
                              else OFFLOAD_PRECISION) for c in kept]
        retained = m.load_retained_fraction.get(placement.engine, 0.0)
        residue = int(retained * sum(loads))
        process = 0
        if self.separate_process:
            process = m.engine_process_ram_bytes + (m.cuda_host_ram_bytes if on_gpu else 0)
        overhead = m.overhead_ram_bytes[placement.engine]
        if on_gpu and not self.separate_process:
            overhead += m.cuda_host_ram_bytes
        transient = 0
        if not placement.mmap and loads:
            transient = max(0, int((m.load_peak_factor - retained) * max(loads)))
        half = placement.precision in HALF_PRECISIONS
        activation = m.activation_per_item_bytes.get(placement.device, 0)
        per_request = m.per_stream_ram_bytes.get(placement.device, 0) + (0 if on_gpu else activation)
        return Footprint(
            overhead_ram_bytes=overhead,
            weights_ram_per_worker_bytes=instance + residue + process,
            weights_ram_shared_bytes=m.gpu_host_copy_bytes if on_gpu and gpu_weights else 0,
            per_request_ram_bytes=per_request,
            cuda_context_bytes=m.cuda_context_bytes if on_gpu else 0,
            weights_vram_per_worker_bytes=gpu_weights,
            per_item_vram_bytes=(m.per_stream_vram_bytes + (activation // 2 if half else activation)) if on_gpu else 0,
            load_transient_ram_bytes=transient,
            context_per_worker=self.separate_process,
            engine=placement.engine,
            overhead_detail=m.overhead_detail.get(placement.engine, ""),
            weights=tuple(lines),
        )

    def estimate(self, placement: Placement, workers: int = 1, streams: int = 1) -> Estimate:
        """The headline figures of :meth:`footprint` for ``workers`` instances and ``streams`` requests."""
        fp = self.footprint(placement)
        return Estimate(
            placement=placement,
            weights_bytes=sum(w.bytes for w in fp.weights),
            ram_after_load_bytes=fp.ram_after_load(workers),
            ram_load_peak_bytes=fp.ram_load_peak(workers),
            ram_serving_bytes=fp.ram_serving(workers, streams),
            vram_after_load_bytes=fp.vram_after_load(workers),
            vram_peak_bytes=fp.vram_peak(workers, streams),
        )

    def default_placement(self, device: str) -> Placement:
        """The preferred engine and precision on ``device``, nothing dropped or moved."""
        return Placement(self.engines[device][0], device, self.devices[device][0])

    def placements(self) -> Iterable[Placement]:
        """Every (device, precision) with the device's preferred engine (torch for bf16 on a CPU,
        the only engine that computes it there): the rows of ``deploy models``."""
        for device, precisions in self.devices.items():
            for precision in precisions:
                engines = self.engines[device]
                cpu_bf16 = device == "cpu" and precision == "bf16" and "torch" in engines
                yield Placement("torch" if cpu_bf16 else engines[0], device, precision)
