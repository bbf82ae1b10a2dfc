"""`deploy auto / up / status / logs / down`: launch the runtime and supervise it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Optional

import typer

from orchestrator.cli import output as out
from orchestrator.errors import StateError, SupervisorError, UsageError
from orchestrator.launch.process_backend import tail_lines
from orchestrator.launch.spec import LaunchSpec
from orchestrator.supervise import deployment as dep
from orchestrator.supervise.http_client import synthesize_to
from orchestrator.supervise.state import (
    DeploymentState,
    read_state,
    stale_reason,
    state_dir_from,
    supervisor_alive,
)
from orchestrator.supervise.supervisor import Policy, State, Supervisor
from orchestrator.supervise.teardown import stop_deployment

StateDirOpt = typer.Option(None, "--state-dir", help="Where state.json and logs live (default $TAILOR_STATE_DIR or ./.tailor).")
BackendOpt = typer.Option("auto", "--backend", help="auto (docker when a daemon answers, else process), docker or process.")
PortOpt = typer.Option(None, "--port", min=1, max=65535, help="TCP port of the runtime (default: the plan's).")
DetachOpt = typer.Option(False, "--detach", help="Leave the supervisor running in the background once ready.")
SynthOpt = typer.Option(None, "--synthesize-to", help="Once ready, synthesize a sample sentence into FILE (format from the suffix, wav by default).")
BaseImageOpt = typer.Option(None, "--base-image", help="Base image for the runtime image (docker backend).")
WheelhouseOpt = typer.Option(None, "--wheelhouse", help="Directory of wheels for an offline image build (docker backend).")
RebuildOpt = typer.Option(False, "--rebuild", help="Build the runtime image even if its tag exists.")
ProfileOpt = typer.Option(None, "--profile", help="Use this profile instead of the best fitting one.")
FactsOpt = typer.Option(None, "--facts", help="Plan from a facts file (deploy probe --json) instead of probing.")
DirectoryArg = typer.Argument(None, help="A rendered deployment directory (default: <state dir>/rendered).")
NetworkOpt = typer.Option(None, "--network", help="Container network mode: bridge (port published on 127.0.0.1) or host.")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("auto")(auto)
    app.command("up")(up)
    app.command("status")(status)
    app.command("logs")(logs)
    app.command("down")(down)


def auto(
    backend: str = BackendOpt,
    profile: Optional[str] = ProfileOpt,  # noqa: UP045 -- typer reads the annotation
    facts: Optional[Path] = FactsOpt,  # noqa: UP045
    port: Optional[int] = PortOpt,  # noqa: UP045
    detach: bool = DetachOpt,
    synthesize: Optional[Path] = SynthOpt,  # noqa: UP045
    base_image: Optional[str] = BaseImageOpt,  # noqa: UP045
    wheelhouse: Optional[Path] = WheelhouseOpt,  # noqa: UP045
    rebuild: bool = RebuildOpt,
    network: Optional[str] = NetworkOpt,  # noqa: UP045
    state_dir: Optional[str] = StateDirOpt,  # noqa: UP045
) -> None:
    """Probe, plan, render, build the image (docker), launch, wait until ready, supervise."""
    sd = state_dir_from(state_dir, os.environ)
    _refuse_if_running(sd)
    prepared = dep.plan_deployment(sd, os.environ, facts_file=facts, profile=profile, port=port)
    _launch(prepared, backend, sd, detach=detach, synthesize=synthesize, base_image=base_image,
            wheelhouse=wheelhouse, rebuild=rebuild, network=network)


def up(
    directory: Optional[Path] = DirectoryArg,  # noqa: UP045
    backend: str = BackendOpt,
    port: Optional[int] = PortOpt,  # noqa: UP045
    detach: bool = DetachOpt,
    synthesize: Optional[Path] = SynthOpt,  # noqa: UP045
    base_image: Optional[str] = BaseImageOpt,  # noqa: UP045
    wheelhouse: Optional[Path] = WheelhouseOpt,  # noqa: UP045
    rebuild: bool = RebuildOpt,
    network: Optional[str] = NetworkOpt,  # noqa: UP045
    state_dir: Optional[str] = StateDirOpt,  # noqa: UP045
    detached_child: bool = typer.Option(False, "--detached-child", hidden=True),
    backend_reason: Optional[str] = typer.Option(None, "--backend-reason", hidden=True),  # noqa: UP045
) -> None:
    """Launch and supervise from an already rendered directory (plan.json + facts.json)."""
    sd = state_dir_from(state_dir, os.environ)
    if not detached_child:
        _refuse_if_running(sd)
    prepared = dep.load_deployment(directory or sd / dep.RENDERED_DIR, port=port)
    _launch(prepared, backend, sd, detach=detach, synthesize=synthesize, base_image=base_image,
            wheelhouse=wheelhouse, rebuild=rebuild, network=network, detached_child=detached_child,
            backend_reason=backend_reason)


def _refuse_if_running(sd: Path) -> None:
    try:
        state = read_state(sd)
    except StateError:
        return
    if state.state not in ("STOPPED", "FATAL") and supervisor_alive(state):
        raise UsageError(f"a deployment is already {state.state} from {sd} (supervisor pid {state.supervisor_pid})",
                         "stop it with `deploy down`, or pass another --state-dir")


def _launch(prepared: dep.Prepared, backend: str, sd: Path, *, detach: bool, synthesize: Path | None,
            base_image: str | None, wheelhouse: Path | None, rebuild: bool, network: str | None,
            detached_child: bool = False, backend_reason: str | None = None) -> None:
    spec = prepared.spec
    if network is not None:
        if network not in ("bridge", "host"):
            raise UsageError(f"--network {network!r} is not bridge or host", "use --network bridge or --network host")
        spec = spec.with_network_mode(network)
        prepared = dep.Prepared(prepared.plan, prepared.facts, spec, prepared.directory, prepared.notes)
    chosen, why = dep.choose_backend(backend, os.environ)
    if detached_child and backend_reason:
        why = backend_reason  # the parent's reason ("no Docker daemon: ..."), not "chosen with --backend"
    out.data(f"profile:  {spec.profile}", markup=False)
    out.data(f"backend:  {chosen} ({why})", markup=False)
    for note in prepared.notes:
        out.info(note)
    if chosen == "docker" and not detached_child:
        _ensure_image(spec, base_image, wheelhouse, rebuild)
    if detach and not detached_child:
        _spawn_detached(prepared, chosen, why, sd)
        _announce(spec.url)
        if synthesize is not None:
            _synthesize(spec, synthesize)
        out.data(f"supervisor runs in the background; see `deploy status`, `deploy logs`, `deploy down`"
                 f" (state in {sd})", markup=False)
        return
    _supervise_here(prepared, chosen, why, sd, synthesize, quiet_log_file=detached_child)


def _ensure_image(spec: LaunchSpec, base_image: str | None, wheelhouse: Path | None, rebuild: bool) -> None:
    from orchestrator.launch.docker_backend import connect
    from orchestrator.launch.image import ensure_image

    client = connect(os.environ)
    try:
        result = ensure_image(client, spec.image, spec.flavor, port=spec.port, base_image=base_image or spec.base_image,
                              wheelhouse=wheelhouse, rebuild=rebuild, log=out.info)
    finally:
        client.close()
    out.info(f"image: {result.reason} ({result.seconds:.1f} s)")


def _announce(url: str) -> None:
    out.data(f"ready:    {url}", markup=False)
    out.data(f"try:      curl -s {url}/v1/audio/speech -H 'Content-Type: application/json' "
             "-d '{\"input\": \"Hello there.\", \"voice\": \"alloy\", \"response_format\": \"wav\"}' -o hello.wav",
             markup=False)


def _synthesize(spec: LaunchSpec, path: Path) -> None:
    t0 = time.monotonic()
    size = synthesize_to(spec.url, path, api_key=spec.env_map.get("TAILOR_API_KEY", ""))
    out.data(f"wrote:    {path} ({size} bytes in {time.monotonic() - t0:.2f} s)", markup=False)


class _Progress:
    """Prints a waiting line every few seconds while the runtime starts."""

    def __init__(self, every_s: float = 5.0) -> None:
        self._t0 = time.monotonic()
        self._last = self._t0
        self._every = every_s

    def __call__(self, state: str, detail: str) -> None:
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            out.info(f"waiting for the runtime to be ready ({now - self._t0:.0f} s, {state}: {detail})")


def _supervise_here(prepared: dep.Prepared, backend: str, why: str, sd: Path, synthesize: Path | None,
                    *, quiet_log_file: bool) -> None:
    sd.mkdir(parents=True, exist_ok=True)
    log_file: IO[str] | None = None if quiet_log_file else open(sd / dep.SUPERVISOR_LOG, "a", encoding="utf-8")  # noqa: SIM115

    def log(line: str) -> None:
        out.info(line)
        if log_file is not None:
            log_file.write(line + "\n")
            log_file.flush()

    sup = dep.make_supervisor(prepared, backend, why, sd, os.environ, log, policy=Policy())
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, lambda *_: sup.request_stop("SIGTERM received"))
    signal.signal(signal.SIGINT, lambda *_: sup.request_stop("interrupted (Ctrl-C)"))
    try:
        progress = _Progress()
        sup.start()
        state = sup.run(until=lambda s: _ready_or_report(s, progress))
        if state is State.RUNNING:
            _announce(prepared.spec.url)
            if synthesize is not None:
                _synthesize(sup.spec, synthesize)
            out.info("supervising; Ctrl-C or `deploy down` stops the runtime")
            state = sup.run()
        if state is State.FATAL:
            raise SupervisorError(f"the runtime is FATAL: {sup.reason}",
                                  "see `deploy logs`; `deploy status` shows the last exit reason")
    finally:
        if sup.state not in (State.STOPPED, State.FATAL):
            sup.request_stop("supervisor exiting")
            sup.tick()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if log_file is not None:
            log_file.close()


def _ready_or_report(sup: Supervisor, progress: _Progress) -> bool:
    if sup.state is State.RUNNING:
        return True
    progress(sup.state.value, sup.last_health or sup.reason)
    return False


def _spawn_detached(prepared: dep.Prepared, backend: str, why: str, sd: Path) -> None:
    """Start `deploy up --detached-child` in its own session and wait until it reports ready."""
    sd.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "orchestrator", "up", str(prepared.directory.resolve()), "--backend", backend,
            "--port", str(prepared.spec.port), "--network", prepared.spec.network_mode,
            "--state-dir", str(sd.resolve()), "--detached-child", "--backend-reason", why]
    (sd / "state.json").unlink(missing_ok=True)
    with open(sd / dep.SUPERVISOR_LOG, "ab") as log:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True, close_fds=True, cwd=sd.resolve())
    out.info(f"supervisor started in the background (pid {child.pid}); log: {sd / dep.SUPERVISOR_LOG}")
    try:
        _wait_detached_ready(child, sd)
    except KeyboardInterrupt:
        raise UsageError(f"stopped waiting; the supervisor (pid {child.pid}) keeps running in the background",
                         "see `deploy status`; `deploy down` stops it") from None


def _wait_detached_ready(child: subprocess.Popen[bytes], sd: Path) -> None:
    progress = _Progress()
    deadline = time.monotonic() + Policy().startup_budget_s + 60
    while time.monotonic() < deadline:
        code = child.poll()
        try:
            state = read_state(sd)
        except StateError:
            state = None
        if state is not None and state.state == "RUNNING":
            return
        if state is not None and state.state == "FATAL":
            raise SupervisorError(f"the runtime is FATAL: {state.state_reason}", f"see {sd / dep.SUPERVISOR_LOG}")
        if code is not None:
            tail = "\n  ".join(tail_lines(sd / dep.SUPERVISOR_LOG, 10))
            raise SupervisorError(f"the background supervisor exited with code {code} before the runtime was ready:\n  {tail}",
                                  f"see {sd / dep.SUPERVISOR_LOG}")
        progress(state.state if state else "STARTING", (state.last_health or state.state_reason) if state else "")
        time.sleep(0.5)
    raise SupervisorError("the background supervisor did not report ready in time", "see `deploy logs`")


def status(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    state_dir: Optional[str] = StateDirOpt,  # noqa: UP045
) -> None:
    """Profile, backend, pid/container, uptime, restarts, last health and last exit reason."""
    sd = state_dir_from(state_dir, os.environ)
    state = read_state(sd)
    stale = stale_reason(state)
    uptime = (time.time() - state.instance_started_at_s
              if state.instance_started_at_s and state.state == "RUNNING" and stale is None else None)
    if as_json:
        data = state.to_dict()
        data.update({"state_dir": str(sd), "stale": stale is not None, "stale_reason": stale, "uptime_s": uptime})
        out.data_json(data)
        return
    what = "pid" if state.backend == "process" else "container"
    lines = [
        f"state:        {state.state}" + (" (STALE)" if stale else "") + f" - {state.state_reason.splitlines()[0]}",
        f"profile:      {state.profile}",
        f"backend:      {state.backend} ({state.backend_reason})",
        f"url:          {state.url}",
        f"{what + ':':<14}{state.runner_id or '-'}",
        f"supervisor:   pid {state.supervisor_pid}",
        f"uptime:       {_duration(uptime) if uptime is not None else '-'}",
        f"restarts:     {state.restarts}",
        f"last health:  {state.last_health or '-'}",
        f"last exit:    {state.last_exit_reason or '-'}",
    ]
    lines += [f"step-down:    {s}" for s in state.step_downs]
    for line in lines:
        out.data(line, markup=False)
    if stale:
        out.warn(f"{stale}; `deploy down` cleans up what it left behind")


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def logs(
    follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing new lines."),
    lines: int = typer.Option(100, "-n", "--lines", min=0, help="How many recent lines."),
    state_dir: Optional[str] = StateDirOpt,  # noqa: UP045
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
        _follow_file(path)


def _follow_file(path: Path) -> None:
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        try:
            while True:
                chunk = fh.readline()
                if chunk:
                    sys.stdout.write(chunk.decode("utf-8", errors="replace"))
                    sys.stdout.flush()
                else:
                    time.sleep(0.3)
        except KeyboardInterrupt:
            return


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
    state_dir: Optional[str] = StateDirOpt,  # noqa: UP045
    timeout_s: float = typer.Option(60.0, "--timeout", help="Seconds to wait for a clean stop before SIGKILL."),
) -> None:
    """Stop the supervisor, which stops the runtime (SIGTERM, grace, SIGKILL) and removes the container."""
    sd = state_dir_from(state_dir, os.environ)
    final = stop_deployment(sd, os.environ, timeout_s, out.info, out.warn)
    if final is None:
        out.data(f"nothing to stop: the deployment in {sd} is already STOPPED", markup=False)
        return
    out.data(f"stopped: {final.profile} ({final.backend}); last exit: {final.last_exit_reason or '-'}", markup=False)
