"""The memory budget: what the runtime will hold, row by row, against RAM and VRAM.

The figures come from the model family's memory model (runtime/families/spec.py ``footprint``;
each family's numbers and their sources are in runtime/families/catalog.py). For the default
family, Piper with the voice en_US-joe-medium, per process unless said otherwise:

* model weights: the onnx file is 63.2 MB; one onnxruntime session for it adds 89 MiB of RSS
  (measured: session created on CPU, 1 intra-op thread). torch keeps one host copy (64 MiB)
  and one device copy per worker (63 MB fp32, half that in fp16/bf16).
* runtime overhead: ~350 MiB RSS for Python + FastAPI + onnxruntime + phonemizer; ~900 MiB
  with torch; a CUDA context takes ~500 MiB of VRAM.
* per-request working memory: onnx on CPU grows with sentence length (measured RSS growth:
  +70 MiB at 100 phonemes, +140 MiB at 400, +290 MiB at 1200); the runtime splits text into
  sentences, so 192 MiB covers a long sentence. On CUDA each batch item needs ~192 MiB of
  VRAM in fp32 (96 MiB in fp16/bf16) and ~48 MiB of host RAM for text and audio buffers.
* solo-wide instance (CPU, several workers, ``TAILOR_SOLO_WIDE``): one more onnx session with
  its own arena, so one more session and one more request's working memory. It was missing
  until a 2000-request soak on a 2-worker plan measured 1059 MiB at 1000 requests against a
  976 MiB budget (benchmarks/RESULTS.md, "Memory under a soak").
* headroom: the profile's fraction of the pool (at least its minimum) stays unplanned.

Heavier families add rows Piper does not need: host RAM per worker on a GPU (components
offloaded to the CPU, the load residue, a separate engine process), and a load-peak check (the
RAM held while the largest checkpoint is read, unless mapped).

On Jetson the GPU shares system RAM: every row lands in one ``shared`` pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from orchestrator.select.fit import Pools
from runtime.families.spec import Footprint

MIB = 1024**2

RAM = "ram"
VRAM = "vram"
SHARED = "shared"


@dataclass(frozen=True)
class BudgetRow:
    item: str
    pool: str
    """``ram``, ``vram`` or ``shared``."""
    bytes: int
    detail: str


@dataclass(frozen=True)
class PoolTotal:
    JSON_COMPUTED: ClassVar[tuple[str, ...]] = ("fits",)
    pool: str
    capacity_bytes: int
    headroom_bytes: int
    planned_bytes: int
    free_bytes: int
    """capacity - headroom - planned; negative when the plan does not fit."""

    @property
    def fits(self) -> bool:
        return self.free_bytes >= 0


@dataclass(frozen=True)
class MemoryBudget:
    rows: tuple[BudgetRow, ...]
    totals: tuple[PoolTotal, ...]
    load_peak: PoolTotal | None = None
    """RAM (or the shared pool) while the model loads: everything loaded so far plus the largest
    checkpoint being read; no request runs and the cache is empty then."""

    @property
    def fits(self) -> bool:
        return all(t.fits for t in self.totals) and (self.load_peak is None or self.load_peak.fits)

    def total(self, pool: str) -> PoolTotal:
        return next(t for t in self.totals if t.pool == pool)


def plans_solo_wide(device: str, workers: int, tight: bool) -> bool:
    """Whether the plan runs the runtime's extra solo-wide instance (``TAILOR_SOLO_WIDE``)."""
    return device == "cpu" and workers > 1 and not tight


