"""Several server processes behind one port (``TAILOR_PROCESSES`` > 1).

Why processes: one runtime process tops out on its own CPU work per request under one GIL
(phonemizer, request handling, encoding): ~830-950 audio-s/s on the H200 host with an engine
that costs nothing (benchmarks/RESULTS.md), a fifth of what the GPU engine can do. Each process
here has its own GIL, phonemizer and engines (on CUDA its own context and weights).

Design:

* **One listening socket, inherited.** The parent binds ``TAILOR_HOST:TAILOR_PORT`` once and
  every child accepts on that same socket (passed as an inherited file descriptor). Unlike
  ``SO_REUSEPORT`` (one accept queue per process, whose queued connections are reset when that
  process dies), a connection waiting in the shared queue is taken by a surviving child when
  one is killed; and an idle child wins the accept race, so load follows free capacity.
* **The parent serves nothing.** It starts the children (``python -m runtime`` with the
  internal ``TAILOR_CHILD_*`` variables), restarts one that dies with backoff (1 s doubling to
  30 s, reset after a minute up) while the others keep serving, and on SIGTERM/SIGINT forwards
  the signal so every child drains (a second signal is forwarded too: the children exit at
  once). A child that exits 2 (bad settings) or 3 (start-up failed) before it was ever ready
  stops the whole set with the same code: restarting cannot fix it.
* **Readiness for the whole set.** A probe lands on any child, so every child must know the
  set: each child writes its own state (``child-I.json``: pid, ready, state, reason) into a
  private run directory four times a second, the parent writes the expected members
  (``members.json``: index -> current pid) at every (re)start, and each child's ``/readyz`` is
  200 only when every member's file is ready *and* carries the member's current pid (a killed
  child's stale file never counts). The body gains ``processes`` (count, ready, members, which
  process answered). Every response carries ``X-Tailor-Process: INDEX`` and ``X-Tailor-Pid``.
* **Metrics across processes** with prometheus_client's multiprocess mode: a fresh private
  ``PROMETHEUS_MULTIPROC_DIR`` per start (removed at exit); counters and histograms sum over
  every process that ever ran in this start (a killed child's counts stay), gauges say how
  they combine (``runtime/serving/metrics.py``); the parent calls ``mark_process_dead`` for a
  child that died so its live gauges drop out.
* **Memory:** each process holds its own weights; ``TAILOR_RSS_SOFT_LIMIT_BYTES`` is checked by
  each process against its own resident memory (the plan divides its memory budget by the
  process count, see ``orchestrator/plan/processes.py``); ``tailor_process_resident_memory_bytes``
  is the sum over the live processes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from runtime.errors import EXIT_BAD_SETTINGS, EXIT_BROKEN, EXIT_START_FAILED
from runtime.settings import Settings

_LOG = logging.getLogger("tailor.runtime")

CHILD_INDEX = "TAILOR_CHILD_INDEX"
"""Internal: this server process's index (0..N-1) in the set; set by the parent only."""
CHILD_FD = "TAILOR_CHILD_LISTEN_FD"
"""Internal: the inherited listening socket's file descriptor."""
CHILD_DIR = "TAILOR_CHILD_RUN_DIR"
"""Internal: the set's private run directory (members.json, child-I.json)."""
CHILD_PARENT = "TAILOR_CHILD_PARENT_PID"
"""Internal: the parent's pid; a child whose parent is gone drains and exits."""
METRICS_DIR_VAR = "PROMETHEUS_MULTIPROC_DIR"

