"""The IndexTTS2 adapter: ``indextts.infer_v2.IndexTTS2`` behind the engine protocol.

Runs only in IndexTTS2's own environment (its pins: Python < 3.12, torch 2.8.*, transformers
4.52.1, the ``indextts`` package); torch and indextts are imported when the model loads, so
``--help`` and argument errors work anywhere. Facts this relies on (index-tts, infer_v2.py):

- ``IndexTTS2(cfg_path, model_dir, use_fp16, device, use_cuda_kernel, ...)``; newer versions
  also take ``use_torch_compile``, ``use_qwen_emo`` (load the Qwen emotion model or not) and
  ``aux_paths`` (local paths of w2v-BERT 2.0, the MaskGCT semantic codec, CAMPPlus and BigVGAN;
  without it they are downloaded). Only the arguments the installed version accepts are passed.
- ``infer(spk_audio_prompt, text, output_path=None, stream_return=True)`` yields one tensor per
  text segment (shape (1, n), scaled to the int16 range) and the silence between segments,
  at 22,050 Hz; versions before ``stream_return`` (September 2025) return ``(rate, int16 array)``
  at the end, served as one chunk. ``use_emo_text=True`` derives the emotion from the text
  (needs the Qwen model).
- ``use_fp16`` halves the GPT only; s2mel and BigVGAN stay fp32. It is ignored on the CPU.

Nothing is downloaded at run time: HF_HUB_OFFLINE and TRANSFORMERS_OFFLINE are set, and the
auxiliary models must be in ``MODEL_DIR/hf_cache/`` (see :data:`AUX_FILES`).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import inspect
import logging
import os
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np

from .adapter import Adapter, LoadFailed, OutOfMemory

log = logging.getLogger("indextts2-engine")

SAMPLE_RATE_HZ = 22050
"""infer_v2 writes its output at 22.05 kHz (BigVGAN 22 kHz)."""
INT16_SCALE = 32767.0

AUX_FILES = {
    "w2v_bert": "hf_cache/w2v-bert-2.0",
    "semantic_codec": "hf_cache/semantic_codec_model.safetensors",
    "campplus": "hf_cache/campplus_cn_common.bin",
    "bigvgan": "hf_cache/bigvgan",
}
"""The auxiliary models' local layout under the model directory (as indextts's
``ensure_models_available(model_dir)`` leaves it on a machine with network access)."""
BIGVGAN_FILES = ("config.json", "bigvgan_generator.pt")


class IndexTTS2Adapter(Adapter):
    name = "indextts2"
    sample_rate_hz = SAMPLE_RATE_HZ
    languages = ("zh", "en")
    native_speed = False

    def __init__(self, *, model_dir: Path, cfg_path: Path, device: str, fp16: bool, emotion: bool,
                 cuda_kernel: bool, torch_compile: bool) -> None:
        self.model_dir = model_dir
        self.cfg_path = cfg_path
        self.device = device
        self.fp16 = fp16
        self.emotion = emotion
        self.cuda_kernel = cuda_kernel
        self.torch_compile = torch_compile
        self._tts: Any = None
        self._emotion_loaded = False
        self._streams = False

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--cfg", type=Path, help="config file (default: MODEL_DIR/config.yaml)")
        parser.add_argument("--fp16", action="store_true", help="run the GPT in fp16 (CUDA only)")
        parser.add_argument("--emotion", action="store_true",
                            help="load the Qwen emotion model and take each request's emotion from its text "
                                 "(default: off; the emotion follows the reference recording)")
        parser.add_argument("--cuda-kernel", action="store_true",
                            help="BigVGAN's fused CUDA activation kernel (built at load: needs the CUDA toolkit)")
        parser.add_argument("--torch-compile", action="store_true", help="torch.compile where indextts supports it")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> IndexTTS2Adapter:
        if args.model_dir is None:
            raise ValueError("--model-dir is required with --adapter real")
        model_dir = args.model_dir.resolve()
        return cls(model_dir=model_dir, cfg_path=args.cfg or model_dir / "config.yaml", device=args.device,
                   fp16=args.fp16, emotion=args.emotion, cuda_kernel=args.cuda_kernel,
                   torch_compile=args.torch_compile)

    def _aux_paths(self) -> dict[str, str]:
        paths = {key: self.model_dir / rel for key, rel in AUX_FILES.items()}
        missing = [str(p) for key, p in paths.items() if key != "w2v_bert" and key != "bigvgan" and not p.is_file()]
        w2v = paths["w2v_bert"]
        if not w2v.is_dir() or not any(w2v.iterdir()):
            missing.append(f"{w2v}/ (the facebook/w2v-bert-2.0 files)")
        missing += [str(paths["bigvgan"] / f) for f in BIGVGAN_FILES if not (paths["bigvgan"] / f).is_file()]
        if missing:
            raise LoadFailed("auxiliary models missing from the model directory: " + ", ".join(missing)
                             + "; on a machine with network access run, in IndexTTS2's environment, "
                             f"`python -c \"from indextts.utils.model_download import ensure_models_available; "
                             f"ensure_models_available('{self.model_dir}')\"` and copy the directory here")
        return {key: str(p) for key, p in paths.items()}

    def load(self) -> dict[str, Any]:
        if not self.model_dir.is_dir():
            raise LoadFailed(f"model directory {self.model_dir} does not exist; put IndexTTS2's files "
                             "(config.yaml, gpt.pth, s2mel.pth, ...) there")
        if not self.cfg_path.is_file():
            raise LoadFailed(f"IndexTTS2 config {self.cfg_path} does not exist (it ships with the model files)")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import torch
            from indextts.infer_v2 import IndexTTS2
        except ImportError as exc:
            raise LoadFailed(f"IndexTTS2 is not installed for {sys.executable} ({exc}); the engine must run in "
                             "IndexTTS2's own environment: set TAILOR_INDEXTTS2_PYTHON to its interpreter") from None
        accepted = inspect.signature(IndexTTS2).parameters
        kwargs: dict[str, Any] = {"cfg_path": str(self.cfg_path), "model_dir": str(self.model_dir),
                                  "use_fp16": self.fp16, "use_cuda_kernel": self.cuda_kernel,
                                  "device": self.device}
        notes: list[str] = []
        if "use_qwen_emo" in accepted:
            kwargs["use_qwen_emo"] = self.emotion
        elif not self.emotion:
            notes.append("this indextts version always loads its Qwen emotion model (no use_qwen_emo): "
                         "it holds more memory than a plan without it assumes")
        if self.torch_compile:
            if "use_torch_compile" not in accepted:
                raise LoadFailed("--torch-compile: this indextts version has no use_torch_compile")
            kwargs["use_torch_compile"] = True
        if "aux_paths" in accepted:
            kwargs["aux_paths"] = self._aux_paths()
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
        for note in notes:
            log.warning("%s", note)
        try:
            self._tts = IndexTTS2(**kwargs)
        except torch.cuda.OutOfMemoryError as exc:
            raise LoadFailed(f"out of GPU memory while loading IndexTTS2 on {self.device}: {exc}") from None
        except FileNotFoundError as exc:
            raise LoadFailed(f"a model file is missing: {exc}") from None
        self._emotion_loaded = getattr(self._tts, "qwen_emo", None) is not None
        self._streams = "stream_return" in inspect.signature(self._tts.infer).parameters
        try:
            version = importlib.metadata.version("indextts")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        return {"model": "IndexTTS2", "indextts": version, "torch": torch.__version__,
                "device": str(getattr(self._tts, "device", self.device)),
                "fp16_gpt": bool(getattr(self._tts, "use_fp16", self.fp16)),
                "emotion_model": self._emotion_loaded, "streams_segments": self._streams, "notes": notes}

    def synthesize(self, text: str, voice: Path, language: str | None, speed: float) -> Generator[np.ndarray, None, None]:
        import torch

        kwargs: dict[str, Any] = {"spk_audio_prompt": str(voice), "text": text, "output_path": None,
                                  "verbose": False}
        if self._emotion_loaded:
            kwargs["use_emo_text"] = True
        try:
            with torch.no_grad():
                if self._streams:
                    for piece in self._tts.infer(stream_return=True, **kwargs):
                        if isinstance(piece, torch.Tensor):
                            yield _scaled(piece.detach().to("cpu", torch.float32).numpy())
                else:  # before streaming existed: (rate, int16 array of shape (n, 1)) at the end
                    _rate, whole = self._tts.infer(**kwargs)
                    yield _scaled(np.asarray(whole, dtype=np.float32))
        except torch.cuda.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            raise OutOfMemory(f"out of GPU memory on a {len(text)}-character text: {exc}; shorter inputs, "
                              "fp16 (--fp16) or fewer engine instances per GPU need less") from None


def _scaled(int16_range: np.ndarray) -> np.ndarray:
    """IndexTTS2's samples (floats or ints in the int16 range) as float32 in [-1, 1]."""
    return (int16_range.reshape(-1) / INT16_SCALE).astype(np.float32)
