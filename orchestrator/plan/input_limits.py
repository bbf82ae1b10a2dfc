"""The longest input and the request deadline, consistent with the machine's speed (issue 21).

The runtime admits a request only when its estimated work fits ``HEADROOM`` (0.8) x
``TAILOR_REQUEST_TIMEOUT_S`` (runtime/serving/admission.py), and it calibrates its speed at
start-up. A ``TAILOR_MAX_INPUT_CHARS`` that cannot finish within the deadline even on an idle
server would only turn into 413s (and a start-up warning). So the plan sizes the two together
from a speed the project measured, with the runtime's own formula (``WorkEstimator``):

* the timeout stays the runtime default (60 s, what OpenAI clients wait) unless the user sets it;
* the longest input is what fits that timeout on the plan's workers, at most the runtime default;
* when the user sets only the longest input, the timeout grows until that input fits;
* when the user sets both and they disagree, the plan warns (the runtime still refuses, by its
  own measured rate, what cannot finish).

Without a measured speed for the family and device, both stay the runtime's defaults and the
reason says so; the runtime's start-up calibration still reports ``effective_max_input_chars``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from runtime.families.catalog import DEFAULT_FAMILY
from runtime.serving.admission import HEADROOM, TYPICAL_CHUNK_CHARS, WorkEstimator


@dataclass(frozen=True)
class Speed:
    seconds_per_char: float
    """Seconds of one worker per input character (the rate admission uses)."""
    source: str
    """Where the figure was measured (benchmarks/RESULTS.md)."""


SPEEDS: dict[tuple[str, str], Speed] = {
    (DEFAULT_FAMILY, "cpu"): Speed(
        0.06, "upper end of the 0.03-0.06 the runtime calibrated per 1-thread onnx fp32 worker on a 2-vCPU VM: "
              "benchmarks/RESULTS.md, burst soak"),
    ("kokoro-82m", "cpu"): Speed(
        0.3, "int8 ONNX at 2.2 CPU-s per audio-s on an idle AVX2 core x ~0.065 audio-s per character = "
             "0.15 s/char, doubled for a shared machine (Kokoro costs ~10x Piper per audio second): "
             "benchmarks/RESULTS.md, Model families: Kokoro-82M on this CPU"),
    (DEFAULT_FAMILY, "cuda"): Speed(
        0.0011, "H200 through the server, p50 63 ms for a 58-character mean sentence at concurrency 1: "
                "benchmarks/RESULTS.md, GPU"),
}
"""Measured speeds by (model family, device). CPU: a second intra-op thread measured no faster per
worker on that VM (RESULTS.md, onnx vs torch threads), so more threads do not lower the figure. Families and devices not listed (and Jetson, whose
GPU and CPU were not measured) keep the runtime's default limits."""


def speed_for(family: str, device: str, jetson: bool) -> Speed | None:
    """The measured speed of ``family`` on ``device``, or None when the project has none."""
    return None if jetson else SPEEDS.get((family, device))


def chars_that_fit(speed: Speed, workers: int, timeout_s: float) -> int:
    """The longest input that finishes within ``HEADROOM x timeout_s`` on an idle server."""
    return WorkEstimator(workers, timeout_s, initial=speed.seconds_per_char).max_idle_chars()


def timeout_for(speed: Speed, workers: int, chars: int) -> float:
    """The shortest whole-second timeout whose admission budget fits ``chars`` on an idle server."""
    alone = WorkEstimator(workers, 1.0, initial=speed.seconds_per_char).idle_seconds(
        chars, min(chars, TYPICAL_CHUNK_CHARS))
    return float(math.ceil(alone / HEADROOM))


def round_down(chars: int) -> int:
    """``chars`` rounded down to a readable step (50 above 100 characters)."""
    return chars if chars < 100 else chars - chars % 50


@dataclass(frozen=True)
class InputLimits:
    max_input_chars: int
    max_input_reason: str
    timeout_s: float
    timeout_reason: str
    warning: str | None = None


def decide_limits(speed: Speed, workers: int, *, default_chars: int, default_timeout_s: float,
                  user_chars: int | None, user_timeout_s: float | None) -> InputLimits:
    """TAILOR_MAX_INPUT_CHARS and TAILOR_REQUEST_TIMEOUT_S for ``workers`` at ``speed`` (see the
    module doc); ``user_*`` are the user's own values (None when unset)."""
    rate = f"{speed.seconds_per_char:g} s/char per worker ({speed.source})"
    if user_chars is not None and user_timeout_s is None:
        needed = max(default_timeout_s, timeout_for(speed, workers, user_chars))
        why = (f"{user_chars} characters on {workers} worker(s) at {speed.seconds_per_char:g} s/char need "
               f"{needed:g} s / {HEADROOM:g} headroom" if needed > default_timeout_s else
               f"runtime default; {user_chars} characters fit it at {speed.seconds_per_char:g} s/char")
        return InputLimits(user_chars, "", needed, f"{why}: measured speed {rate}")
    timeout = default_timeout_s if user_timeout_s is None else user_timeout_s
    fits = chars_that_fit(speed, workers, timeout)
    if user_chars is not None:
        warning = None
        if user_chars > fits:
            warning = (f"TAILOR_MAX_INPUT_CHARS={user_chars} cannot finish within {HEADROOM:g} x "
                       f"TAILOR_REQUEST_TIMEOUT_S={timeout:g} s at the measured {speed.seconds_per_char:g} s/char "
                       f"per worker: only about {fits} characters do on {workers} worker(s); the runtime refuses "
                       f"longer inputs with 413 (raise the timeout to {timeout_for(speed, workers, user_chars):g} s, "
                       f"or lower the limit)")
        return InputLimits(user_chars, "", timeout, "", warning)
    chars = min(default_chars, round_down(fits))
    why = (f"about {fits} characters finish within {HEADROOM:g} x {timeout:g} s on {workers} worker(s) at "
           f"{rate}" + (f"; capped at the runtime default {default_chars}" if chars == default_chars else ""))
    return InputLimits(chars, why, timeout,
                       "" if user_timeout_s is not None else "runtime default (what OpenAI clients wait)")


__all__ = ["SPEEDS", "InputLimits", "Speed", "chars_that_fit", "decide_limits", "speed_for", "timeout_for"]
