"""The torch engine: a Piper voice run by a native PyTorch VITS (``runtime.families.piper.vits``).

Weights are read from the voice's ``.onnx`` file, so no separate PyTorch checkpoint is needed.
On CPU it runs float32; on CUDA the generator's upsampling stages (nearly all of the work) may
run in float16/bfloat16 while the text encoder, duration predictor, flow and the generator's
first and last convs stay float32, so the audio length never depends on the precision. ``synthesize_batch`` runs one padded forward pass and trims every item exactly.

With ``shape_buckets`` (``TAILOR_SHAPE_BUCKETS``) a batch is padded to bucket shapes (phoneme ids,
frames, batch size: ``runtime.engines.shapes``), so a GPU meets a small fixed set of shapes; on CUDA
the first batch of each batch bucket (the server's warm-up runs every one before ready) also runs
the flow and generator once per frame bucket - cuDNN's autotuner (``TAILOR_CUDNN_BENCHMARK``) sees
every shape then - and with ``cuda_graphs`` (``TAILOR_CUDA_GRAPHS``) captures each as a CUDA graph,
replayed for later batches of that shape. Nothing is tuned or captured on the request path after
warm-up; a shape past the warmed ones runs eagerly.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from runtime.engines.base import EngineError, EngineOptions, SynthesisItem, TimedAudio
from runtime.engines.shapes import (
    PHONEME_BUCKETS,
    batch_bucket,
    frame_bucket,
    frame_buckets,
    phoneme_bucket,
)

if TYPE_CHECKING:
    from runtime.families.piper.vits import VitsSynthesizer

_LOG = logging.getLogger("tailor.runtime.torch")

_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
_INTEROP_LOCK = threading.Lock()
_interop_threads_set: int | None = None


def _prefer_passive_openmp_waits() -> None:
    """Make idle OpenMP threads sleep instead of spin, unless the user chose otherwise.

    libgomp reads ``OMP_WAIT_POLICY`` once, when torch is first imported, so this only works if
    this engine is the first to import torch (as in ``python -m runtime``). Measured on a shared
    2-core host with 2 intra-op threads: spinning threads made synthesis 2.5-4x slower (4-6 vs
    15-16 audio-seconds per second); onnxruntime's spinning is likewise off in the onnx engine.
    """
    if "torch" in sys.modules:
        if "OMP_WAIT_POLICY" not in os.environ:
            _LOG.info("torch was imported before the torch engine; OMP_WAIT_POLICY left to the default")
        return
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _configure_threads(torch: Any, options: EngineOptions) -> None:
    """Apply the plan's thread counts. torch accepts the inter-op count only once per process,
    before any parallel work; a second engine asking for a different count gets a warning."""
    global _interop_threads_set
    torch.set_num_threads(options.intra_op_threads)
    with _INTEROP_LOCK:
        if _interop_threads_set is None:
            try:
                torch.set_num_interop_threads(options.inter_op_threads)
                _interop_threads_set = options.inter_op_threads
            except RuntimeError:
                _interop_threads_set = torch.get_num_interop_threads()
        if _interop_threads_set != options.inter_op_threads:
            _LOG.warning(
                "torch inter-op threads already set to %d in this process; %d requested",
                _interop_threads_set, options.inter_op_threads,
            )


class TorchEngine:
    """Runs one Piper VITS voice with PyTorch. One caller at a time per instance."""

    name = "torch"
    supports_durations = True

    def __init__(self, model_path: Path, sample_rate: int, options: EngineOptions) -> None:
        _prefer_passive_openmp_waits()
        try:
            import torch
        except ImportError as exc:
            raise EngineError(f"the torch engine needs PyTorch: {exc}") from exc
        self._torch = torch
        model_path = Path(model_path)
        if options.precision not in _DTYPES:
            raise EngineError(f"unknown precision {options.precision!r}; use fp32, fp16 or bf16")
        if options.device not in ("cpu", "cuda"):
            raise EngineError(f"unknown device {options.device!r}; use cpu or cuda")
        if options.precision == "fp16" and options.device != "cuda":
            raise EngineError(
                "precision fp16 needs device=cuda; the torch engine on CPU runs fp32 or bf16"
            )
        if options.device == "cuda" and not torch.cuda.is_available():
            raise EngineError(
                "device=cuda was requested but torch sees no CUDA device "
                f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); set TAILOR_DEVICE=cpu"
            )
        if options.device == "cuda" and options.device_index >= torch.cuda.device_count():
            raise EngineError(
                f"CUDA device {options.device_index} was requested but torch sees "
                f"{torch.cuda.device_count()}; check TAILOR_GPUS against CUDA_VISIBLE_DEVICES"
            )
        _configure_threads(torch, options)
        if options.torch_compile and options.device != "cuda":
            _LOG.warning("TAILOR_TORCH_COMPILE ignored on CPU: measured no faster than eager")
        if options.device == "cuda":
            torch.backends.cudnn.benchmark = options.cudnn_benchmark
        if options.cuda_graphs and not (options.device == "cuda" and options.shape_buckets):
            _LOG.warning("TAILOR_CUDA_GRAPHS ignored: it needs device=cuda and TAILOR_SHAPE_BUCKETS=true")

        model = _shared_model(torch, model_path, options)
        self._model: VitsSynthesizer | None = model
        self.hp = model.hp
        self.sample_rate = int(sample_rate)
        self.device = options.device
        self.precision = options.precision
        self._device = torch.device("cuda", options.device_index) if options.device == "cuda" else torch.device("cpu")
        self._lock = threading.Lock()
        self.compiled = model.generator_compiled
        # One CUDA stream per engine (each worker has its own): on the default stream the
        # workers' kernels would run one after another on the GPU even when their batches are
        # small and the GPU half idle.
        cuda = options.device == "cuda"
        self._stream = torch.cuda.Stream(device=self._device) if cuda else None  # type: ignore[no-untyped-call]  # torch leaves Stream() untyped
        self.shape_buckets = options.shape_buckets
        self.cuda_graphs = options.cuda_graphs and cuda and options.shape_buckets
        self._warmed_batches: set[int] = set()
        self._graphs: dict[tuple[int, ...], _GraphedRender] = {}
        self._graph_pool: Any = None

    def synthesize(self, item: SynthesisItem) -> np.ndarray:
        return self.synthesize_batch([item])[0]

    def synthesize_batch(self, items: Sequence[SynthesisItem]) -> list[np.ndarray]:
        return [audio for audio, _ in self._run(items, durations=False)]

    def synthesize_timed(self, item: SynthesisItem) -> TimedAudio:
        """The audio and the duration predictor's own samples per phoneme id (``ceil``'d frames
        times the hop), from the same pass."""
        (audio, frames), = self._run([item], durations=True)
        assert frames is not None
        return TimedAudio(audio, frames.astype(np.int64) * self.hp.hop_samples)

    def _run(self, items: Sequence[SynthesisItem], durations: bool) -> list[tuple[np.ndarray, np.ndarray | None]]:
        if self._model is None:
            raise EngineError("the torch engine was closed; create a new one")
        if not items:
            return []
        torch = self._torch
        for n, item in enumerate(items):
            self._validate(n, item)
        count = len(items)
        rows = list(items)
        if self.shape_buckets:  # padding rows repeat the first item; their audio is dropped
            rows += [items[0]] * (batch_bucket(count) - count)
        lengths = [len(item.phoneme_ids) for item in rows]
        width = phoneme_bucket(max(lengths)) if self.shape_buckets else max(lengths)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        for row, item in enumerate(rows):
            ids[row, : lengths[row]] = torch.as_tensor(list(item.phoneme_ids), dtype=torch.long)

        def column(values: list[float]) -> Any:
            return torch.tensor(values, dtype=torch.float32, device=self._device)

        try:
            stream = contextlib.nullcontext() if self._stream is None else torch.cuda.stream(self._stream)
            with self._lock, torch.inference_mode(), stream:
                if self.shape_buckets and self.device == "cuda" and len(rows) not in self._warmed_batches:
                    self._warm_frame_buckets(len(rows))
                out = self._model(
                    ids.to(self._device),
                    torch.tensor(lengths, dtype=torch.long, device=self._device),
                    column([i.noise_scale for i in rows]),
                    column([i.length_scale for i in rows]),
                    column([i.noise_w for i in rows]),
                    frame_edge=frame_bucket if self.shape_buckets else None,
                    render=self._render_graphed if self._graphs else None,
                )
                audio = out.audio[:count].cpu().numpy()
                sample_lengths = out.sample_lengths[:count].cpu().tolist()
                frames = out.id_frames[:count].float().cpu().numpy() if durations else None
        except EngineError:
            raise
        except Exception as exc:  # torch raises RuntimeError / OutOfMemoryError
            raise EngineError(f"torch inference failed: {exc}") from exc
        return [(np.ascontiguousarray(audio[row, :n], dtype=np.float32),
                 None if frames is None else np.rint(frames[row, : lengths[row]]))
                for row, n in enumerate(sample_lengths)]

    def _render_graphed(self, z_p: Any, y_mask: Any, frame_lengths: Any, masked: bool) -> Any:
        assert self._model is not None
        graph = self._graphs.get(tuple(z_p.shape))
        if graph is None:
            return self._model.render(z_p, y_mask, frame_lengths, masked)
        return graph(z_p, y_mask, frame_lengths)

    def _warm_frame_buckets(self, batch: int) -> None:
        """Run (and with CUDA graphs capture) the flow and generator at every frame bucket for
        ``batch`` rows: cuDNN's autotuner meets each shape here, at warm-up, not on a request.
        Caller holds the lock, inside inference mode and this engine's stream."""
        torch = self._torch
        model = self._model
        assert model is not None
        channels = model.hp.inter_channels
        for frames in warm_frame_buckets():
            z_p = torch.zeros(batch, channels, frames, device=self._device)
            y_mask = torch.ones(batch, 1, frames, device=self._device)
            lengths = torch.full((batch,), frames, dtype=torch.long, device=self._device)
            if self.cuda_graphs:
                if self._graph_pool is None:
                    self._graph_pool = torch.cuda.graph_pool_handle()
                self._graphs[(batch, channels, frames)] = _GraphedRender(
                    torch, model, z_p, y_mask, lengths, self._graph_pool)
            else:
                model.render(z_p, y_mask, lengths, True)
        torch.cuda.synchronize(self._device)
        self._warmed_batches.add(batch)

    def _validate(self, index: int, item: SynthesisItem) -> None:
        if len(item.phoneme_ids) == 0:
            raise EngineError(f"item {index}: cannot synthesize an empty phoneme sequence")
        bad = [i for i in item.phoneme_ids if not 0 <= int(i) < self.hp.n_vocab]
        if bad:
            raise EngineError(
                f"item {index}: phoneme ids {bad[:5]} are outside this voice's table of {self.hp.n_vocab}"
            )
        if item.speaker_id not in (None, 0):
            raise EngineError(f"item {index}: speaker_id {item.speaker_id} given to a single-speaker voice")
        if not item.length_scale > 0:
            raise EngineError(f"item {index}: length_scale must be > 0, got {item.length_scale}")

    def close(self) -> None:
        with self._lock:
            self._model = None
            if self.device == "cuda":
                self._torch.cuda.empty_cache()


