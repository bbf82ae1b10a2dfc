"""From facts to a supervised runtime: plan, write the deployment directory, wire the supervisor to
the backend launch/ chose (orchestrator/launch/backends.py picks it and builds its runners).

A deployment directory (``<state dir>/rendered``, or any ``deploy render --out DIR``) holds
``plan.json`` and ``facts.json`` (what ``deploy up DIR`` and the OOM step-down need) plus the
rendered configs. The state directory holds ``state.json``, ``runtime.log`` (process backend)
and ``supervisor.log``.
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from orchestrator import pipeline
from orchestrator.errors import LaunchError, PlanError
from orchestrator.files import write_json_atomic
from orchestrator.launch.backends import adopted_runner, runner_factory
from orchestrator.launch.identity import boot_seconds, read_stamp, wall_start_time
from orchestrator.launch.process_backend import LOG_FILE
from orchestrator.launch.rendered import spec_from_rendered_dir
from orchestrator.launch.runner import RuntimeIdentity
from orchestrator.launch.spec import FACTS_FILE, PLAN_FILE, LaunchSpec
from orchestrator.plan.planner import Plan
from orchestrator.probe.facts import HostFacts
from orchestrator.select.profiles import ProfileSet, load_profiles
from orchestrator.supervise.http_client import check_ready
from orchestrator.supervise.state import DeploymentState, recorded_runtime, write_state
from orchestrator.supervise.supervisor import Policy, Snapshot, Supervisor

RENDERED_DIR = "rendered"
SUPERVISOR_LOG = "supervisor.log"
RSS_SOFT_LIMIT = "TAILOR_RSS_SOFT_LIMIT_BYTES"


@dataclass(frozen=True)
class Prepared:
    plan: Plan | None
    """None for a directory rendered without plan.json."""
    facts: HostFacts | None
    spec: LaunchSpec
    directory: Path
    """The deployment directory (plan.json, facts.json, rendered configs)."""
    notes: tuple[str, ...] = ()
    profiles: ProfileSet | None = None
    """The profiles the plan was chosen from (built-ins + --profiles), for the OOM step-down."""

    @property
    def launch_settings(self) -> Mapping[str, float]:
        """``startup_timeout_s`` / ``health_interval_s`` from the config file or --set (empty if none)."""
        return self.plan.launch_settings if self.plan is not None else {}


def plan_deployment(state_dir: Path, inputs: pipeline.Inputs) -> Prepared:
    """The pipeline (probe or --facts, --profiles, --config, --set, flags) -> ``<state dir>/rendered``."""
    planned = pipeline.plan_from(inputs)
    directory = state_dir / RENDERED_DIR
    written = pipeline.write_deployment(directory, planned)
    note = f"rendered {', '.join(p.name for p in written)} into {directory}"
    return Prepared(plan=planned.plan, facts=planned.facts, spec=planned.spec, directory=directory,
                    notes=(*planned.notes, note), profiles=planned.profiles)


def load_deployment(directory: Path, *, port: int | None = None, notes: tuple[str, ...] = ()) -> Prepared:
    """Read a deployment directory written by ``deploy auto`` / ``deploy render --out``."""
    if not (directory / PLAN_FILE).is_file():
        spec = spec_from_rendered_dir(directory)
        if port is not None and port != spec.port:
            spec = spec.with_port(port)
        return Prepared(plan=None, facts=None, spec=spec, directory=directory,
                        notes=(*notes, f"no {PLAN_FILE} in {directory}: launching from docker-compose.yml + .env; "
                               "an OOM kill cannot be stepped down"))
    plan = Plan.from_json_file(directory / PLAN_FILE)
    spec = LaunchSpec.from_plan(plan)
    if port is not None and port != spec.port:
        spec = spec.with_port(port)
    facts_path = directory / FACTS_FILE
    if not facts_path.is_file():
        raise LaunchError(f"{facts_path} does not exist", "re-render with `deploy render --out DIR` or use `deploy auto`")
    return Prepared(plan=plan, facts=HostFacts.from_json_file(facts_path), spec=spec, directory=directory,
                    notes=notes)


def step_down_function(prepared: Prepared, log: Callable[[str], None]) -> Callable[[LaunchSpec], tuple[LaunchSpec, str] | None]:
    """Wraps ``orchestrator.plan.step_down`` for the supervisor.

    It starts from what the runtime really ran with (the spec's env: TAILOR_WORKERS and friends,
    which an edited plan.json may set apart from its ``workers`` field) and keeps the launch's
    own limits: port, network mode and the plan's memory limit (a step-down fits the work into
    the limit it was given, it never recomputes a bigger one from the facts).
    """
    from orchestrator.plan.planner import step_down

    profiles = prepared.profiles or load_profiles()

    def down(spec: LaunchSpec) -> tuple[LaunchSpec, str] | None:
        if spec.plan is None or prepared.facts is None:
            log("step-down impossible: no plan.json and facts.json in the deployment directory")
            return None
        try:
            smaller = step_down(_as_run(spec.plan, spec), prepared.facts, profiles)
        except PlanError as exc:
            log(f"step-down impossible: {exc.message}")
            return None
        if smaller is None:
            return None
        if spec.memory_limit_bytes:
            smaller = dataclasses.replace(smaller, container=dataclasses.replace(
                smaller.container, memory_limit_bytes=spec.memory_limit_bytes))
        soft = spec.env_map.get(RSS_SOFT_LIMIT)
        if soft is not None and smaller.other_env.get(RSS_SOFT_LIMIT) != soft:
            # The runtime's memory-pressure threshold belongs to the limit kept above.
            smaller = dataclasses.replace(smaller, other_env={**smaller.other_env, RSS_SOFT_LIMIT: soft})
        new = LaunchSpec.from_plan(smaller).with_port(spec.port).with_network_mode(spec.network_mode)
        write_json_atomic(prepared.directory / "plan.stepped.json", smaller.to_dict(), mode=0o600)
        return new, smaller.steps[-1] if smaller.steps else "stepped down"

    return down


def _as_run(plan: Plan, spec: LaunchSpec) -> Plan:
    """The plan with the sizes the runtime was really started with (its env), where they differ."""
    run = dataclasses.replace(
        plan, workers=spec.setting("TAILOR_WORKERS", plan.workers),
        threads=spec.setting("TAILOR_THREADS_PER_WORKER", plan.threads),
        max_batch_size=spec.setting("TAILOR_MAX_BATCH_SIZE", plan.max_batch_size))
    return plan if run == plan else run


MODEL_LOAD_BYTES_PER_S = 50 * 1024 * 1024
"""A conservative rate for reading and initialising model weights (disk, session set-up)."""


def startup_budget(spec: LaunchSpec) -> tuple[float, str]:
    """Default start-up budget (seconds from start to ready) and how it was derived from the plan.

    Model load and warm-up grow with the number of engine instances (each worker loads its own
    session), with the engine (torch builds a module, onnxruntime maps a file), with the model
    weights the plan's memory budget counts (read at MODEL_LOAD_BYTES_PER_S) and with the
    device (a CUDA context and cuDNN autotuning take tens of seconds).
    """
    env = spec.env_map
    workers: int = spec.setting("TAILOR_WORKERS", 1)
    engine = env.get("TAILOR_ENGINE", "onnx")
    per_worker = 20 if engine == "onnx" else 45
    device = 60 if env.get("TAILOR_DEVICE", "cpu") not in ("cpu", "") else 0
    weights = 0
    if spec.plan is not None:
        weights = sum(r.bytes for r in spec.plan.memory_budget.rows if r.item.startswith("model weights"))
    load = round(weights / MODEL_LOAD_BYTES_PER_S)
    total = 60.0 + per_worker * workers + load + device
    why = (f"60 s + {per_worker} s x {workers} {engine} worker(s)"
           + (f" + {load} s for {weights // 1024**2} MiB of model weights" if load else "")
           + (f" + {device} s GPU start" if device else ""))
    return total, why


def launch_policy(spec: LaunchSpec, *, startup_timeout_s: float | None = None,
                  health_interval_s: float | None = None,
                  settings: Mapping[str, float] | None = None) -> tuple[Policy, str]:
    """The supervisor's timings and a sentence saying where each came from.

    Precedence: the flags (``startup_timeout_s``/``health_interval_s`` here), then the plan's
    launch settings (config file ``settings:`` or ``--set``), then the default derived from the
    plan (start-up budget) or the built-in one (health interval).
    """
    settings = settings or {}
    derived, why = startup_budget(spec)
    budget, budget_from = derived, why
    if startup_timeout_s is not None:
        budget, budget_from = startup_timeout_s, "--startup-timeout"
    elif "startup_timeout_s" in settings:
        budget, budget_from = settings["startup_timeout_s"], "settings startup_timeout_s"
    interval, interval_from = Policy().health_interval_s, "default"
    if health_interval_s is not None:
        interval, interval_from = health_interval_s, "--health-interval"
    elif "health_interval_s" in settings:
        interval, interval_from = settings["health_interval_s"], "settings health_interval_s"
    explain = (f"start-up budget {budget:g} s ({budget_from}), "
               f"health check every {interval:g} s ({interval_from})")
    return Policy(startup_budget_s=budget, health_interval_s=interval), explain


def make_supervisor(prepared: Prepared, backend: str, backend_reason: str, state_dir: Path,
                    environ: Mapping[str, str], log: Callable[[str], None], *,
                    policy: Policy | None = None, adopt: RuntimeIdentity | None = None) -> Supervisor:
    """A supervisor whose every change is written to ``state_dir/state.json``.

    The stop grace is the runtime's own drain time (TAILOR_SHUTDOWN_GRACE_S) plus 5 s, so a
    clean stop lets in-flight requests finish before SIGKILL. With ``adopt`` (a container a dead
    supervisor left, checked by the caller) it has already taken that container over (STARTING);
    otherwise the caller starts it.
    """
    policy = policy or Policy()
    try:
        drain_s = float(prepared.spec.env_map.get("TAILOR_SHUTDOWN_GRACE_S", "20"))
    except ValueError:
        drain_s = 20.0
    policy = dataclasses.replace(policy, stop_grace_s=max(policy.stop_grace_s, drain_s + 5.0))
    pid = os.getpid()
    started = wall_start_time(pid) or 0.0
    stamp = read_stamp(pid)
    log_path = str(state_dir / LOG_FILE) if backend == "process" else ""

    def record(snap: Snapshot) -> None:
        state = state_from_snapshot(snap, backend=backend, backend_reason=backend_reason,
                                    supervisor_pid=pid, supervisor_started_at_s=started,
                                    log_path=log_path, rendered_dir=str(prepared.directory))
        boot_started = None
        if snap.instance_started_mono_s is not None:  # SystemClock: time.monotonic()
            boot_started = boot_seconds() - (time.monotonic() - snap.instance_started_mono_s)
        write_state(state_dir, dataclasses.replace(
            state, supervisor_start_ticks=stamp.start_ticks if stamp else None,
            boot_id=stamp.boot_id if stamp else "", instance_started_boot_s=boot_started))

    factory = runner_factory(backend, state_dir, environ, recorded=recorded_runtime)
    sup = Supervisor(prepared.spec, factory,
                     lambda spec, instance: check_ready(spec.url, instance), policy=policy, rng=random.Random(),
                     step_down=step_down_function(prepared, log), on_change=record, log=log)
    if adopt is not None:
        runner = adopted_runner(factory, prepared.spec, adopt)
        sup.adopt(runner, f"adopted the running container {adopt.ident} (instance {adopt.instance_id}) "
                          "left by a supervisor that is gone")
    return sup


def state_from_snapshot(snap: Snapshot, *, backend: str, backend_reason: str, supervisor_pid: int,
                        supervisor_started_at_s: float, log_path: str, rendered_dir: str) -> DeploymentState:
    ident = snap.identity
    return DeploymentState(
        profile=snap.spec.profile, backend=backend, backend_reason=backend_reason, url=snap.spec.url,
        state=snap.state.value, state_reason=snap.reason, supervisor_pid=supervisor_pid,
        supervisor_started_at_s=supervisor_started_at_s, runner_id=snap.runner_id,
        instance_id=ident.instance_id if ident else "",
        runtime_start_ticks=ident.start_ticks if ident else None,
        cgroup_path=ident.cgroup_path if ident else "",
        instance_started_at_s=snap.instance_started_at_s, restarts=snap.restarts, step_downs=snap.step_downs,
        last_health=snap.last_health, last_health_at_s=snap.last_health_at_s,
        last_exit_reason=snap.last_exit_reason, log_path=log_path, rendered_dir=rendered_dir,
        last_log_lines=snap.last_log_lines, transitions=snap.transitions, updated_at_s=time.time(),
    )
