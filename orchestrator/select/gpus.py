"""Which GPUs the runtime uses, which it leaves out and why, and the CUDA build that runs on them.

Pure: a function of the facts (and the user's ``CUDA_VISIBLE_DEVICES``). Every GPU NVML reported
gets a verdict: used, or left out with the reason and the numbers (hidden by
``CUDA_VISIBLE_DEVICES``, MIG enabled so its instances are the devices, no torch build for its
driver or compute capability, too small for the model, busy: free memory below what the
model needs, or other processes holding more than half the card). The used GPUs are one kind of card (the largest usable model), so one plan's
batch sizes fit every one of them.

Compatibility (the torch release the runtime pins, see :data:`TORCH_RELEASE`): PyTorch publishes
one wheel set per CUDA build, each with kernels for a range of compute capabilities. The CUDA
12.8+ builds dropped Maxwell, Pascal and Volta (CC < 7.5); only the CUDA 12.6 build keeps
them, and it has no Blackwell kernels (CC 10.x/12.x need 12.8+). A driver runs builds of its own
CUDA major version (minor version compatibility: a 12.2 driver runs a 12.8 build whose kernels
match the card) and of older majors, never a newer major. The newest build that runs on the
driver and has kernels for the card wins; the image's CUDA base never asks for more than the
driver's CUDA version (the NVIDIA container toolkit refuses a base that does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from orchestrator.probe.facts import GpuFacts, HostFacts
from orchestrator.units import format_size, format_sizes

MIB = 1024**2

TORCH_RELEASE = "2.13"
"""The torch release the CUDA image installs (ci/constraints.txt pins the same)."""


@dataclass(frozen=True)
class CudaBuild:
    tag: str
    """PyTorch's wheel index name: ``cu126``, ``cu128``, ``cu130``."""
    cuda: tuple[int, int]
    min_cc: tuple[int, int]
    max_cc: tuple[int, int]

    @property
    def cuda_text(self) -> str:
        return f"{self.cuda[0]}.{self.cuda[1]}"

    @property
    def index_url(self) -> str:
        return f"https://download.pytorch.org/whl/{self.tag}"

    def kernels_for(self, cc: tuple[int, int]) -> bool:
        return self.min_cc <= cc <= self.max_cc


TORCH_CUDA_BUILDS: tuple[CudaBuild, ...] = (
    CudaBuild("cu130", (13, 0), (7, 5), (12, 1)),
    CudaBuild("cu128", (12, 8), (7, 5), (12, 0)),
    CudaBuild("cu126", (12, 6), (5, 0), (9, 0)),
)
"""Newest first. Source: the architectures each torch 2.11+ CUDA build ships kernels for."""

MIN_DRIVER_FOR_CUDA = {12: "525.60.13", 13: "580.65.06"}
"""Oldest Linux driver of each CUDA major (what minor version compatibility needs)."""

CUDA_BASE_TAGS: dict[tuple[int, int], str] = {
    (12, 0): "12.0.1", (12, 1): "12.1.1", (12, 2): "12.2.2", (12, 3): "12.3.2", (12, 4): "12.4.1",
    (12, 5): "12.5.1", (12, 6): "12.6.3", (12, 8): "12.8.1", (12, 9): "12.9.1", (13, 0): "13.0.1",
}
"""Published ``nvidia/cuda:<tag>-base-ubuntu22.04`` images. The base flavour carries no CUDA
libraries (the torch wheels bring their own); it only tells the container toolkit which
driver the image needs, so its version must not exceed the driver's."""


def parse_cuda(text: str) -> tuple[int, int] | None:
    major, _, minor = text.partition(".")
    if not major.isdigit() or not (minor or "0").isdigit():
        return None
    return int(major), int(minor or 0)


def driver_runs(driver_cuda: tuple[int, int], build: CudaBuild) -> bool:
    """A driver runs builds of its own CUDA major (minor version compatibility) and older majors."""
    return driver_cuda[0] >= build.cuda[0]


@dataclass(frozen=True)
class CudaStack:
    """What the CUDA image is built from for the GPUs in use."""

    build: CudaBuild
    base_image: str
    reason: str