class _GraphedRender:
    """:meth:`VitsSynthesizer.render` for one (batch, channels, frames) shape as a CUDA graph:
    static input buffers, captured once (after two eager runs on a side stream, as CUDA graph
    capture requires), replayed by copying the inputs in. Always masked (no host sync); the
    output buffer is overwritten by the next replay, so the caller copies it out first (the
    engine does, under its lock)."""

    def __init__(self, torch: Any, model: VitsSynthesizer, z_p: Any, y_mask: Any, lengths: Any, pool: Any) -> None:
        self._torch = torch
        self.z_p, self.y_mask, self.lengths = z_p, y_mask, lengths
        side = torch.cuda.Stream(device=z_p.device)
        side.wait_stream(torch.cuda.current_stream(z_p.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                model.render(z_p, y_mask, lengths, True)
        torch.cuda.current_stream(z_p.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=pool):
            self.out = model.render(z_p, y_mask, lengths, True)

    def __call__(self, z_p: Any, y_mask: Any, lengths: Any) -> Any:
        self.z_p.copy_(z_p)
        self.y_mask.copy_(y_mask)
        self.lengths.copy_(lengths)
        self.graph.replay()
        return self.out


def warm_frame_buckets() -> tuple[int, ...]:
    """The frame buckets warmed for each batch bucket: every edge up to four frames per phoneme
    id of the longest phoneme bucket (the front end's 300-phoneme chunks are ~600 ids)."""
    limit = frame_bucket(4 * PHONEME_BUCKETS[-1])
    return tuple(edge for edge in frame_buckets() if edge <= limit)


_SHARED_MODELS: dict[tuple[object, ...], weakref.ref[VitsSynthesizer]] = {}
_SHARED_LOCK = threading.Lock()


def _shared_model(torch: Any, model_path: Path, options: EngineOptions) -> VitsSynthesizer:
    """One model per (file, device, precision, compile) in a process, shared by every engine
    instance (the server makes one per worker): inference never writes to the weights, so
    workers can run it concurrently, and N workers cost one copy of the weights instead of N.
    The model lives while some engine holds it."""
    try:
        stat = model_path.stat()
    except OSError as exc:
        raise EngineError(f"voice model {model_path} does not exist or cannot be read: {exc}") from exc
    compile_generator = options.torch_compile and options.device == "cuda"
    key = (str(model_path.resolve()), stat.st_size, stat.st_mtime_ns, options.device, options.device_index,
           options.precision, compile_generator)
    with _SHARED_LOCK:
        ref = _SHARED_MODELS.get(key)
        model = ref() if ref is not None else None
        if model is None:
            model = _build_model(torch, model_path, options, compile_generator)
            for stale in [k for k, r in _SHARED_MODELS.items() if r() is None]:
                del _SHARED_MODELS[stale]
            _SHARED_MODELS[key] = weakref.ref(model)
        return model


def _build_model(torch: Any, model_path: Path, options: EngineOptions, compile_generator: bool) -> VitsSynthesizer:
    from runtime.families.piper.vits import VitsSynthesizer, read_voice_weights
    from runtime.families.piper.vits.hyperparams import derive_hyperparams

    weights = read_voice_weights(model_path)
    if "sid" in weights.input_names:
        raise EngineError(
            f"{model_path.name} is a multi-speaker voice; the torch engine runs single-speaker "
            "voices only. Use TAILOR_ENGINE=onnx for this voice."
        )
    shapes = {k: tuple(v.shape) for k, v in weights.tensors.items()}
    hp = derive_hyperparams(shapes, weights.convs, n_speakers=1)
    with torch.device("meta"):
        model = VitsSynthesizer(hp)
    _check_state(model_path.name, model.state_dict(), weights.tensors, weights.unmapped)
    model.load_state_dict(weights.tensors, strict=True, assign=True)
    del weights
    model.eval().requires_grad_(False)
    if options.device != "cuda" or options.precision != "fp32":
        model.dec.use_channels_last_kernels()  # the faster layout but for CUDA fp32 (generator.py)
    if options.device == "cuda":
        # Parameters move one by one; each host tensor is freed once its device copy exists.
        model.to(f"cuda:{options.device_index}")
        # fp32 means fp32: cuDNN and cuBLAS would otherwise use TF32 (10-bit mantissa). Also in
        # fp16/bf16 plans: the durations (text encoder, duration predictor) are computed in fp32
        # so that the audio's length never depends on the precision, and TF32 there moved a
        # ceil() across a frame boundary (measured on an H200: 18176 vs 18432 samples).
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        if options.precision != "fp32":
            model.set_half_precision(getattr(torch, _DTYPES[options.precision]))
    elif options.precision == "bf16":
        # CPU bf16 (AVX-512-BF16 / AMX): the same split as on CUDA, first and last convs in fp32.
        model.set_half_precision(torch.bfloat16)
    if compile_generator:
        # CUDA only. On CPU it stays eager: measured with torch 2.13 on the default voice, the
        # compiled generator ran at 0.9-1.05x the eager one (channels-last eager convs are
        # already oneDNN calls) after a 15-35 s compile, so it would only slow start-up.
        try:
            model.dec = torch.compile(model.dec, dynamic=True)
            model.generator_compiled = True
        except Exception as exc:  # compile support depends on the platform's toolchain
            _LOG.warning("torch.compile unavailable, running eagerly: %s", exc)
    return model


def _check_state(voice: str, expected: dict[str, Any], found: dict[str, Any], unmapped: tuple[str, ...]) -> None:
    """Fail with every difference between the model's parameters and the file's tensors."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(
        f"{k} (file {tuple(found[k].shape)}, model {tuple(expected[k].shape)})"
        for k in set(expected) & set(found)
        if tuple(found[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or wrong or unmapped:
        parts = []
        for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong),
                             ("unmapped", list(unmapped))):
            if names:
                parts.append(f"{label}: {', '.join(names[:20])}" + (" ..." if len(names) > 20 else ""))
        raise EngineError(
            f"{voice} does not match the VITS architecture the torch engine builds ("
            + "; ".join(parts) + "). Use TAILOR_ENGINE=onnx for this voice."
        )
