"""NVIDIA GPUs through NVML. The only module that imports ``pynvml`` (nvidia-ml-py).

:class:`NvmlReader` is the seam: :class:`PynvmlReader` wraps the real library, tests pass a
fake. Reader methods may raise anything; :func:`read_gpus` is the one choke point that turns
every failure into ``NvmlStatus(available=False, reason=...)`` and never lets pynvml types or
exceptions reach the caller.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from orchestrator.probe.facts import GpuFacts, NvmlStatus


class NvmlReader(Protocol):
    """The NVML calls the probe needs. Indexes are NVML device indexes (0-based)."""

    def init(self) -> None: ...
    def shutdown(self) -> None: ...
    def device_count(self) -> int: ...
    def driver_version(self) -> str: ...
    def cuda_driver_version(self) -> int:
        """As NVML encodes it: 12040 for CUDA 12.4."""
        ...
    def name(self, index: int) -> str: ...
    def uuid(self, index: int) -> str: ...
    def memory_bytes(self, index: int) -> tuple[int, int]:
        """(total, free) in bytes."""
        ...
    def compute_capability(self, index: int) -> tuple[int, int]: ...
    def mig_mode(self, index: int) -> str | None:
        """``enabled``, ``disabled``, or None when the card has no MIG support."""
        ...
    def mig_instances(self, index: int) -> list[tuple[str, str, int, int]]:
        """The MIG devices carved from GPU ``index``: (name, uuid, total bytes, free bytes) each.

        Only asked when :meth:`mig_mode` is ``enabled``. Names read like
        ``NVIDIA A100-SXM4-40GB MIG 3g.20gb``; uuids like ``MIG-4f6e...``.
        """
        ...


# Sample: "NVIDIA A100-SXM4-40GB MIG 3g.20gb", "NVIDIA H100 80GB HBM3 MIG 1g.10gb+me"
_MIG_NAME = re.compile(r"\bMIG\s+(?P<profile>\d+g\.\d+gb(?:\+\w+)?)\s*$")


def mig_profile_from_name(name: str) -> str | None:
    """The MIG profile in an instance's NVML name: ``...MIG 3g.20gb`` -> ``3g.20gb``; None if absent."""
    match = _MIG_NAME.search(name)
    return match.group("profile") if match else None


def _text(value: Any) -> str:
    # Older nvidia-ml-py returns bytes, newer returns str.
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class PynvmlReader:
    """The real NVML, imported on first use so probing a GPU-less host stays fast."""

    def __init__(self) -> None:
        self._nvml: Any = None

    def init(self) -> None:
        import pynvml

        self._nvml = pynvml
        pynvml.nvmlInit()

    def shutdown(self) -> None:
        if self._nvml is not None:
            self._nvml.nvmlShutdown()

    def _handle(self, index: int) -> Any:
        return self._nvml.nvmlDeviceGetHandleByIndex(index)

    def device_count(self) -> int:
        return int(self._nvml.nvmlDeviceGetCount())

    def driver_version(self) -> str:
        return _text(self._nvml.nvmlSystemGetDriverVersion())

    def cuda_driver_version(self) -> int:
        return int(self._nvml.nvmlSystemGetCudaDriverVersion())

    def name(self, index: int) -> str:
        return _text(self._nvml.nvmlDeviceGetName(self._handle(index)))

    def uuid(self, index: int) -> str:
        return _text(self._nvml.nvmlDeviceGetUUID(self._handle(index)))

    def memory_bytes(self, index: int) -> tuple[int, int]:
        info = self._nvml.nvmlDeviceGetMemoryInfo(self._handle(index))
        return int(info.total), int(info.free)

    def compute_capability(self, index: int) -> tuple[int, int]:
        major, minor = self._nvml.nvmlDeviceGetCudaComputeCapability(self._handle(index))
        return int(major), int(minor)

    def mig_mode(self, index: int) -> str | None:
        nvml = self._nvml
        try:
            current, _pending = nvml.nvmlDeviceGetMigMode(self._handle(index))
        except nvml.NVMLError_NotSupported:
            return None
        return "enabled" if current == nvml.NVML_DEVICE_MIG_ENABLE else "disabled"

    def mig_instances(self, index: int) -> list[tuple[str, str, int, int]]:
        nvml = self._nvml
        parent = self._handle(index)
        found: list[tuple[str, str, int, int]] = []
        for slot in range(int(nvml.nvmlDeviceGetMaxMigDeviceCount(parent))):
            try:
                handle = nvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, slot)
            except nvml.NVMLError_NotFound:
                continue  # an empty slot: fewer instances than the card could hold
            info = nvml.nvmlDeviceGetMemoryInfo(handle)
            found.append((_text(nvml.nvmlDeviceGetName(handle)), _text(nvml.nvmlDeviceGetUUID(handle)),
                          int(info.total), int(info.free)))
        return found


