"""One launch, start to finish: pick the backend, check the port, build the image, then either
supervise here (foreground) or start a detached supervisor and wait until it reports ready.

The CLI hands in an :class:`Output` (data on stdout, diagnostics on stderr) and the options;
everything that decides, waits or polls lives here, so ``deploy auto`` and ``deploy up`` are
thin and share it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from orchestrator.errors import Interrupted, LaunchError, StateError, SupervisorError, UsageError
from orchestrator.launch.backends import choose_backend
from orchestrator.launch.ports import ensure_port_free
from orchestrator.launch.process_backend import tail_lines
from orchestrator.launch.runner import RuntimeIdentity
from orchestrator.launch.spec import LaunchSpec
from orchestrator.plan import engine_image
from orchestrator.plan.decisions import LOOPBACK
from orchestrator.polling import poll_until
from orchestrator.supervise import deployment as dep
from orchestrator.supervise.http_client import check_ready, synthesize_to
from orchestrator.supervise.state import (
    STATE_FILE,
    DeploymentState,
    deploy_cmd,
    read_state,
    recorded_runtime,
    runtime_identity,
)
from orchestrator.supervise.supervisor import Policy, State, Supervisor
from orchestrator.supervise.teardown import reclaim, stop_stale


class Output(Protocol):
    def data(self, text: str) -> None: ...
    def info(self, text: str) -> None: ...
    def warn(self, text: str) -> None: ...


@dataclass(frozen=True)
class LaunchOptions:
    backend: str = "auto"
    detach: bool = False
    synthesize: Path | None = None
    base_image: str | None = None
    wheelhouse: Path | None = None
    rebuild: bool = False
    network: str | None = None
    startup_timeout_s: float | None = None
    """None: derived from the plan (see deployment.startup_budget)."""
    health_interval_s: float | None = None
    detached_child: bool = False
    backend_reason: str | None = None
    """The parent's reason for its backend choice, kept by a detached child."""
    adopt: RuntimeIdentity | None = None
    """A detached child takes over this container (the parent checked it) instead of starting one."""


def prepare_state_dir(sd: Path, environ: Mapping[str, str], out: Output) -> DeploymentState | None:
    """Before planning: refuse a live deployment in ``sd``, stop what a dead supervisor left there.

    Returns the record of a container a dead supervisor left running: :func:`launch` adopts it
    when it runs the new plan and answers ready, and stops it otherwise (saying which).
    """
    return reclaim(sd, environ, out.info, out.warn)


def launch(prepared: dep.Prepared, sd: Path, environ: Mapping[str, str], opts: LaunchOptions, out: Output,
           stale: DeploymentState | None = None) -> None:
    """Launch ``prepared`` and supervise it (here, or in a detached supervisor).

    ``stale`` is what :func:`prepare_state_dir` returned: a container to adopt or stop first.
    """
    spec = prepared.spec
    if opts.network is not None:
        if opts.network not in ("bridge", "host"):
            raise UsageError(f"--network {opts.network!r} is not bridge or host", "use --network bridge or --network host")
        spec = spec.with_network_mode(opts.network)
        prepared = dataclasses.replace(prepared, spec=spec)
    for name, value in (("--startup-timeout", opts.startup_timeout_s), ("--health-interval", opts.health_interval_s)):
        if value is not None and not value > 0:
            raise UsageError(f"{name} {value:g} is not a positive number of seconds", f"pass {name} SECONDS, e.g. 120")
    chosen, why = choose_backend(opts.backend, environ)
    if opts.detached_child and opts.backend_reason:
        why = opts.backend_reason  # the parent's reason ("no Docker daemon: ..."), not "chosen with --backend"
    policy, timings = dep.launch_policy(spec, startup_timeout_s=opts.startup_timeout_s,
                                        health_interval_s=opts.health_interval_s,
                                        settings=prepared.launch_settings)
    out.data(f"profile:  {spec.profile}")
    out.data(f"backend:  {chosen} ({why})")
    for note in prepared.notes:
        out.info(note)
    if not opts.detached_child and prepared.plan is not None:
        for warning in prepared.plan.warnings:  # e.g. a GPU left out, and why (the plan runs without it)
            out.warn(warning)
    adopt = opts.adopt
    if not opts.detached_child and chosen == "docker" and spec.flavor == engine_image.FLAVOR:
        _check_engine_image(spec, opts, environ)  # before a stale container is stopped or anything starts
    if not opts.detached_child:
        out.info(f"timings: {timings}")
        if stale is not None:
            adopt = _adopt_or_stop(stale, spec, chosen, sd, environ, out)
        if adopt is None:
            # In seconds, before any image build or model load: a busy port is named and refused,
            # a container that could not get a network is refused with the reason.
            _preflight(spec, chosen, environ)
            if chosen == "docker":
                _ensure_image(spec, opts, environ, out)
    opts = dataclasses.replace(opts, adopt=adopt)
    if opts.detach and not opts.detached_child:
        _spawn_detached(prepared, chosen, why, sd, opts, policy, out)
        announce(spec.url, out)
        if opts.synthesize is not None:
            synthesize(spec, opts.synthesize, out, sd)
        out.data(f"supervisor runs in the background; see `{deploy_cmd('status', sd)}`, `{deploy_cmd('logs', sd)}`, "
                 f"`{deploy_cmd('down', sd)}` (state in {sd})")
        return
    _supervise_here(prepared, chosen, why, sd, environ, opts, policy, out)


