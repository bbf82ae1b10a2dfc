"""The engine process: one model (an adapter) behind the engine protocol on a socket.

    python -m tailor_indextts2.server --adapter real --listen unix:/run/x/engine.sock \\
        --model-dir /models/indextts2 --voices-dir /models/indextts2/voices --device cuda:0 --fp16

Runs in the engine's own environment (Python 3.10/3.11, numpy and the model's libraries):
it imports nothing from Tailor but this package's protocol and adapter modules. The socket
is bound before the model loads, so health answers ``loading`` at once; the model loads in a
background thread; one synthesis runs at a time (a lock; a second request waits up to its
``wait_s``, then gets ``busy``). Exit codes: 0 stopped (SIGTERM, SIGINT, parent gone), 2 bad
arguments or address in use, 3 the model failed to load (after ``--failed-exit-s``).
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import math
import os
import signal
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .adapter import Adapter, LoadFailed, OutOfMemory, RequestRejected, VoiceLibrary
from .protocol import (
    FORMATS,
    Frame,
    ProtocolError,
    encode_pcm,
    parse_address,
    read_frame,
    send_frame,
)

ADAPTERS = ("real", "standin")
MAX_TEXT_CHARS = 20000
MAX_WAIT_S = 3600.0
MIN_SPEED, MAX_SPEED = 0.25, 4.0
REQUEST_READ_TIMEOUT_S = 30.0
"""A connection must send its request within this long."""
EXIT_USAGE = 2
EXIT_LOAD_FAILED = 3

log = logging.getLogger("indextts2-engine")


class Rejected(Exception):
    """A request answered with an ``error`` message (code, message)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Engine:
    """Readiness, voices and the one-at-a-time synthesis lock around an adapter."""

    def __init__(self, adapter: Adapter, voices: VoiceLibrary, *, instance: str, send_timeout_s: float) -> None:
        self.adapter = adapter
        self.voices = voices
        self.instance = instance
        self.send_timeout_s = send_timeout_s
        self.state = "loading"
        self.reason: str | None = None
        self.details: dict[str, Any] = {}
        self.load_s: float | None = None
        self.current: str | None = None
        """The id of the request holding the synthesis lock."""
        self._lock = threading.Lock()
        self._started = time.monotonic()

    def load(self) -> None:
        """Load the model (in the caller's thread); leaves the state ``ready`` or ``failed``."""
        try:
            self.voices.check()
            details = self.adapter.load()
        except LoadFailed as exc:
            self._fail(str(exc))
        except Exception as exc:  # an adapter's unexpected error still becomes a stated reason
            log.exception("the model failed to load")
            self._fail(f"{type(exc).__name__}: {exc}")
        else:
            self.details = dict(details)
            self.load_s = round(time.monotonic() - self._started, 3)
            self.state = "ready"
            log.info("ready in %.1f s (%s)", self.load_s, self.details)

    def _fail(self, reason: str) -> None:
        self.reason = reason
        self.state = "failed"
        log.error("failed to load: %s", reason)

    def health(self) -> dict[str, Any]:
        return {"op": "health", "state": self.state, "reason": self.reason, "adapter": self.adapter.name,
                "instance": self.instance, "pid": os.getpid(), "sample_rate_hz": self.adapter.sample_rate_hz,
                "languages": list(self.adapter.languages), "native_speed": self.adapter.native_speed,
                "busy": self._lock.locked(), "current": self.current, "load_s": self.load_s,
                "details": self.details}

    def require_ready(self) -> None:
        if self.state == "loading":
            raise Rejected("not_ready", "the model is still loading")
        if self.state == "failed":
            raise Rejected("not_ready", f"the model failed to load: {self.reason}")

    def voices_reply(self) -> dict[str, Any]:
        self.require_ready()
        try:
            voices, skipped = self.voices.scan()
        except LoadFailed as exc:
            raise Rejected("internal_error", str(exc)) from None
        return {"op": "voices", "voices": sorted(voices),
                "skipped": [{"file": s.file, "reason": s.reason} for s in skipped]}

    def synthesize(self, conn: socket.socket, request: dict[str, Any]) -> None:
        """Answer one synthesize request on ``conn``: audio frames, then ``end`` or ``error``."""
        rid, text, voice_name, language, speed, fmt, wait_s = self._check(request)
        self.require_ready()
        voices, _ = self.voices.scan()
        voice = voices.get(voice_name)
        if voice is None:
            raise Rejected("voice_not_found", f"no voice {voice_name!r} in {self.voices.directory}; "
                           f"available: {', '.join(sorted(voices)) or '(none)'}")
        acquired = self._lock.acquire(timeout=wait_s) if wait_s > 0 else self._lock.acquire(blocking=False)
        if not acquired:
            raise Rejected("busy", f"this engine instance is synthesizing request {self.current!r}; it serves "
                           f"one request at a time (waited {wait_s:g} s)")
        self.current = rid
        try:
            self._stream(conn, rid, text, voice, language, speed, fmt)
        finally:
            self.current = None
            self._lock.release()

    def _stream(self, conn: socket.socket, rid: str, text: str, voice: Path, language: str | None,
                speed: float, fmt: str) -> None:
        started = time.monotonic()
        total = 0
        seq = 0
        conn.settimeout(self.send_timeout_s)
        chunks = self.adapter.synthesize(text, voice, language, speed)
        try:
            while True:
                try:
                    chunk = next(chunks)
                except StopIteration:
                    break
                except RequestRejected as exc:
                    raise Rejected(exc.code, str(exc)) from None
                except OutOfMemory as exc:
                    raise Rejected("out_of_memory", str(exc)) from None
                except Exception as exc:
                    log.exception("request %s: synthesis failed", rid)
                    raise Rejected("synthesis_failed", f"{type(exc).__name__}: {exc}") from None
                payload = encode_pcm(chunk, fmt)
                samples = len(payload) // FORMATS[fmt].itemsize
                if samples == 0:
                    continue
                send_frame(conn, {"op": "audio", "id": rid, "seq": seq, "samples": samples, "format": fmt}, payload)
                total += samples
                seq += 1
        finally:
            chunks.close()
        rate = self.adapter.sample_rate_hz
        elapsed = time.monotonic() - started
        send_frame(conn, {"op": "end", "id": rid, "sample_rate_hz": rate, "samples": total,
                          "duration_s": round(total / rate, 6), "synthesis_s": round(elapsed, 6)})
        log.info("request %s: %.2f s of audio in %.2f s", rid, total / rate, elapsed)

    def _check(self, request: dict[str, Any]) -> tuple[str, str, str, str | None, float, str, float]:
        rid = request.get("id", "")
        if not isinstance(rid, str) or len(rid) > 200:
            raise Rejected("bad_request", "'id' must be a string of at most 200 characters")
        text = request.get("text")
        if not isinstance(text, str) or not text.strip():
            raise Rejected("bad_request", "'text' must be a non-empty string")
        if len(text) > MAX_TEXT_CHARS:
            raise Rejected("bad_request", f"'text' has {len(text)} characters; at most {MAX_TEXT_CHARS}")
        voice = request.get("voice")
        if not isinstance(voice, str) or not voice:
            raise Rejected("bad_request", "'voice' must name a reference recording (GET voices lists them)")
        language = request.get("language")
        if language is not None and not isinstance(language, str):
            raise Rejected("bad_request", "'language' must be a string or null")
        primary = language.strip().lower().replace("_", "-").split("-")[0] if language else None
        languages = self.adapter.languages
        if primary and languages and primary not in languages:
            raise Rejected("unsupported_language", f"this model reads {', '.join(languages)}, not {language!r}")
        speed = request.get("speed", 1.0)
        if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not math.isfinite(speed) \
                or not MIN_SPEED <= speed <= MAX_SPEED:
            raise Rejected("bad_request", f"'speed' must be a number from {MIN_SPEED} to {MAX_SPEED}")
        if speed != 1.0 and not self.adapter.native_speed:
            raise Rejected("bad_request", "this model speaks at the voice's own pace: send speed 1 and "
                           "time-stretch the audio (the runtime's client does)")
        fmt = request.get("format", "f32le")
        if fmt not in FORMATS:
            raise Rejected("bad_request", f"'format' must be one of {', '.join(FORMATS)}")
        wait_s = request.get("wait_s", 0.0)
        if isinstance(wait_s, bool) or not isinstance(wait_s, (int, float)) or not 0 <= wait_s <= MAX_WAIT_S:
            raise Rejected("bad_request", f"'wait_s' must be a number from 0 to {MAX_WAIT_S:g}")
        return rid, text, voice, primary, float(speed), fmt, float(wait_s)


