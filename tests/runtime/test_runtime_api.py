"""The HTTP API in process (httpx via starlette's TestClient) with the real default voice."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest

from tests.runtime.conftest import decode

pytestmark = pytest.mark.slow
SPEECH = "/v1/audio/speech"
TEXT = "Hello there. This is a short test."


def speech(client: httpx.Client, **body: object) -> httpx.Response:
    return client.post(SPEECH, json={"model": "tts-1", "input": TEXT, "voice": "alloy", **body})


def test_health_and_readiness(app_client: httpx.Client) -> None:
    health = app_client.get("/healthz").json()
    assert health["status"] == "alive" and health["instance"]
    ready = app_client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready" and body["engine"] == "onnx:en_US-joe-medium"
    assert body["voice"] == "en_US-joe-medium" and body["workers"] == 2
    assert body["fallback"]["active"] is False
    assert body["fallback"]["entries"][0]["status"] == "loaded"


def test_models_and_voices(app_client: httpx.Client) -> None:
    ids = [m["id"] for m in app_client.get("/v1/models").json()["data"]]
    assert {"tts-1", "tts-1-hd", "gpt-4o-mini-tts", "tailor", "en_US-joe-medium"} <= set(ids)
    voices = app_client.get("/v1/audio/voices").json()
    joe = next(v for v in voices["voices"] if v["id"] == "en_US-joe-medium")
    assert joe["sample_rate"] == 22050 and joe["default"] is True and joe["source"] == "bundled"
    assert voices["aliases"]["alloy"] == "en_US-joe-medium"


def test_wav_has_plausible_duration_and_rate(app_client: httpx.Client) -> None:
    response = speech(app_client, response_format="wav")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav"
    samples, rate = decode(response.content)
    assert rate == 22050
    assert 1.0 < len(samples) / rate < 6.0
    assert np.abs(samples).max() > 0.3  # speech, not silence


@pytest.mark.parametrize(("fmt", "rate"), [("mp3", 22050), ("flac", 22050), ("opus", 24000)])
def test_compressed_formats_decode(app_client: httpx.Client, fmt: str, rate: int) -> None:
    response = speech(app_client, response_format=fmt, input="Format check.")
    assert response.status_code == 200, response.text
    samples, got_rate = decode(response.content)
    assert got_rate == rate
    assert 0.4 < len(samples) / got_rate < 3.0


def test_default_format_is_mp3(app_client: httpx.Client) -> None:
    response = app_client.post(SPEECH, json={"input": "Format check."})
    assert response.status_code == 200 and response.headers["content-type"] == "audio/mpeg"


def test_speed_changes_duration(app_client: httpx.Client) -> None:
    slow = speech(app_client, response_format="pcm", speed=0.5, input="Speed test sentence.")
    fast = speech(app_client, response_format="pcm", speed=2.0, input="Speed test sentence.")
    assert slow.status_code == fast.status_code == 200
    ratio = len(slow.content) / len(fast.content)
    assert 2.5 < ratio < 6.0, ratio  # ideal 4


def test_voice_name_as_model_and_instructions_ignored(app_client: httpx.Client) -> None:
    response = app_client.post(SPEECH, json={"model": "en_US-joe-medium", "input": "Format check.",
                                             "response_format": "mp3", "instructions": "cheerful"})
    assert response.status_code == 200


def test_second_identical_request_is_a_cache_hit(app_client: httpx.Client) -> None:
    body = {"input": "Cache me if you can.", "response_format": "flac"}
    first = app_client.post(SPEECH, json=body)
    second = app_client.post(SPEECH, json=body)
    assert first.headers["x-tailor-cache"] == "miss" and second.headers["x-tailor-cache"] == "hit"
    assert first.content == second.content
    assert "tailor_cache_hits_total" in app_client.get("/metrics").text


def test_a_cached_wav_sent_whole_carries_its_real_length(app_client: httpx.Client) -> None:
    import io
    import wave

    body = {"input": "A whole answer knows its length.", "response_format": "wav"}
    streamed, cached = app_client.post(SPEECH, json=body), app_client.post(SPEECH, json=body)
    assert streamed.content[4:8] == b"\xff\xff\xff\xff"  # a stream: length unknown while it runs
    assert cached.headers["x-tailor-cache"] == "hit" and cached.headers["content-length"] == str(len(cached.content))
    with wave.open(io.BytesIO(cached.content)) as reader:
        assert reader.getnframes() == (len(cached.content) - 44) // 2
    assert cached.content[44:] == streamed.content[44:]


def test_streamed_wav_and_pcm(app_client: httpx.Client) -> None:
    text = "Streaming starts here. It ends here."
    wav = speech(app_client, response_format="wav", stream_format="audio", input=text)
    assert wav.status_code == 200 and wav.headers["x-tailor-cache"] == "miss"
    assert "content-length" not in wav.headers  # chunked: streamed as synthesized
    assert wav.content[4:8] == b"\xff\xff\xff\xff"
    samples, rate = decode(wav.content)
    assert rate == 22050 and 1.0 < len(samples) / rate < 6.0
    pcm = speech(app_client, response_format="pcm", stream_format="audio", input=text)
    assert pcm.headers["x-tailor-sample-rate"] == "24000"
    wav_seconds = (len(wav.content) - 44) / 2 / 22050
    assert abs(len(pcm.content) / 2 / 24000 - wav_seconds) < 0.5  # same speech, sampling noise aside


def test_sse_events(app_client: httpx.Client) -> None:
    response = speech(app_client, response_format="pcm", stream_format="sse")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert [e["type"] for e in events][-1] == "speech.audio.done"
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    # One per sentence, then the tail the 22.05 -> 24 kHz resampler holds back until the end.
    assert len(deltas) == 3 and len(base64.b64decode(deltas[-1]["audio"])) < 0.05 * 2 * 24000
    audio = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    assert 1.0 < len(audio) / 2 / 22050 < 6.0
    assert events[-1]["usage"]["input_tokens"] == -(-len(TEXT) // 4)  # characters / 4, rounded up


def test_metrics_exposition(app_client: httpx.Client) -> None:
    speech(app_client, response_format="pcm", input="Metrics.")
    app_client.post(SPEECH, json={"input": ""})
    text = app_client.get("/metrics").text
    for name in ("tailor_requests_total", "tailor_request_duration_seconds_bucket",
                 "tailor_time_to_first_audio_seconds_bucket", "tailor_queue_depth",
                 "tailor_audio_seconds_total", "tailor_process_resident_memory_bytes",
                 "tailor_model_load_seconds", "tailor_cache_hits_total", "tailor_cache_misses_total",
                 "tailor_engine_fallbacks_total", "tailor_requests_in_flight"):
        assert name in text, name
    assert 'tailor_requests_total{route="/v1/audio/speech",status="400"}' in text
    assert 'tailor_model_load_seconds{engine="onnx",voice="en_US-joe-medium"}' in text
