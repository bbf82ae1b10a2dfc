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

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from orchestrator.errors import PlanError
from orchestrator.model import Reader, check_version, from_jsonable, read_json_file, to_jsonable
from orchestrator.plan import engine_image
from orchestrator.plan.budget import MemoryBudget, build_budget, plans_solo_wide
from orchestrator.plan.container_spec import (
    ContainerSpec,
    base_image_for,
    container_spec,
    pids_limit_for,
    sizing_reasons,
)
from orchestrator.plan.decisions import default_port
from orchestrator.plan.model_fit import (
    first_family,
    fit_env,
    fit_reasons,
    fit_warnings,
    model_request,
)
from orchestrator.plan.processes import decide_processes, pod_processes, scale_budget
from orchestrator.plan.runtime_env import Provenance, build_env
from orchestrator.plan.steps import Choices, Planning
from orchestrator.plan.user_config import LAUNCH_KNOBS, UserConfig, Value, parse_value, value_text
from orchestrator.probe.facts import HostFacts
from orchestrator.select.fit import ModelFit, fit_model
from orchestrator.select.profiles import Profile, ProfileSet
from orchestrator.select.selection import (
    FITS,
    ModelRequest,
    Selection,
    gpu_memory_bytes,
    judge,
    refusal,
    selection_of,
)
from orchestrator.units import format_size
from runtime.families.catalog import DEFAULT_FAMILY, family
from runtime.settings import VARIABLES

PLAN_VERSION = 3
"""3: each value is stored once: the typed fields (``workers``, ``port``, ``max_queue``...) hold
their settings and ``other_env`` only the variables no field holds; the runtime's whole
environment (:attr:`Plan.env`) is made from them when it is written or launched.
2: the port was recorded once, in ``env`` (``container.port`` gone), and ``container.pids_limit``
planned; the sized settings were in ``env`` as text as well as in their fields.
Versions 1 and 2 are still read (upgraded on reading); other versions are refused."""
SIZING_VARIABLES = ("TAILOR_ENGINE", "TAILOR_DEVICE", "TAILOR_PRECISION", "TAILOR_WORKERS",
                    "TAILOR_THREADS_PER_WORKER", "TAILOR_MAX_BATCH_SIZE", "TAILOR_MAX_QUEUE", "TAILOR_PROCESSES")


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
    port: int
    """The runtime's TCP port (``TAILOR_PORT``)."""
    memory_budget: MemoryBudget
    other_env: Mapping[str, str]
    """The runtime variables no typed field holds (``TAILOR_LOG_LEVEL``, ``OMP_NUM_THREADS``...),
    name -> value, sorted by name. The whole environment is :attr:`env`."""
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
    model: str = DEFAULT_FAMILY
    """The model family (``TAILOR_MODEL``; runtime/families/catalog.py)."""
    model_fit: ModelFit | None = None
    """How the family fits this machine: placement, reductions with their numbers, needs
    (select/fit.py). None only in plan files written before model families."""
    processes: int = 1
    """Server processes behind the one port (TAILOR_PROCESSES; see orchestrator/plan/processes.py)."""

    @property
    def env(self) -> dict[str, str]:
        """The runtime's whole environment, name -> text, sorted by name: :attr:`other_env` plus the
        typed fields as text (``value_text``). Made here, where a render or a launch writes it."""
        typed = {var: value_text(getattr(self, name)) for var, name in _VARIABLE_FIELDS.items()}
        return dict(sorted({**self.other_env, **typed}.items()))

    def to_dict(self) -> dict[str, Any]:
        """The plan's stored form (``plan.json``), with its format version: each value once."""
        data: dict[str, Any] = {"plan_version": PLAN_VERSION, **to_jsonable(self)}
        return data

    def to_view(self) -> dict[str, Any]:
        """What ``deploy plan --json`` prints: :meth:`to_dict` plus ``env``, the runtime's whole
        environment as text (for scripts that read it, such as benchmarks/local_runtime.py)."""
        return {**self.to_dict(), "env": self.env}

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "plan") -> Plan:
        """Strict reader: every field type-checked; errors name ``source`` and the field."""
        reader = Reader(PlanError, source, "render the deployment again with `deploy render --out DIR` "
                                           "or `deploy auto`")
        if isinstance(data, dict) and data.get("plan_version") == 1:
            data = _from_version_1(data)
        if isinstance(data, dict) and data.get("plan_version") == 2:
            data = _from_version_2(data, reader)
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


