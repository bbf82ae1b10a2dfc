"""Poll until a deadline: the one loop behind every "wait until X, at most N seconds" of the
orchestrator (a process gone, a supervisor exited, a runtime ready, a cgroup freed).

Deadlines are on :func:`time.monotonic` (the wall clock may jump); the check runs at least once,
and once more at the deadline, so a condition met during the last sleep is not missed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def poll_until(check: Callable[[], T | None], timeout_s: float, interval_s: float, *,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> T | None:
    """Call ``check`` every ``interval_s`` until it returns something other than None (returned)
    or ``timeout_s`` has passed (None). An exception from ``check`` ends the wait and propagates."""
    deadline = clock() + timeout_s
    while True:
        found = check()
        if found is not None:
            return found
        left = deadline - clock()
        if left <= 0:
            return None
        sleep(min(interval_s, left))


def wait_while(condition: Callable[[], bool], timeout_s: float, interval_s: float, *,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> bool:
    """Wait while ``condition()`` holds, at most ``timeout_s``; True when it stopped holding."""
    return poll_until(lambda: True if not condition() else None, timeout_s, interval_s,
                      clock=clock, sleep=sleep) is not None


__all__ = ["poll_until", "wait_while"]
