"""Docker backend: the runtime as a container, through the docker SDK.

This module and ``image.py`` are the only ones that import the docker SDK; every SDK error is
wrapped in a LaunchError with a hint. The container gets the plan's environment, memory/CPU
limits, GPU device requests (or ``runtime=nvidia`` on Jetson), a healthcheck, and a locked-down
security profile: user 10001, read-only root with a tmpfs /tmp, no-new-privileges, all
capabilities dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types
from docker.models.containers import Container

from orchestrator.errors import LaunchError
from orchestrator.launch.runner import RunnerStatus
from orchestrator.launch.spec import LaunchSpec

_MB = 1024 * 1024
_NS = 1_000_000_000
CONTAINER_LABEL = "io.tailor.deployment"


@dataclass(frozen=True)
class DaemonStatus:
    reachable: bool
    reason: str
    """``docker daemon answered at unix:///...`` or ``no Docker daemon: ...``."""


def connect(environ: Mapping[str, str]) -> docker.DockerClient:
    """A client for ``DOCKER_HOST`` (or the default socket); LaunchError when none answers."""
    status, client = _try_connect(environ)
    if client is None:
        raise LaunchError(status.reason, "start the Docker daemon, set DOCKER_HOST, or use --backend process")
    return client


def daemon_status(environ: Mapping[str, str]) -> DaemonStatus:
    status, client = _try_connect(environ)
    if client is not None:
        client.close()
    return status


def _try_connect(environ: Mapping[str, str]) -> tuple[DaemonStatus, docker.DockerClient | None]:
    where = environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if where.startswith("unix://") and not Path(where[len("unix://"):]).exists():
        # Checked first: the SDK leaks a socket object when connecting to a missing path.
        return DaemonStatus(False, f"no Docker daemon: no socket at {where}"), None
    try:
        client = docker.DockerClient.from_env(environment=dict(environ), timeout=30)
    except docker.errors.DockerException as exc:
        return DaemonStatus(False, f"no Docker daemon: {_short(exc)} (at {where})"), None
    try:
        client.ping()
        version = client.version().get("Version", "?")
    except (docker.errors.DockerException, OSError) as exc:
        client.close()
        return DaemonStatus(False, f"no Docker daemon: {where} did not answer ({_short(exc)})"), None
    return DaemonStatus(True, f"docker daemon answered at {where} (Docker {version})"), client


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


def wrap(exc: Exception, what: str) -> LaunchError:
    """A LaunchError with a hint for a docker SDK error."""
    if isinstance(exc, docker.errors.ImageNotFound):
        return LaunchError(f"{what}: image not found ({_short(exc)})",
                           "build it with `deploy auto --backend docker` (optionally --base-image/--wheelhouse)")
    if isinstance(exc, docker.errors.APIError) and "port is already allocated" in str(exc):
        return LaunchError(f"{what}: the port is already in use ({_short(exc)})", "pass --port with a free port")
    if isinstance(exc, docker.errors.APIError) and "could not select device driver" in str(exc):
        return LaunchError(f"{what}: the daemon cannot give the container a GPU ({_short(exc)})",
                           "install nvidia-container-toolkit and restart dockerd, or pick a CPU profile")
    return LaunchError(f"{what}: {_short(exc)}", "check `docker info` and the daemon's log; "
                       "or use --backend process")


def container_name(spec: LaunchSpec) -> str:
    return f"tailor-runtime-{spec.port}"


def run_options(spec: LaunchSpec, deployment: str) -> dict[str, Any]:
    """Keyword arguments for ``containers.run``: pure, so the mapping from plan to container is testable."""
    env = spec.env_map
    opts: dict[str, Any] = {
        "name": container_name(spec),
        "detach": True,
        "environment": env,
        "labels": {CONTAINER_LABEL: deployment},
        "user": spec.user,
        "read_only": spec.read_only_root,
        "tmpfs": {"/tmp": "rw,nosuid,nodev,size=256m"},
        "security_opt": ["no-new-privileges"],
        "cap_drop": ["ALL"],
        "network_mode": spec.network_mode,
        "healthcheck": {
            "test": ["CMD", "/opt/tailor/bin/python", "-m", "runtime.healthcheck", "--port", str(spec.port)],
            "interval": 10 * _NS, "timeout": 5 * _NS, "retries": 3, "start_period": 120 * _NS,
        },
    }
    if spec.network_mode != "host":
        # Published on loopback only; inside its own network namespace the server must bind all interfaces.
        opts["ports"] = {f"{spec.port}/tcp": ("127.0.0.1", spec.port)}
        env["TAILOR_HOST"] = "0.0.0.0"
    if spec.memory_limit_bytes:
        opts["mem_limit"] = spec.memory_limit_bytes
        opts["memswap_limit"] = spec.memory_limit_bytes  # no swap: an overrun is an OOM kill, not a slowdown
    if spec.cpus:
        opts["nano_cpus"] = int(spec.cpus * _NS)
    if spec.shm_size_bytes:
        opts["shm_size"] = spec.shm_size_bytes
    if spec.runtime:
        opts["runtime"] = spec.runtime
    elif spec.gpu_device_ids:
        opts["device_requests"] = [docker.types.DeviceRequest(device_ids=list(spec.gpu_device_ids),
                                                              capabilities=[["gpu"]])]
    elif spec.gpu_count:
        opts["device_requests"] = [docker.types.DeviceRequest(count=spec.gpu_count, capabilities=[["gpu"]])]
    return opts


