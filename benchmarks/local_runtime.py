"""Start ``python -m runtime`` on a free loopback port with this machine's planned environment.

Shared by the soak benchmarks: ``deploy plan --json`` gives the environment (workers, threads,
cache, allocator settings) and the RAM budget; :func:`local_runtime` starts the server with it,
waits for ``/readyz`` and always stops the server by pid on the way out.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def plan_environment() -> tuple[dict[str, str], int]:
    """The runtime environment and RAM budget (bytes) ``deploy plan --json`` gives this machine."""
    done = subprocess.run([sys.executable, "-m", "orchestrator", "plan", "--json"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=True)
    plan = json.loads(done.stdout)
    budget = sum(row["bytes"] for row in plan["memory_budget"]["rows"] if row.get("pool") == "ram")
    return {str(k): str(v) for k, v in plan["env"].items()}, int(budget)


@dataclass(frozen=True)
class LocalRuntime:
    base: str               # http://127.0.0.1:PORT
    server: subprocess.Popen[bytes]
    log: Path
    env_plan: dict[str, str]  # what the plan chose, before the benchmark's own overrides
    budget_bytes: int


@contextmanager
def local_runtime(overrides: dict[str, str], *, prefix: str, ready_s: float = 180) -> Iterator[LocalRuntime]:
    """The planned runtime with ``overrides`` on top, ready; stopped (SIGTERM, then SIGKILL) on exit.
    Exits with a message naming the log when the server dies or is not ready within ``ready_s``."""
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    env_plan, budget = plan_environment()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAILOR_")}
    env.update(env_plan)
    env.update({"TAILOR_HOST": "127.0.0.1", "TAILOR_PORT": str(port), "TAILOR_LOG_LEVEL": "warning", **overrides})
    with tempfile.NamedTemporaryFile(prefix=prefix, suffix=".log", delete=False) as log:
        server = subprocess.Popen([sys.executable, "-m", "runtime"], cwd=REPO, env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + ready_s
            while True:
                if server.poll() is not None:
                    raise SystemExit(f"runtime exited with {server.returncode}; log: {log.name}")
                try:
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"runtime not ready in {ready_s:g} s; log: {log.name}")
                time.sleep(0.2)
            yield LocalRuntime(base, server, Path(log.name), env_plan, budget)
        finally:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(60)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