def _adopt_or_stop(stale: DeploymentState, spec: LaunchSpec, backend: str, sd: Path, environ: Mapping[str, str],
                   out: Output) -> RuntimeIdentity | None:
    """Adopt the container a dead supervisor left when it runs this plan and answers ready as
    its recorded instance; otherwise stop it. Says which, and why."""
    what = f"container {stale.runner_id}"
    if backend != "docker":
        problem = f"this launch uses the {backend} backend"
    else:
        from orchestrator.launch.docker_backend import adoption_problem, connect

        client = connect(environ)
        try:
            problem = adoption_problem(client, stale.runner_id, spec)
        finally:
            client.close()
        if not problem:
            health = check_ready(spec.url, stale.instance_id)
            problem = "" if health.ok else f"it does not answer ready as instance {stale.instance_id} ({health.detail})"
    if problem:
        out.warn(f"not adopting {what}: {problem}; stopping it before starting anew")
        stop_stale(sd, stale, environ, out.info, out.warn)
        return None
    out.info(f"adopting {what} (instance {stale.instance_id}): it runs this plan and answers ready")
    return runtime_identity(stale)


def _preflight(spec: LaunchSpec, backend: str, environ: Mapping[str, str]) -> None:
    host = spec.env_map.get("TAILOR_HOST", LOOPBACK) if (backend == "process" or spec.network_mode == "host") \
        else LOOPBACK
    if backend != "docker":
        check_engine_python(spec.env_map)
        ensure_port_free(spec.port, host, recorded=recorded_runtime)
        return
    from orchestrator.launch.docker_backend import connect, deployment_of, network_problem

    client = connect(environ)
    try:
        no_network = network_problem(client, spec)
        if no_network:
            raise LaunchError(f"cannot run the runtime container: {no_network}",
                              "use --network host, or start dockerd with its default bridge")
        ensure_port_free(spec.port, host, container_label=lambda cid: deployment_of(client, cid),
                         recorded=recorded_runtime)
    finally:
        client.close()


def check_engine_python(env: Mapping[str, str],
                        importable: Callable[[], bool] = lambda: importlib.util.find_spec("indextts") is not None) -> None:
    """A process-backend launch of IndexTTS2 needs its engine interpreter: refuse in seconds, before
    the runtime starts and loads, when TAILOR_INDEXTTS2_PYTHON is unset and this interpreter (the
    runtime's) has no IndexTTS2."""
    problem = engine_image.host_python_problem(env, importable)
    if problem:
        raise LaunchError(f"cannot run IndexTTS2 as a host process: {problem}",
                          f"make its venv: {engine_image.venv_recipe()}; or use the docker backend "
                          f"(--backend docker), whose engine image has {engine_image.ENGINE_PYTHON})")


