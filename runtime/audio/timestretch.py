"""Speed changes that are linear in duration: WSOLA time-stretching, pitch kept.

A VITS voice's ``length_scale`` is not linear in the resulting duration (each phoneme lasts a
whole number of frames, at least one, and pauses do not scale): measured on the bundled voice,
speed 2 gives 1.58x, speed 4 gives 2.0x, speed 0.25 gives 3.3x slower. The API's ``speed``
promises ``duration / speed``, so the engine synthesizes at the voice's own pace and the audio
is stretched here by waveform-similarity overlap-add (WSOLA): Hann windows at 50 % overlap,
each next window taken from around its nominal input position where it best continues the
previous one (cross-correlation within +-``TOLERANCE`` samples). The output has exactly
``round(len / speed)`` samples.
"""

from __future__ import annotations

import numpy as np

WINDOW = 512
"""About 23 ms at 22.05 kHz: longer than a pitch period, shorter than a phoneme."""
TOLERANCE = 160


def time_stretch(samples: np.ndarray, speed: float) -> np.ndarray:
    """``samples`` played ``speed`` times as fast (0.25-4), same pitch, ``round(n / speed)`` long."""
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    if abs(speed - 1.0) < 1e-6 or samples.size == 0:
        return samples
    target = max(1, round(samples.size / speed))
    if samples.size < 2 * WINDOW:  # too short to stretch: plain resampling of the timeline
        positions = np.linspace(0, samples.size - 1, target)
        short: np.ndarray = np.interp(positions, np.arange(samples.size), samples).astype(np.float32)
        return short
    hop = WINDOW // 2
    analysis_hop = hop * speed
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WINDOW) / WINDOW)).astype(np.float32)
    pad = TOLERANCE + WINDOW
    x = np.concatenate([np.zeros(pad, np.float32), samples, np.zeros(pad + 2 * WINDOW, np.float32)])
    frames = target // hop + 2
    out = np.zeros(frames * hop + WINDOW, dtype=np.float32)
    previous = pad - hop  # input position of the previous window (in padded coordinates)
    for k in range(frames):
        nominal = pad - hop + round(k * analysis_hop)  # frame 0 is centred on the first sample
        if k == 0:
            chosen = nominal
        else:
            template = x[previous + hop : previous + hop + WINDOW]
            lo = max(0, nominal - TOLERANCE)
            region = x[lo : nominal + TOLERANCE + WINDOW]
            if region.size < WINDOW or not np.any(template):
                chosen = nominal
            else:
                scores = np.correlate(region, template, mode="valid")
                chosen = lo + int(np.argmax(scores))
        out[k * hop : k * hop + WINDOW] += window * x[chosen : chosen + WINDOW]
        previous = chosen
    stretched: np.ndarray = out[hop : hop + target]  # the first half window only fades in
    if stretched.size < target:
        stretched = np.concatenate([stretched, np.zeros(target - stretched.size, np.float32)])
    return stretched
