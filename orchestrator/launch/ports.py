"""Who holds a TCP port: checked before every launch, so a busy port fails in seconds, named.

A port is busy when binding it fails with EADDRINUSE. The holder is found among the
listening sockets of the host (``psutil.net_connections``, Source: /proc/net/tcp{,6} joined with
/proc/<pid>/fd), and described by pid, command line and, where it is a Tailor runtime, its
deployment: the state directory a process runtime runs in (its working directory), or the
``io.tailor.deployment`` label of a Docker container (its cgroup names the container). A process
runtime is named as that deployment's only when the directory's state.json records it (same pid,
same start ticks after boot, same instance: ``orchestrator.launch.identity``); otherwise the
report says that `deploy down` there would not stop it.
"""

from __future__ import annotations

import errno
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from orchestrator.errors import PortInUseError
from orchestrator.launch.identity import is_runtime_command, runtime_recognition
from orchestrator.launch.runner import RuntimeIdentity
from orchestrator.plan.decisions import LOOPBACK

RecordedRuntime = Callable[[Path], "RuntimeIdentity | None"]
"""A state directory -> the process runtime its state.json records (None: none recorded)."""

_CONTAINER_ID = re.compile(r"(?:docker[-/]|/docker/)([0-9a-f]{64})")


@dataclass(frozen=True)
class PortHolder:
    """A process listening on the port, as far as this host lets us see it."""

    pid: int | None
    command: str
    """Its command line, shortened; empty when not visible (another user's process, not root)."""
    deployment: str = ""
    """A Tailor deployment it belongs to (state directory or container), "" when none is known."""
    container_id: str = ""
    unrecorded_in: str = ""
    """A process runtime started from this state directory that its state.json does not record."""

    def describe(self) -> str:
        if self.pid is None:
            return "a process this user cannot see (run as root, or `ss -ltnp` to name it)"
        text = f"pid {self.pid}" + (f" ({self.command})" if self.command else "")
        if self.container_id:
            text += f", container {self.container_id[:12]}"
        if self.deployment:
            text += f", deployment in {self.deployment}"
        if self.unrecorded_in:
            text += (f", a runtime started from {self.unrecorded_in} that its state.json does not record "
                     "(`deploy down` there will not stop it)")
        return text


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when ``host:port`` can be bound right now (SO_REUSEADDR, as servers bind)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def _short(cmdline: list[str], limit: int = 120) -> str:
    text = " ".join(Path(cmdline[0]).name if i == 0 else a for i, a in enumerate(cmdline)) if cmdline else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _container_of(pid: int, proc_root: Path) -> str:
    try:
        text = (proc_root / str(pid) / "cgroup").read_text(encoding="utf-8")
    except OSError:
        return ""
    match = _CONTAINER_ID.search(text)
    return match.group(1) if match else ""


def find_holders(port: int, *, proc_root: Path = Path("/proc"),
                 container_label: Callable[[str], str] | None = None,
                 recorded: RecordedRuntime | None = None) -> list[PortHolder]:
    """Processes listening on TCP ``port`` (any address); a pid-less entry when they are hidden.

    ``container_label`` maps a container id to its Tailor deployment (the docker backend passes
    one; without it a container is named by id only). ``recorded`` reads the runtime a state
    directory records (the supervise stage passes it); without it a process runtime is named by
    its working directory alone.
    """
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return [PortHolder(pid=None, command="")]
    pids = sorted({c.pid for c in conns if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port},
                  key=lambda p: (p is None, p or 0))
    holders: list[PortHolder] = []
    for pid in pids:
        if pid is None:
            holders.append(PortHolder(pid=None, command=""))
            continue
        try:
            proc = psutil.Process(pid)
            argv = proc.cmdline()
            command = _short(argv)
        except psutil.Error:
            command, argv = "", []
            proc = None
        container = _container_of(pid, proc_root)
        deployment = ""
        if container and container_label is not None:
            deployment = container_label(container)
        elif proc is not None and is_runtime_command(argv):
            try:
                cwd = Path(proc.cwd())
            except psutil.Error:
                cwd = None
            if cwd is not None and (cwd / "state.json").is_file():
                deployment = str(cwd)
        unrecorded = ""
        if deployment and not container and recorded is not None and not _records(recorded, Path(deployment), pid):
            deployment, unrecorded = "", deployment
        holders.append(PortHolder(pid=pid, command=command, deployment=deployment, container_id=container,
                                  unrecorded_in=unrecorded))
    return holders


def _records(recorded: RecordedRuntime, directory: Path, pid: int) -> bool:
    """Whether ``directory``'s state.json records the running process ``pid`` as its runtime."""
    identity = recorded(directory)
    return identity is not None and identity.ident == str(pid) and runtime_recognition(identity).alive


def ensure_port_free(port: int, host: str = LOOPBACK, *,
                     container_label: Callable[[str], str] | None = None,
                     recorded: RecordedRuntime | None = None) -> None:
    """PortInUseError naming the holder when ``host:port`` cannot be bound."""
    if port_is_free(port, host):
        return
    holders = find_holders(port, container_label=container_label, recorded=recorded) \
        or [PortHolder(pid=None, command="")]
    names = "; ".join(h.describe() for h in holders)
    tailor = next((h.deployment for h in holders if h.deployment), "")
    stray = next((h for h in holders if h.unrecorded_in), None)
    if tailor:
        hint = f"pass --port with a free port, or stop that deployment with `deploy down --state-dir {tailor}`"
    elif stray is not None:
        hint = f"pass --port with a free port, or stop that runtime with `kill -TERM -- -{stray.pid}`"
    else:
        hint = "pass --port with a free port, or stop that program"
    raise PortInUseError(f"port {port} is already in use by {names}", hint)