def cuda_stack(driver_cuda_text: str, cc: tuple[int, int]) -> tuple[CudaStack | None, str]:
    """(the stack, why) for a driver's CUDA version and a card's compute capability; (None, the
    refusal with its fix) when no torch build runs there."""
    driver_cuda = parse_cuda(driver_cuda_text)
    cc_text = f"{cc[0]}.{cc[1]}"
    if driver_cuda is None:
        return None, f"the driver's CUDA version {driver_cuda_text!r} is unreadable"
    runnable = [b for b in TORCH_CUDA_BUILDS if driver_runs(driver_cuda, b)]
    if not runnable:
        oldest = TORCH_CUDA_BUILDS[-1]
        return None, (f"the driver supports CUDA <= {driver_cuda_text}; torch {TORCH_RELEASE} is built for CUDA "
                      f"{oldest.cuda[0]}.x at the oldest (driver >= {MIN_DRIVER_FOR_CUDA[oldest.cuda[0]]}): "
                      "upgrade the NVIDIA driver (e.g. 550 or newer), or run on the CPU")
    with_kernels = [b for b in runnable if b.kernels_for(cc)]
    if not with_kernels:
        every = [b for b in TORCH_CUDA_BUILDS if b.kernels_for(cc)]
        if every:
            need = every[0]
            return None, (f"compute capability {cc_text} needs torch's {need.tag} build (CUDA {need.cuda_text}), "
                          f"which a driver for CUDA {driver_cuda_text} cannot run: upgrade the driver to >= "
                          f"{MIN_DRIVER_FOR_CUDA.get(need.cuda[0], 'one for CUDA ' + need.cuda_text)}")
        return None, (f"no torch {TORCH_RELEASE} CUDA build has kernels for compute capability {cc_text} "
                      f"(builds cover {TORCH_CUDA_BUILDS[-1].min_cc[0]}.{TORCH_CUDA_BUILDS[-1].min_cc[1]} and newer)")
    build = with_kernels[0]
    base_cuda = min(build.cuda, driver_cuda)
    tags = [v for v in sorted(CUDA_BASE_TAGS) if v <= base_cuda]
    base = f"nvidia/cuda:{CUDA_BASE_TAGS[tags[-1]]}-base-ubuntu22.04"
    skipped = [b.tag for b in runnable if b is not build]
    why = (f"torch {TORCH_RELEASE} {build.tag}: newest build the driver (CUDA {driver_cuda_text}) runs with "
           f"kernels for compute capability {cc_text}")
    if build.cuda > driver_cuda:
        why += f" (CUDA {build.cuda_text} on a {driver_cuda_text} driver: minor version compatibility)"
    if skipped and any(not b.kernels_for(cc) for b in runnable):
        why += "; " + ", ".join(f"{b.tag} has no kernels for it" for b in runnable if not b.kernels_for(cc))
    return CudaStack(build, base, why), why


@dataclass(frozen=True)
class GpuVerdict:
    gpu: GpuFacts
    used: bool
    reason: str

    def sentence(self) -> str:
        verb = "used" if self.used else "left out"
        return f"{self.gpu.label} ({self.gpu.name}): {verb}: {self.reason}"


@dataclass(frozen=True)
class GpuChoice:
    """The devices the plan uses (one kind of card), every GPU's verdict and the CUDA stack."""

    used: tuple[GpuFacts, ...]
    verdicts: tuple[GpuVerdict, ...]
    stack: CudaStack | None
    warnings: tuple[str, ...]

    @property
    def primary(self) -> GpuFacts | None:
        return self.used[0] if self.used else None

    @property
    def left_out(self) -> tuple[GpuVerdict, ...]:
        return tuple(v for v in self.verdicts if not v.used)

    def summary(self) -> str:
        """Why no GPU is usable (for a profile's verdict), or ``N used``."""
        if self.used:
            return f"{len(self.used)} GPU(s) used"
        if not self.verdicts:
            return "none reported"
        return "none usable: " + "; ".join(v.sentence() for v in self.verdicts)


MIN_GPU_BYTES = 500 * MIB + 63_201_294 + 192 * MIB
"""VRAM the bundled voice needs on one device at batch 1 in fp32: CUDA context (500 MiB), torch
weights (63.2 MB) and one sentence's working memory (192 MiB). The same figures as the plan's
budget (orchestrator/plan/budget.py; tests/unit/test_gpu_choice.py keeps them equal)."""


def min_gpu_bytes() -> int:
    return MIN_GPU_BYTES


def _visible(gpus: Sequence[GpuFacts], spec: str | None) -> tuple[set[str] | None, list[str]]:
    """UUIDs that ``CUDA_VISIBLE_DEVICES`` leaves visible (None: no restriction) and warnings.

    Entries are NVML indexes or (prefixes of) ``GPU-``/``MIG-`` UUIDs, as CUDA accepts them. Like
    CUDA, the list ends at the first entry that names no device.
    """
    if spec is None:
        return None, []
    warnings: list[str] = []
    visible: set[str] = set()
    for raw in spec.split(","):
        entry = raw.strip()
        if entry.isdigit() or (entry.startswith("-") and entry[1:].isdigit()):
            match = [g for g in gpus if not g.is_mig_instance and g.index == int(entry)]
        elif entry.startswith(("GPU-", "MIG-")):
            match = [g for g in gpus if g.uuid.startswith(entry)]
            if len(match) > 1:
                warnings.append(f"CUDA_VISIBLE_DEVICES entry {entry!r} is a prefix of several UUIDs; CUDA "
                                "stops there")
                break
            if match and match[0].mig_mode == "enabled":
                match += [g for g in gpus if g.mig_parent_index == match[0].index]
        else:
            match = []
        if not match:
            if entry:
                warnings.append(f"CUDA_VISIBLE_DEVICES entry {entry!r} names no GPU; CUDA ignores it and "
                                "every entry after it")
            break
        visible.update(g.uuid for g in match)
    return visible, warnings


