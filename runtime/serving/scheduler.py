"""Synthesis workers and their job queue, with optional dynamic batching.

``TAILOR_WORKERS`` threads each own one engine instance per loaded chain entry, so engines
never see two callers at once. Jobs are single sentences (chunks); a request keeps only a
couple in flight, so concurrent requests interleave fairly. With batching on, a worker that
takes a job waits up to ``TAILOR_BATCH_WINDOW_MS`` for more jobs of the same voice (up to
``TAILOR_MAX_BATCH_SIZE``) and hands them to ``engine.synthesize_batch`` together; every
item keeps its own speed (``length_scale``). Jobs whose request is gone are dropped unrun.
With ``TAILOR_SOLO_WIDE``, a sentence that is the only work in the server runs on a wider
engine instance (all workers' threads), so a lone request is not limited to one worker's share.
A request alone in the server runs its first sentence there even with its next ones queued, and
while it does no one-thread worker starts the next beside it (that would split the cores between
the two and delay the first audio); once the first audio is out, its remaining sentences run side
by side on the one-thread workers (more audio per CPU second than one wide run; the playing audio
covers the time), the last one wide again. A second request arriving releases the workers at once.
"""

from __future__ import annotations

import bisect
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from runtime.engines.shapes import PHONEME_BUCKETS
from runtime.serving.engine_chain import EngineChain
from runtime.serving.metrics import RuntimeMetrics
from runtime.text.frontend import TextChunk

_LOG = logging.getLogger("tailor.runtime")
_T = TypeVar("_T")


@dataclass
class Job:
    voice: str
    chunk: TextChunk
    speed: float
    is_cancelled: Callable[[], bool] = lambda: False
    future: Future[np.ndarray] = field(default_factory=Future)
    priority: float = 0.0
    """Lower runs first (the request's deadline: earliest deadline first); ties keep FIFO."""
    timed: bool = False
    """Also get the model's samples per phoneme id (word timestamps): runs alone, never batched."""
    id_samples: np.ndarray | None = None
    """Set (for a timed job) before its future's result: see ``TimedAudio.id_samples``."""
    on_block: Callable[[np.ndarray], None] | None = None
    """Token-chunk streaming: called with each block of this sentence's audio as the engine makes it
    (the future still gets the whole sentence)."""
    lead: bool = False
    """The request's first sentence: its time to first audio rides on it (solo-wide, below)."""


LENGTH_BUCKETS: tuple[int, ...] = PHONEME_BUCKETS
"""Upper edges (phoneme ids) of the length buckets a batch is drawn from. A batch is padded to its
longest sentence (to the bucket's edge with ``TAILOR_SHAPE_BUCKETS``), so within one bucket at most
a third of a batch is padding (a half in the two smallest); sentences longer than the last edge
form their own bucket."""


def length_bucket(phonemes: int) -> int:
    """Index of the bucket ``phonemes`` falls in (``len(LENGTH_BUCKETS)`` past the last edge)."""
    return bisect.bisect_left(LENGTH_BUCKETS, phonemes)


def warmup_shapes(batching: bool, max_batch: int) -> list[tuple[int, int]]:
    """(batch size, phoneme ids) shapes to run before ready: every bucket's longest sentence at
    every power-of-two batch size up to ``max_batch`` (and ``max_batch`` itself), so the padded
    and batched paths meet their shapes before traffic does. ``[(1, 0)]`` without batching: one
    sentence as it is."""
    if not batching or max_batch <= 1:
        return [(1, 0)]
    sizes = sorted({1, max_batch, *(2**k for k in range(1, max_batch.bit_length()) if 2**k <= max_batch)})
    return [(size, edge) for edge in LENGTH_BUCKETS for size in sizes]


