"""A per-instance memory cgroup for the process backend, and the kernel's OOM-kill counters.

When we are root and a memory controller is writable (cgroup v1 ``memory.limit_in_bytes``, or
cgroup v2 ``memory.max`` where the parent delegates the controller), the runtime runs in its own
cgroup: the kernel enforces the plan's limit, and an OOM kill is read back from
``memory.oom_control`` / ``memory.events`` (``oom_kill N``, the one parser :func:`oom_kill_field`
also reads ``/proc/vmstat`` with).
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.errors import LaunchError
from orchestrator.launch.runner import OsCalls
from orchestrator.polling import poll_until

_MB = 1024 * 1024


def remove_cgroup_dir(path: str) -> str:
    """Remove a per-instance memory cgroup left behind; a sentence, "" when there was none."""
    if not path:
        return ""
    group = Path(path)
    if not group.exists():
        return ""
    MemoryCgroup(group, 2, OsCalls()).remove()
    if group.exists():
        raise LaunchError(f"cannot remove the memory cgroup {group}: it still has processes",
                          f"see `cat {group / 'cgroup.procs'}`")
    return f"removed memory cgroup {group}"


def oom_kill_field(text: str) -> int | None:
    """N of the ``oom_kill N`` line of /proc/vmstat, memory.oom_control (cgroup v1) or
    memory.events (v2); None when the file has no such line."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return int(value)
    return None


def vmstat_oom_kills(os_calls: OsCalls, proc_root: Path) -> int | None:
    """The kernel's global OOM-kill count (``/proc/vmstat``); None when it cannot be read."""
    try:
        return oom_kill_field(os_calls.read_text(proc_root / "vmstat"))
    except OSError:
        return None


class MemoryCgroup:
    """A per-instance memory cgroup (v1 or v2); ``create`` returns None where none can be made."""

    def __init__(self, path: Path, version: int, os_calls: OsCalls) -> None:
        self.path = path
        self.version = version
        self._os = os_calls

    @classmethod
    def create(cls, name: str, limit_bytes: int, os_calls: OsCalls, cgroup_root: Path,
               proc_root: Path) -> tuple[MemoryCgroup | None, str]:
        if os_calls.geteuid() != 0:
            return None, "not root, so no memory cgroup"
        try:
            own = os_calls.read_text(proc_root / "self/cgroup")
        except OSError as exc:
            return None, f"cannot read /proc/self/cgroup ({exc.strerror})"
        v1_mount = cgroup_root / "memory"
        if (v1_mount / "memory.limit_in_bytes").exists():
            rel = next((ln.split(":", 2)[2] for ln in own.splitlines()
                        if ln.split(":", 2)[1:2] == ["memory"]), "/")
            parent = v1_mount / rel.lstrip("/")
            if not (parent / "memory.limit_in_bytes").exists():
                parent = v1_mount  # the mount shows our own cgroup as its root (cgroup namespace)
            return cls._make(parent / name, 1, "memory.limit_in_bytes", limit_bytes, os_calls)
        if (cgroup_root / "cgroup.controllers").exists():
            rel = next((ln.split(":", 2)[2] for ln in own.splitlines() if ln.startswith("0::")), "/")
            parent = cgroup_root / rel.lstrip("/")
            return cls._make(parent / name, 2, "memory.max", limit_bytes, os_calls)
        return None, f"no memory cgroup controller under {cgroup_root}"

    @classmethod
    def _make(cls, path: Path, version: int, limit_file: str, limit_bytes: int,
              os_calls: OsCalls) -> tuple[MemoryCgroup | None, str]:
        try:
            os_calls.mkdir(path)
        except OSError as exc:
            return None, f"cannot create cgroup {path} ({exc.strerror})"
        group = cls(path, version, os_calls)
        try:
            os_calls.write_text(path / limit_file, str(limit_bytes))
            if version == 1 and (path / "memory.memsw.limit_in_bytes").exists():
                # Without this, a v1 cgroup may swap instead of being OOM-killed.
                os_calls.write_text(path / "memory.memsw.limit_in_bytes", str(limit_bytes))
        except OSError as exc:
            group.remove()
            return None, f"cannot set {path / limit_file} ({exc.strerror}; controller not delegated?)"
        return group, f"cgroup v{version} {path} with a {limit_bytes // _MB} MB limit"

    def add(self, pid: int) -> None:
        self._os.write_text(self.path / "cgroup.procs", str(pid))

    def oom_kills(self) -> int:
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            return oom_kill_field(self._os.read_text(self.path / name)) or 0
        except OSError:
            return 0

    def remove(self) -> None:
        # The kernel frees the cgroup a moment after its last process is reaped.
        poll_until(self._try_rmdir, 2.5, 0.05)

    def _try_rmdir(self) -> bool | None:
        """True once the cgroup directory is gone; None while it still has processes."""
        try:
            self._os.rmdir(self.path)
        except FileNotFoundError:
            return True
        except OSError:
            return None
        return True


__all__ = ["MemoryCgroup", "oom_kill_field", "remove_cgroup_dir", "vmstat_oom_kills"]
