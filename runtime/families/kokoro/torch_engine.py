"""Kokoro-82M in PyTorch on CUDA, through the ``kokoro`` package's ``KModel`` (only when it is
installed: it is not a Tailor dependency) and local weights: ``config.json`` and ``kokoro-v1_0.pth``
in the family folder (``TAILOR_MODELS_DIR/kokoro-82m/``). Nothing is downloaded: without both files
this engine refuses to load and says where they go.

Not exercised on this project's CPU-only machines; the ONNX engine is the tested path.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from runtime.engines.base import EngineError, EngineOptions, TimedAudio
from runtime.families.kokoro.onnx_engine import SAMPLE_RATE, timed_audio
from runtime.families.kokoro.phonemes import chunk_ids, model_ids
from runtime.families.kokoro.voices import StyleVoice
from runtime.text.frontend import TextChunk

CHECKPOINT = "kokoro-v1_0.pth"
CONFIG = "config.json"


def load_model(folders: Sequence[Path], options: EngineOptions) -> Any:
    """A ``KModel`` on ``cuda:N`` from the first folder with both files (EngineError with the reason)."""
    if options.device != "cuda":
        raise EngineError("the torch Kokoro engine runs on CUDA only; use TAILOR_ENGINE=onnx on the CPU")
    try:
        import torch
        from kokoro import KModel
    except ImportError as exc:
        raise EngineError(f"the torch Kokoro engine needs the `kokoro` package ({exc}); "
                          "pip install kokoro, or use TAILOR_ENGINE=onnx") from exc
    folder = next((f for f in folders if (f / CHECKPOINT).is_file() and (f / CONFIG).is_file()), None)
    if folder is None:
        raise EngineError(f"the torch Kokoro engine needs {CONFIG} and {CHECKPOINT} in "
                          f"{' or '.join(str(f) for f in folders)}; nothing is downloaded")
    if not torch.cuda.is_available():
        raise EngineError("device=cuda was requested but torch sees no CUDA device")
    try:
        model = KModel(config=str(folder / CONFIG), model=str(folder / CHECKPOINT)).eval()
        model = model.to(f"cuda:{options.device_index}")
        if options.precision == "fp16":
            model = model.half()
    except Exception as exc:
        raise EngineError(f"kokoro's KModel could not load {folder / CHECKPOINT}: {exc}") from exc
    return model


class KokoroTorchVoice:
    name = "torch"
    sample_rate = SAMPLE_RATE

    def __init__(self, model: Any, voice: StyleVoice, options: EngineOptions) -> None:
        self._model = model
        self._voice = voice
        self.device = options.device
        self.precision = options.precision if options.precision in ("fp16", "fp32") else "fp32"
        self._device = f"cuda:{options.device_index}"
        self._lock = threading.Lock()

    def synthesize(self, chunks: Sequence[TextChunk], speeds: Sequence[float]) -> list[np.ndarray]:
        return [self._run(chunk, speed)[0] for chunk, speed in zip(chunks, speeds, strict=True)]

    def _run(self, chunk: TextChunk, speed: float) -> tuple[np.ndarray, np.ndarray | None]:
        """One chunk's audio and, where ``KModel`` returns them, its predicted frames per token."""
        import torch

        ids = chunk_ids(chunk)
        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        tokens = torch.tensor([model_ids(ids)], dtype=torch.long, device=self._device)
        style = torch.from_numpy(self._voice.style_for(len(ids))).to(self._device, dtype)
        with self._lock, torch.inference_mode():
            out = self._model.forward_with_tokens(tokens, style, speed)
        wave, durations = (out[0], out[1] if len(out) > 1 else None) if isinstance(out, tuple) else (out, None)
        frames = None if durations is None else np.asarray(durations.reshape(-1).cpu().numpy())
        return wave.float().reshape(-1).cpu().numpy(), frames

    supports_durations = True
    """``KModel.forward_with_tokens`` returns the predicted durations beside the audio; a ``kokoro``
    version that does not makes :meth:`synthesize_timed` say so."""

    def synthesize_timed(self, chunk: TextChunk, speed: float) -> TimedAudio:
        """One chunk's audio and samples per token as the model read them (``phonemes.model_ids``),
        checked as the onnx engine's (whole frames that add up to the audio)."""
        audio, frames = self._run(chunk, speed)
        if frames is None:
            raise EngineError("this kokoro package's KModel returns no durations; word timestamps need "
                              "TAILOR_ENGINE=onnx or a newer kokoro")
        return timed_audio(audio, frames, len(chunk_ids(chunk)) + 2)

    def close(self) -> None:
        self._model = None


__all__ = ["KokoroTorchVoice", "load_model"]
