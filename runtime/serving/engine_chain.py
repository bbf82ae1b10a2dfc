"""Loaded voices and the engine fallback chain of one model family.

The chain for a request's voice is ``(TAILOR_ENGINE, voice)`` followed by every
``TAILOR_FALLBACK`` entry (``ENGINE:VOICE``) naming a voice of this family. An entry that fails to
load is skipped (and reported); when an entry raises during synthesis, the next one gets the same
sentence, re-read by its own voice's front end and resampled to the requested voice's rate.
Each entry holds one instance per synthesis worker (:meth:`Family.create`), because an instance
serves one caller at a time.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runtime.audio.encode import resample
from runtime.engines.base import EngineOptions, TimedAudio
from runtime.errors import EngineFailed, NotReady, StartupError, broken_model_file
from runtime.families.base import WIDE_INSTANCE, EngineFactory, Family, FrontEnd, Voice, VoiceEngine
from runtime.families.voices import is_valid_voice_name
from runtime.serving.metrics import RuntimeMetrics
from runtime.settings import keyed_entries
from runtime.text.frontend import TextChunk

_LOG = logging.getLogger("tailor.runtime")

__all__ = ["ChainEntry", "EngineChain", "EngineFactory", "LoadedEntry", "StreamAbandoned", "parse_fallback"]


class StreamAbandoned(Exception):
    """Raised by an ``on_block`` whose request is gone: stops a streaming engine at its next block."""


@dataclass(frozen=True)
class ChainEntry:
    engine: str
    voice: str

    def label(self) -> str:
        return f"{self.engine}:{self.voice}"


def parse_fallback(spec: str, known_engines: Sequence[str]) -> tuple[ChainEntry, ...]:
    """``"onnx:en_US-joe-medium, torch:other"`` to entries; StartupError names the bad entry."""
    entries: list[ChainEntry] = []
    for item, engine, voice, sep in keyed_entries(spec, ":"):
        if not sep or engine not in known_engines or not is_valid_voice_name(voice):
            raise StartupError(
                f"TAILOR_FALLBACK entry {item!r} is invalid",
                hint=f"write ENGINE:VOICE entries separated by commas, ENGINE one of "
                f"{', '.join(known_engines)}, e.g. onnx:en_US-joe-medium",
            )
        entries.append(ChainEntry(engine, voice))
    return tuple(entries)


@dataclass
class LoadedEntry:
    entry: ChainEntry
    info: Voice
    phonemizer: FrontEnd
    engines: list[VoiceEngine]
    load_seconds: float
    wide: VoiceEngine | None = None
    """The solo instance with every worker's threads (``TAILOR_SOLO_WIDE``), if any."""


@dataclass
class EntryState:
    status: str = "not_loaded"
    """not_loaded, loaded, load_failed."""
    error: str = ""
    synthesis_failures: int = 0
    last_synthesis_error: str = ""
    served_sentences: int = 0
    loaded: LoadedEntry | None = field(default=None, repr=False)


