"""Benchmark: what batches form, and how much of them is padding, with and without length buckets;
on a GPU also the server's throughput at several concurrencies.

    .venv/bin/python benchmarks/bench_batching.py [--requests 48] [--concurrency 16] [--max-batch 8]
        [--window-ms 20] [--rounds 2] [--engine onnx --device cpu --precision fp32 --workers 1 --gpus 1]

On a CUDA host (item 9 of issue 10), for example:

    .venv/bin/python benchmarks/bench_batching.py --engine torch --device cuda --precision bf16 \
        --workers 2 --max-batch 32 --window-ms 8 --concurrency 1,8,32,64 --requests 256 --rounds 1

Runs the real app in process (starlette's TestClient, the bundled voice on onnx, CPU) with
batching on, sends the same mix of short and long one-sentence requests concurrently, and reads
``tailor_batch_size`` and ``tailor_batch_padding_fraction`` from ``/metrics``. Each round runs
both modes back to back (alternating which goes first): ``buckets`` (the scheduler as shipped)
and ``fifo`` (every same-voice job may join a batch, as before length buckets; done by emptying
``runtime.serving.scheduler.LENGTH_BUCKETS`` for that run).

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


PCM_BYTES_PER_SECOND = 2 * 24_000
"""``pcm`` responses are 16-bit mono at 24 kHz."""


def run(mode: str, texts: list[str], concurrency: int, max_batch: int, window_ms: float,
        engine: dict[str, str]) -> dict[str, Any]:
    from starlette.testclient import TestClient

    import runtime.serving.scheduler as scheduler
    from runtime.http.app import create_app
    from runtime.settings import Settings

    saved = scheduler.LENGTH_BUCKETS
    if mode == "fifo":
        scheduler.LENGTH_BUCKETS = ()
    try:
        settings = Settings.from_environ({
            **engine, "TAILOR_BATCHING": "true",
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

            def speak(text: str) -> int:
                response = client.post("/v1/audio/speech", json={"input": text, "response_format": "pcm"})
                if response.status_code != 200:
                    raise RuntimeError(f"{response.status_code}: {response.text}")
                return len(response.content)

            with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
                audio_bytes = sum(pool.map(speak, texts))
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
        "seconds": seconds, "concurrency": concurrency,
        "audio_per_s": audio_bytes / PCM_BYTES_PER_SECOND / seconds if seconds else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--concurrency", default="16", help="comma-separated levels, e.g. 1,8,32,64")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--window-ms", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--engine", default="onnx", choices=("onnx", "torch"))
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gpus", type=int, default=1, help="TAILOR_GPUS: devices the workers are spread over")
    args = parser.parse_args()
    engine = {"TAILOR_ENGINE": args.engine, "TAILOR_DEVICE": args.device, "TAILOR_PRECISION": args.precision,
              "TAILOR_WORKERS": str(args.workers), "TAILOR_THREADS_PER_WORKER": str(args.threads),
              "TAILOR_GPUS": str(args.gpus)}
    texts = requests_mix(args.requests)
    load_before = os.getloadavg()
    rows = []
    for concurrency in (int(c) for c in args.concurrency.split(",")):
        for round_no in range(args.rounds):
            order = ("buckets", "fifo") if round_no % 2 == 0 else ("fifo", "buckets")
            for mode in order:
                rows.append(run(mode, texts, concurrency, args.max_batch, args.window_ms, engine))
    print(f"load average before {load_before}, after {os.getloadavg()}")
    print(f"{args.requests} one-sentence requests (short/medium/long mix), max batch {args.max_batch}, "
          f"window {args.window_ms:g} ms, {args.workers} worker(s) x {args.threads} threads, "
          f"{args.engine} on {args.device} ({args.precision})")
    print("| concurrency | mode | engine calls | mean batch size | calls with > 1 sentence | mean padding fraction "
          "| audio-s/s | wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['concurrency']} | {r['mode']} | {r['calls']:.0f} | {r['mean_batch']:.2f} | {r['multi']:.0f} | "
              f"{r['padding']:.3f} | {r['audio_per_s']:.1f} | {r['seconds']:.1f} |")


if __name__ == "__main__":
    main()