def slots_that_fit(pools: Pools, fp: Footprint, workers: int, cache_bytes: int, on_gpu: bool,
                   devices: int = 1) -> int:
    """How many requests can be in flight at once (all workers together) within the pools.

    On CPU every worker is one in-flight request with its own session, so this is the worker
    count that fits. On CUDA it is workers x batch items that fit; ``workers`` is fixed and
    spread evenly over ``devices`` GPUs, each with ``pools.vram_capacity_bytes`` of its own.
    """
    ram_pool = pools.ram_capacity_bytes - pools.ram_headroom_bytes
    ram_fixed = fp.overhead_ram_bytes + fp.weights_ram_shared_bytes + cache_bytes
    if not on_gpu:
        per_slot = fp.weights_ram_per_worker_bytes + fp.per_request_ram_bytes
        return max(0, (ram_pool - ram_fixed) // per_slot)
    ram_fixed += fp.weights_ram_per_worker_bytes * workers
    per_device = max(1, workers // max(1, devices))
    vram_fixed = _vram_fixed(fp, per_device)
    if pools.shared:
        free = ram_pool - ram_fixed - vram_fixed
        return max(0, free // (fp.per_item_vram_bytes + fp.per_request_ram_bytes))
    by_ram = (ram_pool - ram_fixed) // fp.per_request_ram_bytes
    by_vram = (pools.vram_capacity_bytes - pools.vram_headroom_bytes - vram_fixed) // fp.per_item_vram_bytes
    return max(0, min(by_ram, by_vram * max(1, devices)))


def _vram_fixed(fp: Footprint, per_device: int) -> int:
    """One device's context(s) and weights for ``per_device`` workers."""
    contexts = per_device if fp.context_per_worker else 1
    return fp.cuda_context_bytes * contexts + fp.weights_vram_per_worker_bytes * per_device


def workers_that_fit(pools: Pools, fp: Footprint, workers: int, devices: int = 1) -> int:
    """The most workers (at most ``workers``, spread over ``devices`` GPUs) whose instances fit
    with one request in flight each and no cache; 0 when not even one does."""
    devices = max(1, devices)
    for count in range(workers, 0, -1):
        per_device = max(1, count // devices)
        ram = (fp.overhead_ram_bytes + fp.weights_ram_shared_bytes
               + (fp.weights_ram_per_worker_bytes + fp.per_request_ram_bytes) * count)
        vram = _vram_fixed(fp, per_device) + fp.per_item_vram_bytes * per_device
        if pools.shared:
            if ram + vram <= pools.ram_usable_bytes:
                return count
        elif ram <= pools.ram_usable_bytes and vram <= pools.vram_usable_bytes:
            return count
    return 0


def build_budget(pools: Pools, fp: Footprint, workers: int, slots: int, cache_bytes: int,
                 on_gpu: bool, devices: int = 1, solo_wide: bool = False) -> MemoryBudget:
    """The table for a finished plan: ``slots`` requests in flight across ``workers``.

    With several GPUs the device rows (and the ``vram`` total) are for one device; every device
    carries the same share (``workers / devices`` workers, ``slots / devices`` items).
    """
    gpu_pool = SHARED if pools.shared else VRAM
    ram_pool = SHARED if pools.shared else RAM
    rows: list[BudgetRow] = []
    if on_gpu:
        devices = max(1, devices)
        per_device = max(1, workers // devices)
        items = -(-slots // devices)
        each = f" on each of {devices} GPUs" if devices > 1 else ""
        if fp.weights_ram_shared_bytes:
            rows.append(BudgetRow("model weights (host copy)", ram_pool, fp.weights_ram_shared_bytes,
                                  "one copy kept in RAM while loading and for the fallback"))
        if fp.weights_ram_per_worker_bytes:
            rows.append(BudgetRow("model in host RAM (per worker)", ram_pool, fp.weights_ram_per_worker_bytes * workers,
                                  f"{workers} worker(s) x {fp.weights_ram_per_worker_bytes // MIB} MiB: "
                                  + _host_detail(fp)))
        rows.append(BudgetRow("model weights (device)", gpu_pool, fp.weights_vram_per_worker_bytes * per_device,
                              f"{per_device} worker(s) x {fp.weights_vram_per_worker_bytes // MIB} MiB{each}"))
        rows.append(BudgetRow("runtime overhead", ram_pool, fp.overhead_ram_bytes, fp.overhead_detail))
        contexts = per_device if fp.context_per_worker else 1
        rows.append(BudgetRow("CUDA context", gpu_pool, fp.cuda_context_bytes * contexts,
                              f"one per engine process, {contexts}{each}" if fp.context_per_worker else
                              f"one per process{each}"))
        rows.append(BudgetRow("per-request working memory (device)", gpu_pool, fp.per_item_vram_bytes * items,
                              f"{items} in flight x {fp.per_item_vram_bytes // MIB} MiB{each}"))
        rows.append(BudgetRow("per-request working memory (host)", ram_pool, fp.per_request_ram_bytes * slots,
                              f"{slots} in flight x {fp.per_request_ram_bytes // MIB} MiB"))
    else:
        instance = "onnx session(s)" if fp.engine == "onnx" else "model instance(s)"
        rows.append(BudgetRow("model weights", ram_pool, fp.weights_ram_per_worker_bytes * workers,
                              f"{workers} {instance} x {fp.weights_ram_per_worker_bytes // MIB} MiB"))
        rows.append(BudgetRow("runtime overhead", ram_pool, fp.overhead_ram_bytes, fp.overhead_detail))
        rows.append(BudgetRow("per-request working memory", ram_pool, fp.per_request_ram_bytes * slots,
                              f"{slots} in flight x {fp.per_request_ram_bytes // MIB} MiB"))
        if solo_wide:
            rows.append(BudgetRow("solo-wide instance", ram_pool,
                                  fp.weights_ram_per_worker_bytes + fp.per_request_ram_bytes,
                                  f"one more onnx session ({fp.weights_ram_per_worker_bytes // MIB} MiB) and its "
                                  f"arena ({fp.per_request_ram_bytes // MIB} MiB), TAILOR_SOLO_WIDE"))
    rows.append(BudgetRow("audio cache", ram_pool, cache_bytes, "TAILOR_CACHE_BYTES"))
    totals: list[PoolTotal] = []
    if pools.shared:
        planned = sum(r.bytes for r in rows)
        totals.append(_total(SHARED, pools.ram_capacity_bytes, pools.ram_headroom_bytes, planned))
    else:
        totals.append(_total(RAM, pools.ram_capacity_bytes, pools.ram_headroom_bytes,
                             sum(r.bytes for r in rows if r.pool == RAM)))
        if on_gpu:
            totals.append(_total(VRAM, pools.vram_capacity_bytes, pools.vram_headroom_bytes,
                                 sum(r.bytes for r in rows if r.pool == VRAM)))
    instances = workers + (1 if solo_wide else 0)
    at_load = fp.ram_load_peak(instances) + (_vram_fixed(fp, max(1, workers // max(1, devices))) * max(1, devices)
                                             if pools.shared and on_gpu else 0)
    peak = _total(ram_pool, pools.ram_capacity_bytes, pools.ram_headroom_bytes, at_load)
    return MemoryBudget(tuple(rows), tuple(totals), peak)


def _host_detail(fp: Footprint) -> str:
    """What a GPU worker holds in host RAM."""
    on_cpu = [w.component for w in fp.weights if w.device == "cpu"]
    parts = ["load residue (checkpoint bytes freed into the allocator)"]
    if on_cpu:
        parts.insert(0, f"{', '.join(on_cpu)} on the CPU")
    if fp.context_per_worker:
        parts.append("its engine process")
    return ", ".join(parts)


def _total(pool: str, capacity: int, headroom: int, planned: int) -> PoolTotal:
    return PoolTotal(pool, capacity, headroom, planned, capacity - headroom - planned)
