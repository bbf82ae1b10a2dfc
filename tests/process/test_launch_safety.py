"""Launch safety on the process backend, with the real CLI, runtime and voice (issue 9).

A busy port is refused in seconds with its holder named (a plain program, another deployment);
readiness counts only this launch's instance; the runtime dies with a killed supervisor, and no
sequence of kill -9, `up` and `down` leaves a runtime process or a memory cgroup behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from orchestrator.supervise.state import read_state
from tests.helpers import (
    deploy,
    free_port,
    kill_process_deployment,
    process_gone,
    state_or_none,
    wait_for,
)

pytestmark = pytest.mark.slow

NO_DOCKER = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}


def _cleanup(sd: Path) -> None:
    state = kill_process_deployment(sd)
    if state is None:
        return
    if state.cgroup_path and Path(state.cgroup_path).exists():
        wait_for(lambda: not (Path(state.cgroup_path) / "cgroup.procs").read_text().strip(), 10, "cgroup empty")
        Path(state.cgroup_path).rmdir()


@pytest.fixture
def state_dirs(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    dirs = (tmp_path / "a", tmp_path / "b")
    yield dirs
    for sd in dirs:
        _cleanup(sd)


@pytest.fixture
def listener() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A plain program (not Tailor) listening on a port."""
    port = free_port()
    code = ("import socket,time;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
            f"s.bind(('127.0.0.1',{port}));s.listen();print('up',flush=True);time.sleep(300)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"up"
    yield port, proc
    proc.kill()
    proc.wait()
    proc.stdout.close()


def test_port_held_by_a_plain_program_fails_in_seconds_naming_it(state_dirs: tuple[Path, Path],
                                                                 listener: tuple[int, subprocess.Popen[bytes]]) -> None:
    port, holder = listener
    t0 = time.monotonic()
    res = deploy("auto", "--port", str(port), "--detach", "--state-dir", str(state_dirs[0]), env=NO_DOCKER)
    elapsed = time.monotonic() - t0
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"port {port} is already in use by pid {holder.pid} (python -c import socket" in res.stderr, res.stderr
    assert "pass --port with a free port, or stop that program" in res.stderr
    assert elapsed < 20, elapsed  # probe + plan + render, no start-up budget waited out
    assert state_or_none(state_dirs[0]) is None  # nothing started, nothing recorded as running
    assert "Traceback" not in res.stderr


def test_port_held_by_another_deployment_names_it_and_never_reports_ready(state_dirs: tuple[Path, Path]) -> None:
    first, second = state_dirs
    port = free_port()
    res = deploy("auto", "--port", str(port), "--detach", "--state-dir", str(first), env=NO_DOCKER)
    assert res.returncode == 0, res.stderr
    owner = read_state(first)
    assert owner.instance_id and owner.runtime_start_ticks and owner.supervisor_start_ticks and owner.boot_id

    t0 = time.monotonic()
    again = deploy("auto", "--port", str(port), "--detach", "--state-dir", str(second), env=NO_DOCKER)
    assert again.returncode == 1, again.stdout + again.stderr
    assert time.monotonic() - t0 < 20
    assert "ready:" not in again.stdout  # the other server's readiness is never ours
    assert (f"port {port} is already in use by pid {owner.runner_id} (python -m runtime), "
            f"deployment in {first.resolve()}") in again.stderr, again.stderr
    assert f"deploy down --state-dir {first.resolve()}" in again.stderr

    # The same, one level down: `up` of a rendered directory whose supervisor is told the port is
    # free (the check is racy by nature) still refuses to call the other server's answer ready.
    from orchestrator.supervise.http_client import check_ready

    foreign = check_ready(owner.url, "0123456789abcdef")
    assert not foreign.ok and f"instance {owner.instance_id}" in foreign.detail
    assert check_ready(owner.url, owner.instance_id).ok

    st = deploy("status", "--json", "--state-dir", str(first))
    assert st.returncode == 0, st.stderr
    view = json.loads(st.stdout)["runtime"]
    assert view["ours"] and view["ready"] and view["readyz"]["instance"] == owner.instance_id
    assert deploy("down", "--state-dir", str(first)).returncode == 0


def _cgroup_gone(path: str) -> bool:
    return not path or not Path(path).exists()


def test_kill_9_of_the_supervisor_then_status_up_down_leaves_nothing(state_dirs: tuple[Path, Path]) -> None:
    sd = state_dirs[0]
    port = free_port()
    assert deploy("auto", "--port", str(port), "--detach", "--state-dir", str(sd), env=NO_DOCKER).returncode == 0
    first = read_state(sd)
    runtime = int(first.runner_id)

    # The runtime exits with its supervisor (PR_SET_PDEATHSIG: SIGTERM, then its own drain).
    os.kill(first.supervisor_pid, signal.SIGKILL)
    wait_for(lambda: process_gone(runtime), 30, "the runtime to exit with its supervisor")
    st = deploy("status", "--state-dir", str(sd))
    assert st.returncode == 1, st.stdout + st.stderr
    assert "(STALE)" in st.stdout and f"pid:          {runtime} (gone)" in st.stdout
    assert "the deployment is STALE" in st.stderr

    # `up` says what it found and cleans it (cgroup included) before starting anew.
    up = deploy("up", "--detach", "--state-dir", str(sd), env=NO_DOCKER)
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"pid {first.supervisor_pid}) is RUNNING, but that process is gone" in up.stderr
    assert "stopping what it left before starting anew" in up.stderr
    assert _cgroup_gone(first.cgroup_path)
    second = read_state(sd)
    assert second.state == "RUNNING" and second.instance_id != first.instance_id
    assert deploy("status", "--state-dir", str(sd)).returncode == 0

    # Killed again: `down` stops nothing twice and removes the cgroup; a second `down` is a no-op.
    os.kill(second.supervisor_pid, signal.SIGKILL)
    down = deploy("down", "--state-dir", str(sd))
    assert down.returncode == 0, down.stderr
    assert process_gone(int(second.runner_id))
    assert _cgroup_gone(second.cgroup_path)
    assert read_state(sd).state == "STOPPED"
    again = deploy("down", "--state-dir", str(sd))
    assert again.returncode == 0 and "nothing to stop" in again.stdout
    assert not [p for p in psutil.process_iter(["cmdline"]) if f"--state-dir {sd.resolve()}" in
                " ".join(p.info["cmdline"] or ())]


def test_the_runtime_never_outlives_a_killed_supervisor_even_mid_start(tmp_path: Path) -> None:
    """The death signal is set before the child runs any of its own code."""
    from orchestrator.launch.runner import OsCalls

    parent_code = (
        "import sys,time;from pathlib import Path;from orchestrator.launch.runner import OsCalls;"
        "log=open(sys.argv[1],'ab');"
        "c=OsCalls().spawn([sys.executable,'-c','import time;time.sleep(300)'],{},Path('.'),log);"
        "print(c.pid,flush=True);time.sleep(300)")
    parent = subprocess.Popen([sys.executable, "-c", parent_code, str(tmp_path / "log")], stdout=subprocess.PIPE,
                              cwd=Path(__file__).resolve().parents[2])
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert psutil.pid_exists(child)
    parent.kill()
    parent.wait()
    parent.stdout.close()
    wait_for(lambda: process_gone(child), 10, "the child to get SIGTERM from its parent's death")
    assert OsCalls  # the seam the process backend spawns through


def test_port_check_sees_a_listener_on_every_address() -> None:
    from orchestrator.launch.ports import port_is_free

    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        port = s.getsockname()[1]
        assert not port_is_free(port, "127.0.0.1")
    assert port_is_free(port, "127.0.0.1")


def test_a_runtime_under_memory_pressure_is_never_called_ready(state_dirs: tuple[Path, Path]) -> None:
    """/readyz is 503 while the runtime refuses new work; the launch says so instead of "ready"."""
    sd = state_dirs[0]
    t0 = time.monotonic()
    res = deploy("auto", "--port", str(free_port()), "--detach", "--state-dir", str(sd),
                 "--set", "TAILOR_RSS_SOFT_LIMIT_BYTES=20000000", "--startup-timeout", "20", env=NO_DOCKER)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "ready:" not in res.stdout
    assert "start-up stalled: not ready 20 s after start" in res.stderr, res.stderr
    assert "GET /readyz 503: resident memory" in res.stderr and "above the soft limit" in res.stderr
    assert time.monotonic() - t0 < 90
    state = read_state(sd)
    assert state.state == "FATAL" and process_gone(int(state.runner_id))
    st = deploy("status", "--state-dir", str(sd))
    assert st.returncode == 1 and "the runtime is FATAL: start-up stalled" in st.stderr
