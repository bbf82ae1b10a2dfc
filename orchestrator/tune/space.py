"""The knobs `deploy tune` moves and the values each may take on this machine.

A candidate is the plan's default plus a few runtime variables set (``TAILOR_WORKERS=1``, ...);
it is planned through the same pipeline as ``deploy plan --workers 1`` so its memory budget,
queue and container limits stay consistent. Knobs come in the order the search tries them:
the ones that measured the largest effects first (a cheaper model that passed the quality gate,
worker layout, solo-wide).
"""

from __future__ import annotations

import glob
import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Values = tuple[tuple[str, str], ...]
"""Runtime variable -> value, sorted by name (hashable)."""


def as_values(mapping: Mapping[str, str]) -> Values:
    return tuple(sorted(mapping.items()))


@dataclass(frozen=True)
class Candidate:
    values: Values
    """The variables this candidate sets on top of the plan (empty: the plan's default)."""
    change: str
    """What differs from the candidate it was derived from, in words."""

    @property
    def mapping(self) -> dict[str, str]:
        return dict(self.values)

    def label(self) -> str:
        if not self.values:
            return "plan default"
        return " ".join(f"{k.removeprefix('TAILOR_').lower()}={v}" for k, v in self.values)


@dataclass(frozen=True)
class Knob:
    name: str
    options: tuple[Values, ...]
    """Each option sets these variables; the plan's own value is always the implicit first option."""
    why: str
    min_workers: int = 1
    """Only tried while the candidate runs at least this many workers (solo-wide needs two)."""


ALLOCATOR_LIBRARIES = ("libjemalloc.so.2", "libtcmalloc_minimal.so.4", "libtcmalloc.so.4")
_LIB_DIRS = ("/usr/lib/*-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")


def find_allocators(patterns: Sequence[str] = _LIB_DIRS) -> dict[str, str]:
    """``{"jemalloc": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", ...}`` for the allocators installed."""
    found: dict[str, str] = {}
    for directory in patterns:
        for library in ALLOCATOR_LIBRARIES:
            for path in sorted(glob.glob(f"{directory}/{library}")):
                name = "jemalloc" if "jemalloc" in library else "tcmalloc"
                found.setdefault(name, path)
    return found


