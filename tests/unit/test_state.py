"""The deployment state file: atomic writes, round trip, stale detection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.errors import StateError
from orchestrator.launch.identity import ProcessStamp, read_stamp
from orchestrator.supervise.state import (
    DeploymentState,
    Transition,
    read_state,
    stale_reason,
    state_dir_from,
    supervisor_alive,
    write_state,
)


def make_state(pid: int, ticks: int | None, state: str = "RUNNING") -> DeploymentState:
    return DeploymentState(
        profile="cpu-small", backend="process", backend_reason="no Docker daemon: socket missing",
        url="http://127.0.0.1:8000", state=state, state_reason="ready after 3.1 s",
        supervisor_pid=pid, supervisor_started_at_s=1.0, runner_id="4242", restarts=2,
        step_downs=("workers 2 -> 1",), last_log_lines=("a", "b"),
        transitions=(Transition(1.0, "STOPPED", "STARTING", "starting"),),
        supervisor_start_ticks=ticks, boot_id=_my_stamp().boot_id,
    )


def _my_stamp() -> ProcessStamp:
    stamp = read_stamp(os.getpid())
    assert stamp is not None
    return stamp


def test_round_trip(tmp_path: Path) -> None:
    state = make_state(os.getpid(), _my_stamp().start_ticks)
    write_state(tmp_path, state)
    assert read_state(tmp_path) == state
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temp file left behind


def test_write_replaces_atomically(tmp_path: Path) -> None:
    write_state(tmp_path, make_state(1, 0))
    inode_before = (tmp_path / "state.json").stat().st_ino
    write_state(tmp_path, make_state(2, 0))
    assert (tmp_path / "state.json").stat().st_ino != inode_before  # a rename, not an in-place rewrite
    assert read_state(tmp_path).supervisor_pid == 2


def test_missing_state_is_clear(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="no deployment recorded") as info:
        read_state(tmp_path)
    assert "deploy auto --detach" in info.value.hint


def test_garbled_state_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text('{"profile": \n', encoding="utf-8")
    with pytest.raises(StateError, match=r"state.json:2:1: not valid JSON"):
        read_state(tmp_path)


def test_wrong_schema_rejected(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text(json.dumps({"schema_version": 99}), encoding="utf-8")
    with pytest.raises(StateError, match="schema_version 99"):
        read_state(tmp_path)


def test_live_supervisor_is_not_stale() -> None:
    assert stale_reason(make_state(os.getpid(), _my_stamp().start_ticks)) is None


def test_dead_pid_is_stale() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    reason = stale_reason(make_state(child.pid, 0))
    assert reason is not None and f"pid {child.pid}" in reason and "gone" in reason


def test_reused_pid_is_stale() -> None:
    # Our own pid, but recorded with a different start time: an unrelated process reusing it.
    pid = os.getpid()
    ticks = _my_stamp().start_ticks
    reused = make_state(pid, ticks - 100)
    same = make_state(pid, ticks)
    # The pid alone is alive in both; only the recorded start time tells them apart.
    assert supervisor_alive(same) and not supervisor_alive(reused)
    reason = stale_reason(reused)
    assert reason is not None and f"pid {pid}" in reason and "gone" in reason
    assert stale_reason(same) is None


def test_stopped_state_is_never_stale() -> None:
    assert stale_reason(make_state(999_999_999, 0, state="STOPPED")) is None


def test_state_dir_precedence() -> None:
    assert state_dir_from("/x", {"TAILOR_STATE_DIR": "/y"}) == Path("/x")
    assert state_dir_from(None, {"TAILOR_STATE_DIR": "/y"}) == Path("/y")
    assert state_dir_from(None, {}) == Path(".tailor")


def test_state_reader_names_the_file_and_the_field(tmp_path: Path) -> None:
    state = make_state(1, 0.0)
    data = state.to_dict()
    data["restarts"] = "two"
    (tmp_path / "state.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(StateError, match=r"state.json: field restarts: expected an integer, got 'two'"):
        read_state(tmp_path)
    data = state.to_dict()
    data["transitions"][0]["at_s"] = None
    (tmp_path / "state.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(StateError, match=r"field transitions\[0\]\.at_s: expected a number"):
        read_state(tmp_path)
