"""Read a Piper voice's VITS weights out of its ONNX export.

Most initializers keep their PyTorch names (``dec.ups.0.weight``). The rest were renamed by the
exporter (``onnx::Conv_8168``, or the embedding table, which Piper's export calls ``sid``); they
are named here after the node that consumes them, whose name carries the module path
(``/flow/flows.0/enc/in_layers.3/Conv`` -> ``flow.flows.0.enc.in_layers.3.weight``). A few
parameters were constant-folded by the exporter and are recognised by their folded node's name.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from runtime.engines.base import EngineError
from runtime.families.piper.vits.hyperparams import ConvAttributes

# Folded constants that are parameters in disguise: ONNX output name -> state-dict name.
_FOLDED = {"/dp/flows.0/Exp_output_0": "dp.flows.0.inv_scale"}
# Inputs of these ops, by position, are module parameters.
_PARAM_INPUTS = {
    "Conv": {1: "weight", 2: "bias"},
    "ConvTranspose": {1: "weight", 2: "bias"},
    "Gather": {0: "weight"},
    "MatMul": {1: "weight"},
    "Gemm": {1: "weight", 2: "bias"},
}


@dataclass(frozen=True)
class VoiceWeights:
    tensors: dict[str, torch.Tensor]
    """State-dict name -> CPU tensor."""
    convs: dict[str, ConvAttributes]
    """Module path (``dec.ups.0``) -> attributes of its Conv/ConvTranspose node."""
    unmapped: tuple[str, ...]
    """Weight-like initializers that got no state-dict name (reported on load failure)."""
    input_names: tuple[str, ...]
    """The graph's inputs (``input``, ``input_lengths``, ``scales`` and, multi-speaker, ``sid``)."""


def _module_path(node_name: str) -> str:
    """``/flow/flows.0/enc/in_layers.3/Conv`` -> ``flow.flows.0.enc.in_layers.3``."""
    parts = [p for p in node_name.split("/") if p]
    return ".".join(parts[:-1])


def _is_weight_like(name: str, dims: Iterable[int]) -> bool:
    """Module parameters, as opposed to shape constants and folded scalars of the graph."""
    if name.startswith("/") or name[:1].isdigit():
        return False
    if name.startswith("onnx::"):
        return name.startswith(("onnx::Conv_", "onnx::MatMul_", "onnx::Gemm_"))
    return len(list(dims)) > 0


def _conv_attributes(node: object) -> ConvAttributes:
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}  # type: ignore[attr-defined]

    def first(key: str, default: int) -> int:
        values = list(attrs.get(key, [default]))
        return int(values[0]) if values else default

    return ConvAttributes(
        kernel_size=first("kernel_shape", 1),
        stride=first("strides", 1),
        dilation=first("dilations", 1),
        padding=first("pads", 0),
        groups=int(attrs.get("group", 1)),
    )


def read_voice_weights(model_path: Path) -> VoiceWeights:
    """Load the tensors of ``model_path`` under state-dict names; raises EngineError if the file
    is missing or is not an ONNX model. The protobuf is released before returning, so only one
    copy of the weights (the returned tensors) stays in memory."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:
        raise EngineError(f"the torch engine needs the 'onnx' package to read {model_path}: {exc}") from exc
    if not model_path.is_file():
        raise EngineError(f"voice model {model_path} does not exist")
    try:
        model = onnx.load(str(model_path))
    except Exception as exc:  # onnx raises DecodeError, OSError, ValueError...
        raise EngineError(f"{model_path} is not a readable ONNX model: {exc}") from exc

    graph = model.graph
    consumers: dict[str, list[tuple[str, int, str]]] = {}
    convs: dict[str, ConvAttributes] = {}
    for node in graph.node:
        if node.op_type in ("Conv", "ConvTranspose") and node.name:
            convs[_module_path(node.name)] = _conv_attributes(node)
        for position, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node.op_type, position, node.name))

    tensors: dict[str, torch.Tensor] = {}
    unmapped: list[str] = []
    for init in graph.initializer:
        name = init.name
        target: str | None = None
        if name in _FOLDED:
            target = _FOLDED[name]
        elif _is_weight_like(name, init.dims):
            target = name if "." in name and not name.startswith("onnx::") else None
            if target is None:
                target = _name_from_consumers(consumers.get(name, []))
        if target is None:
            if _is_weight_like(name, init.dims):
                unmapped.append(name)
            continue
        array = np.array(numpy_helper.to_array(init), copy=True)
        tensors[target] = torch.from_numpy(array)
        init.ClearField("raw_data")  # drop the protobuf's copy as we go
    input_names = tuple(i.name for i in graph.input)
    del graph, model, consumers
    gc.collect()
    _return_freed_memory()
    return VoiceWeights(tensors=tensors, convs=convs, unmapped=tuple(unmapped), input_names=input_names)


def _return_freed_memory() -> None:
    """Hand the protobuf's freed pages back to the OS (glibc keeps them otherwise; measured:
    about 20 MB of RSS for the 63 MB medium voice). A no-op where glibc is absent."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _name_from_consumers(uses: list[tuple[str, int, str]]) -> str | None:
    names = set()
    for op_type, position, node_name in uses:
        role = _PARAM_INPUTS.get(op_type, {}).get(position)
        if role and node_name:
            module = _module_path(node_name)
            names.add(f"{module}.{role}")
    return names.pop() if len(names) == 1 else None
