"""make_plan: facts + chosen profile + the user's settings -> every number the runtime needs.

Pure: no I/O. Each value records where it came from: ``cli`` > ``env`` (already set by the
user) > ``config`` (``--config FILE``) > ``profile`` > ``default``, or ``derived`` with the
reason. Rules that always hold:

* workers x threads <= the effective CPUs (cgroup quota and cpuset included);
* fp16 only on CUDA with compute capability >= 7.0, bf16 only with >= 8.0;
* concurrency and batch size come from the memory budget (:mod:`orchestrator.plan.budget`), so a
  derived plan never holds more than the RAM/VRAM left after the profile's headroom.

``step_down`` is what the launcher calls after an OOM kill.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from orchestrator.errors import PlanError, UsageError
from orchestrator.model import Reader, check_version, from_jsonable, read_json_file, to_jsonable
from orchestrator.plan.budget import Footprint, MemoryBudget, Pools, build_budget, slots_that_fit
from orchestrator.plan.container_spec import ContainerSpec, base_image_for, container_spec
from orchestrator.plan.runtime_env import Provenance, build_env
from orchestrator.plan.user_config import (
    LAUNCH_KNOBS,
    PASS_THROUGH,
    UserConfig,
    check_value,
    variable_for,
)
from orchestrator.probe.facts import HostFacts, compute_capability, gpu_memory_bytes, primary_gpu
from orchestrator.select.profiles import Profile, ProfileSet
from orchestrator.select.selection import (
    FITS,
    Selection,
    complete_facts,
    judge,
    precision_supported,
    resolve_precision,
)
from orchestrator.units import format_size
from runtime.settings import VARIABLES, Settings, variable

T = TypeVar("T")
RUNTIME_DEFAULTS = Settings()
"""The runtime's own defaults, typed (from the knob table)."""
PLAN_VERSION = 2
"""2: the port is recorded once, in ``env`` (``container.port`` is gone)."""
_PLAN_FIELDS = ("engine", "device", "precision", "workers", "threads", "inter_op_threads", "max_queue",
                "batching", "max_batch_size", "batch_window_ms", "preload", "cache_bytes")
_VARIABLE_FIELDS = {v.name: v.knob for v in VARIABLES if v.knob in _PLAN_FIELDS}
"""Runtime variable -> the Plan field that holds it: a Plan field is named after its knob."""
SIZING_VARIABLES = ("TAILOR_ENGINE", "TAILOR_DEVICE", "TAILOR_PRECISION", "TAILOR_WORKERS",
                    "TAILOR_THREADS_PER_WORKER", "TAILOR_MAX_BATCH_SIZE", "TAILOR_MAX_QUEUE")


@dataclass(frozen=True)
class Plan:
    profile: str
    engine: str
    device: str
    precision: str
    workers: int
    threads: int
    """Intra-op threads per worker."""
    inter_op_threads: int
    max_concurrency: int
    """Requests synthesized at once: workers x batch size."""
    max_queue: int
    batching: bool
    max_batch_size: int
    batch_window_ms: float
    preload: bool
    cache_bytes: int
    memory_budget: MemoryBudget
    env: Mapping[str, str]
    """The runtime's whole environment, name -> value, sorted by name."""
    provenance: tuple[Provenance, ...]
    container: ContainerSpec
    warnings: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    user_values: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    """Variables the user set (name -> (value, source)); kept when stepping down."""
    steps: tuple[str, ...] = ()
    """Step-down history, oldest first."""
    launch_settings: Mapping[str, float] = field(default_factory=dict)
    """The launcher's own settings the user gave (``startup_timeout_s``, ``health_interval_s``; see
    ``user_config.LAUNCH_KNOBS``), with their sources in ``provenance``; never in ``env``."""

    @property
    def port(self) -> int:
        """The runtime's TCP port: the plan's one record of it is ``env["TAILOR_PORT"]``."""
        return int(self.env["TAILOR_PORT"])

    def to_dict(self) -> dict[str, Any]:
        """The plan's JSON form (``deploy plan --json``, ``plan.json``), with its format version."""
        data: dict[str, Any] = {"plan_version": PLAN_VERSION, **to_jsonable(self)}
        return data

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "plan") -> Plan:
        """Strict reader: every field type-checked; errors name ``source`` and the field."""
        reader = Reader(PlanError, source, "render the deployment again with `deploy render --out DIR` "
                                           "or `deploy auto`")
        check_version(data, "plan_version", PLAN_VERSION, reader, "plan")
        plan: Plan = from_jsonable(cls, {k: v for k, v in data.items() if k != "plan_version"}, reader)
        return plan

    @classmethod
    def from_json_file(cls, path: Path) -> Plan:
        """Read ``plan.json`` (written by ``deploy render --out`` / ``deploy auto``)."""
        reader = Reader(PlanError, str(path), "render one with `deploy render --out DIR`, or use `deploy auto`")
        data = read_json_file(path, reader, missing=f"{path} does not exist: {path.parent} is not a "
                                                    "rendered deployment")
        return cls.from_dict(data, source=str(path))


