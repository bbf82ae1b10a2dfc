"""How many server processes (``TAILOR_PROCESSES``) the runtime runs behind its one port.

Why several: one runtime process's own CPU work per request (phonemizer, request handling,
encoding) runs under one GIL. With an engine that costs nothing, one process delivered
830-950 audio-s/s on the H200 host (benchmarks/RESULTS.md, "Server overhead"), while the torch
engine alone does ~2,430 audio-s/s at batch 64 in bf16 on that card: one process feeds about a
third of it. Each extra process brings its own GIL, phonemizer and engines, and on CUDA its own
CUDA context and weights (``runtime/serving/processes.py`` runs them).

The decision, per GPU on CUDA::

    processes = min(ceil(GPUs x GPU engine rate / per-process ceiling),  # what the cards can use
                    usable CPUs / CPUS_PER_PROCESS,                      # each needs its own CPUs
                    copies of the per-process VRAM rows that fit the GPU,
                    copies of the per-process RAM rows that fit the RAM)

and at least 1, on data-center cards (>= 40 GiB; smaller cards and Jetson keep one process: no
engine rate was measured there) (each process spreads its workers over every GPU the plan uses, so each GPU holds
one CUDA context and weight copy per process). On the CPU the engine itself is the bottleneck
long before one process's request handling is: every usable CPU's synthesis rate
(``CPU_AUDIO_S_PER_CPU``) together stays below the per-process ceiling up to ~75 CPUs, so CPU
plans keep one process (the reason says from how many CPUs a second one would pay; the user may
set ``TAILOR_PROCESSES``, and ``TAILOR_WORKERS`` is then per process).

Every row of the memory budget is per process (each holds its own weights, context, working
memory and cache): the plan's budget multiplies them by the count, and the runtime's RSS soft
limit is per process (the container's limit divided by the count).
"""

from __future__ import annotations

import dataclasses
import math

from orchestrator.plan.budget import RAM, SHARED, VRAM, BudgetRow, MemoryBudget, PoolTotal

PER_PROCESS_CEILING_AUDIO_S = 890.0
"""One runtime process's ceiling with an engine that costs nothing: 830-950 audio-s/s measured on
the H200 host (benchmarks/RESULTS.md, bench_server_overhead.py, concurrency 64); the middle."""
GPU_ENGINE_AUDIO_S = 2430.0
"""The torch engine alone on one H200, bf16, batch 64: 2,426-2,436 audio-s/s (benchmarks/RESULTS.md).
An H100/H200-class figure; smaller cards are held back by their VRAM and CPUs below."""
CPU_AUDIO_S_PER_CPU = 12.0
"""Audio seconds per second one CPU synthesizes through the server with the onnx engine (fp32,
en_US-joe-medium): the default CPU plan did 18-24 audio-s/s with both CPUs of the 2-vCPU AVX2 VM
(benchmarks/RESULTS.md, "Runtime vs Piper" and the GIL switch interval runs)."""
CPUS_PER_PROCESS = 2
"""A process needs a CPU for its event loop and phonemizer and one for its workers' feeding
(H200 host: one process kept ~1.3 CPUs busy at its ceiling, benchmarks/RESULTS.md)."""
DATACENTER_CARD_BYTES = 40 * 1024**3
"""Cards from this size up (A100 40 GB, H100, H200...) are taken to be of the class whose engine
rate was measured; below it, and on Jetson, the plan keeps one process (nothing measured there)."""
MAX_PROCESSES = 64
"""TAILOR_PROCESSES's upper bound (runtime/settings.py)."""


@dataclasses.dataclass(frozen=True)
class ProcessDecision:
    processes: int
    """Server processes (``TAILOR_PROCESSES``). On CUDA each process spreads its workers over
    every GPU the plan uses, so each GPU holds this many CUDA contexts and weight copies."""
    reason: str


