"""The runtime side of an IndexTTS2 engine: spawn, supervise, stream.

:class:`IndexTTS2Client` starts ``instances`` engine processes (each its own model copy, one
request at a time) as children of the runtime, waits until each reports ready, restarts one
that dies (bounded, with backoff; past the bound it reports not ready), and streams audio::

    client = IndexTTS2Client(EngineOptions(model_dir=Path("/models/indextts2"),
                                           voices_dir=Path("/models/indextts2/voices")))
    client.start()                      # EngineStartError with the engine's reason and output
    client.voices()                     # ['alice', 'bob']
    for chunk in client.stream("Hello there.", "alice", "en", 1.0):
        ...                             # float32 mono at client.sample_rate_hz
    client.close()

A stream takes an idle ready instance (waiting while all are busy); the engine speaks at the
voice's own pace and the speed is applied here by time-stretching (duration / speed).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runtime.audio.timestretch import time_stretch
from runtime.errors import BadRequest, EngineFailed, NotReady, StartFailed

from .protocol import FORMATS, ProtocolError, connect, decode_pcm, read_frame, send_frame

log = logging.getLogger("runtime.families.indextts2")

PACKAGE_DIR = Path(__file__).resolve().parent
ENGINE_PACKAGE = "tailor_indextts2"
"""The name the engine process imports this package by (see :meth:`IndexTTS2Client._prepare`)."""
ADAPTERS = ("real", "standin")
MIN_SPEED, MAX_SPEED = 0.25, 4.0
OUTPUT_TAIL_LINES = 30
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 60.0
"""An instance that stayed up this long has its count of consecutive restarts reset."""
CONNECT_TIMEOUT_S = 5.0
PROBE_TIMEOUT_S = 2.0


class EngineStartError(StartFailed):
    """An engine process did not become ready: the model failed to load, the process exited,
    or it was not ready within the startup timeout."""


class EngineUnavailable(NotReady):
    """No engine instance is ready (restarting after a crash, or given up)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="engine_unavailable", headers={"Retry-After": "5"})


class EngineStreamError(EngineFailed):
    """A synthesis failed in the engine: it crashed or stalled mid-stream, or the model raised."""


class EngineOutOfMemory(EngineFailed):
    default_code = "out_of_memory"


