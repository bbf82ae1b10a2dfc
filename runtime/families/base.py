"""The runtime side of a model family: what the serving layer (service, engine chain, scheduler,
HTTP app) asks of a family, and nothing else.

A family's loader (``FamilySpec.loader``, resolved lazily by :mod:`runtime.families.registry`)
gets a :class:`FamilyContext` and returns a :class:`Family`. The family then answers:

* **voices** (:meth:`Family.voices`): names, language, sample rate, where each came from;
* **its text front end** per voice (:meth:`Family.front_end`): text to :class:`TextChunk` s, either
  phoneme ids (Piper's and Kokoro's espeak-ng phonemes) or plain text (:class:`TextFrontEnd`, for
  XTTS-v2 and IndexTTS2, whose models read text themselves);
* **instances** (:meth:`Family.create`): one :class:`VoiceEngine` per synthesis worker (and one for
  the solo-wide instance), built with that worker's :class:`EngineOptions`. The scheduler never
  calls one instance from two threads at once, so a family that is not ``concurrent_safe`` needs
  nothing more;
* its declaration (:attr:`Family.spec`): sample rate, whether it batches (the scheduler batches
  only then), how it streams, whether one instance is concurrent-safe.

Everything numeric about memory stays in the declaration (``FamilySpec.memory``), which the planner
reads without importing any of this.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from runtime.engines.base import EngineOptions, TimedAudio
from runtime.families.spec import FamilySpec
from runtime.text.frontend import (
    FIRST_CHUNK_PHONEMES,
    MAX_PHONEMES_PER_CHUNK,
    ChunkingFrontEnd,
    TextChunk,
)

if TYPE_CHECKING:
    import numpy as np

    from runtime.settings import Settings
    from runtime.text.normalize import Segment
    from runtime.text.timestamps import TokenMap

WIDE_INSTANCE = -1
"""The ``worker`` argument of :meth:`Family.create` for the solo-wide instance (``TAILOR_SOLO_WIDE``)."""


@dataclass(frozen=True)
class Voice:
    """One voice of a family, as listed by ``GET /v1/audio/voices`` and used to read the input."""

    name: str
    language: str
    """Language of the text this voice reads (``en_US``, ``en-gb``...): normalisation and the script
    check follow it."""
    sample_rate_hz: int
    source: str
    """Where it came from: ``bundled``, ``voices_dir``, ``package``, ``models_dir``..."""
    variant: str = "fp32"
    """The model file variant serving it (Piper's TAILOR_MODEL_VARIANT; Kokoro's precision)."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """Extra fields for the voice listing (e.g. Kokoro's style-vector origin)."""


class FrontEnd(Protocol):
    """Text to synthesis chunks for one voice. Both methods run off the event loop."""

    def prepare(self, text: str, limit: int = ..., first_limit: int | None = None) -> list[TextChunk]:
        """Sentences of ``text`` bounded by ``limit`` units (phonemes, or characters for a text
        front end); the first by ``first_limit``. Chunks with nothing to speak are dropped."""
        ...

    def prepare_segments(
        self, segments: Sequence[Segment], limit: int = ..., first_limit: int | None = None,
    ) -> list[TextChunk]:
        """``prepare`` per normalised segment, keeping each segment's rate and pause."""
        ...

    def ids(self, text: str) -> tuple[int, ...]:
        """The ids of ``text`` for this voice (a fallback entry re-reads a chunk with its own voice);
        empty for a text front end."""
        ...

    def token_map(self) -> TokenMap | None:
        """How the ids map to words (word timestamps); None where the family's models report no
        durations (a text front end)."""
        ...


class VoiceEngine(Protocol):
    """One worker's instance of a family for one voice: chunks in, float32 mono audio out."""

    name: str
    """The compute engine: ``onnx``, ``torch``, ``process``..."""
    device: str
    precision: str
    sample_rate: int

    def synthesize(self, chunks: Sequence[TextChunk], speeds: Sequence[float]) -> list[np.ndarray]:
        """One array per chunk, at :attr:`sample_rate`. ``speeds`` is the engine-side speed per chunk
        (the service passes 1.0 and time-stretches after; a family may honour it natively).
        More than one chunk only when the family batches. Raise to let the fallback chain try the
        next entry."""
        ...

    def close(self) -> None: ...


class TimedVoiceEngine(VoiceEngine, Protocol):
    """Optional: an instance that can also say how long each phoneme id lasts (word timestamps)."""

    supports_durations: bool
    """False where this instance's model does not expose its durations after all."""

    def synthesize_timed(self, chunk: TextChunk, speed: float) -> TimedAudio:
        """One chunk's audio and the model's samples per phoneme id of ``chunk.phoneme_ids``."""
        ...


EngineFactory = Callable[..., Any]
"""Piper's compute-engine factory ``(engine_name, model_path, sample_rate, options) -> Engine``
(:func:`runtime.engines.create_engine`); tests inject wrappers through it."""


@dataclass(frozen=True)
class FamilyContext:
    """What a loader gets: the runtime's settings and environment, and its place among the served
    families (TAILOR_VOICE names the first family's default voice)."""

    settings: Settings
    environ: Mapping[str, str]
    primary: bool = True
    engine_factory: EngineFactory | None = None
    """For families that build on the engine registry (Piper); None: the registry's own."""


class Family(abc.ABC):
    """A loaded family. Subclasses set :attr:`spec` and :attr:`engines` and implement the rest."""

    spec: FamilySpec
    engines: tuple[str, ...] = ()
    """Engine names :meth:`create` accepts, the family's own choice first."""
    chunk_limit: int = MAX_PHONEMES_PER_CHUNK
    """Largest chunk in front-end units (phonemes or characters) per synthesis call."""
    first_chunk_limit: int = FIRST_CHUNK_PHONEMES
    """Bound of a streamed answer's first chunk (time to first audio)."""
    peak_normalize: bool = True
    """Scale each chunk's audio to peak 1.0 (as Piper does); False: only clip to [-1, 1]."""

    @property
    def name(self) -> str:
        return self.spec.name

    @abc.abstractmethod
    def voices(self) -> Mapping[str, Voice]:
        """Every usable voice, by name."""

    @abc.abstractmethod
    def default_voice(self) -> str:
        """The voice for requests that name none (or name an OpenAI voice)."""

    @abc.abstractmethod
    def front_end(self, voice: str) -> FrontEnd:
        """The text front end of ``voice`` (may be shared between voices)."""

    @abc.abstractmethod
    def create(self, engine: str, voice: str, options: EngineOptions, worker: int) -> VoiceEngine:
        """A new instance for ``worker`` (or :data:`WIDE_INSTANCE`); raise on failure (the engine
        chain records it and tries the next entry)."""

    def engine(self, requested: str) -> str:
        """The engine to run: ``requested`` (TAILOR_ENGINE) if this family has it, else its own."""
        return requested if requested in self.engines or not self.engines else self.engines[0]

    def voice(self, name: str) -> Voice:
        """One voice's description; KeyError when the family has no such voice."""
        return self.voices()[name]

    def status(self) -> dict[str, Any]:
        """Family-specific facts for ``/readyz`` (model file, precision actually loaded...)."""
        return {}

    def unavailable(self) -> str | None:
        """Why this family cannot serve right now (its engine processes are all down, say), or
        None when it can; ``/readyz`` is then not ready with this reason."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook: most families hold nothing beyond their instances
        """Release what the family holds beyond its instances (the engine chain closes those)."""


Loader = Callable[[FamilySpec, FamilyContext], Family]
"""The callable ``FamilySpec.loader`` names."""


class TextFrontEnd(ChunkingFrontEnd):
    """The front end of a family whose model reads text (XTTS-v2, IndexTTS2): sentences bounded in
    characters, no ids; the chunk carries the text."""

    _SPEAKABLE = re.compile(r"\w")

    def phonemes(self, text: str) -> list[str]:
        return list(text)

    def _ids(self, phonemes: Sequence[str]) -> tuple[int, ...]:
        return ()

    def _chunk(self, piece: str, phonemes: Sequence[str]) -> TextChunk | None:
        return TextChunk(piece, ()) if self._SPEAKABLE.search(piece) else None


def served_default_voice(
    family: str, voices: Mapping[str, Voice], own_default: str, settings: Settings, primary: bool,
) -> str:
    """The default voice of a family: TAILOR_VOICE when it names one of this family's voices;
    otherwise the family's own default, unless this is the first served family and TAILOR_VOICE
    was set to something else (a StartupError: the operator asked for a voice it does not have)."""
    from runtime.errors import StartupError
    from runtime.settings import variable

    requested = settings.default_voice
    if requested in voices:
        return requested
    if primary and requested != variable("TAILOR_VOICE").default:
        raise StartupError(
            f"default voice {requested!r} (TAILOR_VOICE) is not a voice of model family {family}; "
            f"available: {', '.join(sorted(voices)) or 'none'}",
            hint="set TAILOR_VOICE to one of them, or leave it unset for the family's own default")
    if own_default not in voices:
        raise StartupError(f"model family {family} has no voices", hint="see the README for where its voices are looked for")
    return own_default


__all__ = [
    "WIDE_INSTANCE", "EngineFactory", "Family", "FamilyContext", "FrontEnd", "Loader", "TextFrontEnd",
    "TimedVoiceEngine", "Voice", "VoiceEngine", "served_default_voice",
]
