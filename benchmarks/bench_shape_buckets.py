"""Torch engine on CUDA, engine only: do shape buckets, cuDNN autotuning and CUDA graphs pay?
(issue 20, item 2). Skips with a message, exit 0, where there is no CUDA device.

    .venv/bin/python benchmarks/bench_shape_buckets.py [--precisions bf16,fp32,fp16]
        [--batches 1,64] [--seconds 3] [--configs plain,autotune,buckets,buckets+autotune,buckets+autotune+graphs]
        [--json FILE]

Per precision and configuration, one fresh engine (``EngineOptions``: ``shape_buckets``,
``cudnn_benchmark``, ``cuda_graphs`` - the settings ``TAILOR_SHAPE_BUCKETS``,
``TAILOR_CUDNN_BENCHMARK``, ``TAILOR_CUDA_GRAPHS``). Warm-up as the server does it before ready:
every batch size (a power of two up to the largest of ``--batches``) at every phoneme bucket edge;
with buckets on, the engine also runs (and with graphs captures) every frame bucket per batch
size; the warm-up time is reported (it delays readiness). Then, with the voice's default noise
(lengths vary from call to call, as in service):

- batch 1: one short sentence (ten words), median latency over the calls that fit in
  ``--seconds`` (at least 5); target < 15 ms;
- batch N (``--batches``): the eight sentences of ``bench_torch_vs_onnx`` in turn filling each
  batch, audio seconds per wall second; target at 64 >= 4,000 audio-s/s.

Keep a setting on in a plan only where it measured faster for that precision.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_torch_vs_onnx import SENTENCES, TEN_WORDS, make_engine, phoneme_ids  # noqa: E402

CONFIGS = {
    "plain": {},
    "autotune": {"cudnn_benchmark": True},
    "buckets": {"shape_buckets": True},
    "buckets+autotune": {"shape_buckets": True, "cudnn_benchmark": True},
    "buckets+autotune+graphs": {"shape_buckets": True, "cudnn_benchmark": True, "cuda_graphs": True},
    "buckets+graphs": {"shape_buckets": True, "cuda_graphs": True},
}
TARGET_BATCH1_MS = 15.0
TARGET_BATCH64_AUDIO_S_PER_S = 4000.0


def warm_up(engine: Any, ids: list[list[int]], largest: int) -> float:
    """The server's warm-up (``Scheduler.warm_up``): every power-of-two batch size up to
    ``largest`` at every phoneme bucket edge. Returns seconds."""
    import torch

    from runtime.engines import SynthesisItem
    from runtime.serving.scheduler import warmup_shapes

    sample = ids[0]
    started = time.perf_counter()
    for size, edge in warmup_shapes(True, largest):
        row = (sample * (edge // len(sample) + 1))[:edge]
        engine.synthesize_batch([SynthesisItem(row)] * size)
    torch.cuda.synchronize()
    return time.perf_counter() - started


def measure(engine: Any, ids: list[list[int]], ten: list[int], batches: list[int], seconds: float) -> dict[str, Any]:
    from runtime.engines import SynthesisItem

    result: dict[str, Any] = {}
    for size in batches:
        if size == 1:
            item = [SynthesisItem(ten)]
            for _ in range(3):
                engine.synthesize_batch(item)
            times: list[float] = []
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline or len(times) < 5:
                started = time.perf_counter()
                engine.synthesize_batch(item)
                times.append(time.perf_counter() - started)
            result["batch1_ms_p50"] = 1000 * statistics.median(times)
            result["batch1_ms_p90"] = 1000 * sorted(times)[int(0.9 * (len(times) - 1))]
            continue
        items = [SynthesisItem(ids[i % len(ids)]) for i in range(size)]
        engine.synthesize_batch(items)
        audio = 0.0
        calls = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds or calls < 3:
            audio += sum(a.size for a in engine.synthesize_batch(items)) / 22050
            calls += 1
        result[f"batch{size}_audio_s_per_s"] = audio / (time.perf_counter() - started)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precisions", default="bf16,fp32,fp16")
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per batch size")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        print("skipped: torch is not installed")
        return 0
    if not torch.cuda.is_available():
        print("skipped: no CUDA device (this benchmark measures the torch engine on a GPU)")
        return 0
    batches = [int(b) for b in args.batches.split(",")]
    configs = args.configs.split(",")
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown configs {unknown}; choose from {', '.join(CONFIGS)}")
    ids = phoneme_ids(SENTENCES)
    ten = phoneme_ids((TEN_WORDS,))[0]
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
          f"cuDNN {torch.backends.cudnn.version()}", flush=True)  # type: ignore[no-untyped-call]
    rows: list[dict[str, Any]] = []
    for precision in args.precisions.split(","):
        for config in configs:
            row: dict[str, Any] = {"precision": precision, "config": config}
            engine = None
            try:
                engine = make_engine("torch", 1, device="cuda", precision=precision, **CONFIGS[config])
                row["warmup_s"] = warm_up(engine, ids, max(batches))
                row.update(measure(engine, ids, ten, batches, args.seconds))
            except Exception as exc:  # one configuration failing (e.g. out of memory) must not end the run
                row["error"] = f"{type(exc).__name__}: {exc}"
            finally:
                if engine is not None:
                    engine.close()
                del engine
                gc.collect()
                torch.cuda.empty_cache()
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    print(f"| precision | config | warm-up s | batch 1 p50 ms (target < {TARGET_BATCH1_MS:g}) | "
          + " | ".join(f"batch {b} audio-s/s" + (f" (target >= {TARGET_BATCH64_AUDIO_S_PER_S:,.0f})" if b == 64 else "")
                       for b in batches if b != 1) + " |")
    print("|---|---|---|---|" + "---|" * len([b for b in batches if b != 1]))
    for row in rows:
        if "error" in row:
            print(f"| {row['precision']} | {row['config']} | error: {row['error']} |")
            continue
        cells = [f"{row.get(f'batch{b}_audio_s_per_s', 0):,.0f}" for b in batches if b != 1]
        print(f"| {row['precision']} | {row['config']} | {row['warmup_s']:.1f} | "
              f"{row.get('batch1_ms_p50', float('nan')):.1f} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
