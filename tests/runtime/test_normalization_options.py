"""Per-request normalisation options: Kokoro-FastAPI's field names (and Tailor's) resolve to the
text front end's ``NormalizationOptions`` against the server's default, change what is spoken,
and are part of the response cache key."""

from __future__ import annotations

import httpx
import pytest

from runtime.http.normalization import NormalizationOptionsBody, cache_tag, prepare, text_options
from runtime.text.normalize import NormalizationOptions


def spoken(text: str, **fields: object) -> str:
    options = text_options(NormalizationOptionsBody.model_validate(fields), server_normalize=True)
    return " ".join(segment.text for segment in prepare(text, "en_US", "v", options).segments)


def test_omitted_options_keep_the_server_default() -> None:
    assert text_options(None, True) == NormalizationOptions()
    assert text_options(None, False) == NormalizationOptions(enabled=False)
    assert text_options(NormalizationOptionsBody(), False).enabled is False  # normalize omitted
    assert text_options(NormalizationOptionsBody(normalize=True), False).enabled is True
    # Kokoro-FastAPI's other keys are accepted and ignored.
    body = NormalizationOptionsBody.model_validate({"optional_pluralization_normalization": False,
                                                    "replace_remaining_symbols": False})
    assert text_options(body, True) == NormalizationOptions()


def test_each_switch_reaches_the_text_front_end() -> None:
    assert "dollars" in spoken("It costs $5.")
    assert "$5" in spoken("It costs $5.", normalize=False)
    assert "the eighth" in spoken("Henry VIII was king.").lower()
    assert "VIII" in spoken("Henry VIII was king.", roman_numeral_normalization=False)
    assert spoken("Use the <b>bold</b> tag.") == "Use the bold tag."
    assert "b bold /b" in spoken("Use the <b>bold</b> tag.", strip_tags=False)  # the tag's letters are read
    assert "kilograms" in spoken("It weighs 5 kg.")
    assert "kilograms" not in spoken("It weighs 5 kg.", unit_normalization=False)
    assert "dot com" in spoken("See example.com today.")
    for off in ("url_normalization", "email_normalization"):  # one rule for both
        assert "dot com" not in spoken("Write to jane@example.com today.", **{off: False})


def test_the_cache_tag_tells_option_sets_apart() -> None:
    tags = {cache_tag(NormalizationOptions()), cache_tag(NormalizationOptions(enabled=False)),
            cache_tag(NormalizationOptions(units=False)), cache_tag(NormalizationOptions(roman_numerals=False))}
    assert len(tags) == 4


@pytest.mark.slow
def test_options_over_http(app_client: httpx.Client) -> None:
    def post(options: dict[str, object] | None) -> httpx.Response:
        body: dict[str, object] = {"input": "Say <b>one</b> and <i>two</i> and <u>three</u>.",
                                   "response_format": "pcm"}
        if options is not None:
            body["normalization_options"] = options
        return app_client.post("/v1/audio/speech", json=body)

    normal = post(None)
    literal = post({"strip_tags": False})
    assert normal.status_code == literal.status_code == 200
    assert literal.headers["x-tailor-cache"] == "miss"  # another key than the default's
    assert len(literal.content) > 1.2 * len(normal.content)  # the tags' letters are spoken too
    assert post({"strip_tags": False}).headers["x-tailor-cache"] == "hit"
    refused = post({"strip_tags": "yes"})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "normalization_options.strip_tags"