class JobQueue:
    def __init__(self) -> None:
        self._jobs: deque[Job] = deque()
        self._cond = threading.Condition()
        self._stopped = False

    def __len__(self) -> int:
        return len(self._jobs)

    def live(self) -> int:
        """Jobs waiting whose request still wants them (cancelled ones are dropped unrun)."""
        with self._cond:
            return sum(1 for j in self._jobs if not j.is_cancelled() and not j.future.cancelled())

    def put(self, job: Job) -> None:
        with self._cond:
            bisect.insort_right(self._jobs, job, key=lambda j: j.priority)
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def _pop_live(self) -> Job | None:
        while self._jobs:
            job = self._jobs.popleft()
            if job.is_cancelled() or not job.future.set_running_or_notify_cancel():
                continue
            return job
        return None

    def take(
        self, batching: bool, window_s: float, max_batch: int, companions_possible: Callable[[], bool] = lambda: True,
        hold: Callable[[], bool] = lambda: False, claim: Callable[[list[Job]], None] | None = None,
    ) -> list[Job] | None:
        """The next job (and, batching, companions of the same voice and length bucket, so padding
        stays small: see :data:`LENGTH_BUCKETS`; when the window closes short, jobs of the two
        neighbouring buckets top the batch up); None once stopped and empty.

        The window is not waited out when ``companions_possible()`` says no other request is in
        the server (admitted or still arriving): alone, a request's sentences are all queued
        already and the wait is pure latency.

        While ``hold()`` is true no job is taken (the caller waits for :meth:`wake`); ``claim``
        gets the batch before the queue's lock is released, so a decision made from the queue's
        state (e.g. which instance runs it) is atomic with the take. Both run under the lock."""
        with self._cond:
            first = None
            while first is None:
                if not hold():
                    first = self._pop_live()
                if first is None:
                    if self._stopped:
                        return None
                    self._cond.wait()
            batch = [first]
            if not batching or max_batch <= 1 or first.timed:
                if claim is not None:
                    claim(batch)
                return batch
            deadline = time.monotonic() + window_s
            bucket = length_bucket(len(first.chunk.phoneme_ids))
            while len(batch) < max_batch:
                self._gather(batch, first.voice, max_batch, {bucket})
                remaining = deadline - time.monotonic()
                if len(batch) >= max_batch or remaining <= 0 or self._stopped or not companions_possible():
                    break
                self._cond.wait(remaining)
            if len(batch) < max_batch:
                # The window closed short: top up from the neighbouring buckets rather than run
                # a small batch (padding stays within two bucket widths).
                self._gather(batch, first.voice, max_batch, {bucket - 1, bucket + 1})
            if claim is not None:
                claim(batch)
            return batch

    def wake(self, update: Callable[[], _T]) -> _T:
        """Run ``update`` under the queue's lock, then wake every waiting taker (a hold may be
        over); returns what ``update`` returned."""
        with self._cond:
            result = update()
            self._cond.notify_all()
            return result

    def _gather(self, batch: list[Job], voice: str, max_batch: int, buckets: set[int]) -> None:
        """Move waiting jobs of ``voice`` whose length bucket is in ``buckets`` into ``batch``."""
        for job in list(self._jobs):
            if len(batch) >= max_batch:
                return
            if job.voice == voice and not job.timed and length_bucket(len(job.chunk.phoneme_ids)) in buckets:
                self._jobs.remove(job)
                if not job.is_cancelled() and job.future.set_running_or_notify_cancel():
                    batch.append(job)


