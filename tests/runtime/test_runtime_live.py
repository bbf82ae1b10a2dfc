"""A real ``python -m runtime`` on a loopback port: the official openai client, streaming order,
disconnect cancellation, API key, and the healthcheck command."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time

import httpx
import pytest

from runtime import healthcheck
from tests.runtime.conftest import API_KEY, REPO, LiveServer, decode, free_port

pytestmark = pytest.mark.slow
AUTH = {"Authorization": f"Bearer {API_KEY}"}
PARAGRAPH = " ".join(
    f"This is sentence number {n}, and it carries a few more words to speak." for n in range(1, 9)
)


def metric(server: LiveServer, name: str) -> float:
    text = httpx.get(f"{server.base_url}/metrics").text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_openai_client_create(live_server: LiveServer) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{live_server.base_url}/v1", api_key=API_KEY)
    response = client.audio.speech.create(model="tts-1", voice="alloy", input="Hello from the client.",
                                          response_format="wav")
    samples, rate = decode(response.content)
    assert rate == 22050 and 0.8 < len(samples) / rate < 5.0


def test_openai_client_streaming_response(live_server: LiveServer) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{live_server.base_url}/v1", api_key=API_KEY)
    with client.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts", voice="echo", input="Streaming works. Sentence two.",
        response_format="mp3", stream_format="audio",
    ) as response:
        data = b"".join(response.iter_bytes())
    samples, rate = decode(data)
    assert rate == 22050 and 1.0 < len(samples) / rate < 6.0


def test_first_audio_arrives_before_synthesis_ends(live_server: LiveServer) -> None:
    """Streaming sends the first sentence while later ones are still being synthesized."""
    body = {"input": PARAGRAPH[:200], "response_format": "pcm", "stream_format": "audio"}
    started = time.monotonic()
    with httpx.stream("POST", f"{live_server.base_url}/v1/audio/speech", json=body, headers=AUTH,
                      timeout=60) as response:
        assert response.status_code == 200
        stream = response.iter_raw()
        first = next(stream)
        first_at = time.monotonic() - started
        total = len(first) + sum(len(chunk) for chunk in stream)
    done_at = time.monotonic() - started
    assert first
    assert total > len(first) * 1.5  # more audio followed the first chunk
    assert first_at < done_at * 0.7, (first_at, done_at)


def test_disconnect_cancels_remaining_sentences(live_server: LiveServer) -> None:
    before = metric(live_server, "tailor_audio_seconds_total")
    text = "Count one two three. " * 9  # 9 sentences, about 1.3 s of audio each
    body = {"input": text.strip(), "response_format": "pcm", "stream_format": "audio"}
    with httpx.stream("POST", f"{live_server.base_url}/v1/audio/speech", json=body, headers=AUTH,
                      timeout=60) as response:
        next(response.iter_raw())
    # All 9 sentences would be about 12 s of audio; after the disconnect only the sentences
    # already handed to the worker (look-ahead of 2) may finish.
    time.sleep(3)
    produced = metric(live_server, "tailor_audio_seconds_total") - before
    assert 0 < produced < 5.5, produced
    assert httpx.get(f"{live_server.base_url}/readyz").json()["in_flight"] == 0


def test_disconnect_cancels_a_whole_file_request(live_server: LiveServer) -> None:
    import json
    import socket

    before = metric(live_server, "tailor_audio_seconds_total")
    body = json.dumps({"input": ("Count one two three. " * 9).strip(), "response_format": "wav"}).encode()
    request = (f"POST /v1/audio/speech HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=10) as sock:
        sock.sendall(request)
        time.sleep(0.3)  # the first sentence is being synthesized
    time.sleep(3)
    produced = metric(live_server, "tailor_audio_seconds_total") - before
    assert produced < 5.5, produced  # all nine sentences would be about 12 s
    assert httpx.get(f"{live_server.base_url}/readyz").json()["in_flight"] == 0
    assert 'status="499"' in httpx.get(f"{live_server.base_url}/metrics").text


def test_api_key_required_on_v1_only(live_server: LiveServer) -> None:
    url = f"{live_server.base_url}/v1/audio/speech"
    missing = httpx.post(url, json={"input": "x"})
    assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = httpx.post(url, json={"input": "x"}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert httpx.get(f"{live_server.base_url}/v1/models").status_code == 401
    for open_path in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(f"{live_server.base_url}{open_path}").status_code == 200


def test_input_limit_400_names_the_limit(live_server: LiveServer) -> None:
    response = httpx.post(f"{live_server.base_url}/v1/audio/speech", json={"input": "x" * 201}, headers=AUTH)
    assert response.status_code == 400 and "200" in response.json()["error"]["message"]
    assert response.json()["error"]["code"] == "input_too_long"


def test_healthcheck_command(live_server: LiveServer) -> None:
    ok = subprocess.run([sys.executable, "-m", "runtime.healthcheck", "--port", str(live_server.port)],
                        cwd=REPO, capture_output=True, text=True, timeout=20)
    assert ok.returncode == 0, ok.stderr
    assert healthcheck.main(["--port", str(free_port()), "--quiet"], environ={}) == 1
    assert healthcheck.main(["--quiet"], environ={"TAILOR_PORT": str(live_server.port),
                                                   "TAILOR_HOST": "0.0.0.0"}) == 0


def test_healthcheck_reads_the_port_as_settings_declare_it(capsys: pytest.CaptureFixture[str]) -> None:
    # An unusable TAILOR_PORT is refused with the settings' own message (range included), and an
    # unset one means the declared default, 8000.
    assert healthcheck.main(["--quiet"], environ={"TAILOR_PORT": "70000"}) == 1
    assert "TAILOR_PORT='70000' is invalid: expected an integer from 1-65535" in capsys.readouterr().err
    healthcheck.main([], environ={"TAILOR_HOST": "127.0.0.1"})
    printed = capsys.readouterr()
    assert "127.0.0.1:8000" in printed.out + printed.err


def test_startup_logs_name_engine_and_load_time(live_server: LiveServer) -> None:
    assert re.search(r"loaded onnx:en_US-joe-medium x1 in [0-9.]+s", live_server.log())
    assert "ready: onnx:en_US-joe-medium" in live_server.log()


def test_pcm_stream_is_raw_16bit(live_server: LiveServer) -> None:
    response = httpx.post(f"{live_server.base_url}/v1/audio/speech", headers=AUTH, timeout=60,
                          json={"input": "Raw audio.", "response_format": "pcm", "stream_format": "audio"})
    assert response.status_code == 200 and response.headers["content-type"] == "audio/pcm"
    assert len(response.content) % 2 == 0
    import numpy as np
    import soundfile

    samples, _ = soundfile.read(io.BytesIO(response.content), format="RAW", subtype="PCM_16",
                                samplerate=22050, channels=1, dtype="float32")
    assert 0.3 < len(samples) / 22050 < 3.0 and np.abs(samples).max() > 0.3


def test_concurrent_mixed_requests_all_succeed(live_server: LiveServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    url = f"{live_server.base_url}/v1/audio/speech"
    bodies = [
        {"input": f"Request number {n}.", "response_format": fmt, **({"stream_format": mode} if mode else {})}
        for n, (fmt, mode) in enumerate(
            [("mp3", None), ("wav", "audio"), ("pcm", "sse"), ("opus", None), ("flac", "audio"), ("pcm", None)] * 2
        )
    ]
    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        responses = list(pool.map(lambda b: httpx.post(url, json=b, headers=AUTH, timeout=120), bodies))
    assert [r.status_code for r in responses] == [200] * len(bodies)
    assert all(len(r.content) > 1000 for r in responses)
    ready = httpx.get(f"{live_server.base_url}/readyz").json()
    assert ready["in_flight"] == 0 and ready["queue_depth"] == 0 and ready["status"] == "ready"
