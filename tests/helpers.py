"""Small helpers shared by the test tiers that run real processes and containers."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from orchestrator.supervise.state import DeploymentState, read_state

if TYPE_CHECKING:
    from orchestrator.supervise.deployment import Prepared

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class QuietHandler(BaseHTTPRequestHandler):
    """A stand-in server's request handler that logs nothing."""

    def log_message(self, *_args: Any) -> None:
        return


@contextlib.contextmanager
def served(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` served on a free 127.0.0.1 port from a thread: yields the base URL; shut down,
    closed and joined on exit."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def deploy(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the real `deploy` CLI in a child interpreter."""
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True,
                          timeout=timeout, check=False, env={**os.environ, **(env or {})})


def wait_for(predicate: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """Poll ``predicate`` every 0.2 s until it returns something truthy; fail after ``timeout_s``."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def state_or_none(state_dir: Path) -> DeploymentState | None:
    """The recorded deployment state, or None while there is none (or it is being written)."""
    try:
        return read_state(state_dir)
    except Exception:
        return None


def alive(pid: int) -> bool:
    """True while ``pid`` exists (``kill(pid, 0)``: a zombie not yet reaped still counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs: absent, or a zombie waiting for its parent to reap it."""
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def readme_command_lines(readme: str, fence: str, prefix: str) -> list[str]:
    """Every command line in ``readme``'s ```<fence> blocks that starts with ``prefix`` (comments cut off)."""
    lines = []
    for block in re.findall(rf"```{re.escape(fence)}\n(.*?)```", readme, flags=re.S):
        for line in block.splitlines():
            command = line.split("#", 1)[0].strip()
            if command.startswith(prefix):
                lines.append(command)
    return lines


def kill_process_deployment(state_dir: Path) -> DeploymentState | None:
    """SIGKILL by pid what a process-backend deployment in ``state_dir`` may have left running: its
    supervisor, and the runtime's process group. Returns the recorded state (None when there is none)."""
    import psutil

    state = state_or_none(state_dir)
    if state is None:
        return None
    for pid, group in ((state.supervisor_pid, False), (int(state.runner_id or 0), True)):
        if pid and psutil.pid_exists(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                (os.killpg if group else os.kill)(pid, signal.SIGKILL)
    return state


@contextlib.contextmanager
def killed_on_exit(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """Yield ``proc``; when the block leaves it still running (a failed assertion, a timeout), kill and reap it."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# One onnx worker peaks at about 250 MB (its start-up calibration synthesis included), two at about
# 370 MB: 300 MB holds one, never two.
OOM_LIMIT_MB = 300
OOM_LIMIT_BYTES = OOM_LIMIT_MB * 1024 * 1024


def plan_two_workers_over_memory(state_dir: Path, port: int) -> tuple[Prepared, dict[str, Any]]:
    """Plan a cpu-only deployment of two workers into ``state_dir``, then cut its container memory limit
    in plan.json to ``OOM_LIMIT_MB`` (300 MB): one worker fits, two do not. Returns the prepared deployment and the plan as written."""
    from orchestrator.pipeline import Inputs
    from orchestrator.supervise.deployment import plan_deployment

    prepared = plan_deployment(state_dir, Inputs(profile="cpu-only", environ={}, settings={
        "TAILOR_WORKERS": "2", "TAILOR_THREADS_PER_WORKER": "1", "TAILOR_PORT": str(port)}))
    assert prepared.plan is not None and prepared.plan.workers == 2
    plan_path = prepared.directory / "plan.json"
    plan: dict[str, Any] = json.loads(plan_path.read_text())
    plan["container"]["memory_limit_bytes"] = OOM_LIMIT_BYTES
    plan_path.write_text(json.dumps(plan))
    return prepared, plan
