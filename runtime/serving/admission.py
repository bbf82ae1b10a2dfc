"""Admission by estimated work: admit only what will finish, refuse the rest at once.

**What is measured.** Every engine call reports its seconds and input characters, tagged with
the load it ran under (see ``Scheduler``):

* ``loaded``: a worker's own instance while every worker was busy: the rate the server drains a
  backlog at, the one admission uses;
* ``partial``: a worker's own instance while some workers were idle (less contention, so usually
  faster; it still counts when it is slower, e.g. when the host got busier);
* ``wide``: the solo-wide instance (all workers' threads, ``TAILOR_SOLO_WIDE``), alone in the
  server. Reported, never used for admission: a backlog is drained by the narrow instances, and
  mixing the two made the old estimate about twice too optimistic (idle samples from the
  2-thread wide instance, then divided by the worker count again).

Before the server reports ready it *calibrates* (``SpeechService.start``): every worker
synthesizes the same sentence at once, which gives ``loaded`` samples of this very configuration
(instance, threads, host) under the load it will run in.

**The estimate** is conservative: the ``QUANTILE`` (0.9) of recent samples (the last ``WINDOW``
per kind), weighted by characters so that short sentences, whose fixed cost per call makes their
per-character rate high, do not dominate. With ``r`` that rate (seconds of one worker per
character), ``W`` workers, a backlog of ``B`` admitted characters not yet synthesized and a new
request of ``C`` characters whose longest chunk has ``L``::

    finish = elapsed + (B + C) * r / W + L * r * (1 - 1/W)

(the last chunk runs on one worker while the others may idle). ``elapsed`` is the time the
request already spent (reading, phonemizing) since it arrived.

**Decisions** against the budget ``HEADROOM x TAILOR_REQUEST_TIMEOUT_S``:

* fits: admitted, its characters join the backlog;
* does not fit now, but would on an idle server: 503 ``overloaded`` with ``Retry-After`` (the
  seconds until enough of the backlog has drained);
* would not fit even on an idle server: refused up front (413 ``input_too_long_for_timeout``),
  naming the measured rate and the settings to change; :meth:`WorkEstimator.max_idle_chars` is the
  longest input that fits, reported in ``/readyz`` as ``effective_max_input_chars``.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

INITIAL_SECONDS_PER_CHAR = 0.01
"""The rate before any measurement (calibration replaces it before the server reports ready;
without ``TAILOR_PRELOAD`` the first requests do)."""
HEADROOM = 0.8
"""Admit only work estimated to finish within this share of the deadline."""
QUANTILE = 0.9
"""The upper quantile of the per-character samples that admission uses."""
WINDOW = 64
"""Recent samples kept per kind."""
KINDS = ("loaded", "partial", "wide")
TYPICAL_CHUNK_CHARS = 250
"""The longest chunk assumed when the longest input that fits is computed (chunks are bounded by
300 phonemes, about 250 characters of English)."""


@dataclass(frozen=True)
class Decision:
    admitted: bool
    estimated_finish_s: float
    """Seconds from the request's arrival until it would be finished."""
    budget_s: float
    """``HEADROOM x timeout``: what the estimate was compared with."""
    retry_after_s: int = 0
    never_fits: bool = False
    """True when the request would not fit even on an idle server (refuse up front, 413)."""


def weighted_quantile(samples: Iterable[tuple[float, float]], q: float) -> float | None:
    """The ``q`` quantile of ``(value, weight)`` samples (the smallest value whose cumulative
    weight reaches ``q`` of the total); None without samples."""
    ordered = sorted((v, w) for v, w in samples if w > 0)
    total = sum(w for _, w in ordered)
    if total <= 0:
        return None
    reached = 0.0
    for value, weight in ordered:
        reached += weight
        if reached >= q * total - 1e-12:
            return value
    return ordered[-1][0]


