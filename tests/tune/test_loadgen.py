"""The tuner's load generator against a real local HTTP server: streamed (chunked) WAV read as it
arrives, time to first audio before the last byte, audio seconds from the header, failures kept."""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator
from typing import ClassVar

import pytest

from orchestrator.tune.loadgen import run_level
from tests.helpers import QuietHandler, served

RATE = 16000
PAUSE_S = 0.3


def wav_header(rate: int = RATE) -> bytes:
    return (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
            + b"data" + struct.pack("<I", 0xFFFFFFFF))


class Handler(QuietHandler):
    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[dict[str, object]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Handler.seen.append({"body": body, "auth": self.headers.get("Authorization")})
        if body["input"] == "refuse":
            data = b'{"error": {"message": "busy"}}'
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        self.send_response(200)
        self.send_header("Content-Type", "audio/wav")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        first = wav_header() + b"\0" * RATE  # half a second of 16-bit mono
        try:
            for chunk in (first, b"\0" * RATE):  # then another half second, after a pause
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()
                time.sleep(PAUSE_S)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (the timeout test)
            pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with served(Handler) as url:
        yield url


def test_streamed_wav_gives_ttfa_before_the_end_and_the_audio_seconds(server: str) -> None:
    Handler.seen.clear()
    result = run_level(server, 2, 4, texts=("one", "two"), api_key="k")
    assert result.failures == 0 and len(result.samples) == 4
    for sample in result.samples:
        assert sample.audio_s == pytest.approx(1.0)
        assert sample.ttfa_s < sample.latency_s - PAUSE_S  # the first chunk counted before the rest came
    assert sorted(str(s["body"]["input"]) for s in Handler.seen) == ["one", "one", "two", "two"]  # type: ignore[index]
    assert all(s["auth"] == "Bearer k" for s in Handler.seen)
    assert result.audio_per_s > 0


def test_a_refusal_and_a_dead_port_are_failures_with_their_status(server: str) -> None:
    refused = run_level(server, 1, 1, texts=("refuse",))
    assert [s.status for s in refused.samples] == [503] and refused.audio_per_s == 0.0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"  # bound, not listening: refused
        nobody = run_level(dead, 1, 1, texts=("x",), timeout_s=5)
    assert [s.status for s in nobody.samples] == [0] and nobody.failures == 1


def test_a_server_slower_than_the_timeout_is_a_failure(server: str) -> None:
    slow = run_level(server, 1, 1, texts=("one",), timeout_s=PAUSE_S / 2)
    assert [s.status for s in slow.samples] == [0]
