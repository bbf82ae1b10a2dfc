"""Find this process's cgroup and read its CPU and memory limits (cgroup v1 and v2).

The process's cgroup path comes from ``/proc/self/cgroup``; where that hierarchy is mounted
comes from ``/proc/self/mountinfo``. Inside a container the path is often ``/`` (a cgroup
namespace root) or the mount's own root (``/docker/<id>`` mounted at ``/sys/fs/cgroup/memory``);
both resolve to the mount point. Limits are read along the chain from the process's cgroup up
to the mount point, because a parent's limit binds its children too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from orchestrator.probe.cpulist import parse_cpu_list
from orchestrator.probe.rootfs import RootFs, split_lines

V1_UNLIMITED_BYTES = 1 << 60
"""cgroup v1 reports "no limit" as a huge page-aligned number (9223372036854771712 on 4 KiB pages)."""

_CONTROLLERS = ("cpu", "cpuset", "memory")


@dataclass(frozen=True)
class CgroupMembership:
    """One line of /proc/self/cgroup. Sample: ``4:memory:/docker/3f2a`` or ``0::/user.slice``."""

    hierarchy_id: int
    controllers: tuple[str, ...]
    path: str


@dataclass(frozen=True)
class CgroupMount:
    """A cgroup filesystem from /proc/self/mountinfo."""

    mount_root: str
    """Which cgroup of the hierarchy is mounted (``/`` or ``/docker/<id>``)."""
    mount_point: str
    fs_type: str
    """``cgroup`` (v1) or ``cgroup2``."""
    controllers: tuple[str, ...]
    """v1 controllers from the super options (``rw,cpu,cpuacct`` → cpu, cpuacct); empty for v2."""


@dataclass(frozen=True)
class CgroupLimits:
    version: int | None
    """1 when the CPU/memory controllers are v1 (also on hybrid hosts), 2 when unified, None if absent."""
    quota_cpus: float | None
    cpuset_cpus: int | None
    memory_limit_bytes: int | None
    memory_usage_bytes: int | None
    """Usage without reclaimable inactive page cache, at the level that sets the limit."""


def parse_proc_self_cgroup(text: str) -> tuple[list[CgroupMembership], list[str]]:
    """Parse /proc/self/cgroup; returns the entries and the lines that did not parse.

    Samples: ``0::/`` (v2), ``3:cpu,cpuacct:/docker/ab12`` (v1), ``9:name=systemd:/``.
    """
    entries: list[CgroupMembership] = []
    bad: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        hid, sep1, rest = line.partition(":")
        ctrl, sep2, path = rest.partition(":")
        if not (sep1 and sep2 and hid.isdigit() and path.startswith("/")):
            bad.append(line)
            continue
        controllers = tuple(c for c in ctrl.split(",") if c)
        entries.append(CgroupMembership(int(hid), controllers, path))
    return entries, bad


_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \040, \011, \012, \134.
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo_cgroups(text: str) -> list[CgroupMount]:
    """Cgroup mounts in /proc/self/mountinfo.

    Sample: ``35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory``
    and ``30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate``.
    Lines that are not cgroup mounts or do not parse are skipped.
    """
    mounts: list[CgroupMount] = []
    for left, right in split_lines(text, " - "):
        lf = left.split()
        rf = right.split()
        if len(lf) < 6 or len(rf) < 3 or rf[0] not in ("cgroup", "cgroup2"):
            continue
        controllers: tuple[str, ...] = ()
        if rf[0] == "cgroup":
            known = {"cpu", "cpuacct", "cpuset", "memory", "blkio", "devices", "freezer", "pids",
                     "net_cls", "net_prio", "perf_event", "hugetlb", "rdma", "misc"}
            controllers = tuple(o for o in rf[2].split(",") if o in known)
        mounts.append(CgroupMount(_unescape(lf[3]), _unescape(lf[4]), rf[0], controllers))
    return mounts


def _join(base: str, rel: str) -> str:
    rel = rel.strip("/")
    return base.rstrip("/") + "/" + rel if rel else base


def _relative(cgroup_path: str, mount_root: str) -> str:
    if mount_root in ("", "/"):
        return cgroup_path
    if cgroup_path == mount_root or cgroup_path.startswith(mount_root.rstrip("/") + "/"):
        return cgroup_path[len(mount_root):]
    return cgroup_path


def _chain(fs: RootFs, mount: CgroupMount, cgroup_path: str) -> list[str]:
    """Host directories from the process's cgroup up to the mount point, leaf first."""
    leaf = _join(mount.mount_point, _relative(cgroup_path, mount.mount_root))
    if leaf != mount.mount_point and not fs.path(leaf).is_dir():
        # A namespaced view (the path is the host's, the mount is the container's own root).
        leaf = mount.mount_point
    chain = [leaf]
    current = leaf
    while current != mount.mount_point and current.startswith(mount.mount_point):
        current = current.rsplit("/", 1)[0] or "/"
        chain.append(current)
    return chain


