"""From facts to a supervised runtime: plan, write the deployment directory, pick a backend, wire the supervisor.

A deployment directory (``<state dir>/rendered``, or any ``deploy render --out DIR``) holds
``plan.json`` and ``facts.json`` (what ``deploy up DIR`` and the OOM step-down need) plus the
rendered configs. The state directory holds ``state.json``, ``runtime.log`` (process backend)
and ``supervisor.log``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import LaunchError, PlanError, UsageError
from orchestrator.launch.process_backend import LOG_FILE, ProcessRunner
from orchestrator.launch.rendered import spec_from_rendered_dir
from orchestrator.launch.runner import Runner
from orchestrator.launch.spec import PLAN_FILE, LaunchSpec, load_plan_file, spec_from_plan_dict
from orchestrator.probe.facts import HostFacts
from orchestrator.supervise.http_client import check_ready
from orchestrator.supervise.state import DeploymentState, process_start_time, write_state
from orchestrator.supervise.supervisor import Policy, Snapshot, Supervisor

FACTS_FILE = "facts.json"
RENDERED_DIR = "rendered"
SUPERVISOR_LOG = "supervisor.log"
BACKENDS = ("auto", "docker", "process")


@dataclass(frozen=True)
class Prepared:
    plan: dict[str, Any] | None
    """The plan's JSON form; None for a directory rendered without plan.json."""
    facts: HostFacts | None
    spec: LaunchSpec
    directory: Path
    """The deployment directory (plan.json, facts.json, rendered configs)."""
    notes: tuple[str, ...] = ()


def plan_deployment(state_dir: Path, environ: Mapping[str, str], *, facts_file: Path | None,
                    profile: str | None, port: int | None) -> Prepared:
    """probe (or read ``facts_file``) -> select -> plan -> write the deployment directory."""
    from orchestrator.plan.planner import make_plan
    from orchestrator.select.profiles import load_profiles
    from orchestrator.select.selection import select_profile

    if facts_file is not None:
        facts = HostFacts.from_json_file(facts_file)
    else:
        from orchestrator.probe.host import probe_host

        facts = probe_host(environ=environ)
    selection = select_profile(facts, load_profiles(), profile)
    overrides = {"TAILOR_PORT": str(port)} if port is not None else {}
    plan = make_plan(facts, selection, overrides, environ)
    directory = state_dir / RENDERED_DIR
    notes = write_deployment_dir(directory, plan.to_dict(), facts)
    return load_deployment(directory, port=port, notes=notes)


def write_deployment_dir(directory: Path, plan: dict[str, Any], facts: HostFacts) -> tuple[str, ...]:
    """plan.json + facts.json, then the renderer's files (compose, .env, k8s, systemd) when it is available."""
    write_plan_files(directory, plan, facts)
    return render_into(directory, plan)


def write_plan_files(directory: Path, plan: dict[str, Any], facts: HostFacts) -> tuple[Path, Path]:
    """plan.json + facts.json: what `deploy up DIR` needs to step a deployment down after an OOM kill."""
    directory.mkdir(parents=True, exist_ok=True)
    _write_json(directory / PLAN_FILE, plan)
    _write_json(directory / FACTS_FILE, facts.to_dict())
    return directory / PLAN_FILE, directory / FACTS_FILE


def render_into(directory: Path, plan: dict[str, Any], network: str = "bridge") -> tuple[str, ...]:
    """Render every format of ``orchestrator.render.renderer`` into ``directory``."""
    from orchestrator.plan.planner import Plan
    from orchestrator.render.renderer import RenderOptions, render, write_rendered

    written = write_rendered(render(Plan.from_dict(plan), options=RenderOptions(network=network)), directory)
    return (f"rendered {', '.join(p.name for p in written)} into {directory}",)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def load_deployment(directory: Path, *, port: int | None = None, notes: tuple[str, ...] = ()) -> Prepared:
    """Read a deployment directory written by ``deploy auto`` / ``deploy render --out``."""
    if not (directory / PLAN_FILE).is_file():
        spec = spec_from_rendered_dir(directory)
        if port is not None and port != spec.port:
            spec = spec.with_port(port)
        return Prepared(plan=None, facts=None, spec=spec, directory=directory,
                        notes=(*notes, f"no {PLAN_FILE} in {directory}: launching from docker-compose.yml + .env; "
                               "an OOM kill cannot be stepped down"))
    plan = load_plan_file(directory)
    spec = spec_from_plan_dict(plan, source=str(directory / PLAN_FILE))
    if port is not None and port != spec.port:
        spec = spec.with_port(port)
    facts_path = directory / FACTS_FILE
    if not facts_path.is_file():
        raise LaunchError(f"{facts_path} does not exist", "re-render with `deploy render --out DIR` or use `deploy auto`")
    return Prepared(plan=plan, facts=HostFacts.from_json_file(facts_path), spec=spec, directory=directory,
                    notes=notes)


