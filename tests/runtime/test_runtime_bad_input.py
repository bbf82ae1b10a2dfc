"""Bad input always gets a 4xx with an OpenAI-style JSON error, never a 500 or a dead worker."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.slow
SPEECH = "/v1/audio/speech"


def assert_error(response: httpx.Response, status: int, code: str | None = None, says: str = "") -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "code"}
    assert error["message"]
    if code:
        assert error["code"] == code
    assert says in error["message"]


@pytest.mark.parametrize(
    ("body", "status", "code", "says"),
    [
        ({"input": ""}, 400, "empty_input", "empty"),
        ({"input": "   \n "}, 400, "empty_input", "empty"),
        ({"input": 5}, 400, "invalid_request", "input"),
        ({"input": ["a"]}, 400, "invalid_request", "input"),
        ({}, 400, "invalid_request", "input"),
        ({"input": "x", "speed": "fast"}, 400, "invalid_request", "speed"),
        ({"input": "x", "speed": 0.1}, 400, "invalid_request", "speed"),
        ({"input": "x", "speed": 4.5}, 400, "invalid_request", "speed"),
        ({"input": "x", "response_format": "ogg"}, 400, "unsupported_response_format", "mp3, opus, aac"),
        ({"input": "x", "response_format": 3}, 400, "invalid_request", "response_format"),
        ({"input": "x", "voice": "nobody"}, 400, "voice_not_found", "nobody"),
        ({"input": "x", "voice": "../../etc/passwd"}, 400, "invalid_voice", "no paths"),
        ({"input": "x", "voice": "a/b"}, 400, "invalid_voice", ""),
        ({"input": "x", "model": "whisper-1"}, 400, "model_not_found", "whisper-1"),
        ({"input": "x", "stream_format": "video"}, 400, "invalid_request", "stream_format"),
        ({"input": "bell\u0007"}, 400, "invalid_input", "U+0007"),
        ({"input": "x" * 2001}, 400, "input_too_long", "2000"),
        ({"input": "\u200b"}, 400, "empty_input", "nothing to speak"),
    ],
)
def test_bad_bodies(app_client: httpx.Client, body: dict[str, object], status: int, code: str, says: str) -> None:
    assert_error(app_client.post(SPEECH, json=body), status, code, says)


def test_invalid_json(app_client: httpx.Client) -> None:
    response = app_client.post(SPEECH, content=b'{"input": ', headers={"content-type": "application/json"})
    assert_error(response, 400, "invalid_request", "not valid JSON")


def test_json_array_and_wrong_content_type(app_client: httpx.Client) -> None:
    assert_error(app_client.post(SPEECH, json=[1, 2]), 400, says="JSON object")
    response = app_client.post(SPEECH, content=b"input=hello", headers={"content-type": "text/plain"})
    assert response.status_code == 400


def test_non_utf8_bytes(app_client: httpx.Client) -> None:
    response = app_client.post(SPEECH, content=b'{"input": "\xff\xfe"}', headers={"content-type": "application/json"})
    assert_error(response, 400, "invalid_body", "UTF-8")


def test_oversized_body(app_client: httpx.Client) -> None:
    response = app_client.post(SPEECH, content=b"x" * 200_000, headers={"content-type": "application/json"})
    assert_error(response, 413, "body_too_large", "bytes")


def test_unknown_route_and_method(app_client: httpx.Client) -> None:
    assert_error(app_client.get("/v2/nothing"), 404, "not_found")
    assert_error(app_client.get(SPEECH), 405, "method_not_allowed")


def test_server_still_serves_after_bad_input(app_client: httpx.Client) -> None:
    response = app_client.post(SPEECH, json={"input": "Still alive.", "response_format": "pcm"})
    assert response.status_code == 200 and len(response.content) > 10000
