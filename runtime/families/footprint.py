"""The runtime's reading of a family's memory model: how much RAM one process serving it should hold.

The planner owns the full arithmetic (reductions, VRAM, load peaks); the runtime needs one number to
set beside the RSS it measures (``/readyz`` ``memory.model_estimate_bytes``, the memory-truth test):
on the CPU, the runtime overhead plus, per instance (one per worker), the weights at the precision
served, the per-stream caches and one batch item's activations; on CUDA the weights and activations
live in VRAM, so RAM is the overhead and the per-stream host buffers. Pure arithmetic on the
declaration: no numpy, no onnxruntime.
"""

from __future__ import annotations

from runtime.families.spec import BYTES_PER_PARAM, FamilySpec


def weights_bytes(spec: FamilySpec, precision: str, optional: bool = False) -> int:
    """Bytes of the family's weights at ``precision`` (components that stay fp32 count at fp32;
    optional components only when ``optional``)."""
    total = 0.0
    for component in spec.components:
        if component.optional and not optional:
            continue
        kind = "fp32" if component.full_precision_only else precision
        total += component.params * BYTES_PER_PARAM.get(kind, BYTES_PER_PARAM["fp32"])
    return int(total)


def ram_estimate_bytes(spec: FamilySpec, device: str, precision: str, instances: int = 1,
                       with_overhead: bool = True) -> int:
    """Resident RAM of a process serving ``spec`` with ``instances`` loaded instances (one stream
    each) on ``device`` at ``precision``; ``with_overhead`` False for a second family in the same
    process (the interpreter and the serving stack are counted once)."""
    memory = spec.memory
    overhead = memory.runtime_overhead_ram_bytes if with_overhead else 0
    if device == "cuda":
        per_instance = memory.per_stream_ram_bytes
    else:
        per_instance = (weights_bytes(spec, precision) + memory.per_stream_ram_bytes
                        + memory.activation_per_item_bytes.get("cpu", 0))
    return overhead + max(1, instances) * per_instance


__all__ = ["ram_estimate_bytes", "weights_bytes"]
