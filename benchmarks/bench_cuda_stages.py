"""Torch engine on CUDA: throughput by precision, generator layout and batch size, time per
stage, and the top kernels (torch.profiler). Skips with a message where there is no CUDA device.

    .venv/bin/python benchmarks/bench_cuda_stages.py [--batches 1,8,32,64] [--seconds 1.0]
        [--precisions bf16,fp16,fp32] [--layouts 1d,2d] [--profile] [--json FILE]

Inputs are the bundled voice's phoneme ids for eight fixed sentences of different lengths,
taken in turn to fill each batch, with the voice's default noise (so lengths vary from call to
call, as in service). ``2d`` is the generator as channels-last 2-D convolutions over
``[b, c, 1, t]`` (the CPU layout), ``1d`` plain ``conv1d`` over ``[b, c, t]``. Each
configuration runs two warm-up calls, then as many calls as fit in ``--seconds`` (at least 3).
The cuDNN autotuner (``cudnn.benchmark``) is off, as in the runtime's default; a last section
turns it on with fixed shapes (noise off, one sentence) to show what tuning gains when shapes
repeat.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_torch_vs_onnx import SENTENCES, make_engine, phoneme_ids  # noqa: E402

STAGES = ("enc_p", "dp", "flow", "dec")


def in_layout(model: Any, layout: str) -> Any:
    """A copy of the model whose generator runs in ``layout`` (``1d`` or ``2d``)."""
    other = copy.deepcopy(model)
    if layout == "1d":
        other.dec.use_conv1d_kernels()
    elif not other.dec.channels_last:
        other.dec.use_channels_last_kernels()
    return other


def load(precision: str, cudnn_benchmark: bool) -> Any:
    return make_engine("torch", 1, device="cuda", precision=precision, cudnn_benchmark=cudnn_benchmark)


class StageTimer:
    """CUDA events around the model's four stages (forward pre/post hooks)."""

    def __init__(self, model: Any) -> None:
        import torch

        self.ms = dict.fromkeys(STAGES, 0.0)
        self._pending: list[tuple[str, Any, Any]] = []
        self._handles = []
        self._unwrap: Any = None
        for name in STAGES:
            module = getattr(model, name)
            start: dict[str, Any] = {}

            def pre(_m: Any, _a: Any, start: dict[str, Any] = start) -> None:
                event = torch.cuda.Event(enable_timing=True)
                event.record()
                start["e"] = event

            def post(_m: Any, _a: Any, _o: Any, name: str = name, start: dict[str, Any] = start) -> None:
                event = torch.cuda.Event(enable_timing=True)
                event.record()
                self._pending.append((name, start["e"], event))

            if name == "flow":  # the model calls flow.reverse(), which forward hooks do not see
                self._wrap_reverse(module, pre, post)
            else:
                self._handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]

    def _wrap_reverse(self, module: Any, pre: Any, post: Any) -> None:
        original = module.reverse

        def reverse(*args: Any, **kwargs: Any) -> Any:
            pre(module, args)
            out = original(*args, **kwargs)
            post(module, args, out)
            return out

        module.reverse = reverse
        self._unwrap = module

    def collect(self) -> None:
        import torch

        torch.cuda.synchronize()
        for name, a, b in self._pending:
            self.ms[name] += a.elapsed_time(b)
        self._pending.clear()

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        if self._unwrap is not None:
            del self._unwrap.reverse  # back to the class's method


def run_config(engine: Any, items: list[Any], seconds: float) -> dict[str, float]:
    import torch

    for _ in range(2):
        engine.synthesize_batch(items)
    timer = StageTimer(engine._model)
    torch.cuda.synchronize()
    calls, samples, t0 = 0, 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - t0 < seconds:
        samples += sum(a.size for a in engine.synthesize_batch(items))
        calls += 1
    wall = time.perf_counter() - t0
    timer.collect()
    timer.close()
    row = {"calls": calls, "audio_s_per_s": samples / 22050 / wall, "ms_per_call": 1000 * wall / calls}
    row.update({f"{k}_ms": v / calls for k, v in timer.ms.items()})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="1,8,32,64")
    parser.add_argument("--precisions", default="bf16,fp16,fp32")
    parser.add_argument("--layouts", default="1d,2d")
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--profile", action="store_true", help="top CUDA kernels at the largest batch, bf16")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("skipped: torch sees no CUDA device")
        return
    from runtime.engines import SynthesisItem

    ids = phoneme_ids(SENTENCES)
    batches = [int(b) for b in args.batches.split(",")]
    report: dict[str, Any] = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "rows": []}
    print(f"{report['device']}, torch {torch.__version__}")
    print("| precision | layout | batch | audio-s/s | ms/call | enc_p | dp | flow | dec (ms/call) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for precision in args.precisions.split(","):
        engine = load(precision, cudnn_benchmark=False)
        loaded = engine._model
        for layout in args.layouts.split(","):
            engine._model = in_layout(loaded, layout)
            for batch in batches:
                items = [SynthesisItem(ids[i % len(ids)]) for i in range(batch)]
                row = {"precision": precision, "layout": layout, "batch": batch, "cudnn_benchmark": False,
                       **run_config(engine, items, args.seconds)}
                report["rows"].append(row)
                print(f"| {precision} | {layout} | {batch} | {row['audio_s_per_s']:.0f} | {row['ms_per_call']:.1f} | "
                      + " | ".join(f"{row[f'{s}_ms']:.1f}" for s in STAGES) + " |", flush=True)
        engine._model = loaded
        engine.close()
        del engine, loaded
        torch.cuda.empty_cache()

    print("\ncudnn.benchmark on, fixed shapes (one sentence, noise off):")
    print("| precision | layout | batch | audio-s/s | ms/call |")
    print("|---|---|---|---|---|")
    engine = load("bf16", cudnn_benchmark=True)
    loaded = engine._model
    fixed = SynthesisItem(ids[1], noise_scale=0.0, noise_w=0.0)
    for layout in args.layouts.split(","):
        engine._model = in_layout(loaded, layout)
        for batch in batches:
            row = {"precision": "bf16", "layout": layout, "batch": batch, "cudnn_benchmark": True,
                   **run_config(engine, [fixed] * batch, args.seconds)}
            report["rows"].append(row)
            print(f"| bf16 | {layout} | {batch} | {row['audio_s_per_s']:.0f} | {row['ms_per_call']:.1f} |", flush=True)
    torch.backends.cudnn.benchmark = False

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        for layout in args.layouts.split(","):
            engine._model = in_layout(loaded, layout)
            items = [SynthesisItem(ids[i % len(ids)]) for i in range(max(batches))]
            engine.synthesize_batch(items)
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                for _ in range(3):
                    engine.synthesize_batch(items)
                torch.cuda.synchronize()
            averages = prof.key_averages()
            sort = "self_cuda_time_total"
            try:
                table = averages.table(sort_by=sort, row_limit=18, max_name_column_width=70)
            except Exception:
                sort = "self_device_time_total"
                table = averages.table(sort_by=sort, row_limit=18, max_name_column_width=70)
            print(f"\nprofile: bf16, layout {layout}, batch {max(batches)}, 3 calls (sorted by {sort})\n{table}")
    engine._model = loaded
    engine.close()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