def _from_version_1(data: dict[str, Any]) -> dict[str, Any]:
    """A version-1 plan.json in today's form: the port lived twice (``container.port`` and env
    ``TAILOR_PORT``; the env wins, as it did at launch) and the process limit was not planned yet
    (it is decided now from the container's CPUs, as a new plan would)."""
    container = data.get("container")
    if not isinstance(container, dict):
        return data  # the strict reader names what is missing
    upgraded = {k: v for k, v in container.items() if k != "port"}
    cpus = container.get("cpus")
    if "pids_limit" not in upgraded and isinstance(cpus, (int, float)) and not isinstance(cpus, bool):
        upgraded["pids_limit"] = pids_limit_for(cpus)
    return {**data, "plan_version": 2, "container": upgraded}


def _from_version_2(data: dict[str, Any], reader: Reader) -> dict[str, Any]:
    """A version-2 plan.json in today's form: ``env`` held every variable as text, the sized ones
    (``TAILOR_WORKERS``...) twice, as a field too. The port becomes a field (from ``env``, where
    version 2 kept it), the other fields stay, and ``other_env`` keeps what no field holds."""
    env = data.get("env")
    if not isinstance(env, dict):
        return {**data, "plan_version": PLAN_VERSION}  # the strict reader names what is missing
    port = env.get("TAILOR_PORT")
    if not isinstance(port, str) or not port.isdigit():
        raise reader.fail("env.TAILOR_PORT", f"must be a port number, got {port!r}")
    rest = {k: v for k, v in data.items() if k != "env"}
    return {**rest, "plan_version": PLAN_VERSION, "port": int(port),
            "other_env": {k: v for k, v in env.items() if k not in _VARIABLE_FIELDS}}


_VARIABLE_FIELDS = {v.name: v.knob for v in VARIABLES if v.knob in {f.name for f in fields(Plan)}}
"""Runtime variable -> the Plan field that holds it: a Plan field is named after its knob
(``threads`` holds TAILOR_THREADS_PER_WORKER), so this follows from the knob table."""