def choose_gpus(facts: HostFacts, environ: Mapping[str, str] | None = None) -> GpuChoice:
    """Every NVML GPU's verdict and the devices to use (see the module doc)."""
    gpus = facts.gpus
    environ = environ or {}
    visible, warnings = _visible(gpus, environ.get("CUDA_VISIBLE_DEVICES"))
    need = min_gpu_bytes()
    verdicts: dict[str, GpuVerdict] = {}
    candidates: list[tuple[GpuFacts, CudaStack]] = []
    for gpu in gpus:
        reason = ""
        stack: CudaStack | None = None
        if visible is not None and gpu.uuid not in visible:
            reason = f"hidden by CUDA_VISIBLE_DEVICES={environ.get('CUDA_VISIBLE_DEVICES')!r}"
        elif gpu.mig_mode == "enabled":
            count = sum(1 for g in gpus if g.mig_parent_index == gpu.index)
            reason = (f"MIG is enabled: its {count} MIG instance(s) are the devices" if count else
                      "MIG is enabled but no MIG instance exists (create one with `nvidia-smi mig -cgi PROFILE -C`)")
        else:
            stack, why = cuda_stack(gpu.cuda_version, gpu.compute_capability_tuple)
            if stack is None:
                reason = f"driver {gpu.driver_version}: {why}"
            elif gpu.memory_total_bytes < need:
                total, needed = format_sizes(gpu.memory_total_bytes, need)
                reason = (f"too small: {total} < {needed} the model needs "
                          "(CUDA context, weights and one sentence in fp32)")
            elif gpu.memory_free_bytes < max(need, gpu.memory_total_bytes // 2):
                held = gpu.memory_total_bytes - gpu.memory_free_bytes
                held_s, total, free, needed = format_sizes(held, gpu.memory_total_bytes, gpu.memory_free_bytes, need)
                reason = (f"busy: other processes hold {held_s} of {total}, "
                          f"{free} free" + (
                              f" < {needed} the model needs" if gpu.memory_free_bytes < need else
                              " (less than half the card: another job owns it)"))
        if reason:
            verdicts[gpu.uuid] = GpuVerdict(gpu, False, reason)
        else:
            assert stack is not None
            candidates.append((gpu, stack))
    used: list[GpuFacts] = []
    stack_used: CudaStack | None = None
    if candidates:
        # One kind of card: the largest usable; ties by the lowest index (NVML order).
        kinds = sorted({(g.name, g.memory_total_bytes) for g, _ in candidates}, key=lambda k: (-k[1], k[0]))
        best = kinds[0]
        same = [(g, s) for g, s in candidates if (g.name, g.memory_total_bytes) == best]
        mig = same[0][0].is_mig_instance
        for position, (gpu, stack) in enumerate(same):
            if mig and position > 0:
                verdicts[gpu.uuid] = GpuVerdict(gpu, False, (
                    f"a CUDA process sees one MIG instance only; {same[0][0].uuid} serves this host (the k8s "
                    "render runs one replica per instance)"))
                continue
            used.append(gpu)
            stack_used = stack_used or stack
            verdicts[gpu.uuid] = GpuVerdict(gpu, True, stack.reason if position == 0 else f"same card as {used[0].label}")
        for gpu, _stack in candidates:
            if (gpu.name, gpu.memory_total_bytes) != best:
                kind = "MIG profile" if gpu.is_mig_instance else "card"
                verdicts[gpu.uuid] = GpuVerdict(gpu, False, (
                    f"a smaller {kind} than {used[0].label} ({format_size(best[1])}): one plan sizes batches "
                    f"for one kind of {kind}; the largest was chosen"))
    ordered = tuple(verdicts[g.uuid] for g in gpus)
    return GpuChoice(tuple(used), ordered, stack_used, tuple(warnings))


def mig_instances(facts: HostFacts, profile: str) -> tuple[GpuFacts, ...]:
    """Every MIG instance of ``profile`` on the host (the k8s render asks for one per replica)."""
    return tuple(g for g in facts.gpus if g.is_mig_instance and g.mig_profile == profile)


__all__ = [
    "TORCH_CUDA_BUILDS",
    "CudaBuild",
    "CudaStack",
    "GpuChoice",
    "GpuVerdict",
    "choose_gpus",
    "cuda_stack",
    "min_gpu_bytes",
]
