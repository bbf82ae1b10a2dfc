"""ContainerSpec: how the runtime container is run, decided once in Python for every renderer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator import __version__
from orchestrator.facts import HostFacts
from orchestrator.profiles import Profile
from orchestrator.selection import primary_gpu

CONTAINER_USER = "10001:10001"


@dataclass(frozen=True)
class ContainerSpec:
    image: str
    """``tailor-runtime:<version>-<flavor>``."""
    flavor: str
    """``cpu``, ``cuda`` or ``l4t``."""
    memory_limit_bytes: int
    """Effective memory minus the profile's headroom: the budget fits below it."""
    cpus: float
    shm_size_bytes: int
    gpu_count: int
    gpu_device_ids: tuple[str, ...]
    """NVIDIA device indexes to reserve (discrete GPUs only)."""
    gpu_product: str
    """GPU Feature Discovery label value (``nvidia.com/gpu.product``), empty without a GPU."""
    gpu_memory_mib: int
    """Reported memory of the chosen GPU in MiB (``nvidia.com/gpu.memory``), 0 without one."""
    runtime: str | None
    """``nvidia`` on Jetson (the L4T runtime mounts the GPU), else None."""
    read_only: bool
    user: str
    port: int
    network_mode: str
    """``bridge`` by default; rendering may switch to ``host``."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image, "flavor": self.flavor, "memory_limit_bytes": self.memory_limit_bytes,
            "cpus": self.cpus, "shm_size_bytes": self.shm_size_bytes, "gpu_count": self.gpu_count,
            "gpu_device_ids": list(self.gpu_device_ids), "gpu_product": self.gpu_product,
            "gpu_memory_mib": self.gpu_memory_mib, "runtime": self.runtime, "read_only": self.read_only,
            "user": self.user, "port": self.port, "network_mode": self.network_mode,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContainerSpec:
        return cls(
            image=str(data["image"]), flavor=str(data["flavor"]),
            memory_limit_bytes=int(data["memory_limit_bytes"]), cpus=float(data["cpus"]),
            shm_size_bytes=int(data["shm_size_bytes"]), gpu_count=int(data["gpu_count"]),
            gpu_device_ids=tuple(str(d) for d in data["gpu_device_ids"]),
            gpu_product=str(data["gpu_product"]), gpu_memory_mib=int(data["gpu_memory_mib"]),
            runtime=None if data["runtime"] is None else str(data["runtime"]),
            read_only=bool(data["read_only"]), user=str(data["user"]), port=int(data["port"]),
            network_mode=str(data["network_mode"]),
        )


def gfd_product_label(name: str) -> str:
    """GPU Feature Discovery writes the product name with spaces as dashes: ``Tesla-T4``."""
    return "-".join(name.split())


def container_spec(facts: HostFacts, profile: Profile, memory_limit_bytes: int, on_gpu: bool,
                   port: int) -> ContainerSpec:
    gpu = primary_gpu(facts) if on_gpu else None
    flavor = profile.container.flavor
    return ContainerSpec(
        image=f"tailor-runtime:{__version__}-{flavor}",
        flavor=flavor,
        memory_limit_bytes=memory_limit_bytes,
        cpus=float(facts.cpu.effective_cpus),
        shm_size_bytes=profile.container.shm_size_bytes,
        gpu_count=1 if gpu is not None else 0,
        gpu_device_ids=(str(gpu.index),) if gpu is not None else (),
        gpu_product=gfd_product_label(gpu.name) if gpu is not None else "",
        gpu_memory_mib=gpu.memory_total_bytes // 1024**2 if gpu is not None else 0,
        runtime="nvidia" if flavor == "l4t" else None,
        read_only=True,
        user=CONTAINER_USER,
        port=port,
        network_mode="bridge",
    )
