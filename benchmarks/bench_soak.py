"""Soak benchmark: does the runtime's memory settle under thousands of mixed requests?

    .venv/bin/python benchmarks/bench_soak.py [--requests 3000] [--concurrency 4]
        [--checkpoint 100] [--out benchmarks/results/soak.md]

Starts ``python -m runtime`` on a free loopback port with the environment ``deploy plan --json``
chooses for this machine (workers, threads, the 64 MiB response cache, ``MALLOC_ARENA_MAX``,
``LD_PRELOAD``/``MALLOC_CONF`` where the plan preloads an allocator), then sends a bounded mix
of requests: every format (mp3, opus, aac, flac, wav, pcm), chunked, SSE, speeds from 0.5 to 2,
SSML and numbers for the normaliser, short and long texts; about a third repeat earlier texts
(cache hits), the rest are new (the cache fills and evicts). RSS of the server process is read
from ``/proc`` (psutil) every ``--checkpoint`` requests, with the cache's bytes from ``/metrics``.

Verdict: RSS *settles* when the growth over the last third of the run is under 5 % of the RSS
at its start, and *fits* when the peak stays within the plan's memory budget (the sum of its
RAM rows). The machine's load average is printed next to the figures. The server is stopped
by pid at the end.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from benchmarks.local_runtime import local_runtime

FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
WORDS = ["order", "invoice", "parcel", "meeting", "flight", "ticket", "report", "window", "garden", "river", "station", "library", "engine", "market", "bridge", "lantern", "harbor", "village", "castle", "forest"]


def text_for(index: int, rng: random.Random) -> str:
    kind = index % 5
    a, b, c = rng.sample(WORDS, 3)
    if kind == 0:
        return f"The {a} number {index} costs ${rng.randint(1, 9999)}.{rng.randint(0, 99):02d} today."
    if kind == 1:
        return (f"<speak>The {a} opens at {rng.randint(1, 12)}:{rng.randint(0, 59):02d} pm."
                f"<break time=\"300ms\"/>Bring the {b}, item {index}.</speak>")
    if kind == 2:
        return " ".join(f"Sentence {n} of request {index} talks about the {a}, the {b} and the {c}."
                        for n in range(rng.randint(3, 6)))
    if kind == 3:
        return f"On 2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} the {a} moved {rng.randint(2, 90)} km, request {index}."
    return f"A short {a} line, {index}."


@dataclass
class Soak:
    requests: int
    concurrency: int
    checkpoint: int
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    texts: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    done: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def body(self, index: int) -> dict[str, object]:
        with self.lock:
            if self.texts and self.rng.random() < 0.35:
                text = self.rng.choice(self.texts)  # a repeat: cache hit
            else:
                text = text_for(index, self.rng)
                self.texts.append(text)
            fmt = FORMATS[index % len(FORMATS)]
            speed = self.rng.choice((0.5, 0.8, 1.0, 1.0, 1.0, 1.25, 2.0))
            sse = index % 7 == 0
        body: dict[str, object] = {"model": "tts-1", "voice": "alloy", "input": text,
                                   "response_format": fmt, "speed": speed}
        if sse:
            body["stream_format"] = "sse"
        return body


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--checkpoint", type=int, default=100)
    parser.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    args = parser.parse_args()
    if not 1 <= args.requests <= 20000:
        parser.error("--requests must be 1-20000 (the soak is bounded)")

    rows: list[tuple[int, float, float, float]] = []
    with local_runtime({}, prefix="tailor-soak-") as running:
        base, env_plan, budget = running.base, running.env_plan, running.budget_bytes
        process = psutil.Process(running.server.pid)
        soak = Soak(args.requests, args.concurrency, args.checkpoint)
        counter = itertools.count()
        started = time.monotonic()

        def sample(done: int) -> None:
            scraped = httpx.get(f"{base}/metrics", timeout=10).text
            row = (done, process.memory_info().rss / 2**20, metric(scraped, "tailor_cache_bytes") / 2**20,
                   time.monotonic() - started)
            rows.append(row)
            print(f"  {row[0]:5d} requests  RSS {row[1]:6.0f} MiB  cache {row[2]:5.1f} MiB  {row[3]:5.0f} s",
                  file=sys.stderr, flush=True)

        sample(0)

        def worker() -> None:
            with httpx.Client(base_url=base, timeout=120) as client:
                while (index := next(counter)) < args.requests:
                    try:
                        response = client.post("/v1/audio/speech", json=soak.body(index))
                        status = response.status_code
                    except httpx.HTTPError:
                        status = -1
                    with soak.lock:
                        soak.statuses[status] = soak.statuses.get(status, 0) + 1
                        soak.done += 1
                        checkpoint = soak.done % args.checkpoint == 0
                        done = soak.done
                    if checkpoint:
                        sample(done)

        threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if rows[-1][0] != soak.done:
            sample(soak.done)
        wall = time.monotonic() - started

    rows.sort()
    third = rows[len(rows) * 2 // 3]
    last = rows[-1]
    growth = (last[1] - third[1]) / third[1]
    peak = max(r[1] for r in rows)
    settles = growth < 0.05
    fits = peak * 2**20 <= budget
    load = os.getloadavg()
    lines = [
        f"soak: {args.requests} requests, concurrency {args.concurrency}, {wall:.0f} s wall; "
        f"statuses {dict(sorted(soak.statuses.items()))}",
        f"plan env: workers {env_plan.get('TAILOR_WORKERS')}, threads {env_plan.get('TAILOR_THREADS_PER_WORKER')}, "
        f"cache {int(env_plan.get('TAILOR_CACHE_BYTES', '0')) // 2**20} MiB, MALLOC_ARENA_MAX "
        f"{env_plan.get('MALLOC_ARENA_MAX', '-')}, LD_PRELOAD {env_plan.get('LD_PRELOAD', '-')}",
        f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} CPUs)",
        "",
        "| requests done | RSS MiB | cache MiB | elapsed s |",
        "| ---: | ---: | ---: | ---: |",
        *[f"| {d} | {rss:.0f} | {cache:.1f} | {t:.0f} |" for d, rss, cache, t in rows],
        "",
        f"RSS over the last third: {third[1]:.0f} -> {last[1]:.0f} MiB ({growth * 100:+.1f} %): "
        f"{'settles' if settles else 'STILL GROWING'}; peak {peak:.0f} MiB vs plan budget "
        f"{budget / 2**20:.0f} MiB: {'fits' if fits else 'OVER BUDGET'}",
    ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report + "\n", encoding="utf-8")
    return 0 if settles and fits and soak.statuses.get(200, 0) == args.requests else 1


if __name__ == "__main__":
    sys.exit(main())
