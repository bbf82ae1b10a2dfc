"""Text front end before phonemisation: an SSML subset, tags in plain text, English
normalisation, script checks.

``prepare_text(text, language, voice, normalize)`` turns a request's input into :class:`Segment` s
(text to speak, a speed factor, a pause after it); ``normalize`` is a bool or the request's
:class:`NormalizationOptions`. The rules, in order:

1. **SSML** when the input starts with ``<speak`` (or an XML declaration): ``<break time="500ms"|"1s" strength="...">``
   (a pause; up to 5 s), ``<prosody rate="slow|x-slow|medium|fast|x-fast|NN%">`` (speed of
   its text), ``<say-as interpret-as="characters|spell-out|cardinal|number|ordinal|digits|
   telephone|date|time">``, ``<sub alias="...">`` (the alias is spoken), ``<p>``/``<s>``
   (sentence breaks). Every other tag is dropped and only its text is kept, never read aloud.
   Malformed markup and DOCTYPE/ENTITY declarations are a 400.
2. **Tags in plain text** (any language): HTML markup is removed by the rule of
   :func:`strip_tags` (``Use the <b>bold</b> tag.`` -> "Use the bold tag."); ``3 < 5`` stays.
3. **English normalisation** (English voices, unless ``TAILOR_NORMALIZE=off``), in this order,
   number words from num2words in American style ("one hundred five"):
   - URLs and e-mail addresses: "example dot com slash docs", "jane dot doe at example dot com".
   - Abbreviations: titles before names (``Dr.``, ``Mr.``, ``Prof.``; ``St.`` is "Saint" before
     a name and "Street" after a street name or house number, ``Dr.`` likewise "Drive"), street
     types after a name (``Ave.``), ``Jr.``, ``etc.``, ``e.g.``, ``vs.``; before a number ``No.``,
     ``pp.``, ``ext.``, ``vol.``; month abbreviations before a day. A full stop that also ends
     the sentence is kept, so the sentence break survives (``Elm St. Then`` -> "Elm Street. Then").
   - Phone numbers, digit by digit in their groups: ``+1 800 555 0199``, ``(555) 123-4567``,
     ``555-1234``, ``1-800-555-0199``, space-separated groups after "call"/"Tel:".
   - Money with signs, scales and ranges: ``-$40``/``$-5`` "minus forty/five dollars", ``$3B``
     "three billion dollars", ``$5-$10`` "five to ten dollars", ``a $5 fee`` "a five dollar fee";
     £, €, ¥, ₹, ``US$``, ``50 EUR``, ``50¢``.
   - Dates (``2024-03-15``, ``3/15/2024``, ``May 5, 2021``, ``5 May``), times (``3:30 pm`` ->
     "three thirty p.m", ``14:05``, ``7 pm``) and ratios: ``16:9`` "sixteen to nine" (minutes of
     one digit, or near "ratio"/"aspect"/"odds").
   - Decades: ``1990s`` "nineteen nineties", ``'90s`` "nineties", ``the 80s`` "the eighties"
     (after the/her/early/mid...; else ``30s`` is seconds).
   - Roman numerals by the rule of :func:`_roman`: "Chapter four", "Henry the Eighth", "World
     War two"; I, CD, MIX, DIV, XL stay.
   - ``#MachineLearning`` "hashtag Machine Learning"; ``C#`` "C sharp"; ``#5`` "number five".
   - Units only after a number, case-sensitive (``5 kg``, ``20°C``, ``3 GB``, ``60 km/h``; ``5 M
     users`` "five million", ``5G`` "five G", ``10 W Main Street`` "ten West Main Street").
   - ``A-B`` between numbers "A to B" (ranges and scores: ``pages 10-20``, ``won 3-2``; years
     ``1990-1995``); ``5 - 3`` with spaces is a minus.
   - Fractions with a usual denominator: ``1/2`` "one half", ``3/4`` "three quarters", ``2 1/2``
     "two and a half"; ``24/7``, ``9/11`` read as their numbers.
   - Ordinals (``21st``), percentages, comparisons (``3 < 5`` "three is less than five"),
     versions (``2.0.1``), and numbers: a four-digit number is a year only in a year context
     (``in 1990``, ``1066 AD``), else a count (``1234 points``); more than 15 digits or a leading
     zero, digit by digit; ``&``/``@``/``+``/``=``/``#`` as words; symbols and emoji removed
     (espeak would read their Unicode names).
4. **Scripts**: letters the voice's language is not written in (e.g. Chinese for an English
   voice) are skipped, never read as "Chinese letter"; the response says so in an
   ``X-Tailor-Warning`` header (letters per script, the voice and its language). Input made
   only of such letters is a 400 (``unsupported_script``) naming the voice and its language.
   Languages not in the table accept every script.
5. Input with nothing speakable left (no letter or digit) is a 400.
"""

from __future__ import annotations

import html
import re
import unicodedata
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache

from num2words import num2words

from runtime.errors import BadRequest
from runtime.text.normalize_words import (
    ADJECTIVE_STOPWORDS,
    BARE_SCALES,
    COMPASS,
    CURRENCIES,
    CURRENCY_CODES,
    CURRENCY_PREFIXES,
    CURRENCY_SYMBOLS,
    HTML_BLOCK,
    HTML_DROPPED_WITH_CONTENT,
    HTML_INLINE,
    HTML_VOID,
    INLINE_ABBREVIATIONS,
    MONTH_ABBREVIATIONS,
    MONTHS,
    NUMBER_ABBREVIATIONS,
    PER_UNITS,
    REGNAL_NAMES,
    ROMAN_STOPWORDS,
    ROMAN_TITLE_WORDS,
    ROYAL_TITLES,
    SCALE_WORDS,
    STREET_TYPES,
    TITLES,
    TRAILING_ABBREVIATIONS,
    UNCONDITIONAL_TITLES,
    UNITS,
)

MAX_BREAK_S = 5.0
_RATES = {"x-slow": 0.5, "slow": 0.75, "medium": 1.0, "default": 1.0, "fast": 1.25, "x-fast": 1.75}
_STRENGTHS = {"none": 0.0, "x-weak": 0.1, "weak": 0.2, "medium": 0.4, "strong": 0.7, "x-strong": 1.0}


@dataclass(frozen=True)
class Segment:
    text: str
    rate: float = 1.0
    """Speed factor from ``<prosody rate>``, multiplied with the request's ``speed``."""
    pause_after_s: float = 0.0


# --- scripts ------------------------------------------------------------------------------
_SCRIPTS_BY_LANGUAGE: dict[str, frozenset[str]] = {}
for _codes, _scripts in (
    ("en de fr es it nl pt pl cs sk sl hr bs ro hu fi sv da no nb nn is et lv lt tr ca eu gl "
     "cy ga sq sw vi id ms af lb mt tl eo la", {"LATIN"}),
    ("ru uk bg sr mk kk be ky tg mn", {"CYRILLIC", "LATIN"}),
    ("el", {"GREEK", "LATIN"}),
    ("zh cmn yue", {"CJK", "LATIN"}),
    ("ja", {"CJK", "HIRAGANA", "KATAKANA", "LATIN"}),
    ("ko", {"HANGUL", "CJK", "LATIN"}),
    ("ar fa ur", {"ARABIC", "LATIN"}),
    ("he", {"HEBREW", "LATIN"}),
    ("hi ne mr", {"DEVANAGARI", "LATIN"}),
    ("ka", {"GEORGIAN", "LATIN"}),
    ("hy", {"ARMENIAN", "LATIN"}),
    ("th", {"THAI", "LATIN"}),
):
    for _code in _codes.split():
        _SCRIPTS_BY_LANGUAGE[_code] = frozenset(_scripts)