class _Handler(socketserver.BaseRequestHandler):
    """One connection carries one request."""

    server: _UnixServer | _TcpServer

    def handle(self) -> None:
        engine = self.server.engine
        conn: socket.socket = self.request
        rid: str | None = None
        try:
            conn.settimeout(REQUEST_READ_TIMEOUT_S)
            frame = read_frame(conn)
            if frame is None:
                return
            rid = frame.header.get("id") if isinstance(frame.header.get("id"), str) else None
            self._dispatch(engine, conn, frame)
        except Rejected as exc:
            self._answer_error(conn, rid, exc.code, str(exc))
        except ProtocolError as exc:
            self._answer_error(conn, rid, "protocol_error", str(exc))
        except OSError as exc:  # the client went away (or never sent a request)
            log.info("request %s: connection ended early: %s", rid, exc)
        except Exception as exc:
            log.exception("request %s: internal error", rid)
            self._answer_error(conn, rid, "internal_error", f"{type(exc).__name__}: {exc}")

    @staticmethod
    def _dispatch(engine: Engine, conn: socket.socket, frame: Frame) -> None:
        if frame.op == "health":
            send_frame(conn, engine.health())
        elif frame.op == "voices":
            send_frame(conn, engine.voices_reply())
        elif frame.op == "synthesize":
            engine.synthesize(conn, frame.header)
        else:
            raise Rejected("protocol_error", f"unknown op {frame.op!r}; expected health, voices or synthesize")

    @staticmethod
    def _answer_error(conn: socket.socket, rid: str | None, code: str, message: str) -> None:
        try:
            send_frame(conn, {"op": "error", "id": rid, "code": code, "message": message})
        except OSError:
            log.info("request %s: could not send error %s (client gone): %s", rid, code, message)


