"""A stand-in for the runtime's engine, for benchmarks/bench_server_overhead.py.

It returns silence of the length the real voice would produce for the phoneme ids
(``SAMPLES_PER_ID``, measured on en_US-joe-medium) after sleeping ``TAILOR_BENCH_ENGINE_DELAY_S``
per call with the GIL released, as a GPU kernel wait does. It takes the place of the torch
engine in the engine registry, so the rest of the server runs unchanged.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from runtime.engines.base import EngineOptions, SynthesisItem

SAMPLES_PER_ID = 560
"""Audio samples the real voice produces per phoneme id (22,050 Hz; measured over the bench text set)."""
DELAY_VARIABLE = "TAILOR_BENCH_ENGINE_DELAY_S"


class StandInEngine:
    name = "torch"

    def __init__(self, model_path: Path, sample_rate: int, options: EngineOptions) -> None:
        self.device = options.device
        self.sample_rate = sample_rate
        self.delay_s = float(os.environ.get(DELAY_VARIABLE, "0"))

    def synthesize(self, item: SynthesisItem) -> np.ndarray:
        return self.synthesize_batch([item])[0]

    def synthesize_batch(self, items: Sequence[SynthesisItem]) -> list[np.ndarray]:
        if self.delay_s:
            time.sleep(self.delay_s)
        return [np.zeros(len(item.phoneme_ids) * SAMPLES_PER_ID, dtype=np.float32) for item in items]

    def close(self) -> None:
        pass