def letter_script(char: str) -> str:
    """The script of a letter, from its Unicode name (``LATIN``, ``CJK``, ``CYRILLIC``...)."""
    name = unicodedata.name(char, "")
    return name.split(" ", 1)[0] if name else "UNKNOWN"


def drop_unreadable_scripts(text: str, language: str) -> tuple[str, dict[str, int]]:
    """``text`` without letters of scripts ``language`` is not written in, and how many letters
    of each such script were dropped (empty when nothing was)."""
    allowed = _SCRIPTS_BY_LANGUAGE.get(language.lower().replace("-", "_").split("_", 1)[0])
    if allowed is None or (text.isascii() and "LATIN" in allowed):
        return text, {}
    dropped: dict[str, int] = {}
    kept: list[str] = []
    for char in text:
        if not char.isascii() and char.isalpha() and (script := letter_script(char)) not in allowed:
            dropped[script] = dropped.get(script, 0) + 1
            kept.append(" ")
        else:
            kept.append(char)
    return ("".join(kept), dropped) if dropped else (text, {})


def has_speakable(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


# --- SSML -----------------------------------------------------------------------------------
def _seconds(value: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s)\s*", value)
    if not match:
        raise BadRequest(f"SSML <break time={value!r}>: write a duration such as 500ms or 1s",
                         param="input", code="invalid_ssml")
    amount = float(match.group(1)) / (1000.0 if match.group(2) == "ms" else 1.0)
    return min(amount, MAX_BREAK_S)


def _rate(value: str) -> float:
    value = value.strip().lower()
    if value in _RATES:
        return _RATES[value]
    match = re.fullmatch(r"(\d+(?:\.\d+)?)%", value)
    if match and 20.0 <= float(match.group(1)) <= 400.0:
        return float(match.group(1)) / 100.0
    raise BadRequest(f"SSML <prosody rate={value!r}>: use x-slow, slow, medium, fast, x-fast or "
                     "a percentage from 20% to 400%", param="input", code="invalid_ssml")


def _say_as(text: str, interpret: str) -> str:
    interpret = interpret.strip().lower()
    if interpret in ("characters", "spell-out", "verbatim"):
        return " ".join(ch for ch in text if not ch.isspace())
    if interpret in ("digits", "telephone"):
        return " ".join(_DIGIT_WORDS[int(ch)] if ch in "0123456789" else ch for ch in text if ch.isalnum())
    if interpret in ("cardinal", "number"):
        return _SIGNED_NUMBER.sub(lambda m: _sign_word(m.group("sign")) + number_words(m.group("n")), text)
    if interpret == "ordinal":
        return re.sub(r"\d+", lambda m: ordinal_words(m.group()), text)
    return text  # date, time and others: the normaliser reads them as such


def parse_ssml(text: str) -> list[Segment]:
    """The SSML subset to segments (see the module docstring)."""
    if re.search(r"<!(DOCTYPE|ENTITY)", text, re.IGNORECASE):
        raise BadRequest("SSML with DOCTYPE or ENTITY declarations is not accepted",
                         param="input", code="invalid_ssml")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise BadRequest(f"input starts with <speak but is not well-formed SSML: {exc}",
                         param="input", code="invalid_ssml") from None
    segments: list[Segment] = []
    parts: list[str] = []

    def flush(rate: float, pause: float = 0.0) -> None:
        joined = " ".join(p.strip() for p in parts if p.strip())
        parts.clear()
        if joined:
            segments.append(Segment(joined, rate, pause))
        elif pause and segments:
            last = segments[-1]
            segments[-1] = Segment(last.text, last.rate, min(MAX_BREAK_S, last.pause_after_s + pause))

    def walk(node: ET.Element, rate: float) -> None:
        tag = node.tag.rsplit("}", 1)[-1].lower() if isinstance(node.tag, str) else ""
        if tag == "break":
            flush(rate, _seconds(node.get("time", "")) if node.get("time")
                  else _STRENGTHS.get(node.get("strength", "medium"), 0.4))
        elif tag == "sub":
            parts.append(node.get("alias", node.text or ""))
        elif tag == "say-as":
            parts.append(_say_as("".join(node.itertext()), node.get("interpret-as", "")))
        else:
            inner = rate * _rate(node.get("rate", "medium")) if tag == "prosody" else rate
            if tag == "prosody" and inner != rate:
                flush(rate)
            if tag in ("p", "s"):
                flush(rate)
            parts.append(node.text or "")
            for child in node:
                walk(child, inner)
                parts.append(child.tail or "")
            if tag in ("p", "s"):
                parts.append(".")
                flush(inner)
            if tag == "prosody" and inner != rate:
                flush(inner)
            return
        parts.append("")

    walk(root, 1.0)
    flush(1.0)
    return segments


# --- English normalisation --------------------------------------------------------------------
@dataclass(frozen=True)
class NormalizationOptions:
    """Per-request switches of the text front end. The defaults are the server's behaviour
    (``TAILOR_NORMALIZE=on``); ``enabled=False`` reads the text as written (SSML still applies).
    The other switches each turn one family of rules off."""

    enabled: bool = True
    """All normalisation: tags in plain text (any language) and the English rules (English voices)."""
    strip_tags: bool = True
    """HTML-like tags in plain (non-SSML) text are removed and character entities decoded."""
    urls: bool = True
    """URLs and e-mail addresses: "example dot com slash docs", "jane at example dot com"."""
    phone_numbers: bool = True
    """Phone numbers read digit by digit in their groups."""
    units: bool = True
    """Unit symbols after a number read as words: "5 kg" -> "five kilograms"."""
    roman_numerals: bool = True
    """Roman numerals after names and titles: "Henry VIII", "Chapter IV"."""
    abbreviations: bool = True
    """Titles, street types, Latin and other abbreviations: "Dr.", "St.", "e.g.", "pp."."""


DEFAULT_OPTIONS = NormalizationOptions()
NO_NORMALIZATION = NormalizationOptions(enabled=False)

_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
"""A written number: digits with optional thousands separators and decimals."""
_SIGNED_NUMBER = re.compile(rf"(?P<sign>(?<![\w.-])-)?(?<![\w.])(?P<n>{_NUM})")


def _american(words: str) -> str:
    """num2words writes British English ("one hundred and five", "one thousand, two"); American
    English, as espeak-ng's US voices expect, has neither the "and" nor the comma."""
    return words.replace(",", "").replace(" and ", " ")


@lru_cache(maxsize=4096)
def cardinal(value: int) -> str:
    """1234 -> "one thousand two hundred thirty-four" (num2words, American style)."""
    if value < 0:
        return "minus " + cardinal(-value)
    return _american(str(num2words(value, lang="en")))


@lru_cache(maxsize=1024)
def ordinal(value: int) -> str:
    """21 -> "twenty-first", 112 -> "one hundred twelfth" (num2words, American style)."""
    return _american(str(num2words(value, lang="en", to="ordinal")))


def year(value: int) -> str:
    """Read as a year, in pairs of digits: 1999 -> "nineteen ninety-nine", 1905 -> "nineteen oh
    five", 1900 -> "nineteen hundred", 2005 -> "two thousand five", 2024 -> "twenty twenty-four"."""
    high, low = divmod(value, 100)
    if not 1000 <= value <= 9999 or (high % 10 == 0 and low < 10):
        return cardinal(value)
    if low == 0:
        return f"{cardinal(high)} hundred"
    return f"{cardinal(high)} {'oh ' + cardinal(low) if low < 10 else cardinal(low)}"


def digits(text: str) -> str:
    """Every digit of ``text`` as a word: "0199" -> "zero one nine nine"."""
    return " ".join(_DIGIT_WORDS[int(d)] for d in text if d.isdecimal())


def number_words(raw: str) -> str:
    """A written number in words: separators dropped, decimals digit by digit ("3.14" -> "three
    point one four"); a leading zero ("007") or more than 15 digits (an id) digit by digit."""
    whole, dot, fraction = raw.replace(",", "").partition(".")
    if len(whole) > 15 or (len(whole) > 1 and whole.startswith("0")):
        head = digits(whole)
    else:
        head = cardinal(int(whole)) if whole else ""
    return f"{head} point {digits(fraction)}".strip() if dot else head


def ordinal_words(raw: str) -> str:
    """"21" -> "twenty-first"; more than 15 digits, digit by digit (as ``number_words``)."""
    return digits(raw) if len(raw) > 15 else ordinal(int(raw))


def _plural(words: str) -> str:
    """The plural of a number's last word: "nineteen sixty" -> "nineteen sixties"."""
    return words[:-1] + "ies" if words.endswith("y") else words + "s"


def _capitalized(words: str) -> str:
    return "-".join(part[:1].upper() + part[1:] for part in words.split("-"))


# -- context of a match -----------------------------------------------------------------------
_TEXT_END = re.compile(r"\s*\Z")
_NEXT_SENTENCE = re.compile(r"\s+[\"'\u201c\u2018(\[]*[A-Z]")
_NEXT_CAPITALIZED = re.compile(r"\s+[A-Z]")


def _sentence_stop(match: re.Match[str]) -> str:
    """'.' when the full stop that ends an abbreviation also ends its sentence (the text ends,
    or a capital follows), so the sentence break survives the expansion; else ''."""
    if not match.group().endswith("."):
        return ""
    text, end = match.string, match.end()
    return "." if _TEXT_END.match(text, end) or _NEXT_SENTENCE.match(text, end) else ""


def _words_before(text: str, start: int) -> tuple[str, str]:
    """The word right before ``start`` on its line and the one before that; the second is
    ``"."`` when the first opens a sentence, ``""`` when there is nothing."""
    line_start = text.rfind("\n", 0, start) + 1
    words = text[max(line_start, start - 80):start].split()
    if not words:
        return "", ""
    if len(words) == 1:
        return words[0], "."
    before = words[-2]
    return words[-1], "." if before[-1] in ".!?" else before


def _is_name(word: str) -> bool:
    """A capitalised word such as a street or a person's name (not all capitals, not a number)."""
    bare = word.rstrip(",;:")
    return len(bare) > 1 and bare[0].isupper() and bare[1:].islower() and bare.isalpha()


# -- 1. characters ----------------------------------------------------------------------------
_CHARACTERS = str.maketrans({"\u00a0": " ", "\u202f": " ", "\u2009": " ", "\u2007": " ",
                             "\u2212": "-", "\u2044": "/", "\u2010": "-", "\u2011": "-"})
_VULGAR = {"½": "1/2", "⅓": "1/3", "⅔": "2/3", "¼": "1/4", "¾": "3/4", "⅕": "1/5", "⅖": "2/5",
           "⅗": "3/5", "⅘": "4/5", "⅙": "1/6", "⅚": "5/6", "⅛": "1/8", "⅜": "3/8", "⅝": "5/8",
           "⅞": "7/8"}
_VULGAR_FRACTION = re.compile(f"(\\d?)([{''.join(_VULGAR)}])")


def _characters(text: str) -> str:
    text = text.translate(_CHARACTERS)
    if any(ch in text for ch in _VULGAR):
        text = _VULGAR_FRACTION.sub(lambda m: f"{m.group(1)} {_VULGAR[m.group(2)]}".lstrip(), text)
    return text


# -- 2. URLs and e-mail addresses -------------------------------------------------------------
_EMAIL = re.compile(r"(?<![\w.+-])(?P<local>[A-Za-z0-9][\w.%+-]*)@(?P<domain>[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})(?![\w@])")
_URL = re.compile(
    r"(?<![\w@/.])(?:(?:https?|ftp)://|www\.)[^\s<>\"']+"
    r"|(?<![\w@/.-])[A-Za-z0-9][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)*\.(?:com|org|net|edu|gov|io|dev|ai|app|"
    r"co|uk|de|fr|ca|au|us|info|biz|tv|xyz|eu|gg)\b(?!\.\w)(?:/[^\s<>\"']*)?", re.IGNORECASE)
_URL_HINT = re.compile(r"://|www\.|\.(?:com|org|net|edu|gov|io|dev|ai|app|co|uk|de|fr|ca|au|us|info|biz|tv|"
                       r"xyz|eu|gg)\b", re.IGNORECASE)
_URL_SEPARATORS = {"/": "slash", ".": "dot", "-": "dash", "_": "underscore", "?": "question mark",
                   "=": "equals", "&": "and", "#": "hash", ":": "colon", "~": "tilde", "%": "percent",
                   "+": "plus", "@": "at"}
_URL_SEPARATOR = re.compile("[" + re.escape("".join(_URL_SEPARATORS)) + "]")
_URL_TRAILING = re.compile(r"[.,;:!?)\]'\"]+\Z")
_URL_SCHEME = re.compile(r"\A(?:https?|ftp)://", re.IGNORECASE)


def _spell_separators(text: str) -> str:
    spoken = _URL_SEPARATOR.sub(lambda m: f" {_URL_SEPARATORS[m.group()]} ", text)
    return " ".join("w w w" if w.lower() == "www" else w for w in spoken.split())


def _url(match: re.Match[str]) -> str:
    url = match.group()
    trailing = _URL_TRAILING.search(url)
    tail = trailing.group() if trailing else ""
    url = url[: len(url) - len(tail)]
    return _spell_separators(_URL_SCHEME.sub("", url).rstrip("/")) + tail


def _urls(text: str) -> str:
    if "@" in text:
        text = _EMAIL.sub(lambda m: f"{_spell_separators(m.group('local'))} at "
                                    f"{_spell_separators(m.group('domain'))}", text)
    return _URL.sub(_url, text) if _URL_HINT.search(text) else text


# -- 3. abbreviations -------------------------------------------------------------------------
_ABBREVIATION_KEYS = sorted(set(TITLES) | set(STREET_TYPES) | set(TRAILING_ABBREVIATIONS)
                            | set(MONTH_ABBREVIATIONS) | set(NUMBER_ABBREVIATIONS), key=len, reverse=True)
_ABBREVIATION = re.compile(
    r"(?<![\w.'\u2019&-])(?P<word>"
    + "|".join(sorted({v for k in _ABBREVIATION_KEYS for v in (k, k.capitalize(), k.upper())}, key=len, reverse=True))
    + r")(?P<dot>\.)?(?![\w'\u2019&-]|\.\w)")
_INLINE_ABBREVIATION = re.compile(
    r"(?<![\w.])(?P<abbr>" + "|".join(re.escape(a) for a in sorted(INLINE_ABBREVIATIONS, key=len, reverse=True))
    + r")(?![\w])", re.IGNORECASE)
_BEFORE_NUMBER = re.compile(r"\s*\d")
_BEFORE_NUMBER_OR_ROMAN = re.compile(r"\s*(?:\d|[IVXLC]+\b)")
_ORDINAL_OR_NUMBER = re.compile(r"\d+(?:st|nd|rd|th)?,?")


def _abbreviation(match: re.Match[str]) -> str:
    word, dotted = match.group("word"), match.group("dot") is not None
    key, text, end = word.lower(), match.string, match.end()
    capital = word[0].isupper()
    title_case = capital and word[1:].islower()
    next_capitalized = _NEXT_CAPITALIZED.match(text, end) is not None
    if dotted and key in NUMBER_ABBREVIATIONS:
        follows = _BEFORE_NUMBER if key in ("no", "nos") else _BEFORE_NUMBER_OR_ROMAN
        if follows.match(text, end):
            return NUMBER_ABBREVIATIONS[key]
    if key in MONTH_ABBREVIATIONS and capital and (_BEFORE_NUMBER.match(text, end) or (
            dotted and _ORDINAL_OR_NUMBER.fullmatch(_words_before(text, match.start())[0]))):
        return MONTH_ABBREVIATIONS[key] + _sentence_stop(match)
    previous, before = _words_before(text, match.start())
    after_name = bool(_ORDINAL_OR_NUMBER.fullmatch(previous)) or (
        _is_name(previous) and before != "." and previous.lower() not in ROMAN_STOPWORDS)
    if key in ("st", "dr") and (dotted or title_case):
        if key == "st" and (after_name or not next_capitalized) and capital:
            return "Street" + _sentence_stop(match)
        if key == "dr" and after_name and capital:
            return "Drive" + _sentence_stop(match)
        if dotted or next_capitalized:
            return TITLES[key]
        return word
    if key in STREET_TYPES and (title_case or (dotted and capital)) and after_name:
        return STREET_TYPES[key] + _sentence_stop(match)
    if key in TRAILING_ABBREVIATIONS and dotted:
        return TRAILING_ABBREVIATIONS[key] + _sentence_stop(match)
    if key in TITLES:
        if dotted and (key in UNCONDITIONAL_TITLES or next_capitalized):
            return TITLES[key]
        if not dotted and title_case and next_capitalized and key in UNCONDITIONAL_TITLES:
            return TITLES[key]
    return match.group()


def _abbreviations(text: str) -> str:
    text = _INLINE_ABBREVIATION.sub(lambda m: INLINE_ABBREVIATIONS[m.group("abbr").lower()], text)
    return _ABBREVIATION.sub(_abbreviation, text)


# -- 4. phone numbers -------------------------------------------------------------------------
_PHONE_INTERNATIONAL = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .-]\(?\d{1,8}\)?|\s?\(\d{1,5}\)){1,6}(?![\w])")
_PHONE_PARENTHESES = re.compile(r"(?<![\w(])(?:1[ .-]?)?\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}(?![\w])")
_PHONE_DASHED = re.compile(r"(?<![\w.+-])(?:(?:1-)?\d{3}([-.])\d{3}\1|\d{3}-)\d{4}(?![\w-])")
_PHONE_GROUPS = re.compile(r"(?<![\w.,+-])\d{2,5}(?: \d{2,5}){1,4}(?![\w])")
_PHONE_CUE = re.compile(r"\b(?i:tel|phone|telephone|call|fax|mobile|cell|dial|ring|text|whatsapp)\b[:.]?\s*"
                        r"(?:(?i:us|me|them|on|at)\s+){0,2}\Z")
