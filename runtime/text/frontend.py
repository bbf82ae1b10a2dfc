"""Text front end: validate input, split it into sentences, bound chunk sizes, make phoneme ids.

Phonemes come from the espeak-ng bridge bundled with piper-tts (``piper.phonemize_espeak``) and
ids from the voice's own ``phoneme_id_map`` (``piper.phoneme_ids``). espeak-ng keeps global state,
so every call goes through one process-wide lock.

Chunking rules (in order): sentence ends (``.!?…`` then whitespace, newlines); a sentence whose
phonemes exceed the bound is cut at clause punctuation (comma, semicolon, colon, dashes), then between words.
Only a single token longer than the bound (no whitespace in it, so not a word) is cut inside.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runtime.errors import BadRequest
from runtime.text.normalize import Segment
from runtime.text.timestamps import TokenMap, count_groups, silent_ids

MAX_PHONEMES_PER_CHUNK = 300
"""Upper bound of phonemes per synthesis call (about 10 s of speech): keeps latency and memory
per call bounded and stays inside what VITS voices were trained on."""
FIRST_CHUNK_PHONEMES = 50
"""Bound of the first chunk of an answer: about a clause (espeak symbols, stress and length
marks included: 'Welcome to the quarterly update.' is 34, about 1.8 s of speech; 'Turn left at
the second traffic light,' 41). A longer opening sentence is cut after its last clause (comma,
semicolon, colon, dash) within the bound; one without such a cut in reach is cut between words
only when it is over twice the bound (a word cut in a shorter one would strand a word or two).
So the first audio waits for one clause, not a whole sentence. At 100 (until issue 20) nearly
every opening sentence fitted whole, so the bound only cut long ones."""

_ALLOWED_CONTROLS = {"\t", "\n", "\r"}
_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "st", "prof", "sr", "jr", "vs", "etc", "e.g", "i.e", "no", "fig", "mt"}
)
_SENTENCE_END = re.compile("[.!?\u2026]+[\"'\u201d\u2019)\\]]*(\\s+)|\n")
_CLAUSE_END = re.compile("(?<=[,;:\u2013\u2014])\\s+")

_ESPEAK_LOCK = threading.Lock()
_espeak: Any = None


ESPEAK_PIECE_CHARS = 120
"""Longest text handed to espeak-ng in one call. Longer texts go in pieces cut at whitespace
(a piece without any is cut hard): espeak-ng crashes the whole process (segfault) on some long
clauses - measured with 25 x "a.a.a.a. " (225 characters) and 100 x "A." - while every such
pattern tried stayed intact up to 180 characters. Pieces only change the phonemes at the cut,
where espeak starts a new clause."""


def espeak_pieces(text: str, limit: int = ESPEAK_PIECE_CHARS) -> list[str]:
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        cut = rest.rfind(" ", 0, limit + 1)
        if cut <= 0:
            cut = limit
        pieces.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        pieces.append(rest)
    return [p for p in pieces if p]


@dataclass(frozen=True)
class TextChunk:
    """One unit of synthesis: a piece of the input and its phoneme ids for one voice."""

    text: str
    phoneme_ids: tuple[int, ...]
    rate: float = 1.0
    """Speed factor of this piece (SSML ``<prosody rate>``), times the request's speed."""
    pause_after_s: float = 0.0
    """Silence after this piece (SSML ``<break>``)."""


def validate_input(text: str, max_chars: int) -> str:
    """The input with surrounding whitespace removed, or a 400 saying what is wrong (too long
    is a 400 too, as OpenAI answers it and as the OpenAPI document's maxLength says)."""
    if len(text) > max_chars:
        raise BadRequest(
            f"input is {len(text)} characters; the limit is {max_chars} (TAILOR_MAX_INPUT_CHARS). "
            "Split the text into several requests.",
            param="input",
            code="input_too_long",
        )
    for position, char in enumerate(text):
        category = unicodedata.category(char)
        if category == "Cs":
            raise BadRequest(
                f"input contains a lone surrogate U+{ord(char):04X} at position {position}; "
                "send valid Unicode text (UTF-8)",
                param="input",
                code="invalid_input",
            )
        if category == "Cc" and char not in _ALLOWED_CONTROLS:
            raise BadRequest(
                f"input contains control character U+{ord(char):04X} at position {position}; "
                "remove control characters (tabs and newlines are fine)",
                param="input",
                code="invalid_input",
            )
    stripped = unicodedata.normalize("NFC", text).strip()
    if not stripped:
        raise BadRequest("input is empty; send the text to speak", param="input", code="empty_input")
    return stripped


def split_sentences(text: str) -> list[str]:
    """Sentences at ``.!?…`` + whitespace and at line breaks; abbreviations such as 'Dr.' stay."""
    pieces: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.start(1) if match.group(1) is not None else match.start()
        candidate = text[start:end].strip()
        last_word = candidate.rsplit(None, 1)[-1].lower().rstrip(".") if candidate else ""
        if "\n" not in match.group() and candidate.endswith(".") and last_word in _ABBREVIATIONS:
            continue
        if candidate:
            pieces.append(candidate)
        start = match.end()
    tail = text[start:].strip()
    if tail:
        pieces.append(tail)
    return pieces


