"""Conformance with OpenAI's published OpenAPI document for the speech and model endpoints.

``data/openai_speech_openapi.json`` is an excerpt of openai/openai-openapi (commit and URL in its
``x-vendored`` header): ``CreateSpeechRequest``, the speech SSE events, ``Model``,
``ListModelsResponse`` and the error body. Real responses of the app (in process, real voice) are
validated against those schemas with ``jsonschema``; requests are first checked against
``CreateSpeechRequest``, so every "valid" body below is one OpenAI's schema allows and every
"invalid" one is one it refuses. Tailor is lenient where OpenAI requires (``model`` and ``voice``
have defaults) and has extra fields; that is not tested as a failure.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

pytestmark = pytest.mark.slow
SPEC = json.loads((Path(__file__).parent / "data" / "openai_speech_openapi.json").read_text())
SPEECH = "/v1/audio/speech"
MEDIA = {"mp3": "audio/mpeg", "opus": "audio/ogg; codecs=opus", "aac": "audio/aac", "flac": "audio/flac",
         "wav": "audio/wav", "pcm": "audio/pcm"}


def schema(name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": SPEC["components"]})


def assert_valid(name: str, instance: Any) -> None:
    errors = sorted(schema(name).iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, f"{name}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


def sse_events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def test_the_vendored_excerpt_says_where_it_comes_from() -> None:
    source = SPEC["x-vendored"]
    assert source["source"] == "https://github.com/openai/openai-openapi"
    assert len(source["commit"]) == 40 and int(source["commit"], 16) >= 0
    request = SPEC["components"]["schemas"]["CreateSpeechRequest"]
    assert set(request["required"]) == {"model", "input", "voice"}
    assert SPEC["paths"]["/audio/speech"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CreateSpeechRequest"}
    # The schemas reject what they must (so the validations below can fail).
    assert list(schema("CreateSpeechRequest").iter_errors({"model": "tts-1", "input": "x", "voice": "alloy",
                                                           "speed": True}))
    assert list(schema("SpeechAudioDoneEvent").iter_errors(
        {"type": "speech.audio.done", "usage": {"input_characters": 3, "output_bytes": 9}}))


VALID = [
    {"model": "gpt-4o-mini-tts", "input": "The quick brown fox jumped over the lazy dog.", "voice": "alloy"},
    {"model": "tts-1", "input": "Plain text.", "voice": "marin", "response_format": "wav", "speed": 1.5},
    {"model": "tts-1-hd", "input": "Opus, please.", "voice": "cedar", "response_format": "opus", "speed": 1},
    {"model": "gpt-4o-mini-tts-2025-12-15", "input": "A dated snapshot.", "voice": "coral",
     "response_format": "aac", "instructions": "Speak calmly."},
    {"model": "gpt-4o-mini-tts", "input": "Lossless.", "voice": "verse", "response_format": "flac",
     "stream_format": "audio"},
    {"model": "gpt-4o-mini-tts", "input": "Raw samples.", "voice": "sage", "response_format": "pcm", "speed": 0.25},
]


@pytest.mark.parametrize("body", VALID, ids=[b.get("response_format", "mp3") for b in VALID])
def test_requests_openai_allows_are_served(app_client: httpx.Client, body: dict[str, Any]) -> None:
    assert_valid("CreateSpeechRequest", body)
    response = app_client.post(SPEECH, json=body)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"] == MEDIA[body.get("response_format", "mp3")]
    assert len(response.content) > 1000


def test_sse_events_match_openai_event_schemas(app_client: httpx.Client) -> None:
    body = {"model": "gpt-4o-mini-tts", "input": "Streaming events. Two sentences.", "voice": "alloy",
            "response_format": "pcm", "stream_format": "sse"}
    assert_valid("CreateSpeechRequest", body)
    events = sse_events(app_client.post(SPEECH, json=body).text)
    assert [e["type"] for e in events][-1] == "speech.audio.done" and len(events) >= 2
    for event in events:
        assert_valid("CreateSpeechResponseStreamEvent", event)
        assert_valid("SpeechAudioDeltaEvent" if event["type"] == "speech.audio.delta" else "SpeechAudioDoneEvent",
                     event)
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    seconds = len(audio) / 2 / 24000
    usage = events[-1]["usage"]
    # Stated estimates: input characters / 4 and 50 tokens a second of audio, both rounded up.
    assert usage["input_tokens"] == -(-len(body["input"]) // 4)
    assert abs(usage["output_tokens"] - seconds * 50) <= 2
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_a_cached_sse_answer_reports_the_same_usage(app_client: httpx.Client) -> None:
    body = {"model": "tts-1", "input": "Cached usage.", "voice": "alloy", "response_format": "wav",
            "stream_format": "sse"}
    first = sse_events(app_client.post(SPEECH, json=body).text)[-1]
    second = sse_events(app_client.post(SPEECH, json=body).text)[-1]
    assert_valid("SpeechAudioDoneEvent", second)
    assert first["usage"] == second["usage"]


INVALID = [
    ({"speed": True}, "speed"),
    ({"speed": "1.0"}, "speed"),
    ({"speed": 4.5}, "speed"),
    ({"speed": 0.1}, "speed"),
    ({"input": 12}, "input"),
    ({"input": ["text"]}, "input"),
    ({"voice": 5}, "voice"),
    ({"voice": {"id": 5}}, "voice"),
    ({"voice": True}, "voice"),
    ({"model": 4}, "model"),
    ({"response_format": "ogg"}, "response_format"),
    ({"response_format": True}, "response_format"),
    ({"stream_format": "video"}, "stream_format"),
    ({"instructions": 3}, "instructions"),
]


@pytest.mark.parametrize(("change", "param"), INVALID, ids=[f"{p}={c[p]!r}" for c, p in INVALID])
def test_requests_openai_refuses_are_400_in_its_error_shape(
        app_client: httpx.Client, change: dict[str, Any], param: str) -> None:
    body = {"model": "tts-1", "input": "Hello.", "voice": "alloy", **change}
    assert list(schema("CreateSpeechRequest").iter_errors(body)), "the case must violate OpenAI's schema"
    response = app_client.post(SPEECH, json=body)
    assert response.status_code == 400, response.text
    assert_valid("ErrorResponse", response.json())
    error = response.json()["error"]
    assert error["param"] == param, error
    assert error["type"] == "invalid_request_error" and param in error["message"]


def test_deep_nesting_and_bad_json_say_what_is_wrong(app_client: httpx.Client) -> None:
    deep = app_client.post(SPEECH, content=b"[" * 5000 + b"]" * 5000, headers={"content-type": "application/json"})
    assert deep.status_code == 400
    assert_valid("ErrorResponse", deep.json())
    assert "nests too deeply" in deep.json()["error"]["message"]
    nested: Any = 1
    for _ in range(40):
        nested = [nested]
    nested_input = {"input": "x", "voice": {"id": {"a": nested}}}
    assert app_client.post(SPEECH, json=nested_input).json()["error"]["message"].startswith("request body nests")
    broken = app_client.post(SPEECH, content=b'{"input": "x",', headers={"content-type": "application/json"})
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]["message"]


def test_models_list_and_retrieve_match_the_model_schema(app_client: httpx.Client) -> None:
    listing = app_client.get("/v1/models").json()
    assert_valid("ListModelsResponse", listing)
    ids = [m["id"] for m in listing["data"]]
    assert {"tts-1", "tts-1-hd", "gpt-4o-mini-tts", "en_US-joe-medium"} <= set(ids)
    for model in listing["data"]:
        one = app_client.get(f"/v1/models/{model['id']}")
        assert one.status_code == 200
        assert_valid("Model", one.json())
        assert one.json() == model
    snapshot = app_client.get("/v1/models/gpt-4o-mini-tts-2025-12-15")
    assert snapshot.status_code == 200 and snapshot.json()["id"] == "gpt-4o-mini-tts-2025-12-15"
    missing = app_client.get("/v1/models/whisper-1")
    assert missing.status_code == 404
    assert_valid("ErrorResponse", missing.json())
    assert missing.json()["error"]["code"] == "model_not_found" and "whisper-1" in missing.json()["error"]["message"]


@pytest.fixture
def oai(app_client: httpx.Client) -> Iterator[Any]:
    """The official client, speaking to the in-process app through its test transport."""
    from openai import OpenAI

    yield OpenAI(base_url=f"{app_client.base_url}/v1", api_key="unused", http_client=app_client, max_retries=0)


def test_the_official_client_retrieves_models(oai: Any) -> None:
    import openai

    assert oai.models.retrieve("tts-1").id == "tts-1"
    assert "gpt-4o-mini-tts" in [m.id for m in oai.models.list()]
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("whisper-1")