_DIGIT_GROUP = re.compile(r"\d+")


def _phone(match: re.Match[str]) -> str:
    groups = _DIGIT_GROUP.findall(match.group())
    count = sum(len(g) for g in groups)
    if not 7 <= count <= 15:
        return match.group()
    spoken = ", ".join(digits(g) for g in groups)
    return "plus " + spoken if match.group().startswith("+") else spoken


def _phone_after_cue(match: re.Match[str]) -> str:
    """Groups of digits separated by spaces are a phone number only after a word such as
    "call", "phone", "Tel:" (``Tel: 020 7946 0958``); elsewhere they are numbers."""
    if not _PHONE_CUE.search(match.string[max(0, match.start() - 30):match.start()]):
        return match.group()
    return _phone(match)


def _phones(text: str) -> str:
    if "+" in text:
        text = _PHONE_INTERNATIONAL.sub(_phone, text)
    if "(" in text:
        text = _PHONE_PARENTHESES.sub(_phone, text)
    if "-" in text or "." in text:
        text = _PHONE_DASHED.sub(_phone, text)
    return _PHONE_GROUPS.sub(_phone_after_cue, text)


# -- 5. money ---------------------------------------------------------------------------------
_SCALE = r"(?:thousand|million|billion|trillion|bn|BN|mn|MM|tn|[kKmMbBtT])\b"
_MONEY = re.compile(
    r"(?<![\w.])(?P<sign>[-+])?(?:(?P<prefix>US|AU|CA|NZ|HK|A|C|S)(?=\$))?(?P<symbol>[$£€¥₹])\s?(?P<sign2>[-+])?"
    rf"(?P<amount>{_NUM})(?:\s?(?P<scale>{_SCALE}))?"
    rf"(?:\s?[-\u2013]\s?(?:(?P=prefix)?(?P=symbol))?(?P<amount2>{_NUM})(?:\s?(?P<scale2>{_SCALE}))?)?")
