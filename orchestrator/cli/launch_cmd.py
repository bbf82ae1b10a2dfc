"""`deploy auto / up / status / logs / down`: thin commands over orchestrator.supervise.

Deciding, waiting and polling live in ``supervise/session.py`` (launch, detach, follow),
``supervise/status.py`` (the verdict) and ``supervise/teardown.py`` (down, stale clean-up);
these functions parse options, call them, and print.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrator.cli import options as opts
from orchestrator.cli import output as out
from orchestrator.cli.explain import print_sources, source_rows
from orchestrator.errors import UnhealthyError
from orchestrator.launch.process_backend import tail_lines
from orchestrator.launch.runner import RuntimeIdentity
from orchestrator.launch.spec import PLAN_FILE
from orchestrator.plan.planner import Plan
from orchestrator.supervise import deployment as dep
from orchestrator.supervise.session import LaunchOptions, follow_file, launch, prepare_state_dir
from orchestrator.supervise.state import DeploymentState, deploy_cmd, read_state, state_dir_from
from orchestrator.supervise.status import deployment_status
from orchestrator.supervise.teardown import stop_deployment


class _Out:
    """The CLI's output sink for the supervise stage."""

    def data(self, text: str) -> None:
        out.data(text, markup=False)

    def info(self, text: str) -> None:
        out.info(text)

    def warn(self, text: str) -> None:
        out.warn(text)


_LAUNCH_FLAGS: dict[str, Any] = {
    "backend": opts.BackendOpt, "detach": opts.DetachOpt, "synthesize": opts.SynthesizeOpt,
    "base_image": opts.BaseImageOpt, "wheelhouse": opts.WheelhouseOpt, "rebuild": opts.RebuildOpt,
    "network": opts.NetworkOpt, "startup_timeout_s": opts.StartupTimeoutOpt,
    "health_interval_s": opts.HealthIntervalOpt,
}
"""LaunchOptions field -> its command-line option, shared by `auto` and `up`; the default is the field's."""


