"""Process identity from the kernel (orchestrator.launch.identity), and the decisions built on it.

The old identity was psutil's ``create_time()``: boot time from the wall clock plus the start
ticks, so every clock step moved it and a live supervisor was declared dead (issue 22: 324 s
after a VM pause, `status` said STALE, `down` left the supervisor running, `up` started a
second deployment). Here that time source is shifted by 400 s, as the pause did, while a real
process plays the supervisor (a script named ``deploy``) and a real HTTP server its runtime:
`status`, `up` and `down` must decide exactly as without the shift.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from orchestrator.errors import AlreadyRunningError
from orchestrator.launch.identity import (
    LEGACY_TOLERANCE_S,
    is_runtime_command,
    is_same_process,
    is_supervisor_command,
    parse_stat,
    read_stamp,
    recognise,
)
from orchestrator.launch.runner import RuntimeIdentity
from orchestrator.supervise.state import DeploymentState, read_state, supervisor_alive, write_state
from orchestrator.supervise.status import deployment_status
from orchestrator.supervise.teardown import reclaim, stop_deployment
from tests.helpers import QuietHandler, process_gone, served, wait_for

SHIFT_S = 400.0


# -- parsing /proc/PID/stat ----------------------------------------------------------------

STAT = ("4242 (python3) S 1 4242 4242 0 -1 4194560 2817 0 0 0 31 7 0 0 20 0 3 0 987654 "
        "31584256 6012 18446744073709551615 1 1 0 0 0 0 0 16781312 17642 0 0 0 17 1 0 0 0 0 0")


@pytest.mark.parametrize("comm", ["python3", "my prog", "a) b (c", "x)) S 1 2 3", ")"])
def test_start_ticks_are_field_22_whatever_the_command_name(comm: str) -> None:
    assert parse_stat(STAT.replace("(python3)", f"({comm})")) == ("S", 987654)


@pytest.mark.parametrize("text", ["", "4242 python3 S 1", "4242 (python3) S 1 2 3", "4242 (p) S " + "x " * 25])
def test_a_garbled_stat_line_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_stat(text)


def test_own_stamp_matches_the_kernel() -> None:
    stamp = read_stamp(os.getpid())
    assert stamp is not None
    assert stamp.start_ticks == int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    assert stamp.boot_id == Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def test_a_zombie_or_a_dead_pid_has_no_stamp() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_for(lambda: process_gone(child.pid), 10, "the child to exit")
    assert read_stamp(child.pid) is None  # a zombie: exited, not reaped yet
    child.wait()
    assert read_stamp(child.pid) is None


def test_another_boot_is_another_process() -> None:
    stamp = read_stamp(os.getpid())
    assert stamp is not None
    assert recognise(os.getpid(), stamp.start_ticks, stamp.boot_id).alive
    found = recognise(os.getpid(), stamp.start_ticks, "00000000-dead-beef-0000-000000000000")
    assert not found.alive and "earlier boot" in found.why
    reused = recognise(os.getpid(), stamp.start_ticks + 5, stamp.boot_id)
    assert not reused.alive and "now belongs to another process" in reused.why


def test_command_lines_of_supervisor_and_runtime() -> None:
    assert is_supervisor_command(["/opt/tailor/venv/bin/python", "/opt/tailor/venv/bin/deploy", "up"])
    assert is_supervisor_command(["python3", "-m", "orchestrator", "up", "--detached-child"])
    assert not is_supervisor_command(["python3", "-m", "pytest"])
    assert is_runtime_command(["/usr/bin/python3", "-m", "runtime"])
    assert not is_runtime_command(["python3", "-m", "runtimes"])


# -- a real stand-in supervisor and runtime ----------------------------------------------------

@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A live process whose command line is a supervisor's (``.../deploy up``); SIGTERM ends it."""
    script = tmp_path / "bin" / "deploy"
    script.parent.mkdir()
    script.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import signal, sys, time
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        print("ready", flush=True)
        time.sleep(300)
        """), encoding="utf-8")
    script.chmod(0o755)
    proc = subprocess.Popen([sys.executable, str(script), "up"], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    proc.stdout.close()


@pytest.fixture
def runtime_url() -> Iterator[str]:
    """A server answering /readyz 200 as instance ``abc123``, as the runtime does."""
    class Handler(QuietHandler):
        def do_GET(self) -> None:
            body = json.dumps({"ready": True, "state": "ready", "instance": "abc123", "workers": 1,
                               "queue_depth": 0}).encode()
            self.send_response(200)
            self.send_header("X-Tailor-Instance", "abc123")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with served(Handler) as url:
        yield url


def _record(sd: Path, pid: int, url: str, *, state: str = "RUNNING", with_ticks: bool = True) -> DeploymentState:
    """What the supervisor writes (deployment.make_supervisor): wall-clock start + start ticks."""
    stamp = read_stamp(pid)
    assert stamp is not None
    record = DeploymentState(
        profile="cpu-only", backend="docker", backend_reason="test", url=url, state=state,
        state_reason="ready after 3.0 s", supervisor_pid=pid,
        supervisor_started_at_s=psutil.Process(pid).create_time(), runner_id="c0ffee", instance_id="abc123",
        instance_started_at_s=time.time(), updated_at_s=time.time(),
        supervisor_start_ticks=stamp.start_ticks if with_ticks else None, boot_id=stamp.boot_id if with_ticks else "")
    write_state(sd, record)
    return record


@pytest.fixture
def shift_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Call it to move the wall-clock-derived start times by SHIFT_S, as a clock step or a VM
    pause moves them (after the record was written, as in real life)."""
    real_create_time = psutil.Process.create_time
    real_boot_time = psutil.boot_time

    def shift() -> None:
        monkeypatch.setattr(psutil.Process, "create_time", lambda self: real_create_time(self) + SHIFT_S)
        monkeypatch.setattr(psutil, "boot_time", lambda: real_boot_time() + SHIFT_S)

    return shift