def _check_engine_image(spec: LaunchSpec, opts: LaunchOptions, environ: Mapping[str, str]) -> None:
    """IndexTTS2's engine image must be here, or buildable from ``--wheelhouse DIR/indextts2``."""
    from orchestrator.launch.docker_backend import connect
    from orchestrator.launch.image import engine_wheelhouse, image_exists

    client = connect(environ)
    try:
        if opts.rebuild or not image_exists(client, spec.image):
            engine_wheelhouse(spec.image, opts.wheelhouse)
    finally:
        client.close()


def _ensure_image(spec: LaunchSpec, opts: LaunchOptions, environ: Mapping[str, str], out: Output) -> None:
    from orchestrator.launch.docker_backend import connect
    from orchestrator.launch.image import ensure_image

    client = connect(environ)
    try:
        result = ensure_image(client, spec.image, spec.flavor, port=spec.port,
                              base_image=opts.base_image or spec.base_image, wheelhouse=opts.wheelhouse,
                              rebuild=opts.rebuild, log=out.info, cuda_build=spec.cuda_build)
    finally:
        client.close()
    out.info(f"image: {result.reason} ({result.seconds:.1f} s)")


def announce(url: str, out: Output) -> None:
    out.data(f"ready:    {url}")
    out.data(f"try:      curl -s {url}/v1/audio/speech -H 'Content-Type: application/json' "
             "-d '{\"input\": \"Hello there.\", \"voice\": \"alloy\", \"response_format\": \"wav\"}' -o hello.wav")


def synthesize(spec: LaunchSpec, path: Path, out: Output, sd: Path) -> None:
    t0 = time.monotonic()
    size = synthesize_to(spec.url, path, api_key=spec.env_map.get("TAILOR_API_KEY", ""),
                         logs_hint=f"see `{deploy_cmd('logs', sd)}`")
    out.data(f"wrote:    {path} ({size} bytes in {time.monotonic() - t0:.2f} s)")


class Progress:
    """Says every few seconds that the runtime is still starting, with the elapsed time."""

    def __init__(self, out: Output, every_s: float = 5.0) -> None:
        self._out = out
        self._t0 = time.monotonic()
        self._last = self._t0
        self._every = every_s

    def __call__(self, state: str, detail: str) -> None:
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            what = f"{state}: {detail}" if detail.strip() else f"{state}, no health check answered yet"
            self._out.info(f"waiting for the runtime to be ready ({now - self._t0:.0f} s, {what})")


def _supervise_here(prepared: dep.Prepared, backend: str, why: str, sd: Path, environ: Mapping[str, str],
                    opts: LaunchOptions, policy: Policy, out: Output) -> None:
    sd.mkdir(parents=True, exist_ok=True)
    log_file: IO[str] | None = (None if opts.detached_child
                                else open(sd / dep.SUPERVISOR_LOG, "a", encoding="utf-8"))  # noqa: SIM115

    def log(line: str) -> None:
        # The file first: a closed terminal or pipe (SSH gone, `| head`) must not cost the record
        # or break supervision in the middle of a transition.
        if log_file is not None:
            log_file.write(line + "\n")
            log_file.flush()
        with contextlib.suppress(OSError):
            out.info(line)

    sup = dep.make_supervisor(prepared, backend, why, sd, environ, log, policy=policy, adopt=opts.adopt)
    interrupted = []

    def on_sigint(*_: object) -> None:
        interrupted.append(True)
        sup.request_stop("interrupted (Ctrl-C)")

    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, lambda *_: sup.request_stop("SIGTERM received"))
    signal.signal(signal.SIGINT, on_sigint)
    try:
        progress = Progress(out)
        if opts.adopt is None:
            sup.start()
        state = sup.run(until=lambda s: _ready_or_report(s, progress))
        if state is State.RUNNING:
            announce(prepared.spec.url, out)
            if opts.synthesize is not None:
                synthesize(sup.spec, opts.synthesize, out, sd)
            out.info(f"supervising; Ctrl-C or `{deploy_cmd('down', sd)}` stops the runtime")
            state = sup.run()
        if state is State.FATAL:
            raise SupervisorError(f"the runtime is FATAL: {sup.reason}",
                                  f"see `{deploy_cmd('logs', sd)}`; `{deploy_cmd('status', sd)}` shows the last exit "
                                  "reason")
    finally:
        if sup.state not in (State.STOPPED, State.FATAL):
            sup.request_stop("supervisor exiting")
            sup.tick()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if log_file is not None:
            log_file.close()
    if interrupted:
        raise Interrupted("interrupted: the runtime was stopped cleanly")