class WorkEstimator:
    def __init__(self, workers: int, timeout_s: float, initial: float = INITIAL_SECONDS_PER_CHAR,
                 headroom: float = HEADROOM, quantile: float = QUANTILE) -> None:
        self.workers = max(1, workers)
        self.timeout_s = timeout_s
        self.headroom = headroom
        self.quantile = quantile
        self.initial = initial
        self._samples: dict[str, deque[tuple[float, float]]] = {k: deque(maxlen=WINDOW) for k in KINDS}
        self._rate = initial
        self._backlog_chars = 0
        self.calibrated = False
        self._lock = threading.Lock()

    # --- measurements -----------------------------------------------------------------------
    @property
    def budget_s(self) -> float:
        return self.timeout_s * self.headroom

    @property
    def seconds_per_char(self) -> float:
        """The conservative rate admission uses: seconds of one worker per character."""
        return self._rate

    @property
    def backlog_chars(self) -> int:
        return self._backlog_chars

    def rate(self, kind: str) -> float | None:
        """The ``QUANTILE`` of one kind's samples (None when it has none)."""
        with self._lock:
            return weighted_quantile(self._samples[kind], self.quantile)

    def sample_counts(self) -> dict[str, int]:
        with self._lock:
            return {k: len(v) for k, v in self._samples.items()}

    def observe(self, characters: int, seconds: float, kind: str = "loaded") -> None:
        """One engine call: ``seconds`` of one instance for ``characters`` input characters."""
        if characters <= 0 or seconds <= 0:
            return
        if kind not in self._samples:
            raise ValueError(f"unknown sample kind {kind!r}; one of {', '.join(KINDS)}")
        with self._lock:
            self._samples[kind].append((seconds / characters, float(characters)))
            self._rate = self._conservative_rate()

    def _conservative_rate(self) -> float:
        rates = [weighted_quantile(self._samples[k], self.quantile) for k in ("loaded", "partial")]
        known = [r for r in rates if r is not None]
        return max(known) if known else self.initial

    # --- estimates --------------------------------------------------------------------------
    def _finish(self, backlog: int, characters: int, longest: int, rate: float) -> float:
        longest = min(max(longest, 0), characters)
        return (backlog + characters) * rate / self.workers + longest * rate * (1 - 1 / self.workers)

    def drain_seconds(self) -> float:
        """Estimated seconds until the admitted work is done."""
        with self._lock:
            return self._backlog_chars * self._rate / self.workers

    def idle_seconds(self, characters: int, longest: int) -> float:
        """Estimated seconds for this input alone on an idle server."""
        with self._lock:
            return self._finish(0, characters, longest, self._rate)

    def max_idle_chars(self) -> int:
        """The longest input (characters) that fits the budget on an idle server, assuming its
        longest chunk is ``TYPICAL_CHUNK_CHARS``."""
        with self._lock:
            rate, workers = self._rate, self.workers
        budget = self.budget_s
        # c * r / W + min(c, L) * r * (1 - 1/W) <= budget
        alone = budget / rate  # c when c <= L: the whole input is one chunk on one worker
        if alone <= TYPICAL_CHUNK_CHARS:
            return int(alone)
        spread = (budget / rate - TYPICAL_CHUNK_CHARS * (1 - 1 / workers)) * workers
        return int(max(TYPICAL_CHUNK_CHARS, spread))

    def try_admit(self, characters: int, longest: int | None = None, elapsed_s: float = 0.0) -> Decision:
        """Admit (adding to the backlog) or refuse; see the module's docstring."""
        with self._lock:
            decision = self._decide(characters, characters if longest is None else longest, elapsed_s)
            if decision.admitted:
                self._backlog_chars += characters
            return decision

    def estimate(self, characters: int, longest: int, elapsed_s: float = 0.0) -> Decision:
        """The decision :meth:`try_admit` would take now, without admitting anything."""
        with self._lock:
            return self._decide(characters, longest, elapsed_s)

    def _decide(self, characters: int, longest: int, elapsed_s: float) -> Decision:
        rate, budget = self._rate, self.budget_s
        idle = elapsed_s + self._finish(0, characters, longest, rate)
        if idle > budget:
            return Decision(False, idle, budget, never_fits=True)
        finish = elapsed_s + self._finish(self._backlog_chars, characters, longest, rate)
        if finish > budget:
            return Decision(False, finish, budget, max(1, math.ceil(finish - budget)))
        return Decision(True, finish, budget)

    def done(self, characters: int) -> None:
        """Characters synthesized, or given up (request finished, cut or cancelled)."""
        with self._lock:
            self._backlog_chars = max(0, self._backlog_chars - characters)

    def status(self) -> dict[str, object]:
        """The calibrated figures, for ``/readyz``."""
        counts = self.sample_counts()
        wide = self.rate("wide")
        return {
            "seconds_per_char": round(self._rate, 5),
            "seconds_per_char_solo_wide": None if wide is None else round(wide, 5),
            "quantile": self.quantile,
            "samples": counts,
            "calibrated": self.calibrated,
            "workers": self.workers,
            "budget_s": round(self.budget_s, 3),
            "effective_max_input_chars": self.max_idle_chars(),
            "backlog_chars": self._backlog_chars,
        }