def test_status_up_and_down_are_right_after_the_clock_moved(
        tmp_path: Path, supervisor: subprocess.Popen[bytes], runtime_url: str, shift_clock: Callable[[], None]) -> None:
    sd = tmp_path / "state"
    _record(sd, supervisor.pid, runtime_url)
    shift_clock()
    # status: the supervisor runs and its runtime is ready -> RUNNING, healthy (exit 0)
    report = deployment_status(sd)
    assert report.stale is None and report.healthy, report.problem
    assert report.lines()[0].startswith("state:        RUNNING - ready")
    # up: refused, the deployment is alive (not "stale: starting anew" next to it)
    with pytest.raises(AlreadyRunningError, match="already RUNNING"):
        reclaim(sd, {}, lambda _m: None, lambda _m: None)
    assert supervisor.poll() is None
    # down: stops the live supervisor itself (SIGTERM), not "the runtime of a dead one"
    said: list[str] = []
    final = stop_deployment(sd, {}, 10.0, said.append, said.append)
    assert f"stopping the supervisor (pid {supervisor.pid})" in said
    assert supervisor.wait(timeout=10) == 0
    assert final is not None and final.state == "STOPPED"


def _wait_exec(child: subprocess.Popen[bytes]) -> None:
    """Until the child has exec'd: between fork and exec its command line and environment are still
    pytest's, which no identity check should match (on a loaded machine that gap is long enough to see)."""
    wait_for(lambda: b"runtime" in Path(f"/proc/{child.pid}/cmdline").read_bytes().split(b"\0"), 10,
             f"pid {child.pid} to exec")


def test_a_recorded_runtime_is_still_itself_after_the_clock_moved(shift_clock: Callable[[], None]) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "-m", "runtime"],
                             env={**os.environ, "TAILOR_INSTANCE_ID": "inst-1"})
    try:
        _wait_exec(child)
        stamp = read_stamp(child.pid)
        assert stamp is not None
        identity = RuntimeIdentity(ident=str(child.pid), instance_id="inst-1", start_ticks=stamp.start_ticks,
                                   boot_id=stamp.boot_id)
        shift_clock()
        assert is_same_process(identity)
        assert not is_same_process(RuntimeIdentity(ident=str(child.pid), instance_id="other",
                                                   start_ticks=stamp.start_ticks, boot_id=stamp.boot_id))
    finally:
        child.kill()
        child.wait()
    assert not is_same_process(identity)


# -- state files of older versions (no start ticks) ----------------------------------------------

def test_an_old_state_file_is_judged_by_the_command_line_and_says_so(
        tmp_path: Path, supervisor: subprocess.Popen[bytes], runtime_url: str, shift_clock: Callable[[], None]) -> None:
    sd = tmp_path / "state"
    old = _record(sd, supervisor.pid, runtime_url, with_ticks=False)
    shift_clock()
    raw = json.loads((sd / "state.json").read_text())
    for key in ("supervisor_start_ticks", "runtime_start_ticks", "boot_id", "instance_started_boot_s"):
        raw.pop(key)
    (sd / "state.json").write_text(json.dumps(raw))  # exactly what an older Tailor wrote
    assert read_state(sd) == old
    assert supervisor_alive(old)
    report = deployment_status(sd)
    assert report.healthy, report.problem
    assert any(line.startswith("identity:     the state file was written by an older Tailor") and
               "recognised by its command line" in line for line in report.lines())
    # the same pid recorded for a process that is not a supervisor (pytest): not believed alive
    stranger = _record(tmp_path / "other", os.getpid(), runtime_url, with_ticks=False)
    assert not supervisor_alive(stranger)


