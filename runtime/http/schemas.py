"""HTTP request bodies (pydantic, at the boundary only) and their checks beyond types."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from runtime.audio.encode import FORMATS
from runtime.http.normalization import NormalizationOptionsBody

OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts", "tailor")
SNAPSHOT_PATTERN = r"^(tts-1|tts-1-hd|gpt-4o-mini-tts)-(\d{4}-\d{2}-\d{2}|\d{4})$"
"""Dated OpenAI snapshots: gpt-4o-mini-tts-2025-03-20, tts-1-1106."""


def is_openai_model(name: str) -> bool:
    """An OpenAI speech model name (or ``tailor``) or a dated snapshot of one."""
    return name in OPENAI_MODELS or re.fullmatch(SNAPSHOT_PATTERN, name) is not None


class VoiceRef(BaseModel):
    """OpenAI's voice object form, ``{"id": "..."}``."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(max_length=256, description="A voice name, as in the plain string form.")
MIN_SPEED = 0.25
MAX_SPEED = 4.0


class SpeechRequest(BaseModel):
    """``POST /v1/audio/speech``, shaped like OpenAI's."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(
        default="tailor",
        max_length=256,
        description="tts-1, tts-1-hd, gpt-4o-mini-tts, tailor, or a voice name from /v1/audio/voices.",
    )
    input: str = Field(description="Text to speak (at most TAILOR_MAX_INPUT_CHARS characters).")
    voice: Annotated[str, Field(max_length=256)] | VoiceRef | None = Field(
        default=None,
        description="A voice from /v1/audio/voices (at most 256 characters), or {\"id\": name}; "
        "OpenAI names (alloy, echo, ...) map by TAILOR_VOICE_MAP, else to the default voice.",
    )
    response_format: str = Field(
        default="mp3", max_length=64, description="One of " + ", ".join(FORMATS) + "."
    )
    speed: float = Field(default=1.0, ge=MIN_SPEED, le=MAX_SPEED, strict=True,
                         description="0.25 to 4.0; 1 is normal. A JSON number (true/false or \"1.0\" are refused).")
    instructions: str | None = Field(
        default=None,
        description="Accepted for compatibility and ignored: Piper voices have no style control.",
    )
    stream_format: Literal["sse", "audio"] | None = Field(
        default=None,
        description="'audio' (the default): chunked audio, first sentence first. 'sse': server-sent "
        "events (speech.audio.delta with base64 audio, then speech.audio.done, or error).",
    )
    stream: StrictBool = Field(
        default=True,
        description="true (the default): audio is sent as it is made (chunked; FLAC is always sent whole). "
        "false: the whole answer is made first and sent with Content-Length, so a request that cannot "
        "finish in time gets a 504 error instead of a cut stream (Kokoro-FastAPI's field). Ignored with "
        "stream_format sse.",
    )
    normalization_options: NormalizationOptionsBody | None = Field(
        default=None,
        description="Per-request text normalisation switches (Kokoro-FastAPI's field names); omitted: "
        "the server's defaults (TAILOR_NORMALIZE).",
    )

    def voice_name(self) -> str | None:
        if isinstance(self.voice, VoiceRef):
            return self.voice.id
        return self.voice


class CaptionedSpeechRequest(SpeechRequest):
    """``POST /v1/audio/captioned_speech``: a speech request whose answer is JSON with the audio
    (base64) and word-level timestamps (Kokoro-FastAPI's captioned speech)."""

    stream_format: Literal["audio"] | None = Field(
        default=None, description="Only 'audio' (or omitted): the answer is one JSON document, never SSE.")
    return_timestamps: StrictBool = Field(
        default=True, description="Include the per-word timestamps (false: only the audio).")


def _field_names() -> frozenset[str]:
    names: set[str] = set()
    for model in (CaptionedSpeechRequest, VoiceRef, NormalizationOptionsBody):
        names.update(model.model_fields)
    return frozenset(names)


FIELD_NAMES = _field_names()
"""Every field of the request bodies: what a validation error's ``param`` may name."""


def _shown(value: Any) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def validation_error(errors: Sequence[Mapping[str, Any]]) -> tuple[str, str | None]:
    """A request body's first validation error as ``(message, param)``: ``param`` is the field's
    path as the client wrote it (``speed``, ``voice.id``, ``normalization_options.strip_tags``),
    never pydantic's names for union members (``voice.constrained-str``)."""
    first = errors[0] if errors else {}
    kind = str(first.get("type", ""))
    if kind == "json_invalid":
        return "request body is not valid JSON: " + str(first.get("ctx", {}).get("error", "")), None
    path = [p for p in first.get("loc", ()) if p != "body"]
    if kind == "model_attributes_type" and not path:
        return "request body must be a JSON object (Content-Type: application/json)", None
    clean = [str(p) for p in path if isinstance(p, int) or p in FIELD_NAMES]
    param = ".".join(clean) or None
    if clean[:1] == ["voice"] and clean != ["voice", "id"]:
        return ("voice must be a voice name (a string of at most 256 characters) or an object "
                f"{{\"id\": name}}; got {_shown(first.get('input'))}", "voice")
    message = str(first.get("msg", "invalid value"))
    if kind == "missing":
        return f"{param}: this field is required", param
    return f"{param or 'body'}: {message} (got {_shown(first.get('input'))})", param
