"""Conformance with the official ``openai`` client against a real ``python -m runtime``: every
response format OpenAI documents, whole and streamed (chunked by default, SSE on request),
decoded by libsndfile (soundfile) and FFmpeg (PyAV); snapshots, voice objects, error shapes,
and speed that is linear in duration."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.runtime.conftest import API_KEY, LiveServer

pytestmark = pytest.mark.slow
TEXT = "Conformance check. The second sentence follows."
FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")


@pytest.fixture(scope="module")
def oai(live_server: LiveServer) -> Iterator[Any]:
    """The official client, pointed at the live server (closed at the end)."""
    from openai import OpenAI

    with OpenAI(base_url=f"{live_server.base_url}/v1", api_key=API_KEY, max_retries=0) as client:
        yield client


def seconds_of(data: bytes, fmt: str) -> float:
    """Duration by every decoder that reads the format; they must agree."""
    if fmt == "pcm":
        assert len(data) % 2 == 0
        return len(data) / 2 / 24000
    import av
    import soundfile

    durations = []
    if fmt != "aac":  # libsndfile has no AAC decoder
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32")
        assert samples.ndim == 1, "mono"
        durations.append(len(samples) / rate)
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        assert stream.channels == 1
        total = sum(frame.samples for frame in container.decode(audio=0))
        durations.append(total / stream.rate)
    assert max(durations) - min(durations) < 0.15, durations
    return durations[-1]


@pytest.mark.parametrize("fmt", FORMATS)
def test_create_every_format(oai: Any, fmt: str) -> None:
    response = oai.audio.speech.create(
        model="tts-1", voice="alloy", input=TEXT, response_format=fmt)
    seconds = seconds_of(response.content, fmt)
    assert 1.5 < seconds < 6.0, seconds
    if fmt == "pcm":
        samples = np.frombuffer(response.content, "<i2")
        assert np.abs(samples).max() > 8000  # speech, 16-bit signed little-endian


@pytest.mark.parametrize("fmt", FORMATS)
def test_streaming_response_is_chunked_by_default(oai: Any, fmt: str) -> None:
    with oai.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts", voice="echo", input=TEXT, response_format=fmt,
    ) as response:
        if fmt == "flac":  # sent whole (its header carries the length): an error could still be a 504
            assert "transfer-encoding" not in response.headers
            assert int(response.headers["content-length"]) > 0
        else:
            assert response.headers.get("transfer-encoding") == "chunked"
            assert "content-length" not in response.headers
        parts = list(response.iter_bytes())
    data = b"".join(parts)
    assert 1.5 < seconds_of(data, fmt) < 6.0


@pytest.mark.parametrize("fmt", FORMATS)
def test_sse_stream(oai: Any, fmt: str) -> None:
    with oai.audio.speech.with_streaming_response.create(
        model="tts-1-hd", voice="nova", input=TEXT, response_format=fmt, stream_format="sse",
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[len("data: "):]) for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1]["type"] == "speech.audio.done" and events[-1]["usage"]["input_tokens"] == -(-len(TEXT) // 4)
    audio = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
    assert 1.5 < seconds_of(audio, fmt) < 6.0


def test_snapshot_model_and_voice_object(oai: Any) -> None:
    response = oai.audio.speech.create(
        model="gpt-4o-mini-tts-2025-03-20", voice={"id": "alloy"}, input="Snapshot.",
        response_format="wav", instructions="Speak cheerfully.")
    assert seconds_of(response.content, "wav") > 0.3
    named = oai.audio.speech.create(
        model="tts-1", voice={"id": "en_US-joe-medium"}, input="Object.", response_format="wav")
    assert seconds_of(named.content, "wav") > 0.3


def test_errors_reach_the_client_in_openai_shape(oai: Any, live_server: LiveServer) -> None:
    import openai

    with pytest.raises(openai.BadRequestError) as bad_format:
        oai.audio.speech.create(model="tts-1", voice="alloy", input="x", response_format="ogg")
    assert bad_format.value.code == "unsupported_response_format"
    assert bad_format.value.param == "response_format"
    with pytest.raises(openai.BadRequestError) as bad_model:
        oai.audio.speech.create(model="whisper-1", voice="alloy", input="x")
    assert bad_model.value.code == "model_not_found"
    from openai import OpenAI

    with OpenAI(base_url=f"{live_server.base_url}/v1", api_key="wrong", max_retries=0) as wrong, \
            pytest.raises(openai.AuthenticationError):
        wrong.audio.speech.create(model="tts-1", voice="alloy", input="x")


SPEED_TEXT = "Speed should change the duration and nothing else."


def mean_pcm_bytes(oai: Any, speed: float, repeats: int) -> float:
    """Mean over a few syntheses: the voice's durations are sampled (noise_w), one run
    differs from the next by ~2 %, so a single pair could not resolve 5 %."""
    return float(np.mean([len(oai.audio.speech.create(
        model="tts-1", voice="alloy", input=SPEED_TEXT, response_format="pcm", speed=speed).content)
        for _ in range(repeats)]))


@pytest.fixture(scope="module")
def normal_speed_bytes(oai: Any) -> float:
    return mean_pcm_bytes(oai, 1.0, 4)  # the session server runs with the cache off


@pytest.mark.parametrize("speed", [0.25, 0.5, 2.0, 4.0])
def test_speed_is_linear_in_duration(oai: Any, normal_speed_bytes: float, speed: float) -> None:
    ratio = normal_speed_bytes / mean_pcm_bytes(oai, speed, 3)
    assert abs(ratio / speed - 1.0) < 0.05, (speed, ratio)
