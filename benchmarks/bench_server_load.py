"""Benchmark: throughput and latency of a running runtime, through its HTTP API.

    .venv/bin/python benchmarks/bench_server_load.py --url http://127.0.0.1:8000 \
        [--concurrency 1,8,32,64] [--requests 128] [--warmup 16] [--model tts-1] [--json FILE]

Drives a server that is already up (``deploy auto --detach``, say), so what is measured is the
deployment as planned: the plan's engine, precision, workers, batching and GPUs. Uses the same
closed-loop load generator as ``deploy tune`` (streamed WAV, the fixed text set of short, medium
and long sentences, repeated): start the runtime with its response cache off
(``--set TAILOR_CACHE_BYTES=0``), or the repeats are answered from the cache. Reports audio
seconds produced per wall second, p50/p95 latency to the last byte and time to first audio, per
concurrency level. ``--model`` is the requests' model field: a served family (``kokoro-82m``,
``piper``) compares families on one server started with ``TAILOR_MODEL=kokoro-82m,piper``.
Loopback URLs only. Prints a Markdown table; exits 1 if any request failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orchestrator.tune.loadgen import run_level  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the runtime's base URL (loopback only)")
    parser.add_argument("--concurrency", default="1,8,32,64", help="comma-separated levels")
    parser.add_argument("--requests", type=int, default=128, help="requests per level")
    parser.add_argument("--warmup", type=int, default=16, help="requests sent first, not counted")
    parser.add_argument("--api-key", default=os.environ.get("TAILOR_API_KEY", ""))
    parser.add_argument("--model", default="tts-1", help="the requests' model: a served family or an OpenAI name")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds one request may take")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    if urlsplit(args.url).hostname not in ("127.0.0.1", "localhost", "::1"):
        parser.error(f"--url {args.url}: only loopback URLs are measured")
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if args.warmup:
        run_level(args.url, min(8, args.warmup), args.warmup, api_key=args.api_key, model=args.model,
                  timeout_s=args.timeout)
    rows = []
    for concurrency in levels:
        level = run_level(args.url, concurrency, args.requests, api_key=args.api_key, model=args.model,
                          timeout_s=args.timeout)
        rows.append({
            "model": args.model, "concurrency": concurrency, "requests": args.requests, "failures": level.failures,
            "audio_s_per_s": level.audio_per_s, "wall_s": level.wall_s,
            "latency_p50_s": level.latency_quantile(0.5), "latency_p95_s": level.latency_quantile(0.95),
            "ttfa_p50_s": level.ttfa_quantile(0.5), "ttfa_p95_s": level.ttfa_quantile(0.95),
        })
        print(f"c={concurrency}: {level.audio_per_s:.1f} audio-s/s, {level.failures} failed", flush=True)
    print("\n| concurrency | requests | failed | audio-s/s | latency p50 / p95 (s) | TTFA p50 / p95 (s) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['concurrency']} | {r['requests']} | {r['failures']} | {r['audio_s_per_s']:.1f} | "
              f"{r['latency_p50_s']:.3f} / {r['latency_p95_s']:.3f} | {r['ttfa_p50_s']:.3f} / {r['ttfa_p95_s']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    failed = sum(r["failures"] for r in rows)
    if failed:
        sys.exit(f"{failed} request(s) failed: the figures above count only the ones that succeeded")


if __name__ == "__main__":
    main()
