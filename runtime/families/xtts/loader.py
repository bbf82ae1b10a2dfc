"""Load an XTTS-v2 checkpoint directory into an :class:`~runtime.families.xtts.engine.XttsEngine`.

The directory is the layout of Coqui's release::

    model_dir/
      config.json          the model's XttsConfig (architecture, languages, sampling settings)
      model.pth            the weights: {"model": state_dict} (the original release also
                           pickles its config in it; both forms load)
      vocab.json           the text tokenizer (a Hugging Face tokenizers JSON)
      speakers_xtts.pth    optional: built-in speakers, {name: {"gpt_cond_latent",
                           "speaker_embedding"}}

Voices are reference recordings (``NAME.wav`` / ``NAME.flac``) in ``options.voices_dir``, plus
the built-in speakers. Nothing is downloaded and nothing in ``model_dir`` is written: coqui-tts's
own reader rewrites an original-release ``model.pth`` in place, so the state dict is read here
(read-only, memory-mapped where the file allows) and handed to it.

Memory: ``mmap=True`` maps ``model.pth`` instead of reading it into anonymous memory, so the
load's peak holds the model's parameters plus page cache the kernel can drop, instead of two
anonymous copies of the weights; see benchmarks/RESULTS.md for measured figures.
"""

from __future__ import annotations

import logging
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from runtime.families.xtts._coqui import Coqui, import_coqui
from runtime.families.xtts.errors import CheckpointError, DeviceUnavailable

if TYPE_CHECKING:
    import torch

    from runtime.families.xtts.engine import Conditioning, XttsEngine

log = logging.getLogger(__name__)

REQUIRED_FILES = ("config.json", "model.pth", "vocab.json")
SPEAKERS_FILE = "speakers_xtts.pth"
PRECISIONS = {"cpu": ("fp32",), "cuda": ("fp32", "fp16")}
"""Precisions per device, default first. ``fp16`` on CUDA is autocast (weights stay fp32)."""


@dataclass(frozen=True)
class XttsOptions:
    """How to load and run the model (the family seam's options map onto these)."""

    device: Literal["cpu", "cuda"] = "cpu"
    device_index: int = 0
    precision: str = "fp32"
    """``fp32``; on CUDA also ``fp16`` (autocast; not measured to pay yet, so off by default)."""
    voices_dir: Path | None = None
    """Folder of reference recordings (``NAME.wav`` / ``NAME.flac``); None: built-in speakers only."""
    stream_chunk_tokens: int = 20
    """GPT tokens per streamed chunk (coqui-tts's default; 20 tokens are about 0.93 s of speech).
    Smaller: earlier first audio, more vocoder work (each chunk decodes the sentence so far)."""
    latent_cache_entries: int = 64
    """Cloned voices kept in memory (each is about 130 KB for the released model)."""
    threads: int | None = None
    """torch intra-op threads for the whole process (``torch.set_num_threads``); None: torch's
    default (one per core)."""
    mmap: bool = True
    """Memory-map ``model.pth`` while loading (lower peak RAM)."""
    lock_wait_s: float | None = None
    """How long a second stream waits for the instance; None: as long as it takes."""


def _check_files(model_dir: Path) -> None:
    if not model_dir.is_dir():
        raise CheckpointError(
            f"XTTS-v2 model directory {model_dir} does not exist or is not a directory",
            "point the runtime at the folder that holds config.json, model.pth and vocab.json")
    missing = [name for name in REQUIRED_FILES if not (model_dir / name).is_file()]
    if missing:
        raise CheckpointError(
            f"XTTS-v2 model directory {model_dir} lacks {', '.join(missing)}",
            "an XTTS-v2 checkpoint directory holds config.json, model.pth and vocab.json "
            f"(and optionally {SPEAKERS_FILE}) as released by Coqui; copy the missing files there")


