"""`deploy auto --backend process --set processes=2`: the real CLI runs two server processes
behind the one port; `status` covers both; `down` drains the group and leaves no process."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from orchestrator.plan.planner import Plan
from orchestrator.supervise.state import read_state
from tests.helpers import deploy, free_port, kill_process_deployment, process_gone, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def state_dir(tmp_path: Path):  # type: ignore[no-untyped-def]
    sd = tmp_path / "state"
    yield sd
    kill_process_deployment(sd)  # whatever the test left running, stopped by pid


def test_two_processes_through_the_cli_status_and_down(state_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    res = deploy("auto", "--backend", "process", "--port", str(port), "--detach", "--state-dir", str(state_dir),
                 "--set", "processes=2", "--set", "workers=1", "--set", "threads=1",
                 env={"DOCKER_HOST": f"unix://{tmp_path / 'no-docker.sock'}"})
    assert res.returncode == 0, res.stderr + res.stdout
    assert f"ready:    http://127.0.0.1:{port}" in res.stdout
    state = read_state(state_dir)
    assert state.state == "RUNNING" and state.backend == "process"
    plan = json.loads((state_dir / "rendered" / "plan.json").read_text())
    assert plan["processes"] == 2 and "TAILOR_PROCESSES" not in plan["other_env"]  # stored once, typed
    assert Plan.from_dict(plan).env["TAILOR_PROCESSES"] == "2"  # the text made from it

    status = deploy("status", "--state-dir", str(state_dir))
    assert status.returncode == 0, status.stdout + status.stderr
    line = next(x for x in status.stdout.splitlines() if x.startswith("processes:"))
    assert line.startswith("processes:    2/2 ready (0: pid ") and ", 1: pid " in line
    data = json.loads(deploy("status", "--json", "--state-dir", str(state_dir)).stdout)
    group = data["runtime"]["readyz"]["processes"]
    pids = [int(m["pid"]) for m in group["members"]]
    assert group["count"] == 2 and group["ready"] == 2 and len(set(pids)) == 2
    assert int(state.runner_id) not in pids  # the parent serves nothing; its children do

    # Both serve the one URL, and /metrics counts both.
    seen: set[int] = set()
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        while seen != set(pids):
            assert time.monotonic() < deadline, f"only {seen} answered"
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as fresh:  # a new connection
                seen.add(int(fresh.get("/healthz").headers["X-Tailor-Pid"]))
        metrics = client.get("/metrics").text
    healthz = sum(float(x.rsplit(" ", 1)[1]) for x in metrics.splitlines()
                  if x.startswith('tailor_requests_total{route="/healthz",status="200"}'))
    assert healthz >= len(seen)

    down = deploy("down", "--state-dir", str(state_dir))
    assert down.returncode == 0, down.stdout + down.stderr
    for pid in (int(state.runner_id), *pids):
        wait_for(lambda pid=pid: process_gone(pid), 30, f"process {pid} to exit")  # type: ignore[misc]
