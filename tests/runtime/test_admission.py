"""Admission that keeps its promise: the estimator's arithmetic, the load each sample is taken
under (the scheduler's tags), and calibration, without a model (fast). The server-level answers
(413, 503 wording, /readyz) are in test_endings.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from runtime.engines.base import TimedAudio
from runtime.serving.admission import (
    HEADROOM,
    TYPICAL_CHUNK_CHARS,
    WorkEstimator,
    weighted_quantile,
)
from runtime.serving.metrics import RuntimeMetrics
from runtime.serving.scheduler import Job, Scheduler
from runtime.text.frontend import TextChunk


def test_weighted_quantile_weighs_by_characters() -> None:
    assert weighted_quantile([], 0.9) is None
    assert weighted_quantile([(1.0, 10.0)], 0.9) == 1.0
    # 90 % of the characters ran at 0.02 s/char: the short, slow call does not set the quantile...
    assert weighted_quantile([(0.02, 90.0), (0.08, 5.0)], 0.9) == 0.02
    # ...but once more than 10 % of the characters were slow, it does.
    assert weighted_quantile([(0.02, 80.0), (0.08, 20.0)], 0.9) == 0.08


def test_idle_samples_of_the_wide_instance_do_not_make_the_estimate_optimistic() -> None:
    """The issue's diagnosis: idle samples from the 2-thread solo-wide instance (0.024-0.029 s/char)
    were divided by the 2 workers again, while under load a worker ran at 0.037-0.064 s/char."""
    estimator = WorkEstimator(workers=2, timeout_s=60.0)
    for rate in (0.024, 0.026, 0.029):
        estimator.observe(100, 100 * rate, "wide")
    assert estimator.seconds_per_char == estimator.initial  # wide samples never set the rate
    for rate in (0.037, 0.045, 0.050, 0.064):
        estimator.observe(100, 100 * rate, "loaded")
    assert estimator.seconds_per_char == pytest.approx(0.064)  # the upper quantile, not the mean
    assert estimator.rate("wide") == pytest.approx(0.029)
    # The burst: ~630 characters each. One is admitted (finish 28 s); the next would need
    # (1260 + 250) x 0.064 / 2 = 48.3 s > 0.8 x 60 s (the old estimate said 1260 x 0.026 / 2 = 16 s).
    assert estimator.try_admit(630, longest=250).admitted
    refused = estimator.try_admit(630, longest=250)
    assert not refused.admitted and not refused.never_fits
    assert refused.estimated_finish_s == pytest.approx((2 * 630 + 250) * 0.064 / 2)
    assert refused.retry_after_s == 1


def test_partial_load_samples_count_when_they_are_slower() -> None:
    estimator = WorkEstimator(workers=2, timeout_s=60.0)
    estimator.observe(100, 3.0, "loaded")
    estimator.observe(100, 1.0, "partial")
    assert estimator.seconds_per_char == pytest.approx(0.03)
    estimator.observe(100, 5.0, "partial")  # the host got busier: the estimate follows at once
    assert estimator.seconds_per_char == pytest.approx(0.05)
    with pytest.raises(ValueError, match="unknown sample kind"):
        estimator.observe(10, 1.0, "idle")


def test_decisions_and_retry_after() -> None:
    estimator = WorkEstimator(workers=2, timeout_s=10.0, initial=0.01)
    budget = 10.0 * HEADROOM
    assert estimator.budget_s == budget
    admitted = estimator.try_admit(1000, longest=200)  # 1000 x 0.01 / 2 + 200 x 0.01 / 2 = 6 s
    assert admitted.admitted and admitted.estimated_finish_s == pytest.approx(6.0)
    assert estimator.backlog_chars == 1000
    refused = estimator.try_admit(600, longest=200)  # (1600 x 0.01 + 200 x 0.01) / 2 = 9 s > 8 s
    assert not refused.admitted and not refused.never_fits
    assert refused.retry_after_s == 1 and refused.budget_s == budget
    estimator.done(1000)
    assert estimator.backlog_chars == 0 and estimator.try_admit(600, longest=200).admitted
    # Time already spent (reading, phonemizing) counts against the budget.
    assert not estimator.try_admit(10, longest=10, elapsed_s=7.9).admitted


def test_input_that_cannot_finish_even_idle_is_refused_up_front() -> None:
    estimator = WorkEstimator(workers=2, timeout_s=10.0, initial=0.01)
    too_long = estimator.try_admit(2000, longest=250)  # 2000 x 0.005 + 250 x 0.005 = 11.25 s > 8 s
    assert too_long.never_fits and not too_long.admitted and estimator.backlog_chars == 0
    fits = estimator.max_idle_chars()
    assert estimator.try_admit(fits, longest=TYPICAL_CHUNK_CHARS).admitted
    estimator.done(fits)
    assert estimator.try_admit(fits + 20, longest=TYPICAL_CHUNK_CHARS).never_fits
    # One worker: every character runs on it.
    solo = WorkEstimator(workers=1, timeout_s=10.0, initial=0.01)
    assert solo.max_idle_chars() == 800
    assert solo.try_admit(800).admitted and solo.try_admit(801).never_fits


def test_status_reports_the_calibrated_figures() -> None:
    estimator = WorkEstimator(workers=2, timeout_s=60.0)
    estimator.observe(50, 2.0, "loaded")
    estimator.observe(50, 1.0, "wide")
    status = estimator.status()
    assert status["seconds_per_char"] == 0.04 and status["seconds_per_char_solo_wide"] == 0.02
    assert status["samples"] == {"loaded": 1, "partial": 0, "wide": 1}
    assert status["budget_s"] == 48.0 and status["effective_max_input_chars"] == estimator.max_idle_chars()


class _TimedChain:
    """Stands in for the engine chain: each call takes a fixed time, as an engine would; records
    which instance ran each text."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ran_on: dict[str, str] = {}

    def synthesize(self, worker: int, voice: str, chunks: Sequence[TextChunk], speeds: Sequence[float],
                   start_at: int = 0, wide: bool = False) -> list[np.ndarray]:
        time.sleep(self.seconds)
        for chunk in chunks:
            self.ran_on[chunk.text] = "wide" if wide else f"worker {worker}"
        return [np.zeros(10, dtype=np.float32) for _ in chunks]

    def synthesize_timed(self, worker: int, voice: str, chunk: TextChunk, speed: float) -> TimedAudio:
        """Like the real chain: always the worker's own instance."""
        time.sleep(self.seconds)
        self.ran_on[chunk.text] = f"worker {worker}"
        return TimedAudio(np.zeros(10, dtype=np.float32), np.full(len(chunk.phoneme_ids), 1, dtype=np.int64))


