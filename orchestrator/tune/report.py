"""What `deploy tune` writes: the tuned config file, and a report directory (Markdown, JSON, PNG chart).

The config file is the format ``deploy plan/auto --config`` reads; its ``tuned:`` block makes
the plan show every value from it with the source ``tuned``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from orchestrator import __version__
from orchestrator.plan.user_config import KNOB_VARIABLES
from orchestrator.tune.search import Record, TuneOptions, TuneResult
from runtime.families.catalog import DEFAULT_FAMILY

REPORT_FILE = "report.md"
RESULTS_FILE = "results.json"
CHART_FILE = "throughput-vs-p95.png"

_SHORT = {variable: knob for knob, variable in KNOB_VARIABLES.items()}


def tuned_config(result: TuneResult, profile: str, tuned_names: Sequence[str], plan_env: Mapping[str, str],
                 report_dir: Path, objective: str, model: str | None = None) -> dict[str, Any]:
    """The config document: every knob the search moved, at the chosen value (plan values included,
    so the file pins them even if the planner's rules change later)."""
    chosen = result.chosen.candidate.mapping
    settings: dict[str, Any] = {}
    env: dict[str, Any] = {}
    for name in sorted(tuned_names):
        value = chosen.get(name, plan_env.get(name))
        if value is None or value == "":
            continue
        if name in _SHORT:
            settings[_SHORT[name]] = _yaml_scalar(value)
        else:
            env[name] = value
    doc: dict[str, Any] = {
        "tuned": {"by": f"deploy tune {__version__}", "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "host": platform.node(), "objective": objective, "report": str((report_dir / REPORT_FILE).resolve())},
        "profile": profile,
    }
    if model is not None and model != DEFAULT_FAMILY:
        doc["model"] = model  # the measurements are of this family: `deploy auto --config` plans the same one
    if settings:
        doc["settings"] = settings
    if env:
        doc["env"] = env
    return doc


def _yaml_scalar(value: str) -> Any:
    if value in ("true", "false"):
        return value == "true"
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return value


def write_config(path: Path, doc: Mapping[str, Any]) -> None:
    header = ("# Written by `deploy tune`: the fastest configuration it measured on this machine that met the\n"
              "# constraints. Use it with `deploy plan --config FILE --explain` (values show the source `tuned`)\n"
              "# or `deploy auto --config FILE`. The report beside it says what was measured and why.\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(header + yaml.safe_dump(dict(doc), sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)


def _ms(seconds: float) -> str:
    return "-" if math.isinf(seconds) else f"{seconds:.2f}"


def record_dict(record: Record, objective: str) -> dict[str, Any]:
    comp = record.comparison
    return {
        "number": record.number, "label": record.candidate.label(), "change": record.candidate.change,
        "values": record.candidate.mapping, "outcome": record.outcome, "error": record.error,
        "against": record.against, "startup_s": round(record.startup_s, 2), "rounds": len(record.rounds),
        "score": record.score(objective), "peak_rss_bytes": record.peak_rss_bytes,
        "comparison": None if comp is None else {"ratios": list(comp.ratios), "mean_ratio": comp.mean_ratio,
                                                 "spread": comp.spread, "verdict": comp.verdict},
        "levels": [vars(level) | {"p50_s": _finite(level.p50_s), "p95_s": _finite(level.p95_s),
                                  "ttfa_p50_s": _finite(level.ttfa_p50_s), "ttfa_p95_s": _finite(level.ttfa_p95_s)}
                   for level in record.levels()],
    }


def _finite(value: float) -> float | None:
    return None if math.isinf(value) or math.isnan(value) else value


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats on both (higher throughput, lower p95)."""
    front = []
    for i, (tp, p95) in enumerate(points):
        dominated = any(t2 >= tp and q2 <= p95 and (t2 > tp or q2 < p95) for j, (t2, q2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front


def _chart_points(result: TuneResult) -> list[tuple[Record, float, float]]:
    """(record, audio-s/s, p95 s) at the highest concurrency level, for measured candidates."""
    points = []
    for record in result.records:
        levels = record.levels()
        if levels and not math.isinf(levels[-1].p95_s):
            points.append((record, levels[-1].audio_per_s, levels[-1].p95_s))
    return points


def write_chart(path: Path, result: TuneResult) -> bool:
    """Throughput vs p95 latency at the highest concurrency, Pareto front marked; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    points = _chart_points(result)
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=110)
    if points:
        front = set(pareto_front([(tp, p95) for _r, tp, p95 in points]))
        for i, (record, tp, p95) in enumerate(points):
            chosen = record is result.chosen
            ax.scatter([p95], [tp], s=90 if chosen else 45, marker="*" if chosen else "o",
                       color="tab:red" if chosen else ("tab:blue" if i in front else "tab:gray"), zorder=3)
            ax.annotate(str(record.number), (p95, tp), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ring = [points[i] for i in sorted(front)]
        ax.scatter([p for _r, _t, p in ring], [t for _r, t, _p in ring], s=220, facecolors="none",
                   edgecolors="tab:blue", linewidths=1.5, zorder=2, label="on the Pareto front")
        ordered = sorted((points[i][2], points[i][1]) for i in front)
        ax.plot([p for p, _ in ordered], [t for _, t in ordered], color="tab:blue", linewidth=1,
                label="Pareto front: no other candidate is both faster and lower-latency")
        ax.scatter([], [], marker="*", color="tab:red", s=90, label="chosen")
        ax.scatter([], [], marker="o", color="tab:gray", s=45, label="dominated")
        ax.legend(loc="best", fontsize=8)
    level = result.records[0].levels()[-1].concurrency if result.records and result.records[0].levels() else 0
    ax.set_xlabel(f"p95 latency at concurrency {level} (s)")
    ax.set_ylabel(f"audio seconds per second at concurrency {level}")
    ax.set_title("deploy tune: candidates (numbers as in report.md)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def write_report(report_dir: Path, result: TuneResult, options: TuneOptions, *, config_path: Path,
                 plan_summary: str, gate: Sequence[Mapping[str, Any]], gate_note: str) -> Path:
    """report.md + results.json + the chart; returns the report's path."""
    report_dir.mkdir(parents=True, exist_ok=True)
    charted = write_chart(report_dir / CHART_FILE, result)
    objective = options.objective
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        "# deploy tune report", "",
        f"Machine: {platform.node()} ({os.cpu_count()} CPUs, {platform.machine()}); load average at the end {load}.",
        f"Plan: {plan_summary}.",
        f"Objective: {objective}; concurrency levels {', '.join(map(str, options.levels))}; "
        f"{options.requests} requests per level and round (the shipped text set, same order for every candidate); "
        f"budget {options.budget_s:.0f} s, used {result.elapsed_s:.0f} s.",
        f"Config written: `{config_path}`.", "",
        "## Choice", "",
        *[f"- {line}" for line in result.why], "",
        "## Candidates", "",
        "Each challenger ran next to the best so far and the two were measured alternately (pairs in ABBA "
        "order); *ratio* is challenger/best on the objective per pair, *spread* half their range. A difference "
        "inside the spread is a tie and the best stays. Figures pool every round the candidate ran.", "",
    ]
    header = ["#", "configuration", "change", "outcome", "vs #", "ratio (pairs)", "spread", "rounds",
              "peak RSS MiB", "start s"]
    levels = result.records[0].levels() if result.records and result.records[0].levels() else []
    for level in levels:
        c = level.concurrency
        header += [f"c={c} audio-s/s", f"c={c} p50/p95 s", f"c={c} TTFA p50 s", f"c={c} fail"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for record in result.records:
        comp = record.comparison
        mark = " **(chosen)**" if record is result.chosen else ""
        row = [str(record.number), f"`{record.candidate.label()}`{mark}", record.candidate.change, record.outcome
               + (f": {record.error}" if record.error else ""),
               str(record.against or "-"),
               f"{comp.mean_ratio:.2f} ({', '.join(f'{r:.2f}' for r in comp.ratios)})" if comp else "-",
               f"+/-{comp.spread:.2f}" if comp else "-", str(len(record.rounds)),
               f"{record.peak_rss_bytes / 2**20:.0f}" if record.rounds else "-", f"{record.startup_s:.1f}"]
        for level in record.levels():
            row += [f"{level.audio_per_s:.2f}", f"{_ms(level.p50_s)} / {_ms(level.p95_s)}", _ms(level.ttfa_p50_s),
                    str(level.failures)]
        row += ["-"] * (len(header) - len(row))
        lines.append("| " + " | ".join(row) + " |")
    if result.final is not None:
        f = result.final
        lines += ["", f"Final paired check, chosen vs the plan's default: {f.mean_ratio:.2f}x "
                      f"(pairs {', '.join(f'{r:.2f}' for r in f.ratios)}, spread +/-{f.spread:.2f}): {f.verdict}."]
    lines += ["", "## Cheaper model variants (quality gate)", "", gate_note, ""]
    if gate:
        lines += ["| variant | verdict | worst PESQ-WB | worst STOI | worst MCD dB | worst duration diff (frames) | "
                  "first failures |", "|---|---|---|---|---|---|---|"]
        for g in gate:
            failures = "; ".join(list(g.get("failures", []))[:2]) or "-"
            lines.append(f"| {g['variant']} | {'pass' if g['passed'] else 'fail'} | {g['worst_pesq_wb']:.2f} | "
                         f"{g['worst_stoi']:.3f} | {g['worst_mcd_db']:.2f} | {g['worst_duration_diff_frames']:.0f} | "
                         f"{failures} |")
    lines += ["", "## Chart", ""]
    lines.append(f"![throughput vs p95]({CHART_FILE})" if charted else
                 "matplotlib is not installed (`pip install 'tailor-deploy[tune]'`), so no chart was drawn.")
    report = report_dir / REPORT_FILE
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    results = {
        "objective": objective, "levels": list(options.levels), "requests": options.requests,
        "budget_s": options.budget_s, "elapsed_s": result.elapsed_s, "stop_reason": result.stop_reason,
        "interrupted": result.interrupted, "chosen": result.chosen.number, "why": result.why,
        "final_check": None if result.final is None else {
            "ratios": list(result.final.ratios), "mean_ratio": result.final.mean_ratio,
            "spread": result.final.spread, "verdict": result.final.verdict},
        "candidates": [record_dict(r, objective) for r in result.records], "gate": list(gate),
        "config": str(config_path), "chart": CHART_FILE if charted else None,
    }
    (report_dir / RESULTS_FILE).write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    return report
