"""`deploy tune`: measure candidate configurations on this machine, keep the best, write a config and a report."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer

from orchestrator import pipeline
from orchestrator.cli import options as opts
from orchestrator.cli import output as out
from orchestrator.errors import DeployError, Interrupted, UsageError
from orchestrator.launch.spec import LaunchSpec
from orchestrator.select.selection import NATIVE_BF16_ISA
from orchestrator.tune.gate import run_gate
from orchestrator.tune.report import tuned_config, write_config, write_report
from orchestrator.tune.search import Constraints, Search, TuneOptions
from orchestrator.tune.space import build_knobs
from orchestrator.units import format_size, parse_size

DEFAULT_VARIANTS = ("int8-static-decoder", "int8-static-upsampler")
TORCH_BF16 = "torch-bf16"
"""The torch engine in bf16 (runtime.tools.quality.TORCH_BF16): gated like a variant, offered as engine + precision."""
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)?\s*$")


def parse_duration(text: str, option: str) -> float:
    """Seconds from ``90``, ``90s``, ``5m``, ``1.5h``, ``500ms``."""
    match = _DURATION.match(text)
    if not match:
        raise UsageError(f"{option} {text!r} is not a duration", f"write it like 300, 90s, 5m or 1h ({option} 5m)")
    scale = {"ms": 0.001, "s": 1.0, None: 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}[match.group(2)]
    return float(match.group(1)) * scale


def parse_levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        levels = ()
    if not levels or any(n < 1 or n > 256 for n in levels):
        raise UsageError(f"--concurrency {text!r} is not a list of levels between 1 and 256",
                         "write it like --concurrency 1,8")
    return tuple(sorted(set(levels)))


def _variants(text: str | None, engine: str, device: str, isa_flags: tuple[str, ...]) -> tuple[str, ...]:
    """The cheaper models to gate: int8 model files (onnx engine) and torch-bf16 (CPU with native bf16)."""
    from runtime.settings import MODEL_VARIANTS

    bf16 = (TORCH_BF16,) if device == "cpu" and any(f in isa_flags for f in NATIVE_BF16_ISA) and _has("torch") else ()
    if text is None:
        return (DEFAULT_VARIANTS if engine == "onnx" else ()) + bf16
    if text.strip().lower() in ("", "none"):
        return ()
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    known = [v for v in MODEL_VARIANTS if v != "fp32"] + [TORCH_BF16]
    unknown = [v for v in names if v not in known]
    if unknown:
        raise UsageError(f"--variants: unknown variant(s) {', '.join(unknown)}", "choose from " + ", ".join(known) + ", or none")
    if engine != "onnx" and any(v != TORCH_BF16 for v in names):
        raise UsageError(f"int8 --variants need the onnx engine; the plan uses {engine}", "pass --variants none")
    if TORCH_BF16 in names and not bf16:
        raise UsageError("--variants torch-bf16 needs a CPU with AVX-512-BF16 or AMX (and torch installed)",
                         "this machine's `deploy probe` lists neither; leave torch-bf16 out")
    return names


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def tune(
    budget: Annotated[str, typer.Option("--budget", help="Time budget, all included (gate, launches, load): 300, 90s, 5m.")] = "10m",
    objective: Annotated[str, typer.Option("--objective", help="throughput (audio-s/s) or latency (p95).")] = "throughput",
    concurrency: Annotated[str | None, typer.Option("--concurrency", help="Concurrency levels, e.g. 1,8 (default: 1 and 4x the plan's slots).")] = None,
    requests: Annotated[int, typer.Option("--requests", min=1, max=1000, help="Requests per level and round.")] = 12,
    p95_max: Annotated[float | None, typer.Option("--p95-max", min=0.0, help="Reject candidates whose p95 latency exceeds this many seconds at any level.")] = None,
    ttfa_max: Annotated[float | None, typer.Option("--ttfa-max", min=0.0, help="Reject candidates whose p95 time to first audio exceeds this many seconds.")] = None,
    memory_max: Annotated[str | None, typer.Option("--memory-max", help="Reject candidates whose peak RSS exceeds this size, e.g. 1GiB.")] = None,
    variants: Annotated[str | None, typer.Option("--variants", help="Cheaper models to gate and try (comma-separated, or none; default int8-static-decoder,int8-static-upsampler, plus torch-bf16 on a CPU with native bf16).")] = None,
    patience: Annotated[int, typer.Option("--patience", min=1, help="Stop after this many candidates in a row gained less than 5 %.")] = 3,
    max_pairs: Annotated[int, typer.Option("--max-pairs", min=2, max=20, help="Most paired rounds per comparison before calling a tie.")] = 4,
    out_file: Annotated[Path, typer.Option("--out", help="The tuned config file to write.", dir_okay=False)] = Path("tuned.yaml"),
    report_dir: Annotated[Path, typer.Option("--report", help="Report directory (report.md, results.json, chart).", file_okay=False)] = Path("tune-report"),
    profile: opts.ProfileOpt = None,
    profiles_dirs: opts.ProfilesDirOpt = None,
    config: opts.ConfigOpt = None,
    model: opts.ModelOpt = None,
    sets: opts.SetOpt = None,
) -> None:
    """Measure this machine: run the runtime in candidate configurations, keep the best, write tuned.yaml."""
    started = time.monotonic()
    budget_s = parse_duration(budget, "--budget")
    if budget_s < 30:
        raise UsageError(f"--budget {budget} is too short to measure anything", "give it at least 30 s, e.g. --budget 2m")
    if objective not in ("throughput", "latency"):
        raise UsageError(f"--objective {objective!r} is not throughput or latency", "use --objective throughput")
    memory_bytes = None
    if memory_max is not None:
        memory_bytes = parse_size(memory_max)
        if not memory_bytes:
            raise UsageError(f"--memory-max {memory_max!r} is not a size", "write it like 800MiB or 2GiB")
    # Always this machine's own facts: the measurements are of this machine.
    inputs = opts.pipeline_inputs(profile=profile, profiles_dirs=profiles_dirs, config=config, sets=sets, model=model)
    planned = pipeline.plan_from(inputs)
    plan = planned.plan
    for warning in planned.warnings:
        out.warn(warning)
    levels = parse_levels(concurrency) if concurrency else tuple(sorted({1, 4 * plan.max_concurrency}))
    chosen_variants = _variants(variants, plan.engine, plan.device, planned.facts.cpu.isa_flags)
    options = TuneOptions(levels=levels, requests=requests, objective=objective, budget_s=budget_s,
                          constraints=Constraints(p95_max, ttfa_max, memory_bytes), patience=patience,
                          max_pairs=max_pairs)
    summary = (f"model {plan.model}, profile {plan.profile}, {plan.engine} on {plan.device}, {plan.workers} worker(s) x {plan.threads} "
               f"thread(s), {plan.precision}")
    out.info(f"tuning from the plan: {summary}; levels {', '.join(map(str, levels))}; budget {budget_s:.0f} s")

    gate: list[dict[str, object]] = []
    gate_note = "No model variants were tried (--variants none, or the engine is not onnx)."
    passed: list[str] = []
    if chosen_variants:
        out.info(f"quality gate: making and scoring {', '.join(chosen_variants)} against the fp32 voice")
        try:
            gate = run_gate(chosen_variants, os.environ, timeout_s=budget_s / 2)
        except UsageError:
            raise
        except DeployError as exc:  # under pressure: tune without variants, and say why
            out.warn(f"{exc.message}; tuning without model variants ({exc.hint})")
            gate_note = f"The quality gate did not complete: {exc.message}. No model variant was tried."
        passed = [str(g["variant"]) for g in gate if g.get("passed")]
        for g in gate:
            out.info(f"  {g['variant']}: {'pass' if g['passed'] else 'fail'} (worst PESQ-WB {g['worst_pesq_wb']:.2f}, "
                     f"STOI {g['worst_stoi']:.3f}, MCD {g['worst_mcd_db']:.2f} dB, "
                     f"duration {g['worst_duration_diff_frames']:.0f} frames){' [cached]' if g.get('cached') else ''}")
        if gate:
            gate_note = (f"Scored on this machine before the search ({sum(float(str(g['seconds'])) for g in gate):.0f} "
                         "s); only variants that pass become candidates. Thresholds and their reasoning: README, "
                         "\"deploy tune\".")

    plan_dict = plan.to_view()
    knobs = build_knobs(plan_dict, variants=[v for v in passed if v != TORCH_BF16], torch_bf16=TORCH_BF16 in passed)

    def spec_for(values: Mapping[str, str]) -> LaunchSpec:
        """A candidate is planned like `deploy plan --set NAME=VALUE ...`: the one pipeline."""
        return pipeline.plan_from(dataclasses.replace(inputs, settings={**inputs.settings, **values})).spec

    work_dir = report_dir / "runs"
    search = Search(spec_for, knobs, dict(plan.env), options, work_dir, os.environ, out.info, started=started)
    result = search.run()
    result.gate = gate
    tuned_names = sorted({name for knob in knobs for option in knob.options for name, _ in option}
                         | set(result.chosen.candidate.mapping))
    doc = tuned_config(result, plan.profile, tuned_names, dict(plan.env), report_dir, objective, model=plan.model)
    write_config(out_file, doc)
    report = write_report(report_dir, result, options, config_path=out_file, plan_summary=summary, gate=gate,
                          gate_note=gate_note)
    chosen = result.chosen
    levels_text = ", ".join(f"c={lv.concurrency}: {lv.audio_per_s:.2f} audio-s/s, p95 {lv.p95_s:.2f} s"
                            for lv in chosen.levels())
    out.data(f"chosen:   {chosen.candidate.label()} ({levels_text})", markup=False)
    for line in result.why:
        out.data(f"why:      {line}", markup=False)
    out.data(f"peak RSS: {format_size(chosen.peak_rss_bytes)}; {len(result.records)} candidate(s) in "
             f"{result.elapsed_s:.0f} s", markup=False)
    out.data(f"config:   {out_file}  (deploy plan --config {out_file} --explain; deploy auto --config {out_file})",
             markup=False)
    out.data(f"report:   {report}", markup=False)
    if not _has("matplotlib"):
        out.warn("no chart in the report: matplotlib is not installed (`pip install 'tailor-deploy[tune]'`)")
    if result.interrupted:
        raise Interrupted("interrupted: the config and the report hold what was measured until Ctrl-C",
                          f"see {report}")


COMMANDS = {"tune": tune}
"""This module's commands, registered by cli/app.py."""