class DockerRunner:
    """Runs one container of the runtime image."""

    backend = "docker"

    def __init__(self, spec: LaunchSpec, client: docker.DockerClient, deployment: str = "default") -> None:
        self.spec = spec
        self._client = client
        self._deployment = deployment
        self._container: Container | None = None

    @property
    def ident(self) -> str:
        return (self._container.id or "")[:12] if self._container is not None else ""

    def start(self) -> str:
        name = container_name(self.spec)
        try:
            # A container of that name left behind by a crashed supervisor would block the name.
            stale = self._client.containers.list(all=True, filters={"name": f"^{name}$"})
            for old in stale:
                old.remove(force=True)
            self._container = self._client.containers.run(self.spec.image, **run_options(self.spec, self._deployment))
        except docker.errors.DockerException as exc:
            raise wrap(exc, f"cannot start container {name} from {self.spec.image}") from exc
        return self.ident

    def _state(self) -> dict[str, Any]:
        assert self._container is not None
        try:
            self._container.reload()
        except docker.errors.NotFound:
            return {"Status": "removed", "ExitCode": None, "OOMKilled": False}
        except docker.errors.DockerException as exc:
            raise wrap(exc, f"cannot inspect container {self.ident}") from exc
        state = self._container.attrs.get("State", {})
        return state if isinstance(state, dict) else {}

    def poll(self) -> RunnerStatus:
        if self._container is None:
            return RunnerStatus(running=False, detail="not started")
        state = self._state()
        status = state.get("Status", "")
        if status in ("created", "running", "restarting"):
            return RunnerStatus(running=True, detail=status)
        code = state.get("ExitCode")
        if status == "removed":
            return RunnerStatus(running=False, detail="container was removed from outside")
        if state.get("OOMKilled"):
            limit = (self.spec.memory_limit_bytes or 0) // _MB
            return RunnerStatus(running=False, exit_code=code, oom_killed=True,
                                detail=f"OOM-killed (State.OOMKilled) at the {limit} MB container memory limit; "
                                       f"exit code {code}")
        detail = f"container exited with code {code}"
        if code == 137:
            detail += " (SIGKILL)"
        elif code == 143:
            detail += " (SIGTERM)"
        if state.get("Error"):
            detail += f": {state['Error']}"
        return RunnerStatus(running=False, exit_code=code, detail=detail)

    def stop(self, grace_s: float) -> RunnerStatus:
        if self._container is None:
            return RunnerStatus(running=False, detail="not started")
        try:
            self._container.stop(timeout=max(1, round(grace_s)))
        except docker.errors.NotFound:
            pass
        except docker.errors.DockerException as exc:
            raise wrap(exc, f"cannot stop container {self.ident}") from exc
        return self.poll()

    def remove(self) -> None:
        if self._container is None:
            return
        try:
            self._container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.DockerException as exc:
            raise wrap(exc, f"cannot remove container {self.ident}") from exc

    def logs(self, lines: int) -> list[str]:
        if self._container is None:
            return []
        return container_logs(self._container, lines)


def container_logs(container: Container, lines: int) -> list[str]:
    try:
        raw = container.logs(tail=lines, stdout=True, stderr=True)
    except docker.errors.NotFound:
        return []
    except docker.errors.DockerException as exc:
        raise wrap(exc, f"cannot read the logs of container {(container.id or '')[:12]}") from exc
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
    return text.splitlines()[-lines:] if lines > 0 else []


def find_container(client: docker.DockerClient, ident: str) -> Container | None:
    try:
        return client.containers.get(ident)
    except docker.errors.NotFound:
        return None
    except docker.errors.DockerException as exc:
        raise wrap(exc, f"cannot look up container {ident}") from exc


def follow_logs(client: docker.DockerClient, ident: str, lines: int) -> Any:
    """An iterator of log byte chunks, following the container until it stops."""
    container = find_container(client, ident)
    if container is None:
        raise LaunchError(f"container {ident} does not exist any more", "see `deploy status`")
    try:
        return container.logs(stream=True, follow=True, tail=lines)
    except docker.errors.DockerException as exc:
        raise wrap(exc, f"cannot follow the logs of container {ident}") from exc


def remove_container(client: docker.DockerClient, ident: str) -> bool:
    """Remove a container by id or name; False when there was none."""
    container = find_container(client, ident)
    if container is None:
        return False
    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        return False
    except docker.errors.DockerException as exc:
        raise wrap(exc, f"cannot remove container {ident}") from exc
    return True
