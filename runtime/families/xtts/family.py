"""XTTS-v2 served by the runtime: the family seam's loader (``runtime.families.xtts.family:load``).

``TAILOR_MODEL=xtts-v2`` serves a local checkpoint directory through
:class:`~runtime.families.streaming.StreamingFamily`:

* **Model.** The first of ``TAILOR_MODELS_DIR/xtts-v2/`` and the image's
  ``<prefix>/share/tailor/models/xtts-v2/`` that holds a checkpoint (``config.json``, ``model.pth``,
  ``vocab.json``, optionally ``speakers_xtts.pth``, as Coqui released them). Nothing is downloaded.
* **Voices.** Reference recordings (``NAME.wav`` / ``NAME.flac``, 6 to 10 s of one clean speaker) in
  ``TAILOR_VOICES_DIR`` when it is set, else in the checkpoint's ``voices/`` folder; plus the
  checkpoint's built-in speakers (their names with spaces and other characters the API refuses
  turned into ``_``: ``Claribel Dervla`` is served as ``Claribel_Dervla``). A recording named ``NAME.LANG.wav`` (``LANG`` one of the model's
  languages: ``anna.de.wav``) reads text in that language; every other voice reads English. Every
  recording is cloned once at start-up; one that cannot be used (unreadable, shorter than 1 s) is left
  out with the reason in the log and in ``/readyz``. The voice list is read at start-up: restart to add
  a recording.
* **Streaming.** By GPT token chunks: each block (:data:`STREAM_CHUNK_TOKENS` tokens, about 0.9 s of
  speech) goes to the client as the engine makes it (the seam's ``stream_chunk``/``Job.on_block``).
* **Instances.** One instance is not safe to call concurrently (coqui-tts keeps each generation's prompt
  on the model), so each synthesis worker (``TAILOR_WORKERS``) loads its own copy of the model and the
  scheduler gives one worker one request at a time; the engine's own lock backs that up. There is no
  solo-wide instance. ``/readyz`` shows, per instance, the most generations ever seen running at once on
  it (always 1).
* **Devices and precision.** ``TAILOR_DEVICE=cpu`` runs fp32 only: the CPU gets no fp16 autocast
  (fp16 matmuls are slower than fp32 on CPUs without AVX-512-FP16/AMX, and nothing was measured to pay
  here). ``TAILOR_DEVICE=cuda`` runs fp32 by default; ``TAILOR_PRECISION=fp16`` runs the GPT and the
  vocoder under ``torch.autocast(float16)`` (weights stay fp32), an opt-in whose gain has not been
  measured on a GPU yet. ``TAILOR_THREADS_PER_WORKER`` sets torch's intra-op threads.

The weights are under the Coqui Public Model License: non-commercial use only.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from runtime.engines.base import EngineOptions
from runtime.errors import StartupError
from runtime.families.base import FamilyContext
from runtime.families.paths import family_dirs
from runtime.families.spec import FamilySpec
from runtime.families.streaming import StreamingFamily
from runtime.families.voices import is_valid_voice_name
from runtime.families.xtts.engine import XttsEngine
from runtime.families.xtts.errors import CheckpointError, XttsError
from runtime.families.xtts.loader import REQUIRED_FILES, SPEAKERS_FILE, XttsOptions
from runtime.families.xtts.loader import load as load_engine

_LOG = logging.getLogger("tailor.runtime.xtts")

STREAM_CHUNK_TOKENS = 20
"""GPT tokens per streamed block (coqui-tts's default; one token is 1024 samples at 22.05 kHz, so 20
are about 0.93 s of speech). Fewer would bring the first audio earlier but cost more vocoder work: each
block decodes the sentence so far again."""
CHUNK_CHARS = 250
"""Characters per synthesis call (XTTS's limit for English; the engine cuts further for languages with
a lower limit, and by text tokens)."""
FIRST_CHUNK_CHARS = 100
DEFAULT_LANGUAGE = "en"
VOICES_FOLDER = "voices"
LICENCE_NOTICE = "XTTS-v2 weights: Coqui Public Model License, non-commercial use only"


def find_model_dir(spec: FamilySpec, context: FamilyContext) -> Path:
    """The first family folder that holds a checkpoint; CheckpointError naming what is missing where."""
    folders = family_dirs(spec.name, context.settings.models_dir, context.environ)
    for folder in folders:
        if any((folder / name).is_file() for name in REQUIRED_FILES):
            return folder  # present, maybe incomplete: the loader names the missing files
    where = " or ".join(str(f) for f in folders)
    raise CheckpointError(
        f"no XTTS-v2 checkpoint in {where}",
        f"copy config.json, model.pth and vocab.json (and optionally {SPEAKERS_FILE}) of the XTTS-v2 release "
        f"into {folders[0]} (TAILOR_MODELS_DIR/{spec.name}/); no package ships them and nothing is downloaded")


def find_voices_dir(context: FamilyContext, model_dir: Path) -> Path | None:
    """TAILOR_VOICES_DIR when set (it must be a folder), else the checkpoint's voices/ (when there)."""
    setting = context.settings.voices_dir.strip()
    if setting:
        folder = Path(setting).expanduser()
        if not folder.is_dir():
            raise StartupError(f"TAILOR_VOICES_DIR={setting!r} is not a directory",
                               hint="point it at a folder of reference recordings (NAME.wav or NAME.flac), "
                                    "or leave it unset to use the checkpoint's voices/ folder")
        return folder
    folder = model_dir / VOICES_FOLDER
    return folder if folder.is_dir() else None


