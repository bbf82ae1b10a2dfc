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
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from runtime.audio.timestretch import time_stretch
from runtime.engines import create_engine
from runtime.engines.base import EngineOptions
from runtime.errors import (
    InputTooLongForTimeout,
    NotReady,
    Overloaded,
    QueueFull,
    RequestTimeout,
    StartupError,
)
from runtime.families.base import EngineFactory, Family, Voice
from runtime.families.catalog import family as catalog_family
from runtime.families.footprint import ram_estimate_bytes
from runtime.families.registry import load_families
from runtime.families.spec import FamilySpec
from runtime.families.voices import parse_voice_map
from runtime.serving.admission import Decision, WorkEstimator
from runtime.serving.cache import AudioCache
from runtime.serving.engine_chain import ChainEntry, EngineChain, StreamAbandoned, parse_fallback
from runtime.serving.memory import MemoryWatchdog, process_rss_bytes
from runtime.serving.metrics import RuntimeMetrics
from runtime.serving.routing import parse_model_map, route
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


class ServiceState(str, Enum):
    """The speech service's lifecycle: STARTING -> READY -> DRAINING, or STARTING -> FAILED
    (DRAINING may also come during STARTING, on a SIGTERM while loading). A ``str`` so that
    ``/readyz`` bodies, the process-group state files and log lines carry the bare value
    ("ready"), as they did when the states were plain strings. ``/readyz`` may report a READY
    service as ``engines_unavailable`` or ``memory_pressure``: conditions judged at each probe,
    not states the service enters (see :meth:`SpeechService.readiness`)."""

    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    FAILED = "failed"

    def __str__(self) -> str:  # the value for str(), %s and f-strings (else "ServiceState.READY")
        return self.value


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


def check_served_family(settings: Settings, families: Sequence[FamilySpec] | None = None) -> None:
    """Refuse, as a broken configuration (no restart can help), a precision the first served
    family has no model in (TAILOR_PRECISION=int8 for Piper, whose int8 models are variants).
    ``families``: the declarations served instead of TAILOR_MODEL's (tests, embedders)."""
    names = [spec.name for spec in families] if families is not None else [n for n in settings.model.split(",") if n]
    if settings.precision == "int8" and names:
        first = families[0] if families is not None else catalog_family(names[0])
        if not any("int8" in precisions for precisions in first.devices.values()):
            raise StartupError(
                f"TAILOR_PRECISION=int8 is for families with an int8 model; {first.name} runs in "
                + ", ".join(sorted({p for ps in first.devices.values() for p in ps})),
                hint="use TAILOR_PRECISION=fp32 (CPU)" + ("; Piper's int8 models are chosen with "
                     "TAILOR_MODEL_VARIANT" if first.name == "piper" else ""))


@dataclass
class ServedFamily:
    """One loaded family with its own engine chain, workers and admission estimate (a character of
    Kokoro costs several of Piper's, so each family measures its own)."""

    family: Family
    chain: EngineChain
    scheduler: Scheduler
    admission: WorkEstimator
    """Seconds per character of this family's own workers, calibrated at start (per family: a
    character of Kokoro costs several of Piper's)."""
    engine_in_use: dict[str, str] | None = None
    active_engine: str = ""

    @property
    def name(self) -> str:
        return self.family.name

    @property
    def catalog(self) -> Mapping[str, Voice]:
        return self.family.voices()

    @property
    def default_voice(self) -> str:
        return self.family.default_voice()


def _entries_for(family: Family, fallback: Sequence[ChainEntry], primary: bool, voices: set[str]) -> list[ChainEntry]:
    """TAILOR_FALLBACK entries of ``family``: those naming its voices, and (for the first family) those
    naming no served voice, which stay listed as configured and are skipped as today."""
    return [e for e in fallback
            if (e.voice in family.voices() and e.engine in family.engines) or (primary and e.voice not in voices)]


def _secondary_options(family: Family, options: EngineOptions) -> EngineOptions:
    """A second family's options: TAILOR_PRECISION where the family runs in it on this device,
    else the family's own first choice there (TAILOR_PRECISION is planned for the first family)."""
    allowed = family.spec.devices.get(options.device, ())
    if not allowed or options.precision in allowed:
        return options
    return dataclasses.replace(options, precision=allowed[0])