def _scheduler(workers: int, samples: list[tuple[int, float, str]], solo_wide: bool = False) -> Scheduler:
    lock = threading.Lock()

    def record(characters: int, seconds: float, kind: str) -> None:
        with lock:
            samples.append((characters, seconds, kind))

    return Scheduler(_TimedChain(0.05), workers=workers, batching=False, batch_window_ms=0, max_batch_size=1,  # type: ignore[arg-type]
                     metrics=RuntimeMetrics(rss_bytes=lambda: 0.0), solo_wide=solo_wide, on_engine_call=record)


def test_scheduler_tags_each_engine_call_with_its_load() -> None:
    samples: list[tuple[int, float, str]] = []
    scheduler = _scheduler(2, samples)
    chunk = TextChunk("Twenty characters ok", (1, 2, 3))
    assert scheduler.calibrate("v", chunk) == [(20, pytest.approx(0.05, abs=0.5), "loaded")] * 2
    assert [s[2] for s in samples] == ["loaded", "loaded"]
    samples.clear()
    scheduler.start()
    try:
        scheduler.submit(Job("v", chunk, 1.0)).result(5)  # alone: the other worker idles
        assert [s[2] for s in samples] == ["partial"]
        futures = [scheduler.submit(Job("v", chunk, 1.0)) for _ in range(6)]  # both workers busy
        for future in futures:
            future.result(5)
        assert [s[2] for s in samples[1:]].count("loaded") >= 4
        assert all(s[0] == 20 and s[1] >= 0.04 for s in samples)
    finally:
        scheduler.stop()


def test_solo_wide_calls_are_tagged_wide() -> None:
    samples: list[tuple[int, float, str]] = []
    scheduler = _scheduler(2, samples, solo_wide=True)
    scheduler.start()
    try:
        scheduler.submit(Job("v", TextChunk("Alone", (1,)), 1.0)).result(5)
    finally:
        scheduler.stop()
    assert samples == [(5, pytest.approx(0.05, abs=0.5), "wide")]


def test_each_sample_is_tagged_with_the_instance_that_ran_it() -> None:
    """A lone request's first sentence holds the wide instance with its next ones queued (Job.lead),
    the rest run on the one-thread workers; a lone timed sentence (word timestamps) runs on its
    worker's own instance. Each calibration sample says wide exactly when the wide instance ran it."""
    samples: list[tuple[int, float, str]] = []
    lock = threading.Lock()

    def record(characters: int, seconds: float, kind: str) -> None:
        with lock:
            samples.append((characters, seconds, kind))

    chain = _TimedChain(0.05)
    scheduler = Scheduler(chain, workers=2, batching=False, batch_window_ms=0, max_batch_size=1,  # type: ignore[arg-type]
                          metrics=RuntimeMetrics(rss_bytes=lambda: 0.0), solo_wide=True,
                          companions_possible=lambda: False, on_engine_call=record)
    texts = ["a", "bb", "ccc", "dddd"]  # told apart by their length in the samples
    futures = [scheduler.submit(Job("v", TextChunk(text, (1, 2)), 1.0, lead=n == 0)) for n, text in enumerate(texts)]
    scheduler.start()
    try:
        for future in futures:
            future.result(5)
        timed = Job("v", TextChunk("eeeee", (1, 2, 3)), 1.0, lead=True, timed=True)
        scheduler.submit(timed).result(5)
    finally:
        scheduler.stop()
    assert chain.ran_on["a"] == "wide" and chain.ran_on["eeeee"].startswith("worker")
    assert timed.id_samples is not None and timed.id_samples.tolist() == [1, 1, 1]
    kinds = {characters: kind for characters, _, kind in samples}
    assert len(samples) == 5
    for text, instance in chain.ran_on.items():
        assert (kinds[len(text)] == "wide") == (instance == "wide"), (text, instance, kinds)
    assert scheduler.wide_runs == sum(instance == "wide" for instance in chain.ran_on.values())
