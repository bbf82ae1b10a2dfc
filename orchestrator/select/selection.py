"""Choose a profile for a (model, machine) pair: pure, no I/O, every verdict with its reasons.

Each profile gets one verdict:

* ``fits``: every match condition holds and the model family fits the profile's device, after
  the family's reductions if needed (select/fit.py);
* ``fits-with-change``: only a knob stands in the way, and the verdict names it
  ("needs 1.5 GiB more RAM", "fits with precision fp32", "the model runs on the CPU");
* ``does-not-fit``: a hardware condition fails, or the model does not fit, with the numbers.

The chosen profile is the fitting one with the highest ``priority`` (priorities are unique, so
the choice is deterministic); when none fits but a GPU profile fits by moving the model to the
CPU, that one. A forced profile (``--profile NAME``) is used even when its hardware conditions
fail, with a warning; a model that fits nowhere is refused (PlanError, exit 1) with the memory
that is short and the smallest machine that would hold it.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from orchestrator.errors import PlanError, UsageError
from orchestrator.probe.facts import HostFacts
from orchestrator.select.fit import ModelFit, Pinned, fit_model, smallest_machine
from orchestrator.select.gpus import GpuChoice, choose_gpus
from orchestrator.select.hardware import (
    BF16_MIN_CC,
    FP16_MIN_CC,
    NATIVE_BF16_ISA,
    compute_capability,
    cpu_bf16_supported,
    gpu_memory_bytes,
    precision_supported,
    resolve_precision,
)
from orchestrator.select.profiles import Profile, ProfileSet, parse_version
from orchestrator.units import format_size, format_sizes
from runtime.families.catalog import DEFAULT_FAMILY, family
from runtime.families.spec import FamilySpec

FITS: Final = "fits"
FITS_WITH_CHANGE: Final = "fits-with-change"
DOES_NOT_FIT: Final = "does-not-fit"
STATUS_LABELS = {FITS: "fits", FITS_WITH_CHANGE: "fits with a change", DOES_NOT_FIT: "does not fit"}

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


@dataclass(frozen=True)
class ModelRequest:
    """The model family to plan for and what the user fixed about its placement."""

    family: FamilySpec
    pinned: Pinned = field(default_factory=Pinned)


def default_model() -> ModelRequest:
    return ModelRequest(family(DEFAULT_FAMILY))


@dataclass(frozen=True)
class Verdict:
    profile: str
    status: Literal["fits", "fits-with-change", "does-not-fit"]
    """FITS, FITS_WITH_CHANGE or DOES_NOT_FIT (mypy checks every value assigned or compared)."""
    failures: tuple[str, ...]
    """Each failed condition, with the numbers."""
    changes: tuple[str, ...]
    """For ``fits-with-change``: what would make it fit."""
    fit: ModelFit | None = field(default=None, compare=False)
    """The model family on this profile (None when the hardware conditions already fail)."""
    hardware_fits: bool = True
    """Every match condition of the profile itself holds (the model aside)."""

    @property
    def moved_to_cpu(self) -> bool:
        """The model fits only by leaving this profile's GPU for the CPU."""
        return self.fit is not None and any(s.reduction == "cpu" for s in self.fit.steps)


@dataclass(frozen=True)
class Selection:
    chosen: Profile
    forced: bool
    reasons: tuple[str, ...]
    verdicts: tuple[Verdict, ...]
    """One per profile, in priority order (highest first)."""
    warnings: tuple[str, ...]
    gpus: GpuChoice = field(compare=False)
    """The GPUs the selection judged with: the plan uses this choice, it never chooses again."""
    facts: HostFacts = field(compare=False)
    """The facts as judged: completed (:func:`complete_facts`), so the plan uses them as they are."""
    model: ModelRequest = field(default_factory=default_model, compare=False)
    """The model family planned for."""
    fit: ModelFit | None = field(default=None, compare=False)
    """The family on the chosen profile (None: the planner works it out, e.g. an OOM step-down)."""

    def verdict(self, name: str) -> Verdict:
        return next(v for v in self.verdicts if v.profile == name)