def voice_language(name: str, languages: tuple[str, ...]) -> str:
    """``anna.de`` reads German; a name without a language suffix reads English."""
    stem, dot, suffix = name.rpartition(".")
    return suffix.lower() if dot and stem and suffix.lower() in languages else DEFAULT_LANGUAGE


def served_name(name: str) -> str:
    """A voice name the API accepts: letters, digits, ``_``, ``-`` and ``.``; anything else becomes ``_``
    (the release's built-in speakers are called ``Claribel Dervla``...: served as ``Claribel_Dervla``)."""
    return re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9_.-]", "_", name)).strip(".") or "_"


class XttsInstance:
    """One loaded XTTS-v2 model in the shape the streaming seam asks for (voice names, not voice records;
    the voice's language, not a request's), counting how many generations overlap on it."""

    def __init__(self, engine: XttsEngine, voices: Mapping[str, str]) -> None:
        self.engine = engine
        self.sample_rate_hz = engine.sample_rate_hz
        self._voices = dict(voices)
        """Served name -> the engine's name."""
        self._lock = threading.Lock()
        self.active = 0
        self.most_active = 0
        self.generations = 0

    def voices(self) -> list[str]:
        return list(self._voices)

    def stream(self, text: str, voice: str, language: str | None = None, speed: float = 1.0) -> Iterator[np.ndarray]:
        blocks = self.engine.stream(text, self._voices.get(voice, voice), language or DEFAULT_LANGUAGE, speed)
        return self._counted(blocks)

    def _counted(self, blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        with self._lock:
            self.active += 1
            self.generations += 1
            self.most_active = max(self.most_active, self.active)
        try:
            yield from blocks
        finally:
            close = getattr(blocks, "close", None)
            if close is not None:
                close()  # releases the engine's lock now when the request is abandoned
            with self._lock:
                self.active -= 1

    def close(self) -> None:
        self.engine.close()


class XttsFamily(StreamingFamily):
    """XTTS-v2 behind the streaming seam (see the module docstring)."""

    def __init__(self, spec: FamilySpec, context: FamilyContext) -> None:
        self.model_dir = find_model_dir(spec, context)
        self.voices_dir = find_voices_dir(context, self.model_dir)
        self._instances: list[XttsInstance] = []
        self._unusable: dict[str, str] = {}
        first = self._open(EngineOptions.from_settings(context.settings).for_worker(0), check_voices=True)
        pending = [first]

        def open_engine(options: EngineOptions) -> XttsInstance:
            return pending.pop() if pending else self._open(options)

        names = first.voices()
        recordings = [served_name(v.name) for v in first.engine.voices() if v.source == "recording"
                      and served_name(v.name) in names]
        languages = {n: voice_language(n, first.engine.languages) for n in names}
        try:
            super().__init__(spec, context, open_engine, engine_name="torch", shared=False, chunk_chars=CHUNK_CHARS,
                             first_chunk_chars=FIRST_CHUNK_CHARS, language=DEFAULT_LANGUAGE,
                             voice_languages=languages, default_voice=recordings[0] if recordings else "")
        except BaseException:
            first.close()
            raise
        _LOG.warning("%s (model %s)", LICENCE_NOTICE, self.model_dir)

    def _open(self, options: EngineOptions, check_voices: bool = False) -> XttsInstance:
        engine = load_engine(self.model_dir, XttsOptions(
            device="cuda" if options.device == "cuda" else "cpu", device_index=options.device_index,
            precision=options.precision, voices_dir=self.voices_dir, stream_chunk_tokens=STREAM_CHUNK_TOKENS,
            threads=options.intra_op_threads))
        names: dict[str, str] = {}
        # Recordings first: a built-in speaker never shadows one.
        for voice in sorted(engine.voices(), key=lambda v: v.source != "recording"):
            served = served_name(voice.name)
            if served in names or not is_valid_voice_name(served):
                _LOG.warning("XTTS-v2 voice %r left out: its served name %s is %s", voice.name, served,
                             "taken" if served in names else "not a valid voice name (too long)")
                continue
            if check_voices and voice.source == "recording":
                try:
                    engine.conditioning(voice.name)  # clones it now (cached): a bad recording shows at start-up
                except XttsError as exc:
                    self._unusable[voice.name] = exc.message
                    _LOG.warning("XTTS-v2 voice %s left out: %s", voice.name, self._unusable[voice.name])
                    continue
            elif voice.name in self._unusable:
                continue
            names[served] = voice.name
        instance = XttsInstance(engine, names)
        self._instances.append(instance)
        return instance

    def status(self) -> dict[str, Any]:
        report = self._instances[0].engine.report if self._instances else None
        return {
            **super().status(),
            "model_dir": str(self.model_dir),
            "voices_dir": str(self.voices_dir) if self.voices_dir is not None else None,
            "licence": self.spec.licence,
            "commercial_use": self.spec.commercial_use,
            "stream_chunk_tokens": STREAM_CHUNK_TOKENS,
            "unusable_voices": dict(self._unusable),
            "loaded": None if report is None else {
                "device": report.device, "precision": report.precision, "params": report.params,
                "seconds": round(report.seconds, 2), "coqui_tts": report.coqui_version,
                "torchaudio_extension": report.torchaudio_extension},
            "instances": [{"generations": i.generations, "most_concurrent": i.most_active}
                          for i in self._instances if i.engine.model is not None],
        }


def load(spec: FamilySpec, context: FamilyContext) -> XttsFamily:
    """The ``FamilySpec.loader`` of ``xtts-v2``."""
    return XttsFamily(spec, context)


__all__ = ["LICENCE_NOTICE", "STREAM_CHUNK_TOKENS", "XttsFamily", "XttsInstance", "find_model_dir",
           "find_voices_dir", "load", "served_name", "voice_language"]
