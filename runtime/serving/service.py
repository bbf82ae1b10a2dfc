"""The speech service: the facade the HTTP app talks to. It assembles the served families and
owns the lifecycle (starting, ready, draining, failed: :mod:`runtime.serving.lifecycle`) and the
``/readyz`` view; admission is :class:`~runtime.serving.admission.AdmissionGate`'s, the
per-request sentence stream :mod:`runtime.serving.stream`'s.

Admission order: not ready / draining / over the memory soft limit -> 503; more than
``workers + TAILOR_MAX_QUEUE`` requests in the system -> 429 with ``Retry-After``.
A request keeps ``max(2, workers)`` sentence jobs in flight (enough to fill every worker's batch when
batching, see ``Scheduler.lookahead``), so the first sentence is
synthesized (and can be streamed) before the rest, and several requests share workers fairly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import numpy as np

from runtime.engines import create_engine
from runtime.engines.base import EngineOptions
from runtime.errors import NotReady
from runtime.families.base import EngineFactory, Family, Voice
from runtime.families.footprint import ram_estimate_bytes
from runtime.families.registry import load_families
from runtime.families.spec import FamilySpec
from runtime.families.voices import parse_voice_map
from runtime.serving import stream
from runtime.serving.admission import WorkEstimator
from runtime.serving.cache import AudioCache
from runtime.serving.engine_chain import EngineChain, parse_fallback
from runtime.serving.gate import AdmissionGate, SpeechJob
from runtime.serving.lifecycle import (
    CALIBRATION_TEXT,
    WARMUP_TEXT,
    ServiceState,
    check_served_family,
)
from runtime.serving.memory import MemoryWatchdog, process_rss_bytes
from runtime.serving.metrics import RuntimeMetrics
from runtime.serving.routing import parse_model_map, route
from runtime.serving.scheduler import Scheduler
from runtime.serving.served import ServedFamily, entries_for, secondary_options
from runtime.settings import Settings
from runtime.text.frontend import TextChunk
from runtime.text.timestamps import ChunkTiming

_LOG = logging.getLogger("tailor.runtime")


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
        self.gate = AdmissionGate(settings, self.metrics, self.families, self.check_accepting)
        for index, family in enumerate(loaded.values()):
            admission = WorkEstimator(settings.workers, settings.request_timeout_s)
            chain = EngineChain(
                primary_engine=family.engine(settings.engine),
                fallback=entries_for(family, fallback, index == 0, voices),
                family=family,
                options=options if index == 0 else secondary_options(family, options),
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
                companions_possible=self.gate.companions_possible,
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
        self._aborted = threading.Event()
        """Set when the shutdown grace period is over: in-flight requests end with 503."""
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
            _LOG.info("draining: refusing new requests, %d in flight", self.gate.in_flight)
        self.state, self.state_detail = ServiceState.DRAINING, "shutting down"
        self.metrics.ready.set(0)

    def close(self) -> None:
        for served in self.families.values():
            served.scheduler.stop()
        for served in self.families.values():
            served.chain.close()
            served.family.close()

    @property
    def in_flight(self) -> int:
        return self.gate.in_flight

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
            "in_flight": self.gate.in_flight,
            "arriving": self.gate.arriving_count,
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

    # --- admission (AdmissionGate) ---------------------------------------------------------
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

    def arriving(self) -> contextlib.AbstractContextManager[None]:
        """See :meth:`AdmissionGate.arriving`."""
        return self.gate.arriving()

    def admit(
        self, voice: str, chunks: Sequence[TextChunk], speed: float, started: float, reserved: int = 0,
        family: str = "",
    ) -> SpeechJob:
        """See :meth:`AdmissionGate.admit`."""
        return self.gate.admit(voice, chunks, speed, started, reserved, family)

    def reserve(self, characters: int, started: float, family: str = "") -> int:
        """See :meth:`AdmissionGate.reserve`."""
        return self.gate.reserve(characters, started, family)

    def unreserve(self, characters: int, family: str = "") -> None:
        self.gate.unreserve(characters, family)

    def release(self, job: SpeechJob) -> None:
        self.gate.release(job)

    def wait_idle(self, timeout_s: float) -> bool:
        """See :meth:`AdmissionGate.wait_idle`."""
        return self.gate.wait_idle(timeout_s)

    def abort_in_flight(self) -> None:
        """Grace period over: every request still running ends now with 503 (JSON, or an
        aborted stream)."""
        self._aborted.set()

    # --- the sentence stream ----------------------------------------------------------------
    def audio_blocks(
        self,
        job: SpeechJob,
        is_disconnected: Callable[[], Awaitable[bool]] | None = None,
        timings: list[ChunkTiming] | None = None,
    ) -> AsyncGenerator[np.ndarray, None]:
        """The job's audio blocks: see :func:`runtime.serving.stream.audio_blocks`."""
        return stream.audio_blocks(job, self.served(job), self.metrics, self.settings.request_timeout_s,
                                   self._aborted, self.gate.take_off_backlog, is_disconnected, timings)


def concatenate(blocks: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
