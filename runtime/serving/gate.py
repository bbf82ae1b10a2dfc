"""The requests in the server: who gets in (the lifecycle's check, the queue limit, then each
family's :class:`~runtime.serving.admission.WorkEstimator`), how many are in flight or still
arriving, and each admitted request's share of its family's backlog until it is released.

Apart from :mod:`runtime.serving.admission` (the estimator, which the planner imports too) because
this side needs the runtime's settings, metrics and text chunks.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from runtime.errors import InputTooLongForTimeout, Overloaded, QueueFull
from runtime.serving.admission import Decision, WorkEstimator
from runtime.serving.metrics import RuntimeMetrics
from runtime.settings import Settings
from runtime.text.frontend import TextChunk

RESERVED_SHARE = 0.95
"""Share of a request's normalised characters held by :meth:`AdmissionGate.reserve`."""


@dataclass
class SpeechJob:
    """An admitted request, ready for synthesis, with its share of the admission backlog."""

    voice: str
    chunks: tuple[TextChunk, ...]
    speed: float
    deadline: float
    """``time.monotonic()`` value after which the request times out."""
    backlog_chars: int
    """Characters of this request still counted in the admission backlog (0 once released)."""
    family: str = ""
    """The served family synthesizing it (empty: the primary)."""


class _Served(Protocol):
    """What the gate reads of a served family (``ServedFamily``)."""

    @property
    def name(self) -> str: ...

    @property
    def admission(self) -> WorkEstimator: ...


