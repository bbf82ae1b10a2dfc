"""IndexTTS2 as a served model family: ``TAILOR_MODEL=indextts2``.

The family's loader (``FamilySpec.loader`` in runtime/families/catalog.py) starts TAILOR_WORKERS
IndexTTS2 engine processes through :func:`runtime.families.indextts2.loader.load` (each its own model
copy in its own interpreter, TAILOR_INDEXTTS2_PYTHON) and serves them through
:class:`~runtime.families.streaming.StreamingFamily` with one shared :class:`IndexTTS2Client`: the
client hands each sentence to an idle engine process (one synthesis at a time per process, waiting
while all are busy) and yields the audio blocks as the engine sends them; the runtime's scheduler,
admission and request deadlines apply as for every family.

Where the model is looked for: ``TAILOR_MODELS_DIR/indextts2/`` (see :mod:`runtime.families.paths`),
then the image's ``<prefix>/share/tailor/models/indextts2/``; the voices are the reference recordings
in TAILOR_INDEXTTS2_VOICES_DIR (default ``MODEL_DIR/voices``), one ``NAME.wav`` each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from runtime.engines.base import EngineOptions
from runtime.errors import BrokenConfig, StartupError
from runtime.families.base import FamilyContext
from runtime.families.paths import family_dirs
from runtime.families.spec import FamilySpec
from runtime.families.streaming import StreamingEngine, StreamingFamily

from .client import IndexTTS2Client
from .loader import load as start_engines
from .loader import options_from_settings

CHUNK_CHARS = 250
"""Characters per synthesis call (a sentence, or a piece of a long one); IndexTTS2 segments further
itself, so this bounds the time one call holds an engine process, not the model's input."""
FIRST_CHUNK_CHARS = 100
"""Bound of a streamed answer's first call (time to first audio)."""


def model_dir(context: FamilyContext) -> Path:
    """The IndexTTS2 model directory: the first of the family's folders that exists. For the
    stand-in adapter (no weights) the writable one, even when absent; for the real one a
    StartupError naming where it was looked for."""
    candidates = family_dirs("indextts2", context.settings.models_dir, context.environ)
    for directory in candidates:
        if directory.is_dir():
            return directory
    if context.settings.indextts2_adapter == "standin":
        return candidates[0]
    raise BrokenConfig(
        "no IndexTTS2 model directory: looked in " + ", ".join(str(d) for d in candidates),
        hint=f"put the IndexTTS2 checkpoint (config.yaml, gpt.pth, s2mel.pth, bpe.model, ...) in {candidates[0]} "
             "or point TAILOR_MODELS_DIR at the folder holding indextts2/; reference recordings go in its "
             "voices/ folder (or TAILOR_INDEXTTS2_VOICES_DIR)")


class IndexTTS2Family(StreamingFamily):
    """The streaming family around one :class:`IndexTTS2Client`; ``/readyz`` shows its engine
    processes (state, pid, busy, restarts, and the reason of one that is not ready)."""

    @property
    def client(self) -> IndexTTS2Client:
        engine = self._engines.get("shared")
        if not isinstance(engine, IndexTTS2Client):
            raise RuntimeError("the IndexTTS2 engines are closed")
        return engine

    def unavailable(self) -> str | None:
        engine = self._engines.get("shared")
        if not isinstance(engine, IndexTTS2Client):
            return "the IndexTTS2 engines are closed"
        processes = engine.status()
        if any(p["state"] == "ready" for p in processes):
            return None
        return "no IndexTTS2 engine process is ready: " + "; ".join(
            f"engine {p['instance']}: {p['state']}" + (f" ({p['reason']})" if p["reason"] else "") for p in processes)

    def status(self) -> dict[str, Any]:
        engine = self._engines.get("shared")
        if not isinstance(engine, IndexTTS2Client):
            return {"engines_ready": 0, "engine_processes": []}
        processes = engine.status()
        options = engine.options
        return {
            "engines_ready": sum(1 for p in processes if p["state"] == "ready"),
            "engine_processes": processes,
            "engine_adapter": options.adapter,
            "engine_python": options.python,
            "model_dir": str(options.model_dir),
            "voices_dir": str(options.voices_dir),
        }


def load(spec: FamilySpec, context: FamilyContext) -> IndexTTS2Family:
    """The ``FamilySpec.loader`` of indextts2: engine processes started and ready, or StartupError
    (the engine's reason and last output) and nothing left running."""
    directory = model_dir(context).expanduser().resolve()
    options = options_from_settings(context.settings, directory)
    if not options.voices_dir.is_dir():
        raise BrokenConfig(
            f"IndexTTS2 voices directory {options.voices_dir} does not exist",
            hint="put reference recordings there, one NAME.wav per voice (a few seconds of one speaker), "
                 "or point TAILOR_INDEXTTS2_VOICES_DIR at such a folder")

    def open_engine(_: EngineOptions) -> StreamingEngine:
        # The client's sample_rate_hz is a read-only property; StreamingEngine declares a plain
        # attribute (which it only reads), hence the cast.
        return cast(StreamingEngine, start_engines(directory, options))

    language = "en"
    family = IndexTTS2Family(spec, context, open_engine, engine_name="process", shared=True,
                             chunk_chars=CHUNK_CHARS, first_chunk_chars=FIRST_CHUNK_CHARS, language=language)
    languages = family.client.languages
    if languages and language not in languages:
        family.close()
        raise StartupError(f"the IndexTTS2 engine reads {', '.join(languages)}, not {language}",
                           hint="use an IndexTTS2 engine that reads English")
    return family


__all__ = ["IndexTTS2Family", "load", "model_dir"]
