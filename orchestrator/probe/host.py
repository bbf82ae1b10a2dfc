"""The hardware probe: read a machine (live, or a recorded tree under ``root``) into HostFacts.

``probe_host`` never raises for partial failures: unreadable or garbled files, NVML errors
and an unreachable Docker daemon all still give a valid :class:`HostFacts`, with a
full-sentence entry in ``notes`` for each problem. Only a root that does not exist raises
:class:`ProbeError`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from orchestrator.errors import ProbeError
from orchestrator.probe.allocators import find_allocators
from orchestrator.probe.cgroup import read_limits
from orchestrator.probe.container import detect_cgroup_version, detect_container
from orchestrator.probe.cpu import probe_cpu
from orchestrator.probe.facts import ContainerFacts, GpuFacts, HostFacts, InstallFacts, NvmlStatus
from orchestrator.probe.jetson import probe_jetson
from orchestrator.probe.memory import probe_memory
from orchestrator.probe.models_dir import free_bytes, models_dir
from orchestrator.probe.nvml import NvmlReader, PynvmlReader, read_gpus
from orchestrator.probe.rootfs import RootFs

JETSON_NVML_REASON = (
    "Jetson boards have no NVML; the integrated GPU shares system memory (see the jetson facts)"
)


def _hostname(fs: RootFs) -> str:
    for path in ("/etc/hostname", "/proc/sys/kernel/hostname"):
        text = fs.read_text(path)
        if text and text.strip():
            return text.strip().splitlines()[0]
    return ""


def probe_host(
    root: Path = Path("/"),
    environ: Mapping[str, str] | None = None,
    nvml: NvmlReader | None = None,
    check_docker: bool = True,
) -> HostFacts:
    """Probe the machine whose files lie under ``root``.

    ``environ`` defaults to ``os.environ`` (it supplies KUBERNETES_SERVICE_HOST, DOCKER_HOST,
    TAILOR_MODELS_DIR, HOME). ``nvml`` defaults to the real NVML on a live root; for a
    recorded tree NVML is not asked (it would describe this machine, not the tree).
    ``check_docker=False`` skips the daemon ping.
    """
    if not root.is_dir():
        raise ProbeError(f"probe root {root} is not a directory",
                         "pass --root a directory holding proc/, sys/ and etc/ (or leave it out for this machine)")
    return probe_files(RootFs(root), os.environ if environ is None else environ, nvml, check_docker)


def probe_files(fs: RootFs, env: Mapping[str, str], nvml: NvmlReader | None, check_docker: bool) -> HostFacts:
    """:func:`probe_host` over a given :class:`RootFs` (the recorder uses its ``paths_read``)."""
    root = fs.root

    limits = read_limits(fs)
    cpu = probe_cpu(fs, limits)
    memory = probe_memory(fs, limits)
    jetson = probe_jetson(fs)

    if nvml is None and not fs.is_live:
        gpus: tuple[GpuFacts, ...] = ()
        status = NvmlStatus(False, f"not asked: NVML describes this machine, not the recorded tree under {root}")
    else:
        gpus, status, gpu_notes = read_gpus(nvml if nvml is not None else PynvmlReader())
        for sentence in gpu_notes:
            fs.note(sentence)
    if jetson is not None and not status.available:
        status = NvmlStatus(False, JETSON_NVML_REASON)

    in_container, kind = detect_container(fs, env)
    if check_docker:
        from orchestrator.probe.docker_ping import check_docker as ping

        docker = ping(root, env)
        docker_reachable, docker_reason, nvidia_runtime = docker.reachable, docker.reason, docker.nvidia_runtime
    else:
        docker_reachable, docker_reason, nvidia_runtime = False, "not checked (--no-docker)", False

    directory = models_dir(env, is_root_user=os.geteuid() == 0)
    free: int | None = None
    if fs.is_live:
        free, problem = free_bytes(directory)
        if problem:
            fs.note(problem)
    else:
        fs.note(f"Free disk space is only measured on the live machine, not for the recorded tree under {root}.")

    hostname = _hostname(fs)
    allocators = find_allocators(fs)
    container = ContainerFacts(
        in_container=in_container, container_kind=kind, cgroup_version=detect_cgroup_version(fs, limits.version),
        docker_reachable=docker_reachable, docker_reason=docker_reason, nvidia_runtime=nvidia_runtime,
        models_dir=directory, models_dir_free_bytes=free)
    install = install_facts(sys.executable) if fs.is_live else None
    return HostFacts(
        cpu=cpu, memory=memory, gpus=gpus, nvml=status, jetson=jetson, container=container, hostname=hostname,
        notes=tuple(fs.notes),  # last: every step above may have added notes
        allocator_libraries=allocators, install=install)


_HOME_ROOTS = ("/root/", "/home/")


def install_facts(python: str) -> InstallFacts:
    """The interpreter ``python`` as this machine sees it: its real file and the owner of the home
    directory it lives in (a DynamicUser cannot read /root or /home/NAME)."""
    real = os.path.realpath(python) if python.startswith("/") else python
    in_home = next((p for p in (python, real) if p.startswith(_HOME_ROOTS)), "")
    owner = ""
    if in_home:
        top = "/root" if in_home.startswith("/root/") else "/".join(in_home.split("/")[:3])
        try:
            import pwd

            owner = pwd.getpwuid(os.stat(top).st_uid).pw_name
        except (OSError, KeyError):
            owner = "root" if top == "/root" else top.split("/")[2]
    return InstallFacts(python=python, python_real=real, home_owner=owner)


__all__ = ["JETSON_NVML_REASON", "install_facts", "probe_files", "probe_host"]