_MONEY_CODE = re.compile(rf"(?<![\w.])(?P<sign>-)?(?P<amount>{_NUM})\s?(?P<code>{'|'.join(CURRENCY_CODES)})\b"
                         rf"|\b(?P<code2>{'|'.join(CURRENCY_CODES)})\s?(?P<sign2>-)?(?P<amount2>{_NUM})(?![\w])")
_CENTS = re.compile(rf"(?<![\w.])(?P<amount>{_NUM})\s?¢")
_ARTICLE_BEFORE = re.compile(r"\b(?:a|an|A|An)\s+\Z")
_NOUN_AFTER = re.compile(r"\s+(?P<word>[A-Za-z]+)")


def _adjective(match: re.Match[str]) -> bool:
    """``a $5 fee``, ``a 60 W bulb``: an amount between "a"/"an" and a noun describes the noun,
    so its unit is read in the singular ("a five dollar fee")."""
    text, begin = match.string, match.start()
    if not _ARTICLE_BEFORE.search(text[max(0, begin - 4):begin]):
        return False
    noun = _NOUN_AFTER.match(text, match.end())
    return noun is not None and noun.group("word").lower() not in ADJECTIVE_STOPWORDS


def _money_words(amount: str, scale: str | None, currency: str, singular: bool) -> str:
    one, many, sub_one, sub_many = CURRENCIES[currency]
    if scale:
        return f"{number_words(amount)} {SCALE_WORDS[scale]} {one if singular else many}"
    whole, _, fraction = amount.replace(",", "").partition(".")
    if fraction and (not sub_one or len(fraction) > 2):
        return f"{number_words(amount)} {one if singular else many}"
    whole = whole or "0"
    hundredths = int((fraction + "0")[:2]) if fraction else 0
    unit_words = f"{number_words(whole)} {one if whole == '1' or singular else many}"
    if not hundredths:
        return unit_words
    sub_words = f"{cardinal(hundredths)} {sub_one if hundredths == 1 else sub_many}"
    return sub_words if not whole.strip("0") else f"{unit_words} and {sub_words}"


def _sign_word(sign: str | None) -> str:
    return {"-": "minus ", "+": "plus "}.get(sign or "", "")


