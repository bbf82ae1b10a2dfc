"""The adapter for text-in families whose engine streams audio for a piece of text (XTTS-v2's
``XttsEngine``, IndexTTS2's ``IndexTTS2Client``): any object with

    voices() -> iterable of voice names
    sample_rate_hz: int                  (attribute or property)
    stream(text, voice, language, speed) -> Iterator[np.ndarray]     float32 mono blocks
    close() -> None

becomes a :class:`Family`: :class:`TextFrontEnd` sentences (bounded in characters), one voice per name
the engine lists, and an instance per worker whose ``synthesize`` runs ``stream`` for each sentence and
joins its blocks. Two shapes of engine:

* ``shared=True``: one engine object serves every worker (it schedules its own instances, as
  IndexTTS2's client does with one engine process per TAILOR_WORKERS);
* ``shared=False``: one engine per worker (a model that is not safe to call concurrently, as XTTS-v2),
  built by ``open_engine(options)`` with that worker's :class:`EngineOptions` (device index...).

A family module's loader is then a few lines (see ``streaming_loader``)::

    def load(spec, context):
        return StreamingFamily(spec, context, lambda options: XttsEngine(model_dir, options),
                               engine_name="torch", shared=False, chunk_chars=250)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from runtime.engines.base import EngineOptions
from runtime.errors import StartupError
from runtime.families.base import (
    WIDE_INSTANCE,
    Family,
    FamilyContext,
    TextFrontEnd,
    Voice,
    served_default_voice,
)
from runtime.families.spec import FamilySpec

if TYPE_CHECKING:
    from runtime.text.frontend import TextChunk


class StreamingEngine(Protocol):
    sample_rate_hz: int

    def voices(self) -> Iterable[str]: ...

    def stream(self, text: str, voice: str, language: str | None = None, speed: float = 1.0) -> Iterator[np.ndarray]: ...

    def close(self) -> None: ...


class StreamingVoiceEngine:
    """One worker's instance for one voice of a streaming engine."""

    def __init__(self, engine: StreamingEngine, voice: str, language: str | None, name: str, options: EngineOptions,
                 release: Callable[[], None] | None = None) -> None:
        self._engine = engine
        self._voice = voice
        self._language = language
        self._release = release
        self.name = name
        self.device = options.device
        self.precision = options.precision
        self.sample_rate = int(engine.sample_rate_hz)

    def stream_chunk(self, chunk: TextChunk, speed: float = 1.0) -> Iterator[np.ndarray]:
        """The engine's own blocks for one sentence, as they come (token-chunk streaming)."""
        for block in self._engine.stream(chunk.text, self._voice, self._language, speed):
            yield np.asarray(block, dtype=np.float32).reshape(-1)

    def synthesize(self, chunks: Sequence[TextChunk], speeds: Sequence[float]) -> list[np.ndarray]:
        audio: list[np.ndarray] = []
        for chunk, speed in zip(chunks, speeds, strict=True):
            if not chunk.text.strip():
                raise ValueError("nothing to speak in this chunk")
            blocks = list(self.stream_chunk(chunk, speed))
            audio.append(np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32))
        return audio

    def close(self) -> None:
        if self._release is not None:
            self._release()
            self._release = None


class StreamingFamily(Family):
    """A text-in family around a streaming engine (see the module docstring)."""

    peak_normalize = False

    def __init__(
        self, spec: FamilySpec, context: FamilyContext, open_engine: Callable[[EngineOptions], StreamingEngine], *,
        engine_name: str, shared: bool, chunk_chars: int = 250, first_chunk_chars: int = 100,
        language: str = "en", voice_languages: Mapping[str, str] | None = None, default_voice: str = "",
    ) -> None:
        self.spec = spec
        self.engines = (engine_name,)
        self.chunk_limit = chunk_chars
        self.first_chunk_limit = min(first_chunk_chars, chunk_chars)
        self._open = open_engine
        self._shared = shared
        self._lock = threading.Lock()
        self._front_end = TextFrontEnd()
        options = EngineOptions.from_settings(context.settings).for_worker(0)
        try:
            first = open_engine(options)
        except StartupError:
            raise
        except Exception as exc:
            raise StartupError(f"model family {spec.name}: its engine did not start: {type(exc).__name__}: {exc}",
                               hint=f"check {spec.weights}") from exc
        self._engines: dict[Any, StreamingEngine] = {0 if not shared else "shared": first}
        self._refs: dict[Any, int] = {}
        names = sorted(str(v) for v in first.voices())
        languages = voice_languages or {}
        self.sample_rate_hz = int(first.sample_rate_hz)
        self._voices = {n: Voice(n, languages.get(n, language), self.sample_rate_hz, "engine") for n in names}
        if not self._voices:
            first.close()
            raise StartupError(f"model family {spec.name} has no voices", hint=f"see {spec.weights}")
        own = default_voice if default_voice in self._voices else names[0]
        self._default = served_default_voice(spec.name, self._voices, own, context.settings, context.primary)

    def voices(self) -> Mapping[str, Voice]:
        return self._voices

    def default_voice(self) -> str:
        return self._default

    def front_end(self, voice: str) -> TextFrontEnd:
        return self._front_end

    def create(self, engine: str, voice: str, options: EngineOptions, worker: int) -> StreamingVoiceEngine:
        if engine not in self.engines:
            raise ValueError(f"model family {self.name} runs on engine {self.engines[0]}, not {engine!r}")
        key: Any = "shared" if self._shared else worker
        with self._lock:
            if key not in self._engines:
                if worker == WIDE_INSTANCE:
                    raise ValueError(f"model family {self.name} has no solo-wide instance")
                self._engines[key] = self._open(options)
            self._refs[key] = self._refs.get(key, 0) + 1
            shared = self._engines[key]
        language = self._voices[voice].language
        return StreamingVoiceEngine(shared, voice, language, engine, options, lambda: self._release(key))

    def _release(self, key: Any) -> None:
        with self._lock:
            self._refs[key] -= 1
            if self._refs[key] <= 0 and key != 0 and key != "shared":
                del self._refs[key]
                self._engines.pop(key).close()

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"engine_objects": len(self._engines), "shared_engine": self._shared}

    def close(self) -> None:
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
            self._refs.clear()
        for engine in engines:
            engine.close()


def streaming_loader(
    open_engine: Callable[[FamilySpec, FamilyContext, EngineOptions], StreamingEngine], **kwargs: Any,
) -> Callable[[FamilySpec, FamilyContext], StreamingFamily]:
    """A ``FamilySpec.loader`` for a streaming engine: ``open_engine(spec, context, options)`` builds one."""

    def load(spec: FamilySpec, context: FamilyContext) -> StreamingFamily:
        return StreamingFamily(spec, context, lambda options: open_engine(spec, context, options), **kwargs)

    return load


__all__ = ["StreamingEngine", "StreamingFamily", "StreamingVoiceEngine", "streaming_loader"]
