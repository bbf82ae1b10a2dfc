"""Text front end before phonemisation: an SSML subset, English normalisation, script checks.

``prepare_text(text, language, normalize)`` turns a request's input into :class:`Segment` s
(text to speak, a speed factor, a pause after it). The rules, in order:

1. **SSML** when the input starts with ``<speak`` (or an XML declaration): ``<break time="500ms"|"1s" strength="...">``
   (a pause; up to 5 s), ``<prosody rate="slow|x-slow|medium|fast|x-fast|NN%">`` (speed of
   its text), ``<say-as interpret-as="characters|spell-out|cardinal|number|ordinal|digits|
   telephone|date|time">``, ``<sub alias="...">`` (the alias is spoken), ``<p>``/``<s>``
   (sentence breaks). Every other tag is dropped and only its text is kept, never read aloud.
   Malformed markup and DOCTYPE/ENTITY declarations are a 400. Plain input is never parsed as
   markup (``a < b`` stays text).
2. **Normalisation** (English voices, unless ``TAILOR_NORMALIZE=off``): currency (``$1,234.56``
   -> "one thousand two hundred thirty-four dollars and fifty-six cents"; also £, €, ¥),
   percentages, ordinals (``21st``), times (``3:30 pm``, ``14:05``), ISO and US dates
   (``2024-03-15``, ``3/15/2024``), years (``1999``), numbers with separators and decimals,
   negative numbers, units after a number (``5 km``, ``20°C``, ``3 GB``), common abbreviations
   (``Dr.``, ``Mr.``, ``e.g.``, ``etc.``, ``vs.``), ``&``/``@``/``+``/``#``; symbols and emoji
   are removed (espeak would read their Unicode names).
3. **Scripts**: letters the voice's language is not written in (e.g. Chinese for an English
   voice) are skipped, never read as "Chinese letter"; the response says so in an
   ``X-Tailor-Warning`` header (letters per script, the voice and its language). Input made
   only of such letters is a 400 (``unsupported_script``) naming the voice and its language.
   Languages not in the table accept every script.
4. Input with nothing speakable left (no letter or digit) is a 400.
"""

from __future__ import annotations

import re
import unicodedata
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from runtime.errors import BadRequest

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
    if allowed is None:
        return text, {}
    dropped: dict[str, int] = {}
    kept: list[str] = []
    for char in text:
        if char.isalpha() and (script := letter_script(char)) not in allowed:
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
        return " ".join(_DIGITS.get(ch, ch) for ch in text if ch.isalnum())
    if interpret in ("cardinal", "number"):
        return _numbers(text)
    if interpret == "ordinal":
        return re.sub(r"\d+", lambda m: _ordinal(int(m.group())), text)
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
_DIGITS = dict(zip("0123456789", ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"], strict=True))
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]
_CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
               "€": ("euro", "euros", "cent", "cents"), "¥": ("yen", "yen", "", "")}
_UNITS = {
    "km": ("kilometer", "kilometers"), "m": ("meter", "meters"), "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"), "kg": ("kilogram", "kilograms"), "g": ("gram", "grams"),
    "mg": ("milligram", "milligrams"), "lb": ("pound", "pounds"), "lbs": ("pound", "pounds"),
    "oz": ("ounce", "ounces"), "mi": ("mile", "miles"), "ft": ("foot", "feet"),
    "mph": ("mile per hour", "miles per hour"), "km/h": ("kilometer per hour", "kilometers per hour"),
    "kb": ("kilobyte", "kilobytes"), "mb": ("megabyte", "megabytes"), "gb": ("gigabyte", "gigabytes"),
    "tb": ("terabyte", "terabytes"), "hz": ("hertz", "hertz"), "khz": ("kilohertz", "kilohertz"),
    "mhz": ("megahertz", "megahertz"), "ghz": ("gigahertz", "gigahertz"), "ms": ("millisecond", "milliseconds"),
    "s": ("second", "seconds"), "min": ("minute", "minutes"), "h": ("hour", "hours"),
    "ml": ("milliliter", "milliliters"), "l": ("liter", "liters"), "kw": ("kilowatt", "kilowatts"),
    "w": ("watt", "watts"), "v": ("volt", "volts"), "°c": ("degree Celsius", "degrees Celsius"),
    "°f": ("degree Fahrenheit", "degrees Fahrenheit"), "°": ("degree", "degrees"),
}
_ABBREVIATIONS = {
    "dr.": "Doctor", "mr.": "Mister", "mrs.": "Missus", "ms.": "Miz", "prof.": "Professor",
    "jr.": "Junior", "sr.": "Senior", "st.": "Saint", "mt.": "Mount", "vs.": "versus",
    "etc.": "et cetera", "e.g.": "for example", "i.e.": "that is", "approx.": "approximately",
    "fig.": "figure", "dept.": "department", "est.": "established",
}
_SYMBOLS = {"&": " and ", "@": " at ", "+": " plus ", "=": " equals ", "#": " number "}

