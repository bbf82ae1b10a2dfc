"""The runtime's reading of a family's memory model: how much RAM one process serving it should hold.

The planner owns the full arithmetic (:meth:`FamilySpec.footprint`: reductions, VRAM, load peaks);
the runtime needs one number to set beside the RSS it measures (``/readyz``
``memory.model_estimate_bytes``, the memory-truth test): the footprint's RAM while serving, with one
request in flight per instance. Pure arithmetic on the declaration: no numpy, no onnxruntime.
"""

from __future__ import annotations

from runtime.families.spec import FamilySpec, Placement


def _placement(spec: FamilySpec, device: str, precision: str, engine: str | None) -> Placement:
    engines = spec.engines.get(device, ())
    return Placement(engine if engine in engines else (engines[0] if engines else "onnx"), device, precision)


def weights_bytes(spec: FamilySpec, precision: str, device: str = "cpu", engine: str | None = None) -> int:
    """Bytes of the family's kept weights at ``precision`` on ``device`` (components that stay fp32
    count at fp32; optional components are kept)."""
    footprint = spec.footprint(_placement(spec, device, precision, engine))
    return sum(line.bytes for line in footprint.weights)


def ram_estimate_bytes(spec: FamilySpec, device: str, precision: str, instances: int = 1,
                       with_overhead: bool = True, engine: str | None = None) -> int:
    """Resident RAM of a process serving ``spec`` with ``instances`` loaded instances (one stream
    each) on ``device`` at ``precision``; ``with_overhead`` False for a second family in the same
    process (the interpreter and the serving stack are counted once)."""
    footprint = spec.footprint(_placement(spec, device, precision, engine))
    count = max(1, instances)
    total = footprint.ram_serving(count, count)
    return total if with_overhead else total - footprint.overhead_ram_bytes


__all__ = ["ram_estimate_bytes", "weights_bytes"]