class SpeechService:
    def __init__(
        self,
        settings: Settings,
        engine_factory: EngineFactory = create_engine,
        rss_reader: Callable[[], int] = process_rss_bytes,
        environ: Mapping[str, str] | None = None,
        families: Sequence[FamilySpec] | None = None,
    ) -> None:
        """``families``: the declarations to serve instead of TAILOR_MODEL's (tests, embedders)."""
        self.settings = settings
        check_served_family(settings, families)
        loaded = load_families(settings, os.environ if environ is None else environ, engine_factory, families)
        try:
            self._serve(settings, loaded, rss_reader)
        except BaseException:
            for family in loaded.values():
                family.close()
            raise

    def _serve(self, settings: Settings, loaded: Mapping[str, Family], rss_reader: Callable[[], int]) -> None:
        voices = {name for family in loaded.values() for name in family.voices()}
        self.voice_map = parse_voice_map(settings.voice_map, dict.fromkeys(voices))
        self.model_map = parse_model_map(settings.model_map, list(loaded))
        self.metrics = RuntimeMetrics(rss_bytes=lambda: float(rss_reader()))
        options = EngineOptions.from_settings(settings)
        fallback = parse_fallback(settings.fallback, sorted({e for f in loaded.values() for e in f.engines}))
        wide_options = (
            dataclasses.replace(options, intra_op_threads=settings.workers * settings.threads_per_worker,
                                allow_spinning=True)
            if settings.solo_wide and settings.workers > 1 else None
        )
        self.families: dict[str, ServedFamily] = {}
        for index, family in enumerate(loaded.values()):
            admission = WorkEstimator(settings.workers, settings.request_timeout_s)
            chain = EngineChain(
                primary_engine=family.engine(settings.engine),
                fallback=_entries_for(family, fallback, index == 0, voices),
                family=family,
                options=options if index == 0 else _secondary_options(family, options),
                instances=settings.workers,
                metrics=self.metrics,
                wide_options=wide_options,
            )
            scheduler = Scheduler(
                chain,
                workers=settings.workers,
                batching=settings.batching and family.spec.batches,
                batch_window_ms=settings.batch_window_ms,
                max_batch_size=settings.max_batch_size,
                metrics=self.metrics,
                solo_wide=settings.solo_wide,
                companions_possible=lambda: self._in_flight + self._arriving > 1,
                on_engine_call=self._observer(family.name),
            )
            self.families[family.name] = ServedFamily(family, chain, scheduler, admission)
        self.primary = next(iter(self.families.values()))
        self.metrics.model_variant.labels(self.primary.default_voice, settings.model_variant).set(1)
        # The primary family's parts under their old names (the HTTP app, tests, benchmarks).
        self.chain = self.primary.chain
        self.scheduler = self.primary.scheduler
        self.catalog: Mapping[str, Voice] = self.primary.catalog
        self.metrics.queue_depth.set_function(
            lambda: float(sum(f.scheduler.queue.live() for f in self.families.values())))
        self.metrics.seconds_per_char.set_function(lambda: self.admission.seconds_per_char)
        self.metrics.effective_max_input_chars.set_function(
            lambda: float(min(self.admission.max_idle_chars(), settings.max_input_chars)))
        self.cache = AudioCache(settings.cache_bytes)
        self.watchdog = MemoryWatchdog(settings.rss_soft_limit_bytes, rss_reader)
        self.instance_id = settings.instance_id or uuid.uuid4().hex
        """Returned on every response (X-Tailor-Instance) so a launcher knows whom it asks."""
        self.state: ServiceState = ServiceState.STARTING
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
        self.start_error: Exception | None = None
        """Why :meth:`start` failed (None until it does)."""
        """Called (from the loader thread) when start-up fails; ``python -m runtime`` exits."""

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Load the default voice's engine (falling back as configured), warm every worker's
        instance with one synthesis, then start the workers. Blocking; run it off the loop."""
        try:
            for served in self.families.values():
                self._start_family(served)
        except Exception as exc:
            self.start_error = exc
            self.state, self.state_detail = ServiceState.FAILED, str(exc)
            _LOG.error("start-up failed: %s", exc)
            if self.on_start_failed is not None:
                self.on_start_failed()
            raise
        if self.state is ServiceState.DRAINING:  # SIGTERM arrived while loading: stay not-ready
            return
        self.state, self.state_detail = ServiceState.READY, ""
        self.metrics.ready.set(1)
        _LOG.info("ready: %s (warm-up %.2fs)", self.active_engine, self.warmup_seconds)

    def _start_family(self, served: ServedFamily) -> None:
        """Load one family's default voice (falling back as configured), warm its workers, start them."""
        voice = served.default_voice
        chain, scheduler = served.chain, served.scheduler
        loaded = chain.load_default(voice)
        first = loaded.engines[0] if loaded.engines else None
        served.active_engine = loaded.entry.label()
        served.engine_in_use = {
            "engine": loaded.entry.engine,
            "voice": loaded.entry.voice,
            "device": str(getattr(first, "device", self.settings.device)),
            "precision": str(getattr(first, "precision", "fp32")),
            "role": "primary" if loaded.entry.engine == chain.primary_engine
            and loaded.entry.voice == voice else "fallback",
        }
        if served is self.primary:
            self.active_engine, self.engine_in_use = served.active_engine, served.engine_in_use
            self.metrics.set_engine_in_use(**served.engine_in_use)
        if self.settings.preload:
            self.state_detail = "warming up" if len(self.families) == 1 else f"warming up {served.name}"
            started = time.perf_counter()
            chunks = chain.phonemizer(voice).prepare(WARMUP_TEXT)
            # Every (batch, length bucket) shape on a GPU; the one sentence on a CPU engine.
            scheduler.warm_up(voice, chunks[0], batched_paths=served.engine_in_use["device"] == "cuda")
            if loaded.wide is not None:
                chain.synthesize(0, voice, chunks, [1.0], wide=True)
            self.state_detail = "calibrating admission" + ("" if len(self.families) == 1 else f" ({served.name})")
            self._calibrate(served, voice)
            self.warmup_seconds += time.perf_counter() - started
        scheduler.start()
        if len(self.families) > 1:
            self.state_detail = "loading model"

    def _observer(self, name: str) -> Callable[[int, float, str], None]:
        """An engine call's measurement for family ``name``'s estimator, looked up at the call (so
        an estimator replaced later, as tests pin one, still gets it)."""
        def observe(characters: int, seconds: float, kind: str) -> None:
            self.families[name].admission.observe(characters, seconds, kind)
        return observe

    @property
    def admission(self) -> WorkEstimator:
        """The default (first) family's admission estimate."""
        return self.primary.admission

    @admission.setter
    def admission(self, estimator: WorkEstimator) -> None:
        self.primary.admission = estimator

    def _calibrate(self, served: ServedFamily, voice: str) -> None:
        """Measure one family's seconds per character on every one of its workers at once (see
        ``serving.admission``) and say when TAILOR_MAX_INPUT_CHARS admits inputs that cannot finish
        in time."""
        admission = served.admission
        chunks = served.chain.phonemizer(voice).prepare(CALIBRATION_TEXT)
        served.scheduler.calibrate(voice, chunks[0])
        admission.calibrated = True
        fits = admission.max_idle_chars()
        _LOG.info("admission calibrated (%s): %.4f s/char per worker x %d workers; inputs up to about %d "
                  "characters fit %.2g x %g s", served.name, admission.seconds_per_char, self.settings.workers,
                  fits, admission.headroom, self.settings.request_timeout_s)
        if fits < self.settings.max_input_chars:
            _LOG.warning(
                "TAILOR_MAX_INPUT_CHARS=%d, but at the measured %.4f s/char (%s) only about %d characters "
                "finish within %.2g x TAILOR_REQUEST_TIMEOUT_S=%g s on an idle server; longer inputs get "
                "413 input_too_long_for_timeout. Raise TAILOR_REQUEST_TIMEOUT_S or lower "
                "TAILOR_MAX_INPUT_CHARS to %d.", self.settings.max_input_chars,
                admission.seconds_per_char, served.name, fits, admission.headroom,
                self.settings.request_timeout_s, fits)

    def route(self, model: str, voice: str | None) -> tuple[ServedFamily, Voice]:
        """The served family and voice for a request's ``model`` and ``voice`` (400 if none)."""
        family, chosen = route(model, voice, {n: f.catalog for n, f in self.families.items()},
                               {n: f.default_voice for n, f in self.families.items()},
                               self.model_map, self.voice_map)
        return self.families[family], chosen

    def served(self, job: SpeechJob) -> ServedFamily:
        return self.families.get(job.family) or self.primary

    def begin_drain(self) -> None:
        if self.state is not ServiceState.DRAINING:
            _LOG.info("draining: refusing new requests, %d in flight", self._in_flight)
        self.state, self.state_detail = ServiceState.DRAINING, "shutting down"
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
        for served in self.families.values():
            served.scheduler.stop()
        for served in self.families.values():
            served.chain.close()
            served.family.close()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, body). Ready means new speech work is accepted: loaded, warmed up, not
        draining, not over the memory soft limit. The body is the runtime's own view."""
        over, rss = self.watchdog.over_limit()
        state: str = self.state.value  # a plain str in the body, whatever the JSON encoder
        reason = self.state_detail or None
        if self.state is ServiceState.READY:
            for name, served in self.families.items():
                problem = served.family.unavailable()
                if problem:
                    state, reason = "engines_unavailable", f"model family {name}: {problem}"
                    break
        if state == ServiceState.READY.value and over:
            state = "memory_pressure"
            reason = (f"resident memory {rss} bytes is above the soft limit "
                      f"{self.settings.rss_soft_limit_bytes} (TAILOR_RSS_SOFT_LIMIT_BYTES); "
                      "new speech requests get 503")
        ready = state == ServiceState.READY.value
        body: dict[str, Any] = {
            "ready": ready,
            "status": state,
            "state": state,
            "reason": None if ready else reason or state,
            "detail": None if ready else reason or state,
            "instance": self.instance_id,
            "engine": self.active_engine or None,
            "engine_in_use": self.engine_in_use,
            "voice": self.primary.default_voice,
            "model": self.primary.name,
            "models": list(self.families),
            "model_variant": self.settings.model_variant,
            "device": self.settings.device,
            "workers": self.settings.workers,
            "threads_per_worker": self.settings.threads_per_worker,
            "batching": self.settings.batching,
            "solo_wide": {"enabled": self.scheduler.solo_wide, "runs": self.scheduler.wide_runs},
            "in_flight": self._in_flight,
            "queue_depth": sum(f.scheduler.queue.live() for f in self.families.values()),
            "warmup_seconds": round(self.warmup_seconds, 3),
            "admission": self._admission_view(self.primary),
            "fallback": {
                "configured": [e.label() for e in self.chain.fallback],
                "active": self.engine_in_use is not None and self.engine_in_use["role"] == "fallback",
                "entries": self.chain.status(),
            },
            "memory": {"over_soft_limit": over, "rss_bytes": rss or None,
                       "soft_limit_bytes": self.settings.rss_soft_limit_bytes or None,
                       "model_estimate_bytes": self.ram_estimate_bytes()},
            "families": {name: self._family_view(served) for name, served in self.families.items()},
        }
        return ready, body

    def ram_estimate_bytes(self) -> int:
        """What the families' memory models expect this process to hold (RAM): each served family
        with its device, the precision it runs in and one instance per worker (and the solo-wide one)."""
        total = 0
        for served in self.families.values():
            in_use = served.engine_in_use or {}
            instances = self.settings.workers + (1 if served.scheduler.solo_wide else 0)
            total += ram_estimate_bytes(
                served.family.spec, in_use.get("device", self.settings.device),
                in_use.get("precision", self.settings.precision), instances,
                with_overhead=served is self.primary)
        return total

    def _admission_view(self, served: ServedFamily) -> dict[str, Any]:
        return {**served.admission.status(), "max_input_chars": self.settings.max_input_chars,
                "request_timeout_s": self.settings.request_timeout_s}

    def _family_view(self, served: ServedFamily) -> dict[str, Any]:
        spec = served.family.spec
        return {
            "default_voice": served.default_voice,
            "voices": len(served.catalog),
            "engine": served.active_engine or None,
            "engine_in_use": served.engine_in_use,
            "sample_rate_hz": spec.sample_rate_hz,
            "streaming": spec.streaming,
            "batching": self.settings.batching and spec.batches,
            "concurrent_safe": spec.concurrent_safe,
            "queue_depth": served.scheduler.queue.live(),
            "admission": self._admission_view(served),
            **served.family.status(),
        }

    # --- admission ------------------------------------------------------------------------
    def check_accepting(self) -> None:
        if self.state is ServiceState.DRAINING:
            raise NotReady("server is shutting down; retry on another replica",
                           code="draining", headers={"Retry-After": "5"})
        if self.state is not ServiceState.READY:
            raise NotReady(f"server is not ready ({self.state_detail or self.state.value})",
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

    def _served(self, family: str) -> ServedFamily:
        return self.families.get(family) or self.primary

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
        self.check_accepting()
        capacity = self.settings.workers + self.settings.max_queue
        timeout = self.settings.request_timeout_s
        with self._lock:
            if self._in_flight >= capacity:
                drain = sum(f.admission.drain_seconds() for f in self.families.values())
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
        self.check_accepting()
        served = self._served(family)
        held = int(characters * RESERVED_SHARE)
        with self._lock:
            decision = served.admission.try_admit(held, 0, time.monotonic() - started)
            self._refuse_unless(served, decision, characters)
        return held

    def unreserve(self, characters: int, family: str = "") -> None:
        self._served(family).admission.done(characters)

    def _refuse_unless(self, served: ServedFamily, decision: Decision, characters: int) -> None:
        """Raise the refusal a decision calls for (413 or 503 ``overloaded``), counted by reason."""
        if decision.admitted:
            return
        admission = served.admission
        timeout = self.settings.request_timeout_s
        rate = admission.seconds_per_char
        which = "" if len(self.families) == 1 else f" of {served.name}"
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
        self._take_off_backlog(job, job.backlog_chars)
        with self._idle:
            self._in_flight = max(0, self._in_flight - 1)
            self.metrics.in_flight.set(self._in_flight)
            self._idle.notify_all()

    def _take_off_backlog(self, job: SpeechJob, characters: int) -> None:
        done = min(characters, job.backlog_chars)
        self.served(job).admission.done(done)
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
        its audio is yielded (word timestamps; never streamed by token chunks).
        """
        cancelled = threading.Event()
        lookahead = self.served(job).scheduler.lookahead()
        pending: list[asyncio.Future[np.ndarray]] = []
        submitted: list[Job] = []
        partials: list[asyncio.Queue[np.ndarray] | None] = []
        """Per pending sentence of a token-chunk family: its blocks as the engine makes them."""
        jobs = iter(job.chunks)
        completed = 0
        offset = 0
        served = self.served(job)
        sample_rate = served.chain.voice_info(job.voice).sample_rate_hz
        streams = served.family.spec.streaming == "token-chunk" and timings is None
        loop = asyncio.get_running_loop()

        def block_sink(queue: asyncio.Queue[np.ndarray]) -> Callable[[np.ndarray], None]:
            def put(block: np.ndarray) -> None:  # on the worker thread
                if cancelled.is_set():
                    raise StreamAbandoned("the request is gone")
                loop.call_soon_threadsafe(queue.put_nowait, block)
            return put

        def refill() -> None:
            while len(pending) < lookahead:
                chunk = next(jobs, None)
                if chunk is None:
                    return
                queue: asyncio.Queue[np.ndarray] | None = asyncio.Queue() if streams else None
                # The engine speaks at the voice's own pace; speed is applied after (linear).
                work = Job(job.voice, chunk, 1.0, is_cancelled=cancelled.is_set, priority=job.deadline,
                           timed=timings is not None, lead=chunk is job.chunks[0],
                           on_block=block_sink(queue) if queue is not None else None)
                submitted.append(work)
                pending.append(asyncio.wrap_future(served.scheduler.submit(work)))
                partials.append(queue)

        async def shaped(samples: np.ndarray, speed: float, id_samples: np.ndarray | None = None,
                         chunk: TextChunk | None = None) -> np.ndarray:
            spoken = samples.size
            if speed != 1.0 and samples.size:
                samples = await asyncio.to_thread(time_stretch, samples, speed)
            if timings is not None and id_samples is not None and chunk is not None:
                # Time-stretching scales every position by the same factor.
                ends = np.rint(np.cumsum(id_samples) * (samples.size / max(1, spoken))).astype(np.int64)
                timings.append(ChunkTiming(chunk.text, chunk.phoneme_ids, offset, np.diff(ends, prepend=0)))
            self.metrics.audio_seconds.labels(job.voice).inc(samples.size / sample_rate)
            return samples

        try:
            refill()
            while pending:
                head, partial = pending[0], partials[0]
                chunk_now = job.chunks[completed]
                speed = min(MAX_SPEED, max(MIN_SPEED, job.speed * chunk_now.rate))
                streamed = 0
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
                    await asyncio.wait({head}, timeout=min(remaining, 0.1 if partial is None else 0.02))
                    while partial is not None and not partial.empty():
                        streamed += 1
                        yield await shaped(partial.get_nowait(), speed)
                    if not head.done() and is_disconnected is not None and await is_disconnected():
                        _LOG.info("client disconnected; cancelling %d queued sentences", len(pending))
                        return
                pending.pop(0)
                partials.pop(0)
                samples = head.result()
                id_samples = submitted.pop(0).id_samples
                completed += 1
                self._take_off_backlog(job, len(chunk_now.text))
                refill()
                while partial is not None and not partial.empty():
                    streamed += 1
                    yield await shaped(partial.get_nowait(), speed)
                # A streamed sentence went out block by block; only its pause is left to send.
                samples = (np.zeros(0, dtype=np.float32) if streamed
                           else await shaped(samples, speed, id_samples, chunk_now))
                if chunk_now.pause_after_s > 0:
                    silence = np.zeros(round(chunk_now.pause_after_s * sample_rate), dtype=np.float32)
                    self.metrics.audio_seconds.labels(job.voice).inc(silence.size / sample_rate)
                    samples = np.concatenate([samples, silence])
                offset += samples.size
                if samples.size or not streamed:
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
