"""The model family in a plan: which family the user asked for, what they pinned, and what the
plan says about the family's fit (reasons, warnings, the runtime variables that carry it).

The fit itself is decided in select/fit.py (selection judges every profile with it); this module
turns the user's choices into a :class:`~orchestrator.select.selection.ModelRequest` and the
chosen fit into sentences and env values.
"""

from __future__ import annotations

from orchestrator.plan.steps import Choices
from orchestrator.probe.facts import HostFacts
from orchestrator.select.fit import ModelFit, Pinned
from orchestrator.select.selection import ModelRequest
from orchestrator.units import format_size
from runtime.families.catalog import DEFAULT_FAMILY, family
from runtime.families.spec import FamilySpec

PINNABLE = ("TAILOR_ENGINE", "TAILOR_DEVICE", "TAILOR_PRECISION", "TAILOR_MODEL_DROP", "TAILOR_MODEL_OFFLOAD",
            "TAILOR_MODEL_MMAP")
"""Variables that fix part of the placement: the fit search never changes what the user set."""


def first_family(value: str) -> str:
    """The first name of a TAILOR_MODEL value (one family, or a comma-separated list)."""
    return next((n.strip() for n in value.split(",") if n.strip()), DEFAULT_FAMILY)


def _names(text: str) -> tuple[str, ...]:
    return tuple(sorted({n.strip().lower() for n in text.split(",") if n.strip()}))


def model_request(user: Choices) -> ModelRequest:
    """The family (TAILOR_MODEL by precedence: flag > env > config > ``piper``) and the pins. A list
    (``kokoro-82m,piper``: the runtime serves each) is planned for its first family, the default."""
    name = first_family(user.typed("TAILOR_MODEL") or DEFAULT_FAMILY)
    where = {var: user.reasons[var] for var in PINNABLE if user.get(var) is not None}
    drop, offload, mmap = (user.get("TAILOR_MODEL_DROP"), user.get("TAILOR_MODEL_OFFLOAD"),
                           user.get("TAILOR_MODEL_MMAP"))
    pinned = Pinned(
        engine=user.typed("TAILOR_ENGINE"), device=user.typed("TAILOR_DEVICE"),
        precision=user.typed("TAILOR_PRECISION"),
        dropped=_names(drop[0]) if drop is not None else None,
        offloaded=_names(offload[0]) if offload is not None else None,
        mmap=user.typed("TAILOR_MODEL_MMAP") if mmap is not None else None,
        where=where)
    return ModelRequest(family(name), pinned)


def fit_reasons(spec: FamilySpec, fit: ModelFit) -> list[str]:
    """--explain: the family, what it needs, each step with its numbers."""
    reasons = [f"model {spec.name}: {spec.params / 1e6:,.1f} M parameters, {fit.placement.describe()}; needs "
               f"RAM {format_size(fit.need_ram_bytes)} (load peak {format_size(fit.need_ram_load_peak_bytes)}) of "
               f"{format_size(fit.usable_ram_bytes)} usable"
               + (f", VRAM {format_size(fit.need_vram_bytes)} of {format_size(fit.usable_vram_bytes)} usable"
                  if fit.need_vram_bytes and fit.usable_vram_bytes else "")
               + " (one worker, one request in flight)"]
    reasons += [f"model {spec.name}: {note}" for note in fit.notes]
    reasons += [f"model {spec.name} reduction {i}: {step.reduction} {step.change}: {step.detail}"
                for i, step in enumerate(fit.steps, 1)]
    return reasons


def fit_warnings(spec: FamilySpec, fit: ModelFit, facts: HostFacts) -> list[str]:
    """Warnings a person should read: reductions taken, tight memory, licence, disk space."""
    warnings: list[str] = []
    if fit.steps:
        warnings.append(f"{spec.name} is planned with reductions to fit this machine: " + ", ".join(fit.reductions)
                        + f" ({fit.placement.describe()}; `deploy plan --explain` shows the numbers)")
    if fit.tight:
        warnings.append(f"memory is tight for {spec.name}: it needs RAM {format_size(fit.need_ram_bytes)} "
                        f"(load peak {format_size(fit.need_ram_load_peak_bytes)}) of {format_size(fit.usable_ram_bytes)}"
                        + (f", VRAM {format_size(fit.need_vram_bytes)} of {format_size(fit.usable_vram_bytes)}"
                           if fit.usable_vram_bytes else "")
                        + " usable, over 90 %: other programs on this machine may push it into swap or the OOM "
                          "killer")
    if not spec.commercial_use:
        warnings.append(f"{spec.name}: licence: the weights are not licensed for commercial use: {spec.licence}")
    files = sum(c.load_bytes(fit.precision) for c in spec.components)
    free = facts.container.models_dir_free_bytes
    if spec.name != DEFAULT_FAMILY and free is not None and free < files:
        warnings.append(f"{spec.name}'s files take about {format_size(files)}; the models directory "
                        f"{facts.container.models_dir} has {format_size(free)} free")
    return warnings


def fit_env(fit: ModelFit, reason: str) -> dict[str, tuple[str, str, str]]:
    """The runtime variables that tell the loader what the plan decided: (value, source, reason)."""
    planned: dict[str, tuple[str, str, str]] = {}
    if fit.dropped:
        planned["TAILOR_MODEL_DROP"] = (",".join(fit.dropped), "derived", reason)
    if fit.offloaded:
        planned["TAILOR_MODEL_OFFLOAD"] = (",".join(fit.offloaded), "derived", reason)
    if fit.mmap:
        planned["TAILOR_MODEL_MMAP"] = ("true", "derived", reason)
    return planned


__all__ = ["PINNABLE", "fit_env", "fit_reasons", "fit_warnings", "model_request"]
