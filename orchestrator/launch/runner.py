"""The Runner protocol and the OS-call seam every runner goes through.

A runner owns one running instance of the runtime (a child process or a container): it can
start it, poll it, stop it and read its logs. The supervisor only talks to this protocol, so
unit tests drive the state machine with a fake runner and the real runners are tested for
real (``tests/process``, ``tests/docker``).
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol


@dataclass(frozen=True)
class RunnerStatus:
    """What a runner knows about its instance right now."""

    running: bool
    exit_code: int | None = None
    """Exit status once it stopped; negative for "killed by signal N" (process backend)."""
    oom_killed: bool = False
    detail: str = ""
    """A sentence: ``running``, ``exited with code 1``, ``OOM-killed (cgroup memory limit 200 MB)``."""
    restarted: bool = False
    """The engine restarted the instance by itself since the last poll (Docker's restart policy);
    ``detail`` says after what, ``oom_killed`` whether that exit was an OOM kill."""


INSTANCE_ENV = "TAILOR_INSTANCE_ID"
"""The runtime returns this value as ``X-Tailor-Instance`` and ``"instance"`` in /healthz, /readyz."""


def new_instance_id() -> str:
    """A fresh per-launch identity: readiness counts only when the answering server returns it."""
    return secrets.token_hex(8)


@dataclass(frozen=True)
class RuntimeIdentity:
    """What recognises one running instance later, from another process (``deploy up/down``)."""

    ident: str
    """Pid of the runtime process, or the container id."""
    instance_id: str
    started_at_s: float | None = None
    """Wall-clock start time (Unix seconds; psutil create_time) from a state file of an older
    Tailor: moves with the clock, so only a fallback where ``start_ticks`` is unknown."""
    cgroup_path: str = ""
    """The per-instance memory cgroup of a process runtime, removed with it."""
    start_ticks: int | None = None
    """Process runtime: ``/proc/PID/stat`` start time (clock ticks after boot), which tells a
    reused pid apart and never moves with the wall clock (``orchestrator.launch.identity``)."""
    boot_id: str = ""
    """The boot ``start_ticks`` belongs to (``/proc/sys/kernel/random/boot_id``)."""


class Runner(Protocol):
    backend: str
    """``process`` or ``docker``."""

    @property
    def ident(self) -> str:
        """Pid or container id of the current instance ("" before start)."""
        ...

    @property
    def identity(self) -> RuntimeIdentity:
        """Identity of the current instance (empty ident before start)."""
        ...

    def start(self) -> str:
        """Start a fresh instance; returns its pid or container id.

        Raises PortInUseError (naming the holder) when the port is taken, LaunchError otherwise.
        """
        ...

    def poll(self) -> RunnerStatus: ...

    def stop(self, grace_s: float) -> RunnerStatus:
        """SIGTERM, wait up to ``grace_s``, then SIGKILL; returns the final status."""
        ...

    def remove(self) -> None:
        """Release what the instance left behind (container, cgroup). Idempotent."""
        ...

    def logs(self, lines: int) -> list[str]:
        """The last ``lines`` lines the instance wrote (stdout and stderr)."""
        ...


class OsCalls:
    """Every operating-system call the process backend makes, in one object tests can replace."""

    def spawn(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
        # A new session: the child has its own process group, so Ctrl-C in the terminal
        # reaches the supervisor only, which then stops the child cleanly. The child also
        # gets SIGTERM when the supervisor dies (kill -9 included): the runtime never outlives
        # the process that tracks it (see die_with_parent).
        return subprocess.Popen(
            list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
            preexec_fn=die_with_parent(os.getpid()),
        )

    def kill(self, pid: int, sig: int) -> None:
        os.kill(pid, sig)

    def killpg(self, pgid: int, sig: int) -> None:
        os.killpg(pgid, sig)

    def read_text(self, path: Path) -> str:
        return path.read_text(encoding="utf-8")

    def write_text(self, path: Path, text: str) -> None:
        path.write_text(text, encoding="utf-8")

    def mkdir(self, path: Path) -> None:
        path.mkdir()

    def rmdir(self, path: Path) -> None:
        path.rmdir()

    def geteuid(self) -> int:
        return os.geteuid()


PR_SET_PDEATHSIG = 1
"""prctl option (linux/prctl.h): the signal this process gets when its parent thread exits."""


def die_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn``: the child receives ``sig`` when ``parent_pid`` dies (Linux PR_SET_PDEATHSIG).

    SIGTERM, not SIGKILL: the runtime drains in-flight requests and exits within its grace time.
    The death signal survives ``exec``. If the parent died between fork and prctl, the child
    would never get it, so that case exits at once.
    """
    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            os._exit(127)
        if os.getppid() != parent_pid:
            os._exit(128 + int(sig))

    return preexec


def describe_exit(code: int | None) -> str:
    """``exited with code 1`` / ``killed by SIGKILL`` from a Popen-style return code."""
    if code is None:
        return "running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    return f"exited with code {code}"
