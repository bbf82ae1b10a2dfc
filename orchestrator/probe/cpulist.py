"""The kernel's CPU list format, used by sysfs, /proc/self/status and cpusets."""

from __future__ import annotations


def parse_cpu_list(text: str) -> frozenset[int]:
    """CPU ids in a kernel CPU list.

    Sample: ``0-3,8-11,15`` (/sys/devices/system/cpu/online, ``Cpus_allowed_list``,
    ``cpuset.cpus.effective``). An empty string is the empty set. Raises ValueError on
    anything else, so callers can name the file in a note.
    """
    cpus: set[int] = set()
    stripped = text.strip()
    if not stripped:
        return frozenset()
    for part in stripped.split(","):
        first, sep, last = part.strip().partition("-")
        if not first.isdigit() or (sep and not last.isdigit()):
            raise ValueError(f"{part!r} is not a CPU number or range")
        low = int(first)
        high = int(last) if sep else low
        if high < low:
            raise ValueError(f"range {part!r} runs backwards")
        if high - low > 65536:
            raise ValueError(f"range {part!r} is implausibly large")
        cpus.update(range(low, high + 1))
    return frozenset(cpus)