def _with_launch_flags(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command`` the options of :data:`_LAUNCH_FLAGS` in place of its keyword-only
    ``launching`` parameter, and call it with their values packed into that one LaunchOptions.

    typer reads a command's options from ``inspect.signature`` and ``typing.get_type_hints``,
    so the wrapper's ``__signature__`` and ``__annotations__`` both list them.
    """
    defaults = {field.name: field.default for field in dataclasses.fields(LaunchOptions)}
    shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=defaults[name], annotation=option)
              for name, option in _LAUNCH_FLAGS.items()]
    signature = inspect.signature(command, eval_str=True)
    params = list(signature.parameters.values())
    at = list(signature.parameters).index("launching")
    signature = signature.replace(parameters=[*params[:at], *shared, *params[at + 1:]])

    @functools.wraps(command)
    def with_flags(**kwargs: Any) -> None:
        command(launching=LaunchOptions(**{name: kwargs.pop(name) for name in _LAUNCH_FLAGS}), **kwargs)

    with_flags.__signature__ = signature  # type: ignore[attr-defined]
    with_flags.__annotations__ = {name: param.annotation for name, param in signature.parameters.items()}
    return with_flags


@_with_launch_flags
def auto(
    facts: opts.FactsOpt = None,
    profile: opts.ProfileOpt = None,
    profiles_dirs: opts.ProfilesDirOpt = None,
    config: opts.ConfigOpt = None,
    sets: opts.SetOpt = None,
    workers: opts.WorkersOpt = None,
    threads: opts.ThreadsOpt = None,
    precision: opts.PrecisionOpt = None,
    port: opts.PortOpt = None,
    model: opts.ModelOpt = None,
    explain: opts.ExplainOpt = False,
    show_secrets: opts.ShowSecretsOpt = False,
    *,
    launching: LaunchOptions,
    state_dir: opts.StateDirOpt = None,
) -> None:
    """Probe, plan, render, build the image (docker), launch, wait until ready, supervise."""
    sd = state_dir_from(state_dir, os.environ)
    stale = prepare_state_dir(sd, os.environ, _Out())
    inputs = opts.pipeline_inputs(facts=facts, profile=profile, profiles_dirs=profiles_dirs, config=config,
                                  sets=sets, workers=workers, threads=threads, precision=precision, port=port,
                                  model=model)
    prepared = dep.plan_deployment(sd, inputs)
    if explain and prepared.plan is not None:
        print_sources(prepared.plan, show_secrets=show_secrets)
    launch(prepared, sd, os.environ, launching, _Out(), stale=stale)


@_with_launch_flags
def up(
    directory: opts.DirectoryArg = None,
    port: opts.PortOpt = None,
    *,
    launching: LaunchOptions,
    state_dir: opts.StateDirOpt = None,
    detached_child: Annotated[bool, typer.Option("--detached-child", hidden=True)] = False,
    backend_reason: Annotated[str | None, typer.Option("--backend-reason", hidden=True)] = None,
    adopt: Annotated[str | None, typer.Option("--adopt", hidden=True)] = None,
    adopt_instance: Annotated[str, typer.Option("--adopt-instance", hidden=True)] = "",
) -> None:
    """Launch and supervise from an already rendered directory (plan.json + facts.json).

    With a container left running by a supervisor that died, it adopts that container when it
    runs this plan and answers ready, and otherwise stops it first; it says which.
    """
    sd = state_dir_from(state_dir, os.environ)
    # A directory given is checked first: a wrong one is the mistake to hear about, whatever runs in sd.
    prepared = dep.load_deployment(directory, port=opts.checked_port(port)) if directory is not None else None
    stale = None if detached_child else prepare_state_dir(sd, os.environ, _Out())
    if prepared is None:
        prepared = dep.load_deployment(sd / dep.RENDERED_DIR, port=opts.checked_port(port))
    adopted = RuntimeIdentity(ident=adopt, instance_id=adopt_instance) if detached_child and adopt else None
    launching = dataclasses.replace(launching, detached_child=detached_child, backend_reason=backend_reason,
                                    adopt=adopted)
    launch(prepared, sd, os.environ, launching, _Out(), stale=stale)


def status(
    as_json: opts.JsonOpt = False,
    explain: opts.ExplainOpt = False,
    show_secrets: opts.ShowSecretsOpt = False,
    state_dir: opts.StateDirOpt = None,
) -> None:
    """Supervisor state, the runtime's own view (/readyz), pid/container, uptime, restarts, last exit.

    Exits 1 when the deployment is FATAL, in BACKOFF, STALE (supervisor gone), or RUNNING while
    the runtime itself is not ready.
    """
    sd = state_dir_from(state_dir, os.environ)
    report = deployment_status(sd)
    plan = _running_plan(sd) if explain else None
    if as_json:
        data = report.to_dict()
        if plan is not None:
            data["sources"] = source_rows(plan, show_secrets=show_secrets)
        out.data_json(data)
    else:
        for line in report.lines():
            out.data(line, markup=False)
        if plan is not None:
            print_sources(plan, show_secrets=show_secrets, title="Runtime environment (where each value came from)")
        if report.stale:
            out.warn(f"{report.stale}; `{deploy_cmd('down', sd)}` cleans up what it left behind, "
                     f"`{deploy_cmd('up', sd)}` starts anew")
    if report.problem:
        raise UnhealthyError(report.problem, f"see `{deploy_cmd('logs', sd)}`; `{deploy_cmd('down', sd)}` stops it, "
                                             f"`{deploy_cmd('up', sd)}` restarts it")


def _running_plan(sd: Path) -> Plan | None:
    """The plan of the recorded deployment (its rendered plan.json), for ``status --explain``."""
    state = read_state(sd)
    path = Path(state.rendered_dir) / PLAN_FILE
    if not state.rendered_dir or not path.is_file():
        out.warn(f"no {PLAN_FILE} in {state.rendered_dir or sd}: the deployment was launched from rendered "
                 "files only, so value sources are unknown")
        return None
    return Plan.from_json_file(path)


def logs(
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new lines.")] = False,
    lines: Annotated[int, typer.Option("-n", "--lines", min=0, help="How many recent lines.")] = 100,
    state_dir: opts.StateDirOpt = None,
) -> None:
    """The runtime's log (process: its log file; docker: the container's log)."""
    sd = state_dir_from(state_dir, os.environ)
    state = read_state(sd)
    if state.backend == "docker":
        _docker_logs(state, follow, lines)
        return
    path = Path(state.log_path) if state.log_path else sd / "runtime.log"
    for line in tail_lines(path, lines):
        out.data(line, markup=False)
    if follow:
        follow_file(path, sys.stdout)


def _docker_logs(state: DeploymentState, follow: bool, lines: int) -> None:
    from orchestrator.launch.docker_backend import (
        connect,
        container_logs,
        find_container,
        follow_logs,
    )

    client = connect(os.environ)
    container = find_container(client, state.runner_id) if state.runner_id else None
    if container is None:
        out.warn(f"container {state.runner_id or '(none)'} is gone; showing the last lines the supervisor kept")
        for line in state.last_log_lines[-lines:] if lines else ():
            out.data(line, markup=False)
        return
    if not follow:
        for line in container_logs(container, lines):
            out.data(line, markup=False)
        return
    try:
        for chunk in follow_logs(client, state.runner_id, lines):
            sys.stdout.write(chunk.decode("utf-8", errors="replace"))
            sys.stdout.flush()
    except KeyboardInterrupt:
        return


def down(
    state_dir: opts.StateDirOpt = None,
    timeout_s: Annotated[float, typer.Option("--timeout", help="Seconds to wait for a clean stop before SIGKILL.")] = 60.0,
) -> None:
    """Stop the supervisor, which stops the runtime (SIGTERM, grace, SIGKILL), removing its container or cgroup.

    Idempotent: with nothing running (or nothing recorded) it says "nothing to stop" and exits 0.
    """
    sd = state_dir_from(state_dir, os.environ)
    final = stop_deployment(sd, os.environ, timeout_s, out.info, out.warn)
    if final is None:
        out.data(f"nothing to stop: no deployment runs from {sd}", markup=False)
        return
    out.data(f"stopped: {final.profile} ({final.backend}); last exit: {final.last_exit_reason or '-'}", markup=False)


COMMANDS: dict[str, Callable[..., None]] = {"auto": auto, "up": up, "status": status, "logs": logs, "down": down}
"""Command name -> function; cli/app.py registers them."""
