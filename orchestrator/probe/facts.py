"""HostFacts: everything the probe learns about a machine, as frozen values.

This is the contract between the probe (which fills it from ``/proc``, ``/sys``, ``/etc``,
NVML and the Docker daemon) and the pure planning functions (which read it). It round-trips
through JSON exactly (``deploy probe --json`` / ``deploy plan --facts FILE``), so facts recorded
on one machine can be planned on another.

Units are in field names: ``*_bytes`` are bytes, ``*_cpus`` / ``*_cores`` are counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import FactsError
from orchestrator.model import Reader, check_version, from_jsonable, read_json_file, to_jsonable

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class CpuFacts:
    architecture: str
    """Machine architecture as the kernel names it: ``x86_64``, ``aarch64``. Source: uname / auxv."""
    model_name: str
    """Source: /proc/cpuinfo ``model name`` (x86) or device-tree model / ``CPU part`` (Arm)."""
    logical_cores: int
    """Online logical CPUs on the host. Source: /sys/devices/system/cpu/online."""
    physical_cores: int
    """Distinct (package, core id) pairs. Source: /proc/cpuinfo or topology in /sys."""
    isa_flags: tuple[str, ...]
    """Inference-relevant ISA extensions present, sorted: avx2, fma, avx512f, avx512_bf16, amx, asimd..."""
    numa_nodes: int
    """Source: /sys/devices/system/node/online."""
    allowed_cpus: int
    """CPUs this process may run on. Source: /proc/self/status ``Cpus_allowed_list``."""
    cgroup_quota_cpus: float | None
    """CPU bandwidth limit in CPUs. Source: cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us/cpu.cfs_period_us``."""
    cpuset_cpus: int | None
    """CPUs in the cgroup's cpuset. Source: cgroup v2 ``cpuset.cpus.effective`` or v1 ``cpuset.cpus``."""
    effective_cpus: int
    """The smallest of host, affinity, quota (rounded down, at least 1) and cpuset: what threads should use."""
    effective_cpus_source: str
    """Which limit decided ``effective_cpus``: ``host``, ``affinity``, ``cgroup-quota`` or ``cpuset``."""


@dataclass(frozen=True)
class MemoryFacts:
    total_bytes: int
    """Source: /proc/meminfo MemTotal."""
    available_bytes: int
    """Source: /proc/meminfo MemAvailable."""
    swap_total_bytes: int
    swap_free_bytes: int
    cgroup_limit_bytes: int | None
    """Source: cgroup v2 ``memory.max`` or v1 ``memory.limit_in_bytes``; None when unlimited."""
    cgroup_usage_bytes: int | None
    """Cgroup usage without reclaimable page cache (v2: memory.current - inactive_file; v1: usage - total_inactive_file)."""
    effective_total_bytes: int
    """The smallest of host total and the cgroup limit."""
    effective_available_bytes: int
    """The smallest of host available and (cgroup limit - cgroup usage)."""
    effective_source: str
    """``host`` or ``cgroup``: which figure decided ``effective_total_bytes``."""


@dataclass(frozen=True)
class GpuFacts:
    index: int
    name: str
    uuid: str
    memory_total_bytes: int
    memory_free_bytes: int
    compute_capability: str
    """``major.minor``, e.g. ``7.5`` for a T4, ``8.6`` for an RTX 3060."""
    driver_version: str
    cuda_version: str
    """Highest CUDA version the driver supports, ``major.minor``."""
    mig_mode: str | None
    """``enabled``, ``disabled``, or None when the card has no MIG support. For a MIG instance: None."""
    mig_parent_index: int | None = None
    """Set on a MIG instance: the NVML index of the physical GPU it is carved from. A MIG instance is
    listed as its own device (its own ``uuid`` ``MIG-...``, memory and name); ``index`` is the parent's."""
    mig_profile: str | None = None
    """The MIG profile of an instance as NVML names it (``1g.5gb``, ``3g.20gb``...), None for a whole GPU.
    Source: the instance's NVML device name (``NVIDIA A100-SXM4-40GB MIG 3g.20gb``)."""

    @property
    def is_mig_instance(self) -> bool:
        return self.mig_parent_index is not None

    @property
    def label(self) -> str:
        """``GPU 3`` or ``GPU 0 MIG 3g.20gb (MIG-...)``, for explanations."""
        if self.mig_parent_index is not None:
            return f"GPU {self.mig_parent_index} MIG {self.mig_profile} ({self.uuid})"
        return f"GPU {self.index}"

    @property
    def compute_capability_tuple(self) -> tuple[int, int]:
        major, _, minor = self.compute_capability.partition(".")
        return int(major), int(minor or 0)


@dataclass(frozen=True)
class NvmlStatus:
    available: bool
    """True when NVML initialised and answered."""
    reason: str
    """Why no GPU is reported (no library, no driver, NVML error), or ``ok``."""