def _money(match: re.Match[str]) -> str:
    prefix = match.group("prefix")
    currency = CURRENCY_PREFIXES[prefix] if prefix else CURRENCY_SYMBOLS[match.group("symbol")]
    sign = _sign_word(match.group("sign") or match.group("sign2"))
    singular = _adjective(match)
    if match.group("amount2"):
        low_scale = match.group("scale") or match.group("scale2")
        first = number_words(match.group("amount")) + (f" {SCALE_WORDS[low_scale]}" if match.group("scale") else "")
        return f"{sign}{first} to {_money_words(match.group('amount2'), match.group('scale2'), currency, singular)}"
    return sign + _money_words(match.group("amount"), match.group("scale"), currency, singular)


def _money_code(match: re.Match[str]) -> str:
    code = match.group("code") or match.group("code2")
    amount = match.group("amount") or match.group("amount2")
    sign = _sign_word(match.group("sign") or match.group("sign2"))
    return sign + _money_words(amount, None, CURRENCY_CODES[code], _adjective(match))


def _money_all(text: str) -> str:
    if any(symbol in text for symbol in "$£€¥₹"):
        text = _MONEY.sub(_money, text)
    if any(code in text for code in CURRENCY_CODES):
        text = _MONEY_CODE.sub(_money_code, text)
    if "¢" in text:
        text = _CENTS.sub(lambda m: f"{number_words(m.group('amount'))} "
                                    f"{'cent' if m.group('amount') == '1' else 'cents'}", text)
    return text


# -- 6. dates ---------------------------------------------------------------------------------
_MONTH_NAMES = "|".join(MONTHS)
_ISO_DATE = re.compile(r"\b(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})\b")
_SLASH_DATE = re.compile(r"\b(?P<a>\d{1,2})/(?P<b>\d{1,2})/(?P<y>\d{4})\b")
_MONTH_DAY = re.compile(rf"\b(?P<month>{_MONTH_NAMES})\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?(?![\d:%]|\.\d)"
                        r"(?:(?P<comma>,?)\s+(?P<y>\d{4})\b)?")
_DAY_MONTH = re.compile(rf"(?<![\w.])(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\s+(?P<month>{_MONTH_NAMES})\b"
                        r"(?:(?P<comma>,?)\s+(?P<y>\d{4})\b)?")
_ANY_MONTH = re.compile(_MONTH_NAMES)
_THE_BEFORE = re.compile(r"\b(?i:the)\s+\Z")
_MONTH_YEAR = re.compile(rf"\b(?P<month>{_MONTH_NAMES})(?P<comma>,?)\s+(?P<y>\d{{4}})\b")


def _date(year_value: int, month: int, day: int, original: str) -> str:
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return original
    return f"{MONTHS[month - 1]} {ordinal(day)}, {year(year_value)}"


def _slash_date(match: re.Match[str]) -> str:
    """m/d/yyyy, or d/m/yyyy where the first number cannot be a month (25/12/2024)."""
    first, second = int(match.group("a")), int(match.group("b"))
    month, day = (second, first) if first > 12 >= second else (first, second)
    return _date(int(match.group("y")), month, day, match.group())


def _year_tail(match: re.Match[str]) -> str:
    return f"{match.group('comma') or ''} {year(int(match.group('y')))}" if match.group("y") else ""


def _day_month(match: re.Match[str]) -> str:
    """``5 May 2021`` -> "the fifth of May, twenty twenty-one" ("the" once after "the")."""
    if not 1 <= int(match.group("d")) <= 31:
        return match.group()
    the = "" if _THE_BEFORE.search(match.string, max(0, match.start() - 4), match.start()) else "the "
    return f"{the}{ordinal(int(match.group('d')))} of {match.group('month')}{_year_tail(match)}"


def _dates(text: str) -> str:
    if _ANY_MONTH.search(text):  # first: the numeric dates below write month names
        text = _MONTH_DAY.sub(lambda m: f"{m.group('month')} {ordinal(int(m.group('d')))}{_year_tail(m)}"
                              if 1 <= int(m.group("d")) <= 31 else m.group(), text)
        text = _DAY_MONTH.sub(_day_month, text)
        text = _MONTH_YEAR.sub(lambda m: f"{m.group('month')}{m.group('comma')} {year(int(m.group('y')))}", text)
    if "-" in text:
        text = _ISO_DATE.sub(lambda m: _date(int(m.group("y")), int(m.group("mo")), int(m.group("d")), m.group()), text)
    if "/" in text:
        text = _SLASH_DATE.sub(_slash_date, text)
    return text


# -- 7. times and ratios ----------------------------------------------------------------------
_UNTIL = r"(?P<until>\s?[-\u2013]\s?(?=\d))?"
"""A dash from a time to the next number: "9:00-17:00", "10am-2pm" read "to"."""
_CLOCK = re.compile(r"(?<![\w:.,])(?P<h>\d{1,4}):(?P<m>\d{1,4})"
                    r"(?:\s?(?P<ampm>(?i:[ap]\.?m\.?))(?!\w)|(?![\w:]|[.,]\d))" + _UNTIL)
_HOUR_AMPM = re.compile(r"(?<![\w:.,])(?:(?P<from>1[0-2]|0?[1-9])\s?[-\u2013]\s?)?(?P<h>1[0-2]|0?[1-9])\s?"
                        r"(?P<ampm>(?i:[ap]\.?m\.?))(?!\w)" + _UNTIL)
_AMPM_HINT = re.compile(r"\d\s?[AaPp]\.?[Mm]")
_RATIO_CONTEXT = re.compile(r"\b(?:ratio|aspect|odds|scale|mix|mixture|proportion)\b", re.IGNORECASE)


def _ampm(match: re.Match[str]) -> str:
    """"a.m"/"p.m" (espeak-ng reads "a m" as the article "uh em"); the full stop is kept where it
    ends the sentence."""
    suffix, until = match.group("ampm"), " to " if match.group("until") else ""
    return (f" {suffix[0].lower()}.m" + _sentence_stop(match) if suffix else "") + until


def _clock(match: re.Match[str]) -> str:
    hours, minutes = match.group("h"), match.group("m")
    text, start, end = match.string, match.start(), match.end()
    window = text[max(0, start - 40):min(len(text), end + 40)]
    is_time = (len(hours) <= 2 and len(minutes) == 2 and int(hours) <= 24 and int(minutes) <= 59
               and (match.group("ampm") or not _RATIO_CONTEXT.search(window)))
    if not is_time:
        return f"{number_words(hours)} to {number_words(minutes)}" + (" to " if match.group("until") else "")
    hour, minute = int(hours), int(minutes)
    words = cardinal(hour)
    if minute == 0:
        if not match.group("ampm"):
            words += " o'clock" if hour <= 12 else " hundred"
    elif minute < 10:
        words += f" oh {cardinal(minute)}"
    else:
        words += f" {cardinal(minute)}"
    return words + _ampm(match)


def _times(text: str) -> str:
    if ":" in text:
        text = _CLOCK.sub(_clock, text)
    if not _AMPM_HINT.search(text):
        return text
    return _HOUR_AMPM.sub(_hour_ampm, text)


def _hour_ampm(match: re.Match[str]) -> str:
    """``7 pm`` -> "seven p.m"; ``9-5pm`` -> "nine to five p.m"."""
    start = f"{cardinal(int(match.group('from')))} to " if match.group("from") else ""
    return start + cardinal(int(match.group("h"))) + _ampm(match)


# -- 8. decades -------------------------------------------------------------------------------
_DECADE_FULL = re.compile(r"\b(?P<y>1[1-9]\d0|20\d0)['\u2019]?s\b")
_DECADE_APOSTROPHE = re.compile(r"(?<![\w'\u2019])['\u2019](?P<d>[1-9]0)['\u2019]?s\b")
_DECADE_SHORT = re.compile(r"(?<![\w.'\u2019])(?P<d>[1-9]0)['\u2019]?s\b")
_DECADE_CUE = re.compile(r"\b(?i:the|her|his|their|my|your|our|its|early|late|mid)(?:\s+|-)\Z")