class EngineChain:
    def __init__(
        self,
        *,
        primary_engine: str,
        fallback: Sequence[ChainEntry],
        family: Family,
        options: EngineOptions,
        instances: int,
        metrics: RuntimeMetrics,
        wide_options: EngineOptions | None = None,
    ) -> None:
        self.primary_engine = primary_engine
        self.fallback = tuple(fallback)
        self.family = family
        self.catalog: Mapping[str, Voice] = family.voices()
        self._options = options
        self._instances = instances
        self._wide_options = wide_options
        self._metrics = metrics
        self._states: dict[ChainEntry, EntryState] = {}
        self._lock = threading.RLock()

    # --- voices -------------------------------------------------------------------------
    def voice_info(self, voice: str) -> Voice:
        return self.family.voice(voice)

    def phonemizer(self, voice: str) -> FrontEnd:
        """The text front end of a voice (from its loaded entry if any, else the family's)."""
        with self._lock:
            for state in self._states.values():
                if state.loaded is not None and state.loaded.entry.voice == voice:
                    return state.loaded.phonemizer
        return self.family.front_end(voice)

    def candidates(self, voice: str) -> list[ChainEntry]:
        entries = [ChainEntry(self.primary_engine, voice), *self.fallback]
        unique: list[ChainEntry] = []
        for entry in entries:
            if entry not in unique and entry.voice in self.catalog:
                unique.append(entry)
        return unique

    # --- loading ------------------------------------------------------------------------
    def is_primary(self, entry: ChainEntry) -> bool:
        return entry.engine == self.primary_engine and entry not in self.fallback

    def options_for(self, entry: ChainEntry) -> list[EngineOptions]:
        """The options to try, in order, for ``entry``'s instances.

        The primary runs with the plan's options. A fallback gets its own (fp32, its own threads,
        see :meth:`EngineOptions.for_fallback`): on the CPU, or with ``TAILOR_FALLBACK_DEVICE=cuda``
        first on CUDA (onnxruntime-gpu, where the image has it) and then on the CPU.
        """
        if self.is_primary(entry):
            return [self._options]
        cpu = self._options.for_fallback("cpu")
        if self._options.fallback_device == "cuda" and self._options.device == "cuda":
            return [self._options.for_fallback("cuda"), cpu]
        return [cpu]

    def _state(self, entry: ChainEntry) -> EntryState:
        return self._states.setdefault(entry, EntryState())

    def load(self, entry: ChainEntry) -> LoadedEntry | None:
        """Load ``entry`` once (all worker instances); None when it failed, now or before."""
        with self._lock:
            state = self._state(entry)
            if state.loaded is not None:
                return state.loaded
            if state.status == "load_failed":
                return None
            started = time.perf_counter()
            engines: list[VoiceEngine] = []
            wide = None
            errors: list[str] = []
            for options in self.options_for(entry):
                try:
                    info = self.family.voice(entry.voice)
                    phonemizer = self.family.front_end(entry.voice)
                    for worker in range(self._instances):
                        engines.append(self.family.create(entry.engine, entry.voice, options.for_worker(worker), worker))
                    if self._wide_options is not None and self.is_primary(entry):
                        wide = self.family.create(entry.engine, entry.voice, self._wide_options, WIDE_INSTANCE)
                    break
                except Exception as exc:  # any engine failure must fall through to the next entry
                    for engine in engines:
                        engine.close()
                    engines, wide = [], None
                    errors.append(f"{type(exc).__name__}: {exc}" + (f" (on {options.device})" if errors else ""))
                    _LOG.warning("engine %s failed to load on %s: %s", entry.label(), options.device, exc)
            if not engines:
                state.status, state.error = "load_failed", "; ".join(errors)
                return None
            elapsed = time.perf_counter() - started
            state.loaded = LoadedEntry(entry, info, phonemizer, engines, elapsed, wide)
            state.status = "loaded"
            self._metrics.model_load.labels(entry.engine, entry.voice).set(elapsed)
            _LOG.info("loaded %s x%d%s in %.2fs", entry.label(), len(engines),
                      " + wide solo instance" if wide is not None else "", elapsed)
            return state.loaded

    def load_default(self, voice: str) -> LoadedEntry:
        """Load the first entry of the default voice's chain that works; StartupError if none."""
        for entry in self.candidates(voice):
            loaded = self.load(entry)
            if loaded is not None:
                self._metrics.engine_active.labels(entry.engine, entry.voice).set(1)
                return loaded
        reasons = "; ".join(f"{e.label()}: {self._state(e).error}" for e in self.candidates(voice))
        message = f"no engine could load the default voice {voice}: {reasons}"
        broken = broken_model_file(message)  # a corrupt or missing file: name it, not the engine knobs
        raise StartupError(
            message,
            hint=broken.hint if broken is not None
            else "check TAILOR_ENGINE/TAILOR_DEVICE, or add a working entry to TAILOR_FALLBACK",
        )

    # --- synthesis ----------------------------------------------------------------------
    def synthesize(
        self, worker: int, voice: str, chunks: Sequence[TextChunk], speeds: Sequence[float],
        start_at: int = 0, wide: bool = False, on_block: Callable[[np.ndarray], None] | None = None,
    ) -> list[np.ndarray]:
        """Audio for each chunk at ``voice``'s sample rate, trying the chain in order.

        Runs on a synthesis worker thread; ``worker`` picks that worker's engine instances,
        ``wide`` the solo instance (when loaded) - the scheduler grants it to one worker at a time.
        ``on_block`` (one chunk, an instance with ``stream_chunk``): each block goes to it as the
        engine makes it; once one has, a failure is final (no fallback can take back sent audio).
        """
        target_rate = self.voice_info(voice).sample_rate_hz
        errors: list[str] = []
        unready: list[NotReady] = []
        candidates = self.candidates(voice)
        for position, entry in enumerate(candidates[start_at:], start=start_at):
            loaded = self.load(entry)
            if loaded is None:
                errors.append(f"{entry.label()}: not loaded ({self._state(entry).error})")
                continue
            items = chunks if entry.voice == voice else [
                dataclasses.replace(chunk, phoneme_ids=loaded.phonemizer.ids(chunk.text)) for chunk in chunks
            ]
            delivered = 0
            try:
                engine = loaded.wide if wide and loaded.wide is not None else loaded.engines[worker % len(loaded.engines)]
                stream = getattr(engine, "stream_chunk", None)
                if on_block is not None and stream is not None and len(items) == 1:
                    parts: list[np.ndarray] = []
                    for block in stream(items[0], speeds[0]):
                        parts.append(resample(_clip(block), loaded.info.sample_rate_hz, target_rate))
                        on_block(parts[-1])
                        delivered += 1
                    with self._lock:
                        self._state(entry).served_sentences += 1
                    return [np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)]
                audio: list[np.ndarray] = list(engine.synthesize(items, speeds))
                if len(audio) != len(items):
                    raise ValueError(f"engine returned {len(audio)} arrays for {len(items)} items")
            except StreamAbandoned:
                raise
            except Exception as exc:
                if delivered:
                    raise EngineFailed(f"{entry.label()} failed after {delivered} streamed blocks: "
                                       f"{type(exc).__name__}: {exc}") from exc
                if isinstance(exc, NotReady):  # e.g. an engine process restarting: 503, retry
                    unready.append(exc)
                with self._lock:
                    state = self._state(entry)
                    state.synthesis_failures += 1
                    state.last_synthesis_error = f"{type(exc).__name__}: {exc}"
                errors.append(f"{entry.label()}: {type(exc).__name__}: {exc}")
                if position + 1 < len(candidates):
                    self._metrics.fallbacks.labels("synthesis_error", candidates[position + 1].label()).inc()
                _LOG.warning("engine %s failed for voice %s: %s", entry.label(), voice, exc)
                continue
            if position > start_at or errors:
                _LOG.info("served by fallback %s", entry.label())
            with self._lock:
                self._state(entry).served_sentences += len(items)
            level = _normalize if self.family.peak_normalize else _clip
            return [resample(level(a), loaded.info.sample_rate_hz, target_rate) for a in audio]
        if unready and len(unready) == len(errors):  # nothing broke: every engine is coming back
            raise unready[0]
        raise EngineFailed("every engine failed: " + "; ".join(errors))

    def status(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = []
            for entry, state in self._states.items():
                rows.append({
                    "engine": entry.engine,
                    "voice": entry.voice,
                    "role": "primary" if entry.engine == self.primary_engine and entry not in self.fallback else "fallback",
                    "status": state.status,
                    "error": state.error or None,
                    "load_seconds": round(state.loaded.load_seconds, 3) if state.loaded else None,
                    "device": state.loaded.engines[0].device if state.loaded and state.loaded.engines else None,
                    "synthesis_failures": state.synthesis_failures,
                    "last_synthesis_error": state.last_synthesis_error or None,
                    "served_sentences": state.served_sentences,
                })
            return rows

    def close(self) -> None:
        with self._lock:
            for state in self._states.values():
                if state.loaded is not None:
                    for engine in [*state.loaded.engines, *([state.loaded.wide] if state.loaded.wide else [])]:
                        try:
                            engine.close()
                        except Exception as exc:  # closing must not stop the others closing
                            _LOG.warning("closing %s: %s", state.loaded.entry.label(), exc)
                    state.loaded = None
                    state.status = "not_loaded"

    # --- word timestamps ----------------------------------------------------------------
    def synthesize_timed(self, worker: int, voice: str, chunk: TextChunk, speed: float) -> TimedAudio:
        """One chunk's audio (as :meth:`synthesize`) and the model's samples per phoneme id, from
        the first entry of ``voice``'s chain that speaks this same voice with an engine that has
        durations (another voice's phonemes would not map back to this text's words)."""
        target_rate = self.voice_info(voice).sample_rate_hz
        errors: list[str] = []
        for entry in self.candidates(voice):
            if entry.voice != voice:
                continue
            loaded = self.load(entry)
            if loaded is None:
                errors.append(f"{entry.label()}: not loaded ({self._state(entry).error})")
                continue
            engine = loaded.engines[worker % len(loaded.engines)]
            timed_call = getattr(engine, "synthesize_timed", None)
            if timed_call is None or not getattr(engine, "supports_durations", False):
                errors.append(f"{entry.label()}: this engine reports no durations")
                continue
            try:
                timed: TimedAudio = timed_call(chunk, speed)
            except Exception as exc:  # as in synthesize: the next entry gets the chunk
                errors.append(f"{entry.label()}: {type(exc).__name__}: {exc}")
                _LOG.warning("engine %s failed (with durations) for voice %s: %s", entry.label(), voice, exc)
                continue
            level = _normalize if self.family.peak_normalize else _clip
            audio = resample(level(timed.audio), loaded.info.sample_rate_hz, target_rate)
            scale = audio.size / max(1, timed.audio.size)
            ends = np.rint(np.cumsum(timed.id_samples) * scale).astype(np.int64)
            with self._lock:
                self._state(entry).served_sentences += 1
            return TimedAudio(audio, np.diff(ends, prepend=0))
        raise EngineFailed("no engine could synthesize with durations (word timestamps): " + "; ".join(errors))


def _normalize(audio: np.ndarray) -> np.ndarray:
    """Peak-normalize one utterance (as Piper does) and make it float32 mono."""
    samples = np.nan_to_num(np.asarray(audio, dtype=np.float32).reshape(-1))
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    if peak < 1e-8:
        return np.zeros_like(samples)
    normalized: np.ndarray = np.clip(samples / peak, -1.0, 1.0)
    return normalized


def _clip(audio: np.ndarray) -> np.ndarray:
    """Float32 mono within [-1, 1], level as the model made it."""
    samples = np.nan_to_num(np.asarray(audio, dtype=np.float32).reshape(-1))
    clipped: np.ndarray = np.clip(samples, -1.0, 1.0)
    return clipped
