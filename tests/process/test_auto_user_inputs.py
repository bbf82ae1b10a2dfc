"""`deploy auto` with the issue's inputs, for real: a config file, an extra profile directory and
--set, on the process backend with the real voice; `status --explain` shows where each value
came from, and the runtime really runs with those values."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import psutil
import pytest

from orchestrator.supervise.state import read_state
from tests.helpers import deploy, free_port, state_or_none

pytestmark = pytest.mark.slow

PROFILES = Path(__file__).resolve().parents[2] / "profiles"


@pytest.fixture
def state_dir(tmp_path: Path):
    """Stopped through the real `deploy down`; only if that fails, the recorded processes are killed."""
    sd = tmp_path / "state"
    yield sd
    if deploy("down", "--state-dir", str(sd), timeout=120).returncode == 0:
        return
    state = state_or_none(sd)
    recorded = [state.supervisor_pid, int(state.runner_id or 0)] if state is not None else []
    for proc in (psutil.Process(pid) for pid in recorded if pid and psutil.pid_exists(pid)):
        with contextlib.suppress(psutil.Error):
            proc.kill()


def test_auto_with_config_profiles_and_set(state_dir: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    text = (PROFILES / "cpu-only.yaml").read_text(encoding="utf-8")
    (mine / "my-cpu.yaml").write_text(text.replace("priority: 10", "priority: 11"), encoding="utf-8")
    config = tmp_path / "tailor.yaml"
    config.write_text("settings:\n  threads: 1\n  log_level: warning\nenv:\n  TAILOR_API_KEY: s3cret-key\n",
                      encoding="utf-8")
    port = free_port()
    no_daemon = {"DOCKER_HOST": f"unix://{tmp_path / 'no-docker.sock'}"}
    res = deploy("auto", "--config", str(config), "--profiles", str(mine), "--set", "TAILOR_WORKERS=1",
                 "--port", str(port), "--explain", "--detach", "--state-dir", str(state_dir), env=no_daemon)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "profile:  my-cpu" in res.stdout and "s3cret-key" not in res.stdout + res.stderr

    state = read_state(state_dir)
    assert state.state == "RUNNING" and state.profile == "my-cpu"
    # The runtime process really got the planned values.
    runtime_env = psutil.Process(int(state.runner_id)).environ()
    assert (runtime_env["TAILOR_WORKERS"], runtime_env["TAILOR_THREADS_PER_WORKER"]) == ("1", "1")
    assert runtime_env["TAILOR_LOG_LEVEL"] == "warning" and runtime_env["TAILOR_API_KEY"] == "s3cret-key"

    res = deploy("status", "--explain", "--json", "--state-dir", str(state_dir), env=no_daemon)
    assert res.returncode == 0, res.stderr + res.stdout
    rows = {row["name"]: row for row in json.loads(res.stdout)["sources"]}
    assert (rows["TAILOR_WORKERS"]["value"], rows["TAILOR_WORKERS"]["source"]) == ("1", "cli")
    assert rows["TAILOR_THREADS_PER_WORKER"]["source"] == "config"
    assert rows["TAILOR_PORT"]["source"] == "cli" and rows["TAILOR_BATCHING"]["source"] == "profile"
    assert rows["TAILOR_API_KEY"]["value"] == "***redacted***"