_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"


_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["-", "-", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_IRREGULAR_ORDINALS = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                       "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}


def _below_thousand(n: int) -> str:
    words = []
    if n >= 100:
        words.append(f"{_ONES[n // 100]} hundred")
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10] + (f"-{_ONES[n % 10]}" if n % 10 else ""))
    elif n or not words:
        words.append(_ONES[n])
    return " ".join(words)


def _words(value: int) -> str:
    """American English cardinal: 1234 -> "one thousand two hundred thirty-four"."""
    if value < 0:
        return "minus " + _words(-value)
    if value >= 10**15:
        return " ".join(_ONES[int(d)] for d in str(value))
    parts = []
    for scale, name in _SCALES:
        if value >= scale:
            parts.append(f"{_below_thousand(value // scale)} {name}")
            value %= scale
    if value or not parts:
        parts.append(_below_thousand(value))
    return " ".join(parts)


def _ordinal(value: int) -> str:
    """21 -> "twenty-first", 100 -> "one hundredth"."""
    words = _words(value)
    head, sep, last = words.rpartition(" ")
    stem, hyphen, unit = last.rpartition("-")
    if unit in _IRREGULAR_ORDINALS:
        unit = _IRREGULAR_ORDINALS[unit]
    elif unit.endswith("y"):
        unit = unit[:-1] + "ieth"
    else:
        unit += "th"
    return head + sep + stem + hyphen + unit


def _year(value: int) -> str:
    """1999 -> "nineteen ninety-nine", 1905 -> "nineteen oh five", 2005 -> "two thousand five"."""
    high, low = divmod(value, 100)
    if value % 1000 == 0 or 2000 <= value <= 2009:
        return _words(value)
    if low == 0:
        return f"{_words(high)} hundred"
    return f"{_words(high)} {'oh ' + _ONES[low] if low < 10 else _words(low)}"


def _plural(words: str) -> str:
    return words[:-1] + "ies" if words.endswith("y") else words + "s"


def _number_text(raw: str) -> str:
    clean = raw.replace(",", "")
    if "." in clean:
        whole, frac = clean.split(".", 1)
        return f"{_words(int(whole))} point {' '.join(_DIGITS[d] for d in frac)}"
    return _words(int(clean))


def _currency(match: re.Match[str]) -> str:
    symbol, amount, scale = match.group("sym"), match.group("amt"), match.group("scale")
    one, many, sub_one, sub_many = _CURRENCIES[symbol]
    clean = amount.replace(",", "")
    if scale:
        return f"{_number_text(amount)} {scale.lower()} {many}"
    whole, _, frac = clean.partition(".")
    units = int(whole)
    text = f"{_words(units)} {one if units == 1 else many}"
    if frac and sub_one:
        cents = int((frac + "0")[:2])
        if cents:
            text += f" and {_words(cents)} {sub_one if cents == 1 else sub_many}"
    return text


def _time(match: re.Match[str]) -> str:
    hour, minute, suffix = int(match.group("h")), int(match.group("m")), match.group("ampm")
    if hour > 23 or minute > 59:
        return match.group()
    words = _words(hour)
    if minute == 0:
        words += " o'clock" if suffix or hour <= 12 else " hundred"
    elif minute < 10:
        words += f" oh {_words(minute)}"
    else:
        words += f" {_words(minute)}"
    if suffix:
        words += " " + " ".join(suffix.replace(".", "").lower())
    return words


def _date(year: int, month: int, day: int, original: str) -> str:
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return original
    return f"{_MONTHS[month - 1]} {_ordinal(day)}, {_year(year)}"