def _split_long_token(token: str, count: Callable[[str], int], limit: int) -> list[str]:
    """Cut a whitespace-free token longer than the bound into pieces that fit."""
    ratio = max(1.0, count(token) / max(1, len(token)))
    size = max(1, int(limit / ratio * 0.9))
    return [token[i : i + size] for i in range(0, len(token), size)]


def _pack(units: list[str], count: Callable[[str], int], limit: int, joiner: str = " ") -> list[str]:
    """Greedily join consecutive units while their phoneme count stays within ``limit``."""
    packed: list[str] = []
    current = ""
    current_count = 0
    for unit in units:
        unit_count = count(unit)
        if current and current_count + unit_count + 1 <= limit:
            current = current + joiner + unit
            current_count += unit_count + 1
        else:
            if current:
                packed.append(current)
            current, current_count = unit, unit_count
    if current:
        packed.append(current)
    return packed


def _enforce(piece: str, count: Callable[[str], int], limit: int) -> list[str]:
    """Halve ``piece`` (at the whitespace nearest the middle, else the middle) until every part
    is within ``limit``: the bound holds whatever the text (a phoneme count is not linear in
    characters, so the estimate of ``_split_long_token`` alone cannot promise it)."""
    if len(piece) <= 1 or count(piece) <= limit:
        return [piece]
    middle = len(piece) // 2
    spaces = [m.start() for m in re.finditer(r"\s", piece)]
    cut = min(spaces, key=lambda i: abs(i - middle)) if spaces else middle
    cut = cut if 0 < cut < len(piece) else middle
    left, right = piece[:cut].strip(), piece[cut:].strip()
    if not left or not right:
        left, right = piece[:middle], piece[middle:]
    return [*_enforce(left, count, limit), *_enforce(right, count, limit)]


def first_clause(piece: str, count: Callable[[str], int], limit: int) -> str | None:
    """The head of ``piece`` to speak first (see :data:`FIRST_CHUNK_PHONEMES`), or None to keep
    it whole: the clauses that fit in ``limit`` phonemes; without a clause cut in reach, the
    words that fit, but only when ``piece`` is over twice the bound."""
    if count(piece) <= limit:
        return None
    clauses = [c.strip() for c in _CLAUSE_END.split(piece) if c.strip()]
    if len(clauses) > 1 and count(clauses[0]) <= limit:
        return _pack(clauses, count, limit)[0]
    if count(piece) <= 2 * limit:
        return None
    return chunk_sentence(piece, count, limit)[0]


def _after_head(sentence: str, head: str) -> str:
    """What follows ``head`` in ``sentence``, where ``head`` is the sentence's beginning with its
    whitespace possibly rewritten (chunking joins clauses and words with one space): the cut is
    after as many non-space characters as ``head`` has, so no text is lost or repeated."""
    need = sum(1 for char in head if not char.isspace())
    seen = 0
    for position, char in enumerate(sentence):
        if seen == need:
            return sentence[position:].strip()
        if not char.isspace():
            seen += 1
    return ""


def chunk_sentence(sentence: str, count: Callable[[str], int], limit: int) -> list[str]:
    """Split one sentence into pieces of at most ``limit`` phonemes, never inside a word
    unless a single token is longer than the bound."""
    if count(sentence) <= limit:
        return [sentence]
    pieces: list[str] = []
    for clause in _CLAUSE_END.split(sentence):
        if not clause.strip():
            continue
        if count(clause) <= limit:
            pieces.append(clause.strip())
            continue
        words: list[str] = []
        for word in clause.split():
            words.extend([word] if count(word) <= limit else _split_long_token(word, count, limit))
        pieces.extend(_pack(words, count, limit))
    return [part for piece in _pack(pieces, count, limit) for part in _enforce(piece, count, limit)]


def espeak_groups(espeak_voice: str, text: str, vowel_clusters: Any = None) -> list[list[str]]:
    """espeak-ng phonemes of ``text`` (in pieces, see :data:`ESPEAK_PIECE_CHARS`) grouped by
    sentence, each phoneme one code point (NFD) as piper-tts's bridge gives them; under the
    process-wide espeak lock. Every family that phonemizes with espeak-ng goes through here."""
    global _espeak
    from piper.phonemize_espeak import EspeakPhonemizer

    with _ESPEAK_LOCK:
        if _espeak is None:
            _espeak = EspeakPhonemizer()
        return [
            group
            for piece in espeak_pieces(text)
            for group in _espeak.phonemize(espeak_voice, piece, vowel_clusters=vowel_clusters)
        ]


def join_groups(groups: Sequence[Sequence[str]]) -> list[str]:
    """espeak's sentence groups in one list, joined by a space."""
    joined: list[str] = []
    for group in groups:
        if not group:
            continue
        if joined:
            joined.append(" ")
        joined.extend(group)
    return joined