@dataclass(frozen=True)
class _Located:
    version: int | None
    chains: dict[str, tuple[int, list[str]]]
    """controller → (cgroup version, directory chain)."""


def locate(fs: RootFs) -> _Located:
    """Find the cgroup directories holding this process's cpu, cpuset and memory controllers."""
    cg_text = fs.read_text("/proc/self/cgroup")
    mi_text = fs.read_text("/proc/self/mountinfo")
    entries: list[CgroupMembership] = []
    if cg_text is not None:
        entries, bad = parse_proc_self_cgroup(cg_text)
        if bad:
            fs.note(f"/proc/self/cgroup has {len(bad)} line(s) that are not 'id:controllers:/path'; they were ignored.")
    mounts = parse_mountinfo_cgroups(mi_text) if mi_text is not None else []
    if not mounts:
        mounts = _default_mounts(fs)
    if not entries:
        entries = [CgroupMembership(0, (), "/")] + [
            CgroupMembership(i + 1, (c,), "/") for i, c in enumerate(_CONTROLLERS)
        ]
    chains: dict[str, tuple[int, list[str]]] = {}
    unified = next((m for m in mounts if m.fs_type == "cgroup2"), None)
    unified_entry = next((e for e in entries if e.hierarchy_id == 0 and not e.controllers), None)
    for controller in _CONTROLLERS:
        mount = next((m for m in mounts if controller in m.controllers), None)
        entry = next((e for e in entries if controller in e.controllers), None)
        if mount is not None:
            chains[controller] = (1, _chain(fs, mount, entry.path if entry else "/"))
        elif unified is not None:
            chains[controller] = (2, _chain(fs, unified, unified_entry.path if unified_entry else "/"))
    version: int | None = None
    if any(v == 1 for v, _ in chains.values()):
        version = 1
    elif chains:
        version = 2
    return _Located(version, chains)


def _default_mounts(fs: RootFs) -> list[CgroupMount]:
    """The usual layout under /sys/fs/cgroup, for when mountinfo is missing."""
    if fs.exists("/sys/fs/cgroup/cgroup.controllers"):
        return [CgroupMount("/", "/sys/fs/cgroup", "cgroup2", ())]
    mounts = []
    for controller in _CONTROLLERS:
        point = f"/sys/fs/cgroup/{controller}"
        if fs.path(point).is_dir():
            mounts.append(CgroupMount("/", point, "cgroup", (controller,)))
    return mounts


def _read_int(fs: RootFs, host_path: str, *, minimum: int = 0) -> int | None:
    text = fs.read_text(host_path)
    if text is None:
        return None
    try:
        value = int(text.strip())
    except ValueError:
        value = None
    if value is None or value < minimum:
        fs.note(f"{host_path} should hold an integer >= {minimum} but holds {text.strip()[:40]!r}; it was ignored.")
        return None
    return value


