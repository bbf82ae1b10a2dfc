"""HTTP request bodies (pydantic, at the boundary only) and their checks beyond types."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from runtime.audio.encode import FORMATS

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
    speed: float = Field(default=1.0, ge=MIN_SPEED, le=MAX_SPEED, description="0.25 to 4.0; 1 is normal.")
    instructions: str | None = Field(
        default=None,
        description="Accepted for compatibility and ignored: Piper voices have no style control.",
    )
    stream_format: Literal["sse", "audio"] | None = Field(
        default=None,
        description="'audio' (the default): chunked audio, first sentence first. 'sse': server-sent "
        "events (speech.audio.delta with base64 audio, then speech.audio.done, or error).",
    )

    def voice_name(self) -> str | None:
        if isinstance(self.voice, VoiceRef):
            return self.voice.id
        return self.voice