_DECADE_HINT = re.compile(r"0['\u2019]?s")


def _decades(text: str) -> str:
    if not _DECADE_HINT.search(text):
        return text
    text = _DECADE_FULL.sub(lambda m: _plural(year(int(m.group("y")))), text)
    text = _DECADE_APOSTROPHE.sub(lambda m: _plural(cardinal(int(m.group("d")))), text)
    return _DECADE_SHORT.sub(_decade_short, text)


def _decade_short(match: re.Match[str]) -> str:
    """``the 80s``, ``her 30s``, ``the mid-80s`` are decades; ``a timeout of 30s`` is seconds."""
    if not _DECADE_CUE.search(match.string[max(0, match.start() - 8):match.start()]):
        return match.group()
    return _plural(cardinal(int(match.group("d"))))


# -- 9. Roman numerals ------------------------------------------------------------------------
_ROMAN = re.compile(r"(?<![\w'\u2019.-])(?P<r>[IVXLCDM]+)\b(?![.'\u2019-]\w)")
_ROMAN_FORM = re.compile(r"M{0,3}(?:CM|CD|D?C{0,3})(?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,3})")
_ROMAN_VALUES = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
_AFTER_PUNCTUATION = re.compile(r"\s*(?:[.,;:!?)]|\Z)")


def roman_value(token: str) -> int | None:
    """The value of a well-formed Roman numeral (1-3999), else None ("IIII", "MIX" is 1009)."""
    if not token or not _ROMAN_FORM.fullmatch(token):
        return None
    total = 0
    for index, letter in enumerate(token):
        value = _ROMAN_VALUES[letter]
        total += -value if index + 1 < len(token) and _ROMAN_VALUES[token[index + 1]] > value else value
    return total


def _roman(match: re.Match[str]) -> str:
    """The rule, in order: after a title word (``Chapter``, ``Part``, ``War``, ``Bowl``... any
    case) any numeral is a cardinal ("Chapter four"); after a monarch's or pope's name, or a
    name after a royal title, it is "the" and an ordinal ("Henry the Eighth"; a lone "I" only
    with the title or before punctuation: "Queen Elizabeth I", "Elizabeth I."); after another
    capitalised word, numerals of I, V and X of two letters or more are cardinals ("Apollo
    eleven"); other such I/V/X letters are spelled out ("the I V drip", never espeak-ng's
    "roman four"). Anything else (I, CD, MIX, DIV, XL) is left as written."""
    token = match.group("r")
    value = roman_value(token)
    if value is None:
        return token
    text = match.string
    previous, before = _words_before(text, match.start())
    bare = previous.rstrip(".:")
    if bare.lower() in ROMAN_TITLE_WORDS and previous[-1:] != ".":
        # a lone "I" after a lowercase title word is the pronoun ("in my class I learned")
        if token != "I" or bare[0].isupper() or _AFTER_PUNCTUATION.match(text, match.end()):
            return cardinal(value)
        return token
    if previous and previous == bare:
        royal = before in ROYAL_TITLES and _is_name(previous)
        if bare in REGNAL_NAMES or royal:
            if token != "I" or royal or _AFTER_PUNCTUATION.match(text, match.end()):
                return "the " + _capitalized(ordinal(value))
            return token
    only_ivx = set(token) <= {"I", "V", "X"}
    if not only_ivx or len(token) < 2:
        return token
    if (previous == bare and _is_name(previous)
            and not (before == "." and bare.lower() in ROMAN_STOPWORDS)):
        return cardinal(value)
    return " ".join(token)


# -- 10. hashtags -----------------------------------------------------------------------------
_SHARP = re.compile(r"\b(?P<note>[A-G])#(?![\w#])")
_HASHTAG = re.compile(r"(?<![\w&#])#(?P<tag>[A-Za-z_]\w*|\d+[A-Za-z_]\w*)")
_WORD_SPLIT = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])|_+")


def _hashtags(text: str) -> str:
    if "#" not in text:
        return text
    text = _SHARP.sub(lambda m: f"{m.group('note')} sharp", text)
    return _HASHTAG.sub(lambda m: "hashtag " + " ".join(_WORD_SPLIT.sub(" ", m.group("tag")).split()), text)


# -- 11. units --------------------------------------------------------------------------------
_UNIT_NAMES = "|".join(re.escape(u) for u in sorted([*UNITS, *COMPASS], key=len, reverse=True))
_PER_NAMES = "|".join(re.escape(u) for u in sorted(PER_UNITS, key=len, reverse=True))
_AMOUNT = rf"(?:\d+\s)?\d+/\d+|{_NUM}"
_UNIT = re.compile(rf"(?<![\w.])(?P<n>{_AMOUNT})(?P<space>\s?)(?P<u>{_UNIT_NAMES})"
                   rf"(?:/(?P<per>{_PER_NAMES}))?(?![\w/%°²³]|\.\w)")
_HYPHEN_AFTER_WORD = re.compile(r"(?<=[A-Za-z])-(?=\d)")


def _amount_value(amount: str) -> float:
    whole, _, fraction = amount.partition(" ")
    if "/" in (fraction or whole):
        numerator, denominator = (fraction or whole).split("/")
        return (float(whole) if fraction else 0.0) + float(numerator) / max(1.0, float(denominator))
    return float(amount.replace(",", ""))


def _unit(match: re.Match[str]) -> str:
    amount, name, per = match.group("n"), match.group("u"), match.group("per")
    if name in COMPASS:
        # between a house number and a street name: "10 W Main Street" -> "ten West Main Street"
        follows = _NOUN_AFTER.match(match.string, match.end())
        if follows and _is_name(follows.group("word")):
            return f"{amount} {COMPASS[name]}"
        if name not in UNITS:
            return match.group()
    if name in UNITS and name.isalpha() and len(name) == 1 and not match.group("space") and name.isupper():
        return match.group()  # "5V" rail names and the like stay
    one, many = UNITS[name]
    value = _amount_value(amount)
    singular = amount == "1" or ("/" in amount and value < 1) or _adjective(match)
    words = f"{amount} {one if singular else many}"
    return f"{words} per {PER_UNITS[per]}" if per else words


_INCHES = re.compile(rf"(?<=feet )(?P<n>{_NUM})\s?in\b")


def _units(text: str) -> str:
    """Units, then "in" as inches where it follows feet ("6 ft 2 in" -> "six feet two inches")."""
    text = _UNIT.sub(_unit, text)
    if "feet " in text:
        text = _INCHES.sub(lambda m: f"{m.group('n')} {'inch' if m.group('n') == '1' else 'inches'}", text)
    return text


# -- 12. ranges, scores and minus -------------------------------------------------------------
_RANGE = re.compile(rf"(?<![\w.,/-])(?P<a>{_NUM})(?P<dash>\s?[\u2013\u2014]\s?|-|\s-\s)(?P<b>{_NUM})(?![\d/]|[.,]\d|-\d)")
_PAGE_CUE = re.compile(r"\b(?:pages?|pp|items?|numbers?|rows?|lines?)\.?\s*\Z", re.IGNORECASE)


def _is_year_number(raw: str) -> bool:
    return len(raw) == 4 and raw.isdigit() and 1000 <= int(raw) <= 2099


