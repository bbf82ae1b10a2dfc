"""`deploy auto --backend docker` end to end on a real engine: ready, synthesize, kill, restart, OOM step-down."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from orchestrator.supervise.http_client import synthesize_to
from orchestrator.supervise.state import read_state
from tests.helpers import (
    OOM_LIMIT_BYTES,
    OOM_LIMIT_MB,
    deploy,
    free_port,
    plan_two_workers_over_memory,
    state_or_none,
    wait_for,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_auto_docker_ready_synthesize_kill_restart_down(docker_client, runtime_image: str, base_image: str,
                                                          wheelhouse: Path, state_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    wav = tmp_path / "first.wav"
    t0 = time.monotonic()
    res = deploy("auto", "--backend", "docker", "--network", "host", "--port", str(port), "--detach",
                 "--state-dir", str(state_dir), "--base-image", base_image, "--wheelhouse", str(wheelhouse),
                 "--synthesize-to", str(wav))
    assert res.returncode == 0, res.stderr + res.stdout
    print(f"deploy auto (docker, image present) to ready + first synthesis: {time.monotonic() - t0:.1f} s")
    assert "backend:  docker (docker daemon answered at unix://" in res.stdout
    assert f"image {runtime_image} already exists" in res.stderr
    assert wav.read_bytes()[:4] == b"RIFF"

    state = read_state(state_dir)
    container = docker_client.containers.get(state.runner_id)
    host_config = container.attrs["HostConfig"]
    assert container.attrs["Config"]["User"] == "10001:10001"
    assert host_config["ReadonlyRootfs"] is True and host_config["CapDrop"] == ["ALL"]
    assert host_config["SecurityOpt"] == ["no-new-privileges"] and host_config["NetworkMode"] == "host"
    assert host_config["Memory"] > 0 and host_config["NanoCpus"] > 0
    assert f"TAILOR_PORT={port}" in container.attrs["Config"]["Env"]

    container.kill()
    t_kill = time.monotonic()
    back = wait_for(lambda: (s := state_or_none(state_dir)) and s.restarts == 1 and s.state == "RUNNING" and s,
                    90, "the supervisor to bring the container back")
    print(f"docker restart after kill, to ready: {time.monotonic() - t_kill:.1f} s")
    assert back.last_exit_reason == "container exited with code 137 (SIGKILL)"
    assert back.runner_id != state.runner_id
    assert synthesize_to(back.url, tmp_path / "second.wav") > 10_000

    logs = deploy("logs", "-n", "20", "--state-dir", str(state_dir))
    assert "ready: onnx:" in logs.stdout

    down = deploy("down", "--state-dir", str(state_dir))
    assert down.returncode == 0, down.stderr
    assert read_state(state_dir).state == "STOPPED"
    assert docker_client.containers.list(all=True, filters={"label": "io.tailor.deployment"}) == []


def test_too_small_memory_limit_is_oom_killed_and_stepped_down(docker_client, runtime_image: str,
                                                                 state_dir: Path) -> None:
    # Two workers, and a limit that holds one worker, never two.
    prepared, _plan = plan_two_workers_over_memory(state_dir, free_port())

    res = deploy("up", str(prepared.directory), "--backend", "docker", "--network", "host", "--detach",
                 "--state-dir", str(state_dir))
    assert res.returncode == 0, res.stderr + res.stdout
    state = read_state(state_dir)
    assert state.state == "RUNNING"
    assert state.step_downs == ("OOM step-down: workers 2 -> 1",)
    oom = [t for t in state.transitions if t.to_state == "BACKOFF"]
    # Seen either before Docker's restart policy acts (State.OOMKilled) or after it (the engine's
    # oom event): both say so, with the limit.
    assert oom and "OOM-killed" in oom[0].reason and f"{OOM_LIMIT_MB} MB container memory limit" in oom[0].reason, oom
    assert "step-down after OOM-killed" in (state_dir / "supervisor.log").read_text()
    container = docker_client.containers.get(state.runner_id)
    assert "TAILOR_WORKERS=1" in container.attrs["Config"]["Env"]
    # The step-down keeps the plan's memory limit: it fits the work into it, never grows it.
    assert container.attrs["HostConfig"]["Memory"] == OOM_LIMIT_BYTES
    status = deploy("status", "--json", "--state-dir", str(state_dir))
    assert status.returncode == 0, status.stdout + status.stderr
    view = json.loads(status.stdout)["runtime"]
    assert view["ready"] and view["ours"] and view["readyz"]["workers"] == 1
    assert deploy("down", "--state-dir", str(state_dir)).returncode == 0