def parse_cpu_max(text: str) -> float | None:
    """cgroup v2 cpu.max in CPUs. Samples: ``400000 100000`` → 4.0; ``max 100000`` → None."""
    fields = text.split()
    if len(fields) != 2 or not fields[1].isdigit() or int(fields[1]) == 0:
        raise ValueError(f"expected 'QUOTA PERIOD', got {text.strip()[:40]!r}")
    if fields[0] == "max":
        return None
    if not fields[0].isdigit():
        raise ValueError(f"quota {fields[0][:20]!r} is neither 'max' nor a number")
    try:
        return int(fields[0]) / int(fields[1])
    except OverflowError:
        raise ValueError("the quota is too large to be a CPU count") from None


def parse_memory_stat(text: str) -> dict[str, int]:
    """memory.stat as a mapping. Sample lines: ``inactive_file 49152``, ``total_inactive_file 49152``."""
    stats: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            stats[key] = int(value)
    return stats


def _quota(fs: RootFs, version: int, chain: list[str]) -> float | None:
    best: float | None = None
    for directory in chain:
        quota: float | None = None
        if version == 2:
            quota = fs.parse(f"{directory}/cpu.max", parse_cpu_max, "the CPU quota was ignored")
        else:
            q = _read_int(fs, f"{directory}/cpu.cfs_quota_us", minimum=-1)  # -1: no quota
            p = _read_int(fs, f"{directory}/cpu.cfs_period_us", minimum=1)
            if q is not None and p and q > 0:
                try:
                    quota = q / p
                except OverflowError:
                    fs.note(f"{directory}/cpu.cfs_quota_us is too large to be a CPU quota; it was ignored.")
        if quota is not None and (best is None or quota < best):
            best = quota
    return best


def _cpuset(fs: RootFs, version: int, chain: list[str]) -> int | None:
    names = ("cpuset.cpus.effective",) if version == 2 else ("cpuset.effective_cpus", "cpuset.cpus")
    for directory in chain:
        for name in names:
            if not fs.exists(f"{directory}/{name}"):
                continue
            cpus = fs.parse(f"{directory}/{name}", parse_cpu_list, "the cpuset was ignored")
            return len(cpus) if cpus else None
    return None


def _memory(fs: RootFs, version: int, chain: list[str]) -> tuple[int | None, int | None]:
    """(limit, usage without inactive file cache) at the level with the smallest limit."""
    limit_name, usage_name, inactive_key = (
        ("memory.max", "memory.current", "inactive_file") if version == 2
        else ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
    )
    best_limit: int | None = None
    best_dir = chain[0]
    for directory in chain:
        path = f"{directory}/{limit_name}"
        text = fs.read_text(path)
        if text is None or text.strip() == "max":
            continue
        try:
            limit = int(text.strip())
        except ValueError:
            fs.note(f"{path} should hold a byte count or 'max' but holds {text.strip()[:40]!r}; it was ignored.")
            continue
        if limit < 0 or limit >= V1_UNLIMITED_BYTES:  # -1 and the huge page-aligned value both mean "no limit"
            continue
        if best_limit is None or limit < best_limit:
            best_limit, best_dir = limit, directory
    usage = _read_int(fs, f"{best_dir}/{usage_name}")
    if usage is not None:
        stat_text = fs.read_text(f"{best_dir}/memory.stat")
        inactive = parse_memory_stat(stat_text).get(inactive_key, 0) if stat_text else 0
        usage = max(0, usage - inactive)
    return best_limit, usage


def read_limits(fs: RootFs) -> CgroupLimits:
    """CPU quota, cpuset size and memory limit/usage of this process's cgroup."""
    located = locate(fs)
    quota = cpuset = limit = usage = None
    if "cpu" in located.chains:
        quota = _quota(fs, *located.chains["cpu"])
    if "cpuset" in located.chains:
        cpuset = _cpuset(fs, *located.chains["cpuset"])
    if "memory" in located.chains:
        limit, usage = _memory(fs, *located.chains["memory"])
    return CgroupLimits(located.version, quota, cpuset, limit, usage)