def layouts(cpus: int) -> list[tuple[int, int]]:
    """Every workers x threads split of ``cpus`` (4 -> 4x1, 2x2, 1x4)."""
    return [(w, cpus // w) for w in range(cpus, 0, -1) if cpus % w == 0]


def build_knobs(plan: Mapping[str, object], *, variants: Sequence[str] = (), torch_available: bool | None = None,
                allocators: Mapping[str, str] | None = None, torch_bf16: bool = False) -> list[Knob]:
    """The knobs worth trying for this plan (its JSON form), most promising first.

    ``variants`` are model variants that passed the quality gate on this machine; ``torch_bf16``
    says the torch engine in bf16 passed it (offered only on CPUs with native bf16).
    """
    env = plan.get("env", {})
    assert isinstance(env, Mapping)
    workers, threads = int(str(plan["workers"])), int(str(plan["threads"]))
    device, engine = str(plan["device"]), str(plan["engine"])
    cpus = workers * threads
    knobs: list[Knob] = []
    # Cheaper models first: they exist only when they passed the quality gate, and they change the
    # cost of every audio second, whatever the layout.
    if engine == "onnx" and variants:
        knobs.append(Knob("model variant", tuple(as_values({"TAILOR_MODEL_VARIANT": v}) for v in variants),
                          "a cheaper model per audio second, only variants that passed the quality gate"))
    if device == "cpu" and torch_bf16:
        knobs.append(Knob("torch bf16", (as_values({"TAILOR_ENGINE": "torch", "TAILOR_PRECISION": "bf16"}),),
                          "the CPU computes bf16 natively (AVX-512-BF16 or AMX) and bf16 passed the quality gate"))
    layout_options = tuple(
        as_values({"TAILOR_WORKERS": str(w), "TAILOR_THREADS_PER_WORKER": str(t)})
        for w, t in layouts(cpus) if (w, t) != (workers, threads))
    if device == "cpu" and layout_options:
        knobs.append(Knob("workers x threads", layout_options,
                          "more workers serve more sentences at once; more threads finish one sentence sooner"))
    if device == "cpu" and cpus > 1:
        solo = "false" if env.get("TAILOR_SOLO_WIDE", "false") == "true" else "true"
        knobs.append(Knob("solo-wide", (as_values({"TAILOR_SOLO_WIDE": solo}),),
                          "a lone sentence on an instance with every core (one more model copy in memory)",
                          min_workers=2))
    knobs.append(Knob("batching", (as_values({"TAILOR_BATCHING": "true", "TAILOR_BATCH_WINDOW_MS": "5",
                                              "TAILOR_MAX_BATCH_SIZE": "4"}),),
                      "concurrent sentences in one engine call (pays off on GPUs)"))
    found = find_allocators() if allocators is None else allocators
    if found:
        knobs.append(Knob("allocator", tuple(as_values({"LD_PRELOAD": path}) for _name, path in sorted(found.items())),
                          "a faster malloc for many small allocations"))
    if engine == "onnx":
        arena = "false" if env.get("TAILOR_ORT_MEMORY_ARENA", "true") == "true" else "true"
        knobs.append(Knob("onnxruntime arena", (as_values({"TAILOR_ORT_MEMORY_ARENA": arena}),),
                          "onnxruntime's CPU memory arena: speed against resident memory"))
        knobs.append(Knob("graph optimisation", (as_values({"TAILOR_ORT_GRAPH_OPTIMIZATION": "extended"}),),
                          "onnxruntime's layout-changing optimisations (level all) do not always pay"))
        knobs.append(Knob("execution mode", (as_values({"TAILOR_ORT_EXECUTION_MODE": "parallel"}),),
                          "run independent graph branches in parallel"))
    if engine == "onnx" and device == "cpu" and (torch_available if torch_available is not None else _has("torch")):
        knobs.append(Knob("engine", (as_values({"TAILOR_ENGINE": "torch"}),), "the native torch VITS engine"))
    if device == "cuda":
        precisions = [p for p in ("fp16", "bf16", "fp32") if p != plan.get("precision")]
        knobs.append(Knob("precision", tuple(as_values({"TAILOR_PRECISION": p}) for p in precisions),
                          "half precision on the GPU"))
    if engine == "torch" or device == "cuda":
        knobs.append(Knob("GIL switch interval", (as_values({"TAILOR_SWITCH_INTERVAL_MS": "0.5"}),),
                          "the torch engine re-takes the GIL after every operator; beside busy threads a shorter "
                          "interval gets it back sooner (4.4x vs 1.2x slowdown in isolation on a CPU; no gain "
                          "through the H200 server): measured here, on this machine"))
    return knobs


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def neighbours(incumbent: Candidate, knob: Knob, plan_env: Mapping[str, str]) -> list[Candidate]:
    """Candidates that move only ``knob`` away from the incumbent (the plan's value included)."""
    current = incumbent.mapping
    if int(current.get("TAILOR_WORKERS", plan_env.get("TAILOR_WORKERS", "1"))) < knob.min_workers:
        return []
    names = sorted({name for option in knob.options for name, _ in option})

    def value(name: str) -> str:
        return current.get(name, plan_env.get(name, ""))

    base = {name: value(name) for name in names}
    options = [dict(option) for option in knob.options]
    plan_option = {name: plan_env.get(name, "") for name in names}
    if plan_option not in options:
        options.append(plan_option)
    result: list[Candidate] = []
    for option in options:
        if all(base.get(k, "") == v for k, v in option.items()):
            continue
        merged = {k: v for k, v in current.items() if k not in names}
        for k, v in option.items():
            if plan_env.get(k, "") != v:
                merged[k] = v
        change = ", ".join(f"{k.removeprefix('TAILOR_').lower()} {base.get(k) or '(unset)'} -> {v or '(unset)'}"
                           for k, v in option.items() if base.get(k, "") != v)
        result.append(Candidate(as_values(merged), f"{knob.name}: {change}"))
    return result
