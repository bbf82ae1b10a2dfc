"""ContainerSpec: how the runtime container is run, decided once in Python for every renderer."""

from __future__ import annotations

import math
from dataclasses import dataclass

from orchestrator.plan import engine_image
from orchestrator.plan.budget import MemoryBudget
from orchestrator.plan.decisions import container_user, image_tag
from orchestrator.probe.facts import GpuFacts, HostFacts
from orchestrator.select.gpus import GpuChoice
from orchestrator.select.profiles import Profile, parse_version
from orchestrator.units import format_size

CONTAINER_USER = container_user()

DEFAULT_BASE_IMAGES: dict[str, str] = {
    "cpu": "python:3.11-slim-bookworm",
    "cuda": "nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04",
    "l4t": "nvcr.io/nvidia/l4t-jetpack:r36.4.0",
    engine_image.FLAVOR: engine_image.BASE_IMAGE,
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


def base_image_for(facts: HostFacts, flavor: str, gpus: GpuChoice) -> tuple[str, str | None]:
    """The base image for ``flavor`` on this host, and a warning when no suitable one exists.

    CUDA: the base that the GPUs' driver runs (:func:`orchestrator.select.gpus.cuda_stack`). On
    Jetson the container's user space must match the board's L4T release (the CUDA libraries are
    mounted from the host), so the image follows ``jetson.l4t_release``.
    """
    default = DEFAULT_BASE_IMAGES[flavor]
    if flavor == "cuda":
        stack = gpus.stack
        return (default if stack is None else stack.base_image), None
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
    """``cpu``, ``cuda``, ``l4t``, or ``indextts2`` (IndexTTS2's engine image, orchestrator/plan/engine_image.py)."""
    base_image: str
    """Image the runtime image is built on (see :func:`base_image_for`)."""
    memory_limit_bytes: int
    """Effective memory minus the profile's headroom: the budget fits below it."""
    cpus: float
    shm_size_bytes: int
    gpu_count: int
    gpu_device_ids: tuple[str, ...]
    """UUIDs (``GPU-...``, ``MIG-...``) of the NVIDIA devices to reserve (discrete GPUs only)."""
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
    gpu_resource: str = "nvidia.com/gpu"
    """Kubernetes extended resource: ``nvidia.com/gpu``, or ``nvidia.com/mig-<profile>`` for a MIG instance
    (the device plugin's mixed strategy)."""
    cuda_build: str = ""
    """torch's CUDA build the image installs (``cu126``...), empty without CUDA."""
    architecture: str = "amd64"
    """Kubernetes ``kubernetes.io/arch`` of the image: ``amd64`` or ``arm64``."""
    l4t_major: str = ""
    """Jetson only: the L4T major release the image is built for (``36``)."""
    request_cpus: float = 0.0
    """Kubernetes CPU request and limit: the threads the plan runs plus the server's share."""
    request_memory_bytes: int = 0
    """Kubernetes memory request and limit: the planned RAM (budget rows) plus the profile's headroom."""
    k8s_replicas: int = 1
    """Pods the k8s render runs: one per GPU when the plan spreads workers over several whole GPUs, so
    each pod is its own process (one process's text front end caps near 3,000 audio-s/s, see
    benchmarks/RESULTS.md) and the Service spreads requests over them."""
    k8s_workers: int = 0
    """Workers per pod (0: the plan's)."""
    k8s_request_cpus: float = 0.0
    """Per pod: the pod's workers' threads plus the server's share (0: ``request_cpus``)."""
    k8s_request_memory_bytes: int = 0
    """Per pod: one process's fixed RAM plus its share of the per-request rows, plus headroom (0: ``request_memory_bytes``)."""


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


def _card_name(gpu: GpuFacts) -> str:
    """The physical card's product name (a MIG instance's name without `` MIG <profile>``)."""
    return gpu.name.split(" MIG ")[0] if gpu.is_mig_instance else gpu.name


def _card_memory_bytes(facts: HostFacts, gpu: GpuFacts) -> int:
    if gpu.mig_parent_index is None:
        return gpu.memory_total_bytes
    parent = next((g for g in facts.gpus if g.index == gpu.mig_parent_index and not g.is_mig_instance), gpu)
    return parent.memory_total_bytes


SERVER_CPU_SHARE = 0.5
"""CPUs the HTTP server and the phonemizer get on top of the workers' threads when the profile
reserves none (``threads.reserve_cpus``)."""


def container_spec(facts: HostFacts, profile: Profile, memory_limit_bytes: int, on_gpu: bool, *,
                   gpus: GpuChoice, budget: MemoryBudget | None = None,
                   cpus_used: int | None = None, workers: int = 1, family: str = "") -> ContainerSpec:
    """``family`` (the planned model) picks IndexTTS2's engine image over the profile's flavor; the
    CUDA build stays the one the plan chose for the GPUs."""
    used = gpus.used if on_gpu else ()
    gpu = used[0] if used else None
    host_flavor = profile.container.flavor
    build = gpus.stack.build.tag if gpus.stack is not None and host_flavor == "cuda" else ""
    flavor = engine_image.FLAVOR if engine_image.uses_engine_image(family) else host_flavor
    threads = cpus_used if cpus_used is not None else facts.cpu.effective_cpus
    share = float(profile.threads.reserve_cpus) if profile.threads.reserve_cpus else SERVER_CPU_SHARE
    request_cpus = min(float(facts.cpu.effective_cpus), threads + share)
    def with_headroom(planned: int) -> int:
        headroom = max(int(planned * profile.memory.headroom_fraction), profile.memory.headroom_min_bytes)
        return min(memory_limit_bytes, planned + headroom)

    replicas = len(used) if len(used) > 1 and workers >= len(used) else 1
    replica_memory = 0
    if budget is not None:
        planned = sum(t.planned_bytes for t in budget.totals if t.pool in ("ram", "shared"))
        request_memory = with_headroom(planned)
        per_request = sum(r.bytes for r in budget.rows if r.pool in ("ram", "shared") and r.item.startswith("per-request"))
        replica_memory = with_headroom(planned - per_request + -(-per_request // replicas)) if replicas > 1 else 0
    else:
        request_memory = memory_limit_bytes
    replica_workers = workers // replicas if replicas > 1 else 0
    replica_cpus = min(request_cpus, replica_workers * (threads // max(1, workers)) + share) if replicas > 1 else 0.0
    release = parse_version(facts.jetson.l4t_release) if facts.jetson is not None else None
    return ContainerSpec(
        image=image_tag(flavor, build),
        flavor=flavor,
        base_image=base_image_for(facts, flavor, gpus)[0],
        memory_limit_bytes=memory_limit_bytes,
        cpus=float(facts.cpu.effective_cpus),
        shm_size_bytes=profile.container.shm_size_bytes,
        gpu_count=len(used),
        gpu_device_ids=tuple(g.uuid for g in used),
        gpu_product=gfd_product_label(_card_name(gpu)) if gpu is not None else "",
        gpu_memory_mib=_card_memory_bytes(facts, gpu) // 1024**2 if gpu is not None else 0,
        runtime="nvidia" if host_flavor == "l4t" else None,
        read_only=True,
        user=CONTAINER_USER,
        network_mode="bridge",
        pids_limit=pids_limit_for(facts.cpu.effective_cpus),
        gpu_resource=f"nvidia.com/mig-{gpu.mig_profile}" if gpu is not None and gpu.is_mig_instance
        else "nvidia.com/gpu",
        cuda_build=build,
        architecture="arm64" if facts.cpu.architecture == "aarch64" else "amd64",
        l4t_major=str(release[0]) if host_flavor == "l4t" and release else "",
        request_cpus=request_cpus,
        request_memory_bytes=request_memory,
        k8s_replicas=replicas,
        k8s_workers=replica_workers,
        k8s_request_cpus=replica_cpus,
        k8s_request_memory_bytes=replica_memory,
    )


def sizing_reasons(spec: ContainerSpec, facts: HostFacts) -> tuple[str, ...]:
    """What --explain says about the container and pod sizes."""
    if spec.k8s_replicas > 1:
        return (
            f"single-host container (compose, docker backend): memory limit {format_size(spec.memory_limit_bytes)} = "
            f"effective memory minus headroom, {spec.cpus:g} CPUs = the machine's effective CPUs, all "
            f"{spec.gpu_count} GPUs in one runtime process",
            f"Kubernetes: {spec.k8s_replicas} pods behind one Service, one GPU and {spec.k8s_workers} worker(s) "
            f"each (one process's text front end is the limit, not the GPU); requests = limits = "
            f"{spec.k8s_request_cpus:g} CPU and {format_size(spec.k8s_request_memory_bytes)} per pod (its threads "
            "plus the server's share; one process's fixed RAM plus its share of the per-request memory, plus "
            f"headroom), never the node's capacity ({facts.cpu.effective_cpus} CPUs, "
            f"{format_size(facts.memory.effective_total_bytes)})",
        )
    return (
        f"single-host container (compose, docker backend): memory limit {format_size(spec.memory_limit_bytes)} = "
        f"effective memory minus headroom, {spec.cpus:g} CPUs = the machine's effective CPUs: the host is "
        "dedicated to the runtime, so it may use the machine",
        f"Kubernetes pod: requests = limits = {spec.request_cpus:g} CPU (the threads the plan runs plus the "
        f"server's share) and {format_size(spec.request_memory_bytes)} (the planned RAM plus headroom), never the "
        f"node's capacity ({facts.cpu.effective_cpus} CPUs, {format_size(facts.memory.effective_total_bytes)})",
    )