def choose_backend(requested: str, environ: Mapping[str, str]) -> tuple[str, str]:
    """``(backend, why)``. ``auto`` is docker when a daemon answers, else process."""
    if requested not in BACKENDS:
        raise UsageError(f"--backend {requested!r} is not one of {', '.join(BACKENDS)}", "use auto, docker or process")
    if requested == "process":
        return "process", "chosen with --backend process"
    from orchestrator.launch.docker_backend import daemon_status

    status = daemon_status(environ)
    if requested == "docker":
        if not status.reachable:
            raise LaunchError(status.reason, "start the Docker daemon or set DOCKER_HOST, or use --backend process")
        return "docker", status.reason
    if status.reachable:
        return "docker", status.reason
    return "process", status.reason


def step_down_function(prepared: Prepared, log: Callable[[str], None]) -> Callable[[LaunchSpec], tuple[LaunchSpec, str] | None]:
    """Wraps ``orchestrator.plan.step_down`` for the supervisor (keeps port and network mode)."""
    from orchestrator.plan.planner import Plan, step_down
    from orchestrator.select.profiles import load_profiles

    profiles = load_profiles()

    def down(spec: LaunchSpec) -> tuple[LaunchSpec, str] | None:
        if spec.plan is None or prepared.facts is None:
            log("step-down impossible: no plan.json and facts.json in the deployment directory")
            return None
        try:
            smaller = step_down(Plan.from_dict(spec.plan), prepared.facts, profiles)
        except PlanError as exc:
            log(f"step-down impossible: {exc.message}")
            return None
        if smaller is None:
            return None
        data = smaller.to_dict()
        new = spec_from_plan_dict(data).with_port(spec.port).with_network_mode(spec.network_mode)
        _write_json(prepared.directory / "plan.stepped.json", data)
        return new, smaller.steps[-1] if smaller.steps else "stepped down"

    return down


def runner_factory(backend: str, state_dir: Path, environ: Mapping[str, str]) -> Callable[[LaunchSpec], Runner]:
    if backend == "process":
        return lambda spec: ProcessRunner(spec, state_dir, environ=environ)
    from orchestrator.launch.docker_backend import DockerRunner, connect

    client = connect(environ)
    deployment = str(state_dir.resolve())
    return lambda spec: DockerRunner(spec, client, deployment)


def make_supervisor(prepared: Prepared, backend: str, backend_reason: str, state_dir: Path,
                    environ: Mapping[str, str], log: Callable[[str], None], *,
                    policy: Policy | None = None) -> Supervisor:
    """A supervisor whose every change is written to ``state_dir/state.json``.

    The stop grace is the runtime's own drain time (TAILOR_SHUTDOWN_GRACE_S) plus 5 s, so a
    clean stop lets in-flight requests finish before SIGKILL.
    """
    policy = policy or Policy()
    try:
        drain_s = float(prepared.spec.env_map.get("TAILOR_SHUTDOWN_GRACE_S", "20"))
    except ValueError:
        drain_s = 20.0
    policy = dataclasses.replace(policy, stop_grace_s=max(policy.stop_grace_s, drain_s + 5.0))
    pid = os.getpid()
    started = process_start_time(pid) or 0.0
    log_path = str(state_dir / LOG_FILE) if backend == "process" else ""

    def record(snap: Snapshot) -> None:
        write_state(state_dir, state_from_snapshot(snap, backend=backend, backend_reason=backend_reason,
                                                   supervisor_pid=pid, supervisor_started_at_s=started,
                                                   log_path=log_path, rendered_dir=str(prepared.directory)))

    return Supervisor(prepared.spec, runner_factory(backend, state_dir, environ),
                      lambda spec: check_ready(spec.url), policy=policy, rng=random.Random(),
                      step_down=step_down_function(prepared, log), on_change=record, log=log)


def state_from_snapshot(snap: Snapshot, *, backend: str, backend_reason: str, supervisor_pid: int,
                        supervisor_started_at_s: float, log_path: str, rendered_dir: str) -> DeploymentState:
    import time

    return DeploymentState(
        profile=snap.spec.profile, backend=backend, backend_reason=backend_reason, url=snap.spec.url,
        state=snap.state.value, state_reason=snap.reason, supervisor_pid=supervisor_pid,
        supervisor_started_at_s=supervisor_started_at_s, runner_id=snap.runner_id,
        instance_started_at_s=snap.instance_started_at_s, restarts=snap.restarts, step_downs=snap.step_downs,
        last_health=snap.last_health, last_health_at_s=snap.last_health_at_s,
        last_exit_reason=snap.last_exit_reason, log_path=log_path, rendered_dir=rendered_dir,
        last_log_lines=snap.last_log_lines, transitions=snap.transitions, updated_at_s=time.time(),
    )
