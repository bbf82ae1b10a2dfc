"""Does a model family fit a machine under a profile, and with which reductions?

Pure. The family's memory model (runtime/families/spec.py) gives the memory of one placement;
this module compares it with the memory the profile lets the plan use (:func:`memory_pools`:
effective RAM minus the profile's headroom, the free VRAM of the GPUs in use minus theirs, one
shared pool on Jetson) at the smallest configuration that serves (one worker, one request in
flight, no audio cache), and while loading. Where it does not fit, :func:`fit_model` tries the
family's reductions in order, each only where it lowers the memory that is short:

1. a lower precision the family allows and the hardware computes;
2. dropping optional components (IndexTTS2's emotion model);
3. offloading components to the CPU one stage at a time (VRAM short);
4. loading with mmap (the RAM peak while loading is short);
5. the CPU (when the caller allows it: a forced GPU profile; otherwise the selection moves on to
   a CPU profile).

Every step is recorded with its numbers; what remains short is a :class:`Shortfall`, and
:func:`smallest_machine` names the smallest machine class that would hold the family.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

from orchestrator.errors import UsageError
from orchestrator.probe.facts import HostFacts
from orchestrator.select.gpus import GpuChoice
from orchestrator.select.hardware import (
    BF16_MIN_CC,
    FP16_MIN_CC,
    compute_capability,
    cpu_bf16_supported,
    gpu_memory_bytes,
    precision_supported,
    resolve_precision,
)
from orchestrator.select.profiles import Profile
from orchestrator.units import format_size
from runtime.families.spec import (
    BYTES_PER_PARAM,
    HALF_PRECISIONS,
    FamilySpec,
    Footprint,
    Placement,
    PlacementError,
)

GIB = 1024**3
TIGHT_FRACTION = 0.9
"""A fit that needs more than this share of the usable memory is planned with a warning."""
CPU_CLASS_HEADROOM = (0.2, 512 * 1024**2)
"""Headroom assumed for a CPU machine class (the cpu-only profile's): 20 %, at least 512 MiB."""
GPU_CLASS_HEADROOM = 0.1
"""VRAM headroom assumed for a GPU class (the GPU profiles' vram_headroom_fraction)."""
RAM_CLASSES_GB = (2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048)
VRAM_CLASSES_GB = (2, 4, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 80, 96, 141, 192)
REPORTED_SHARE = 0.96
"""A machine sold as N GB reports about 96 % of N GiB (MemTotal; an 8 GB card ~7.8 GiB)."""


@dataclass(frozen=True)
class Pools:
    """Capacities and headrooms in bytes; ``shared`` when CPU and GPU use one pool (Jetson)."""

    ram_capacity_bytes: int
    ram_headroom_bytes: int
    vram_capacity_bytes: int
    vram_headroom_bytes: int
    shared: bool

    @property
    def ram_usable_bytes(self) -> int:
        return self.ram_capacity_bytes - self.ram_headroom_bytes

    @property
    def vram_usable_bytes(self) -> int:
        return self.vram_capacity_bytes - self.vram_headroom_bytes


def memory_pools(facts: HostFacts, profile: Profile, gpus: GpuChoice, on_gpu: bool) -> tuple[Pools, int, str]:
    """(pools, GPUs the plan spreads over, reason): RAM minus the profile's headroom, the free VRAM
    of the GPUs in use (per device; other processes' memory is not ours to plan) minus theirs."""
    memory = profile.memory
    ram = facts.memory.effective_total_bytes
    ram_headroom = min(ram // 2, max(int(ram * memory.headroom_fraction), memory.headroom_min_bytes))
    shared = facts.jetson is not None
    used = gpus.used if on_gpu and not shared else ()
    vram = min(g.memory_free_bytes for g in used) if used else (
        gpu_memory_bytes(facts, gpus) if on_gpu and not shared else 0)
    reason = (f"headroom {format_size(ram_headroom)}: {memory.headroom_fraction:.0%} of {format_size(ram)} effective "
              f"memory ({facts.memory.effective_source}), at least {format_size(memory.headroom_min_bytes)}")
    return (Pools(ram, ram_headroom, vram, int(vram * memory.vram_headroom_fraction), shared),
            max(1, len(used)), reason)


@dataclass(frozen=True)
class Need:
    """Memory of one placement at the smallest serving configuration (one worker, one request)."""

    ram_bytes: int
    """After loading, with one request in flight."""
    ram_load_peak_bytes: int
    vram_bytes: int
    """CUDA context, weights and one batch item (0 off the GPU)."""

    @classmethod
    def of(cls, fp: Footprint) -> Need:
        return cls(fp.ram_serving(1, 1), fp.ram_load_peak(1), fp.vram_peak(1, 1))


@dataclass(frozen=True)
class Shortfall:
    """The memory that is short: which pool, how much is needed, how much the plan may use."""

    pool: str
    """``RAM``, ``RAM at load peak``, ``VRAM`` or ``shared memory`` (Jetson)."""
    need_bytes: int
    usable_bytes: int
    capacity_bytes: int
    capacity_label: str
    """What the capacity is: ``effective`` RAM, ``free on the RTX 3060``..."""

    def sentence(self) -> str:
        return (f"needs {format_size(self.need_bytes)} {self.pool}, the machine has "
                f"{format_size(self.capacity_bytes)} {self.capacity_label} ({format_size(self.usable_bytes)} "
                "after headroom)")


@dataclass(frozen=True)
class FitStep:
    """One reduction the search took, with its numbers."""

    reduction: str
    """``precision``, ``drop``, ``offload``, ``mmap`` or ``cpu``."""
    change: str
    """``fp32 -> fp16``, ``emotion``, ``w2v-bert``, ``on``, ``cuda -> cpu``."""
    detail: str


@dataclass(frozen=True)
class ModelFit:
    """The outcome for one (family, machine, profile): the placement, the steps, the numbers."""

    JSON_COMPUTED: ClassVar[tuple[str, ...]] = ("reductions",)
    family: str
    engine: str
    device: str
    precision: str
    dropped: tuple[str, ...] = ()
    offloaded: tuple[str, ...] = ()
    mmap: bool = False
    fits: bool = True
    steps: tuple[FitStep, ...] = ()
    need_ram_bytes: int = 0
    need_ram_load_peak_bytes: int = 0
    need_vram_bytes: int = 0
    usable_ram_bytes: int = 0
    usable_vram_bytes: int = 0
    shortfall: Shortfall | None = None
    notes: tuple[str, ...] = ()
    """What the search skipped and why (fp16 on a GPU without tensor cores...)."""
    tight: bool = False
    """Fits, but needs more than 90 % of the usable memory."""

    @property
    def placement(self) -> Placement:
        return Placement(self.engine, self.device, self.precision, frozenset(self.dropped),
                         frozenset(self.offloaded), self.mmap)

    @property
    def reductions(self) -> tuple[str, ...]:
        """``precision fp16``, ``drop emotion``, ``offload w2v-bert``, ``mmap``, ``cpu``: for tables and tests."""
        def name(step: FitStep) -> str:
            if step.reduction == "precision":
                return f"precision {step.change.split(' -> ')[-1]}"
            if step.reduction in ("drop", "offload"):
                return f"{step.reduction} {step.change}"
            return step.reduction

        return tuple(name(s) for s in self.steps)

    def summary(self) -> str:
        """One line: ``indextts2: torch on cuda, fp16; without emotion; w2v-bert on the CPU``."""
        return f"{self.family}: {self.placement.describe()}"


@dataclass(frozen=True)
class Pinned:
    """What the user fixed (flag, environment or config file); the search never changes these."""

    engine: str | None = None
    device: str | None = None
    precision: str | None = None
    dropped: tuple[str, ...] | None = None
    offloaded: tuple[str, ...] | None = None
    mmap: bool | None = None
    where: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Variable -> where the user set it (``command line``), for messages."""


def _size(n: int) -> str:
    return format_size(n)


class _Search:
    """One fit search: the pools, the evaluation, and the steps taken so far."""

    def __init__(self, family: FamilySpec, facts: HostFacts, profile: Profile, gpus: GpuChoice,
                 pools_for: Callable[[bool], Pools]) -> None:
        self.family = family
        self.facts = facts
        self.profile = profile
        self.gpus = gpus
        self.pools_for = pools_for
        self.steps: list[FitStep] = []
        self.notes: list[str] = []

    def gpu_label(self) -> str:
        gpu = self.gpus.primary
        if gpu is not None:
            return f"free on the {gpu.name}"
        return "shared with the GPU" if self.facts.jetson is not None else "on the GPU"

    def short(self, placement: Placement) -> list[Shortfall]:
        """The pools that do not hold ``placement``, worst first (empty: it fits)."""
        need = Need.of(self.family.footprint(placement))
        on_gpu = placement.device == "cuda"
        pools = self.pools_for(on_gpu)
        ram_cap, ram_use = pools.ram_capacity_bytes, pools.ram_usable_bytes
        found: list[Shortfall] = []
        if pools.shared:
            # One pool (Jetson): the GPU's weights and working memory live in the same RAM.
            fp = self.family.footprint(placement)
            total = need.ram_bytes + need.vram_bytes
            peak = need.ram_load_peak_bytes + fp.vram_after_load(1)
            if total > ram_use:
                found.append(Shortfall("shared memory (RAM + GPU)", total, ram_use, ram_cap, "effective"))
            if peak > ram_use:
                found.append(Shortfall("shared memory at load peak", peak, ram_use, ram_cap, "effective"))
        else:
            if need.ram_bytes > ram_use:
                found.append(Shortfall("RAM", need.ram_bytes, ram_use, ram_cap, "effective"))
            if need.ram_load_peak_bytes > ram_use:
                found.append(Shortfall("RAM at load peak", need.ram_load_peak_bytes, ram_use, ram_cap, "effective"))
            usable_gpu = self.gpus.primary is not None
            if on_gpu and usable_gpu and need.vram_bytes > pools.vram_usable_bytes:
                found.append(Shortfall("VRAM", need.vram_bytes, pools.vram_usable_bytes, pools.vram_capacity_bytes,
                                       self.gpu_label()))
        return sorted(found, key=lambda s: s.usable_bytes - s.need_bytes)

    def needs_text(self, placement: Placement) -> str:
        need = Need.of(self.family.footprint(placement))
        parts = [f"RAM {_size(need.ram_bytes)}", f"load peak {_size(need.ram_load_peak_bytes)}"]
        if need.vram_bytes:
            parts.append(f"VRAM {_size(need.vram_bytes)}")
        return ", ".join(parts)

    def step(self, reduction: str, change: str, before: Placement, after: Placement, why: str) -> None:
        detail = f"{why}: {self.needs_text(before)} -> {self.needs_text(after)}"
        remaining = self.short(after)
        detail += "; fits" if not remaining else f"; still {remaining[0].sentence()}"
        self.steps.append(FitStep(reduction, change, detail))


def _hardware_ok(precision: str, device: str, engine: str, cc: tuple[int, int] | None, facts: HostFacts) -> bool:
    if precision == "int8":
        return device == "cpu"
    return precision_supported(precision, device, cc) or cpu_bf16_supported(precision, device, engine,
                                                                            facts.cpu.isa_flags)


def _unsupported_why(precision: str, device: str, cc: tuple[int, int] | None) -> str:
    if device == "cuda" and cc is not None:
        need = BF16_MIN_CC if precision == "bf16" else FP16_MIN_CC
        return f"{precision} needs compute capability >= {need[0]}.{need[1]}, this GPU has {cc[0]}.{cc[1]}"
    if device == "cuda":
        return f"{precision} needs a usable NVIDIA GPU"
    return f"{precision} is not computed natively by this CPU"


def start_placement(family: FamilySpec, device: str, profile: Profile, pinned: Pinned, cc: tuple[int, int] | None,
                    facts: HostFacts) -> tuple[Placement, list[str]]:
    """The placement before any reduction: the profile's engine and precision policy where the
    family allows them, else the family's own preference; the user's pins always."""
    notes: list[str] = []
    engines = family.engines[device]
    engine = pinned.engine or (profile.engine if profile.engine in engines else engines[0])
    if engine not in engines:
        raise UsageError(f"{family.name} does not run with the {engine} engine on {device} "
                         f"({pinned.where.get('TAILOR_ENGINE', 'your setting')}); it uses " + " or ".join(engines),
                         "leave the engine to the plan, or choose another model (`deploy models`)")
    if profile.engine not in engines and pinned.engine is None:
        notes.append(f"engine {engine}: {family.name} does not run with {profile.engine} on {device}")
    allowed = family.devices[device]
    if pinned.precision is not None:
        if pinned.precision not in allowed:
            raise UsageError(f"{family.name} has no {pinned.precision} on {device} "
                             f"({pinned.where.get('TAILOR_PRECISION', 'your setting')}); it has "
                             + ", ".join(allowed), "leave the precision to the plan, or pick one of those")
        precision = pinned.precision
    else:
        candidates = [p for p in allowed if _hardware_ok(p, device, engine, cc, facts)] or [allowed[0]]
        preferred = candidates[0]
        policy, _why = resolve_precision(profile.precision, device, cc) if device == profile.device else ("fp32", "")
        if policy in candidates:
            precision = policy if BYTES_PER_PARAM[policy] <= BYTES_PER_PARAM[preferred] else preferred
        elif policy in HALF_PRECISIONS and (halves := [p for p in candidates if p in HALF_PRECISIONS]):
            precision = halves[0]
            notes.append(f"precision {precision}: the profile asks for {policy}, {family.name}'s half precision "
                         f"on {device} is {precision}")
        else:
            precision = preferred
        if precision != policy and precision == preferred and policy not in HALF_PRECISIONS:
            notes.append(f"precision {precision}: {family.name}'s preferred precision on {device}")
    dropped = tuple(pinned.dropped or ())
    offloaded = tuple(pinned.offloaded or ()) if device == "cuda" else ()
    placement = Placement(engine, device, precision, frozenset(dropped), frozenset(offloaded), bool(pinned.mmap))
    try:
        family.check(placement)
    except PlacementError as exc:
        where = ", ".join(sorted(set(pinned.where.values()))) or "your settings"
        raise UsageError(f"{exc} ({where})", "`deploy models` lists each family's components and options") from None
    return placement, notes


def _search_device(search: _Search, placement: Placement, pinned: Pinned, cc: tuple[int, int] | None) -> Placement:
    """Reductions 1-4 on ``placement``'s device; returns the last placement tried."""
    family, facts = search.family, search.facts
    device = placement.device
    if not search.short(placement):
        return placement
    if pinned.precision is None:
        current = BYTES_PER_PARAM[placement.precision]
        for precision in family.devices[device]:
            if BYTES_PER_PARAM[precision] >= current:
                continue
            if not _hardware_ok(precision, device, placement.engine, cc, facts):
                search.notes.append(f"{precision} skipped: {_unsupported_why(precision, device, cc)}")
                continue
            lower = dataclasses.replace(placement, precision=precision)
            search.step("precision", f"{placement.precision} -> {precision}", placement, lower,
                        f"lower precision ({precision})")
            placement, current = lower, BYTES_PER_PARAM[precision]
            if not search.short(placement):
                return placement
    if pinned.dropped is None:
        for name in family.optional_components:
            if name in placement.dropped:
                continue
            lower = dataclasses.replace(placement, dropped=placement.dropped | {name})
            search.step("drop", name, placement, lower, f"without the optional {name} ({family.component(name).role})")
            placement = lower
            if not search.short(placement):
                return placement
    if pinned.offloaded is None and device == "cuda":
        for name in family.offloadable_components:
            if name in placement.dropped or name in placement.offloaded:
                continue
            if not any(s.pool == "VRAM" for s in search.short(placement)):
                break
            lower = dataclasses.replace(placement, offloaded=placement.offloaded | {name})
            search.step("offload", name, placement, lower, f"{name} ({family.component(name).role}) on the CPU")
            placement = lower
            if not search.short(placement):
                return placement
    short = search.short(placement)
    if pinned.mmap is None and family.memory.mmap_supported and not placement.mmap and any(
            "load peak" in s.pool for s in short):
        lower = dataclasses.replace(placement, mmap=True)
        search.step("mmap", "on", placement, lower, "checkpoints mapped, not read (the page cache can be reclaimed)")
        placement = lower
    return placement


def fit_model(family: FamilySpec, facts: HostFacts, profile: Profile, gpus: GpuChoice, pinned: Pinned | None = None,
              *, allow_cpu: bool = True, pools_for: Callable[[bool], Pools] | None = None) -> ModelFit:
    """Where ``family`` runs under ``profile`` on ``facts``: the profile's device first, then the
    reductions in order; the CPU last when ``allow_cpu`` (see the module doc)."""
    pinned = pinned or Pinned()
    pools = pools_for or (lambda on_gpu: memory_pools(facts, profile, gpus, on_gpu)[0])
    search = _Search(family, facts, profile, gpus, pools)
    device = pinned.device or profile.device
    if device not in family.devices:
        if pinned.device is not None:
            raise UsageError(f"{family.name} does not run on {device} ({pinned.where.get('TAILOR_DEVICE', '')})",
                             "it runs on " + " or ".join(family.devices))
        search.notes.append(f"device cpu: {family.name} does not run on {device}")
        device = "cpu"
    cc = compute_capability(facts, gpus) if device == "cuda" else None
    placement, notes = start_placement(family, device, profile, pinned, cc, facts)
    search.notes.extend(notes)
    placement = _search_device(search, placement, pinned, cc)
    if search.short(placement) and device == "cuda" and allow_cpu and pinned.device is None and "cpu" in family.devices:
        cpu_start, notes = start_placement(family, "cpu", profile, dataclasses.replace(pinned, offloaded=None), None,
                                           facts)
        search.notes.extend(notes)
        search.step("cpu", "cuda -> cpu", placement, cpu_start, "the GPU cannot hold it: the model runs on the CPU")
        placement = _search_device(search, cpu_start, pinned, None)
    return _result(search, placement)


def _result(search: _Search, placement: Placement) -> ModelFit:
    fp = search.family.footprint(placement)
    need = Need.of(fp)
    pools = search.pools_for(placement.device == "cuda")
    short = search.short(placement)
    tight = not short and (
        max(need.ram_bytes, need.ram_load_peak_bytes) + (need.vram_bytes if pools.shared else 0)
        > TIGHT_FRACTION * pools.ram_usable_bytes
        or (need.vram_bytes > TIGHT_FRACTION * pools.vram_usable_bytes and not pools.shared
            and search.gpus.primary is not None and placement.device == "cuda"))
    return ModelFit(
        family=search.family.name, engine=placement.engine, device=placement.device, precision=placement.precision,
        dropped=tuple(sorted(placement.dropped)), offloaded=tuple(sorted(placement.offloaded)), mmap=placement.mmap,
        fits=not short, steps=tuple(search.steps), need_ram_bytes=need.ram_bytes,
        need_ram_load_peak_bytes=need.ram_load_peak_bytes, need_vram_bytes=need.vram_bytes,
        usable_ram_bytes=pools.ram_usable_bytes,
        usable_vram_bytes=pools.vram_usable_bytes if placement.device == "cuda" and not pools.shared else 0,
        shortfall=short[0] if short else None, notes=tuple(dict.fromkeys(search.notes)), tight=tight)


def _class_gb(need_bytes: int, classes: tuple[int, ...]) -> int | None:
    return next((gb for gb in classes if gb * GIB * REPORTED_SHARE >= need_bytes), None)


def _ram_for(need_bytes: int) -> int:
    """Effective RAM a machine needs so that ``need_bytes`` fits under a CPU class's headroom."""
    fraction, minimum = CPU_CLASS_HEADROOM
    return max(math.ceil(need_bytes / (1 - fraction)), need_bytes + minimum)


def smallest_machine(family: FamilySpec) -> str:
    """The smallest machine classes that hold ``family``, most reduced: ``a machine with >= 16 GB
    of RAM, or an NVIDIA GPU with >= 8 GB of VRAM (compute capability >= 7.0) and >= 12 GB of RAM``."""
    options: list[str] = []
    if "cpu" in family.devices:
        precision = min(family.devices["cpu"], key=lambda p: BYTES_PER_PARAM[p])
        placement = Placement(family.engines["cpu"][0], "cpu", precision, frozenset(family.optional_components),
                              mmap=family.memory.mmap_supported)
        need = Need.of(family.footprint(placement))
        ram = _ram_for(max(need.ram_bytes, need.ram_load_peak_bytes))
        gb = _class_gb(ram, RAM_CLASSES_GB)
        options.append(f"a machine with >= {gb} GB of RAM ({format_size(ram)} effective) on the CPU, {precision}"
                       if gb else f"more than {RAM_CLASSES_GB[-1]} GB of RAM")
    if "cuda" in family.devices:
        precision = min(family.devices["cuda"], key=lambda p: BYTES_PER_PARAM[p])
        placement = Placement(family.engines["cuda"][0], "cuda", precision, frozenset(family.optional_components),
                              frozenset(family.offloadable_components) - frozenset(family.optional_components),
                              mmap=family.memory.mmap_supported)
        need = Need.of(family.footprint(placement))
        vram = math.ceil(need.vram_bytes / (1 - GPU_CLASS_HEADROOM))
        ram = _ram_for(max(need.ram_bytes, need.ram_load_peak_bytes))
        vram_gb, ram_gb = _class_gb(vram, VRAM_CLASSES_GB), _class_gb(ram, RAM_CLASSES_GB)
        cc = " (compute capability >= 7.0)" if precision == "fp16" else ""
        if vram_gb and ram_gb:
            options.append(f"an NVIDIA GPU with >= {vram_gb} GB of VRAM{cc} and >= {ram_gb} GB of RAM, {precision}")
    return ", or ".join(options)


__all__ = ["FitStep", "ModelFit", "Need", "Pinned", "Pools", "Shortfall", "fit_model", "memory_pools",
           "smallest_machine", "start_placement"]
