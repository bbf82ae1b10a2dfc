"""The torch engine serves real requests: ``python -m runtime`` with TAILOR_ENGINE=torch,
through ``POST /v1/audio/speech``, one by one and with dynamic batching of concurrent requests."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.runtime.conftest import LiveServer, decode, start_server, stop_server

pytestmark = pytest.mark.slow

SPEECH = "/v1/audio/speech"


@pytest.fixture(scope="module")
def torch_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(
        tmp_path_factory.mktemp("torch-live"),
        {"TAILOR_ENGINE": "torch", "TAILOR_WORKERS": "1", "TAILOR_THREADS_PER_WORKER": "1",
         "TAILOR_BATCHING": "true", "TAILOR_BATCH_WINDOW_MS": "200", "TAILOR_MAX_BATCH_SIZE": "4",
         "TAILOR_CACHE_BYTES": "0"},
    )
    yield server
    assert stop_server(server) == 0, server.log()


def test_ready_with_the_torch_engine(torch_server: LiveServer) -> None:
    body = httpx.get(f"{torch_server.base_url}/readyz", timeout=10).json()
    assert body["engine"] == "torch:en_US-joe-medium", body


def test_speech_request_returns_the_voice(torch_server: LiveServer) -> None:
    text = "The torch engine speaks through the same API as every other engine."
    response = httpx.post(f"{torch_server.base_url}{SPEECH}", timeout=60,
                          json={"input": text, "voice": "alloy", "response_format": "wav"})
    assert response.status_code == 200, response.text
    samples, rate = decode(response.content)
    assert rate == 22050
    seconds = samples.size / rate
    assert 2.5 < seconds < 8.0  # 12 words of speech
    assert float(np.sqrt(np.mean(samples**2))) > 0.01  # not silence


def test_concurrent_requests_batch_and_keep_their_lengths(torch_server: LiveServer) -> None:
    """Short and long requests together (batched by the scheduler) must each get their own,
    correctly trimmed audio: the long text lasts longer than the short one. A long request is
    in flight first, so the burst never finds the server alone (alone, the batch window is
    skipped and a burst's first request may run by itself)."""
    texts = ["Yes.", "This sentence is clearly a good deal longer than the first one was.", "No.",
             "A medium sized sentence here."]
    url = f"{torch_server.base_url}{SPEECH}"

    def speak(text: str) -> float:
        response = httpx.post(url, timeout=120, json={"input": text, "response_format": "wav"})
        assert response.status_code == 200, response.text
        samples, rate = decode(response.content)
        return samples.size / rate

    with concurrent.futures.ThreadPoolExecutor(len(texts) + 1) as pool:
        busy = pool.submit(speak, " ".join(["A long request keeps the server busy while the others arrive."] * 6))
        deadline = time.monotonic() + 30
        while httpx.get(f"{torch_server.base_url}/readyz", timeout=10).json().get("in_flight", 0) < 1:
            assert time.monotonic() < deadline, "the long request never got admitted"
            time.sleep(0.02)
        durations = list(pool.map(speak, texts))
        assert busy.result() > durations[1]
    assert durations[1] > 2 * durations[0]
    assert durations[1] > durations[3] > durations[2]
    metrics = httpx.get(f"{torch_server.base_url}/metrics", timeout=10).text
    assert _metric(metrics, "tailor_batch_size_count") > _metric(metrics, 'tailor_batch_size_bucket{le="1.0"}'), (
        "no engine call got more than one sentence: synthesize_batch was not exercised"
    )


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics:\n{text}")


def test_speed_changes_duration_with_the_torch_engine(torch_server: LiveServer) -> None:
    url = f"{torch_server.base_url}{SPEECH}"
    text = "Speed changes the duration of the same words."
    durations = []
    for speed in (0.5, 2.0):
        response = httpx.post(url, timeout=60, json={"input": text, "response_format": "wav", "speed": speed})
        assert response.status_code == 200, response.text
        samples, rate = decode(response.content)
        durations.append(samples.size / rate)
    assert durations[0] > 2.5 * durations[1]


def test_log_names_the_engine(torch_server: LiveServer) -> None:
    assert "torch" in Path(torch_server.log_path).read_text(errors="replace")


def test_two_workers_serve_concurrent_requests(tmp_path: Path) -> None:
    server = start_server(tmp_path, {"TAILOR_ENGINE": "torch", "TAILOR_WORKERS": "2",
                                     "TAILOR_THREADS_PER_WORKER": "1", "TAILOR_CACHE_BYTES": "0"})
    try:
        url = f"{server.base_url}{SPEECH}"
        texts = ["One two three.", "Four five six seven.", "Eight nine.", "Ten eleven twelve thirteen."]

        def speak(text: str) -> int:
            response = httpx.post(url, timeout=120, json={"input": text, "response_format": "wav"})
            assert response.status_code == 200, response.text
            samples, _ = decode(response.content)
            return samples.size

        with concurrent.futures.ThreadPoolExecutor(len(texts)) as pool:
            sizes = list(pool.map(speak, texts))
        assert all(size > 22050 // 2 for size in sizes)
    finally:
        assert stop_server(server) == 0, server.log()
