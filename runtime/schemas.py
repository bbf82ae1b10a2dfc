"""HTTP request bodies (pydantic, at the boundary only) and their checks beyond types."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from runtime.audio import FORMATS

OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts", "tailor")
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
    voice: str | None = Field(
        default=None,
        max_length=256,
        description="A voice from /v1/audio/voices; OpenAI names (alloy, echo, ...) mean the default voice.",
    )
    response_format: str = Field(
        default="mp3", max_length=64, description="One of " + ", ".join(FORMATS) + "."
    )
    speed: float = Field(default=1.0, ge=MIN_SPEED, le=MAX_SPEED, description="0.25 to 4.0; 1 is normal.")
    instructions: str | None = Field(default=None, description="Accepted for compatibility; ignored.")
    stream_format: Literal["sse", "audio"] | None = Field(
        default=None,
        description="'audio': chunked audio, first sentence first. 'sse': server-sent events "
        "(speech.audio.delta with base64 audio, then speech.audio.done). Omitted: one complete file.",
    )
