"""Which served family and voice a request gets, from its ``model`` and ``voice`` fields.

``model`` may be:

* a served family (``kokoro-82m``): that family, ``voice`` within it;
* an OpenAI model name (``tts-1``, ``tts-1-hd``, ``gpt-4o-mini-tts``, ``tailor``, or a dated snapshot of
  one): the family ``TAILOR_MODEL_MAP`` maps it to (default: the first of ``TAILOR_MODEL``); a ``voice``
  that names a voice of another served family (and of none in the mapped one) picks that family;
* a voice name: that voice's family (the first served family holding it).

A family of the catalogue that this server does not load, or any other name, is a 400 in OpenAI's
error shape (``model_not_found``) listing what is served.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TypeVar

from runtime.errors import BadRequest, StartupError
from runtime.families.base import Voice
from runtime.families.catalog import FAMILIES
from runtime.families.voices import OPENAI_VOICES, resolve_voice
from runtime.http.schemas import OPENAI_MODELS, SNAPSHOT_PATTERN, is_openai_model
from runtime.settings import keyed_entries

V = TypeVar("V", bound=Voice)


def openai_base_name(model: str) -> str:
    """``tts-1-1106`` -> ``tts-1``; other names as they are."""
    match = re.fullmatch(SNAPSHOT_PATTERN, model)
    return match.group(1) if match else model


def parse_model_map(spec: str, served: Sequence[str]) -> dict[str, str]:
    """``TAILOR_MODEL_MAP`` (``tts-1=piper,tts-1-hd=kokoro-82m``) to a dict; a StartupError names an
    entry that is malformed, maps a name that is no OpenAI model, or a family that is not served."""
    mapping: dict[str, str] = {}
    example = "e.g. TAILOR_MODEL_MAP=tts-1=piper,tts-1-hd=kokoro-82m"
    for item, name, family, sep in keyed_entries(spec, "="):
        family = family.lower()
        if not sep or not name or not family:
            raise StartupError(f"TAILOR_MODEL_MAP entry {item!r} is not NAME=FAMILY", hint=example)
        if name not in OPENAI_MODELS:
            raise StartupError(f"TAILOR_MODEL_MAP entry {item!r}: {name!r} is not an OpenAI model name; "
                               f"use one of {', '.join(OPENAI_MODELS)}", hint=example)
        if family not in served:
            known = "" if family in FAMILIES else f" (known families: {', '.join(FAMILIES)})"
            raise StartupError(f"TAILOR_MODEL_MAP maps {name} to {family!r}, which this runtime does not serve; "
                               f"served: {', '.join(served)}{known}",
                               hint=f"add it to TAILOR_MODEL, or map {name} to a served family")
        mapping[name] = family
    return mapping


def route(
    model: str, voice: str | None, catalogs: Mapping[str, Mapping[str, V]], defaults: Mapping[str, str],
    model_map: Mapping[str, str], voice_map: Mapping[str, str],
) -> tuple[str, V]:
    """(family, voice) for a request. ``catalogs`` and ``defaults`` are by served family, the first
    being the primary; BadRequest (400) when the model or voice does not resolve."""
    served = list(catalogs)
    primary = served[0]
    if model in catalogs:
        return model, resolve_voice(voice, catalogs[model], defaults[model], voice_map)
    if is_openai_model(model):
        family = model_map.get(openai_base_name(model), primary)
        if voice is not None and voice not in catalogs[family] and voice not in OPENAI_VOICES \
                and voice not in voice_map:
            family = next((f for f in served if voice in catalogs[f]), family)
        return family, resolve_voice(voice, catalogs[family], defaults[family], voice_map)
    holder = next((f for f in served if model in catalogs[f]), None)
    if holder is not None:
        return holder, _voice_as_model(model, voice, catalogs[holder], defaults[holder], voice_map)
    if model.lower() in FAMILIES:
        raise BadRequest(
            f"model {model!r} is not loaded by this server; loaded: {', '.join(served)} "
            "(the runtime serves the families listed in TAILOR_MODEL)",
            param="model", code="model_not_found")
    raise BadRequest(
        f"unknown model {model!r}; use one of {', '.join(served)} (the loaded model families), "
        f"{', '.join(OPENAI_MODELS)} (dated snapshots such as gpt-4o-mini-tts-2025-03-20 too) "
        "or a voice name from GET /v1/audio/voices",
        param="model", code="model_not_found")


def _voice_as_model(
    model: str, voice: str | None, catalog: Mapping[str, V], default: str, voice_map: Mapping[str, str],
) -> V:
    """A voice name as model picks that voice unless ``voice`` names another real voice."""
    if voice is not None and voice in catalog:
        return catalog[voice]
    if voice is not None and voice not in OPENAI_VOICES and voice not in voice_map:
        return resolve_voice(voice, catalog, default, voice_map)
    return catalog[model]


__all__ = ["openai_base_name", "parse_model_map", "route"]
