"""A stand-in for IndexTTS2: the same adapter interface and engine server, no model.

Run exactly like the real engine, with ``--adapter standin``, so the serving path under test is
the real one minus the model. It speaks a deterministic, speech-like signal: one 60 ms
harmonic tone per letter or digit (vowel-like formants, a noise burst for consonants, pitch
from the voice's name), silence for spaces and punctuation, sentences apart by 200 ms of
silence as IndexTTS2 puts them. Its duration rule (:func:`expected_samples`):

    samples = 1323 x (characters of each stripped sentence, summed) + 4410 x (sentences - 1)

at 22,050 Hz, IndexTTS2's output rate. Knobs to exercise readiness and admission: a load time,
a synthesis time per character; and failures: fail the load with a reason, die while loading,
crash mid-stream on a marker in the text.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
import time
import zlib
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

from .adapter import Adapter, LoadFailed

SAMPLE_RATE_HZ = 22050
CHAR_SAMPLES = 1323
"""60 ms per character."""
PAUSE_SAMPLES = 4410
"""200 ms between sentences (IndexTTS2's default interval silence)."""
PIECE_SAMPLES = 8820
"""The longest chunk streamed (0.4 s), so a sentence streams as several chunks."""
CRASH_EXIT_CODE = 70
DIE_ON_LOAD_EXIT_CODE = 71

_SENTENCE = re.compile(r"[^.!?\u3002\uff01\uff1f]+[.!?\u3002\uff01\uff1f]*")  # also CJK full stops
_FORMANTS = ((730.0, 1090.0), (530.0, 1840.0), (270.0, 2290.0), (570.0, 840.0), (300.0, 870.0))
_VOWELS = "aeiou"
_EDGE = 220
"""10 ms fade in and out of every character, so tones join without clicks."""


def sentences(text: str) -> list[str]:
    """The text's sentences, stripped; punctuation-only text is one sentence."""
    found = [s.strip() for s in _SENTENCE.findall(text) if s.strip()]
    return found or [text.strip()]


def expected_samples(text: str) -> int:
    """The stand-in's duration rule, in samples at :data:`SAMPLE_RATE_HZ`."""
    parts = sentences(text)
    return CHAR_SAMPLES * sum(len(s) for s in parts) + PAUSE_SAMPLES * (len(parts) - 1)


def expected_duration_s(text: str) -> float:
    return expected_samples(text) / SAMPLE_RATE_HZ


def _pitch_hz(voice: str) -> float:
    return 95.0 + zlib.crc32(voice.encode("utf-8")) % 130


@functools.lru_cache(maxsize=4096)
def _character(low: str, step: int, pitch_hz: float) -> np.ndarray:
    """One character's sound (``low``: lower-cased; ``step``: its place in an 8-step intonation)."""
    if not low.isalnum():
        return np.zeros(CHAR_SAMPLES, dtype=np.float32)
    vowel = low in _VOWELS
    f1, f2 = _FORMANTS[_VOWELS.index(low)] if vowel else _FORMANTS[ord(low) % len(_FORMANTS)]
    f0 = pitch_hz * (1.0 + 0.04 * np.sin(2.0 * np.pi * step / 8.0))
    t = np.arange(CHAR_SAMPLES) / SAMPLE_RATE_HZ
    harmonics = np.arange(1, int(4000.0 // f0) + 1) * f0
    gains = 1.0 / (1.0 + ((harmonics - f1) / 120.0) ** 2) + 0.5 / (1.0 + ((harmonics - f2) / 180.0) ** 2)
    tone = (gains[:, None] * np.sin(2.0 * np.pi * harmonics[:, None] * t[None, :])).sum(axis=0)
    tone /= max(float(np.abs(tone).max()), 1e-9)
    level = 0.5 if vowel else 0.3
    sound = level * tone
    if not vowel:
        noise = np.random.default_rng(ord(low)).standard_normal(CHAR_SAMPLES // 3)
        sound[: noise.size] += 0.15 * noise
    envelope = np.ones(CHAR_SAMPLES)
    ramp = np.linspace(0.0, 1.0, _EDGE)
    envelope[:_EDGE] = ramp
    envelope[-_EDGE:] = ramp[::-1]
    out: np.ndarray = (sound * envelope).astype(np.float32)
    out.flags.writeable = False  # shared by the cache
    return out


def render(text: str, voice: str) -> Generator[np.ndarray, None, None]:
    """The utterance as the stand-in streams it: each sentence, made when it is reached, and the
    pauses between."""
    pitch = _pitch_hz(voice)
    for index, sentence in enumerate(sentences(text)):
        if index:
            yield np.zeros(PAUSE_SAMPLES, dtype=np.float32)
        yield np.concatenate([_character(ch.lower(), i % 8, pitch) for i, ch in enumerate(sentence)])


class StandInAdapter(Adapter):
    name = "standin"
    sample_rate_hz = SAMPLE_RATE_HZ
    languages = ("en", "zh")
    native_speed = False

    def __init__(self, *, device: str, load_delay_s: float, char_delay_s: float, fail_load: str | None,
                 die_on_load: bool, crash_on: str | None) -> None:
        self.device = device
        self.load_delay_s = load_delay_s
        self.char_delay_s = char_delay_s
        self.fail_load = fail_load
        self.die_on_load = die_on_load
        self.crash_on = crash_on

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--load-delay-s", type=float, default=0.0, help="seconds the load takes")
        parser.add_argument("--char-delay-s", type=float, default=0.0, help="synthesis seconds per character")
        parser.add_argument("--fail-load", metavar="REASON", help="fail the load with this reason")
        parser.add_argument("--die-on-load", action="store_true", help="exit 71 while loading (a crashing load)")
        parser.add_argument("--crash-on", metavar="MARKER",
                            help="exit 70 after the first chunk of any text containing MARKER")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> StandInAdapter:
        return cls(device=args.device, load_delay_s=args.load_delay_s, char_delay_s=args.char_delay_s,
                   fail_load=args.fail_load, die_on_load=args.die_on_load, crash_on=args.crash_on)

    def load(self) -> dict[str, Any]:
        time.sleep(self.load_delay_s)
        if self.die_on_load:
            print("stand-in: dying while loading (--die-on-load)", file=sys.stderr, flush=True)
            os._exit(DIE_ON_LOAD_EXIT_CODE)
        if self.fail_load is not None:
            raise LoadFailed(self.fail_load)
        return {"model": "stand-in (no weights)", "device": self.device, "char_delay_s": self.char_delay_s}

    def synthesize(self, text: str, voice: Path, language: str | None, speed: float) -> Generator[np.ndarray, None, None]:
        crash = self.crash_on is not None and self.crash_on in text
        for part in render(text, voice.stem):
            for start in range(0, part.size, PIECE_SAMPLES):
                piece = part[start:start + PIECE_SAMPLES]
                if np.any(piece):  # pauses cost nothing; spoken pieces cost their characters
                    time.sleep(self.char_delay_s * piece.size / CHAR_SAMPLES)
                yield piece
                if crash:
                    print("stand-in: crashing mid-stream on purpose (--crash-on)", file=sys.stderr, flush=True)
                    os._exit(CRASH_EXIT_CODE)
