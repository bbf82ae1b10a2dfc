"""Engine registry. Engines import their heavy libraries lazily, on creation."""

from __future__ import annotations

import importlib
from pathlib import Path

from runtime.engines.base import Engine, EngineError, EngineOptions, SynthesisItem

_REGISTRY: dict[str, str] = {
    "onnx": "runtime.families.piper.onnx_engine:OnnxEngine",
    "torch": "runtime.families.piper.torch_engine:TorchEngine",
}


def engine_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def create_engine(name: str, model_path: Path, sample_rate: int, options: EngineOptions) -> Engine:
    """Build the named engine for one voice model; raises EngineError with the reason."""
    target = _REGISTRY.get(name)
    if target is None:
        raise EngineError(f"unknown engine {name!r}; known: {', '.join(_REGISTRY)}")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EngineError(f"engine {name!r} is not installed: {exc}") from exc
    factory = getattr(module, class_name)
    engine: Engine = factory(model_path, sample_rate, options)
    return engine


__all__ = ["Engine", "EngineError", "EngineOptions", "SynthesisItem", "create_engine", "engine_names"]