PROCESS_HEADER = "X-Tailor-Process"
PID_HEADER = "X-Tailor-Pid"
STATE_INTERVAL_S = 0.25
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
BACKOFF_RESET_AFTER_S = 60.0
KILL_AFTER_S = 10.0
"""After the drain (grace + abort wait), how long the parent waits before SIGKILL."""
SAME_STOP_S = 1.0
"""A server process counts a second SIGTERM/SIGINT within this long of the first as the same stop
(systemd and ``killpg`` signal every process, then the parent forwards its own); later, a second
signal ends it at once."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_child(environ: MutableMapping[str, str] | None = None) -> bool:
    return CHILD_INDEX in (os.environ if environ is None else environ)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically (write then rename), so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# --- the set's view (read by every child's /readyz) ----------------------------------------


def group_view(run_dir: Path) -> dict[str, Any]:
    """The set as the files say now: count, ready count, one row per member."""
    members = _read_json(run_dir / "members.json") or {}
    count = int(members.get("count", 0))
    pids: dict[str, Any] = members.get("pids", {}) if isinstance(members.get("pids"), dict) else {}
    restarts: dict[str, Any] = members.get("restarts", {}) if isinstance(members.get("restarts"), dict) else {}
    rows: list[dict[str, Any]] = []
    for index in range(count):
        pid = pids.get(str(index))
        state = _read_json(run_dir / f"child-{index}.json") if pid else None
        if pid is None:
            rows.append({"index": index, "pid": None, "ready": False, "state": "restarting",
                         "reason": "the process died; the parent restarts it"})
        elif state is None or state.get("pid") != pid:
            rows.append({"index": index, "pid": pid, "ready": False, "state": "starting",
                         "reason": "the process has not reported yet"})
        else:
            rows.append({"index": index, "pid": pid, "ready": bool(state.get("ready")),
                         "state": state.get("state"), "reason": state.get("reason"),
                         "in_flight": state.get("in_flight")})
    for row in rows:
        row["restarts"] = int(restarts.get(str(row["index"]), 0))
    ready = sum(1 for r in rows if r["ready"])
    return {"count": count, "ready": ready, "members": rows}


class GroupApp:
    """ASGI wrapper of a child's app: the headers naming the process, and ``/readyz`` for the
    whole set (the child's own readiness first, then every other member's file)."""

    def __init__(self, app: ASGIApp, index: int, run_dir: Path) -> None:
        self.app = app
        self.index = index
        self.run_dir = run_dir
        self._headers = [(PROCESS_HEADER.lower().encode(), str(index).encode()),
                         (PID_HEADER.lower().encode(), str(os.getpid()).encode())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("path") == "/readyz" and scope.get("method") in ("GET", "HEAD"):
            await self._readyz(scope, receive, send)
            return

        async def send_tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self._headers]
            await send(message)

        await self.app(scope, receive, send_tagged)

    async def _readyz(self, scope: Scope, receive: Receive, send: Send) -> None:
        start: Message = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app({**scope, "method": "GET"}, receive, capture)
        try:
            body = json.loads(b"".join(chunks) or b"{}")
        except ValueError:
            body = {}
        own_ready = start.get("status") == 200
        view = group_view(self.run_dir)
        for row in view["members"]:
            if row["index"] == self.index:  # this process: its answer now, not the file's
                row.update(pid=os.getpid(), ready=own_ready, state=body.get("state"), reason=body.get("reason"),
                           in_flight=body.get("in_flight"))
        view["ready"] = sum(1 for r in view["members"] if r["ready"])
        view["answered_by"] = {"index": self.index, "pid": os.getpid()}
        all_ready = own_ready and view["count"] > 0 and view["ready"] == view["count"]
        if own_ready and not all_ready:
            waiting = [f"process {r['index']} (pid {r['pid']}): {r['reason'] or r['state']}"
                       for r in view["members"] if not r["ready"]]
            reason = f"{view['ready']}/{view['count']} server processes ready; waiting for " + "; ".join(waiting)
            body.update(ready=False, status="processes_not_ready", state="processes_not_ready",
                        reason=reason, detail=reason)
        body["processes"] = view
        payload = json.dumps(body).encode()
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-length",)]
        headers += [(b"content-length", str(len(payload)).encode()), *self._headers]
        await send({"type": "http.response.start", "status": 200 if all_ready else 503, "headers": headers})
        await send({"type": "http.response.body",
                    "body": b"" if scope.get("method") == "HEAD" else payload})


# --- the child side ---------------------------------------------------------------------------


@dataclass
class ChildContext:
    index: int
    run_dir: Path
    sock: socket.socket
    parent_pid: int

    @classmethod
    def from_environ(cls) -> ChildContext:
        fd = int(os.environ[CHILD_FD])
        sock = socket.socket(fileno=fd)
        return cls(int(os.environ[CHILD_INDEX]), Path(os.environ[CHILD_DIR]), sock,
                   int(os.environ.get(CHILD_PARENT, "0")))

    def wrap(self, app: ASGIApp) -> GroupApp:
        return GroupApp(app, self.index, self.run_dir)

    def start_reporting(self, readiness: Callable[[], tuple[bool, dict[str, Any]]],
                        set_rss: Callable[[], None]) -> threading.Thread:
        """Write this process's state file while it runs; refresh its RSS gauge; drain and
        exit when the parent is gone (the process's own SIGTERM path)."""

        def loop() -> None:
            last: dict[str, Any] | None = None
            path = self.run_dir / f"child-{self.index}.json"
            while True:
                if self.parent_pid and os.getppid() != self.parent_pid:
                    _LOG.warning("the parent process %d is gone: draining", self.parent_pid)
                    os.kill(os.getpid(), signal.SIGTERM)
                    return
                try:
                    ready, body = readiness()
                    state = {"pid": os.getpid(), "index": self.index, "ready": ready,
                             "state": body.get("state"), "reason": body.get("reason"),
                             "in_flight": body.get("in_flight")}
                    if state != last:
                        _write_json(path, state)
                        last = state
                    set_rss()
                except Exception:  # a report must never kill the server; the next try repeats it
                    _LOG.exception("could not write the process state file %s", path)
                time.sleep(STATE_INTERVAL_S)

        thread = threading.Thread(target=loop, name="tailor-process-state", daemon=True)
        thread.start()
        return thread


# --- the parent ------------------------------------------------------------------------------


def child_command() -> list[str]:
    """The command of each server process (the parent's own interpreter); a benchmark replaces
    it to run a stand-in engine (benchmarks/bench_server_overhead.py)."""
    return [sys.executable, "-m", "runtime"]


@dataclass
class _Child:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    backoff_s: float = BACKOFF_FIRST_S
    restart_at: float = 0.0
    restarts: int = 0
    was_ready: bool = False


@dataclass
class Parent:
    """Runs ``count`` server processes on one inherited socket until told to stop."""

    settings: Settings
    count: int
    command: list[str] = field(default_factory=lambda: child_command())
    children: list[_Child] = field(default_factory=list)
    stopping: bool = False
    exit_code: int = 0

    def run(self) -> int:
        try:
            sock = socket.create_server((self.settings.host, self.settings.port), backlog=2048)
        except OSError as exc:
            print(f"error: cannot serve on {self.settings.host}:{self.settings.port}: {exc}", file=sys.stderr)
            return EXIT_START_FAILED
        sock.set_inheritable(True)
        self.run_dir = Path(tempfile.mkdtemp(prefix="tailor-processes-"))
        self.metrics_dir = self.run_dir / "metrics"
        self.metrics_dir.mkdir()
        instance = self.settings.instance_id or os.urandom(6).hex()
        self.env = {**os.environ, CHILD_FD: str(sock.fileno()), CHILD_DIR: str(self.run_dir),
                    CHILD_PARENT: str(os.getpid()), METRICS_DIR_VAR: str(self.metrics_dir),
                    "TAILOR_INSTANCE_ID": instance, "TAILOR_HOST": self.settings.host,
                    "TAILOR_PORT": str(self.settings.port)}
        self.fd = sock.fileno()
        self.children = [_Child(i) for i in range(self.count)]
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        _LOG.info("serving on %s:%d with %d server processes (instance %s)",
                  self.settings.host, self.settings.port, self.count, instance)
        try:
            for child in self.children:
                self._spawn(child)
            while not self.stopping:
                self._watch()
                time.sleep(0.05)
            self._stop_all()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            sock.close()
            shutil.rmtree(self.run_dir, ignore_errors=True)
        return self.exit_code

    def _on_signal(self, sig: int, _frame: FrameType | None) -> None:
        if self.stopping:
            _LOG.info("signal %s again: the server processes exit now", signal.Signals(sig).name)
        else:
            _LOG.info("signal %s: draining %d server processes", signal.Signals(sig).name, self.count)
        self.stopping = True
        for child in self.children:
            if child.proc is not None and child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signal.SIGTERM)

    def _members(self) -> None:
        pids = {str(c.index): c.proc.pid for c in self.children if c.proc is not None and c.proc.poll() is None}
        restarts = {str(c.index): c.restarts for c in self.children}
        _write_json(self.run_dir / "members.json", {"count": self.count, "pids": pids, "restarts": restarts})

    def _spawn(self, child: _Child) -> None:
        env = {**self.env, CHILD_INDEX: str(child.index)}
        child.proc = subprocess.Popen(self.command, env=env, pass_fds=(self.fd,))
        child.started = time.monotonic()
        child.was_ready = False
        self._members()
        _LOG.info("server process %d started (pid %d)", child.index, child.proc.pid)

    def _watch(self) -> None:
        now = time.monotonic()
        for child in self.children:
            proc = child.proc
            if proc is None:
                if now >= child.restart_at and not self.stopping:
                    self._spawn(child)
                continue
            if not child.was_ready:
                state = _read_json(self.run_dir / f"child-{child.index}.json")
                child.was_ready = bool(state and state.get("pid") == proc.pid and state.get("ready"))
            code = proc.poll()
            if code is None:
                if now - child.started > BACKOFF_RESET_AFTER_S:
                    child.backoff_s = BACKOFF_FIRST_S
                continue
            self._reap(child, proc.pid, code)
            if self.stopping:
                continue
            if code in (EXIT_BAD_SETTINGS, EXIT_START_FAILED, EXIT_BROKEN) and not child.was_ready:
                _LOG.error("server process %d exited %d before it was ready: stopping all", child.index, code)
                self.exit_code = code
                self._on_signal(signal.SIGTERM, None)
                return
            child.restarts += 1
            child.restart_at = now + child.backoff_s
            _LOG.warning("server process %d (pid %d) exited with %s; restarting it in %gs (restart %d)",
                         child.index, proc.pid, _describe_exit(code), child.backoff_s, child.restarts)
            child.backoff_s = min(BACKOFF_MAX_S, child.backoff_s * 2)

    def _reap(self, child: _Child, pid: int, code: int) -> None:
        child.proc = None
        self._members()
        with contextlib.suppress(OSError):
            (self.run_dir / f"child-{child.index}.json").unlink()
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]
        if self.stopping:
            _LOG.info("server process %d (pid %d) exited with %s", child.index, pid, _describe_exit(code))

    def _stop_all(self) -> None:
        deadline = time.monotonic() + self.settings.shutdown_grace_s + 3.0 + KILL_AFTER_S
        for child in self.children:
            proc = child.proc
            if proc is None:
                continue
            try:
                code = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _LOG.warning("server process %d (pid %d) did not exit after the drain: killing it",
                             child.index, proc.pid)
                proc.kill()
                code = proc.wait()
            self._reap(child, proc.pid, code)


def _describe_exit(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"code {code}"


def run_parent(settings: Settings) -> int:
    return Parent(settings, settings.processes).run()


__all__ = ["ChildContext", "GroupApp", "Parent", "group_view", "is_child", "run_parent"]
