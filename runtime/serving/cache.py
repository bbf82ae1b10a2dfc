"""LRU cache of finished audio responses, bounded in bytes.

Keys name everything that changes the bytes: voice, engine chain, text, speed, format.
An entry larger than the whole budget is never stored; a budget of 0 disables the cache.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class CacheKey:
    voice: str
    engine: str
    text: str
    speed: float
    response_format: str


class AudioCache:
    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[CacheKey, bytes] = OrderedDict()
        self._seconds: dict[CacheKey, float] = {}
        """Audio seconds of each entry (for the usage an SSE answer reports)."""
        self._size_bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def size_bytes(self) -> int:
        return self._size_bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey) -> bytes | None:
        if self.budget_bytes == 0:
            return None
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return value

    def audio_seconds(self, key: CacheKey) -> float:
        """Seconds of audio of an entry as stored with it (0 when unknown or absent)."""
        with self._lock:
            return self._seconds.get(key, 0.0)

    def put(self, key: CacheKey, value: bytes, audio_seconds: float = 0.0) -> bool:
        """Store ``value`` (``audio_seconds`` long); False when it alone exceeds the budget (or the
        cache is off)."""
        size = len(value) + len(key.text)
        if size > self.budget_bytes:
            return False
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._size_bytes -= len(old) + len(key.text)
            self._entries[key] = value
            self._seconds[key] = audio_seconds
            self._size_bytes += size
            while self._size_bytes > self.budget_bytes:
                evicted_key, evicted = self._entries.popitem(last=False)
                self._seconds.pop(evicted_key, None)
                self._size_bytes -= len(evicted) + len(evicted_key.text)
        return True