@dataclass(frozen=True)
class EngineOptions:
    """How to run the engine processes (see :func:`options_from_settings` for the settings)."""

    model_dir: Path
    voices_dir: Path
    adapter: str = "real"
    """``real`` (IndexTTS2) or ``standin`` (no model; tests)."""
    python: str = field(default_factory=lambda: sys.executable)
    """The engine environment's interpreter."""
    device: str = "cpu"
    """``cpu`` or ``cuda``; instance i gets ``cuda:(i mod gpus)``."""
    fp16: bool = False
    emotion: bool = False
    extra_args: tuple[str, ...] = ()
    instances: int = 1
    gpus: int = 1
    startup_timeout_s: float = 600.0
    stall_timeout_s: float = 300.0
    """No frame from an engine for this long during a synthesis: it is killed and restarted."""
    max_restarts: int = 5
    """Consecutive restarts of one instance before it is given up (not ready)."""
    restart_backoff_s: float = 1.0
    """Wait before the first restart; doubles per consecutive restart, at most BACKOFF_MAX_S."""
    stop_grace_s: float = 10.0
    pcm_format: str = "f32le"

    def __post_init__(self) -> None:
        if self.adapter not in ADAPTERS:
            raise ValueError(f"adapter {self.adapter!r} is not one of {', '.join(ADAPTERS)}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device {self.device!r} is not cpu or cuda")
        if self.instances < 1 or self.gpus < 1:
            raise ValueError("instances and gpus must be at least 1")
        if self.pcm_format not in FORMATS:
            raise ValueError(f"pcm_format {self.pcm_format!r} is not one of {', '.join(FORMATS)}")

    def device_for(self, instance: int) -> str:
        return "cpu" if self.device == "cpu" else f"cuda:{instance % self.gpus}"

    def command(self, instance: int, address: str, parent_pid: int) -> list[str]:
        """The engine's command line (run with the package link's directory as PYTHONPATH)."""
        argv = [self.python, "-m", f"{ENGINE_PACKAGE}.server", "--adapter", self.adapter,
                "--listen", address, "--model-dir", str(self.model_dir), "--voices-dir", str(self.voices_dir),
                "--device", self.device_for(instance), "--instance", str(instance),
                "--parent-pid", str(parent_pid), "--exit-on-stdin-eof"]
        if self.adapter == "real":
            argv += ["--fp16"] if self.fp16 else []
            argv += ["--emotion"] if self.emotion else []
        return argv + list(self.extra_args)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class _Instance:
    """One engine process slot and the thread that starts and restarts it."""

    def __init__(self, index: int, client: IndexTTS2Client) -> None:
        self.index = index
        self.client = client
        self.address = f"unix:{client.workdir / f'engine-{index}.sock'}"
        self.state = "starting"
        """starting, ready, restarting, failed, closed."""
        self.reason: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.health: dict[str, Any] = {}
        self.busy = False
        self.restarts = 0
        self.decided = False
        """The first start ended (ready or failed)."""
        self.output: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
        self.pump: threading.Thread | None = None
        self.thread = threading.Thread(target=self._supervise, name=f"indextts2-engine-{index}", daemon=True)

    def output_tail(self) -> str:
        lines = list(self.output)
        return ("\nlast engine output:\n  " + "\n  ".join(lines)) if lines else "\n(the engine printed nothing)"

    def _set(self, state: str, reason: str | None = None, *, decided: bool | None = None) -> None:
        with self.client.cond:
            self.state = state
            self.reason = reason
            if decided is not None:
                self.decided = decided
            self.client.cond.notify_all()

    def _supervise(self) -> None:
        try:
            self._supervise_loop()
        except Exception as exc:  # a bug here must not leave start() or a request waiting forever
            log.exception("IndexTTS2 engine %d: supervisor failed", self.index)
            self._set("failed", f"the supervisor failed: {type(exc).__name__}: {exc}", decided=True)

    def _supervise_loop(self) -> None:
        options = self.client.options
        consecutive = 0
        first = True
        while not self.client.closing.is_set():
            failure = self._start_once()
            if self.client.closing.is_set():
                break
            if failure is None:
                up_since = time.monotonic()
                self._set("ready", None, decided=True)
                first = False
                assert self.proc is not None
                code = self.proc.wait()
                _close_stdin(self.proc)
                if self.client.closing.is_set():
                    break
                if time.monotonic() - up_since >= STABLE_AFTER_S:
                    consecutive = 0
                failure = f"engine process (pid {self.proc.pid}) {describe_exit(code)}"
                log.error("IndexTTS2 engine %d: %s%s", self.index, failure, self.output_tail())
            elif first:
                self._set("failed", failure, decided=True)
                return
            consecutive += 1
            if consecutive > options.max_restarts:
                self._set("failed", f"gave up after {options.max_restarts} restarts "
                          f"(TAILOR_INDEXTTS2_MAX_RESTARTS); last failure: {failure}")
                log.error("IndexTTS2 engine %d: %s", self.index, self.reason)
                return
            delay = min(options.restart_backoff_s * 2 ** (consecutive - 1), BACKOFF_MAX_S)
            self._set("restarting", f"{failure}; restart {consecutive} of {options.max_restarts} in {delay:g} s")
            log.warning("IndexTTS2 engine %d: restarting in %g s (restart %d of %d)", self.index, delay,
                        consecutive, options.max_restarts)
            if self.client.closing.wait(delay):
                break
            self.restarts += 1
        self._set("closed", self.reason)

    def _start_once(self) -> str | None:
        """Spawn the engine and wait until it is ready: None, or why it is not."""
        options = self.client.options
        Path(self.address[len("unix:"):]).unlink(missing_ok=True)
        env = {**os.environ, "PYTHONPATH": str(self.client.workdir), "PYTHONUNBUFFERED": "1",
               "PYTHONDONTWRITEBYTECODE": "1"}
        command = options.command(self.index, self.address, os.getpid())
        try:
            # Its own session: a Ctrl-C meant for the runtime does not reach the engine first (the
            # runtime stops it); it still dies with the runtime (PR_SET_PDEATHSIG, stdin).
            proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, cwd=self.client.workdir, env=env,
                                    start_new_session=True)
        except OSError as exc:
            return (f"cannot run the engine interpreter {options.python!r}: {exc.strerror or exc} "
                    "(TAILOR_INDEXTTS2_PYTHON names the engine environment's python)")
        with self.client.cond:
            if self.client.closing.is_set():
                _stop(proc, 0.0)
                return "closing"
            self.proc = proc
        self.pump = threading.Thread(target=self._pump_output, args=(proc,), name=f"indextts2-output-{self.index}",
                                     daemon=True)
        self.pump.start()
        deadline = time.monotonic() + options.startup_timeout_s
        pause = 0.02
        while True:
            if self.client.closing.is_set():
                return "closing"
            code = proc.poll()
            if code is not None:
                _close_stdin(proc)
                self.wait_output()
                return f"the engine process exited while starting ({describe_exit(code)})"
            try:
                health = request(self.address, {"op": "health"}, PROBE_TIMEOUT_S)
            except ProtocolError as exc:
                _stop(proc, options.stop_grace_s)
                return f"the engine does not speak this runtime's protocol: {exc}"
            except OSError:
                health = None
            if health is not None and health.get("state") == "ready":
                self.health = health
                return None
            if health is not None and health.get("state") == "failed":
                _stop(proc, options.stop_grace_s)
                return f"the model failed to load: {health.get('reason')}"
            if time.monotonic() > deadline:
                _stop(proc, options.stop_grace_s)
                return (f"the engine was not ready within {options.startup_timeout_s:g} s "
                        "(TAILOR_INDEXTTS2_STARTUP_TIMEOUT_S)")
            time.sleep(pause)
            pause = min(pause * 1.5, 0.25)

    def _pump_output(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        with proc.stdout:
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip()
                if line:
                    self.output.append(line)
                    log.info("[indextts2 engine %d] %s", self.index, line)

    def wait_output(self) -> None:
        """Give the output thread a moment to read what an exited process printed last."""
        if self.pump is not None:
            self.pump.join(1.0)


def _close_stdin(proc: subprocess.Popen[bytes]) -> None:
    """Close our end of the engine's stdin (the engine stops at its end of file)."""
    if proc.stdin is not None:
        with contextlib.suppress(OSError):  # the engine is gone: nothing to flush into its pipe
            proc.stdin.close()


def _stop(proc: subprocess.Popen[bytes], grace_s: float) -> int | None:
    """Stop an engine: close its stdin, SIGTERM, then SIGKILL after ``grace_s``; its exit code."""
    _close_stdin(proc)
    if proc.poll() is None:
        try:
            proc.terminate()
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
        except ProcessLookupError:
            pass
    try:
        return proc.wait(5.0)
    except subprocess.TimeoutExpired:
        return None


def request(address: str, header: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """One request with a one-frame reply (health, voices): the reply's header."""
    with connect(address, timeout_s) as sock:
        send_frame(sock, header)
        frame = read_frame(sock)
    if frame is None:
        raise ProtocolError(f"the engine closed the connection without answering {header.get('op')!r}")
    return frame.header


class IndexTTS2Client:
    """IndexTTS2 engine processes behind one streaming interface (see the module docstring)."""

    def __init__(self, options: EngineOptions) -> None:
        self.options = options
        self.cond = threading.Condition()
        self.closing = threading.Event()
        self.workdir = self._prepare()
        self._instances = [_Instance(i, self) for i in range(options.instances)]
        self._ids = itertools.count(1)
        self._sample_rate_hz = 0

    @staticmethod
    def _prepare() -> Path:
        """A private directory (0700) for the sockets, holding a link named ENGINE_PACKAGE to
        this package: the engine's only PYTHONPATH entry and its working directory, so the
        engine imports this package and nothing else of Tailor."""
        parent = tempfile.gettempdir()
        if len(parent) > 60:  # a Unix socket path has at most 107 bytes
            parent = "/tmp"
        workdir = Path(tempfile.mkdtemp(prefix="tailor-itts2-", dir=parent))
        (workdir / ENGINE_PACKAGE).symlink_to(PACKAGE_DIR, target_is_directory=True)
        return workdir

    def start(self) -> None:
        """Start every instance and wait until each is ready; on any failure stop them all and
        raise :class:`EngineStartError` with the reason and the engine's last output."""
        for instance in self._instances:
            instance.thread.start()
        with self.cond:
            self.cond.wait_for(lambda: all(i.decided for i in self._instances),
                               self.options.startup_timeout_s + 30.0)
        failed = [i for i in self._instances if i.state != "ready"]
        if failed:
            first = failed[0]
            reason = first.reason or f"no outcome within {self.options.startup_timeout_s + 30.0:g} s"
            message = f"IndexTTS2 engine {first.index} did not start: {reason}{first.output_tail()}"
            self.close()
            raise EngineStartError(message, self._start_hint())
        rates = {int(i.health.get("sample_rate_hz", 0)) for i in self._instances}
        if len(rates) != 1 or 0 in rates:
            self.close()
            raise EngineStartError(f"IndexTTS2 engines report sample rates {sorted(rates)}; expected one")
        self._sample_rate_hz = rates.pop()
        log.info("IndexTTS2: %d engine process(es) ready (%s adapter, pids %s)", len(self._instances),
                 self.options.adapter, self.pids())

    def _start_hint(self) -> str:
        o = self.options
        return (f"the engine ran `{' '.join(o.command(0, 'unix:...', os.getpid()))}`; check the model directory "
                f"{o.model_dir} and voices directory {o.voices_dir}, and that TAILOR_INDEXTTS2_PYTHON "
                "is IndexTTS2's environment (Python < 3.12, torch 2.8, transformers 4.52.1, indextts)")

    @property
    def sample_rate_hz(self) -> int:
        return self._sample_rate_hz

    @property
    def languages(self) -> list[str]:
        return list(next((i.health.get("languages", []) for i in self._instances if i.health), []))

    @property
    def ready(self) -> bool:
        """At least one instance is ready (busy or not)."""
        with self.cond:
            return any(i.state == "ready" for i in self._instances)

    def status(self) -> list[dict[str, Any]]:
        """Each instance: state, reason, pid, busy, restarts (for readiness and metrics)."""
        with self.cond:
            return [{"instance": i.index, "state": i.state, "reason": i.reason, "busy": i.busy,
                     "pid": i.proc.pid if i.proc is not None else None, "restarts": i.restarts}
                    for i in self._instances]

    def pids(self) -> list[int | None]:
        return [s["pid"] for s in self.status()]

    def voices(self) -> list[str]:
        """The voices (reference recordings) the engine has now."""
        address = self._any_ready().address
        try:
            reply = request(address, {"op": "voices"}, CONNECT_TIMEOUT_S)
        except (OSError, ProtocolError) as exc:
            raise EngineUnavailable(f"IndexTTS2 engine did not answer the voice list: {exc}") from None
        if reply.get("op") == "error":
            raise EngineUnavailable(f"IndexTTS2 engine: {reply.get('message')}")
        return [str(v) for v in reply.get("voices", [])]

    def _any_ready(self) -> _Instance:
        with self.cond:
            for instance in self._instances:
                if instance.state == "ready":
                    return instance
            raise EngineUnavailable(self._unavailable())

    def _unavailable(self) -> str:
        if self.closing.is_set():
            return "the IndexTTS2 engines are shut down"
        states = "; ".join(f"engine {i.index}: {i.state}" + (f" ({i.reason})" if i.reason else "")
                           for i in self._instances)
        return f"no IndexTTS2 engine is ready: {states}"

    def stream(self, text: str, voice: str, language: str | None = None, speed: float = 1.0, *,
               request_id: str | None = None) -> Iterator[np.ndarray]:
        """Speak ``text`` in ``voice``: float32 mono chunks at :attr:`sample_rate_hz`, each as
        the engine produces it. Raises (when iterated) BadRequest for a bad voice, language or
        speed, EngineUnavailable when no instance is ready, EngineStreamError when the engine
        fails or dies mid-stream (it is then restarted)."""
        if not isinstance(text, str) or not text.strip():
            raise BadRequest("input is empty; send the text to speak", param="input", code="empty_input")
        if not MIN_SPEED <= speed <= MAX_SPEED:
            raise BadRequest(f"speed must be from {MIN_SPEED} to {MAX_SPEED}", param="speed", code="invalid_speed")
        rid = request_id or f"itts2-{os.getpid()}-{next(self._ids)}"
        return self._stream(text, voice, language, float(speed), rid)

    def _acquire(self) -> _Instance:
        with self.cond:
            while True:
                if self.closing.is_set() or not any(i.state == "ready" for i in self._instances):
                    raise EngineUnavailable(self._unavailable())
                for instance in self._instances:
                    if instance.state == "ready" and not instance.busy:
                        instance.busy = True
                        return instance
                self.cond.wait()

    def _release(self, instance: _Instance) -> None:
        with self.cond:
            instance.busy = False
            self.cond.notify_all()

    def _stream(self, text: str, voice: str, language: str | None, speed: float, rid: str) -> Iterator[np.ndarray]:
        instance = self._acquire()
        proc = instance.proc
        native = bool(instance.health.get("native_speed"))
        stall = self.options.stall_timeout_s
        chunks = 0
        try:
            try:
                sock = connect(instance.address, CONNECT_TIMEOUT_S)
            except OSError as exc:
                raise EngineUnavailable(f"IndexTTS2 engine {instance.index} cannot be reached ({exc}); "
                                        "it is being restarted") from None
            with sock:
                sock.settimeout(stall)
                try:
                    send_frame(sock, {"op": "synthesize", "id": rid, "text": text, "voice": voice,
                                      "language": language, "speed": speed if native else 1.0,
                                      "format": self.options.pcm_format, "wait_s": stall})
                except OSError as exc:
                    raise self._died(instance, proc, rid, chunks, exc) from None
                while True:
                    try:
                        frame = read_frame(sock)
                    except TimeoutError:
                        if proc is not None:
                            proc.kill()
                        raise EngineStreamError(
                            f"IndexTTS2 engine {instance.index} sent nothing for {stall:g} s during request {rid} "
                            "(TAILOR_INDEXTTS2_STALL_TIMEOUT_S); it was killed and is being restarted") from None
                    except (OSError, ProtocolError) as exc:
                        raise self._died(instance, proc, rid, chunks, exc) from None
                    if frame is None:
                        raise self._died(instance, proc, rid, chunks, None)
                    header = frame.header
                    if frame.op == "audio":
                        samples = decode_pcm(frame.payload, str(header.get("format")), int(header.get("samples", -1)))
                        if not native and speed != 1.0:
                            samples = time_stretch(samples, speed)
                        chunks += 1
                        yield samples
                    elif frame.op == "end":
                        return
                    elif frame.op == "error":
                        raise _engine_error(instance.index, header)
                    else:
                        raise EngineStreamError(f"IndexTTS2 engine {instance.index} sent an unexpected "
                                                f"{frame.op!r} message during request {rid}")
        finally:
            self._release(instance)

    def _died(self, instance: _Instance, proc: subprocess.Popen[bytes] | None, rid: str, chunks: int,
              cause: BaseException | None) -> EngineStreamError:
        code = None
        if proc is not None:
            try:
                code = proc.wait(3.0)
            except subprocess.TimeoutExpired:
                code = None
        instance.wait_output()
        how = describe_exit(code) if code is not None else f"the connection broke ({cause or 'closed'})"
        pid = proc.pid if proc is not None else "?"
        return EngineStreamError(
            f"IndexTTS2 engine {instance.index} (pid {pid}) died during request {rid} after {chunks} "
            f"audio chunk(s): {how}; it is being restarted{instance.output_tail()}", code="engine_crashed")

    def close(self) -> None:
        """Stop every engine process (SIGTERM, then SIGKILL) and remove the socket directory."""
        if self.closing.is_set() and not self.workdir.exists():
            return
        self.closing.set()
        with self.cond:
            procs = [i.proc for i in self._instances if i.proc is not None]
            self.cond.notify_all()
        for proc in procs:
            _stop(proc, self.options.stop_grace_s)
        for instance in self._instances:
            if instance.thread.is_alive():
                instance.thread.join(self.options.stop_grace_s + 10.0)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> IndexTTS2Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _engine_error(index: int, header: dict[str, Any]) -> Exception:
    code = str(header.get("code", "internal_error"))
    message = f"IndexTTS2 engine {index}: {header.get('message', 'no message')}"
    if code == "voice_not_found":
        return BadRequest(message, param="voice", code="voice_not_found")
    if code in ("bad_request", "unsupported_language"):
        return BadRequest(message, param="input" if code == "bad_request" else None, code=code)
    if code in ("not_ready", "busy"):
        return EngineUnavailable(message)
    if code == "out_of_memory":
        return EngineOutOfMemory(message)
    return EngineStreamError(message, code=code)