def _range(match: re.Match[str]) -> str:
    """``A-B`` between numbers reads "A to B" (ranges and scores alike: ``pages 10-20``, ``won
    3-2``); a hyphen with spaces on both sides is a minus (``5 - 3 = 2``); two years (``1990-1995``,
    ``2019-20``) are read as years."""
    a, b, dash = match.group("a"), match.group("b"), match.group("dash")
    if dash == " - ":
        return f"{a} minus {b}"
    page = _PAGE_CUE.search(match.string[max(0, match.start() - 12):match.start()])
    if _is_year_number(a) and not page:
        if _is_year_number(b) and int(b) > int(a):
            return f"{year(int(a))} to {year(int(b))}"
        if len(b) == 2 and b.isdigit() and int(b) > int(a) % 100:
            return f"{year(int(a))} to {year(int(a) // 100 * 100 + int(b))}"
    return f"{a} to {b}"


# -- 13. fractions ----------------------------------------------------------------------------
_FRACTION = re.compile(r"(?<![\w./])(?:(?P<whole>\d+)\s+)?(?P<n>\d+)/(?P<d>\d+)(?![\w/]|\.\d)")
_DENOMINATORS = frozenset({2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 16, 20, 25, 32, 50, 64, 100, 1000})
"""Usual denominators: ``n/d`` with n < d and one of these is a fraction; ``24/7``, ``50/50``,
``9/11`` are read as their numbers ("twenty-four seven")."""


def _fraction_words(numerator: int, denominator: int, article: bool = False) -> str:
    if denominator == 2:
        name = "half" if numerator == 1 else "halves"
    elif denominator == 4:
        name = "quarter" if numerator == 1 else "quarters"
    else:
        name = ordinal(denominator).removeprefix("one ")  # "hundredth", not "one hundredth"
        name = name if numerator == 1 else name + "s"
    if numerator == 1:
        return f"{'a' if article else 'one'} {name}"
    return f"{cardinal(numerator)} {name}"


def _fraction(match: re.Match[str]) -> str:
    whole = match.group("whole")
    numerator, denominator = int(match.group("n")[-7:]), int(match.group("d")[-7:])
    if not (numerator < denominator and denominator in _DENOMINATORS and len(match.group("n")) < 7):
        return f"{whole + ' ' if whole else ''}{match.group('n')} {match.group('d')}"
    if whole:
        return f"{number_words(whole)} and {_fraction_words(numerator, denominator, article=True)}"
    return _fraction_words(numerator, denominator)


# -- 14. ordinals, percent, comparisons, numbers ----------------------------------------------
_ORDINAL = re.compile(r"\b(?P<n>\d+)(?:st|nd|rd|th)\b", re.IGNORECASE)
_PERCENT = re.compile(r"(\d) ?%")
"""``45%`` -> "45 percent"; the number pass then reads the number and its sign."""
_COMPARISON = re.compile(r"(?P<op><=|>=|!=|==|[<>≤≥≠])(?P<after>\s*)(?=[\w(\-+.$£€])")
_COMPARISON_WORDS = {"<": "is less than", ">": "is greater than", "<=": "is less than or equal to",
                     "≤": "is less than or equal to", ">=": "is greater than or equal to",
                     "≥": "is greater than or equal to", "!=": "is not equal to", "≠": "is not equal to",
                     "==": "equals"}


def _comparison(match: re.Match[str]) -> str:
    """``3 < 5``, ``x >= 10``, ``x<10``: a comparison sign with spaces on both sides or a digit
    next to it is read ("three is less than five"); ``b>fett`` is not (the sign is dropped)."""
    text, start, end = match.string, match.start(), match.end()
    operand = start - 1
    while operand >= 0 and text[operand] in " \t":
        operand -= 1
    if operand < 0 or not (text[operand].isalnum() or text[operand] in "_)%"):
        return match.group()  # no left operand: "->", "=>", a sign at the start
    spaced = operand < start - 1 and match.group("after")
    if not spaced and not (text[operand].isdigit() or text[end].isdigit() or text[end] == "-"):
        return match.group()
    return f" {_COMPARISON_WORDS[match.group('op')]} "


_DOTTED_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+){2,}(?![\w.]|\.\d)")
_MINUS = re.compile(r"-(?<![\w.-]-)(?=\.?\d)")
"""A minus sign: "-" before a number, not after a letter, digit or dot (the lookbehind comes
after the "-" so that the scan can jump from one "-" to the next)."""
_NUMBER = re.compile(rf"(?<![\w.])(?P<n>{_NUM}|\.\d+)"
                     rf"(?:\s?(?P<scale>{'|'.join(BARE_SCALES)})\b)?(?![a-z_\d]|[.,]\d)")
_YEAR_CUE = re.compile(
    rf"\b(?i:in|since|from|until|till|by|of|year|circa|ca\.|c\.|during|before|after|around|between|"
    rf"through|AD|A\.D\.|{_MONTH_NAMES})\s+(?:the\s+)?(?:(?i:early|late|mid|summer|spring|autumn|fall|winter)"
    r"(?:\s+|-))?\Z")
_YEAR_CHAIN = re.compile(r"(?<![\w.,])(?:1\d{3}|20\d{2}),?\s*(?:and|or|to|through|until|till|,|-|\u2013)\s*\Z")
_YEAR_AFTER = re.compile(r"\s?(?:BC|BCE|AD|CE|B\.C\.|A\.D\.)(?!\w)|\s+(?:was|is|saw|had|has|brought|marked|"
                         r"will|became|began|ended)\b")


def _year_context(text: str, start: int, end: int, links: int = 8) -> bool:
    """A four-digit number 1000-2099 is a year after a time word ("in", "since", "by", "year",
    a month...), before an era or a verb ("1066 AD", "1999 was"), or after "and"/"to"/a comma
    following such a year ("in 2008, 2009 and 2012", up to ``links`` back); elsewhere a count
    ("1234 points")."""
    window = text[max(0, start - 30):start]
    if _YEAR_CUE.search(window) or _YEAR_AFTER.match(text, end):
        return True
    chain = _YEAR_CHAIN.search(window) if links else None
    if chain is not None:
        begin = start - len(window) + chain.start()
        return _year_context(text, begin, begin + 4, links - 1)
    return False


def _number(match: re.Match[str]) -> str:
    raw, scale = match.group("n"), match.group("scale")
    text = match.string
    if _is_year_number(raw) and _year_context(text, match.start(), match.end()):
        words = year(int(raw))
    else:
        words = number_words(raw)
    if scale:
        words += " " + BARE_SCALES[scale]
    if match.end() < len(text) and text[match.end()].isupper():
        words += " "  # "5G" -> "five G"
    return words


def _dotted_number(match: re.Match[str]) -> str:
    """Versions read with "point" (2.0.1); four parts up to 255 are an IP address, with "dot"."""
    parts = match.group().split(".")
    joiner = " dot " if len(parts) == 4 and all(len(p) <= 3 and int(p) <= 255 for p in parts) else " point "
    return joiner.join(number_words(p) if not p.startswith("0") or p == "0" else digits(p) for p in parts)


_DIGIT = re.compile(r"\d")
_SYMBOLS = {"&": " and ", "@": " at ", "+": " plus ", "=": " equals ", "#": " number ",
            "±": " plus or minus ", "\u00d7": " times ", "÷": " divided by ", "<": " ", ">": " "}
_SYMBOL = re.compile("[" + re.escape("".join(_SYMBOLS)) + "]")
_ABOUT = re.compile(r"(?<!\S)~(?=\d)")
_SPACES = re.compile(r"[ \t]{2,}")
_SPACE_BEFORE_PUNCTUATION = re.compile(r" +(?=[.,;:!?])")