def judge(facts: HostFacts, profile: Profile, gpus: GpuChoice,
          model: ModelRequest | None = None) -> Verdict:
    """Check every match condition of ``profile`` against ``facts`` and the usable GPUs, then
    whether the model family (default: Piper) fits the profile's device (select/fit.py)."""
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
        return Verdict(profile.name, DOES_NOT_FIT, tuple(hard + soft), (), hardware_fits=False)
    model = model or default_model()
    fit = fit_model(model.family, facts, profile, gpus, model.pinned, allow_cpu=True)
    own_ok = not soft
    if not fit.fits:
        gap = fit.shortfall
        assert gap is not None
        failures = (*soft, f"{fit.family}: {gap.sentence()}")
        if "VRAM" in gap.pool:
            return Verdict(profile.name, DOES_NOT_FIT, failures, (), fit, own_ok)
        more = f"needs {format_size(gap.need_bytes - gap.usable_bytes)} more RAM for {fit.family}"
        return Verdict(profile.name, FITS_WITH_CHANGE, failures, (*changes, more), fit, own_ok)
    if any(s.reduction == "cpu" for s in fit.steps):
        gpu_step = next(s for s in fit.steps if s.reduction == "cpu")
        soft.append(f"{fit.family} does not fit the GPU: {_gpu_shortfall(fit, gpu_step.detail)}")
        changes.append(f"the model runs on the CPU ({fit.summary()})")
    if soft:
        return Verdict(profile.name, FITS_WITH_CHANGE, tuple(soft), tuple(changes), fit, own_ok)
    return Verdict(profile.name, FITS, (), (), fit)


def _gpu_shortfall(fit: ModelFit, cpu_step_detail: str) -> str:
    """The last GPU attempt's shortfall, as the step before the CPU recorded it."""
    steps = list(fit.steps)
    at = next(i for i, s in enumerate(steps) if s.reduction == "cpu")
    before = steps[at - 1].detail if at else cpu_step_detail
    return before.rsplit("; still ", 1)[-1] if "; still " in before else before


def judge_all(facts: HostFacts, profiles: ProfileSet | Sequence[Profile],
              gpus: GpuChoice, model: ModelRequest | None = None) -> tuple[Verdict, ...]:
    """A verdict for every profile, highest priority first (no choice made; raises only for a
    placement the user pinned that the family cannot take)."""
    items = profiles.profiles if isinstance(profiles, ProfileSet) else tuple(profiles)
    return tuple(judge(facts, p, gpus, model) for p in sorted(items, key=lambda p: -p.priority))


def refusal(model: ModelRequest, fits: Sequence[tuple[str, ModelFit]]) -> PlanError:
    """Nothing holds the model: the memory that is short under each profile (name, fit) tried, the
    placement it was short in, and the smallest machine class that would hold it."""
    name = model.family.name
    sentences: dict[str, list[str]] = {}
    for profile, fit in fits:
        cpu = next((s for s in fit.steps if s.reduction == "cpu"), None)
        if cpu is not None:
            sentences.setdefault(f"on the GPU: {_gpu_shortfall(fit, cpu.detail)}", []).append(profile)
        if fit.shortfall is not None:
            sentences.setdefault(f"as {fit.placement.describe()}: {fit.shortfall.sentence()}", []).append(profile)
    short = [f"{text} ({', '.join(profiles)})" for text, profiles in sentences.items()]
    return PlanError(f"{name} does not fit this machine: " + "; ".join(short),
                     f"{name} needs {smallest_machine(model.family)}; `deploy models` lists every family's "
                     "footprint (smaller ones: --model kokoro-82m, --model piper)")


@dataclass(frozen=True)
class Judged:
    """Every profile judged on one machine: the facts completed once, the GPUs chosen once, a
    verdict per profile (highest priority first). ``deploy profiles`` shows it whether or not a
    profile can be chosen; :func:`choose_profile` picks from it."""

    facts: HostFacts
    """``complete_facts`` applied."""
    assumptions: tuple[str, ...]
    """What completing the facts assumed (warnings)."""
    gpus: GpuChoice
    model: ModelRequest
    profiles: tuple[Profile, ...]
    """Highest priority first."""
    verdicts: tuple[Verdict, ...]
    """One per profile, in the order of ``profiles``."""


def judge_profiles(facts: HostFacts, profiles: ProfileSet | Sequence[Profile],
                   environ: Mapping[str, str] | None = None, model: ModelRequest | None = None) -> Judged:
    """Complete ``facts``, choose the GPUs (``environ``: only ``CUDA_VISIBLE_DEVICES`` is read) and
    judge every profile for ``model`` (default: Piper) with them."""
    model = model or default_model()
    items = profiles.profiles if isinstance(profiles, ProfileSet) else tuple(profiles)
    ordered = tuple(sorted(items, key=lambda p: -p.priority))
    facts, assumptions = complete_facts(facts)
    gpus = choose_gpus(facts, environ)
    return Judged(facts, assumptions, gpus, model, ordered, judge_all(facts, ordered, gpus, model))


