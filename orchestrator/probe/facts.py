"""HostFacts: everything the probe learns about a machine, as frozen values.

This is the contract between the probe (which fills it from ``/proc``, ``/sys``, ``/etc``,
NVML and the Docker daemon) and the pure planning functions (which read it). It round-trips
through JSON exactly (``deploy probe --json`` / ``deploy plan --facts FILE``), so facts recorded
on one machine can be planned on another.

Units are in field names: ``*_bytes`` are bytes, ``*_cpus`` / ``*_cores`` are counts.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from orchestrator.errors import FactsError

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
    """``enabled``, ``disabled``, or None when the card has no MIG support."""

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
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return _to_jsonable(self)  # type: ignore[no-any-return]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "facts") -> HostFacts:
        if not isinstance(data, dict):
            raise FactsError(
                f"{source}: expected a JSON object at the top level",
                "pass the output of `deploy probe --json`",
            )
        version = data.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise FactsError(
                f"{source}: schema_version {version!r} is not supported (this tool reads {SCHEMA_VERSION})",
                "re-record the facts with this version of `deploy probe --json`",
            )
        facts: HostFacts = _from_jsonable(cls, data, source, "")
        return facts

    @classmethod
    def from_json_file(cls, path: Path) -> HostFacts:
        from orchestrator.jsonfile import read_json

        data = read_json(path, FactsError, missing=f"facts file {path} does not exist",
                         hint="pass a file written by `deploy probe --json > FILE`")
        return cls.from_dict(data, source=str(path))


def _to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_to_jsonable(v) for v in value]
    return value


def _from_jsonable(tp: Any, data: Any, source: str, path: str) -> Any:
    where = f"{source}: field {path or '(top)'}"
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if data is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _from_jsonable(inner[0], data, source, path)
    if dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise FactsError(f"{where}: expected an object, got {type(data).__name__}",
                             "pass the output of `deploy probe --json`")
        hints = typing.get_type_hints(tp)
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(tp):
            sub = f"{path}.{f.name}" if path else f.name
            if f.name not in data:
                if f.default is not dataclasses.MISSING:
                    continue
                raise FactsError(f"{source}: field {sub} is missing",
                                 "re-record the facts with `deploy probe --json`")
            kwargs[f.name] = _from_jsonable(hints[f.name], data[f.name], source, sub)
        return tp(**kwargs)  # type: ignore[operator]  # tp is a dataclass type here
    if origin is tuple:
        if not isinstance(data, list):
            raise FactsError(f"{where}: expected a list, got {type(data).__name__}",
                             "pass the output of `deploy probe --json`")
        (item_tp, *_rest) = typing.get_args(tp)
        return tuple(_from_jsonable(item_tp, v, source, f"{path}[{i}]") for i, v in enumerate(data))
    if tp is bool:
        if not isinstance(data, bool):
            raise FactsError(f"{where}: expected true or false, got {data!r}", "fix the facts file")
        return data
    if tp is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise FactsError(f"{where}: expected an integer, got {data!r}", "fix the facts file")
        if data < 0:
            raise FactsError(f"{where}: expected a non-negative integer, got {data}", "fix the facts file")
        return data
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise FactsError(f"{where}: expected a number, got {data!r}", "fix the facts file")
        return float(data)
    if tp is str:
        if not isinstance(data, str):
            raise FactsError(f"{where}: expected a string, got {data!r}", "fix the facts file")
        return data
    raise FactsError(f"{where}: unsupported type {tp!r}", "this is a bug in tailor")  # pragma: no cover


def empty_gpu_facts(reason: str) -> tuple[tuple[GpuFacts, ...], NvmlStatus]:
    """No GPU, with the reason recorded."""
    return (), NvmlStatus(available=False, reason=reason)


__all__ = [
    "SCHEMA_VERSION",
    "ContainerFacts",
    "CpuFacts",
    "GpuFacts",
    "HostFacts",
    "JetsonFacts",
    "MemoryFacts",
    "NvmlStatus",
    "empty_gpu_facts",
]
