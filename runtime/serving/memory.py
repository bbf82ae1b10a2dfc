"""RSS watchdog: above ``TAILOR_RSS_SOFT_LIMIT_BYTES`` new speech requests get 503.

Checked on every admission (psutil reads ``/proc/self/statm``: microseconds), so the answer
follows memory as it is now; a log line marks each crossing of the limit, not every refusal.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psutil

_LOG = logging.getLogger("tailor.runtime")


def process_rss_bytes() -> int:
    """Resident set size of this process. Source: psutil (``/proc/self/statm`` on Linux)."""
    return int(_this_process(os.getpid()).memory_info().rss)


@functools.cache
def _this_process(pid: int) -> psutil.Process:
    """One ``psutil.Process`` per pid: building one reads ``/proc/PID/stat`` (its start time),
    which cost more than the RSS read itself, several times a request."""
    import psutil

    return psutil.Process(pid)


class MemoryWatchdog:
    def __init__(self, soft_limit_bytes: int, read_rss: Callable[[], int] = process_rss_bytes) -> None:
        self.soft_limit_bytes = soft_limit_bytes
        self._read_rss = read_rss
        self._over = False
        self._lock = threading.Lock()

    def over_limit(self) -> tuple[bool, int]:
        """(whether RSS is above the soft limit, RSS in bytes); never over when disabled."""
        if self.soft_limit_bytes <= 0:
            return False, 0
        rss = self._read_rss()
        over = rss > self.soft_limit_bytes
        with self._lock:
            if over != self._over:
                self._over = over
                if over:
                    _LOG.warning(
                        "RSS %d bytes is above the soft limit %d (TAILOR_RSS_SOFT_LIMIT_BYTES): "
                        "refusing new requests with 503 until it drops",
                        rss, self.soft_limit_bytes,
                    )
                else:
                    _LOG.info("RSS %d bytes is back under the soft limit; accepting requests", rss)
        return over, rss


MMAP_THRESHOLD_BYTES = 128 * 1024
_M_MMAP_THRESHOLD = -3


def limit_heap_fragmentation() -> bool:
    """Pin glibc's mmap threshold at 128 KiB (its initial value); True when set.

    glibc raises the threshold each time a large mmapped block is freed, after which audio
    buffers and cached responses (100 KiB-1 MiB each) come from the heap, interleave with the
    long-lived cache entries and leave holes the heap cannot return: the soak benchmark measured
    RSS growing ~5x the cache's bytes (357 -> 1001 MiB for a 64 MiB cache) that way. A fixed
    threshold keeps every such block in its own mapping, returned to the system when freed.
    No effect under jemalloc/tcmalloc (LD_PRELOAD), which manage their own pages.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
