"""What `deploy models` shows: every model family of runtime/families/catalog.py as rows."""

from __future__ import annotations

from typing import Any

from orchestrator.select.fit import smallest_machine
from runtime.families.catalog import FAMILIES
from runtime.families.spec import FamilySpec


def footprints(spec: FamilySpec) -> list[dict[str, Any]]:
    """One row per device and precision (the device's preferred engine), one worker, one request in flight."""
    rows: list[dict[str, Any]] = []
    for placement in spec.placements():
        est = spec.estimate(placement)
        rows.append({"device": placement.device, "precision": placement.precision, "engine": placement.engine,
                     "weights_bytes": est.weights_bytes, "ram_after_load_bytes": est.ram_after_load_bytes,
                     "ram_load_peak_bytes": est.ram_load_peak_bytes, "ram_serving_bytes": est.ram_serving_bytes,
                     "vram_after_load_bytes": est.vram_after_load_bytes, "vram_peak_bytes": est.vram_peak_bytes})
    return rows


def model_rows() -> list[dict[str, Any]]:
    """Every family: what it is, what it needs, how it is licensed, installed and found."""
    return [{
        "name": spec.name, "description": spec.description, "params": spec.params,
        "components": [{"name": c.name, "params": c.params, "role": c.role, "optional": c.optional,
                        "offloadable": c.offloadable, "full_precision_only": c.full_precision_only}
                       for c in spec.components],
        "devices": {device: list(precisions) for device, precisions in spec.devices.items()},
        "engines": {device: list(engines) for device, engines in spec.engines.items()},
        "streaming": spec.streaming, "batches": spec.batches, "concurrent_safe": spec.concurrent_safe,
        "separate_process": spec.separate_process, "sample_rate_hz": spec.sample_rate_hz,
        "licence": spec.licence, "commercial_use": spec.commercial_use, "install": spec.install,
        "loader": spec.loader, "weights": spec.weights, "mmap_supported": spec.memory.mmap_supported,
        "footprints": footprints(spec), "smallest_machine": smallest_machine(spec), "sources": list(spec.sources),
    } for spec in FAMILIES.values()]


__all__ = ["footprints", "model_rows"]