def test_an_old_record_with_an_unreadable_command_line_compares_wall_clock_generously(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import orchestrator.launch.identity as identity

    monkeypatch.setattr(identity, "command_line", lambda _pid: None)
    started = psutil.Process(os.getpid()).create_time()
    near = recognise(os.getpid(), None, legacy_started_at_s=started + SHIFT_S, expected=is_supervisor_command)
    assert near.alive and f"within {LEGACY_TOLERANCE_S:.0f} s" in near.fallback
    far = recognise(os.getpid(), None, legacy_started_at_s=started - 3 * LEGACY_TOLERANCE_S,
                    expected=is_supervisor_command)
    assert not far.alive


# -- where the record and the machine disagree, the machine wins ---------------------------------

def test_status_believes_a_live_supervisor_over_a_stopped_record(
        tmp_path: Path, supervisor: subprocess.Popen[bytes], runtime_url: str) -> None:
    sd = tmp_path / "state"
    _record(sd, supervisor.pid, runtime_url, state="STOPPED")
    report = deployment_status(sd)
    assert report.state_now == "RUNNING" and report.healthy
    assert report.discrepancy.startswith(f"state.json says STOPPED, but its supervisor (pid {supervisor.pid}) "
                                         "still runs and its runtime still answers")
    data = report.to_dict()
    assert (data["state"], data["recorded_state"]) == ("RUNNING", "STOPPED")
    assert "discrepancy:  state.json says STOPPED" in "\n".join(report.lines())
    # down does not take the record's word either: it stops the supervisor
    final = stop_deployment(sd, {}, 10.0, lambda _m: None, lambda _m: None)
    assert supervisor.wait(timeout=10) == 0 and final is not None


def test_a_stopped_record_whose_runtime_still_answers_unsupervised_is_an_error(
        tmp_path: Path, runtime_url: str) -> None:
    sd = tmp_path / "state"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    record = _record(sd, os.getpid(), runtime_url, state="STOPPED")
    write_state(sd, DeploymentState(**{**record.__dict__, "supervisor_pid": gone.pid}))
    report = deployment_status(sd)
    assert report.state_now == "UNSUPERVISED" and not report.healthy
    assert "its runtime still answers on" in report.problem and f"`deploy down --state-dir {sd}` stops it" in report.problem


def test_down_stops_a_runtime_process_that_a_stopped_record_left_running(tmp_path: Path) -> None:
    sd = tmp_path / "state"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "-m", "runtime"],
                             env={**os.environ, "TAILOR_INSTANCE_ID": "inst-2"}, start_new_session=True)
    try:
        _wait_exec(child)
        stamp = read_stamp(child.pid)
        assert stamp is not None
        write_state(sd, DeploymentState(
            profile="cpu-only", backend="process", backend_reason="test", url="http://127.0.0.1:9", state="STOPPED",
            state_reason="stopped", supervisor_pid=2**22 + 7, supervisor_started_at_s=1.0,
            runner_id=str(child.pid), instance_id="inst-2", supervisor_start_ticks=1,
            runtime_start_ticks=stamp.start_ticks, boot_id=stamp.boot_id))
        warned: list[str] = []
        final = stop_deployment(sd, {}, 10.0, lambda _m: None, warned.append)
        assert final is not None and final.state == "STOPPED"
        assert child.wait(timeout=10) == -signal.SIGTERM
        assert any(w.startswith("state.json says STOPPED, but runtime pid") for w in warned)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


# -- the port-holder report ---------------------------------------------------------------------

LISTEN = ("import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
          "print(s.getsockname()[1], flush=True); time.sleep(60)")


def test_a_port_holder_is_named_as_a_deployment_only_when_its_state_file_records_it(tmp_path: Path) -> None:
    from orchestrator.errors import PortInUseError
    from orchestrator.launch.ports import ensure_port_free
    from orchestrator.supervise.state import recorded_runtime

    sd = tmp_path / "state"
    sd.mkdir()
    child = subprocess.Popen([sys.executable, "-c", LISTEN, "-m", "runtime"], cwd=sd, stdout=subprocess.PIPE,
                             env={**os.environ, "TAILOR_INSTANCE_ID": "inst-3"})
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        stamp = read_stamp(child.pid)
        assert stamp is not None
        record = DeploymentState(
            profile="cpu-only", backend="process", backend_reason="test", url=f"http://127.0.0.1:{port}",
            state="RUNNING", state_reason="ready", supervisor_pid=2**22 + 7, supervisor_started_at_s=1.0,
            runner_id=str(child.pid), instance_id="inst-3", supervisor_start_ticks=1,
            runtime_start_ticks=stamp.start_ticks, boot_id=stamp.boot_id)
        write_state(sd, record)
        with pytest.raises(PortInUseError) as ours:
            ensure_port_free(port, recorded=recorded_runtime)
        assert f"pid {child.pid} (python -c" in ours.value.message and f"deployment in {sd}" in ours.value.message
        assert f"`deploy down --state-dir {sd}`" in ours.value.hint
        # the same directory now records another launch: `deploy down` there would not stop this one
        write_state(sd, DeploymentState(**{**record.__dict__, "runtime_start_ticks": stamp.start_ticks - 1}))
        with pytest.raises(PortInUseError) as stray:
            ensure_port_free(port, recorded=recorded_runtime)
        assert f"a runtime started from {sd} that its state.json does not record" in stray.value.message
        assert f"kill -TERM -- -{child.pid}" in stray.value.hint
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
