"""Docker backend: the runtime as a container, through the docker SDK.

This module and ``image.py`` are the only ones that import the docker SDK; every SDK error is
wrapped in a LaunchError with a hint. The container gets the plan's environment, memory/CPU
limits, GPU device requests (or ``runtime=nvidia`` on Jetson), a healthcheck, and a locked-down
security profile (orchestrator.plan.decisions): unprivileged user, read-only root with a tmpfs /tmp, no-new-privileges, all
capabilities dropped.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types
from docker.models.containers import Container

from orchestrator.errors import LaunchError
from orchestrator.launch.ports import ensure_port_free
from orchestrator.launch.runner import INSTANCE_ENV, RunnerStatus, RuntimeIdentity, new_instance_id
from orchestrator.launch.spec import LaunchSpec
from orchestrator.plan import engine_image
from orchestrator.plan.decisions import (
    HEALTHCHECK_INTERVAL_S,
    HEALTHCHECK_RETRIES,
    HEALTHCHECK_TIMEOUT_S,
    IMAGE_PYTHON,
    LOOPBACK,
    SECURITY,
    bind_address,
    healthcheck_command,
    healthcheck_start_period_s,
    publish_address,
)

_MB = 1024 * 1024
_NS = 1_000_000_000
CONTAINER_LABEL = "io.tailor.deployment"
INSTANCE_LABEL = "io.tailor.instance"
ENGINE_RESTARTS = 5
"""Docker's own restarts of a crashed container (restart policy on-failure) before it gives up."""


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


def run_options(spec: LaunchSpec, deployment: str, instance_id: str = "") -> dict[str, Any]:
    """Keyword arguments for ``containers.run``: pure, so the mapping from plan to container is testable.

    Restart policy ``on-failure`` (at most ENGINE_RESTARTS times): a crashed container comes back
    even while no supervisor watches (it was killed); a live supervisor counts Docker's restarts
    as its own (see DockerRunner.poll) and never starts a second container beside it. A clean
    stop (``deploy down``, ``docker stop``) is not restarted.
    """
    env = spec.env_map
    env.update(engine_image.container_env(spec.flavor, env))  # IndexTTS2's image: its engine interpreter
    if instance_id:
        env[INSTANCE_ENV] = instance_id
    opts: dict[str, Any] = {
        "name": container_name(spec),
        "detach": True,
        "environment": env,
        "labels": {CONTAINER_LABEL: deployment, INSTANCE_LABEL: instance_id},
        "restart_policy": {"Name": "on-failure", "MaximumRetryCount": ENGINE_RESTARTS},
        "pids_limit": spec.pids_limit,
        "user": spec.user,
        "read_only": spec.read_only_root,
        "tmpfs": {SECURITY.tmpfs_path: f"rw,nosuid,nodev,size={SECURITY.tmpfs_size_mib}m"},
        "security_opt": ["no-new-privileges"] if SECURITY.no_new_privileges else [],
        "cap_drop": list(SECURITY.cap_drop),
        "network_mode": spec.network_mode,
        "healthcheck": {
            "test": list(healthcheck_command(spec.port, IMAGE_PYTHON)),
            "interval": HEALTHCHECK_INTERVAL_S * _NS, "timeout": HEALTHCHECK_TIMEOUT_S * _NS,
            "retries": HEALTHCHECK_RETRIES, "start_period": healthcheck_start_period_s(True) * _NS,
        },
    }
    if spec.network_mode != "host":
        # Published on loopback only; inside its own network namespace the server must bind all interfaces.
        opts["ports"] = {f"{spec.port}/tcp": (publish_address(False), spec.port)}
        env["TAILOR_HOST"] = bind_address(in_container=True, network="bridge")[0]
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


def deployment_of(client: docker.DockerClient, container_id: str) -> str:
    """The Tailor deployment (state directory) a container belongs to, "" for any other container."""
    try:
        container = client.containers.get(container_id)
    except docker.errors.DockerException:
        return ""
    labels = container.labels or {}
    where = labels.get(CONTAINER_LABEL, "")
    return f"{where} (container {container.name})" if where else ""


def network_problem(client: docker.DockerClient, spec: LaunchSpec) -> str:
    """Why a container of ``spec`` would have no working network on this engine; "" when it would."""
    if spec.network_mode != "bridge":
        return ""
    try:
        found = client.networks.list(names=["bridge"])
    except docker.errors.DockerException as exc:
        return f"cannot list the engine's networks ({_short(exc)})"
    if not any(n.name == "bridge" for n in found):
        return ("the Docker engine has no default bridge network (dockerd runs with --bridge=none), so the "
                "container would get no network and its port could not be published")
    return ""


def published_problem(attrs: Mapping[str, Any], spec: LaunchSpec) -> str:
    """Checks a started container's inspect data: a bridge container must have an address and its port published."""
    if spec.network_mode != "bridge":
        return ""
    settings = attrs.get("NetworkSettings") or {}
    networks = settings.get("Networks") or {}
    if not any((n or {}).get("IPAddress") for n in networks.values()):
        return f"the container has no network address (networks: {', '.join(networks) or 'none'})"
    bound = (settings.get("Ports") or {}).get(f"{spec.port}/tcp") or []
    if not any(str(b.get("HostPort")) == str(spec.port) for b in bound):
        return f"port {spec.port}/tcp is not published on the host"
    return ""


