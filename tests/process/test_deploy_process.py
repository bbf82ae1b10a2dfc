"""`deploy auto/status/logs/down` with the process backend: real CLI, real runtime, real voice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from orchestrator.supervise.http_client import synthesize_to
from orchestrator.supervise.state import read_state
from tests.helpers import (
    OOM_LIMIT_BYTES,
    OOM_LIMIT_MB,
    deploy,
    free_port,
    kill_process_deployment,
    killed_on_exit,
    plan_two_workers_over_memory,
    process_gone,
    state_or_none,
    wait_for,
)

pytestmark = pytest.mark.slow










@pytest.fixture
def state_dir(tmp_path: Path):
    sd = tmp_path / "state"
    yield sd
    kill_process_deployment(sd)  # whatever the test left running, stopped by pid


def test_detached_deploy_restart_after_kill_and_down(state_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    wav = tmp_path / "first.wav"
    t0 = time.monotonic()
    no_daemon = f"unix://{tmp_path / 'no-docker.sock'}"
    res = deploy("auto", "--port", str(port), "--detach", "--state-dir", str(state_dir),
                 "--synthesize-to", str(wav), env={"DOCKER_HOST": no_daemon})
    assert res.returncode == 0, res.stderr + res.stdout
    assert "backend:  process (no Docker daemon" in res.stdout  # --backend auto says why
    assert f"ready:    http://127.0.0.1:{port}" in res.stdout
    assert "curl -s" in res.stdout
    print(f"deploy auto (process) to ready + first synthesis: {time.monotonic() - t0:.1f} s")
    assert wav.read_bytes()[:4] == b"RIFF" and wav.stat().st_size > 10_000
    state = read_state(state_dir)
    assert state.state == "RUNNING" and state.backend == "process"
    assert (state_dir / "rendered" / "plan.json").is_file() and (state_dir / "rendered" / "docker-compose.yml").is_file()

    first_pid = int(state.runner_id)
    os.kill(first_pid, signal.SIGKILL)
    t_kill = time.monotonic()
    back = wait_for(lambda: (s := state_or_none(state_dir)) and s.restarts == 1 and s.state == "RUNNING" and s,
                    60, "the supervisor to restart the runtime")
    print(f"process restart after kill -9, to ready: {time.monotonic() - t_kill:.1f} s")
    assert back.last_exit_reason == "killed by SIGKILL"
    assert int(back.runner_id) != first_pid
    assert synthesize_to(back.url, tmp_path / "second.mp3") > 1000
    mp3 = (tmp_path / "second.mp3").read_bytes()
    assert mp3[:3] == b"ID3" or mp3[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2")  # ID3 tag or an MPEG frame

    st = deploy("status", "--json", "--state-dir", str(state_dir))
    data = json.loads(st.stdout)
    assert data["restarts"] == 1 and data["stale"] is False and data["uptime_s"] >= 0
    assert data["backend_reason"].startswith("no Docker daemon")  # the detached supervisor keeps the reason
    assert "killed by SIGKILL" in deploy("status", "--state-dir", str(state_dir)).stdout
    assert any("ready: onnx:" in line for line in deploy("logs", "-n", "50", "--state-dir", str(state_dir)).stdout.splitlines())

    down = deploy("down", "--state-dir", str(state_dir))
    assert down.returncode == 0, down.stderr
    final = read_state(state_dir)
    assert final.state == "STOPPED"
    assert process_gone(final.supervisor_pid)
    assert process_gone(int(back.runner_id))
    assert "STOPPING -> STOPPED" in (state_dir / "supervisor.log").read_text()


def test_foreground_ctrl_c_stops_cleanly(state_dir: Path) -> None:
    port = free_port()
    with killed_on_exit(subprocess.Popen([sys.executable, "-m", "orchestrator", "auto", "--backend", "process",
                                          "--port", str(port), "--state-dir", str(state_dir)],
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)) as proc:
        state = wait_for(lambda: (s := state_or_none(state_dir)) and s.state == "RUNNING" and s, 120, "ready")
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err  # interrupted, as the README says, after a clean stop
    assert "RUNNING -> STOPPING: interrupted (Ctrl-C)" in err
    assert read_state(state_dir).state == "STOPPED"
    assert not psutil.pid_exists(int(state.runner_id))


def test_second_deploy_in_same_state_dir_is_refused(state_dir: Path) -> None:
    port = free_port()
    assert deploy("auto", "--backend", "process", "--port", str(port), "--detach",
                  "--state-dir", str(state_dir)).returncode == 0
    again = deploy("auto", "--backend", "process", "--port", str(free_port()), "--detach", "--state-dir", str(state_dir))
    assert again.returncode == 1  # a deployment error, not a usage error
    assert "a deployment is already RUNNING" in again.stderr and "deploy down" in again.stderr
    assert deploy("down", "--state-dir", str(state_dir)).returncode == 0


def test_status_without_deployment_is_a_clear_error(tmp_path: Path) -> None:
    res = deploy("status", "--state-dir", str(tmp_path / "none"))
    assert res.returncode == 1
    assert "no deployment recorded" in res.stderr and "Traceback" not in res.stderr


def test_up_from_a_directory_without_plan_is_a_clear_error(tmp_path: Path) -> None:
    res = deploy("up", str(tmp_path), "--backend", "process", "--state-dir", str(tmp_path / "s"))
    assert res.returncode == 1
    assert "is not a rendered deployment" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("with_plan", [True, False], ids=["plan.json", "compose+env-only"])
def test_up_from_deploy_render_output(state_dir: Path, tmp_path: Path, with_plan: bool) -> None:
    port = free_port()
    out = tmp_path / "rendered"
    res = deploy("render", "--port", str(port), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert (out / "plan.json").is_file() and (out / "facts.json").is_file()
    if not with_plan:  # a directory rendered elsewhere, or by hand: compose + .env only
        (out / "plan.json").unlink()
        (out / "facts.json").unlink()
    up = deploy("up", str(out), "--backend", "process", "--detach", "--state-dir", str(state_dir))
    assert up.returncode == 0, up.stderr + up.stdout
    assert ("launching from docker-compose.yml + .env" in up.stderr) is (not with_plan)
    state = read_state(state_dir)
    assert state.state == "RUNNING" and state.url == f"http://127.0.0.1:{port}"
    conns = [c for c in psutil.Process(int(state.runner_id)).net_connections(kind="tcp")
             if c.status == psutil.CONN_LISTEN]
    assert [c.laddr.ip for c in conns] == ["127.0.0.1"]  # the compose .env's 0.0.0.0 is not used on the host
    assert deploy("down", "--state-dir", str(state_dir)).returncode == 0


def test_oom_kill_is_detected_and_stepped_down(state_dir: Path) -> None:
    prepared, plan = plan_two_workers_over_memory(state_dir, free_port())  # two workers do not fit in OOM_LIMIT_MB
    res = deploy("up", str(prepared.directory), "--backend", "process", "--detach", "--state-dir", str(state_dir))
    assert res.returncode == 0, res.stderr + res.stdout
    state = read_state(state_dir)
    assert state.state == "RUNNING" and state.step_downs == ("OOM step-down: workers 2 -> 1",)
    (oom,) = [t for t in state.transitions if t.to_state == "BACKOFF"]
    # As root with a writable memory cgroup the kernel kills it; otherwise the RSS watchdog does.
    assert (f"OOM-killed by the kernel in its memory cgroup ({OOM_LIMIT_MB} MB limit)" in oom.reason
            or f"over the plan's memory budget {OOM_LIMIT_MB} MB (killed by the RSS watchdog)" in oom.reason), oom.reason
    child_env = psutil.Process(int(state.runner_id)).environ()
    assert child_env["TAILOR_WORKERS"] == "1"
    # The step-down keeps the plan's memory limit (and the runtime's threshold that goes with it).
    stepped = json.loads((prepared.directory / "plan.stepped.json").read_text())
    assert stepped["container"]["memory_limit_bytes"] == OOM_LIMIT_BYTES
    assert child_env["TAILOR_RSS_SOFT_LIMIT_BYTES"] == plan["other_env"]["TAILOR_RSS_SOFT_LIMIT_BYTES"]
    if state.cgroup_path:  # root with a memory controller: the kernel enforces the same limit
        limit_file = "memory.limit_in_bytes" if "/memory/" in state.cgroup_path else "memory.max"
        assert int((Path(state.cgroup_path) / limit_file).read_text()) == OOM_LIMIT_BYTES
    # status shows the runtime's own view of the stepped-down instance, and exits 0.
    status = deploy("status", "--json", "--state-dir", str(state_dir))
    assert status.returncode == 0, status.stdout + status.stderr
    view = json.loads(status.stdout)["runtime"]
    assert view["ready"] and view["ours"] and view["readyz"]["workers"] == 1
    assert deploy("down", "--state-dir", str(state_dir)).returncode == 0


def test_logs_follow_prints_new_lines(state_dir: Path) -> None:
    port = free_port()
    assert deploy("auto", "--backend", "process", "--port", str(port), "--detach",
                  "--state-dir", str(state_dir)).returncode == 0
    with killed_on_exit(subprocess.Popen([sys.executable, "-m", "orchestrator", "logs", "-f", "-n", "0",
                                          "--state-dir", str(state_dir)], stdout=subprocess.PIPE, text=True)) as follower:
        time.sleep(1.5)
        os.kill(int(read_state(state_dir).runner_id), signal.SIGKILL)  # the restart writes new lines
        wait_for(lambda: (s := state_or_none(state_dir)) and s.restarts == 1 and s.state == "RUNNING", 60, "restart")
        time.sleep(1.0)
        follower.send_signal(signal.SIGINT)
        out, _ = follower.communicate(timeout=20)
    lines = out.splitlines()
    assert len([ln for ln in lines if ln.startswith("--- ") and "starting:" in ln]) == 1, out  # -n 0: new lines only
    assert any("ready: onnx:" in ln for ln in lines), out
    assert deploy("down", "--state-dir", str(state_dir)).returncode == 0


def test_crash_loop_goes_fatal_with_the_runtime_error(state_dir: Path) -> None:
    # A failure a restart might fix (exit code 3: the GPU is not visible, as while a driver
    # reloads) is retried with backoff until the crash loop gives up. A broken model or
    # configuration is FATAL at once instead: tests/process/test_fault_injection.py.
    from orchestrator.pipeline import Inputs
    from orchestrator.supervise.deployment import plan_deployment

    prepared = plan_deployment(state_dir, Inputs(profile="cpu-only", environ={}, settings={
        "TAILOR_ENGINE": "torch", "TAILOR_DEVICE": "cuda", "TAILOR_FALLBACK": "", "TAILOR_WORKERS": "1",
        "TAILOR_PORT": str(free_port())}))
    assert prepared.spec.env_map["TAILOR_DEVICE"] == "cuda"
    t0 = time.monotonic()
    res = deploy("up", str(prepared.directory), "--backend", "process", "--detach", "--state-dir", str(state_dir))
    elapsed = time.monotonic() - t0
    assert res.returncode == 1
    assert "the runtime is FATAL: crash loop: 6 failures within 120 s" in res.stderr, res.stderr
    assert "torch sees no CUDA device" in res.stderr  # last log lines shown
    assert "Traceback" not in res.stderr
    state = read_state(state_dir)
    assert state.state == "FATAL" and state.restarts == 5
    assert 25 < elapsed < 300  # backoff 1+2+4+8+16 s (+-20 %) between the six attempts (torch imports each time)
    wait_for(lambda: not psutil.pid_exists(state.supervisor_pid), 10, "the supervisor to exit after FATAL")