def select_profile(facts: HostFacts, profiles: ProfileSet | Sequence[Profile],
                   override: str | None = None, environ: Mapping[str, str] | None = None,
                   model: ModelRequest | None = None) -> Selection:
    """Pick the profile for ``facts`` and ``model`` (default: Piper): ``override`` if given, else
    the best fitting one.

    ``environ`` is the user's environment: only ``CUDA_VISIBLE_DEVICES`` is read from it here.
    """
    return choose_profile(judge_profiles(facts, profiles, environ, model), override)


def choose_profile(judged: Judged, override: str | None = None) -> Selection:
    """The profile :func:`select_profile` picks, from profiles already judged."""
    facts, gpus, model, ordered, verdicts = judged.facts, judged.gpus, judged.model, judged.profiles, judged.verdicts
    assumptions = judged.assumptions
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
        fit = verdict.fit or fit_model(model.family, facts, chosen, gpus, model.pinned, allow_cpu=True)
        if not fit.fits and verdict.hardware_fits:
            raise refusal(model, [(override, fit)])
        reasons = [f"{override}: chosen by the user (--profile or the config file), {STATUS_LABELS[verdict.status]}"]
        if verdict.status != FITS:
            warnings.append(f"profile {override} was forced but {STATUS_LABELS[verdict.status]}: "
                            + "; ".join(verdict.failures))
        return Selection(chosen, True, tuple(reasons), verdicts, tuple(warnings), gpus, facts, model, fit)
    fitting = [v for v in verdicts if v.status == FITS]
    moved = [v for v in verdicts if v.status == FITS_WITH_CHANGE and v.moved_to_cpu
             and all(f.startswith(f"{model.family.name} does not fit the GPU") for f in v.failures)]
    if not fitting and not moved:
        if any(v.hardware_fits and v.fit is not None and not v.fit.fits for v in verdicts):
            raise refusal(model, [(v.profile, v.fit) for v in verdicts if v.fit is not None])
        raise PlanError("no profile fits this machine: "
                        + "; ".join(f"{v.profile}: {', '.join(v.failures)}" for v in verdicts),
                        "force one with --profile NAME, or add a profile with --profiles DIR")
    best = fitting[0] if fitting else moved[0]
    chosen = by_name[best.profile]
    reasons = [f"{chosen.name}: fits, highest priority ({chosen.priority}) among fitting profiles" if fitting else
               f"{chosen.name}: no profile holds {model.family.name} on its own device; this one does by "
               "running it on the CPU"]
    for v in verdicts:
        if v.fit is not None and v.moved_to_cpu and v.profile != chosen.name:
            warnings.append(f"{v.profile}: {'; '.join(v.failures)}; the plan uses profile {chosen.name} "
                            f"({best.fit.summary() if best.fit else chosen.device})")
    for v in verdicts:
        if v.profile == chosen.name:
            continue
        if v.status == FITS:
            reasons.append(f"{v.profile}: fits too, lower priority ({by_name[v.profile].priority})")
        else:
            change = f"; change: {', '.join(v.changes)}" if v.changes else ""
            reasons.append(f"{v.profile}: {STATUS_LABELS[v.status]} ({'; '.join(v.failures)}{change})")
    return Selection(chosen, False, tuple(reasons), verdicts, tuple(warnings), gpus, facts, model, best.fit)


def selection_of(facts: HostFacts, profile: Profile, reason: str, environ: Mapping[str, str] | None = None,
                 model: ModelRequest | None = None) -> Selection:
    """``profile`` chosen without judging the others (an OOM step-down): the facts completed and
    the GPUs chosen here, as :func:`select_profile` does, so the plan still receives both."""
    facts, assumptions = complete_facts(facts)
    return Selection(profile, True, (reason,), (), assumptions, choose_gpus(facts, environ), facts,
                     model or default_model())


__all__ = [
    "BF16_MIN_CC",
    "DOES_NOT_FIT",
    "FITS",
    "FITS_WITH_CHANGE",
    "FP16_MIN_CC",
    "NATIVE_BF16_ISA",
    "STATUS_LABELS",
    "Judged",
    "ModelRequest",
    "Selection",
    "Verdict",
    "choose_profile",
    "complete_facts",
    "compute_capability",
    "cpu_bf16_supported",
    "default_model",
    "gpu_memory_bytes",
    "judge",
    "judge_all",
    "judge_profiles",
    "precision_supported",
    "refusal",
    "resolve_precision",
    "select_profile",
    "selection_of",
]
