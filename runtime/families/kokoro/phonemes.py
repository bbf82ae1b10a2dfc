"""Kokoro-82M's text front end: espeak-ng phonemes (piper-tts's bundled bridge, no downloads, no
spaCy) rewritten into the symbols Kokoro was trained on, then ids from its ``vocab.json``.

Kokoro's English inventory (misaki's, documented in its EN_PHONES.md) differs from espeak-ng's IPA in
a few systematic ways, which :func:`kokoro_symbols` rewrites:

* diphthongs are single letters: ``eɪ`` -> ``A``, ``aɪ`` -> ``I``, ``aʊ`` -> ``W``, ``ɔɪ`` -> ``Y``, and
  American ``oʊ`` -> ``O`` (British ``əʊ`` -> ``Q``); affricates are ``ʤ`` (``dʒ``) and ``ʧ`` (``tʃ``);
* r-coloured schwa ``ɚ`` is ``əɹ``, every ``r`` is ``ɹ``; a word-final ``əl`` (syllabic l, also before
  a final ``s``/``z``/``d``) is ``ᵊl``,
  and a syllabic consonant (combining U+0329) is written ``ᵊ`` before it;
* American English drops the length mark (``ɜː`` is ``ɜɹ``, ``iː`` is ``i``), writes ``ɪə`` as ``iə``;
  the flap ``ɾ`` is ``T`` and the glottal stop ``ʔ`` is ``t`` (Kokoro v1.0's default inventory);
* ``x``/``ç`` -> ``k``, ``ɐ`` -> ``ə``, ``ɬ`` -> ``l``; palatalisation ``ʲ`` and nasalisation marks go.

Symbols the vocabulary does not hold are dropped. espeak's bridge gives piper-tts's output without tie
bars, so a ``t`` + ``ʃ`` that espeak would not tie (``nutshell``) also becomes ``ʧ``: a rare, small
difference.
"""

# ruff: noqa: RUF001, RUF002 - IPA symbols are this module's subject, not look-alike typos

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence

from runtime.text.frontend import ChunkingFrontEnd, TextChunk, espeak_groups, join_groups
from runtime.text.timestamps import TokenMap, count_groups, silent_ids

PAD = 0
"""The id the model reads before and after a chunk's ids (not in the vocabulary)."""
MAX_TOKENS = 510
"""Ids per call the model was trained for (512 with the two pads); the engines read no more."""


def model_ids(ids: Sequence[int]) -> tuple[int, ...]:
    """A chunk's ids as Kokoro-82M reads them: at most :data:`MAX_TOKENS`, a pad at each end."""
    return (PAD, *ids[:MAX_TOKENS], PAD)


def chunk_ids(chunk: TextChunk) -> tuple[int, ...]:
    """A chunk's ids as one engine call takes them: at most :data:`MAX_TOKENS`. ValueError when it
    has none (text with no phonemes in the voice)."""
    if not chunk.phoneme_ids:
        raise ValueError("text has no phonemes in this voice")
    return chunk.phoneme_ids[:MAX_TOKENS]

SYLLABIC = "\u0329"
TILDE = "\u0303"

_COMMON: tuple[tuple[str, str], ...] = (
    ("ʲo", "jo"), ("ʲə", "jə"), ("ʲ", ""),
    ("aɪ", "I"), ("aʊ", "W"), ("eɪ", "A"), ("ɔɪ", "Y"),
    ("dʒ", "ʤ"), ("tʃ", "ʧ"),
    ("ɚ", "əɹ"), ("r", "ɹ"), ("x", "k"), ("c\u0327", "k"), ("ɐ", "ə"), ("ɬ", "l"), (TILDE, ""),
)
_AMERICAN: tuple[tuple[str, str], ...] = (
    ("oʊ", "O"), ("ɜːɹ", "ɜɹ"), ("ɜː", "ɜɹ"), ("ɪə", "iə"), ("ː", ""),
)
_BRITISH: tuple[tuple[str, str], ...] = (
    ("iə", "ɪə"), ("əʊ", "Q"),
)
_WORD_FINAL_SCHWA_L = re.compile(r"əl(?=[zsd]?(?:$|[\s.,;:!?…\"“”()—]))")
"""Syllabic l at a word's end, also before a plural or past ending (``models``, ``travelled``)."""
_SYLLABIC_CONSONANT = re.compile(f"(\\S){SYLLABIC}")