class Scheduler:
    def __init__(
        self,
        chain: EngineChain,
        *,
        workers: int,
        batching: bool,
        batch_window_ms: float,
        max_batch_size: int,
        metrics: RuntimeMetrics,
        solo_wide: bool = False,
        companions_possible: Callable[[], bool] = lambda: True,
        on_engine_call: Callable[[int, float, str], None] | None = None,
    ) -> None:
        self._chain = chain
        self._on_engine_call = on_engine_call
        """``(characters, seconds, kind)`` after every engine call; kind ``loaded`` (every worker
        was busy at its start or end), ``partial`` or ``wide`` (see ``serving.admission``)."""
        self._companions_possible = companions_possible
        self._workers = workers
        self._batching = batching
        self._window_s = batch_window_ms / 1000.0
        self._max_batch = max_batch_size
        self._metrics = metrics
        self.queue = JobQueue()
        self._threads: list[threading.Thread] = []
        self._solo_wide = solo_wide and workers > 1
        self._busy = 0
        """Batches running; read and written under the queue's lock (take's claim, wake)."""
        self._lead_wide = False
        """A request's first sentence is running on the wide instance."""
        self.wide_runs = 0

    @property
    def solo_wide(self) -> bool:
        return self._solo_wide

    def lookahead(self) -> int:
        """Sentences one request keeps queued: enough to fill every worker's batch when batching
        (earliest-deadline-first ordering keeps requests fair), else ``max(2, workers)``."""
        per_worker = self._max_batch if self._batching else 1
        return max(2, self._workers * per_worker)

    def warm_up(self, voice: str, sample: TextChunk, batched_paths: bool) -> int:
        """Run every worker's instance through the shapes it will meet (:func:`warmup_shapes`);
        ``batched_paths`` False (an engine on the CPU, e.g. the fallback) runs the one sentence.
        Returns the number of engine calls. Call before :meth:`start`."""
        shapes = warmup_shapes(self._batching and batched_paths, self._max_batch)
        calls = 0
        for worker in range(self._workers):
            for size, phonemes in shapes:
                ids = sample.phoneme_ids
                if phonemes:
                    ids = (ids * (phonemes // max(1, len(ids)) + 1))[:phonemes]
                chunk = TextChunk(sample.text, tuple(ids))
                self._chain.synthesize(worker, voice, [chunk] * size, [1.0] * size)
                calls += 1
        return calls

    def start(self) -> None:
        for index in range(self._workers):
            thread = threading.Thread(target=self._run, args=(index,), name=f"tailor-synth-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def submit(self, job: Job) -> Future[np.ndarray]:
        self.queue.put(job)
        self._metrics.queue_depth.set(len(self.queue))
        return job.future

    def stop(self, timeout_s: float = 5.0) -> None:
        self.queue.stop()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _hold(self) -> bool:
        """A lone request's first sentence holds the wide instance: its next sentence waits
        rather than start beside it on a one-thread worker (which would take a core from it)."""
        return self._lead_wide and not self._companions_possible()

    def _claim(self, batch: list[Job]) -> tuple[bool, int]:
        """Count the batch as running; return whether it takes the wide instance and the batches
        running with it. Wide: nothing else running, one untimed sentence (word timestamps run on
        the worker's own instance), and nothing else waiting - or, for a request's first
        sentence, only its own next sentences waiting (no other request in the server). Called
        under the queue's lock."""
        alone = len(self.queue) == 0 or (batch[0].lead and not self._companions_possible())
        wide = self._solo_wide and self._busy == 0 and len(batch) == 1 and not batch[0].timed and alone
        self._busy += 1
        self._lead_wide = self._lead_wide or (wide and batch[0].lead)
        self.wide_runs += int(wide)
        return wide, self._busy

    def _done(self, wide: bool) -> int:
        """A batch finished: returns the batches running at its end (itself included). Called
        under the queue's lock (:meth:`JobQueue.wake`)."""
        busy = self._busy
        self._busy -= 1
        if wide:
            self._lead_wide = False
        return busy

    def _run(self, index: int) -> None:
        claimed: list[tuple[bool, int]] = []
        while True:
            claimed.clear()
            batch = self.queue.take(self._batching, self._window_s, self._max_batch, self._companions_possible,
                                    hold=self._hold, claim=lambda taken: claimed.append(self._claim(taken)))
            self._metrics.queue_depth.set(len(self.queue))
            if batch is None:
                return
            wide, busy_at_start = claimed[0]
            self._metrics.observe_batch([len(j.chunk.phoneme_ids) for j in batch])
            voice = batch[0].voice
            on_block = batch[0].on_block if len(batch) == 1 else None
            chunks, speeds = [j.chunk for j in batch], [j.speed for j in batch]
            started = time.perf_counter()
            try:
                if batch[0].timed:
                    timed = self._chain.synthesize_timed(index, voice, batch[0].chunk, batch[0].speed)
                    batch[0].id_samples = timed.id_samples
                    audio = [timed.audio]
                elif on_block is None:
                    audio = self._chain.synthesize(index, voice, chunks, speeds, wide=wide)
                else:
                    audio = self._chain.synthesize(index, voice, chunks, speeds, wide=wide, on_block=on_block)
            except BaseException as exc:  # delivered to the waiting request, never kills the worker
                for job in batch:
                    job.future.set_exception(exc)
                continue
            finally:
                busy_at_end = self.queue.wake(functools.partial(self._done, wide))
            self._report(batch, time.perf_counter() - started, wide, max(busy_at_start, busy_at_end))
            for job, samples in zip(batch, audio, strict=True):
                job.future.set_result(samples)

    def _report(self, batch: Sequence[Job], seconds: float, wide: bool, busy: int) -> None:
        if self._on_engine_call is None:
            return
        kind = "wide" if wide else "loaded" if busy >= self._workers else "partial"
        self._on_engine_call(sum(len(j.chunk.text) for j in batch), seconds, kind)

    def calibrate(self, voice: str, chunk: TextChunk) -> list[tuple[int, float, str]]:
        """Every worker synthesizes ``chunk`` at the same time (the load admission plans for); each
        call is reported like live work and returned as ``(characters, seconds, kind)``. Call
        before :meth:`start`."""
        results: list[tuple[int, float, str]] = []
        errors: list[str] = []
        lock = threading.Lock()
        barrier = threading.Barrier(self._workers)

        def one(worker: int) -> None:
            try:
                barrier.wait(30)
                started = time.perf_counter()
                self._chain.synthesize(worker, voice, [chunk], [1.0])
                with lock:
                    results.append((len(chunk.text), time.perf_counter() - started, "loaded"))
            except Exception as exc:  # reported below, from the calling thread
                with lock:
                    errors.append(f"worker {worker}: {type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=one, args=(w,), name=f"tailor-calibrate-{w}") for w in range(self._workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise RuntimeError("calibration failed: " + "; ".join(errors))
        if self._on_engine_call is not None:
            for characters, seconds, kind in results:
                self._on_engine_call(characters, seconds, kind)
        return results
