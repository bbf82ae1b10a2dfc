"""The process backend over real child processes (small Python commands, no voice)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from orchestrator.launch.memory_cgroup import MemoryCgroup
from orchestrator.launch.process_backend import ProcessRunner
from orchestrator.launch.runner import OsCalls
from orchestrator.launch.spec import LaunchSpec

SPEC = LaunchSpec(profile="t", image="x", flavor="cpu", env=(("TAILOR_PORT", "1"), ("TAILOR_MARK", "hello")),
                  port=1)
ALLOCATE = "import time; print('allocating', flush=True); b = bytearray(400 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); time.sleep(30)"


def wait_exit(runner: ProcessRunner, timeout_s: float = 20.0):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        status = runner.poll()
        if not status.running:
            return status
        time.sleep(0.1)
    raise AssertionError("the child did not exit")


@pytest.fixture
def runners():
    made: list[ProcessRunner] = []
    yield made
    for r in made:
        r.remove()  # stops anything still running, by pid


def make(runners, tmp_path: Path, code: str, spec: LaunchSpec = SPEC, **kw) -> ProcessRunner:
    r = ProcessRunner(spec, tmp_path, argv=[sys.executable, "-c", code], **kw)
    runners.append(r)
    return r


def test_env_logs_and_exit_code(tmp_path: Path, runners) -> None:
    r = make(runners, tmp_path, "import os, sys; print('mark', os.environ['TAILOR_MARK']); sys.exit(3)")
    pid = int(r.start())
    status = wait_exit(r)
    assert (status.exit_code, status.detail, status.oom_killed) == (3, "exited with code 3", False)
    assert r.logs(1) == ["mark hello"]
    assert pid > 0


def test_sigkill_is_reported_and_is_not_oom(tmp_path: Path, runners) -> None:
    r = make(runners, tmp_path, "import time; time.sleep(30)")
    pid = int(r.start())
    assert r.poll().running
    os.kill(pid, signal.SIGKILL)
    status = wait_exit(r)
    assert status.detail == "killed by SIGKILL" and not status.oom_killed


def test_stop_sends_sigterm_then_sigkill_after_grace(tmp_path: Path, runners) -> None:
    code = ("import signal, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: print('got TERM, ignoring', flush=True))\n"
            "print('up', flush=True)\n"
            "time.sleep(60)\n")
    r = make(runners, tmp_path, code)
    pid = int(r.start())
    while r.logs(1) != ["up"]:
        time.sleep(0.05)
    t0 = time.monotonic()
    status = r.stop(1.0)
    assert 0.9 <= time.monotonic() - t0 < 5
    assert "killed by SIGKILL" in status.detail and "did not stop within 1 s" in status.detail
    assert "got TERM, ignoring" in r.logs(5)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_stop_is_clean_when_child_honours_sigterm(tmp_path: Path, runners) -> None:
    r = make(runners, tmp_path, "import time; print('up', flush=True); time.sleep(60)")
    r.start()
    while r.logs(1) != ["up"]:
        time.sleep(0.05)
    status = r.stop(10.0)
    assert status.detail == "killed by SIGTERM"


class NotRoot(OsCalls):
    def geteuid(self) -> int:
        return 1000


def test_rss_watchdog_kills_over_budget_as_oom(tmp_path: Path, runners) -> None:
    spec = LaunchSpec(profile="t", image="x", flavor="cpu", env=(), port=1, memory_limit_bytes=150 * 1024 * 1024)
    r = make(runners, tmp_path, ALLOCATE, spec=spec, os_calls=NotRoot())
    r.start()
    assert r.memory_enforcement.startswith("RSS watchdog at 150 MB (not root")
    status = wait_exit(r)
    assert status.oom_killed and "over the plan's memory budget 150 MB" in status.detail


@pytest.mark.skipif(os.geteuid() != 0, reason="a memory cgroup needs root")
def test_cgroup_limit_oom_kill_is_detected(tmp_path: Path, runners) -> None:
    spec = LaunchSpec(profile="t", image="x", flavor="cpu", env=(), port=1, memory_limit_bytes=150 * 1024 * 1024)
    r = make(runners, tmp_path, ALLOCATE, spec=spec)
    r.start()
    if not r.memory_enforcement.startswith("cgroup"):
        pytest.skip(f"no writable memory cgroup here: {r.memory_enforcement}")
    status = wait_exit(r)
    assert status.oom_killed, status
    assert status.detail == "OOM-killed by the kernel in its memory cgroup (150 MB limit); killed by SIGKILL"
    cgroup_dir = Path(r.memory_enforcement.split()[2])
    r.remove()
    assert not cgroup_dir.exists()


def test_memory_cgroup_declines_without_root(tmp_path: Path) -> None:
    group, why = MemoryCgroup.create("x", 1, NotRoot(), tmp_path, Path("/proc"))
    assert group is None and why == "not root, so no memory cgroup"
