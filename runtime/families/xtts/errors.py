"""The XTTS-v2 family's errors: each says what went wrong, where, and how to fix it.

Load-time errors are :class:`runtime.errors.StartupError` too, so ``python -m runtime`` prints
them with their hint instead of a traceback. Request-time errors (:class:`UnknownVoice`,
:class:`VoiceUnusable`, :class:`BadSynthesisInput`, :class:`EngineBusy`) carry no HTTP status:
the serving layer maps them (unknown voice: 404, bad input: 400, busy: 503).
"""

from __future__ import annotations

from runtime.errors import BrokenConfig, RuntimeServerError, StartupError


class XttsError(RuntimeServerError):
    """Root of the XTTS-v2 family's errors."""


class XttsNotInstalled(XttsError, BrokenConfig):
    """coqui-tts (or one of the libraries it needs) cannot be imported."""


class CheckpointError(XttsError, BrokenConfig):
    """The model directory is missing a file, or a file in it cannot be read as XTTS-v2."""


class DeviceUnavailable(XttsError, StartupError):
    """The device or precision asked for cannot be used on this machine."""


class UnknownVoice(XttsError):
    """No reference recording (and no built-in speaker) has this name."""


class VoiceUnusable(XttsError):
    """The reference recording exists but cannot be used (unreadable, too short, ambiguous)."""


class BadSynthesisInput(XttsError):
    """Text, language or speed that the model cannot take."""


class EngineBusy(XttsError):
    """This instance is already streaming in the calling thread (one stream at a time)."""