class _Choices:
    """Values set for runtime variables, by precedence: cli > env > config (and step-down values)."""

    def __init__(self, overrides: Mapping[str, str], environ: Mapping[str, str], config: UserConfig | None,
                 stepped: Mapping[str, str], step_reason: str) -> None:
        self.values: dict[str, tuple[str, str]] = {}
        self.reasons: dict[str, str] = {}
        if config is not None:
            for name, value in config.values.items():
                self._set(name, value, config.label, f"set in {config.where.get(name, config.source)}")
        for name, raw in sorted(environ.items()):
            if name in _PASS or name in _DECLARED:
                self._set(name, check_value(name, raw, "environment"), "env", "already set in the environment")
        for key, raw in overrides.items():
            name = variable_for(key)
            self._set(name, check_value(name, str(raw), f"command line ({key})"), "cli", "set on the command line")
        for name, value in stepped.items():
            self._set(name, value, "derived", step_reason)

    def _set(self, name: str, value: str, source: str, reason: str) -> None:
        self.values[name] = (value, source)
        self.reasons[name] = reason

    def get(self, name: str) -> tuple[str, str] | None:
        return self.values.get(name)

    def typed(self, name: str) -> Any:
        """The user's value for runtime variable ``name`` as the knob table types it, or None."""
        chosen = self.values.get(name)
        return None if chosen is None else variable(name).parse(name, chosen[0])

    def user_set(self) -> dict[str, tuple[str, str]]:
        return {k: v for k, v in sorted(self.values.items()) if v[1] != "derived"}


_PASS = frozenset(PASS_THROUGH)
# Only the runtime's declared variables are read from the environment; other TAILOR_* names
# (TAILOR_DEBUG, the launcher's own) belong to the orchestrator.
_DECLARED = frozenset(v.name for v in VARIABLES)


