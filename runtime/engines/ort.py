"""onnxruntime session settings shared by every family that runs an ONNX model: threads, execution
mode, graph optimisation, memory arena and spinning from :class:`EngineOptions`, and the execution
providers for a device. onnxruntime is imported inside the functions only."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from runtime.engines.base import EngineError, EngineOptions

_LOG = logging.getLogger("tailor.runtime.onnx")

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


_WITH_OUTPUT: dict[tuple[object, ...], Any] = {}
_WITH_OUTPUT_LOCK = threading.Lock()


def session_with_output(key: tuple[object, ...], model: Callable[[], bytes | str], find: Callable[[Any], str],
                        options: EngineOptions, label: str) -> tuple[Any, str]:
    """(A session, the tensor's name) of the ONNX model ``model()`` gives (a path or its bytes) with
    the tensor ``find(onnx_model)`` names made an extra graph output, after the model's own: how an
    engine reads an intermediate such as a duration predictor's frames (word timestamps).

    Built on first use and shared by every caller with the same ``key`` (the model's identity) and
    device/threads (``InferenceSession.run`` is thread-safe): one extra session per process, not per
    worker, and none unless asked for. Needs the ``onnx`` package (EngineError says so)."""
    full = (*key, options.device, options.device_index, options.intra_op_threads)
    with _WITH_OUTPUT_LOCK:
        found = _WITH_OUTPUT.get(full)
        if found is not None:
            return found  # type: ignore[no-any-return]
        try:
            import onnx
        except ImportError as exc:
            raise EngineError(
                "word timestamps with the onnx engine need the 'onnx' package (pip install onnx, "
                "or install tailor-deploy[runtime])") from exc
        import onnxruntime as ort

        source = model()
        try:
            proto = onnx.load_from_string(source) if isinstance(source, bytes) else onnx.load(source)
        except Exception as exc:  # onnx raises DecodeError, OSError...
            raise EngineError(f"{label} is not a readable ONNX model: {exc}") from exc
        del source
        name = find(proto)
        if all(out.name != name for out in proto.graph.output):
            proto.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
        serialized = proto.SerializeToString()
        del proto
        try:
            session = ort.InferenceSession(serialized, sess_options=session_options(options),
                                           providers=providers(options.device, options.device_index))
        except Exception as exc:  # onnxruntime's own Fail/InvalidGraph types
            raise EngineError(f"onnxruntime could not load {label} with its output {name}: {exc}") from exc
        _LOG.info("loaded %s with its %s output (word timestamps)", label, name)
        _WITH_OUTPUT[full] = (session, name)
        return session, name


__all__ = ["providers", "session_options", "session_with_output"]
