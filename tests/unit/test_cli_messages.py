"""Messages a newcomer meets (issue 22): each says what is wrong, and its hint acts on the same
deployment. Run through the real `deploy` CLI where the message comes from the CLI."""

from __future__ import annotations

import os
import time
from pathlib import Path

from orchestrator.launch.identity import read_stamp
from orchestrator.supervise.session import Progress
from orchestrator.supervise.state import DeploymentState, write_state
from tests.helpers import deploy, free_port

FACTS = Path(__file__).resolve().parents[1] / "fixtures" / "facts" / "cpu-4core-16gb.json"


def _record_live(sd: Path, state: str = "RUNNING") -> None:
    """A deployment whose supervisor is this test process (alive, same start ticks)."""
    stamp = read_stamp(os.getpid())
    assert stamp is not None
    write_state(sd, DeploymentState(
        profile="cpu-only", backend="process", backend_reason="test", url=f"http://127.0.0.1:{free_port()}",
        state=state, state_reason=f"{state.lower()} for the test", supervisor_pid=os.getpid(),
        supervisor_started_at_s=time.time(), supervisor_start_ticks=stamp.start_ticks, boot_id=stamp.boot_id))


class _Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def data(self, text: str) -> None:
        self.lines.append(text)

    info = warn = data


def test_the_readiness_wait_never_prints_an_empty_reason() -> None:
    out = _Lines()
    progress = Progress(out, every_s=0.0)
    progress("STARTING", "")
    progress("STARTING", "failed: GET /readyz: connection refused")
    assert out.lines[0].endswith("s, STARTING, no health check answered yet)") and "STARTING: )" not in out.lines[0]
    assert out.lines[1].endswith("s, STARTING: failed: GET /readyz: connection refused)")


def test_hints_name_the_state_dir_they_were_given(tmp_path: Path) -> None:
    sd = tmp_path / "srv-tts"
    _record_live(sd, "BACKOFF")
    res = deploy("status", "--state-dir", str(sd))
    assert res.returncode == 1
    assert (f"hint: see `deploy logs --state-dir {sd}`; `deploy down --state-dir {sd}` stops it, "
            f"`deploy up --state-dir {sd}` restarts it") in " ".join(res.stderr.split())


def test_up_of_an_empty_directory_says_what_is_wrong_even_beside_a_live_deployment(tmp_path: Path) -> None:
    sd, empty = tmp_path / "state", tmp_path / "empty"
    empty.mkdir()
    _record_live(sd)
    res = deploy("up", str(empty), "--backend", "process", "--state-dir", str(sd))
    assert res.returncode == 1
    text = " ".join(res.stderr.split())
    assert f"{empty} is not a rendered deployment" in text and "already RUNNING" not in text


def test_a_mistyped_variable_or_knob_gets_a_did_you_mean() -> None:
    for given, meant in (("TAILOR_WORKRES=2", "TAILOR_WORKERS"), ("threds=2", "threads")):
        res = deploy("plan", "--facts", str(FACTS), "--set", given)
        assert res.returncode == 2 and f"(did you mean '{meant}'?)" in res.stderr, res.stderr


def test_a_config_file_with_two_errors_reports_both(tmp_path: Path) -> None:
    config = tmp_path / "tailor.yaml"
    config.write_text("settings:\n  threds: 2\n  workers: zero\nenv:\n  TAILOR_LOG_LEVEL: loud\n", encoding="utf-8")
    res = deploy("plan", "--facts", str(FACTS), "--config", str(config))
    assert res.returncode == 2
    text = res.stderr
    assert f"3 problems in {config}:" in text
    assert f"{config}:2: field settings.threds: unknown field (did you mean 'threads'?)" in text
    assert f"{config}:3: field settings.workers: TAILOR_WORKERS='zero' is invalid" in text
    assert f"{config}:5: field env.TAILOR_LOG_LEVEL: TAILOR_LOG_LEVEL='loud' is invalid" in text