def decide_processes(*, on_gpu: bool, devices: int, usable_cpus: int, budget: MemoryBudget,
                     card_bytes: int = 0, jetson: bool = False) -> ProcessDecision:
    """The process count for a finished one-process plan (``budget`` is that plan's: one process,
    its device rows for one GPU; ``card_bytes``: one GPU's total memory, its size class)."""
    ram_fit = _copies(budget, SHARED if _shared(budget) else RAM)
    if on_gpu and (jetson or card_bytes < DATACENTER_CARD_BYTES):
        kind = "a Jetson" if jetson else (f"a {card_bytes / 1024**3:.0f} GiB card (below "
                                          f"{DATACENTER_CARD_BYTES // 1024**3} GiB)")
        return ProcessDecision(1, (
            f"processes=1: the engine rate that needs several processes was measured on an H200 "
            f"({GPU_ENGINE_AUDIO_S:g} audio-s/s against {PER_PROCESS_CEILING_AUDIO_S:g} per process); on {kind} "
            "one process is assumed to keep up (set "
            "TAILOR_PROCESSES to override)"))
    if on_gpu:
        devices = max(1, devices)
        by_engine = max(1, math.ceil(devices * GPU_ENGINE_AUDIO_S / PER_PROCESS_CEILING_AUDIO_S))
        by_cpu = max(1, usable_cpus // CPUS_PER_PROCESS)
        vram_fit = ram_fit if _shared(budget) else _copies(budget, VRAM)
        count = max(1, min(by_engine, by_cpu, vram_fit, ram_fit, MAX_PROCESSES))
        limits = {"the engine's rate": by_engine, "the CPUs": by_cpu, "VRAM": vram_fit, "RAM": ram_fit}
        binding = " and ".join(k for k, v in limits.items() if v == count) or f"the bound of {MAX_PROCESSES}"
        gpus = f"{devices} GPUs" if devices > 1 else "the GPU"
        reason = (f"processes={count} per GPU (each process uses {gpus}): min(ceil({devices} x "
                  f"{GPU_ENGINE_AUDIO_S:g} engine audio-s/s / {PER_PROCESS_CEILING_AUDIO_S:g} per-process ceiling) "
                  f"= {by_engine}, {usable_cpus} usable CPUs / {CPUS_PER_PROCESS} per process = {by_cpu}, "
                  f"VRAM holds {vram_fit} process copies (CUDA context, weights, batch memory), RAM holds "
                  f"{ram_fit}); limited by {binding}")
        return ProcessDecision(count, reason)
    synthesis = usable_cpus * CPU_AUDIO_S_PER_CPU
    needed = math.ceil(PER_PROCESS_CEILING_AUDIO_S / CPU_AUDIO_S_PER_CPU)
    reason = (f"processes=1: {usable_cpus} usable CPU(s) synthesize about {synthesis:g} audio-s/s on the CPU, "
              f"below one process's ceiling of {PER_PROCESS_CEILING_AUDIO_S:g} (a second process pays from about "
              f"{needed} CPUs); more processes would only add model copies (set TAILOR_PROCESSES to override)")
    return ProcessDecision(1, reason)


def _shared(budget: MemoryBudget) -> bool:
    return any(t.pool == SHARED for t in budget.totals)


def _copies(budget: MemoryBudget, pool: str) -> int:
    """How many processes' worth of ``pool`` rows fit its capacity minus headroom."""
    total = next((t for t in budget.totals if t.pool == pool), None)
    if total is None or total.planned_bytes <= 0:
        return MAX_PROCESSES
    return max(1, (total.capacity_bytes - total.headroom_bytes) // total.planned_bytes)


def scale_budget(budget: MemoryBudget, per_gpu: int) -> MemoryBudget:
    """The budget of ``per_gpu`` processes (on each GPU): every row is per process."""
    if per_gpu <= 1:
        return budget
    rows = tuple(BudgetRow(r.item, r.pool, r.bytes * per_gpu, f"{r.detail}; x {per_gpu} server processes")
                 for r in budget.rows)
    totals = []
    for t in budget.totals:
        planned = sum(r.bytes for r in rows if r.pool == t.pool)
        totals.append(PoolTotal(t.pool, t.capacity_bytes, t.headroom_bytes, planned,
                                t.capacity_bytes - t.headroom_bytes - planned))
    peak = budget.load_peak
    if peak is not None:  # the processes start together: each loads its own copy at once
        planned = peak.planned_bytes * per_gpu
        peak = PoolTotal(peak.pool, peak.capacity_bytes, peak.headroom_bytes, planned,
                         peak.capacity_bytes - peak.headroom_bytes - planned)
    return MemoryBudget(rows, tuple(totals), load_peak=peak)


def pod_processes(processes: int, pods: int) -> int:
    """Server processes in each pod when the Kubernetes render runs one pod per GPU: the plan's
    processes shared out, rounded up (each pod's GPU then holds that many copies, within the
    per-GPU VRAM the plan checked for all of them)."""
    return max(1, -(-processes // max(1, pods)))


__all__ = ["CPUS_PER_PROCESS", "GPU_ENGINE_AUDIO_S", "PER_PROCESS_CEILING_AUDIO_S", "ProcessDecision",
           "decide_processes", "pod_processes", "scale_budget"]
