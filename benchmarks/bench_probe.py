"""How fast is the probe? Writes benchmarks/results/probe.md.

Usage: .venv/bin/python benchmarks/bench_probe.py [--runs 50] [--cli-runs 10]

Measures (1) ``probe_host()`` in-process on this machine (live root, NVML and the Docker ping
included, then with ``check_docker=False``), and (2) the wall time of the real console script
``deploy probe --json`` as a fresh process, interpreter start included, hyperfine-style
(one warm-up, then N timed runs). Targets: probe under 100 ms, CLI under 1 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from orchestrator.probe.host import probe_host

RESULTS = Path(__file__).resolve().parent / "results" / "probe.md"


def _stats_ms(samples_s: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples_s)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return (f"median {statistics.median(ms):.1f} ms, min {ms[0]:.1f} ms, p95 {p95:.1f} ms, "
            f"max {ms[-1]:.1f} ms (n={len(ms)})")


def time_probe(runs: int, check_docker: bool) -> list[float]:
    probe_host(check_docker=check_docker)  # warm-up: page cache, first NVML dlopen attempt
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        probe_host(check_docker=check_docker)
        samples.append(time.perf_counter() - started)
    return samples


def time_cli(runs: int) -> list[float]:
    deploy = str(Path(sys.executable).with_name("deploy"))
    command = [deploy, "probe", "--json"]
    subprocess.run(command, check=True, capture_output=True)  # warm-up
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        samples.append(time.perf_counter() - started)
    return samples


def time_cold_probe(runs: int) -> list[float]:
    """The first probe_host() in a fresh interpreter: imports and the first NVML load included."""
    code = ("import time; t = time.perf_counter(); from orchestrator.probe.host import probe_host; probe_host(); "
            "print(time.perf_counter() - t)")
    return [float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
            for _ in range(runs)]


def heavy_modules_after_cli() -> list[str]:
    code = ("import sys; from orchestrator.cli.app import main; import contextlib, io\n"
            "with contextlib.redirect_stdout(io.StringIO()): main(['probe', '--json'])\n"
            "print(' '.join(sorted(m for m in ('pynvml', 'docker', 'jinja2', 'torch', 'onnxruntime', 'numpy') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return out.split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--cli-runs", type=int, default=10)
    args = parser.parse_args()

    facts = probe_host(check_docker=False)
    probe_full = time_probe(args.runs, check_docker=True)
    probe_nodocker = time_probe(args.runs, check_docker=False)
    cold = time_cold_probe(args.cli_runs)
    cli = time_cli(args.cli_runs)
    heavy = heavy_modules_after_cli()

    lines = [
        "# Probe speed",
        "",
        f"Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC with "
        f"`.venv/bin/python benchmarks/bench_probe.py --runs {args.runs} --cli-runs {args.cli_runs}`.",
        "",
        f"Machine: {facts.cpu.model_name}, {facts.cpu.logical_cores} logical CPUs "
        f"({facts.cpu.effective_cpus} effective), {facts.memory.total_bytes / 2**30:.1f} GiB, "
        f"container: {facts.container.container_kind or 'none'}, NVML: {facts.nvml.reason}. "
        f"Load average at the start: {os.getloadavg()[0]:.2f} (the machine is shared with other builds, so maxima are noisy).",
        "",
        "| What | Target | Result |",
        "|---|---|---|",
        f"| `probe_host()` in-process, live root, NVML + Docker ping | < 100 ms | {_stats_ms(probe_full)} |",
        f"| `probe_host(check_docker=False)` | < 100 ms | {_stats_ms(probe_nodocker)} |",
        f"| first `probe_host()` in a fresh process (probe imports, pynvml import, NVML load attempt) | < 100 ms | {_stats_ms(cold)} |",
        f"| `deploy probe --json` as a new process (interpreter start included) | < 1 s | {_stats_ms(cli)} |",
        "",
        "Heavy modules loaded by `deploy probe --json`: " + (", ".join(f"`{m}`" for m in heavy) or "none") + ".",
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