def _device(options: XttsOptions) -> torch.device:
    import torch

    allowed = PRECISIONS.get(options.device)
    if allowed is None:
        raise DeviceUnavailable(f"XTTS-v2 cannot run on device {options.device!r}",
                                "use 'cpu' or 'cuda'")
    if options.precision not in allowed:
        raise DeviceUnavailable(
            f"XTTS-v2 does not run in {options.precision} on {options.device}",
            f"on {options.device} use {' or '.join(allowed)}")
    if options.device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceUnavailable(
            "XTTS-v2 was asked to run on CUDA, but torch sees no CUDA device "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})",
            "run it on the CPU, or install a CUDA build of torch on a machine with an NVIDIA GPU")
    if not 0 <= options.device_index < torch.cuda.device_count():
        raise DeviceUnavailable(
            f"CUDA device {options.device_index} does not exist "
            f"({torch.cuda.device_count()} visible)", "pick a visible device index")
    return torch.device("cuda", options.device_index)


def _read_config(coqui: Coqui, path: Path) -> Any:
    config = coqui.config_class()
    try:
        config.load_json(str(path))
    except Exception as exc:  # coqpit raises JSON, type and assertion errors alike
        raise CheckpointError(f"{path} is not a valid XTTS-v2 config: {exc}",
                              "use the config.json released with the checkpoint") from exc
    if getattr(config, "model", None) != "xtts":
        raise CheckpointError(f"{path} describes model {getattr(config, 'model', None)!r}, "
                              "not 'xtts'", "use the config.json released with the checkpoint")
    return config


def read_state_dict(coqui: Coqui, path: Path, *, mmap: bool = True) -> dict[str, Any]:
    """The ``model`` state dict of ``model.pth``, read with ``weights_only`` (no code runs)."""
    import torch

    def load(use_mmap: bool) -> Any:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=use_mmap)
        except pickle.UnpicklingError:
            # The original release pickles its XttsConfig under a module path that moved.
            with coqui.legacy_safe_globals():
                return torch.load(path, map_location="cpu", weights_only=True, mmap=use_mmap)

    try:
        try:
            checkpoint = load(mmap)
        except RuntimeError as exc:
            if not mmap or "mmap" not in str(exc):
                raise
            checkpoint = load(False)  # a legacy (non-zip) file cannot be mapped
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        raise CheckpointError(
            f"{path} cannot be read as a PyTorch checkpoint: {exc}",
            "the file is truncated or is not XTTS-v2's model.pth (the released one is "
            "1.87 GB): copy it again") from exc
    state = checkpoint.get("model") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds no 'model' state dict",
                              "XTTS-v2's model.pth is a dict with the weights under 'model'")
    return state


def _read_speakers(path: Path) -> dict[str, Conditioning]:
    """The built-in speakers of ``speakers_xtts.pth``, on the CPU (none when it is absent)."""
    import torch

    from runtime.families.xtts.engine import Conditioning

    if not path.is_file():
        return {}
    try:
        table = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # as in read_state_dict
        raise CheckpointError(f"{path} cannot be read as a PyTorch file: {exc}",
                              f"copy {SPEAKERS_FILE} again, or remove it (it is optional)") from exc
    if not isinstance(table, dict):
        raise CheckpointError(f"{path} is not a table of speakers",
                              f"use the {SPEAKERS_FILE} released with the checkpoint, or remove it")
    speakers: dict[str, Conditioning] = {}
    for name, entry in table.items():
        latent = entry.get("gpt_cond_latent") if isinstance(entry, dict) else None
        embedding = entry.get("speaker_embedding") if isinstance(entry, dict) else None
        if not isinstance(latent, torch.Tensor) or not isinstance(embedding, torch.Tensor):
            raise CheckpointError(
                f"{path}: speaker {name!r} lacks gpt_cond_latent/speaker_embedding tensors",
                f"use the {SPEAKERS_FILE} released with the checkpoint, or remove it")
        speakers[str(name)] = Conditioning(latent, embedding)
    return speakers


