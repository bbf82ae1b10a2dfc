"""Overload with bounded latency, on a real ``python -m runtime``: tens of long requests at
once against one worker and a short deadline. Every admitted request finishes, complete and
within the deadline; every refused one gets 503/429 with a Retry-After at once; nothing is cut
silently. (The estimator's arithmetic on its own: test_admission.py.)"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.runtime.conftest import decode, start_server, stop_server

DEADLINE_S = 20.0
REQUESTS = 24


@pytest.mark.slow
def test_overload_admits_what_fits_and_refuses_the_rest_at_once(tmp_path: Path) -> None:
    server = start_server(tmp_path, {"TAILOR_WORKERS": "1", "TAILOR_REQUEST_TIMEOUT_S": str(DEADLINE_S),
                                     "TAILOR_MAX_QUEUE": "64", "TAILOR_CACHE_BYTES": "0"})
    # Long enough that only a few fit the budget at the rate this server calibrated, short enough
    # that one fits alone (longer would be a 413, see test_endings.py).
    fits = httpx.get(f"{server.base_url}/readyz").json()["admission"]["effective_max_input_chars"]
    parts = [f"Request part {n} asks for a fair amount of speech to be made right now." for n in range(12)]
    text = " ".join(parts[: max(1, min(12, int(fits * 0.5) // 72))])
    expected_audio_s = len(text) / 25  # speech runs at ~15 characters a second
    results: list[tuple[float, httpx.Response | Exception]] = []
    lock = threading.Lock()
    start = threading.Barrier(REQUESTS)

    def one() -> None:
        # The client exists before the start: making one (its TLS context) takes seconds of CPU
        # for 24 threads on two busy cores, which would be timed as the server's answer.
        with httpx.Client(timeout=DEADLINE_S * 3) as client:
            start.wait()
            began = time.monotonic()
            try:
                response = client.post(f"{server.base_url}/v1/audio/speech",
                                       json={"input": text, "response_format": "wav"})
                outcome: httpx.Response | Exception = response
            except httpx.HTTPError as exc:  # a cut stream surfaces here, never as a clean 200
                outcome = exc
        with lock:
            results.append((time.monotonic() - began, outcome))

    try:
        threads = [threading.Thread(target=one) for _ in range(REQUESTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DEADLINE_S * 4)
        errors = [o for _, o in results if isinstance(o, Exception)]
        assert not errors, errors
        served = [(t, o) for t, o in results if isinstance(o, httpx.Response) and o.status_code == 200]
        refused = [(t, o) for t, o in results if isinstance(o, httpx.Response) and o.status_code != 200]
        assert len(results) == REQUESTS
        assert served and refused, [o.status_code for _, o in results if isinstance(o, httpx.Response)]
        for elapsed, response in served:
            samples, rate = decode(response.content)
            assert len(samples) / rate > expected_audio_s  # every sentence, not a truncated answer
            assert elapsed < DEADLINE_S + 1.0, elapsed  # finished within the deadline
        for elapsed, response in refused:
            assert response.status_code in (429, 503), response.text
            assert response.json()["error"]["code"] in ("overloaded", "queue_full")
            assert int(response.headers["retry-after"]) >= 1
            assert elapsed < 3.0  # refused at once, not after waiting
        metrics = httpx.get(f"{server.base_url}/metrics").text
        assert 'tailor_admission_rejections_total{reason="deadline"}' in metrics
        assert 'status="504"' not in metrics and 'status="200_cut"' not in metrics
    finally:
        stop_server(server)
