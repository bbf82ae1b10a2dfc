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


ARENA_SHRINK_EVERY = 16
"""Every this many runs, an instance hands its onnxruntime CPU arena's free regions back.

The arena grows regions by doubling and never returns them: under a soak of mixed sentence
lengths the soak benchmark's runtime kept growing past the plan's budget (1059 MiB at 1000
requests, still +15-20 MiB per 100), and one session fed 120 sentences of 20-200 phonemes
went from 139 to 290 MiB and kept creeping when fragmentation forced new regions. Shrinking
after every run keeps RSS flat but cost 14 % more CPU (re-faulting the pages each time);
every 16th run measured the same CPU as never and bounds what a session retains to what ~16
runs needed (benchmarks/RESULTS.md, "Memory under a soak")."""


class ArenaShrinkingRuns:
    """Runs one session one call at a time; with ``shrink``, every :data:`ARENA_SHRINK_EVERY`-th
    run hands the CPU arena's free regions back (the Piper and Kokoro onnx engines)."""

    def __init__(self, shrink: bool) -> None:
        import onnxruntime as ort

        self._lock = threading.Lock()
        self._runs = 0
        self._plain = ort.RunOptions()
        self._shrink = ort.RunOptions()
        if shrink:
            self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def run(self, session: Any, feeds: dict[str, Any]) -> Any:
        """``session.run(None, feeds)`` under the lock, with the shrinking run options when it is due."""
        with self._lock:
            self._runs += 1
            shrink = self._runs % ARENA_SHRINK_EVERY == 0
            return session.run(None, feeds, self._shrink if shrink else self._plain)


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
