"""Burst soak: is every admitted request finished, and is every cut counted by reason?

    .venv/bin/python benchmarks/bench_burst_soak.py [--rounds 5] [--burst 12] [--pause 5]
        [--out benchmarks/results/burst_soak.md]

Starts ``python -m runtime`` on a free loopback port with the environment ``deploy plan --json``
chooses for this machine (as bench_soak.py), the response cache off (every request is
synthesized), then sends ``--rounds`` bursts of ``--burst`` concurrent requests, each burst after
``--pause`` seconds of light traffic (one short request). A burst mixes sizes (short ~40, medium
~200 and the issue's ~630 characters) and endings: chunked pcm/mp3/wav, SSE, FLAC and
``"stream": false`` (whole answers). Every client is made before the burst starts.

For each request the client records what it got: a complete answer (chunked read to its end, SSE
ending in ``speech.audio.done``, whole body), a refusal (413/429/503 with OpenAI's error body), a
504 before any byte, or a *cut* (an incomplete chunked read, an SSE ``error`` event). After the
run it reads ``tailor_stream_cuts_total{reason}``, ``tailor_requests_total`` (``200_cut``) and
``tailor_admission_rejections_total{reason}`` from ``/metrics`` and the calibration from
``/readyz``.

Verdict: passes when no admitted request was cut or timed out (client side) and the server's cut
counters agree with what the clients saw. The server is stopped by pid at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks.local_runtime import local_runtime

SENTENCE = "The {0} report for order {1} arrived at the station before the evening train."  # ~75 chars
NOUNS = ["weekly", "final", "second", "urgent", "late", "short", "yearly", "quiet"]
SHAPES = [  # (label, sentences, body fields)
    ("short pcm", 0, {"response_format": "pcm"}),
    ("medium mp3", 3, {"response_format": "mp3"}),
    ("long pcm", 8, {"response_format": "pcm"}),
    ("medium sse", 3, {"response_format": "pcm", "stream_format": "sse"}),
    ("long flac", 8, {"response_format": "flac"}),
    ("medium wav whole", 3, {"response_format": "wav", "stream": False}),
    ("long mp3", 8, {"response_format": "mp3"}),
    ("short sse", 0, {"response_format": "mp3", "stream_format": "sse"}),
]


def text_for(sentences: int, index: int) -> str:
    if sentences == 0:
        return f"A short line, number {index}, for you."
    return " ".join(SENTENCE.format(NOUNS[(index + n) % len(NOUNS)], index * 10 + n) for n in range(sentences))


@dataclass
class Outcome:
    shape: str
    characters: int
    status: int
    ending: str
    """complete, refused, timeout (504 before any byte), cut, error."""
    seconds: float
    code: str = ""


def one_request(client: httpx.Client, shape: str, body: dict[str, object]) -> Outcome:
    characters = len(str(body["input"]))
    started = time.monotonic()
    sse = body.get("stream_format") == "sse"
    try:
        with client.stream("POST", "/v1/audio/speech", json=body) as response:
            status = response.status_code
            if status != 200:
                response.read()
                code = response.json().get("error", {}).get("code", "")
                ending = "timeout" if status == 504 else "refused" if status in (413, 429, 503) else "error"
                return Outcome(shape, characters, status, ending, time.monotonic() - started, code)
            if sse:
                last: dict[str, object] = {}
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        last = json.loads(line[6:])
                ending = "complete" if last.get("type") == "speech.audio.done" else "cut"
                code = "" if ending == "complete" else str(last.get("error", {}).get("code", ""))  # type: ignore[union-attr]
                return Outcome(shape, characters, status, ending, time.monotonic() - started, code)
            size = sum(len(chunk) for chunk in response.iter_bytes())
            return Outcome(shape, characters, status, "complete" if size > 0 else "cut", time.monotonic() - started)
    except httpx.RemoteProtocolError as exc:  # an incomplete chunked read: the server cut the stream
        return Outcome(shape, characters, 200, "cut", time.monotonic() - started, str(exc)[:60])
    except httpx.HTTPError as exc:
        return Outcome(shape, characters, -1, "error", time.monotonic() - started, type(exc).__name__)


def scrape(text: str, name: str) -> dict[str, float]:
    """Every sample of one metric: labels text -> value."""
    return {m.group(1) or "": float(m.group(2))
            for m in re.finditer(rf"^{re.escape(name)}(?:{{(.*?)}})? (\S+)$", text, re.M)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--burst", type=int, default=12)
    parser.add_argument("--pause", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=None, help="also write the report (markdown) here")
    args = parser.parse_args()
    if not (1 <= args.rounds <= 20 and 1 <= args.burst <= 32 and 0 <= args.pause <= 120):
        parser.error("bounded: --rounds 1-20, --burst 1-32, --pause 0-120")

    outcomes: list[Outcome] = []
    with local_runtime({"TAILOR_CACHE_BYTES": "0"}, prefix="tailor-burst-", ready_s=240) as running:
        base, env_plan = running.base, running.env_plan
        calibrated = httpx.get(f"{base}/readyz").json()["admission"]
        started = time.monotonic()
        index = 0
        for round_number in range(args.rounds):
            with httpx.Client(base_url=base, timeout=180) as light:
                outcomes.append(one_request(light, "light", {"input": text_for(0, index), "response_format": "pcm"}))
            index += 1
            time.sleep(args.pause)
            barrier = threading.Barrier(args.burst)
            lock = threading.Lock()

            def fire(n: int, barrier: threading.Barrier = barrier, lock: threading.Lock = lock,
                     first: int = index) -> None:
                shape, sentences, fields = SHAPES[n % len(SHAPES)]
                body: dict[str, object] = {"model": "tts-1", "voice": "alloy",
                                           "input": text_for(sentences, first + n), **fields}
                with httpx.Client(base_url=base, timeout=180) as client:
                    barrier.wait()
                    outcome = one_request(client, shape, body)
                with lock:
                    outcomes.append(outcome)

            threads = [threading.Thread(target=fire, args=(n,)) for n in range(args.burst)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            index += args.burst
            print(f"  round {round_number + 1}/{args.rounds}: "
                  f"{dict(Counter(o.ending for o in outcomes))}", file=sys.stderr, flush=True)
        wall = time.monotonic() - started
        metrics = httpx.get(f"{base}/metrics").text
        final = httpx.get(f"{base}/readyz").json()["admission"]

    cuts = scrape(metrics, "tailor_stream_cuts_total")
    requests = scrape(metrics, "tailor_requests_total")
    rejections = scrape(metrics, "tailor_admission_rejections_total")
    admitted = [o for o in outcomes if o.ending in ("complete", "cut", "timeout")]
    cut_clients = [o for o in outcomes if o.ending == "cut"]
    timed_out = [o for o in outcomes if o.ending == "timeout"]
    cut_server = sum(cuts.values())
    cut_200 = sum(v for k, v in requests.items() if 'status="200_cut"' in k)
    timeout_s = float(env_plan.get("TAILOR_REQUEST_TIMEOUT_S", "60"))
    done = [o.seconds for o in outcomes if o.ending == "complete"]
    rows = []
    for shape, _sentences, _fields in [("light", 0, {}), *SHAPES]:
        mine = [o for o in outcomes if o.shape == shape]
        if mine:
            endings = Counter(o.ending for o in mine)
            finished = [o.seconds for o in mine if o.ending == "complete"]
            rows.append(f"| {shape} | {mine[0].characters} | {len(mine)} | {endings['complete']} | "
                        f"{endings['refused']} | {endings['cut']} | {endings['timeout']} | "
                        f"{max(finished):.1f} |" if finished else
                        f"| {shape} | {mine[0].characters} | {len(mine)} | 0 | {endings['refused']} | "
                        f"{endings['cut']} | {endings['timeout']} | - |")
    passed = not cut_clients and not timed_out and cut_server == 0 and cut_200 == 0
    load = os.getloadavg()
    lines = [
        f"burst soak: {args.rounds} rounds x {args.burst} concurrent (+1 light request each), pause "
        f"{args.pause:g} s, {wall:.0f} s wall; plan env: workers {env_plan.get('TAILOR_WORKERS')}, threads "
        f"{env_plan.get('TAILOR_THREADS_PER_WORKER')}, solo-wide {env_plan.get('TAILOR_SOLO_WIDE')}, timeout "
        f"{timeout_s:g} s, cache off",
        f"calibrated at start: {calibrated['seconds_per_char']} s/char per worker, effective max input "
        f"{calibrated['effective_max_input_chars']} chars; at the end: {final['seconds_per_char']} s/char, "
        f"samples {final['samples']}",
        f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} CPUs)",
        "",
        "| shape | chars | sent | complete | refused | cut | 504 | slowest complete s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        f"admitted {len(admitted)}: completed {len(admitted) - len(cut_clients) - len(timed_out)}, cut "
        f"{len(cut_clients)}, 504 {len(timed_out)}; slowest completed {max(done, default=0):.1f} s of {timeout_s:g} s",
        f"refusals by code: {dict(Counter(o.code for o in outcomes if o.ending == 'refused'))}; server "
        f"admission rejections {({k: int(v) for k, v in rejections.items()})}",
        f"server: tailor_stream_cuts_total {({k: int(v) for k, v in cuts.items()}) or 0}, "
        f"tailor_requests_total status=200_cut {int(cut_200)}",
        f"verdict: {'PASS: no admitted request cut' if passed else 'FAIL'}",
    ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report + "\n", encoding="utf-8")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
