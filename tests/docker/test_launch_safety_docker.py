"""Launch safety on a real Docker engine (issue 9).

The private test engine runs with ``--bridge=none``: a container on the default bridge would
get no network, so it is refused at start with the reason; the other scenarios use
``--network host``. Docker's restart policy repairs a crashed container when no supervisor
watches, a live supervisor counts Docker's restarts as its own, and no sequence of kill -9,
`up` and `down` leaves a container behind.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from orchestrator.supervise.http_client import check_ready
from orchestrator.supervise.state import read_state
from tests.helpers import deploy, free_port, state_or_none, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]
LABEL = "io.tailor.deployment"


def _kill_container_process(docker_client, container_id: str) -> int:
    """SIGKILL the container's main process from the host: a crash, not a `docker kill`."""
    container = docker_client.containers.get(container_id)
    pid = int(container.attrs["State"]["Pid"])
    os.kill(pid, signal.SIGKILL)
    return pid


def _restart_count(docker_client, container_id: str) -> int:
    return int(docker_client.containers.get(container_id).attrs.get("RestartCount") or 0)


def test_container_without_network_is_refused_at_once(docker_client, runtime_image: str, state_dir: Path) -> None:
    networks = {n.name for n in docker_client.networks.list()}
    if "bridge" in networks:
        pytest.skip("this engine has a default bridge; the scenario needs dockerd --bridge=none")
    t0 = time.monotonic()
    res = deploy("auto", "--backend", "docker", "--port", str(free_port()), "--detach", "--state-dir", str(state_dir))
    elapsed = time.monotonic() - t0
    assert res.returncode == 1, res.stdout + res.stderr
    assert "no default bridge network" in res.stderr and "--network host" in res.stderr, res.stderr
    assert elapsed < 60, elapsed  # not the start-up budget
    assert docker_client.containers.list(all=True, filters={"label": LABEL}) == []
    assert "Traceback" not in res.stderr


def test_killed_container_with_dead_supervisor_then_adopt_replace_and_down(docker_client, runtime_image: str, base_image: str,
                                                                wheelhouse: Path, state_dir: Path,
                                                                tmp_path: Path) -> None:
    port = free_port()
    res = deploy("auto", "--backend", "docker", "--network", "host", "--port", str(port), "--detach",
                 "--state-dir", str(state_dir), "--base-image", base_image, "--wheelhouse", str(wheelhouse))
    assert res.returncode == 0, res.stderr + res.stdout
    first = read_state(state_dir)
    container = docker_client.containers.get(first.runner_id)
    policy = container.attrs["HostConfig"]["RestartPolicy"]
    assert policy == {"Name": "on-failure", "MaximumRetryCount": 5}
    assert container.attrs["HostConfig"]["PidsLimit"] >= 512
    assert f"TAILOR_INSTANCE_ID={first.instance_id}" in container.attrs["Config"]["Env"]

    # Another deployment on the same port is refused and told whose container holds it.
    other = deploy("auto", "--backend", "docker", "--network", "host", "--port", str(port), "--detach",
                   "--state-dir", str(tmp_path / "other"))
    assert other.returncode == 1, other.stdout + other.stderr
    assert f"port {port} is already in use by pid" in other.stderr
    assert f"container {container.id[:12]}" in other.stderr and f"deployment in {state_dir.resolve()}" in other.stderr

    # A crash while the supervisor lives: Docker restarts it, the supervisor counts it, one container.
    _kill_container_process(docker_client, first.runner_id)
    back = wait_for(lambda: (s := state_or_none(state_dir)) and s.restarts == 1 and s.state == "RUNNING" and s,
                    90, "the supervisor to see Docker's restart and the runtime ready again")
    assert back.runner_id == first.runner_id and "Docker restarted it" in back.last_exit_reason, back.last_exit_reason
    assert "code 137" in back.last_exit_reason
    assert len(docker_client.containers.list(all=True, filters={"label": LABEL})) == 1

    # The supervisor dies; then the container crashes: Docker brings it back without anyone watching.
    os.kill(back.supervisor_pid, signal.SIGKILL)
    wait_for(lambda: not psutil.pid_exists(back.supervisor_pid), 10, "the supervisor to die")
    restarts = _restart_count(docker_client, first.runner_id)
    _kill_container_process(docker_client, first.runner_id)
    wait_for(lambda: _restart_count(docker_client, first.runner_id) > restarts, 30, "Docker's restart")
    wait_for(lambda: check_ready(first.url, first.instance_id).ok, 90, "the restarted runtime to be ready")

    st = deploy("status", "--json", "--state-dir", str(state_dir))
    assert st.returncode == 1  # STALE: nobody supervises it, even though it serves
    report = json.loads(st.stdout)
    assert report["stale"] is True and report["runtime"]["ready"] and report["runtime"]["ours"]

    # `up` of the same plan adopts it: same container, same instance, supervised again.
    up = deploy("up", "--backend", "docker", "--network", "host", "--detach", "--state-dir", str(state_dir))
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"adopting container {first.runner_id} (instance {first.instance_id})" in up.stderr, up.stderr
    adopted = read_state(state_dir)
    assert adopted.state == "RUNNING" and adopted.runner_id == first.runner_id
    assert adopted.instance_id == first.instance_id and adopted.supervisor_pid != back.supervisor_pid
    assert "adopted the running container" in adopted.transitions[0].reason
    assert deploy("status", "--state-dir", str(state_dir)).returncode == 0

    # Killed again, and `auto` with another plan: it does not adopt (says why), removes it, starts its own.
    os.kill(adopted.supervisor_pid, signal.SIGKILL)
    wait_for(lambda: not psutil.pid_exists(adopted.supervisor_pid), 10, "the supervisor to die")
    auto = deploy("auto", "--backend", "docker", "--network", "host", "--port", str(port), "--detach",
                  "--set", "TAILOR_MAX_QUEUE=7", "--state-dir", str(state_dir))
    assert auto.returncode == 0, auto.stdout + auto.stderr
    assert f"not adopting container {first.runner_id}: its environment differs from the plan" in auto.stderr
    assert f"removed container {first.runner_id}" in auto.stderr
    second = read_state(state_dir)
    assert second.state == "RUNNING" and second.runner_id != first.runner_id
    assert [c.id[:12] for c in docker_client.containers.list(all=True, filters={"label": LABEL})] == [second.runner_id]

    # Supervisor killed again, then `down`: the container goes; a second `down` has nothing to stop.
    os.kill(second.supervisor_pid, signal.SIGKILL)
    down = deploy("down", "--state-dir", str(state_dir))
    assert down.returncode == 0, down.stderr
    assert f"removed container {second.runner_id}" in down.stderr
    assert docker_client.containers.list(all=True, filters={"label": LABEL}) == []
    again = deploy("down", "--state-dir", str(state_dir))
    assert again.returncode == 0 and "nothing to stop" in again.stdout
