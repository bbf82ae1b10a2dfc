"""The Runner protocol and the OS-call seam every runner goes through.

A runner owns one running instance of the runtime (a child process or a container): it can
start it, poll it, stop it and read its logs. The supervisor only talks to this protocol, so
unit tests drive the state machine with a fake runner and the real runners are tested for
real (``tests/process``, ``tests/docker``).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
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


class Runner(Protocol):
    backend: str
    """``process`` or ``docker``."""

    @property
    def ident(self) -> str:
        """Pid or container id of the current instance ("" before start)."""
        ...

    def start(self) -> str:
        """Start a fresh instance; returns its pid or container id. Raises LaunchError."""
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
        # reaches the supervisor only, which then stops the child cleanly.
        return subprocess.Popen(
            list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
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
