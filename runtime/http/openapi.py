"""The OpenAPI document, made to say exactly what the server accepts and answers.

FastAPI derives the request body's types from :class:`runtime.http.schemas.SpeechRequest`; this
module adds what only the running server knows (the installed voices, TAILOR_MAX_INPUT_CHARS,
whether an API key is required) and what the handlers enforce beyond types, so that every
schema-valid request is served and every schema-violating one is refused (checked by
schemathesis with all its checks):

* ``input``: 1 to TAILOR_MAX_INPUT_CHARS characters, at least one letter or digit of a script
  the voices read, no control characters other than tab/newline, and not SSML (SSML is an
  extension: input starting with ``<speak`` must be well-formed, which a schema cannot say);
* ``model``: one of the accepted names or a dated OpenAI snapshot; ``voice``: an installed
  voice or an OpenAI voice name, as a string or ``{"id": ...}``; ``response_format``: an enum;
* every error status each operation can return, with the OpenAI error body.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runtime.audio.encode import FORMATS, MEDIA_TYPES

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["message", "type", "code"],
        "properties": {
            "message": {"type": "string"},
            "type": {"type": "string"},
            "code": {"type": "string"},
            "param": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
    }},
}
SSE_EVENT_SCHEMA: dict[str, Any] = {
    "description": "One server-sent event; `data` is JSON: speech.audio.delta (base64 `audio`), "
                   "then speech.audio.done (`usage`), or `error` (OpenAI error body) when cut.",
    "type": "object",
    "required": ["data"],
    "properties": {"event": {"type": "string"}, "data": {"type": "string", "contentMediaType": "application/json"}},
}
CAPTIONED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["audio", "audio_format", "timestamps"],
    "properties": {
        "audio": {"type": "string", "contentEncoding": "base64", "description": "The whole audio file, base64."},
        "audio_format": {"type": "string", "enum": list(FORMATS)},
        "timestamps": {"anyOf": [{"type": "null"}, {"type": "array", "items": {
            "type": "object", "required": ["word", "start_time", "end_time"],
            "properties": {"word": {"type": "string"}, "start_time": {"type": "number", "minimum": 0},
                           "end_time": {"type": "number", "minimum": 0}}}}],
            "description": "Per word, seconds from the start of the audio (null with return_timestamps false)."},
        "sample_rate": {"type": "integer"},
        "audio_seconds": {"type": "number"},
    },
}
_ERRORS = {
    400: "Invalid request (OpenAI error body; `param` names the field).",
    401: "Missing or wrong API key.",
    408: "The request body did not arrive within TAILOR_BODY_TIMEOUT_S.",
    404: "No such model.",
    413: "Request body larger than the server reads, or input that cannot finish within "
         "TAILOR_REQUEST_TIMEOUT_S even on an idle server (input longer than TAILOR_MAX_INPUT_CHARS is a 400).",
    429: "Queue full; see Retry-After.",
    500: "Every engine failed for this request.",
    503: "Not ready, draining, memory pressure, or overloaded; see Retry-After.",
    504: "Synthesis did not finish within TAILOR_REQUEST_TIMEOUT_S.",
}
SPEAKABLE_PATTERN = "[0-9A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff]"
"""At least one Latin letter or digit: what every voice reads (scripts a voice cannot read
are skipped; input with nothing else is refused)."""
NO_CONTROLS_PATTERN = "^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"
SSML_START_PATTERN = "^\\s*<(speak|SPEAK|Speak|\\?xml|!DOCTYPE|!doctype)"


def _error_responses(codes: Iterable[int]) -> dict[str, Any]:
    return {str(code): {"description": _ERRORS[code],
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
            for code in codes}


def describe_api(
    schema: dict[str, Any], *, max_input_chars: int, voices: Iterable[str],
    openai_voices: Iterable[str], models: Iterable[str], snapshot_pattern: str, api_key: bool,
) -> dict[str, Any]:
    """``schema`` (FastAPI's) with the server's real constraints and answers."""
    voices = list(voices)
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["ErrorBody"] = ERROR_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    voice_names = sorted(set(voices) | set(openai_voices))
    for request_schema in ("SpeechRequest", "CaptionedSpeechRequest"):
        if request_schema in schemas:
            _describe_body(schemas[request_schema]["properties"], max_input_chars=max_input_chars,
                           voices=voices, voice_names=voice_names, models=models,
                           snapshot_pattern=snapshot_pattern)
    schemas.pop("VoiceRef", None)
    if api_key:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            codes: list[int] = []
            if path.startswith("/v1/") and api_key:
                operation["security"] = [{"bearer": []}]
                codes.append(401)
            if method == "post":
                codes += [400, 408, 413, 429, 500, 503, 504]
                if path == "/v1/audio/speech":
                    responses["200"]["content"] = {
                        **{media: {"schema": {"type": "string", "format": "binary"}}
                           for media in MEDIA_TYPES.values()},
                        "text/event-stream": {"schema": SSE_EVENT_SCHEMA},
                    }
            if path.startswith("/v1/models/"):
                codes.append(404)
            if path == "/readyz":
                responses["503"] = {"description": "Not ready; the body says why (same shape as 200).",
                                    "content": {"application/json": {"schema": {"type": "object"}}}}
            if path == "/metrics":
                responses["200"]["content"] = {"text/plain": {"schema": {"type": "string"}}}
            responses.update(_error_responses(codes))
    return schema


def _describe_body(body: dict[str, Any], *, max_input_chars: int, voices: Iterable[str], voice_names: list[str],
                   models: Iterable[str], snapshot_pattern: str) -> None:
    body["input"] = {
        "type": "string", "minLength": 1, "maxLength": max_input_chars,
        "allOf": [{"pattern": SPEAKABLE_PATTERN}, {"pattern": NO_CONTROLS_PATTERN},
                  {"not": {"pattern": SSML_START_PATTERN}}],
        "description": body["input"].get("description", ""),
    }
    body["model"] = {
        "anyOf": [{"type": "string", "enum": sorted(set(models) | set(voices))},
                  {"type": "string", "pattern": snapshot_pattern}],
        "default": "tailor", "description": body["model"].get("description", ""),
    }
    body["voice"] = {
        "anyOf": [
            {"type": "string", "enum": voice_names},
            {"type": "object", "required": ["id"], "properties": {"id": {"type": "string", "enum": voice_names}}},
            {"type": "null"},
        ],
        "default": None, "description": body["voice"].get("description", ""),
    }
    body["response_format"] = {"type": "string", "enum": list(FORMATS), "default": "mp3",
                               "description": body["response_format"].get("description", "")}