class ChunkingFrontEnd:
    """Sentence splitting and chunk bounds for a front end that turns text into units (phonemes)
    and units into ids: subclasses give :meth:`phonemes` and :meth:`_ids`."""

    def phonemes(self, text: str) -> list[str]:
        raise NotImplementedError

    def _ids(self, phonemes: Sequence[str]) -> tuple[int, ...]:
        raise NotImplementedError

    def count(self, text: str) -> int:
        return len(self.phonemes(text))

    def token_map(self) -> TokenMap | None:
        """How this front end's ids map to words, for word timestamps; None (the default): its
        family's models report no durations."""
        return None

    def ids(self, text: str) -> tuple[int, ...]:
        return self._ids(self.phonemes(text))

    def prepare(
        self, text: str, limit: int = MAX_PHONEMES_PER_CHUNK, first_limit: int | None = None
    ) -> list[TextChunk]:
        """Validated text to bounded chunks with ids; chunks with nothing to speak are dropped.

        ``first_limit`` bounds only the first chunk (streaming: the first audio comes sooner
        when a long opening sentence is cut at its first clause or word boundary that fits).
        """
        return self._prepare(text, limit, first_limit, {})

    def _prepare(
        self, text: str, limit: int, first_limit: int | None, memo: dict[str, list[str]]
    ) -> list[TextChunk]:
        """``prepare`` with a request's memo of phonemes by text: chunking counts the same
        sentence, clause and word several times, and espeak (which holds the GIL) is the
        costliest step of a request on the server's event-loop side."""

        def phonemes(piece: str) -> list[str]:
            found = memo.get(piece)
            if found is None:
                found = memo[piece] = self.phonemes(piece)
            return found

        def count(piece: str) -> int:
            return len(phonemes(piece))

        chunks: list[TextChunk] = []
        for index, sentence in enumerate(split_sentences(text)):
            pieces = chunk_sentence(sentence, count, limit)
            head = first_clause(pieces[0], count, first_limit) if index == 0 and first_limit else None
            if head is not None:
                rest = _after_head(pieces[0], head)
                pieces = [head, *([rest] if rest else []), *pieces[1:]]
            for piece in pieces:
                chunk = self._chunk(piece, phonemes(piece))
                if chunk is not None:
                    chunks.append(chunk)
        return chunks

    def _chunk(self, piece: str, phonemes: Sequence[str]) -> TextChunk | None:
        """The chunk for ``piece`` (None: nothing to speak in it)."""
        ids = self._ids(phonemes)
        return TextChunk(piece, ids) if ids else None

    def prepare_segments(
        self, segments: Sequence[Segment], limit: int = MAX_PHONEMES_PER_CHUNK,
        first_limit: int | None = None,
    ) -> list[TextChunk]:
        """``prepare`` for each segment of the front end, keeping its rate and pause."""
        chunks: list[TextChunk] = []
        memo: dict[str, list[str]] = {}
        for segment in segments:
            part = self._prepare(segment.text, limit, first_limit if not chunks else None, memo)
            if not part:
                continue
            part = [dataclasses.replace(c, rate=segment.rate) for c in part]
            part[-1] = dataclasses.replace(part[-1], pause_after_s=segment.pause_after_s)
            chunks.extend(part)
        return chunks


class Phonemizer(ChunkingFrontEnd):
    """Text to phoneme ids for one Piper voice (its espeak voice, id map and vowel clusters)."""

    def __init__(self, voice_config: Mapping[str, Any]) -> None:
        from piper.config import PhonemeType, PiperConfig

        self._config = PiperConfig.from_dict(dict(voice_config))
        if self._config.phoneme_type not in (PhonemeType.ESPEAK, PhonemeType.TEXT):
            raise ValueError(f"phoneme type {self._config.phoneme_type.value} is not supported")
        self._text_phonemes = self._config.phoneme_type == PhonemeType.TEXT

    @property
    def id_map(self) -> Mapping[str, Sequence[int]]:
        """The voice's phoneme -> ids table (word timestamps find spaces and punctuation in it)."""
        return self._config.phoneme_id_map

    def token_map(self) -> TokenMap:
        """Spaces and silent ids from the voice's id map; the model reads the chunk's ids as they are."""
        spaces, silent = silent_ids(self.id_map)
        return TokenMap(spaces, silent, lambda word: count_groups(self.phonemes(word)))

    def phonemes(self, text: str) -> list[str]:
        """All phonemes of ``text`` in one list; espeak's sentence groups are joined by a space."""
        if self._text_phonemes:
            return list(unicodedata.normalize("NFD", text))
        return join_groups(espeak_groups(self._config.espeak_voice, text, self._config.vowel_clusters))

    def _ids(self, phonemes: Sequence[str]) -> tuple[int, ...]:
        from piper.phoneme_ids import phonemes_to_ids

        id_map = self._config.phoneme_id_map
        known = [p for p in phonemes if p in id_map]
        if not any(p.strip() for p in known):
            return ()
        return tuple(phonemes_to_ids(known, id_map))
