"""Per-request text normalisation options: the HTTP schema and its one conversion.

Clients send ``normalization_options`` as Kokoro-FastAPI's users know it (``normalize``,
``unit_normalization``, ``url_normalization``, ``email_normalization``, ``phone_normalization``)
plus Tailor's own switches (``roman_numeral_normalization``, ``abbreviation_normalization``,
``strip_tags``). Kokoro-FastAPI's other fields (``optional_pluralization_normalization``,
``replace_remaining_symbols``) and unknown keys are accepted and ignored, so its clients work
unchanged. ``url_normalization`` and ``email_normalization`` switch the same rule (URLs and
e-mail addresses are read by one pass): either false turns it off.

:func:`text_options` resolves a request's options against the server's default
(``TAILOR_NORMALIZE``) into the text front end's :class:`NormalizationOptions`; every field
omitted keeps the server's behaviour.
"""

from __future__ import annotations

from dataclasses import astuple

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from runtime.text.normalize import NormalizationOptions, PreparedText, prepare_text


class NormalizationOptionsBody(BaseModel):
    """``normalization_options`` in a speech request."""

    model_config = ConfigDict(extra="ignore", title="NormalizationOptions")

    normalize: StrictBool | None = Field(
        default=None,
        description="Normalise the text at all (numbers, currency, dates, units, abbreviations, tags "
        "in plain text...); omitted: TAILOR_NORMALIZE. false reads the text as written (SSML still applies).")
    unit_normalization: StrictBool = Field(
        default=True, description="Unit symbols after a number read as words (5 kg: five kilograms).")
    url_normalization: StrictBool = Field(
        default=True, description="URLs and e-mail addresses read piece by piece (example dot com).")
    email_normalization: StrictBool = Field(
        default=True, description="The same rule as url_normalization (jane at example dot com).")
    phone_normalization: StrictBool = Field(
        default=True, description="Phone numbers read digit by digit, in their groups.")
    roman_numeral_normalization: StrictBool = Field(
        default=True, description="Roman numerals after names and titles (Henry VIII, Chapter IV).")
    abbreviation_normalization: StrictBool = Field(
        default=True, description="Titles, street types, Latin and other abbreviations (Dr., St., e.g.).")
    strip_tags: StrictBool = Field(
        default=True, description="HTML-like tags in plain text are dropped (entities decoded), never read aloud.")


def text_options(body: NormalizationOptionsBody | None, server_normalize: bool) -> NormalizationOptions:
    """The options a request's text is prepared with: the server's default where it says nothing."""
    if body is None:
        return NormalizationOptions(enabled=server_normalize)
    return NormalizationOptions(
        enabled=server_normalize if body.normalize is None else body.normalize,
        strip_tags=body.strip_tags,
        urls=body.url_normalization and body.email_normalization,
        phone_numbers=body.phone_normalization,
        units=body.unit_normalization,
        roman_numerals=body.roman_numeral_normalization,
        abbreviations=body.abbreviation_normalization,
    )


def cache_tag(options: NormalizationOptions) -> str:
    """A short stable tag of the options for the response cache key (they change the spoken text)."""
    return "".join("1" if value else "0" for value in astuple(options))


def prepare(text: str, language: str, voice: str, options: NormalizationOptions) -> PreparedText:
    """The one call from the HTTP layer into the text front end, with a request's options."""
    return prepare_text(text, language, voice, options)
