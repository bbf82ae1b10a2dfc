"""onnxruntime session settings shared by every family that runs an ONNX model: threads, execution
mode, graph optimisation, memory arena and spinning from :class:`EngineOptions`, and the execution
providers for a device. onnxruntime is imported inside the functions only."""

from __future__ import annotations

from typing import Any

from runtime.engines.base import EngineError, EngineOptions

_GRAPH_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def session_options(options: EngineOptions) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = options.intra_op_threads
    so.inter_op_num_threads = options.inter_op_threads
    so.execution_mode = (
        ort.ExecutionMode.ORT_PARALLEL
        if options.ort_execution_mode == "parallel"
        else ort.ExecutionMode.ORT_SEQUENTIAL
    )
    so.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel, _GRAPH_LEVELS[options.ort_graph_optimization]
    )
    so.enable_cpu_mem_arena = options.ort_memory_arena
    # The scheduler owns concurrency; spinning pool threads would steal CPU from other workers,
    # except on the solo-wide instance, which runs only while nothing else does.
    spin = "1" if options.allow_spinning else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", spin)
    so.add_session_config_entry("session.inter_op.allow_spinning", spin)
    so.log_severity_level = 3
    return so


def providers(device: str, device_index: int = 0) -> list[Any]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise EngineError(
                "device=cuda was requested but onnxruntime has no CUDAExecutionProvider "
                f"(available: {', '.join(available)}); install onnxruntime-gpu or set TAILOR_DEVICE=cpu"
            )
        return [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC", "device_id": str(device_index)}),
                "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


__all__ = ["providers", "session_options"]