def load(model_dir: Path, options: XttsOptions | None = None) -> XttsEngine:
    """Load the XTTS-v2 checkpoint in ``model_dir`` onto ``options.device``.

    Raises (all with a hint): :class:`~runtime.families.xtts.errors.XttsNotInstalled` when
    coqui-tts or torch do not import; :class:`~runtime.families.xtts.errors.CheckpointError` for
    a missing, unreadable or mismatched file; :class:`~runtime.families.xtts.errors.DeviceUnavailable`
    for a device or precision this machine or the family cannot provide (CUDA out of memory too).
    """
    options = options or XttsOptions()
    started = time.monotonic()
    model_dir = Path(model_dir)
    _check_files(model_dir)
    coqui = import_coqui()
    import psutil
    import torch

    from runtime.families.xtts.engine import Conditioning, LoadReport, XttsEngine

    device = _device(options)
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    config = _read_config(coqui, model_dir / "config.json")
    try:
        from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

        VoiceBpeTokenizer(vocab_file=str(model_dir / "vocab.json"))
    except Exception as exc:  # tokenizers raises a bare Exception for a bad file
        raise CheckpointError(f"{model_dir / 'vocab.json'} is not a tokenizer file: {exc}",
                              "use the vocab.json released with the checkpoint") from exc
    speakers_path = model_dir / SPEAKERS_FILE
    speakers = _read_speakers(speakers_path)
    # A list, so that nothing here keeps the weights' CPU copy once coqui-tts has taken it.
    pending = [read_state_dict(coqui, model_dir / "model.pth", mmap=options.mmap)]
    model: Any = None
    try:
        # Xtts() builds a GPT when the config names its text vocabulary size, and
        # load_checkpoint builds it again from vocab.json: without the size here the first one
        # (1.8 GB in fp32 for the released model) is never made. load_checkpoint sets it back.
        config.model_args.gpt_number_text_tokens = None
        model = coqui.xtts_class(config)
        # coqui-tts would read model.pth again (and rewrite an original-release file in
        # place); it gets the state dict read above instead.
        model._load_checkpoint = lambda _path: pending.pop()
        model.load_checkpoint(config, checkpoint_dir=str(model_dir), eval=True, strict=True,
                              speaker_file_path=str(speakers_path))
    except Exception as exc:  # load_state_dict's RuntimeError lists the mismatched keys
        text = str(exc)
        raise CheckpointError(
            f"{model_dir / 'model.pth'} does not fit {model_dir / 'config.json'}: "
            f"{text[:600]}{'...' if len(text) > 600 else ''}",
            "model.pth, config.json and vocab.json must come from the same XTTS-v2 release") from exc
    finally:
        if model is not None:
            vars(model).pop("_load_checkpoint", None)
        pending.clear()
    try:
        model.to(device)
    except torch.cuda.OutOfMemoryError as exc:
        raise DeviceUnavailable(
            f"XTTS-v2 does not fit on {device}: {exc}",
            "free GPU memory, or run it on the CPU") from exc
    builtin = {name: Conditioning(c.gpt_cond_latent.to(device), c.speaker_embedding.to(device))
               for name, c in speakers.items()}
    params = sum(p.numel() for p in model.parameters())
    report = LoadReport(
        seconds=time.monotonic() - started, rss_bytes=psutil.Process().memory_info().rss,
        params=params, device=str(device), precision=options.precision,
        coqui_version=coqui.version, torchaudio_extension=coqui.torchaudio_extension)
    log.info("XTTS-v2 loaded from %s on %s (%s): %.1f M parameters, %d built-in speakers, "
             "%.1f s, RSS %.0f MB", model_dir, device, options.precision, params / 1e6,
             len(builtin), report.seconds, report.rss_bytes / 2**20)
    return XttsEngine(model, config, device=device, precision=options.precision,
                      voices_dir=options.voices_dir, builtin_speakers=builtin,
                      resample=coqui.resample, stream_chunk_tokens=options.stream_chunk_tokens,
                      latent_cache_entries=options.latent_cache_entries,
                      lock_wait_s=options.lock_wait_s, report=report)
