"""``load(model_dir, options)``: IndexTTS2 engine processes from a local model directory, ready.

Which runtime settings drive the engine (:func:`options_from_settings`):

    TAILOR_INDEXTTS2_PYTHON       the engine environment's interpreter (empty: this one)
    TAILOR_INDEXTTS2_ADAPTER      real | standin
    TAILOR_INDEXTTS2_VOICES_DIR   reference recordings (empty: MODEL_DIR/voices)
    TAILOR_INDEXTTS2_EMOTION      load the Qwen emotion model
    TAILOR_INDEXTTS2_ARGS         extra engine arguments (shell-quoted)
    TAILOR_INDEXTTS2_STARTUP_TIMEOUT_S, _STALL_TIMEOUT_S, _MAX_RESTARTS
    TAILOR_WORKERS                engine processes (each one request at a time, its own model copy)
    TAILOR_DEVICE, TAILOR_GPUS    cpu, or cuda with instance i on cuda:(i mod GPUS)
    TAILOR_PRECISION              fp32, or fp16 (the GPT in fp16; CUDA only)
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from runtime.errors import StartupError
from runtime.settings import Settings

from .client import EngineOptions, IndexTTS2Client


def options_from_settings(settings: Settings, model_dir: Path) -> EngineOptions:
    """The engine options the runtime settings ask for (StartupError for a combination
    IndexTTS2 cannot run)."""
    if settings.precision not in ("fp32", "fp16"):
        raise StartupError(f"IndexTTS2 runs in fp32, or with its GPT in fp16 on CUDA; not {settings.precision}",
                           "set TAILOR_PRECISION to fp32 or fp16")
    if settings.precision == "fp16" and settings.device != "cuda":
        raise StartupError("IndexTTS2's fp16 GPT needs CUDA (TAILOR_DEVICE=cuda)",
                           "set TAILOR_PRECISION=fp32 on the CPU")
    try:
        extra = tuple(shlex.split(settings.indextts2_args))
    except ValueError as exc:
        raise StartupError(f"TAILOR_INDEXTTS2_ARGS={settings.indextts2_args!r} cannot be split: {exc}",
                           "quote it as a shell would") from None
    voices = settings.indextts2_voices_dir
    return EngineOptions(
        model_dir=model_dir,
        voices_dir=Path(voices).expanduser() if voices else model_dir / "voices",
        adapter=settings.indextts2_adapter,
        python=settings.indextts2_python or sys.executable,
        device=settings.device,
        fp16=settings.precision == "fp16",
        emotion=settings.indextts2_emotion,
        extra_args=extra,
        instances=settings.workers,
        gpus=settings.gpus,
        startup_timeout_s=settings.indextts2_startup_timeout_s,
        stall_timeout_s=settings.indextts2_stall_timeout_s,
        max_restarts=settings.indextts2_max_restarts,
        stop_grace_s=min(settings.shutdown_grace_s, 10.0),
    )


def load(model_dir: str | Path, options: Settings | EngineOptions | None = None) -> IndexTTS2Client:
    """Start the engine processes for ``model_dir`` and wait until they are ready.

    ``options``: the runtime's settings (default: read from the environment), or engine
    options as they are. Raises StartupError (EngineStartError) with the engine's reason and
    last output when an engine does not become ready."""
    directory = Path(model_dir).expanduser().resolve()
    if isinstance(options, EngineOptions):
        engine_options = options
    else:
        settings = options if options is not None else Settings.from_environ(os.environ)
        engine_options = options_from_settings(settings, directory)
    client = IndexTTS2Client(engine_options)
    client.start()
    return client
