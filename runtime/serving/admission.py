"""Admission by estimated work: refuse at once what cannot finish in time.

Every admitted speech request adds its characters to a backlog; each synthesized sentence
takes its characters off again. The cost of a character is measured as the server runs
(seconds of one worker's engine call per input character, an exponentially weighted mean
seeded with ``INITIAL_SECONDS_PER_CHAR``), so the estimated time to drain the backlog is
``backlog_chars * seconds_per_char / workers``.

A new request is refused with 503 ``overloaded`` when the backlog is not empty and the backlog
plus the request would not drain within ``TAILOR_REQUEST_TIMEOUT_S``; its ``Retry-After`` is the
time until enough of the backlog has drained for it to fit. On an idle server a request is
always admitted. Workers take sentences earliest deadline first (the scheduler's queue is ordered
by deadline), so admitted requests finish in arrival order instead of sharing the workers evenly
until all of them are late.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

INITIAL_SECONDS_PER_CHAR = 0.01
"""A deliberately pessimistic start (a 1-thread CPU worker measures ~0.003-0.006 s/char); the
first synthesized sentences replace it."""
SMOOTHING = 0.2
HEADROOM = 0.8
"""Admit only work estimated to drain within this share of the deadline."""


@dataclass(frozen=True)
class Decision:
    admitted: bool
    estimated_finish_s: float
    retry_after_s: int = 0


class WorkEstimator:
    def __init__(self, workers: int, timeout_s: float, initial: float = INITIAL_SECONDS_PER_CHAR) -> None:
        self.workers = max(1, workers)
        self.timeout_s = timeout_s
        self._seconds_per_char = initial
        self._measured = False
        self._backlog_chars = 0
        self._lock = threading.Lock()

    @property
    def seconds_per_char(self) -> float:
        return self._seconds_per_char

    @property
    def backlog_chars(self) -> int:
        return self._backlog_chars

    def drain_seconds(self) -> float:
        """Estimated seconds until the admitted work is done."""
        with self._lock:
            return self._backlog_chars * self._seconds_per_char / self.workers

    def observe(self, characters: int, seconds: float) -> None:
        """One engine call: ``seconds`` of one worker for ``characters`` input characters."""
        if characters <= 0 or seconds <= 0:
            return
        sample = seconds / characters
        with self._lock:
            if not self._measured:
                self._seconds_per_char, self._measured = sample, True
            else:
                self._seconds_per_char += SMOOTHING * (sample - self._seconds_per_char)

    def try_admit(self, characters: int) -> Decision:
        """Admit (adding to the backlog) or refuse with the seconds until it would fit."""
        with self._lock:
            per_worker = self._seconds_per_char / self.workers
            finish = (self._backlog_chars + characters) * per_worker
            budget = self.timeout_s * HEADROOM
            if self._backlog_chars > 0 and finish > budget:
                return Decision(False, finish, max(1, math.ceil(finish - budget)))
            self._backlog_chars += characters
            return Decision(True, finish)

    def done(self, characters: int) -> None:
        """Characters synthesized, or given up (request finished, cut or cancelled)."""
        with self._lock:
            self._backlog_chars = max(0, self._backlog_chars - characters)