def _text(value: object) -> str:
    """A typed value as the env and provenance write it: ``true``, ``8``, ``2.5``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _num(value)
    return str(value)


def make_plan(facts: HostFacts, selection: Selection, overrides: Mapping[str, str] | None = None,
              environ: Mapping[str, str] | None = None, config: UserConfig | None = None,
              *, stepped: Mapping[str, str] | None = None, step_reason: str = "") -> Plan:
    """Every runtime number for ``selection.chosen`` on ``facts`` (pure; see the module doc).

    ``overrides`` are command-line values by knob (``workers``) or variable name; ``environ``
    is the user's environment; ``stepped`` are step-down values (see :func:`step_down`).
    """
    profile = selection.chosen
    facts, _assumptions = complete_facts(facts)  # their warnings came with the selection
    user = _Choices(overrides or {}, environ or {}, config, stepped or {}, step_reason)
    warnings: list[str] = list(selection.warnings)
    reasons: list[str] = []
    prov: dict[str, Provenance] = {}

    def decide(name: str, field_name: str, value: T, source: str, reason: str) -> T:
        """``value`` (typed), unless the user set ``name``: then theirs, typed by the knob table."""
        chosen = user.get(name)
        if chosen is not None:
            value = user.typed(name)
            source, reason = chosen[1], user.reasons[name]
        prov[field_name] = Provenance(field_name, _text(value), source, reason)
        return value

    engine = decide("TAILOR_ENGINE", "engine", profile.engine, "profile", f"profile {profile.name}")
    device = decide("TAILOR_DEVICE", "device", profile.device, "profile", f"profile {profile.name}")
    cc = compute_capability(facts)
    on_gpu = device == "cuda"
    if on_gpu and cc is None:
        warnings.append("device cuda is planned but this machine reports no NVIDIA GPU")
    gpu = primary_gpu(facts)
    if on_gpu and gpu is not None and gpu.mig_mode == "enabled":
        warnings.append(f"MIG is enabled on GPU {gpu.index}: the plan budgets the whole card; "
                        "reserve a MIG device by hand and lower the batch size")
    if on_gpu and facts.container.docker_reachable and not facts.container.nvidia_runtime:
        warnings.append("Docker has no nvidia runtime registered: the container backend cannot reach the GPU "
                        "(install nvidia-container-toolkit, or use the process backend)")
    policy_precision, why = resolve_precision(profile.precision, device, cc)
    if not precision_supported(policy_precision, device, cc):
        warnings.append(f"profile {profile.name} asks for {policy_precision}, not supported here; using fp32")
        policy_precision, why = "fp32", f"fp32: {profile.precision} is not supported by this device"
    precision = decide("TAILOR_PRECISION", "precision", policy_precision,
                       "profile" if profile.precision == policy_precision else "derived", why)
    if not precision_supported(precision, device, cc):
        raise UsageError(f"precision {precision} ({prov['precision'].source}) is not supported on "
                         f"device {device}" + (f" with compute capability {cc[0]}.{cc[1]}" if cc else ""),
                         "use fp32, or fp16 (CC >= 7.0) / bf16 (CC >= 8.0) on CUDA")

    # Memory pools.
    ram = facts.memory.effective_total_bytes
    ram_headroom = min(ram // 2, max(int(ram * profile.memory.headroom_fraction), profile.memory.headroom_min_bytes))
    shared = facts.jetson is not None
    vram = gpu_memory_bytes(facts) if on_gpu and not shared else 0
    pools = Pools(ram, ram_headroom, vram, int(vram * profile.memory.vram_headroom_fraction), shared)
    reasons.append(f"headroom {format_size(ram_headroom)}: {profile.memory.headroom_fraction:.0%} of "
                   f"{format_size(ram)} effective memory ({facts.memory.effective_source}), at least "
                   f"{format_size(profile.memory.headroom_min_bytes)}")
    footprint = Footprint.of(engine, device, precision)

    # CPUs.
    cpus = facts.cpu.effective_cpus
    usable = max(1, cpus - profile.threads.reserve_cpus)
    reasons.append(f"{usable} usable CPU(s): {cpus} effective ({facts.cpu.effective_cpus_source}) "
                   f"minus {cpus - usable} reserved for the server")
    cache = decide("TAILOR_CACHE_BYTES", "cache_bytes", RUNTIME_DEFAULTS.cache_bytes, "default", "runtime default")
    user_workers = user.get("TAILOR_WORKERS")
    user_threads = user.get("TAILOR_THREADS_PER_WORKER")

    def fit(workers_now: int) -> int:
        return slots_that_fit(pools, footprint, workers_now, cache, on_gpu)

    tight = False
    if on_gpu:
        workers = min(profile.concurrency.max_workers, usable)
        w_reason = f"min(profile max_workers {profile.concurrency.max_workers}, {usable} usable CPUs)"
    elif profile.threads.spread == "workers" and user_threads is None:
        workers = min(profile.concurrency.max_workers, usable)
        w_reason = (f"min(profile max_workers {profile.concurrency.max_workers}, {usable} usable CPUs): "
                    "spread over workers first, for throughput")
    else:
        wanted = user.typed("TAILOR_THREADS_PER_WORKER") if user_threads is not None else profile.threads.per_worker_max
        threads_guess = max(1, min(wanted, usable))
        workers = max(1, min(usable // threads_guess, profile.concurrency.max_workers))
        w_reason = (f"{usable} usable CPUs // {threads_guess} threads, at most profile max_workers "
                    f"{profile.concurrency.max_workers}")
    slots = fit(workers)
    if slots < (1 if on_gpu else workers) and user.get("TAILOR_CACHE_BYTES") is None and cache:
        cache = 0
        prov["cache_bytes"] = Provenance("cache_bytes", "0", "derived", "memory is tight: audio cache disabled")
        tight = True
        slots = fit(workers)
    if not on_gpu and slots < workers:
        tight = True
        w_reason += f", memory fits {max(slots, 1)}"
        workers = max(1, slots)
    w_source = "derived"
    if user_workers is not None:
        workers, w_source = user.typed("TAILOR_WORKERS"), user_workers[1]
        w_reason = user.reasons["TAILOR_WORKERS"]
    if workers > usable:
        warnings.append(f"workers {workers} exceeds the {usable} usable CPUs; using {usable}")
        workers, w_source, w_reason = usable, "derived", f"clamped to {usable} usable CPUs"
    threads = max(1, min(profile.threads.per_worker_max, usable // workers))
    t_source = "derived"
    t_reason = (f"min(profile per_worker_max {profile.threads.per_worker_max}, "
                f"{usable} usable CPUs // {workers} workers)")
    if user_threads is not None:
        threads, t_source = user.typed("TAILOR_THREADS_PER_WORKER"), user_threads[1]
        t_reason = user.reasons["TAILOR_THREADS_PER_WORKER"]
        if workers * threads > cpus:
            clamp = max(1, cpus // workers)
            warnings.append(f"{workers} workers x {threads} threads exceeds the {cpus} effective CPUs; "
                            f"using {clamp} threads per worker")
            threads, t_source, t_reason = clamp, "derived", f"clamped: {workers} workers x threads <= {cpus} CPUs"
    prov["workers"] = Provenance("workers", str(workers), w_source, w_reason)
    prov["threads"] = Provenance("threads", str(threads), t_source, t_reason)
    reasons.append(f"workers={workers}: {w_reason}")
    reasons.append(f"threads={threads} per worker: {t_reason}")
    inter_op = decide("TAILOR_INTER_OP_THREADS", "inter_op_threads", profile.threads.inter_op,
                      "profile", f"profile {profile.name}")

    batching = decide("TAILOR_BATCHING", "batching", profile.batching.enabled, "profile", f"profile {profile.name}")
    slots = fit(workers)
    if on_gpu and batching:
        by_memory = max(1, slots // workers)
        batch_default = min(profile.batching.max_batch_size, by_memory)
        b_reason = (f"min(profile max_batch_size {profile.batching.max_batch_size}, "
                    f"{by_memory} per worker fit in memory)")
        tight = tight or (by_memory < profile.batching.max_batch_size and by_memory <= 1)
    else:
        batch_default, b_reason = 1, "no batching" if not batching else "batching only pays off on a GPU"
    max_batch = decide("TAILOR_MAX_BATCH_SIZE", "max_batch_size", batch_default, "derived", b_reason)
    reasons.append(f"max_batch_size={max_batch}: {prov['max_batch_size'].reason}")
    concurrency = workers * (max_batch if batching else 1)
    reasons.append(f"max_concurrency={concurrency}: {workers} workers x "
                   f"{max_batch if batching else 1} per worker")
    prov["max_concurrency"] = Provenance("max_concurrency", str(concurrency), "derived", reasons[-1])
    max_queue = decide("TAILOR_MAX_QUEUE", "max_queue", concurrency * profile.concurrency.queue_per_slot,
                       "derived", f"{concurrency} slots x profile queue_per_slot {profile.concurrency.queue_per_slot}")
    window = decide("TAILOR_BATCH_WINDOW_MS", "batch_window_ms", float(profile.batching.batch_window_ms),
                    "profile", f"profile {profile.name}")
    preload = decide("TAILOR_PRELOAD", "preload", not tight, "derived",
                     "memory is tight: load on first request, no warm-up at start"
                     if tight else "memory allows loading and a warm-up before ready")

    budget = build_budget(pools, footprint, workers, concurrency, cache, on_gpu)
    for total in budget.totals:
        if not total.fits:
            warnings.append(f"{total.pool.upper()} budget is over by {format_size(-total.free_bytes)}: "
                            f"the plan needs more than {format_size(total.capacity_bytes)} minus headroom")
    container = container_spec(facts, profile, ram - ram_headroom, on_gpu)
    base_warning = base_image_for(facts, container.flavor)[1]
    if base_warning is not None:
        warnings.append(base_warning)
    runtime_values = {k: v for k, v in user.values.items() if k not in LAUNCH_KNOBS}
    launch_settings = {k: float(v[0]) for k, v in sorted(user.values.items()) if k in LAUNCH_KNOBS}
    for knob in launch_settings:
        prov[knob] = Provenance(knob, user.values[knob][0], user.values[knob][1], user.reasons[knob])
    env, env_prov, env_warnings = build_env(
        facts=facts, profile=profile, user_values=runtime_values, engine=engine, device=device,
        precision=precision, workers=workers, threads=threads, inter_op=inter_op, max_queue=max_queue,
        batching=batching, max_batch=max_batch, window_ms=window, preload=preload, cache_bytes=cache,
        tight=tight, memory_limit_bytes=container.memory_limit_bytes)
    warnings.extend(env_warnings)
    prov.update({p.name: p for p in env_prov})
    for var, field_name in _VARIABLE_FIELDS.items():
        if field_name in prov:
            prov[var] = replace(prov[field_name], name=var, value=env[var])
    return Plan(
        profile=profile.name, engine=engine, device=device, precision=precision, workers=workers,
        threads=threads, inter_op_threads=inter_op, max_concurrency=concurrency, max_queue=max_queue,
        batching=batching, max_batch_size=max_batch, batch_window_ms=window, preload=preload,
        cache_bytes=cache, memory_budget=budget, env=env,
        provenance=tuple(prov[k] for k in sorted(prov)), container=container,
        warnings=tuple(dict.fromkeys(warnings)), reasons=tuple(selection.reasons[:1]) + tuple(reasons),
        user_values=user.user_set(), launch_settings=launch_settings,
    )


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def step_down(plan: Plan, facts: HostFacts, profiles: ProfileSet) -> Plan | None:
    """The next smaller plan after an OOM kill, or None when nothing smaller exists.

    Order: halve the batch size, then halve the workers, then move to the next lower-priority
    profile that fits these facts (keeping the user's non-sizing settings). Each step is
    appended to ``steps`` and ``reasons``.
    """
    user_cli = {name: value for name, (value, _source) in plan.user_values.items()}
    current = profiles.get(plan.profile)
    if plan.batching and plan.max_batch_size > 1:
        new = plan.max_batch_size // 2
        return _replan(plan, facts, current, user_cli, {
            "TAILOR_MAX_BATCH_SIZE": str(new), "TAILOR_WORKERS": str(plan.workers),
            "TAILOR_THREADS_PER_WORKER": str(plan.threads)},
            f"OOM step-down: max batch size {plan.max_batch_size} -> {new}")
    if plan.workers > 1:
        new = plan.workers // 2
        return _replan(plan, facts, current, user_cli, {
            "TAILOR_WORKERS": str(new), "TAILOR_MAX_BATCH_SIZE": str(plan.max_batch_size),
            "TAILOR_THREADS_PER_WORKER": str(plan.threads)},
            f"OOM step-down: workers {plan.workers} -> {new}")
    for candidate in profiles.profiles:
        if candidate.priority < current.priority and judge(facts, candidate).status == FITS:
            kept = {k: v for k, v in user_cli.items() if k not in SIZING_VARIABLES}
            return _replan(plan, facts, candidate, kept, {},
                           f"OOM step-down: {current.name} is at its smallest; moving to profile {candidate.name}")
    return None


def _replan(plan: Plan, facts: HostFacts, profile: Profile, user_values: Mapping[str, str],
            stepped: Mapping[str, str], step: str) -> Plan:
    selection = Selection(profile, True, (f"{profile.name}: chosen by OOM step-down",), (), ())
    sources = {k: plan.user_values[k][1] for k in user_values}
    # Re-apply the user's values under their original sources (config < env < cli).
    env = {k: v for k, v in user_values.items() if sources[k] == "env"}
    cli = {k: v for k, v in user_values.items() if sources[k] == "cli"}
    from_file = {k: v for k, v in user_values.items() if sources[k] not in ("env", "cli")}
    label = next((sources[k] for k in from_file), "config")  # "config", or "tuned"...
    config = UserConfig(source="stored plan", values=from_file, label=label)
    new = make_plan(facts, selection, cli, env, config, stepped=stepped, step_reason=step)
    return replace(new, steps=(*plan.steps, step), reasons=(*new.reasons, step))


__all__ = ["Plan", "make_plan", "step_down"]
