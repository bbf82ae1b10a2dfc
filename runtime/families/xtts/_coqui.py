"""The one place that imports coqui-tts (the ``TTS`` package) and torchaudio.

coqui-tts 0.28.0 needs torchaudio at import time (``TTS.tts.models.xtts`` imports it, and
``TTS/__init__`` refuses to start without it), but XTTS inference only uses its pure-Python
parts: ``functional.resample`` and ``transforms.MelSpectrogram``. The torchaudio wheels on
PyPI (2.11.x, the only ones that accept torch 2.13) carry a compiled extension linked against
CUDA (``libtorch_cuda.so``, ``libcudart.so.13``), which a CPU build of torch does not have, so
``import torchaudio`` fails there with ``OSError``. torchaudio itself runs without that
extension when it is absent (its ``_extension`` module then reports
``_IS_TORCHAUDIO_EXT_AVAILABLE = False`` and the filters use their Python paths), so on that
failure we import it again with the extension reported absent. Nothing XTTS calls needs it.

coqui-tts also wants ``torchcodec`` installed beside torch >= 2.9 (it checks that the package
is there, without importing it); ``torchcodec`` needs FFmpeg's shared libraries to import, which
we never do: reference recordings are read with soundfile, not ``torchaudio.load``.
"""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runtime.families.xtts.errors import XttsNotInstalled

log = logging.getLogger(__name__)

INSTALL_HINT = "install the XTTS-v2 family's libraries: pip install 'tailor-deploy[xtts]'"


@dataclass(frozen=True)
class Coqui:
    """The coqui-tts names the family uses, resolved once."""

    xtts_class: Any
    """``TTS.tts.models.xtts.Xtts``."""
    config_class: Any
    """``TTS.tts.configs.xtts_config.XttsConfig``."""
    legacy_safe_globals: Callable[[], Any]
    """Context manager that lets ``torch.load(weights_only=True)`` read the original Coqui
    checkpoints, which pickle the config classes under their old module path."""
    resample: Callable[..., Any]
    """``torchaudio.functional.resample(waveform, orig_freq, new_freq)``."""
    version: str
    torchaudio_extension: bool
    """Whether torchaudio's compiled extension loaded (False: the CPU fallback above)."""


_coqui: Coqui | None = None


def _torchaudio_without_extension() -> types.ModuleType:
    """Import torchaudio with its compiled extension reported absent (see the module doc)."""
    for name in [m for m in sys.modules if m == "torchaudio" or m.startswith("torchaudio.")]:
        del sys.modules[name]
    stub = types.ModuleType("torchaudio._extension")
    stub.__dict__.update(
        _IS_TORCHAUDIO_EXT_AVAILABLE=False,
        _IS_ALIGN_AVAILABLE=False,
        _load_lib=lambda lib: False,
        fail_if_no_align=_fail_without_extension,
    )
    sys.modules["torchaudio._extension"] = stub
    import torchaudio

    module: types.ModuleType = torchaudio
    return module


def _fail_without_extension(func: Callable[..., Any]) -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(
            f"torchaudio.{func.__name__} needs torchaudio's compiled extension, which does not "
            "load beside this torch build (XTTS inference never calls it)"
        )

    return fail


def _import_torchaudio() -> tuple[types.ModuleType, bool]:
    try:
        import torchaudio
    except OSError as exc:
        log.info("torchaudio's compiled extension does not load here (%s); "
                 "using torchaudio without it", exc)
        return _torchaudio_without_extension(), False
    return torchaudio, True


def import_coqui() -> Coqui:
    """Import coqui-tts, or raise :class:`XttsNotInstalled` saying what is missing."""
    global _coqui
    if _coqui is not None:
        return _coqui
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise XttsNotInstalled(f"XTTS-v2 needs torch, which does not import: {exc}",
                               INSTALL_HINT) from exc
    try:
        torchaudio, extension = _import_torchaudio()
    except ImportError as exc:
        raise XttsNotInstalled(f"XTTS-v2 needs torchaudio, which does not import: {exc}",
                               INSTALL_HINT) from exc
    try:
        import TTS
        import TTS.tts.models.xtts as xtts_module
        from TTS.tts.configs.xtts_config import XttsConfig
    except ImportError as exc:
        raise XttsNotInstalled(f"coqui-tts (the XTTS-v2 library) does not import: {exc}",
                               INSTALL_HINT) from exc
    _coqui = Coqui(
        xtts_class=xtts_module.Xtts,
        config_class=XttsConfig,
        legacy_safe_globals=xtts_module._legacy_safe_globals,
        resample=torchaudio.functional.resample,
        version=str(TTS.__version__),
        torchaudio_extension=extension,
    )
    return _coqui


def forget() -> None:
    """Drop the cached imports (tests that make the import fail call this)."""
    global _coqui
    _coqui = None