def cuda_version_text(encoded: int) -> str:
    """NVML's CUDA driver version as ``major.minor``: 12040 → ``12.4``, 11080 → ``11.8``."""
    return f"{encoded // 1000}.{(encoded % 1000) // 10}"


def _reason(exc: BaseException) -> str:
    """A sentence for why NVML gave no GPUs, from the exception's pynvml class name."""
    kind = type(exc).__name__
    reasons = {
        "NVMLError_LibraryNotFound": "the NVML library (libnvidia-ml.so.1) was not found: no NVIDIA driver is installed or it is not mounted into this container",
        "NVMLError_DriverNotLoaded": "the NVIDIA kernel driver is not loaded",
        "NVMLError_NoPermission": "NVML was denied access to the GPU devices (check /dev/nvidia* permissions)",
        "NVMLError_LibRmVersionMismatch": "the NVML library and the kernel driver versions differ (reboot after a driver upgrade)",
        "NVMLError_GpuIsLost": "a GPU fell off the bus (NVML reports it lost)",
        "ModuleNotFoundError": "nvidia-ml-py (pynvml) is not installed",
    }
    if kind in reasons:
        return reasons[kind]
    return f"NVML failed: {kind}: {exc}"


def _mig_instances(reader: NvmlReader, card: GpuFacts, notes: list[str]) -> list[GpuFacts]:
    """The MIG instances of ``card`` as devices of their own (a note, and none, when NVML fails)."""
    try:
        raw = reader.mig_instances(card.index)
    except Exception as exc:
        notes.append(f"NVML could not list the MIG instances of GPU {card.index} ({_reason(exc)}); "
                     "none of them can be planned.")
        return []
    if not raw:
        notes.append(f"MIG is enabled on GPU {card.index} ({card.name}) but it has no MIG instances: "
                     "create some with `nvidia-smi mig -cgi PROFILE -C`.")
    instances = []
    for name, uuid, total, free in raw:
        instances.append(GpuFacts(
            index=card.index, name=name, uuid=uuid, memory_total_bytes=total, memory_free_bytes=free,
            compute_capability=card.compute_capability, driver_version=card.driver_version,
            cuda_version=card.cuda_version, mig_mode=None, mig_parent_index=card.index,
            mig_profile=mig_profile_from_name(name) or "unknown"))
    return instances


def read_gpus(reader: NvmlReader) -> tuple[tuple[GpuFacts, ...], NvmlStatus, list[str]]:
    """Every GPU NVML reports, its status, and notes about single devices that failed.

    Never raises: any failure in init or the system queries means no GPUs, with the reason.
    """
    try:
        reader.init()
    except Exception as exc:
        return (), NvmlStatus(available=False, reason=_reason(exc)), []
    notes: list[str] = []
    try:
        try:
            count = reader.device_count()
            driver = reader.driver_version()
            cuda = cuda_version_text(reader.cuda_driver_version())
        except Exception as exc:
            return (), NvmlStatus(available=False, reason=_reason(exc)), []
        gpus: list[GpuFacts] = []
        for index in range(count):
            try:
                total, free = reader.memory_bytes(index)
                major, minor = reader.compute_capability(index)
                card = GpuFacts(
                    index=index,
                    name=reader.name(index),
                    uuid=reader.uuid(index),
                    memory_total_bytes=total,
                    memory_free_bytes=free,
                    compute_capability=f"{major}.{minor}",
                    driver_version=driver,
                    cuda_version=cuda,
                    mig_mode=reader.mig_mode(index),
                )
            except Exception as exc:
                notes.append(f"NVML could not describe GPU {index} ({_reason(exc)}); it was left out.")
                continue
            gpus.append(card)
            if card.mig_mode == "enabled":
                gpus.extend(_mig_instances(reader, card, notes))
        return tuple(gpus), NvmlStatus(available=True, reason="ok"), notes
    finally:
        try:
            reader.shutdown()
        except Exception as exc:
            notes.append(f"NVML shutdown failed ({_reason(exc)}).")
