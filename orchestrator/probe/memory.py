"""Memory facts: /proc/meminfo, bounded by the cgroup memory limit."""

from __future__ import annotations

from orchestrator.probe.cgroup import CgroupLimits
from orchestrator.probe.facts import MemoryFacts
from orchestrator.probe.rootfs import RootFs

_UNITS = {"kB": 1024, "": 1}


def parse_meminfo(text: str) -> tuple[dict[str, int], list[str]]:
    """/proc/meminfo in bytes, plus the lines that did not parse.

    Sample lines: ``MemTotal:       24684096 kB``, ``HugePages_Total:       0``.
    """
    values: dict[str, int] = {}
    bad: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, rest = line.partition(":")
        fields = rest.split()
        if not sep or not fields or not fields[0].isdigit() or len(fields) > 2:
            bad.append(line)
            continue
        unit = fields[1] if len(fields) == 2 else ""
        if unit not in _UNITS:
            bad.append(line)
            continue
        values[key.strip()] = int(fields[0]) * _UNITS[unit]
    return values, bad


def probe_memory(fs: RootFs, limits: CgroupLimits) -> MemoryFacts:
    """Host memory from /proc/meminfo; effective figures are bounded by the cgroup limit."""
    values: dict[str, int] = {}
    text = fs.read_text("/proc/meminfo")
    if text is None:
        fs.note("/proc/meminfo is missing; host memory is unknown and reported as 0.")
    else:
        values, bad = parse_meminfo(text)
        if bad:
            fs.note(f"/proc/meminfo has {len(bad)} garbled line(s) (first: {bad[0][:60]!r}); they were ignored.")
    total = values.get("MemTotal", 0)
    if text is not None and "MemTotal" not in values:
        fs.note("/proc/meminfo has no readable MemTotal line; host memory is reported as 0.")
    available = values.get("MemAvailable")
    if available is None:
        # Kernels before 3.14 lack MemAvailable; free + page cache is the old estimate.
        available = values.get("MemFree", 0) + values.get("Cached", 0) + values.get("Buffers", 0)
        if text is not None and total:
            fs.note("/proc/meminfo has no MemAvailable line; available memory was estimated as MemFree + Cached + Buffers.")
    available = min(available, total) if total else available

    limit = limits.memory_limit_bytes
    usage = limits.memory_usage_bytes
    effective_total, source = total, "host"
    if limit is not None and (limit < total or total == 0):
        effective_total, source = limit, "cgroup"
    effective_available = available
    if limit is not None:
        headroom = max(0, limit - (usage or 0))
        if headroom < effective_available or total == 0:
            effective_available = headroom
    return MemoryFacts(
        total_bytes=total,
        available_bytes=available,
        swap_total_bytes=values.get("SwapTotal", 0),
        swap_free_bytes=values.get("SwapFree", 0),
        cgroup_limit_bytes=limit,
        cgroup_usage_bytes=usage,
        effective_total_bytes=effective_total,
        effective_available_bytes=min(effective_available, effective_total),
        effective_source=source,
    )