def _ready_or_report(sup: Supervisor, progress: Progress) -> bool:
    if sup.state is State.RUNNING:
        return True
    progress(sup.state.value, sup.last_health or sup.reason)
    return False


def _spawn_detached(prepared: dep.Prepared, backend: str, why: str, sd: Path, opts: LaunchOptions,
                    policy: Policy, out: Output) -> None:
    """Start `deploy up --detached-child` in its own session and wait until it reports ready."""
    sd.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "orchestrator", "up", str(prepared.directory.resolve()), "--backend", backend,
            "--port", str(prepared.spec.port), "--network", prepared.spec.network_mode,
            "--state-dir", str(sd.resolve()), "--detached-child", "--backend-reason", why,
            "--startup-timeout", f"{policy.startup_budget_s:g}", "--health-interval", f"{policy.health_interval_s:g}"]
    if opts.adopt is not None:
        argv += ["--adopt", opts.adopt.ident, "--adopt-instance", opts.adopt.instance_id]
    (sd / STATE_FILE).unlink(missing_ok=True)
    with open(sd / dep.SUPERVISOR_LOG, "ab") as log:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True, close_fds=True, cwd=sd.resolve())
    out.info(f"supervisor started in the background (pid {child.pid}); log: {sd / dep.SUPERVISOR_LOG}")
    try:
        _wait_detached_ready(child, sd, policy, out)
    except KeyboardInterrupt:
        raise Interrupted(f"stopped waiting; the supervisor (pid {child.pid}) keeps running in the background",
                          f"see `{deploy_cmd('status', sd)}`; `{deploy_cmd('down', sd)}` stops it") from None


def _wait_detached_ready(child: subprocess.Popen[bytes], sd: Path, policy: Policy, out: Output) -> None:
    progress = Progress(out)

    def ready() -> bool | None:
        code = child.poll()
        try:
            state = read_state(sd)
        except StateError:
            state = None
        if state is not None and state.state == "RUNNING":
            return True
        if state is not None and state.state == "FATAL":
            raise SupervisorError(f"the runtime is FATAL: {state.state_reason}", f"see {sd / dep.SUPERVISOR_LOG}")
        if code is not None:
            tail = "\n  ".join(tail_lines(sd / dep.SUPERVISOR_LOG, 10))
            raise SupervisorError(f"the background supervisor exited with code {code} before the runtime was ready:"
                                  f"\n  {tail}", f"see {sd / dep.SUPERVISOR_LOG}")
        progress(state.state if state else "STARTING",
                 (state.last_health or state.state_reason) if state else "the supervisor has recorded nothing yet")
        return None

    # The child gives up after its own budget; this margin covers its start and its stop.
    if not poll_until(ready, policy.startup_budget_s + policy.stop_grace_s + 30, 0.3):
        raise SupervisorError("the background supervisor did not report ready in time", f"see `{deploy_cmd('logs', sd)}`")


def follow_file(path: Path, write: IO[str]) -> None:
    """Print what is appended to ``path`` until Ctrl-C (``deploy logs -f`` on a process runtime)."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        try:
            while True:
                chunk = fh.readline()
                if chunk:
                    write.write(chunk.decode("utf-8", errors="replace"))
                    write.flush()
                else:
                    time.sleep(0.3)
        except KeyboardInterrupt:
            return
