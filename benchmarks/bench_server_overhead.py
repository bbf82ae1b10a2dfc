"""Benchmark: what the runtime's HTTP path costs when the engine costs (almost) nothing.

    .venv/bin/python benchmarks/bench_server_overhead.py [--engine-ms 0] [--workers 1] [--processes 1] \
        [--batch 32] [--concurrency 1,8,32,64] [--requests 128] [--switch-interval-ms 5] [--json FILE]

Starts the real runtime (``python -m runtime``, the same app, scheduler, phonemizer, WAV
encoder and middleware) on 127.0.0.1 with its engine replaced by a stand-in (benchmarks/standin_engine.py) that returns
silence of the length the real voice would produce (560 samples per phoneme id, measured on
en_US-joe-medium) after sleeping ``--engine-ms`` per call with the GIL released, as a GPU kernel
wait does. It then drives it with ``deploy tune``'s load generator (cache off). What it measures
is the ceiling the server itself puts on throughput: text handling, scheduling, encoding and
HTTP, on this machine's CPU. A GPU deployment cannot go faster than this, whatever the card.
``--processes N`` runs N server processes behind the one port (``TAILOR_PROCESSES``,
runtime/serving/processes.py); the server CPU column then sums the parent and every process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.standin_engine import DELAY_VARIABLE  # noqa: E402
from orchestrator.supervise.http_client import check_ready  # noqa: E402
from orchestrator.tune.loadgen import run_level  # noqa: E402
from orchestrator.tune.trial import free_port  # noqa: E402

_BOOTSTRAP = (
    "import sys\n"
    "import runtime.engines as engines\n"
    "import runtime.serving.processes as processes\n"
    "engines._REGISTRY['torch'] = 'benchmarks.standin_engine:StandInEngine'\n"
    "processes.child_command = lambda: [sys.executable, '-c', BOOT]\n"
    "from runtime.__main__ import main\n"
    "raise SystemExit(main([]))\n"
)
"""``python -m runtime`` with the stand-in in the torch engine's place (benchmarks/standin_engine.py);
with ``--processes N`` the parent starts each server process with this same bootstrap."""
_BOOTSTRAP = f"BOOT = {_BOOTSTRAP!r}\n" + _BOOTSTRAP


def wait_ready(url: str, instance_id: str, proc: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the runtime exited with {proc.returncode} before it was ready")
        if check_ready(url, instance_id).ok:
            return
        time.sleep(0.2)
    raise SystemExit(f"the runtime was not ready after {timeout_s:g} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine-ms", type=float, default=0.0, help="stand-in engine time per call")
    parser.add_argument("--workers", type=int, default=1, help="TAILOR_WORKERS (per process)")
    parser.add_argument("--processes", type=int, default=1, help="TAILOR_PROCESSES: server processes on the port")
    parser.add_argument("--batch", type=int, default=32, help="TAILOR_MAX_BATCH_SIZE (batching on if > 1)")
    parser.add_argument("--window-ms", type=float, default=8.0, help="TAILOR_BATCH_WINDOW_MS")
    parser.add_argument("--switch-interval-ms", type=float, default=5.0, help="TAILOR_SWITCH_INTERVAL_MS")
    parser.add_argument("--concurrency", default="1,8,32,64")
    parser.add_argument("--requests", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=16)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    port = free_port()
    instance_id = f"bench-overhead-{port}"
    env = {
        **os.environ, "TAILOR_ENGINE": "torch", "TAILOR_DEVICE": "cpu", "TAILOR_PORT": str(port),
        "TAILOR_WORKERS": str(args.workers), "TAILOR_PROCESSES": str(args.processes), "TAILOR_BATCHING": "true" if args.batch > 1 else "false",
        "TAILOR_MAX_BATCH_SIZE": str(args.batch), "TAILOR_BATCH_WINDOW_MS": f"{args.window_ms:g}",
        "TAILOR_MAX_QUEUE": "512", "TAILOR_CACHE_BYTES": "0", "TAILOR_LOG_LEVEL": "warning",
        "TAILOR_SWITCH_INTERVAL_MS": f"{args.switch_interval_ms:g}", "TAILOR_INSTANCE_ID": instance_id,
        DELAY_VARIABLE: f"{args.engine_ms / 1000:g}",
        "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH")))),
    }
    proc = subprocess.Popen([sys.executable, "-c", _BOOTSTRAP], env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    rows = []
    try:
        wait_ready(url, instance_id, proc)
        print(f"stand-in engine {args.engine_ms:g} ms/call, {args.processes} process(es) x {args.workers} worker(s), "
              f"batch {args.batch}, "
              f"switch interval {args.switch_interval_ms:g} ms, {os.cpu_count()} CPUs")
        print("| concurrency | requests/s | audio s/s | p50 latency (ms) | p95 latency (ms) | server CPU (s/request) |")
        print("|---|---|---|---|---|---|")
        run_level(url, 1, args.warmup)
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            cpu0 = _cpu_seconds(proc.pid)
            level = run_level(url, concurrency, args.requests, offset=args.warmup)
            cpu = _cpu_seconds(proc.pid) - cpu0
            ok = len(level.ok)
            row = {
                "concurrency": concurrency, "requests": len(level.samples), "failures": level.failures,
                "requests_per_s": ok / level.wall_s, "audio_per_s": level.audio_per_s,
                "p50_ms": level.latency_quantile(0.5) * 1000, "p95_ms": level.latency_quantile(0.95) * 1000,
                "server_cpu_s_per_request": cpu / max(1, ok),
            }
            rows.append(row)
            print(f"| {concurrency} | {row['requests_per_s']:.0f} | {row['audio_per_s']:.0f} | {row['p50_ms']:.0f} "
                  f"| {row['p95_ms']:.0f} | {row['server_cpu_s_per_request'] * 1000:.1f} ms |", flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))
    if any(r["failures"] for r in rows):
        raise SystemExit(1)


def _cpu_seconds(pid: int) -> float:
    """CPU seconds of the server: the process and its live children (the server processes)."""
    import psutil

    total = 0.0
    root = psutil.Process(pid)
    for proc in (root, *root.children(recursive=True)):
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


if __name__ == "__main__":
    main()