def _numbers(text: str) -> str:
    def number(match: re.Match[str]) -> str:
        raw = match.group()
        negative = raw.startswith("-")
        body = raw.lstrip("-")
        clean = body.replace(",", "")
        if "." not in clean and "," not in body and len(clean) == 4 and 1100 <= int(clean) <= 2099 and not negative:
            return _year(int(clean))
        if "." not in clean and len(clean) > 15:
            return " ".join(_DIGITS[d] for d in clean)  # an id, not a quantity
        return ("minus " if negative else "") + _number_text(body)

    return re.sub(rf"(?<![\w.])-?(?:{_NUMBER})(?![\w])", number, text)


def normalize_english(text: str) -> str:
    """Rewrite what espeak would read literally (see the module docstring)."""
    out = text
    for abbreviation, expansion in _ABBREVIATIONS.items():
        out = re.sub(rf"(?<![\w.]){re.escape(abbreviation)}", expansion, out, flags=re.IGNORECASE)
    out = re.sub(r"(?<![\w.])no\.\s?(?=\d)", "number ", out, flags=re.IGNORECASE)
    out = re.sub(
        rf"(?P<sym>[$£€¥])\s?(?P<amt>{_NUMBER})(?:\s?(?P<scale>thousand|million|billion|trillion)\b)?",
        _currency, out, flags=re.IGNORECASE)
    out = re.sub(
        r"\b(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})\b",
        lambda m: _date(int(m.group("y")), int(m.group("mo")), int(m.group("d")), m.group()), out)
    out = re.sub(
        r"\b(?P<mo>\d{1,2})/(?P<d>\d{1,2})/(?P<y>\d{4})\b",
        lambda m: _date(int(m.group("y")), int(m.group("mo")), int(m.group("d")), m.group()), out)
    out = re.sub(r"(?<![\w.-])\d{3}-\d{3,4}(?:-\d{4})?(?![\w-])",  # phone numbers: digit by digit
                 lambda m: ", ".join(" ".join(_DIGITS[d] for d in g) for g in m.group().split("-")), out)
    out = re.sub(r"(?<![\w.])\d+(?:\.\d+){2,}(?![\w.])",  # versions and addresses: 2.0.1
                 lambda m: " point ".join(_words(int(p)) for p in m.group().split(".")), out)
    out = re.sub(r"\b(1[1-9]|20)(\d0)s\b",  # decades: the 1990s
                 lambda m: _plural(_year(int(m.group(1) + m.group(2)))), out)
    out = re.sub(r"\b(?P<h>\d{1,2}):(?P<m>\d{2})(?:\s?(?P<ampm>[ap]\.?m\.?))?(?![\w:])", _time, out,
                 flags=re.IGNORECASE)
    out = re.sub(rf"(?<![\w.])(?P<n>{_NUMBER})\s?%", lambda m: _number_text(m.group("n")) + " percent", out)
    out = re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: _ordinal(int(m.group(1))), out, flags=re.IGNORECASE)

    def unit(match: re.Match[str]) -> str:
        amount, name = match.group("n"), match.group("u").lower()
        one, many = _UNITS[name]
        return f"{amount} {one if amount in ('1', '1.0') else many}"

    unit_names = "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
    out = re.sub(rf"(?<![\w.])(?P<n>{_NUMBER})\s?(?P<u>{unit_names})(?![\w/])", unit, out, flags=re.IGNORECASE)
    out = _numbers(out)
    for symbol, word in _SYMBOLS.items():
        out = out.replace(symbol, word)
    out = "".join(ch for ch in out if unicodedata.category(ch) not in ("So", "Sk", "Co", "Cn")
                  and ch not in "\u200d\ufe0f")
    return re.sub(r"[ \t]{2,}", " ", out).strip()


@dataclass(frozen=True)
class PreparedText:
    segments: list[Segment]
    warning: str | None = None
    """Set when letters the voice cannot read were skipped (sent as ``X-Tailor-Warning``)."""


def prepare_text(text: str, language: str, voice: str, normalize: bool = True) -> PreparedText:
    """A request's input to segments: SSML (if it starts with ``<speak``), normalisation,
    the script policy and the speakable check (see the module docstring)."""
    head = text.lstrip().lower()
    markup = head.startswith(("<speak", "<?xml", "<!doctype"))
    segments = parse_ssml(text) if markup else [Segment(text)]
    english = language.lower().startswith("en")
    result: list[Segment] = []
    skipped: dict[str, int] = {}
    for segment in segments:
        spoken = normalize_english(segment.text) if normalize and english else segment.text
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