def kokoro_symbols(ipa: str, british: bool = False, english: bool = True) -> str:
    """espeak-ng IPA (one sentence or several) in Kokoro's symbols (before the vocabulary filter).
    Other languages than English keep espeak's symbols (the vocabulary filter drops the rest)."""
    text = unicodedata.normalize("NFD", ipa)
    if not english:
        return text.replace(TILDE, "").replace("ʲ", "")  # as the bridge gives it; Kokoro's vocabulary has no accents
    text = _SYLLABIC_CONSONANT.sub(lambda m: "ᵊ" + m.group(1), text).replace(SYLLABIC, "")
    for old, new in _COMMON:
        text = text.replace(old, new)
    if british:
        text = text.replace("eə", "ɛː")  # the British SQUARE vowel
    text = text.replace("e", "A")  # a lone e: Kokoro's A
    text = _WORD_FINAL_SCHWA_L.sub("ᵊl", text)
    for old, new in (_BRITISH if british else _AMERICAN):
        text = text.replace(old, new)
    text = text.replace("o", "ɔ")  # what is left of o (older espeak-ng data)
    if not british:
        text = text.replace("ɾ", "T").replace("ʔ", "t")
    return text


def espeak_voice_for(voice: str) -> tuple[str, str]:
    """(espeak-ng voice, language for normalisation) from a Kokoro voice name's first letter
    (``a``: American English, ``b``: British, ``e``/``f``/``h``/``i``/``p``: Spanish, French, Hindi,
    Italian, Brazilian Portuguese). Japanese (``j``), Chinese (``z``) and unknown prefixes read English:
    their grapheme-to-phoneme front ends (misaki with pyopenjtalk, jieba) are not part of Tailor."""
    prefix = voice[:1].lower()
    table = {"a": ("en-us", "en_US"), "b": ("en", "en_GB"), "e": ("es", "es"), "f": ("fr", "fr"),
             "h": ("hi", "hi"), "i": ("it", "it"), "p": ("pt-br", "pt_BR")}
    return table.get(prefix, ("en-us", "en_US"))


class KokoroFrontEnd(ChunkingFrontEnd):
    """Text to Kokoro token ids for one espeak voice; units are Kokoro symbols (what a chunk's bound
    counts, as the model's ~510-token limit does)."""

    def __init__(self, vocab: Mapping[str, int], espeak_voice: str = "en-us") -> None:
        self._vocab = dict(vocab)
        self._espeak_voice = espeak_voice
        self._english = espeak_voice in ("en", "en-us")
        self._british = espeak_voice == "en"

    def phonemes(self, text: str) -> list[str]:
        ipa = "".join(join_groups(espeak_groups(self._espeak_voice, text)))
        symbols = kokoro_symbols(ipa, self._british, self._english)
        kept = [s for s in symbols if s in self._vocab]
        # Collapse runs of spaces the dropped symbols leave behind.
        out: list[str] = []
        for symbol in kept:
            if symbol == " " and (not out or out[-1] == " "):
                continue
            out.append(symbol)
        while out and out[-1] == " ":
            out.pop()
        return out

    def token_map(self) -> TokenMap:
        """Spaces and punctuation from the vocabulary; the pads are silent (the model's durations
        include them: the frames before and after the speech)."""
        spaces, silent = silent_ids({symbol: [index] for symbol, index in self._vocab.items()})
        return TokenMap(spaces, silent | {PAD}, lambda word: count_groups(self.phonemes(word)), model_ids)

    def _ids(self, phonemes: Sequence[str]) -> tuple[int, ...]:
        if not any(p.strip() for p in phonemes):
            return ()
        return tuple(self._vocab[p] for p in phonemes)


__all__ = ["MAX_TOKENS", "PAD", "KokoroFrontEnd", "chunk_ids", "espeak_voice_for", "kokoro_symbols", "model_ids"]
