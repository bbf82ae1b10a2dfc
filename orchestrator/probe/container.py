"""Are we in a container, which kind, and which cgroup version does the host run?"""

from __future__ import annotations

from collections.abc import Mapping

from orchestrator.probe.rootfs import RootFs

# Substrings of /proc/1/cgroup or the root mount's source in mountinfo that name a runtime.
# Order matters: kubepods paths also contain "containerd" or "docker".
_CGROUP_HINTS: tuple[tuple[str, str], ...] = (
    ("kubepods", "kubernetes"),
    ("libpod", "podman"),
    ("docker", "docker"),
    ("containerd", "containerd"),
    ("lxc", "lxc"),
)


def container_kind_from_text(text: str) -> str | None:
    """Runtime named in /proc/1/cgroup or mountinfo text.

    Samples: ``0::/kubepods/besteffort/pod1f2e/3a4b`` → kubernetes,
    ``12:memory:/docker/3f2a9c`` → docker, ``... - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/...`` → docker.
    """
    lowered = text.lower()
    for hint, kind in _CGROUP_HINTS:
        if hint in lowered:
            return kind
    return None


def _root_mount_line(mountinfo: str) -> str:
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] == "/":
            return line
    return ""


def detect_container(fs: RootFs, environ: Mapping[str, str]) -> tuple[bool, str | None]:
    """(in a container, kind). Sources, strongest first: KUBERNETES_SERVICE_HOST, the
    ``container`` variable (systemd convention), /run/.containerenv (podman), /.dockerenv,
    then runtime names in /proc/1/cgroup and in the root mount of /proc/self/mountinfo."""
    if environ.get("KUBERNETES_SERVICE_HOST"):
        return True, "kubernetes"
    declared = environ.get("container", "").strip().lower()
    if declared in ("docker", "podman", "lxc", "containerd"):
        return True, declared
    if fs.exists("/run/.containerenv"):
        return True, "podman"
    if fs.exists("/.dockerenv"):
        return True, "docker"
    pid1 = fs.read_text("/proc/1/cgroup")
    if pid1:
        kind = container_kind_from_text(pid1)
        if kind:
            return True, kind
    mountinfo = fs.read_text("/proc/self/mountinfo")
    if mountinfo:
        root_line = _root_mount_line(mountinfo)
        if " - overlay " in root_line:
            return True, container_kind_from_text(root_line) or "docker"
    if declared:
        return True, None  # e.g. container=systemd-nspawn: a container of a kind we do not name
    return False, None


def detect_cgroup_version(fs: RootFs, controllers_version: int | None) -> int | None:
    """2 when /sys/fs/cgroup is the unified hierarchy (cgroup.controllers there), else the
    version the CPU/memory controllers were found on (1 on v1 and hybrid hosts)."""
    if fs.exists("/sys/fs/cgroup/cgroup.controllers"):
        return 2
    return controllers_version
