"""What the engine server needs from a model: the adapter interface, and the voices directory.

The server (server.py) owns the socket, readiness, locking, voices and errors; an adapter only
loads a model and turns (text, reference recording) into float32 audio chunks. The real one is
in real.py, the stand-in in standin.py. Standard library and numpy only (engine side).
"""

from __future__ import annotations

import argparse
import re
from abc import ABC, abstractmethod
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


class LoadFailed(Exception):
    """The model cannot load; the message is the reason the engine reports (what and how to fix)."""


class RequestRejected(Exception):
    """The model cannot speak this request (the server answers with ``code``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class OutOfMemory(Exception):
    """The model ran out of memory on this request; the engine stays up for the next one."""


class Adapter(ABC):
    """One model behind the engine protocol. ``load`` runs once, in a background thread, while
    the server already answers health as ``loading``; ``synthesize`` is never called twice at
    once (the server holds a lock around it) and only after ``load`` returned."""

    name: str
    sample_rate_hz: int
    languages: tuple[str, ...] = ()
    """Language codes the model reads (``en``, ``zh``); empty: any. A request's language is
    compared by its primary subtag (``en-US`` is ``en``); no language means auto-detect."""
    native_speed: bool = False
    """The model speaks at a requested speed itself; if not, speed must be 1 and the runtime
    time-stretches the audio."""

    @classmethod
    @abstractmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add this adapter's own command-line options to ``parser``."""

    @classmethod
    @abstractmethod
    def from_args(cls, args: argparse.Namespace) -> Adapter:
        """An unloaded adapter from the parsed command line (``args.model_dir``, ``args.device``...)."""

    @abstractmethod
    def load(self) -> dict[str, Any]:
        """Load the model (raise :class:`LoadFailed` with the reason); returns details for the
        health reply (device, precision, optional parts loaded...)."""

    @abstractmethod
    def synthesize(self, text: str, voice: Path, language: str | None,
                   speed: float) -> Generator[np.ndarray, None, None]:
        """Speak ``text`` in the voice of the reference recording ``voice``: float32 mono chunks
        in [-1, 1] at ``sample_rate_hz``, each as soon as it is ready. The generator may be
        closed early (the client went away)."""


VOICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
VOICE_SUFFIX = ".wav"


@dataclass(frozen=True)
class Skipped:
    file: str
    reason: str


class VoiceLibrary:
    """Reference recordings (``NAME.wav``) in one directory; a voice is the file's stem.

    Read on every listing, so a recording added while the engine runs is usable at once. A file
    that is not a RIFF/WAVE file, or whose name is not a valid voice name, is skipped and
    reported (never silently ignored)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def scan(self) -> tuple[dict[str, Path], list[Skipped]]:
        voices: dict[str, Path] = {}
        skipped: list[Skipped] = []
        try:
            entries = sorted(self.directory.iterdir())
        except OSError as exc:
            raise LoadFailed(f"voices directory {self.directory} cannot be read: {exc.strerror or exc}; "
                             "create it and put reference recordings (NAME.wav) in it") from None
        for path in entries:
            if path.suffix.lower() != VOICE_SUFFIX or not path.is_file():
                continue
            if not VOICE_NAME.match(path.stem):
                skipped.append(Skipped(path.name, "the name is not a voice name (letters, digits, '.', '_', '-')"))
                continue
            try:
                with path.open("rb") as handle:
                    head = handle.read(12)
            except OSError as exc:
                skipped.append(Skipped(path.name, f"cannot be read: {exc.strerror or exc}"))
                continue
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                skipped.append(Skipped(path.name, "not a RIFF/WAVE file"))
                continue
            voices[path.stem] = path
        return voices, skipped

    def check(self) -> dict[str, Path]:
        """The voices, or LoadFailed when there is none (a cloning model cannot speak without one)."""
        if not self.directory.is_dir():
            raise LoadFailed(f"voices directory {self.directory} does not exist; create it and put "
                             "reference recordings (NAME.wav, a few seconds of one speaker) in it")
        voices, skipped = self.scan()
        if not voices:
            detail = "; ".join(f"{s.file}: {s.reason}" for s in skipped)
            raise LoadFailed(f"no usable reference recording (NAME.wav) in the voices directory "
                             f"{self.directory}" + (f" ({detail})" if detail else "")
                             + "; add one WAV file per voice, a few seconds of one speaker")
        return voices
