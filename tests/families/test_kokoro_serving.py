"""Kokoro-82M served for real: ``python -m runtime`` with TAILOR_MODEL=kokoro-82m,piper loads the int8
model assembled from its PyPI parts and answers ``/v1/audio/speech`` with speech, streamed per sentence,
with the request's ``model`` choosing the family. And memory truth: a fresh runtime serving only Kokoro
is measured (RSS after one sentence) against the family's memory model."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from runtime.families.catalog import family
from runtime.families.footprint import ram_estimate_bytes
from tests.runtime.conftest import LiveServer, decode, start_server, stop_server

pytestmark = pytest.mark.slow

MIB = 1024**2
SLOW_MACHINE_S = "600"
"""Request deadline and readiness wait: Kokoro runs several times slower than real time on a busy
2-core CI machine."""


LONG_SENTENCE = ("Listen. Please remember to bring your umbrella tomorrow morning, because the forecast says it will rain "
                 "all day, and the buses will be late, so leave early, take the long coat, and call me when you "
                 "arrive at the station, where the old clock tower stands beside the river.")


def kokoro_env(models: Path, **extra: str) -> dict[str, str]:
    return {"TAILOR_MODELS_DIR": str(models), "TAILOR_PRECISION": "int8", "TAILOR_WORKERS": "1",
            "TAILOR_THREADS_PER_WORKER": "1", "TAILOR_CACHE_BYTES": "0",
            "TAILOR_REQUEST_TIMEOUT_S": SLOW_MACHINE_S, **extra}


@pytest.fixture(scope="module")
def kokoro_server(tmp_path_factory: pytest.TempPathFactory, kokoro_models: Path) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("kokoro"),
                          kokoro_env(kokoro_models, TAILOR_MODEL="kokoro-82m,piper"),
                          ready_timeout_s=float(SLOW_MACHINE_S))
    yield server
    assert stop_server(server) == 0, server.log()


def speak(server: LiveServer, **body: object) -> httpx.Response:
    return httpx.post(f"{server.base_url}/v1/audio/speech", json=body, timeout=float(SLOW_MACHINE_S))


def test_readyz_reports_kokoro_and_its_model_file(kokoro_server: LiveServer) -> None:
    body = httpx.get(f"{kokoro_server.base_url}/readyz").json()
    assert body["model"] == "kokoro-82m" and body["models"] == ["kokoro-82m", "piper"]
    assert body["engine_in_use"] == {"engine": "onnx", "voice": "jf_alpha", "device": "cpu", "precision": "int8",
                                     "role": "primary"}
    files = body["families"]["kokoro-82m"]["model_files"]["int8"]
    assert files["origin"] == "packaged" and files["file"].endswith("kokoro-82m/packaged/kokoro-v1.0.int8.onnx")
    assert body["memory"]["model_estimate_bytes"] > 0


def test_kokoro_speaks(kokoro_server: LiveServer) -> None:
    response = speak(kokoro_server, model="kokoro-82m", input="Good morning, and welcome to Tailor.",
                     voice="jf_alpha", response_format="wav")
    assert response.status_code == 200, response.text
    assert response.headers["x-tailor-sample-rate"] == "24000"
    samples, rate = decode(response.content)
    assert rate == 24000
    seconds = samples.size / rate
    assert 1.2 < seconds < 6.0, seconds  # six words of speech
    assert float(np.sqrt(np.mean(samples**2))) > 0.01 and float(np.abs(samples).max()) > 0.1
    frames = samples[: samples.size // 480 * 480].reshape(-1, 480)  # 20 ms frames
    loud = np.sqrt(np.mean(frames**2, axis=1))
    assert (loud > 0.02).mean() > 0.3 and (loud < 0.01).any()  # syllables and gaps, not a steady tone


def test_kokoro_streams_one_block_per_sentence(kokoro_server: LiveServer) -> None:
    response = speak(kokoro_server, model="kokoro-82m", input="One sentence. Another one.",
                     response_format="pcm", stream_format="sse")
    assert response.status_code == 200, response.text
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert len(deltas) >= 2 and events[-1]["type"] == "speech.audio.done"
    assert all(len(base64.b64decode(d["audio"])) > 4800 for d in deltas[:2])  # each sentence > 0.1 s


def test_the_model_field_and_the_400(kokoro_server: LiveServer) -> None:
    piper = speak(kokoro_server, model="piper", input="Piper still speaks.", response_format="wav")
    assert piper.status_code == 200 and decode(piper.content)[1] == 22050
    assert speak(kokoro_server, model="en_US-joe-medium", input="Me too.", response_format="wav").headers[
        "x-tailor-sample-rate"] == "22050"
    refused = speak(kokoro_server, model="xtts-v2", input="Not here.")
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "model_not_found" and "loaded: kokoro-82m, piper" in error["message"]
    models = {m["id"]: m for m in httpx.get(f"{kokoro_server.base_url}/v1/models").json()["data"]}
    assert models["kokoro-82m"]["default"] is True and models["tts-1"]["family"] == "kokoro-82m"
    voices = httpx.get(f"{kokoro_server.base_url}/v1/audio/voices").json()["families"]
    assert voices["kokoro-82m"]["voices"] == ["jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"]


def test_kokoro_rss_matches_its_memory_model(tmp_path: Path, kokoro_models: Path,
                                             record_property: pytest.RecordProperty) -> None:
    """A fresh runtime (nothing else loaded in it) serving Kokoro int8 with one worker: its RSS after
    one sentence against the catalogue's estimate for cpu/int8 with one stream, within 25 %. The
    second sentence nearly fills a synthesis chunk (the memory model budgets the largest call; the first
    chunk of a request is cut short for time to first audio, hence the short first sentence)."""
    import psutil

    server = start_server(tmp_path, kokoro_env(kokoro_models, TAILOR_MODEL="kokoro-82m"),
                          ready_timeout_s=float(SLOW_MACHINE_S))
    try:
        response = speak(server, input=LONG_SENTENCE, response_format="wav")
        assert response.status_code == 200, response.text
        measured = psutil.Process(server.process.pid).memory_info().rss
        reported = httpx.get(f"{server.base_url}/readyz").json()["memory"]["model_estimate_bytes"]
    finally:
        stop_server(server)
    estimate = ram_estimate_bytes(family("kokoro-82m"), "cpu", "int8", 1)
    record_property("kokoro_rss_mib", round(measured / MIB))
    record_property("kokoro_estimate_mib", round(estimate / MIB))
    print(f"\nKokoro-82M int8, 1 worker: RSS {measured / MIB:.0f} MiB after one sentence; "
          f"memory model {estimate / MIB:.0f} MiB")
    assert reported == estimate
    assert abs(measured - estimate) <= 0.25 * estimate, (
        f"measured RSS {measured / MIB:.0f} MiB vs the memory model's {estimate / MIB:.0f} MiB: "
        "correct runtime/families/catalog.py's kokoro-82m MemoryModel")
