"""Benchmark: the torch engine beside a busy Python thread, at two GIL switch intervals.

    .venv/bin/python benchmarks/bench_gil_switch.py [--intervals-ms 5,0.5] [--calls 6]

The torch engine releases and re-takes the GIL around every operator (hundreds per call). Beside
a thread that keeps the GIL busy (in the server: the event loop, the other workers), each re-take
can wait up to ``sys.getswitchinterval()``. This times ``synthesize_batch`` over four sentences
(CPU, one intra-op thread) alone and beside a pure-Python busy thread, for each interval. What
``TAILOR_SWITCH_INTERVAL_MS`` sets in the runtime.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.bench_torch_vs_onnx import SENTENCES, make_engine, phoneme_ids  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--intervals-ms", default="5,0.5")
    parser.add_argument("--calls", type=int, default=6)
    args = parser.parse_args()

    from runtime.engines import SynthesisItem

    engine = make_engine("torch", 1)
    items = [SynthesisItem(ids) for ids in phoneme_ids(SENTENCES)[:4]]

    def per_call() -> float:
        t0 = time.perf_counter()
        for _ in range(args.calls):
            engine.synthesize_batch(items)
        return (time.perf_counter() - t0) / args.calls

    stop = threading.Event()

    def busy() -> None:
        x = 0
        while not stop.is_set():
            for i in range(1000):
                x += i * i

    per_call()  # warm-up
    print("| switch interval | alone (ms/call) | beside a busy thread (ms/call) | slowdown |")
    print("|---|---|---|---|")
    for interval_ms in (float(v) for v in args.intervals_ms.split(",")):
        sys.setswitchinterval(interval_ms / 1000)
        alone = per_call()
        stop.clear()
        thread = threading.Thread(target=busy, daemon=True)
        thread.start()
        contended = per_call()
        stop.set()
        thread.join()
        print(f"| {interval_ms:g} ms | {alone * 1000:.0f} | {contended * 1000:.0f} | {contended / alone:.2f}x |",
              flush=True)
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
