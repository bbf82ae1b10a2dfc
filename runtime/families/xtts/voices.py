"""XTTS-v2 voices: reference recordings in a directory (cloning) and the checkpoint's built-in
speakers, and a bounded cache of the conditioning latents computed from the recordings.

A voice named ``alice`` is ``alice.wav`` or ``alice.flac`` in the voices directory (the file's
name, with or without its extension, also works). The directory is read again on every lookup,
so a recording added, replaced or removed takes effect on the next request without a restart.
A recording shadows a built-in speaker of the same name.

Cloning a voice (its GPT conditioning latents and its speaker embedding) costs a pass through
the conditioning encoder and the speaker encoder; the result is cached per file, keyed by its
resolved path, modification time and size, so an edited file is cloned again.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Literal, TypeVar

from runtime.families.xtts.errors import UnknownVoice, VoiceUnusable

RECORDING_SUFFIXES = (".wav", ".flac")

T = TypeVar("T")


@dataclass(frozen=True)
class Voice:
    name: str
    source: Literal["recording", "builtin"]
    path: Path | None = None
    """The recording (None for a built-in speaker)."""


def _recordings(voices_dir: Path | None) -> dict[str, list[Path]]:
    """Recordings by voice name; a name with more than one file is ambiguous."""
    found: dict[str, list[Path]] = {}
    if voices_dir is None or not voices_dir.is_dir():
        return found
    with os.scandir(voices_dir) as entries:
        for entry in entries:
            path = Path(entry.path)
            if path.suffix.lower() in RECORDING_SUFFIXES and entry.is_file():
                found.setdefault(path.stem, []).append(path)
    for paths in found.values():
        paths.sort()
    return found


def list_voices(voices_dir: Path | None, builtin: Mapping[str, object]) -> list[Voice]:
    """Every voice, sorted by name: recordings, then the built-in speakers they do not shadow."""
    recordings = _recordings(voices_dir)
    voices = [Voice(name, "recording", paths[0]) for name, paths in recordings.items()]
    voices += [Voice(name, "builtin") for name in builtin if name not in recordings]
    return sorted(voices, key=lambda v: v.name)


def resolve_voice(name: str, voices_dir: Path | None, builtin: Mapping[str, object]) -> Voice:
    """The voice called ``name``, or :class:`UnknownVoice` / :class:`VoiceUnusable` saying why."""
    recordings = _recordings(voices_dir)
    if Path(name).suffix.lower() in RECORDING_SUFFIXES:
        paths = [p for p in recordings.get(Path(name).stem, []) if p.name == name]
    else:
        paths = recordings.get(name, [])
    if len(paths) > 1:
        raise VoiceUnusable(
            f"voice {name!r} is ambiguous: {', '.join(str(p) for p in paths)}",
            "keep one recording per voice name (rename or remove the others), or ask for the "
            "file name with its extension")
    if paths:
        return Voice(paths[0].stem, "recording", paths[0])
    if name in builtin:
        return Voice(name, "builtin")
    known = sorted({*recordings, *builtin})
    shown = ", ".join(known[:20]) + (f" and {len(known) - 20} more" if len(known) > 20 else "")
    where = f"in {voices_dir}" if voices_dir is not None else "(no voices directory is set)"
    raise UnknownVoice(
        f"unknown voice {name!r} {where}; available: {shown or 'none'}",
        f"put a reference recording {name}.wav or {name}.flac (6 to 10 s of one clean "
        f"speaker) in the voices directory" if voices_dir is not None else
        "set the voices directory to a folder of reference recordings (NAME.wav or NAME.flac)")


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    entries: int
    capacity: int


class LatentCache(Generic[T]):
    """A bounded least-recently-used cache of cloned voices, keyed by file identity.

    ``get_or_compute`` computes outside the cache's own lock (cloning takes a model pass); two
    threads asking for the same new file may both compute it, and the second result wins.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"latent cache capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._entries: OrderedDict[tuple[str, int, int], T] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    @staticmethod
    def key(path: Path) -> tuple[str, int, int]:
        try:
            stat = path.stat()
        except OSError as exc:
            raise VoiceUnusable(f"voice recording {path} cannot be read: {exc.strerror}",
                                "check that the file exists and is readable") from exc
        return str(path.resolve()), stat.st_mtime_ns, stat.st_size

    def get_or_compute(self, path: Path, compute: Callable[[Path], T]) -> T:
        key = self.key(path)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self._hits += 1
                return self._entries[key]
            self._misses += 1
        value = compute(path)
        with self._lock:
            for stale in [k for k in self._entries if k[0] == key[0] and k != key]:
                del self._entries[stale]
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, len(self._entries), self.capacity)