def _unspeakable(ch: str) -> bool:
    return unicodedata.category(ch) in ("So", "Sk", "Co", "Cn") or ch in "\u200d\ufe0f"


def _numbers(text: str, options: NormalizationOptions) -> str:
    """The passes after Roman numerals and hashtags that read digits, in their order."""
    dashes = "-" in text or "\u2013" in text or "\u2014" in text
    if dashes:
        text = _HYPHEN_AFTER_WORD.sub(" ", text)  # "COVID-19" -> "COVID 19", not "minus nineteen"
    if options.units:
        text = _units(text)
    if dashes:
        text = _RANGE.sub(_range, text)
    if "/" in text:
        text = _FRACTION.sub(_fraction, text)
    text = _ORDINAL.sub(lambda m: ordinal_words(m.group("n")), text)
    if "%" in text:
        text = _PERCENT.sub(r"\1 percent", text)
    return text


def normalize_english(text: str, options: NormalizationOptions = DEFAULT_OPTIONS) -> str:
    """Rewrite what espeak-ng would read literally or wrongly (see the module docstring).
    Every pattern is compiled once at import; each pass is one ``re.sub`` over the text, and
    passes whose trigger (a digit, ``%``, ``/``, a month name...) is absent are skipped."""
    if not options.enabled:
        return text
    out = _characters(text)
    if options.urls:
        out = _urls(out)
    if options.abbreviations:
        out = _abbreviations(out)
    has_digits = _DIGIT.search(out) is not None
    if has_digits:
        if options.phone_numbers:
            out = _phones(out)
        out = _decades(_times(_dates(_money_all(out))))
    if options.roman_numerals:
        out = _ROMAN.sub(_roman, out)
    out = _hashtags(out)
    if has_digits:
        out = _numbers(out, options)
    if any(sign in out for sign in "<>≤≥≠=!"):
        out = _COMPARISON.sub(_comparison, out)
    if has_digits:
        if "~" in out:
            out = _ABOUT.sub("about ", out)
        if "-" in out:
            out = _MINUS.sub("minus ", out)
        out = _NUMBER.sub(_number, _DOTTED_NUMBER.sub(_dotted_number, out))
    out = _SYMBOL.sub(lambda m: _SYMBOLS[m.group()], out)
    if not out.isascii():
        out = "".join(ch for ch in out if not _unspeakable(ch))
    out = _SPACE_BEFORE_PUNCTUATION.sub("", _SPACES.sub(" ", out))
    return out.strip()


# --- tags in plain text ---------------------------------------------------------------------
_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_DROPPED_ELEMENT = re.compile(rf"<({'|'.join(HTML_DROPPED_WITH_CONTENT)})\b[^>]*>.*?</\1\s*>",
                              re.DOTALL | re.IGNORECASE)
_TAG = re.compile(r"<(?P<close>/)?(?P<name>[A-Za-z][A-Za-z0-9-]*)"
                  r"(?P<attrs>(?:\s+[^\s<>=/\"']+(?:\s*=\s*(?:\"[^\"<>]*\"|'[^'<>]*'|[^\s<>\"']+))?)*)"
                  r"\s*(?P<self>/)?>")
_CLOSING_TAG = re.compile(r"</([A-Za-z][A-Za-z0-9-]*)\s*>")
_ENTITY = re.compile(r"&(?:[A-Za-z][A-Za-z0-9]{1,31}|#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6});")


def strip_tags(text: str) -> str:
    """HTML-like tags in plain text, by one rule. A tag is markup when it closes (``</b>``),
    closes itself (``<x/>``), has ``name=value`` attributes, or is an HTML element that is void
    (``<br>``) or closed later in the text (``<b>...</b>``). Markup is removed: inline elements
    (``<b>``, ``<a>``, ``<span>``...) with no space, block elements with a line break (a sentence
    break), ``<script>``/``<style>`` with their content, comments too. Any other ``<word>`` is
    text: the word is read, the brackets are not (``Press <Enter>``, ``a <div> element``). A ``<``
    that starts no tag (``3 < 5``) is left alone. Character entities (``&amp;``, ``&#39;``) are
    decoded."""
    if "<" in text:
        text = _DROPPED_ELEMENT.sub(" ", _COMMENT.sub(" ", text))
        closed = {name.lower() for name in _CLOSING_TAG.findall(text)}

        def tag(match: re.Match[str]) -> str:
            name = match.group("name").lower()
            known = name in HTML_INLINE or name in HTML_BLOCK
            attributes = "=" in match.group("attrs")
            if known and (match.group("close") or match.group("self") or attributes
                          or name in HTML_VOID or name in closed):
                return "" if name in HTML_INLINE else "\n"
            if match.group("close") or match.group("self") or attributes:
                return " "  # other markup: </foo>, <foo/>, <foo bar="1">
            return f" {match.group('name')}{match.group('attrs')} "

        text = _TAG.sub(tag, text)
    if "&" in text:
        text = _ENTITY.sub(lambda m: html.unescape(m.group()), text)
    return text


@dataclass(frozen=True)
class PreparedText:
    segments: list[Segment]
    warning: str | None = None
    """Set when letters the voice cannot read were skipped (sent as ``X-Tailor-Warning``)."""


def prepare_text(text: str, language: str, voice: str,
                 normalize: bool | NormalizationOptions = True) -> PreparedText:
    """A request's input to segments: SSML (if it starts with ``<speak``), tags in plain text,
    normalisation, the script policy and the speakable check (see the module docstring).

    ``normalize`` is the request's :class:`NormalizationOptions`, or a bool: ``True`` for the
    defaults, ``False`` for none (``TAILOR_NORMALIZE=off``)."""
    options = normalize if isinstance(normalize, NormalizationOptions) else (
        DEFAULT_OPTIONS if normalize else NO_NORMALIZATION)
    head = text.lstrip().lower()
    markup = head.startswith(("<speak", "<?xml", "<!doctype"))
    if markup:
        segments = parse_ssml(text)
    else:
        segments = [Segment(strip_tags(text) if options.enabled and options.strip_tags else text)]
    english = language.lower().startswith("en")
    result: list[Segment] = []
    skipped: dict[str, int] = {}
    for segment in segments:
        spoken = normalize_english(segment.text, options) if english else segment.text
        spoken, dropped = drop_unreadable_scripts(spoken, language)
        for script, count in dropped.items():
            skipped[script] = skipped.get(script, 0) + count
        spoken = re.sub(r"[ \t]{2,}", " ", spoken).strip()
        if has_speakable(spoken):
            result.append(Segment(spoken, segment.rate, segment.pause_after_s))
        elif segment.pause_after_s and result:
            last = result[-1]
            result[-1] = Segment(last.text, last.rate, min(MAX_BREAK_S, last.pause_after_s + segment.pause_after_s))
    scripts = ", ".join(f"{count} {script.title()}" for script, count in sorted(skipped.items()))
    if not result:
        if skipped:
            raise BadRequest(
                f"input has nothing voice {voice} (language {language}) can read: its letters are "
                f"{scripts}; send text in that language, or pick a voice for this script from "
                "GET /v1/audio/voices", param="input", code="unsupported_script")
        raise BadRequest("input has nothing to speak: no letters or digits once markup, "
                         "punctuation and symbols are set aside", param="input", code="empty_input")
    warning = (f"skipped letters voice {voice} (language {language}) cannot read: {scripts}"
               if skipped else None)
    return PreparedText(result, warning)
