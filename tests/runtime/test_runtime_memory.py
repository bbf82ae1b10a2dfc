"""The RSS reader behind TAILOR_RSS_SOFT_LIMIT_BYTES (read several times a request)."""

from __future__ import annotations

import os

import numpy as np
import psutil

from runtime.serving.memory import MemoryWatchdog, process_rss_bytes


def test_rss_follows_this_process_memory() -> None:
    before = process_rss_bytes()
    assert abs(before - psutil.Process().memory_info().rss) < 64 * 2**20
    block = np.ones(256 * 2**20 // 8)  # 256 MiB, touched
    assert process_rss_bytes() - before > 200 * 2**20
    del block


def test_rss_is_the_childs_own_after_a_fork() -> None:
    process_rss_bytes()  # the parent's reader exists before the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: grow by 256 MiB, then read RSS through the cached reader
        block = np.ones(256 * 2**20 // 8)
        mine = psutil.Process(os.getpid()).memory_info().rss
        os.write(write, b"1" if abs(process_rss_bytes() - mine) < 32 * 2**20 and block.size else b"0")
        os._exit(0)
    os.close(write)
    answer = os.read(read, 8)
    os.waitpid(pid, 0)
    assert answer == b"1", "the child read its parent's RSS"


def test_watchdog_is_off_at_zero_and_trips_above_the_limit() -> None:
    assert MemoryWatchdog(0).over_limit() == (False, 0)
    over, rss = MemoryWatchdog(1, read_rss=lambda: 5).over_limit()
    assert over and rss == 5