class _UnixServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    block_on_close = False
    engine: Engine


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    engine: Engine


def bind(address: str) -> _UnixServer | _TcpServer:
    """A listening server at ``address``. A Unix socket file is created mode 0600; a stale one
    (nobody accepting) is replaced, a live one is an error."""
    kind, where = parse_address(address)
    if kind == "tcp":
        return _TcpServer(where, _Handler)
    path = Path(where)
    if path.exists() or path.is_symlink():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()
        else:
            raise ValueError(f"another process is already listening at {path}")
        finally:
            probe.close()
    previous = os.umask(0o177)
    try:
        return _UnixServer(str(path), _Handler)
    finally:
        os.umask(previous)


def _usage_exit(message: str) -> int:
    log.error("%s", message)
    return EXIT_USAGE


def _die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when its parent dies (Linux prctl PR_SET_PDEATHSIG), then check the
    parent did not die before that took effect."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) != 0:  # 1 = PR_SET_PDEATHSIG
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    except (OSError, AttributeError) as exc:
        log.warning("prctl is not available (%s); relying on --exit-on-stdin-eof", exc)
    if os.getppid() != parent_pid:
        log.error("parent process %d is already gone; exiting", parent_pid)
        os._exit(0)


def _watch_stdin(stop: threading.Event) -> None:
    """Stop when stdin reaches end of file: the parent that holds its other end has exited."""
    while os.read(sys.stdin.fileno(), 65536):
        pass
    log.info("stdin closed (the runtime is gone); stopping")
    stop.set()