def make_plan(facts: HostFacts, selection: Selection, overrides: Mapping[str, str] | None = None,
              environ: Mapping[str, str] | None = None, config: UserConfig | None = None,
              *, stepped: Mapping[str, Value] | None = None, step_reason: str = "", user: Choices | None = None) -> Plan:
    """Every runtime number for ``selection.chosen`` on ``facts`` (pure; see the module doc).

    ``overrides`` are command-line values by knob (``workers``) or variable name; ``environ``
    is the user's environment; ``stepped`` are step-down values (see :func:`step_down`). The plan
    uses the selection's decisions as they are: ``selection.facts`` (``facts`` completed, as
    judged) and ``selection.gpus``; it never completes the facts or chooses GPUs again.
    """
    profile, facts, gpus = selection.chosen, selection.facts, selection.gpus  # as judged: completed, GPUs chosen
    if user is None:  # the pipeline passes the values it already parsed
        user = Choices(overrides or {}, environ or {}, config, stepped or {}, step_reason)
    warnings: list[str] = list(selection.warnings)
    request = model_request(user)
    fit = selection.fit if selection.fit is not None and selection.model.family == request.family else None
    if fit is None:  # chosen without judging the model (an OOM step-down): fit it here
        fit = fit_model(request.family, facts, profile, gpus, request.pinned, allow_cpu=True)
        if not fit.fits:
            raise refusal(request, [(profile.name, fit)])
    spec = request.family
    planning = Planning(facts, profile, user, warnings, gpus, fit)
    prov = planning.prov
    model_name = planning.decide("TAILOR_MODEL", "model", spec.name, "default", "runtime default")

    engine, device, precision = planning.device_and_precision()
    on_gpu = device == "cuda"
    pools = planning.pools(on_gpu)
    placement = dataclasses.replace(fit.placement, engine=engine, device=device, precision=precision,
                                    offloaded=fit.placement.offloaded if on_gpu else frozenset())
    footprint = spec.footprint(placement)
    planning.reasons.extend(fit_reasons(spec, fit))
    warnings.extend(fit_warnings(spec, fit, facts))
    sizing = planning.workers_and_threads(pools, footprint, on_gpu)
    batch = planning.batching(pools, footprint, on_gpu, sizing)

    budget = build_budget(pools, footprint, sizing.workers, batch.concurrency, sizing.cache_bytes, on_gpu,
                          planning.devices, solo_wide=plans_solo_wide(device, sizing.workers, batch.tight))
    # Server processes (orchestrator/plan/processes.py): every budget row is per process.
    usable_cpus = max(1, facts.cpu.effective_cpus - profile.threads.reserve_cpus)
    decided = decide_processes(on_gpu=on_gpu, devices=planning.devices, usable_cpus=usable_cpus, budget=budget,
                               card_bytes=gpu_memory_bytes(facts, planning.gpus), jetson=facts.jetson is not None)
    processes = planning.decide("TAILOR_PROCESSES", "processes", decided.processes, "derived", decided.reason)
    planning.reasons.append(decided.reason if processes == decided.processes else
                            f"processes={processes}: {prov['processes'].reason} (the plan would run "
                            f"{decided.processes})")
    one_process_budget, budget = budget, scale_budget(budget, processes)
    for total in budget.totals:
        if not total.fits:
            warnings.append(f"{total.pool.upper()} budget is over by {format_size(-total.free_bytes)}: "
                            f"the plan needs more than {format_size(total.capacity_bytes)} minus headroom")
    if budget.load_peak is not None and not budget.load_peak.fits:
        warnings.append(f"{budget.load_peak.pool.upper()} at load peak is over by "
                        f"{format_size(-budget.load_peak.free_bytes)}: loading {sizing.workers} instance(s) needs "
                        f"more than {format_size(budget.load_peak.capacity_bytes)} minus headroom")
    gpus = planning.gpus
    container = container_spec(facts, profile, pools.ram_capacity_bytes - pools.ram_headroom_bytes, on_gpu,
                               gpus=gpus, budget=budget, cpus_used=sizing.workers * sizing.threads,
                               workers=sizing.workers, family=model_name)
    if processes > 1 and container.k8s_replicas > 1:  # a pod per GPU runs its share of the processes
        pod = container_spec(facts, profile, pools.ram_capacity_bytes - pools.ram_headroom_bytes, on_gpu, gpus=gpus,
                             budget=scale_budget(one_process_budget, pod_processes(processes, container.k8s_replicas)),
                             cpus_used=sizing.workers * sizing.threads, workers=sizing.workers, family=model_name)
        container = replace(container, k8s_request_memory_bytes=pod.k8s_request_memory_bytes)
    planning.reasons.extend(sizing_reasons(container, facts))
    base_warning = base_image_for(facts, container.flavor, gpus)[1]
    if base_warning is not None:
        warnings.append(base_warning)
    limits = planning.input_limits(device, sizing.workers)
    runtime_values = {k: v for k, v in user.values.items() if k not in LAUNCH_KNOBS}
    launch_settings = {k: float(user.typed(k)) for k in sorted(user.typed_values) if k in LAUNCH_KNOBS}
    for knob in launch_settings:
        prov[knob] = Provenance(knob, user.values[knob][0], user.values[knob][1], user.reasons[knob])
    env, env_prov, env_warnings = build_env(
        facts=facts, profile=profile, user_values=runtime_values, engine=engine, device=device,
        precision=precision, workers=sizing.workers, threads=sizing.threads, inter_op=batch.inter_op,
        max_queue=batch.max_queue, batching=batch.batching, max_batch=batch.max_batch, window_ms=batch.window_ms,
        preload=batch.preload, cache_bytes=sizing.cache_bytes, tight=batch.tight,
        memory_limit_bytes=container.memory_limit_bytes,
        gpu_uuids=tuple(g.uuid for g in gpus.used) if on_gpu and facts.jetson is None else (),
        fallback_threads=_fallback_threads(facts, profile, sizing.workers) if on_gpu else sizing.threads,
        family=model_name, model_env={**fit_env(fit, "the model fit (see the model reductions in --explain)"), **limits})
    warnings.extend(env_warnings)
    prov.update({p.name: p for p in env_prov})
    if container.flavor == engine_image.FLAVOR:
        reasons, warning = _engine_image_notes(container, env, facts)
        planning.reasons.extend(reasons)
        if warning:
            warnings.append(warning)
    env["TAILOR_PROCESSES"] = str(processes)
    if processes > 1 and "TAILOR_RSS_SOFT_LIMIT_BYTES" not in runtime_values:
        env["TAILOR_RSS_SOFT_LIMIT_BYTES"] = str(container.memory_limit_bytes * 9 // 10 // processes)
        prov["TAILOR_RSS_SOFT_LIMIT_BYTES"] = Provenance(
            "TAILOR_RSS_SOFT_LIMIT_BYTES", env["TAILOR_RSS_SOFT_LIMIT_BYTES"], "derived",
            f"90% of the memory limit / {processes} server processes (each checks its own RSS): "
            "refuse new work before the OOM killer acts")
    for var, field_name in _VARIABLE_FIELDS.items():
        if field_name in prov:
            prov[var] = replace(prov[field_name], name=var, value=env[var])
    return Plan(
        profile=profile.name, engine=engine, device=device, precision=precision, workers=sizing.workers,
        threads=sizing.threads, inter_op_threads=batch.inter_op, max_concurrency=batch.concurrency,
        max_queue=batch.max_queue, batching=batch.batching, max_batch_size=batch.max_batch,
        batch_window_ms=batch.window_ms, preload=batch.preload, cache_bytes=sizing.cache_bytes,
        port=_port(user), memory_budget=budget,
        other_env={k: v for k, v in env.items() if k not in _VARIABLE_FIELDS}, provenance=tuple(prov[k] for k in sorted(prov)), container=container,
        warnings=tuple(dict.fromkeys(warnings)),
        reasons=tuple(selection.reasons[:1]) + tuple(planning.reasons),
        user_values=user.user_set(), launch_settings=launch_settings, model=model_name, model_fit=fit,
        processes=processes,
    )


def _engine_image_notes(container: ContainerSpec, env: Mapping[str, str],
                        facts: HostFacts) -> tuple[list[str], str]:
    """Why IndexTTS2 runs from its own image, and a warning where a host process lacks its interpreter."""
    reasons = [f"image: {container.image}, IndexTTS2's engine image (templates/docker/{engine_image.DOCKERFILE}.j2): "
               f"IndexTTS2 pins {engine_image.PINS}, which Tailor's runtime images do not hold, so its engine "
               f"runs from its own venv {engine_image.ENGINE_VENV} ({engine_image.PYTHON_VARIABLE}="
               f"{engine_image.ENGINE_PYTHON} in containers), torch from the {engine_image.torch_build(container.cuda_build)} "
               "build, beside Tailor's runtime in /opt/tailor"]
    if facts.jetson is not None:
        reasons.append("IndexTTS2 on Jetson: the engine image installs torch from PyPI/PyTorch's index, which has no "
                       "L4T CUDA build; build the engine venv with NVIDIA's Jetson torch 2.8 instead")
    warning = ""
    if env.get("TAILOR_INDEXTTS2_ADAPTER", "real") == "real" and not env.get(engine_image.PYTHON_VARIABLE, "").strip():
        warning = (f"{engine_image.PYTHON_VARIABLE} is unset: the container targets set it to the engine image's "
                   f"{engine_image.ENGINE_PYTHON}, but the process backend and the systemd unit run the runtime's own "
                   f"interpreter, which needs IndexTTS2 ({engine_image.PINS}) installed; make its venv: "
                   + engine_image.venv_recipe())
    return reasons, warning


def _port(user: Choices) -> int:
    """The user's port (typed where it entered), else the runtime's default."""
    chosen = user.typed("TAILOR_PORT")
    return default_port() if chosen is None else int(chosen)


def _fallback_threads(facts: HostFacts, profile: Profile, workers: int) -> int:
    """Intra-op threads of each CPU fallback instance: the CPUs the plan gives each worker."""
    usable = max(1, facts.cpu.effective_cpus - profile.threads.reserve_cpus)
    return max(1, min(profile.threads.per_worker_max, usable // max(1, workers)))


def step_down(plan: Plan, facts: HostFacts, profiles: ProfileSet) -> Plan | None:
    """The next smaller plan after an OOM kill, or None when nothing smaller exists.

    Order: halve the server processes, then halve the batch size, then halve the workers, then move to the next lower-priority
    profile that fits these facts (keeping the user's non-sizing settings). Each step is
    appended to ``steps`` and ``reasons``.
    """
    user_cli = {name: value for name, (value, _source) in plan.user_values.items()}
    current = profiles.get(plan.profile)
    if plan.processes > 1:  # each process holds its own weights, context and working memory
        new = plan.processes // 2
        return _replan(plan, facts, current, user_cli, {
            "TAILOR_PROCESSES": new, "TAILOR_MAX_BATCH_SIZE": plan.max_batch_size,
            "TAILOR_WORKERS": plan.workers, "TAILOR_THREADS_PER_WORKER": plan.threads},
            f"OOM step-down: server processes {plan.processes} -> {new}")
    if plan.batching and plan.max_batch_size > 1:
        new = plan.max_batch_size // 2
        return _replan(plan, facts, current, user_cli, {
            "TAILOR_MAX_BATCH_SIZE": new, "TAILOR_WORKERS": plan.workers,
            "TAILOR_THREADS_PER_WORKER": plan.threads, "TAILOR_PROCESSES": plan.processes},
            f"OOM step-down: max batch size {plan.max_batch_size} -> {new}")
    if plan.workers > 1:
        new = plan.workers // 2
        return _replan(plan, facts, current, user_cli, {
            "TAILOR_WORKERS": new, "TAILOR_MAX_BATCH_SIZE": plan.max_batch_size,
            "TAILOR_THREADS_PER_WORKER": plan.threads, "TAILOR_PROCESSES": plan.processes},
            f"OOM step-down: workers {plan.workers} -> {new}")
    model = ModelRequest(family(first_family(plan.model)))
    judged = selection_of(facts, current, "", _user_environ(plan), model)  # the facts completed, the GPUs chosen
    for candidate in profiles.profiles:
        if candidate.priority < current.priority and judge(judged.facts, candidate, judged.gpus, model).status == FITS:
            kept = {k: v for k, v in user_cli.items() if k not in SIZING_VARIABLES}
            return _replan(plan, facts, candidate, kept, {},
                           f"OOM step-down: {current.name} is at its smallest; moving to profile {candidate.name}")
    return None


def _user_environ(plan: Plan) -> dict[str, str]:
    """The values the user had set in the environment (CUDA_VISIBLE_DEVICES among them)."""
    return {k: v for k, (v, source) in plan.user_values.items() if source == "env"}


def _replan(plan: Plan, facts: HostFacts, profile: Profile, user_values: Mapping[str, str],
            stepped: Mapping[str, Value], step: str) -> Plan:
    sources = {k: plan.user_values[k][1] for k in user_values}
    # Re-apply the user's values under their original sources (config < env < cli).
    env = {k: v for k, v in user_values.items() if sources[k] == "env"}
    selection = selection_of(facts, profile, f"{profile.name}: chosen by OOM step-down", env)
    cli = {k: v for k, v in user_values.items() if sources[k] == "cli"}
    from_file = {k: v for k, v in user_values.items() if sources[k] not in ("env", "cli")}
    label = next((sources[k] for k in from_file), "config")  # "config", or "tuned"...
    config = UserConfig(source="stored plan", label=label,
                        values={k: parse_value(k, v, "stored plan") for k, v in from_file.items()})
    new = make_plan(facts, selection, cli, env, config, stepped=stepped, step_reason=step)
    return replace(new, steps=(*plan.steps, step), reasons=(*new.reasons, step))


__all__ = ["Plan", "make_plan", "step_down"]
