"""Choose a profile for a machine: pure, no I/O, every verdict with its reasons.

Each profile gets one verdict:

* ``fits``: every match condition holds;
* ``fits-with-change``: only a knob stands in the way, and the verdict names it
  ("needs 1.5 GiB more RAM", "fits with precision fp32");
* ``does-not-fit``: a hardware condition fails, with the numbers.

The chosen profile is the fitting one with the highest ``priority`` (priorities are unique, so
the choice is deterministic). A forced profile (``--profile NAME``) is used even when it does
not fit, with a warning.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from orchestrator.errors import PlanError, UsageError
from orchestrator.probe.facts import GpuFacts, HostFacts, jetson_compute_capability
from orchestrator.select.gpus import GpuChoice, choose_gpus
from orchestrator.select.profiles import Profile, ProfileSet, parse_version
from orchestrator.units import format_size, format_sizes

FITS: Final = "fits"
FITS_WITH_CHANGE: Final = "fits-with-change"
DOES_NOT_FIT: Final = "does-not-fit"
STATUS_LABELS = {FITS: "fits", FITS_WITH_CHANGE: "fits with a change", DOES_NOT_FIT: "does not fit"}

FP16_MIN_CC = (7, 0)
"""fp16 is planned only with tensor cores (Volta, CC 7.0+): older cards gain nothing from it."""
BF16_MIN_CC = (8, 0)
"""bf16 needs Ampere (CC 8.0+) hardware support."""


ASSUMED_MEMORY_BYTES = 2 * 1024**3
"""Planned for when the probe could not read the memory size: small enough to be safe."""


def complete_facts(facts: HostFacts) -> tuple[HostFacts, tuple[str, ...]]:
    """Facts to plan with, and a warning for each conservative assumption made.

    A probe that met garbage (unreadable or garbled /proc) still returns valid facts, with zero
    memory or an ``unknown`` architecture. Planning then assumes a small machine instead of
    failing, and says so. Idempotent: complete facts come back unchanged.
    """
    warnings: list[str] = []
    memory = facts.memory
    if memory.effective_total_bytes == 0:
        assumed = ASSUMED_MEMORY_BYTES
        memory = dataclasses.replace(
            memory, total_bytes=assumed, available_bytes=assumed, effective_total_bytes=assumed,
            effective_available_bytes=assumed, effective_source="assumed")
        warnings.append(f"the memory size could not be read (see the probe's notes): planned for "
                        f"{format_size(assumed)}, a conservative guess; fix the probe or pass --facts "
                        "from a healthy probe")
    if facts.cpu.architecture == "unknown":
        warnings.append("the CPU architecture could not be read (see the probe's notes): profiles were "
                        "not filtered by architecture")
    if memory is facts.memory:
        return facts, tuple(warnings)
    return dataclasses.replace(facts, memory=memory), tuple(warnings)


def primary_gpu(facts: HostFacts, gpus: GpuChoice | None = None) -> GpuFacts | None:
    """The first GPU the runtime will use (see :func:`orchestrator.gpus.choose_gpus`), None when none is usable."""
    return (gpus or choose_gpus(facts)).primary


def compute_capability(facts: HostFacts, gpus: GpuChoice | None = None) -> tuple[int, int] | None:
    """Of the GPUs in use, or of the Jetson SoC; None without a usable GPU."""
    gpu = primary_gpu(facts, gpus)
    if gpu is not None:
        return gpu.compute_capability_tuple
    return jetson_compute_capability(facts)


def gpu_memory_bytes(facts: HostFacts, gpus: GpuChoice | None = None) -> int:
    """VRAM of one GPU in use (its size class); on Jetson the shared pool (effective RAM); 0 without a GPU."""
    gpu = primary_gpu(facts, gpus)
    if gpu is not None:
        return gpu.memory_total_bytes
    if facts.jetson is not None:
        return facts.memory.effective_total_bytes
    return 0


def resolve_precision(policy: str, device: str, cc: tuple[int, int] | None) -> tuple[str, str]:
    """(precision, reason) for a precision policy on this device; strict policies may not hold."""
    if device != "cuda" or cc is None:
        return "fp32", "fp32: no CUDA device" if device == "cuda" else "fp32: CPU inference"
    cc_text = f"{cc[0]}.{cc[1]}"
    if policy == "bf16-if-supported":
        if cc >= BF16_MIN_CC:
            return "bf16", f"bf16: compute capability {cc_text} >= 8.0"
        if cc >= FP16_MIN_CC:
            return "fp16", f"fp16: compute capability {cc_text} has no bf16 (needs 8.0) but has fp16 tensor cores"
        return "fp32", f"fp32: compute capability {cc_text} has neither bf16 (8.0) nor fp16 tensor cores (7.0)"
    if policy == "fp16-if-supported":
        if cc >= FP16_MIN_CC:
            return "fp16", f"fp16: compute capability {cc_text} >= 7.0 (tensor cores)"
        return "fp32", f"fp32: compute capability {cc_text} has no fp16 tensor cores (needs 7.0)"
    return policy, f"{policy}: fixed by the profile"


def precision_supported(precision: str, device: str, cc: tuple[int, int] | None) -> bool:
    if precision == "fp32":
        return True
    if device != "cuda" or cc is None:
        return False
    return cc >= (BF16_MIN_CC if precision == "bf16" else FP16_MIN_CC)


NATIVE_BF16_ISA = ("avx512_bf16", "amx")
"""CPU extensions with a native bf16 path (Source: /proc/cpuinfo flags, HostFacts.cpu.isa_flags)."""


def cpu_bf16_supported(precision: str, device: str, engine: str, isa_flags: tuple[str, ...]) -> bool:
    """bf16 on the CPU: only the torch engine, only where the CPU computes bf16 natively."""
    return (precision == "bf16" and device == "cpu" and engine == "torch"
            and any(flag in isa_flags for flag in NATIVE_BF16_ISA))


@dataclass(frozen=True)
class Verdict:
    profile: str
    status: Literal["fits", "fits-with-change", "does-not-fit"]
    """FITS, FITS_WITH_CHANGE or DOES_NOT_FIT (mypy checks every value assigned or compared)."""
    failures: tuple[str, ...]
    """Each failed condition, with the numbers."""
    changes: tuple[str, ...]
    """For ``fits-with-change``: what would make it fit."""


@dataclass(frozen=True)
class Selection:
    chosen: Profile
    forced: bool
    reasons: tuple[str, ...]
    verdicts: tuple[Verdict, ...]
    """One per profile, in priority order (highest first)."""
    warnings: tuple[str, ...]
    gpus: GpuChoice | None = field(default=None, compare=False)
    """The GPUs the selection judged with (None: chosen without looking, e.g. an OOM step-down)."""

    def verdict(self, name: str) -> Verdict:
        return next(v for v in self.verdicts if v.profile == name)


def judge(facts: HostFacts, profile: Profile, gpus: GpuChoice | None = None) -> Verdict:
    """Check every match condition of ``profile`` against ``facts`` and the usable GPUs."""
    gpus = gpus or choose_gpus(facts)
    m = profile.match
    hard: list[str] = []
    soft: list[str] = []
    changes: list[str] = []
    arch = facts.cpu.architecture
    if m.architectures and arch != "unknown" and arch not in m.architectures:
        hard.append(f"architecture {arch} is not one of {', '.join(m.architectures)}")
    is_jetson = facts.jetson is not None
    if m.jetson == "required" and not is_jetson:
        hard.append("needs a Jetson board; this is not one")
    if m.jetson == "excluded" and is_jetson:
        hard.append("not meant for Jetson boards")
    gpu = gpus.primary
    if m.gpu == "required" and gpu is None:
        if facts.gpus:
            hard.append(f"needs a usable NVIDIA GPU; {gpus.summary()}")
        else:
            hard.append(f"needs an NVIDIA GPU; none reported ({facts.nvml.reason})")
    if m.gpu == "excluded" and gpu is not None:
        hard.append(f"meant for machines without a GPU; found {gpu.name}")
    if is_jetson and facts.jetson is not None and (m.l4t_min or m.l4t_max):
        release = parse_version(facts.jetson.l4t_release)
        if release is None:
            hard.append(f"L4T release {facts.jetson.l4t_release!r} is unknown")
        else:
            if m.l4t_min and release < (parse_version(m.l4t_min) or ()):
                hard.append(f"L4T {facts.jetson.l4t_release} is older than {m.l4t_min}")
            if m.l4t_max and release > (parse_version(m.l4t_max) or ()):
                hard.append(f"L4T {facts.jetson.l4t_release} is newer than {m.l4t_max}")
    vram = gpu_memory_bytes(facts, gpus) if gpu is not None else 0
    if gpu is not None and m.min_vram_bytes is not None and vram < m.min_vram_bytes:
        have, required = format_sizes(vram, m.min_vram_bytes)
        hard.append(f"GPU memory {have} < {required} required ({gpu.name})")
    if gpu is not None and m.max_vram_bytes is not None and vram > m.max_vram_bytes:
        have, most = format_sizes(vram, m.max_vram_bytes)
        hard.append(f"GPU memory {have} > {most}: a larger profile suits this card")
    cc = compute_capability(facts, gpus)
    if m.min_compute_capability and cc is not None:
        need = parse_version(m.min_compute_capability) or ()
        if cc < need:
            hard.append(f"compute capability {cc[0]}.{cc[1]} < {m.min_compute_capability} required")
    mem = facts.memory.effective_total_bytes
    if m.min_memory_bytes is not None and mem < m.min_memory_bytes:
        short = m.min_memory_bytes - mem
        have, required = format_sizes(mem, m.min_memory_bytes)
        soft.append(f"effective memory {have} < {required} required")
        if facts.memory.effective_source == "cgroup" and facts.memory.total_bytes >= m.min_memory_bytes:
            changes.append(f"raise the container memory limit by {format_size(short)} "
                           f"(the host has {format_size(facts.memory.total_bytes)})")
        else:
            changes.append(f"needs {format_size(short)} more RAM")
    if m.max_memory_bytes is not None and mem > m.max_memory_bytes:
        have, most = format_sizes(mem, m.max_memory_bytes)
        hard.append(f"effective memory {have} > {most}: "
                    "a larger profile suits this machine")
    if profile.precision in ("fp16", "bf16") and not precision_supported(profile.precision, profile.device, cc):
        soft.append(f"precision {profile.precision} is not supported here")
        changes.append("fits with precision fp32")
    if hard:
        return Verdict(profile.name, DOES_NOT_FIT, tuple(hard + soft), ())
    if soft:
        return Verdict(profile.name, FITS_WITH_CHANGE, tuple(soft), tuple(changes))
    return Verdict(profile.name, FITS, (), ())


def judge_all(facts: HostFacts, profiles: ProfileSet | Sequence[Profile],
              gpus: GpuChoice | None = None) -> tuple[Verdict, ...]:
    """A verdict for every profile, highest priority first (no choice made, never raises)."""
    items = profiles.profiles if isinstance(profiles, ProfileSet) else tuple(profiles)
    gpus = gpus or choose_gpus(facts)
    return tuple(judge(facts, p, gpus) for p in sorted(items, key=lambda p: -p.priority))


def select_profile(facts: HostFacts, profiles: ProfileSet | Sequence[Profile],
                   override: str | None = None, environ: Mapping[str, str] | None = None) -> Selection:
    """Pick the profile for ``facts``: ``override`` if given, else the best fitting one.

    ``environ`` is the user's environment: only ``CUDA_VISIBLE_DEVICES`` is read from it here.
    """
    items = profiles.profiles if isinstance(profiles, ProfileSet) else tuple(profiles)
    ordered = sorted(items, key=lambda p: -p.priority)
    facts, assumptions = complete_facts(facts)
    gpus = choose_gpus(facts, environ)
    verdicts = judge_all(facts, ordered, gpus)
    by_name = {p.name: p for p in ordered}
    warnings: list[str] = list(assumptions)
    if override is not None:
        if override not in by_name:
            close = difflib.get_close_matches(override, list(by_name), n=1)
            known = "choose one of: " + ", ".join(p.name for p in ordered) + " (`deploy profiles` lists them)"
            raise UsageError(f"no profile named {override!r}" + (f"; did you mean {close[0]!r}?" if close else ""),
                             known)
        chosen = by_name[override]
        verdict = next(v for v in verdicts if v.profile == override)
        reasons = [f"{override}: chosen by the user (--profile or the config file), {STATUS_LABELS[verdict.status]}"]
        if verdict.status != FITS:
            warnings.append(f"profile {override} was forced but {STATUS_LABELS[verdict.status]}: "
                            + "; ".join(verdict.failures))
        return Selection(chosen, True, tuple(reasons), verdicts, tuple(warnings), gpus)
    fitting = [v for v in verdicts if v.status == FITS]
    if not fitting:
        raise PlanError("no profile fits this machine: "
                        + "; ".join(f"{v.profile}: {', '.join(v.failures)}" for v in verdicts),
                        "force one with --profile NAME, or add a profile with --profiles DIR")
    best = fitting[0]
    chosen = by_name[best.profile]
    reasons = [f"{chosen.name}: fits, highest priority ({chosen.priority}) among fitting profiles"]
    for v in verdicts:
        if v.profile == chosen.name:
            continue
        if v.status == FITS:
            reasons.append(f"{v.profile}: fits too, lower priority ({by_name[v.profile].priority})")
        else:
            change = f"; change: {', '.join(v.changes)}" if v.changes else ""
            reasons.append(f"{v.profile}: {STATUS_LABELS[v.status]} ({'; '.join(v.failures)}{change})")
    return Selection(chosen, False, tuple(reasons), verdicts, tuple(warnings), gpus)