def adoption_problem(client: docker.DockerClient, container_id: str, spec: LaunchSpec) -> str:
    """Why the recorded container cannot be taken over for ``spec``; "" when it can.

    It must still run, from the same image, with the same environment (its instance id aside),
    memory limit and network mode: adopting a container of another plan would supervise
    something other than what was asked for.
    """
    container = find_container(client, container_id)
    if container is None:
        return f"container {container_id} is gone"
    if container.status != "running":
        return f"container {container_id} is {container.status}"
    config = container.attrs.get("Config") or {}
    host = container.attrs.get("HostConfig") or {}
    if config.get("Image") != spec.image:
        return f"it runs image {config.get('Image')}, the plan wants {spec.image}"
    wanted = run_options(spec, "")["environment"]
    have = dict(e.split("=", 1) for e in config.get("Env") or [] if "=" in e)
    changed = sorted(k for k in wanted if k != INSTANCE_ENV and have.get(k) != wanted[k])
    if changed:
        first = changed[0]
        return (f"its environment differs from the plan ({first}: {have.get(first, '(unset)')} -> {wanted[first]}"
                + (f", and {len(changed) - 1} more" if len(changed) > 1 else "") + ")")
    if spec.memory_limit_bytes and int(host.get("Memory") or 0) != spec.memory_limit_bytes:
        return f"its memory limit {int(host.get('Memory') or 0)} differs from the plan's {spec.memory_limit_bytes}"
    if (host.get("NetworkMode") or "") != spec.network_mode:
        return f"its network mode {host.get('NetworkMode')} differs from {spec.network_mode}"
    return ""


class DockerRunner:
    """Runs one container of the runtime image."""

    backend = "docker"

    def __init__(self, spec: LaunchSpec, client: docker.DockerClient, deployment: str = "default") -> None:
        self.spec = spec
        self._client = client
        self._deployment = deployment
        self._container: Container | None = None
        self._instance_id = ""
        self._restarts_seen = 0
        self._started_at = 0.0

    @property
    def ident(self) -> str:
        return (self._container.id or "")[:12] if self._container is not None else ""

    @property
    def identity(self) -> RuntimeIdentity:
        return RuntimeIdentity(ident=self.ident, instance_id=self._instance_id)

    def start(self) -> str:
        name = container_name(self.spec)
        no_network = network_problem(self._client, self.spec)
        if no_network:
            raise LaunchError(f"cannot run container {name}: {no_network}",
                              "use --network host, or start dockerd with its default bridge")
        try:
            # A container of that name left behind by a crashed supervisor would block the name.
            stale = self._client.containers.list(all=True, filters={"name": f"^{name}$"})
            for old in stale:
                old.remove(force=True)
        except docker.errors.DockerException as exc:
            raise wrap(exc, f"cannot remove the old container {name}") from exc
        ensure_port_free(self.spec.port, self.spec.env_map.get("TAILOR_HOST", LOOPBACK)
                         if self.spec.network_mode == "host" else LOOPBACK,
                         container_label=lambda cid: deployment_of(self._client, cid))
        self._instance_id = new_instance_id()
        self._started_at = time.time()
        try:
            self._container = self._client.containers.run(
                self.spec.image, **run_options(self.spec, self._deployment, self._instance_id))
        except docker.errors.DockerException as exc:
            raise wrap(exc, f"cannot start container {name} from {self.spec.image}") from exc
        self._check_network()
        return self.ident

    def _check_network(self) -> None:
        assert self._container is not None
        try:
            self._container.reload()
        except docker.errors.DockerException as exc:
            raise wrap(exc, f"cannot inspect container {self.ident}") from exc
        problem = published_problem(self._container.attrs, self.spec)
        if problem:
            ident = self.ident
            self.remove()
            raise LaunchError(f"container {ident} cannot serve: {problem}",
                              "use --network host, or check the engine's networking (`docker network ls`)")

    def adopt(self, container_id: str, instance_id: str) -> bool:
        """Take over a running container a previous supervisor started; False when it is not running."""
        container = find_container(self._client, container_id)
        if container is None or container.status != "running":
            return False
        self._container = container
        self._instance_id = instance_id
        self._restarts_seen = int(container.attrs.get("RestartCount") or 0)
        return True

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
        restarts = int(self._container.attrs.get("RestartCount") or 0) if status != "removed" else 0
        if restarts > self._restarts_seen:
            self._restarts_seen = restarts
            oom, detail, code = self._last_exit_from_events()
            return RunnerStatus(running=True, restarted=True, oom_killed=oom, exit_code=code,
                                detail=f"{detail}; Docker restarted it (restart policy, restart {restarts})")
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

    def _last_exit_from_events(self) -> tuple[bool, str, int | None]:
        """(OOM-killed?, how it died, its exit code) for the container's last exit, from the engine's event log."""
        assert self._container is not None
        oom = False
        detail = "container exited"
        exit_code: int | None = None
        try:
            until = int(time.time()) + 1
            since, self._started_at = int(self._started_at) - 1, float(until)
            events = self._client.events(since=since, until=until, decode=True,
                                         filters={"container": self._container.id or "", "event": ["die", "oom"]})
            for event in events:
                if event.get("Action") == "oom":
                    oom = True
                elif event.get("Action") == "die":
                    code = (event.get("Actor") or {}).get("Attributes", {}).get("exitCode", "?")
                    detail = f"container exited with code {code}" + (" (SIGKILL)" if code == "137" else "")
                    exit_code = int(code) if str(code).isdigit() else None
        except docker.errors.DockerException as exc:
            return False, f"container exited ({_short(exc)})", None
        if oom:
            limit = (self.spec.memory_limit_bytes or 0) // _MB
            detail = f"OOM-killed at the {limit} MB container memory limit ({detail})"
        return oom, detail, exit_code

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
