"""Which backend runs the runtime, and the runners it builds: launch work, chosen here once.

``choose_backend`` answers ``auto`` with docker when a daemon answers, else process;
``runner_factory`` builds a :class:`~orchestrator.launch.runner.Runner` per launch spec for that
backend (the supervisor calls it for every start); ``adopted_runner`` takes over a running
container a supervisor that is gone left behind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from orchestrator.errors import LaunchError, UsageError
from orchestrator.launch.ports import RecordedRuntime
from orchestrator.launch.process_backend import ProcessRunner
from orchestrator.launch.runner import Runner, RuntimeIdentity
from orchestrator.launch.spec import LaunchSpec

BACKENDS = ("auto", "docker", "process")

RunnerFactory = Callable[[LaunchSpec], Runner]


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


def runner_factory(backend: str, state_dir: Path, environ: Mapping[str, str], *,
                   recorded: RecordedRuntime | None = None) -> RunnerFactory:
    """A runner per spec for ``backend`` (``process`` or ``docker``). ``recorded`` reads the
    runtime a state directory records (the process backend frees its port of that one only)."""
    if backend == "process":
        return lambda spec: ProcessRunner(spec, state_dir, environ=environ, recorded=recorded)
    from orchestrator.launch.docker_backend import DockerRunner, connect

    client = connect(environ)
    deployment = str(state_dir.resolve())
    return lambda spec: DockerRunner(spec, client, deployment)


def adopted_runner(factory: RunnerFactory, spec: LaunchSpec, adopt: RuntimeIdentity) -> Runner:
    """A docker runner that has taken over the container ``adopt`` names; LaunchError when it is
    not a running container any more (or the backend is not docker)."""
    from orchestrator.launch.docker_backend import DockerRunner

    runner = factory(spec)
    if not isinstance(runner, DockerRunner) or not runner.adopt(adopt.ident, adopt.instance_id):
        raise LaunchError(f"cannot adopt container {adopt.ident}: it is not a running container any more",
                          "run `deploy up` again: it starts a fresh one")
    return runner


__all__ = ["BACKENDS", "RunnerFactory", "adopted_runner", "choose_backend", "runner_factory"]