def _parser(adapter_name: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tailor_indextts2.server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", choices=ADAPTERS, required=True,
                        help="real: IndexTTS2 (indextts.infer_v2); standin: a model-free stand-in for tests")
    parser.add_argument("--listen", required=True, help="unix:/ABSOLUTE/PATH (preferred) or tcp:HOST:PORT")
    parser.add_argument("--model-dir", type=Path, help="the model directory (config.yaml, checkpoints, hf_cache/)")
    parser.add_argument("--voices-dir", type=Path, required=True, help="reference recordings, one NAME.wav per voice")
    parser.add_argument("--device", default="cpu", help="cpu or cuda:N")
    parser.add_argument("--instance", default="0", help="a label for logs and health (the runtime's instance index)")
    parser.add_argument("--send-timeout-s", type=float, default=60.0,
                        help="abandon a synthesis whose client has not read its audio for this long")
    parser.add_argument("--failed-exit-s", type=float, default=60.0,
                        help="after a load failure, keep reporting it this long, then exit 3")
    parser.add_argument("--parent-pid", type=int, help="die with this process (prctl PR_SET_PDEATHSIG)")
    parser.add_argument("--exit-on-stdin-eof", action="store_true", help="stop when stdin is closed")
    if adapter_name is not None:
        _adapter_class(adapter_name).add_arguments(parser.add_argument_group(f"{adapter_name} adapter"))  # type: ignore[arg-type]
    return parser


def _adapter_class(name: str) -> type[Adapter]:
    if name == "real":
        from .real import IndexTTS2Adapter
        return IndexTTS2Adapter
    from .standin import StandInAdapter
    return StandInAdapter


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"indextts2-engine[{os.getpid()}] %(levelname)s %(message)s")
    raw = list(sys.argv[1:] if argv is None else argv)
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--adapter", choices=ADAPTERS)
    known, _ = first.parse_known_args(raw)
    args = _parser(known.adapter).parse_args(raw)
    if args.parent_pid is not None:
        _die_with_parent(args.parent_pid)
    try:
        adapter = _adapter_class(args.adapter).from_args(args)
        server = bind(args.listen)
    except ValueError as exc:
        return _usage_exit(str(exc))
    except OSError as exc:
        return _usage_exit(f"cannot listen at {args.listen}: {exc.strerror or exc}")
    engine = Engine(adapter, VoiceLibrary(args.voices_dir), instance=args.instance,
                    send_timeout_s=args.send_timeout_s)
    server.engine = engine
    stop = threading.Event()
    exit_code = [0]

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.exit_on_stdin_eof:
        threading.Thread(target=_watch_stdin, args=(stop,), name="stdin-watch", daemon=True).start()

    def load_then_watch() -> None:
        engine.load()
        if engine.state == "failed" and not stop.wait(args.failed_exit_s):
            exit_code[0] = EXIT_LOAD_FAILED
            stop.set()

    log.info("listening at %s (adapter %s, instance %s); loading", args.listen, args.adapter, args.instance)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="serve", daemon=True).start()
    threading.Thread(target=load_then_watch, name="load", daemon=True).start()
    while not stop.wait(0.2):
        pass
    server.shutdown()
    server.server_close()
    if isinstance(server, _UnixServer):
        Path(parse_address(args.listen)[1]).unlink(missing_ok=True)
    log.info("stopped")
    sys.stderr.flush()
    # The load thread may still be inside the model's code; it must not keep the process alive.
    os._exit(exit_code[0])


if __name__ == "__main__":
    sys.exit(main())