@dataclass(frozen=True)
class JetsonFacts:
    board_model: str
    """Source: /proc/device-tree/model (or /sys/firmware/devicetree/base/model)."""
    compatible: tuple[str, ...]
    """Source: /proc/device-tree/compatible, NUL-separated."""
    soc: str
    """``tegra234`` (Orin), ``tegra194`` (Xavier), ``tegra210`` (Nano/TX1)..."""
    l4t_release: str
    """e.g. ``R35.4.1``. Source: /etc/nv_tegra_release."""
    jetpack_version: str | None
    """From the L4T to JetPack table; None when the release is not in the table."""
    unified_memory: bool = True
    """Jetson GPUs share system RAM: there is one memory pool."""


@dataclass(frozen=True)
class ContainerFacts:
    in_container: bool
    container_kind: str | None
    """``docker``, ``podman``, ``kubernetes``, ``lxc``, ``containerd`` or None."""
    cgroup_version: int | None
    """1 or 2; None when no cgroup filesystem was found."""
    docker_reachable: bool
    docker_reason: str
    """Why the Docker daemon is (not) reachable."""
    nvidia_runtime: bool
    """The daemon has the ``nvidia`` runtime registered."""
    models_dir: str
    models_dir_free_bytes: int | None


@dataclass(frozen=True)
class InstallFacts:
    """The Tailor install that probed the machine: what a systemd unit rendered for it runs.

    Source: the probing process's own interpreter (``sys.executable``), resolved on the machine
    itself, so a render elsewhere (a fleet controller) never looks at its own filesystem.
    """

    python: str
    """The interpreter as invoked (a venv's ``bin/python``)."""
    python_real: str
    """Where it really lives (a venv's python is a symlink, e.g. into a pyenv under /root)."""
    home_owner: str = ""
    """Owner of the home directory the interpreter (or its real file) lives in; "" when neither
    is under /root or /home (then a transient DynamicUser can run it)."""


@dataclass(frozen=True)
class HostFacts:
    cpu: CpuFacts
    memory: MemoryFacts
    gpus: tuple[GpuFacts, ...]
    nvml: NvmlStatus
    jetson: JetsonFacts | None
    container: ContainerFacts
    hostname: str = ""
    notes: tuple[str, ...] = ()
    """Problems met while probing (unreadable or garbled files...), each a full sentence."""
    allocator_libraries: tuple[str, ...] = ()
    """Paths of malloc replacements that exist on the host (libjemalloc.so.2, libtcmalloc_minimal.so.4...),
    sorted. Optional: the planner sets LD_PRELOAD only to a path listed here. Source: a fixed list of
    candidate paths under the probe root."""
    install: InstallFacts | None = None
    """The probing install's interpreter (live probes only; None for recorded trees and old files)."""
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = to_jsonable(self)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "facts") -> HostFacts:
        """Strict: every field type-checked, unknown fields refused, errors name ``source`` and the field."""
        reader = Reader(FactsError, source, "re-record the facts with `deploy probe --json > FILE`",
                        non_negative_ints=True)
        if isinstance(data, dict) and "schema_version" not in data:
            data = {**data, "schema_version": SCHEMA_VERSION}  # files from before the version field
        check_version(data, "schema_version", SCHEMA_VERSION, reader, "facts")
        facts: HostFacts = from_jsonable(cls, data, reader)
        return facts

    @classmethod
    def from_json_file(cls, path: Path) -> HostFacts:
        reader = Reader(FactsError, str(path), "pass a file written by `deploy probe --json > FILE`")
        data = read_json_file(path, reader, missing=f"facts file {path} does not exist")
        return cls.from_dict(data, source=str(path))


# Jetson GPUs are not visible to NVML; their compute capability follows from the SoC.
_JETSON_COMPUTE_CAPABILITY = {"tegra234": (8, 7), "tegra194": (7, 2), "tegra186": (6, 2), "tegra210": (5, 3)}


def jetson_compute_capability(facts: HostFacts) -> tuple[int, int] | None:
    """The integrated GPU's compute capability from the Jetson SoC; None off Jetson or for an unknown SoC.

    Source: the SoC in the device tree (``jetson.soc``), since NVML does not see Jetson GPUs.
    """
    if facts.jetson is None:
        return None
    return _JETSON_COMPUTE_CAPABILITY.get(facts.jetson.soc)


def empty_gpu_facts(reason: str) -> tuple[tuple[GpuFacts, ...], NvmlStatus]:
    """No GPU, with the reason recorded."""
    return (), NvmlStatus(available=False, reason=reason)


__all__ = [
    "SCHEMA_VERSION",
    "ContainerFacts",
    "CpuFacts",
    "GpuFacts",
    "HostFacts",
    "InstallFacts",
    "JetsonFacts",
    "MemoryFacts",
    "NvmlStatus",
    "empty_gpu_facts",
    "jetson_compute_capability",
]
