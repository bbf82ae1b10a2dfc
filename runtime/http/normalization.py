"""Per-request text normalisation options: the HTTP schema and its one conversion.

Clients send ``normalization_options`` as Kokoro-FastAPI's users know it (``normalize``,
``unit_normalization``, ``url_normalization``, ``email_normalization``, ``phone_normalization``)
plus Tailor's own switches (``roman_numeral_normalization``, ``strip_tags``). Kokoro-FastAPI's
other fields (``optional_pluralization_normalization``, ``replace_remaining_symbols``) and
unknown keys are accepted and ignored, so its clients work unchanged.

:func:`text_options` resolves a request's options against the server's defaults into
:class:`TextOptions`, the one value the text front end is called with (see
``runtime.http.speech.prepare``). Every field omitted keeps the server's behaviour.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from runtime.text.normalize import PreparedText, prepare_text


class NormalizationOptionsBody(BaseModel):
    """``normalization_options`` in a speech request."""

    model_config = ConfigDict(extra="ignore", title="NormalizationOptions")

    normalize: StrictBool | None = Field(
        default=None,
        description="Normalise the text at all (numbers, currency, dates, units, abbreviations...); "
        "omitted: TAILOR_NORMALIZE. false reads the text as written.")
    unit_normalization: StrictBool = Field(
        default=True, description="Units after a number are read as words (5 km: five kilometers).")
    url_normalization: StrictBool = Field(
        default=True, description="URLs are read piece by piece (example dot com).")
    email_normalization: StrictBool = Field(
        default=True, description="E-mail addresses are read as such (name at example dot com).")
    phone_normalization: StrictBool = Field(
        default=True, description="Phone numbers are read digit by digit, in groups.")
    roman_numeral_normalization: StrictBool = Field(
        default=True, description="Roman numerals in names and titles (Henry VIII, World War II).")
    strip_tags: StrictBool = Field(
        default=True, description="HTML-like tags in plain text are dropped, never read aloud.")


@dataclass(frozen=True)
class TextOptions:
    """A request's resolved normalisation switches (field names as the text front end's)."""

    normalize: bool = True
    units: bool = True
    urls: bool = True
    emails: bool = True
    phone_numbers: bool = True
    roman_numerals: bool = True
    strip_tags: bool = True

    def cache_tag(self) -> str:
        """A short stable tag for the response cache key (what changes the spoken text)."""
        return "".join("1" if v else "0" for v in asdict(self).values())


def text_options(body: NormalizationOptionsBody | None, server_normalize: bool) -> TextOptions:
    """The options a request's text is prepared with: the server's defaults where it says nothing."""
    if body is None:
        return TextOptions(normalize=server_normalize)
    return TextOptions(
        normalize=server_normalize if body.normalize is None else body.normalize,
        units=body.unit_normalization,
        urls=body.url_normalization,
        emails=body.email_normalization,
        phone_numbers=body.phone_normalization,
        roman_numerals=body.roman_numeral_normalization,
        strip_tags=body.strip_tags,
    )


def prepare(text: str, language: str, voice: str, options: TextOptions) -> PreparedText:
    """The one call from the HTTP layer into the text front end, with a request's options.

    Today's ``prepare_text`` takes only the on/off switch; the finer switches are resolved, part
    of the cache key and passed here, ready for the front end's own options type."""
    return prepare_text(text, language, voice, options.normalize)