class AdmissionGate:
    """The requests in the server: who gets in (the lifecycle's check, the queue limit, then each
    family's :class:`WorkEstimator`), the count of those in flight and of those still arriving,
    and each admitted request's share of its family's backlog until it is released.

    ``families``: the served families by name, the first the primary (read at each call, so an
    estimator replaced later is the one used); ``check_accepting``: raises when the service is
    not accepting work (not ready, draining, over its memory soft limit)."""

    def __init__(self, settings: Settings, metrics: RuntimeMetrics, families: Mapping[str, _Served],
                 check_accepting: Callable[[], None]) -> None:
        self.settings = settings
        self.metrics = metrics
        self._families = families
        self._check_accepting = check_accepting
        self._in_flight = 0
        self._arriving = 0
        """Speech requests being phonemized, not admitted yet."""
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def arriving_count(self) -> int:
        """Speech requests being phonemized, not admitted yet (``/readyz`` ``arriving``)."""
        return self._arriving

    def companions_possible(self) -> bool:
        """Whether another request is in the server or on its way (the scheduler's batch window)."""
        return self._in_flight + self._arriving > 1

    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """Around a speech request's phonemization, up to :meth:`admit`: such a
        request is a companion-to-be, so a worker alone with another request still waits out the
        batch window for it. Counted on the event loop; the workers only read the count."""
        self._arriving += 1
        try:
            yield
        finally:
            self._arriving -= 1

    def _served(self, family: str) -> _Served:
        return self._families.get(family) or next(iter(self._families.values()))

    def admit(
        self, voice: str, chunks: Sequence[TextChunk], speed: float, started: float, reserved: int = 0,
        family: str = "",
    ) -> SpeechJob:
        """Admit a request to ``family`` (empty: the primary) (503 when not accepting, 429 when the
        queue is full, 503 ``overloaded`` when the admitted work would not let it finish in time,
        413 when it would not finish in time even on an idle server); the job must be given to
        :meth:`release` once it ends, however it ends. ``reserved``: characters :meth:`reserve` held
        for it, replaced by the real ones (released whatever the decision)."""
        served = self._served(family)
        characters = sum(len(c.text) for c in chunks)
        longest = max((len(c.text) for c in chunks), default=0)
        served.admission.done(reserved)
        self._check_accepting()
        capacity = self.settings.workers + self.settings.max_queue
        timeout = self.settings.request_timeout_s
        with self._lock:
            if self._in_flight >= capacity:
                drain = sum(f.admission.drain_seconds() for f in self._families.values())
                retry = max(1, math.ceil(drain / max(1, self._in_flight)))
                self.metrics.admission_rejections.labels("queue_full").inc()
                raise QueueFull(
                    f"server is busy: {self._in_flight} requests in flight, queue limit "
                    f"{self.settings.max_queue} (TAILOR_MAX_QUEUE); retry after {retry} s",
                    headers={"Retry-After": str(retry)},
                )
            decision = served.admission.try_admit(characters, longest, time.monotonic() - started)
            self._refuse_unless(served, decision, characters)
            self._in_flight += 1
            self.metrics.in_flight.set(self._in_flight)
        return SpeechJob(voice, tuple(chunks), speed, started + timeout, characters, served.name)

    def reserve(self, characters: int, started: float, family: str = "") -> int:
        """Before phonemizing (the costly step, one request at a time in espeak): refuse at once
        what admission would refuse, or hold the characters of the text to speak (``characters``,
        ``RESERVED_SHARE`` of them: chunking drops the spaces between sentences) in ``family``'s
        backlog, so a burst arriving together is sorted out before any of it is phonemized. Returns
        the characters held, to give to :meth:`admit` (or :meth:`unreserve` if it never gets there).
        The estimate spreads the input over every worker (longest chunk 0): it never refuses
        what :meth:`admit` would take with the real chunks."""
        self._check_accepting()
        served = self._served(family)
        held = int(characters * RESERVED_SHARE)
        with self._lock:
            decision = served.admission.try_admit(held, 0, time.monotonic() - started)
            self._refuse_unless(served, decision, characters)
        return held

    def unreserve(self, characters: int, family: str = "") -> None:
        self._served(family).admission.done(characters)

    def _refuse_unless(self, served: _Served, decision: Decision, characters: int) -> None:
        """Raise the refusal a decision calls for (413 or 503 ``overloaded``), counted by reason."""
        if decision.admitted:
            return
        admission = served.admission
        timeout = self.settings.request_timeout_s
        rate = admission.seconds_per_char
        which = "" if len(self._families) == 1 else f" of {served.name}"
        applied = f"admitted only when it fits {admission.headroom:g} x {timeout:g} s = {decision.budget_s:.0f} s"
        if decision.never_fits:
            self.metrics.admission_rejections.labels("too_long").inc()
            fits = min(admission.max_idle_chars(), self.settings.max_input_chars)
            raise InputTooLongForTimeout(
                f"input of {characters} characters needs about {decision.estimated_finish_s:.0f} s even "
                f"on an idle server (measured {rate:.4f} s/char per worker{which}, {self.settings.workers} "
                f"workers); {applied} (TAILOR_REQUEST_TIMEOUT_S={timeout:g}), which holds about "
                f"{fits} characters. Send shorter input (split it), or have the operator raise "
                f"TAILOR_REQUEST_TIMEOUT_S or lower TAILOR_MAX_INPUT_CHARS to {fits}.",
                param="input",
            )
        self.metrics.admission_rejections.labels("deadline").inc()
        raise Overloaded(
            f"server is overloaded: the work already admitted plus this input "
            f"({characters} characters) needs about {decision.estimated_finish_s:.0f} s "
            f"(measured {rate:.4f} s/char per worker{which}, {self.settings.workers} workers); "
            f"{applied} (TAILOR_REQUEST_TIMEOUT_S); retry after {decision.retry_after_s} s",
            headers={"Retry-After": str(decision.retry_after_s)},
        )

    def release(self, job: SpeechJob) -> None:
        self.take_off_backlog(job, job.backlog_chars)
        with self._idle:
            self._in_flight = max(0, self._in_flight - 1)
            self.metrics.in_flight.set(self._in_flight)
            self._idle.notify_all()

    def take_off_backlog(self, job: SpeechJob, characters: int) -> None:
        """``characters`` of ``job`` are synthesized (or given up): off its family's backlog."""
        done = min(characters, job.backlog_chars)
        self._served(job.family).admission.done(done)
        job.backlog_chars -= done

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until no request is in flight or ``timeout_s`` passed; True when idle."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._in_flight > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True
