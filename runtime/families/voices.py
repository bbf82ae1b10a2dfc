"""Voice names across families: what a valid name is, OpenAI's names, and how a request's
voice (and ``TAILOR_VOICE_MAP``) resolves against one family's voices."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeVar

from runtime.errors import BadRequest, StartupError
from runtime.settings import keyed_entries

V = TypeVar("V")

VOICE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*$")
"""Letters, digits, ``_``, ``-`` and single inner dots: no slashes, no ``..``, no leading dot."""
MAX_VOICE_NAME_CHARS = 128

OPENAI_VOICES = frozenset(
    {"alloy", "ash", "ballad", "cedar", "coral", "echo", "fable", "marin", "nova", "onyx", "sage",
     "shimmer", "verse"}
)
"""OpenAI's voice names; each maps to the default voice."""


def is_valid_voice_name(name: str) -> bool:
    return (
        0 < len(name) <= MAX_VOICE_NAME_CHARS
        and VOICE_NAME_PATTERN.fullmatch(name) is not None
        and ".." not in name
    )


def parse_voice_map(spec: str, catalog: Mapping[str, object]) -> dict[str, str]:
    """``TAILOR_VOICE_MAP`` (``alloy=en_US-amy-medium,onyx=...``) to a dict; a StartupError
    names an entry that is malformed or points at a voice that does not exist."""
    mapping: dict[str, str] = {}
    for item, alias, voice, sep in keyed_entries(spec, "="):
        if not sep or not alias or not voice:
            raise StartupError(f"TAILOR_VOICE_MAP entry {item!r} is not NAME=VOICE",
                               hint="e.g. TAILOR_VOICE_MAP=alloy=en_US-amy-medium,onyx=en_US-joe-medium")
        if voice not in catalog:
            raise StartupError(
                f"TAILOR_VOICE_MAP maps {alias!r} to {voice!r}, which is not an installed voice; "
                f"available: {', '.join(sorted(catalog))}",
                hint="put VOICE.onnx and VOICE.onnx.json into TAILOR_VOICES_DIR")
        mapping[alias] = voice
    return mapping


def resolve_voice(
    requested: str | None, catalog: Mapping[str, V], default_voice: str,
    voice_map: Mapping[str, str] | None = None,
) -> V:
    """Map a request's voice name to a voice: a name in ``voice_map`` (TAILOR_VOICE_MAP) to its
    voice, other OpenAI names and None to the default voice, anything else to itself. Names
    match exactly (as in the OpenAPI document's enum): no case folding, no trimming. A map entry
    naming a voice of another family (several served) sends the alias to this family's default."""
    if requested is None:
        return catalog[default_voice]
    if voice_map and requested in voice_map:
        return catalog.get(voice_map[requested], catalog[default_voice])
    if requested in OPENAI_VOICES:
        return catalog[default_voice]
    name = requested
    if not is_valid_voice_name(name):
        raise BadRequest(
            "voice name is invalid: use letters, digits, '_', '-' and '.' only (no paths)",
            param="voice",
            code="invalid_voice",
        )
    if name not in catalog:
        raise BadRequest(
            f"unknown voice {name!r}; available: {', '.join(sorted(catalog))} "
            f"(or an OpenAI voice name such as 'alloy', which maps to {default_voice})",
            param="voice",
            code="voice_not_found",
        )
    return catalog[name]
