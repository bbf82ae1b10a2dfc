"""Benchmark: what batches form, and how much of them is padding, with and without length buckets.

    .venv/bin/python benchmarks/bench_batching.py [--requests 48] [--concurrency 16] [--max-batch 8]
        [--window-ms 20] [--rounds 2]

Runs the real app in process (starlette's TestClient, the bundled voice on onnx, CPU) with
batching on, sends the same mix of short and long one-sentence requests concurrently, and reads
``tailor_batch_size`` and ``tailor_batch_padding_fraction`` from ``/metrics``. Each round runs
both modes back to back (alternating which goes first): ``buckets`` (the scheduler as shipped)
and ``fifo`` (every same-voice job may join a batch, as before length buckets; done by emptying
``runtime.scheduler.LENGTH_BUCKETS`` for that run).

On the CPU the onnx engine runs a batch item by item, so this measures batch composition (what
a padded GPU batch would carry), not speed. Prints a Markdown table and the load average.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's runtime, not an installed one

SHORT = ["Yes.", "No way.", "Thanks.", "Good morning.", "See you soon.", "Right away."]
LONG = [
    "The committee will publish its final recommendations after the summer recess, once every region has replied.",
    "Please make sure that the back door is locked, the lights are off and the heating is turned down tonight.",
    "Our flight to Denver leaves at half past seven, so we should be at the airport no later than six.",
]
MEDIUM = ["She opened the window and listened.", "The library closes early today.", "Turn left at the light."]


def requests_mix(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    pool = SHORT + MEDIUM + LONG
    return [rng.choice(pool) for _ in range(n)]


def parse_metrics(text: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("tailor_batch_size", "tailor_batch_padding_fraction")) and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def run(mode: str, texts: list[str], concurrency: int, max_batch: int, window_ms: float) -> dict[str, Any]:
    from starlette.testclient import TestClient

    import runtime.scheduler as scheduler
    from runtime.app import create_app
    from runtime.settings import Settings

    saved = scheduler.LENGTH_BUCKETS
    if mode == "fifo":
        scheduler.LENGTH_BUCKETS = ()
    try:
        settings = Settings.from_environ({
            "TAILOR_WORKERS": "1", "TAILOR_THREADS_PER_WORKER": "2", "TAILOR_BATCHING": "true",
            "TAILOR_MAX_BATCH_SIZE": str(max_batch), "TAILOR_BATCH_WINDOW_MS": str(window_ms),
            "TAILOR_CACHE_BYTES": "0", "TAILOR_MAX_QUEUE": str(len(texts) * 2), "TAILOR_PRELOAD": "false"})
        with TestClient(create_app(settings)) as client:
            deadline = time.monotonic() + 120
            while client.get("/readyz").status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError("runtime not ready")
                time.sleep(0.1)
            client.post("/v1/audio/speech", json={"input": "Warm up.", "response_format": "pcm"})
            before = parse_metrics(client.get("/metrics").text)
            started = time.perf_counter()

            def speak(text: str) -> None:
                response = client.post("/v1/audio/speech", json={"input": text, "response_format": "pcm"})
                if response.status_code != 200:
                    raise RuntimeError(f"{response.status_code}: {response.text}")

            with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(speak, texts))
            seconds = time.perf_counter() - started
            after = parse_metrics(client.get("/metrics").text)
    finally:
        scheduler.LENGTH_BUCKETS = saved
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    calls = delta.get("tailor_batch_size_count", 0.0)
    return {
        "mode": mode, "calls": calls,
        "mean_batch": delta.get("tailor_batch_size_sum", 0.0) / calls if calls else 0.0,
        "multi": calls - delta.get('tailor_batch_size_bucket{le="1.0"}', 0.0),
        "padding": delta.get("tailor_batch_padding_fraction_sum", 0.0) / calls if calls else 0.0,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--window-ms", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    texts = requests_mix(args.requests)
    rows = []
    for round_no in range(args.rounds):
        order = ("buckets", "fifo") if round_no % 2 == 0 else ("fifo", "buckets")
        for mode in order:
            rows.append(run(mode, texts, args.concurrency, args.max_batch, args.window_ms))
    print(f"load average before/after: {os.getloadavg()}")
    print(f"{args.requests} one-sentence requests (short/medium/long mix), concurrency {args.concurrency}, "
          f"max batch {args.max_batch}, window {args.window_ms:g} ms, 1 worker, onnx on CPU")
    print("| mode | engine calls | mean batch size | calls with > 1 sentence | mean padding fraction | wall s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['calls']:.0f} | {r['mean_batch']:.2f} | {r['multi']:.0f} | "
              f"{r['padding']:.3f} | {r['seconds']:.1f} |")


if __name__ == "__main__":
    main()
