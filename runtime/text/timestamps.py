"""Word-level timestamps from the model's own durations.

A model with a duration predictor (Piper/VITS, Kokoro-82M) decides how many audio frames each id
it reads gets; the engines report them as samples per id (``TimedAudio.id_samples``). A family's
front end says how its ids map to words (:class:`TokenMap`, from ``FrontEnd.token_map``; None for
a family without durations):

* Piper's ids of a chunk are ``^ _ p1 _ p2 _ ... pn _ $``: the phonemes espeak-ng gave, each
  followed by padding; the model reads exactly them.
* Kokoro's are one id per symbol (espeak-ng's phonemes in Kokoro's spelling); the model reads them
  with a pad (0) at each end, whose frames are silence before and after the speech.

espeak-ng separates words with a space phoneme, so the ids between two spaces are one spoken word.

Rule, per chunk:

* a *group* runs from its first to its last sounding id (phonemes and stress marks; not padding,
  spaces or punctuation, whose frames are the pauses between words);
* the chunk's *words* are its text split at whitespace, with surrounding punctuation stripped
  (tokens with no letter or digit, such as a dash, are not words);
* groups map to words one to one when their counts agree; otherwise each word is phonemized
  alone to learn how many groups it yields (``12`` is "twelve", one group; ``1,234`` several)
  and consecutive groups are merged per word; if the counts still disagree the chunk's sounding
  span is divided among its words in proportion to their length (the rare fallback, e.g. text
  that espeak reads with a different word split).

Times are seconds from the start of the whole response's audio (chunk offsets include earlier
chunks, SSML breaks and pauses) and follow the request's speed (time-stretching scales them).
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

PUNCTUATION = frozenset(string.punctuation) | frozenset("\u2026\u2013\u2014\u00a1\u00bf\u201c\u201d\u2018\u2019\u00ab\u00bb")
"""Phonemes that are punctuation: their frames are pauses, not a word's sound."""
_STRIP = "".join(sorted(PUNCTUATION))


@dataclass(frozen=True)
class ChunkTiming:
    """Where one chunk's audio lies in the response, and its samples per phoneme id."""

    text: str
    phoneme_ids: tuple[int, ...]
    offset_samples: int
    id_samples: np.ndarray


@dataclass(frozen=True)
class WordTiming:
    word: str
    start_s: float
    end_s: float

    def as_json(self) -> dict[str, object]:
        """Kokoro-FastAPI's shape: ``{"word", "start_time", "end_time"}`` (seconds)."""
        return {"word": self.word, "start_time": round(self.start_s, 3), "end_time": round(self.end_s, 3)}


@dataclass(frozen=True)
class TokenMap:
    """How one front end's ids map to words (what word timestamps need from a family)."""

    spaces: frozenset[int]
    """Ids that separate words."""
    silent: frozenset[int]
    """Ids that never sound as a word: padding, begin/end marks, punctuation."""
    groups_of: Callable[[str], int]
    """How many word groups a word yields when phonemized alone (see :func:`count_groups`)."""
    model_ids: Callable[[Sequence[int]], Sequence[int]] = tuple
    """A chunk's ids as the model read them, one per duration (Kokoro adds its pads)."""


def silent_ids(id_map: Mapping[str, Sequence[int]]) -> tuple[frozenset[int], frozenset[int]]:
    """(ids that separate words: the space, ids that never sound as a word: padding, begin, end
    and punctuation) of a voice's phoneme id map."""
    spaces = frozenset(id_map.get(" ", ()))
    silent = {i for key in ("_", "^", "$") for i in id_map.get(key, ())}
    silent |= {i for key, ids in id_map.items() if key in PUNCTUATION for i in ids}
    return spaces, frozenset(silent)


def phoneme_groups(ids: Sequence[int], id_samples: np.ndarray, spaces: frozenset[int],
                   silent: frozenset[int]) -> list[tuple[int, int]]:
    """``(start, end)`` sample spans, relative to the chunk, of each word the ids speak."""
    if len(ids) != len(id_samples):
        raise ValueError(f"{len(ids)} phoneme ids but {len(id_samples)} durations")
    ends = np.cumsum(np.asarray(id_samples, dtype=np.int64))
    starts = ends - np.asarray(id_samples, dtype=np.int64)
    groups: list[tuple[int, int]] = []
    first = last = -1
    for index, phoneme in enumerate(ids):
        if phoneme in spaces:
            if first >= 0:
                groups.append((int(starts[first]), int(ends[last])))
            first = last = -1
        elif phoneme not in silent:
            first = index if first < 0 else first
            last = index
    if first >= 0:
        groups.append((int(starts[first]), int(ends[last])))
    return groups


def chunk_words(text: str) -> list[str]:
    """The words of a chunk's text: whitespace-separated, surrounding punctuation stripped, only
    tokens with a letter or digit."""
    words = [token.strip(_STRIP) for token in text.split()]
    return [w for w in words if any(c.isalnum() for c in w)]


def _proportional(words: Sequence[str], start: int, end: int) -> list[tuple[int, int]]:
    weights = np.array([max(1, len(w)) for w in words], dtype=np.float64)
    edges = start + np.concatenate([[0.0], np.cumsum(weights)]) / weights.sum() * (end - start)
    return [(round(edges[i]), round(edges[i + 1])) for i in range(len(words))]


def align_words(words: Sequence[str], groups: Sequence[tuple[int, int]],
                groups_of: Callable[[str], int]) -> list[tuple[int, int]]:
    """One ``(start, end)`` span per word (see the module's rule); ``groups_of(word)`` counts the
    groups a word yields when phonemized alone."""
    if not words or not groups:
        return []
    if len(words) == len(groups):
        return list(groups)
    counts = [groups_of(w) for w in words]
    if sum(counts) == len(groups):
        spans: list[tuple[int, int]] = []
        position = 0
        for count in counts:
            if count == 0:  # says nothing alone: a zero-length mark where it stands
                at = spans[-1][1] if spans else groups[0][0]
                spans.append((at, at))
                continue
            spans.append((groups[position][0], groups[position + count - 1][1]))
            position += count
        return spans
    return _proportional(words, groups[0][0], groups[-1][1])


def word_timestamps(chunks: Sequence[ChunkTiming], sample_rate_hz: int, tokens: TokenMap) -> list[WordTiming]:
    """Every word of every chunk, in order, with start and end in seconds of the response."""
    result: list[WordTiming] = []
    for chunk in chunks:
        words = chunk_words(chunk.text)
        groups = phoneme_groups(tokens.model_ids(chunk.phoneme_ids), chunk.id_samples, tokens.spaces, tokens.silent)
        for word, (start, end) in zip(words, align_words(words, groups, tokens.groups_of), strict=False):
            result.append(WordTiming(word, (chunk.offset_samples + start) / sample_rate_hz,
                                     (chunk.offset_samples + end) / sample_rate_hz))
    return result


def count_groups(phonemes: Sequence[str]) -> int:
    """Words (space-separated groups with a sounding phoneme) in a phoneme list."""
    count, sounding = 0, False
    for phoneme in [*phonemes, " "]:
        if phoneme == " ":
            count += int(sounding)
            sounding = False
        elif phoneme not in PUNCTUATION:
            sounding = True
    return count
