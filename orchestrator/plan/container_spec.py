"""ContainerSpec: how the runtime container is run, decided once in Python for every renderer."""

from __future__ import annotations

import math
from dataclasses import dataclass

from orchestrator.plan.decisions import container_user, image_tag
from orchestrator.probe.facts import HostFacts, primary_gpu
from orchestrator.select.profiles import Profile

CONTAINER_USER = container_user()

DEFAULT_BASE_IMAGES: dict[str, str] = {
    "cpu": "python:3.11-slim-bookworm",
    "cuda": "nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04",
    "l4t": "nvcr.io/nvidia/l4t-jetpack:r36.4.0",
}
"""Base image per image flavor; ``deploy auto --base-image`` overrides it."""

# L4T releases with a published l4t-jetpack image whose Python (3.10, Ubuntu 22.04) can run the
# runtime. JetPack 5 (R35, Ubuntu 20.04, Python 3.8) and JetPack 4 (R32, Python 3.6) images
# cannot: Tailor needs Python >= 3.10.
_L4T_JETPACK_IMAGES: dict[str, str] = {
    "R36.2": "nvcr.io/nvidia/l4t-jetpack:r36.2.0",
    "R36.3": "nvcr.io/nvidia/l4t-jetpack:r36.3.0",
    "R36.4": "nvcr.io/nvidia/l4t-jetpack:r36.4.0",
}


def base_image_for(facts: HostFacts, flavor: str) -> tuple[str, str | None]:
    """The base image for ``flavor`` on this host, and a warning when no suitable one exists.

    On Jetson the container's user space must match the board's L4T release (the CUDA libraries
    are mounted from the host), so the image follows ``jetson.l4t_release``.
    """
    default = DEFAULT_BASE_IMAGES[flavor]
    if flavor != "l4t" or facts.jetson is None:
        return default, None
    release = facts.jetson.l4t_release
    major_minor = ".".join(release.split(".")[:2])
    image = _L4T_JETPACK_IMAGES.get(major_minor)
    if image is not None:
        return image, None
    if release.startswith("R36."):
        return default, f"L4T {release} has no image in Tailor's table; using {default} (override with --base-image)"
    return default, (f"L4T {release} (JetPack {facts.jetson.jetpack_version or 'unknown'}) ships Python older than "
                     "3.10, which the runtime needs: the container backend needs --base-image with Python >= 3.10 "
                     "matching this L4T release, or upgrade the board to JetPack 6")


@dataclass(frozen=True)
class ContainerSpec:
    image: str
    """``tailor-runtime:<version>-<flavor>``."""
    flavor: str
    """``cpu``, ``cuda`` or ``l4t``."""
    base_image: str
    """Image the runtime image is built on (see :func:`base_image_for`)."""
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
    network_mode: str
    """``bridge`` by default; rendering may switch to ``host``."""
    pids_limit: int
    """Most processes + threads in the container (see :func:`pids_limit_for`)."""


def pids_limit_for(cpus: float) -> int:
    """The container's process/thread ceiling: 64 per CPU, at least 512.

    Each worker runs a thread pool per engine instance (intra + inter-op threads), plus the
    server's own threads; 64 per CPU leaves room for that several times over while a fork bomb
    or a thread leak still stops at a bound instead of exhausting the host's PIDs.
    """
    return max(512, 64 * math.ceil(cpus))


def gfd_product_label(name: str) -> str:
    """GPU Feature Discovery writes the product name with spaces as dashes: ``Tesla-T4``."""
    return "-".join(name.split())


def container_spec(facts: HostFacts, profile: Profile, memory_limit_bytes: int, on_gpu: bool) -> ContainerSpec:
    gpu = primary_gpu(facts) if on_gpu else None
    flavor = profile.container.flavor
    return ContainerSpec(
        image=image_tag(flavor),
        flavor=flavor,
        base_image=base_image_for(facts, flavor)[0],
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
        network_mode="bridge",
        pids_limit=pids_limit_for(facts.cpu.effective_cpus),
    )
