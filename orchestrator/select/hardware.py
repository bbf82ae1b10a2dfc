"""What the hardware offers a model: the GPU in use, its compute capability and memory, and which
precisions it computes. Pure; used by the selection (select/selection.py), the model fit
(select/fit.py) and the planner.
"""

from __future__ import annotations

from orchestrator.probe.facts import HostFacts, jetson_compute_capability
from orchestrator.select.gpus import GpuChoice

FP16_MIN_CC = (7, 0)
"""fp16 is planned only with tensor cores (Volta, CC 7.0+): older cards gain nothing from it."""
BF16_MIN_CC = (8, 0)
"""bf16 needs Ampere (CC 8.0+) hardware support."""


def compute_capability(facts: HostFacts, gpus: GpuChoice) -> tuple[int, int] | None:
    """Of the GPUs in use (the selection's choice), or of the Jetson SoC; None without a usable GPU."""
    gpu = gpus.primary
    if gpu is not None:
        return gpu.compute_capability_tuple
    return jetson_compute_capability(facts)


def gpu_memory_bytes(facts: HostFacts, gpus: GpuChoice) -> int:
    """VRAM of one GPU in use (its size class); on Jetson the shared pool (effective RAM); 0 without a GPU."""
    gpu = gpus.primary
    if gpu is not None:
        return gpu.memory_total_bytes
    if facts.jetson is not None:
        return facts.memory.effective_total_bytes
    return 0


def resolve_precision(policy: str, device: str, cc: tuple[int, int] | None) -> tuple[str, str]:
    """(precision, reason) for a precision policy on this device; strict policies may not hold."""
    if device != "cuda" or cc is None:
        return "fp32", "fp32: no CUDA device" if device == "cuda" else "fp32: CPU inference"
    cc_text = f"{cc[0]}.{cc[1]}"
    if policy == "bf16-if-supported":
        if cc >= BF16_MIN_CC:
            return "bf16", f"bf16: compute capability {cc_text} >= 8.0"
        if cc >= FP16_MIN_CC:
            return "fp16", f"fp16: compute capability {cc_text} has no bf16 (needs 8.0) but has fp16 tensor cores"
        return "fp32", f"fp32: compute capability {cc_text} has neither bf16 (8.0) nor fp16 tensor cores (7.0)"
    if policy == "fp16-if-supported":
        if cc >= FP16_MIN_CC:
            return "fp16", f"fp16: compute capability {cc_text} >= 7.0 (tensor cores)"
        return "fp32", f"fp32: compute capability {cc_text} has no fp16 tensor cores (needs 7.0)"
    return policy, f"{policy}: fixed by the profile"


def precision_supported(precision: str, device: str, cc: tuple[int, int] | None) -> bool:
    if precision == "fp32":
        return True
    if device != "cuda" or cc is None:
        return False
    return cc >= (BF16_MIN_CC if precision == "bf16" else FP16_MIN_CC)


NATIVE_BF16_ISA = ("avx512_bf16", "amx")
"""CPU extensions with a native bf16 path (Source: /proc/cpuinfo flags, HostFacts.cpu.isa_flags)."""


def cpu_bf16_supported(precision: str, device: str, engine: str, isa_flags: tuple[str, ...]) -> bool:
    """bf16 on the CPU: only the torch engine, only where the CPU computes bf16 natively."""
    return (precision == "bf16" and device == "cpu" and engine == "torch"
            and any(flag in isa_flags for flag in NATIVE_BF16_ISA))
