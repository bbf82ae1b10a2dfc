"""The README's exit codes, command by command: 0 ok, 1 deployment error, 2 usage, 130 interrupted.

Each row runs the real `deploy` CLI in a child interpreter. Recorded deployment states are real
state files whose supervisor is this test process (alive, with the right start time) or a pid
that is gone (stale). Rows that need a running runtime (RUNNING and ready, Ctrl-C of a foreground
`up`) live in the process tier: tests/process/test_launch_safety.py and test_deploy_process.py.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from orchestrator.launch.identity import read_stamp
from orchestrator.supervise.state import DeploymentState, write_state
from tests.helpers import deploy, free_port

FACTS = Path(__file__).resolve().parents[1] / "fixtures" / "facts" / "cpu-4core-16gb.json"
NO_DOCKER = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}


def _record(sd: Path, state: str, *, alive: bool = True, port: int | None = None) -> None:
    # A STOPPED or FATAL supervisor has exited; an active one is this test process.
    alive = alive and state not in ("STOPPED", "FATAL")
    pid = os.getpid() if alive else 2**22 + 7  # above pid_max's default: never a live process
    stamp = read_stamp(pid) if alive else None
    write_state(sd, DeploymentState(
        profile="cpu-only", backend="process", backend_reason="chosen with --backend process",
        url=f"http://127.0.0.1:{port or free_port()}", state=state, state_reason=f"{state.lower()} for the test",
        supervisor_pid=pid, supervisor_started_at_s=time.time(), updated_at_s=time.time(),
        supervisor_start_ticks=stamp.start_ticks if stamp else 1, boot_id=stamp.boot_id if stamp else ""))


def _deployment_error(res: object) -> None:
    assert "Traceback" not in getattr(res, "stderr", "")


ROWS = [
    # (id, state to record or None, argv, expected code, text expected on stderr/stdout)
    ("unknown-command", None, ["frobnicate"], 2, "No such command"),
    ("bad-flag", None, ["auto", "--no-such-flag"], 2, "No such option"),
    ("bad-facts-file", None, ["plan", "--facts", "/nonexistent/facts.json"], 2, "facts.json"),
    ("startup-timeout-zero", None, ["auto", "--facts", str(FACTS), "--backend", "process",
                                    "--startup-timeout", "0"], 2, "--startup-timeout 0 is not a positive"),
    ("unknown-profile", None, ["auto", "--facts", str(FACTS), "--profile", "cpu-onyl"], 2, "did you mean 'cpu-only'"),
    ("bad-backend", None, ["auto", "--facts", str(FACTS), "--backend", "podman"], 2, "--backend 'podman'"),
    ("status-nothing-recorded", None, ["status"], 1, "no deployment recorded"),
    ("down-nothing-recorded", None, ["down"], 0, "nothing to stop"),
    ("status-stopped", "STOPPED", ["status"], 0, "STOPPED"),
    ("status-starting", "STARTING", ["status"], 0, "STARTING"),
    ("status-fatal", "FATAL", ["status"], 1, "the runtime is FATAL"),
    ("status-backoff", "BACKOFF", ["status"], 1, "the runtime is in BACKOFF"),
    ("status-running-not-answering", "RUNNING", ["status"], 1, "the runtime does not answer"),
    ("status-stale", "RUNNING-stale", ["status"], 1, "the deployment is STALE"),
    ("status-json-fatal", "FATAL", ["status", "--json"], 1, '"healthy": false'),
    ("auto-already-running", "RUNNING", ["auto", "--facts", str(FACTS), "--backend", "process"], 1,
     "a deployment is already RUNNING"),
    ("up-already-running", "STARTING", ["up", "--backend", "process"], 1, "a deployment is already STARTING"),
    ("down-stopped", "STOPPED", ["down"], 0, "nothing to stop"),
    ("logs-nothing-recorded", None, ["logs"], 1, "no deployment recorded"),
    ("profiles-ok", None, ["profiles", "--facts", str(FACTS)], 0, "cpu-only"),
    ("plan-ok", None, ["plan", "--facts", str(FACTS), "--json"], 0, '"profile"'),
    ("plan-port-out-of-range", None, ["plan", "--facts", str(FACTS), "--set", "port=99999"], 2, "99999"),
    ("env-ok", None, ["env", "--json"], 0, "TAILOR_PORT"),
    ("render-bad-format", None, ["render", "--facts", str(FACTS), "--format", "nope"], 2, "nope"),
    ("down-fatal", "FATAL", ["down"], 0, "nothing to stop"),
]


@pytest.mark.parametrize(("recorded", "argv", "code", "text"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_exit_code_table(tmp_path: Path, recorded: str | None, argv: list[str], code: int, text: str) -> None:
    sd = tmp_path / "state"
    if recorded is not None:
        _record(sd, recorded.removesuffix("-stale"), alive=not recorded.endswith("-stale"))
    res = deploy(*argv, "--state-dir", str(sd), env=NO_DOCKER) if argv[0] in ("auto", "up", "status", "down", "logs") \
        else deploy(*argv, env=NO_DOCKER)
    assert res.returncode == code, f"{argv}: {res.returncode}\n{res.stdout}\n{res.stderr}"
    assert text in res.stdout + res.stderr, res.stdout + res.stderr
    _deployment_error(res)


def test_down_of_a_fatal_deployment_marks_it_stopped(tmp_path: Path) -> None:
    sd = tmp_path / "state"
    _record(sd, "FATAL", alive=False)
    assert deploy("down", "--state-dir", str(sd)).returncode == 0
    st = deploy("status", "--state-dir", str(sd))
    assert st.returncode == 0 and "STOPPED" in st.stdout


def test_timings_from_the_config_file_are_used_and_a_busy_port_fails_fast(tmp_path: Path) -> None:
    import socket

    config = tmp_path / "tailor.yaml"
    config.write_text("settings:\n  startup_timeout_s: 45\n  health_interval_s: 3\n", encoding="utf-8")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = deploy("auto", "--facts", str(FACTS), "--backend", "process", "--config", str(config),
                     "--port", str(port), "--state-dir", str(tmp_path / "state"), env=NO_DOCKER)
    assert res.returncode == 1, res.stdout + res.stderr
    assert ("timings: start-up budget 45 s (settings startup_timeout_s), "
            "health check every 3 s (settings health_interval_s)") in res.stderr
    assert f"port {port} is already in use by pid {os.getpid()}" in res.stderr


def test_a_bad_timing_in_the_config_file_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "tailor.yaml"
    config.write_text("settings:\n  startup_timeout_s: -5\n", encoding="utf-8")
    res = deploy("auto", "--facts", str(FACTS), "--backend", "process", "--config", str(config),
                 "--state-dir", str(tmp_path / "state"), env=NO_DOCKER)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "startup_timeout_s" in res.stderr and str(config) in res.stderr
