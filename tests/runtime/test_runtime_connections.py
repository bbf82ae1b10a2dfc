"""Slow clients, too many connections, disconnects and the end of the shutdown grace period,
against a real ``python -m runtime`` over raw sockets (what a misbehaving client really does)."""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.runtime.conftest import (
    LiveServer,
    start_one_worker_server,
    start_server,
    stop_server,
    wait_in_flight,
)

pytestmark = pytest.mark.slow
INSTANCE = "conn-test-1"


@pytest.fixture(scope="module")
def tight_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("tight"), {
        "TAILOR_HEADER_TIMEOUT_S": "1", "TAILOR_BODY_TIMEOUT_S": "1.5", "TAILOR_IDLE_TIMEOUT_S": "1",
        "TAILOR_MAX_CONNECTIONS": "6", "TAILOR_INSTANCE_ID": INSTANCE, "TAILOR_CACHE_BYTES": "0",
        "TAILOR_REQUEST_TIMEOUT_S": "300"})  # admission takes the long texts even on a busy machine
    yield server
    stop_server(server)


def connect(server: LiveServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def read_all(sock: socket.socket, limit_s: float = 10.0) -> bytes:
    """Everything until the server closes the connection (or ``limit_s`` passes)."""
    sock.settimeout(limit_s)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed the connection, None if it stayed open."""
    started = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def test_silent_connection_is_closed_after_the_header_timeout(tight_server: LiveServer) -> None:
    with connect(tight_server) as sock:
        elapsed = closed_within(sock, 6.0)
    assert elapsed is not None and 0.8 < elapsed < 4.0, elapsed


def test_trickled_headers_are_cut_off(tight_server: LiveServer) -> None:
    with connect(tight_server) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\n")
        try:
            for _ in range(8):  # one header line every 0.4 s: never complete
                time.sleep(0.4)
                sock.sendall(b"X-Slow: 1\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        rest = closed_within(sock, 6.0)
    assert rest is not None and time.monotonic() - started < 5.0


def test_slow_body_gets_408_json(tight_server: LiveServer) -> None:
    with connect(tight_server) as sock:
        sock.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 200\r\n\r\n{\"input\": \"")
        started = time.monotonic()
        answer = read_all(sock, 8.0)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert time.monotonic() - started < 5.0
    head, _, body = answer.partition(b"\r\n\r\n")
    assert json.loads(body)["error"]["code"] == "body_timeout"
    assert b"x-tailor-instance: " + INSTANCE.encode() in head.lower()


def test_idle_keep_alive_connection_is_closed(tight_server: LiveServer) -> None:
    with connect(tight_server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(5)
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        elapsed = closed_within(sock, 6.0)
    assert elapsed is not None and elapsed < 4.0


def test_connections_beyond_the_cap_get_json_503(tight_server: LiveServer) -> None:
    held = [connect(tight_server) for _ in range(6)]
    try:
        time.sleep(0.2)
        with connect(tight_server) as extra:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # a client that talks first
            answer = read_all(extra, 5.0)
        assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
        head, _, body = answer.partition(b"\r\n\r\n")
        assert json.loads(body)["error"]["code"] == "too_many_connections"
        assert b"x-tailor-instance: " + INSTANCE.encode() in head and b"retry-after: 1" in head
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 5
    while True:  # the slots free up again once the held connections are gone
        try:
            if httpx.get(f"{tight_server.base_url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_disconnect_is_499_and_gauges_return_to_zero(tight_server: LiveServer) -> None:
    text = " ".join(f"Sentence number {n} is here to keep the worker busy." for n in range(10))
    with httpx.Client(base_url=tight_server.base_url, timeout=30) as client:
        with client.stream("POST", "/v1/audio/speech", json={"input": text, "response_format": "pcm"}) as r:
            assert r.status_code == 200
            next(r.iter_bytes())  # first audio, then hang up
        deadline = time.monotonic() + 15
        while True:
            ready = client.get("/readyz").json()
            metrics = client.get("/metrics").text
            gauges = [re.search(rf"^{n} (\S+)$", metrics, re.M) for n in ("tailor_queue_depth",
                                                                           "tailor_requests_in_flight")]
            values = [float(m.group(1)) if m else -1.0 for m in gauges]
            if ready["in_flight"] == 0 and ready["queue_depth"] == 0 and values == [0.0, 0.0]:
                break
            assert time.monotonic() < deadline, (ready, values)
            time.sleep(0.1)
        assert 'tailor_requests_total{route="/v1/audio/speech",status="499"}' in metrics
        assert 'status="500"' not in metrics


def test_grace_period_end_gives_json_503_and_cuts_streams(tmp_path: Path) -> None:
    server = start_one_worker_server(tmp_path, grace_s=1)
    try:
        url = f"{server.base_url}/v1/audio/speech"
        long_text = " ".join(f"Sentence {n} keeps the only worker busy for a while." for n in range(14))
        streamed: dict[str, object] = {}
        queued: list[httpx.Response] = []

        def stream_it() -> None:
            try:
                with httpx.stream("POST", url, json={"input": long_text, "response_format": "wav"},
                                  timeout=60) as response:
                    streamed["status"] = response.status_code
                    streamed["bytes"] = sum(len(b) for b in response.iter_bytes())
                    streamed["complete"] = True
            except httpx.HTTPError as exc:
                streamed["error"] = type(exc).__name__

        first = threading.Thread(target=stream_it)
        first.start()
        deadline = time.monotonic() + 20
        wait_in_flight(server, 1, deadline)
        second = threading.Thread(target=lambda: queued.append(
            httpx.post(url, json={"input": long_text, "response_format": "mp3"}, timeout=60)))
        second.start()
        wait_in_flight(server, 2, deadline)
        server.process.send_signal(signal.SIGTERM)
        first.join(30)
        second.join(30)
        assert streamed.get("status") == 200 and "complete" not in streamed, streamed  # cut, visibly
        assert queued and queued[0].status_code == 503, queued
        assert queued[0].json()["error"]["code"] == "shutdown"
        assert server.process.wait(30) == 0
        log = server.log()
        assert "Traceback" not in log and "500 Internal Server Error" not in log
        assert '"outcome":"cut:shutdown"' in log
    finally:
        stop_server(server)
