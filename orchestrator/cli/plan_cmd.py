"""`deploy profiles`, `deploy plan`, `deploy render`, `deploy env`: thin commands over the
pure services (profiles, selection, plan, render). Data goes to stdout, warnings to stderr."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from orchestrator.cli import output as out
from orchestrator.errors import PlanError, UsageError
from orchestrator.plan.planner import Plan, make_plan
from orchestrator.plan.user_config import UserConfig, load_config
from orchestrator.probe.facts import HostFacts
from orchestrator.render.renderer import (
    FORMATS,
    RenderOptions,
    parse_formats,
    render,
    write_rendered,
)
from orchestrator.select.profiles import ProfileSet, load_profiles
from orchestrator.select.selection import (
    DOES_NOT_FIT,
    FITS,
    FITS_WITH_CHANGE,
    STATUS_LABELS,
    Selection,
    judge_all,
    select_profile,
)
from orchestrator.yaml_doc import format_size
from runtime.settings import VARIABLES

# Shared typed options: every command spells these the same way.
FactsOpt = Annotated[Path | None, typer.Option(
    "--facts", help="Plan for a facts file (`deploy probe --json > FILE`) instead of probing this machine.",
    dir_okay=False)]
ProfilesDirOpt = Annotated[list[Path] | None, typer.Option(
    "--profiles", help="Directory of extra profiles (NAME.yaml); same name replaces a built-in. Repeatable.",
    file_okay=False)]
ProfileOpt = Annotated[str | None, typer.Option("--profile", help="Force this profile (warns if it does not fit).")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="User config file (YAML).", dir_okay=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Set a runtime variable or knob: --set workers=2, --set TAILOR_LOG_LEVEL=debug. Repeatable.")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", min=1, help="Synthesis workers.")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", min=1, help="Intra-op threads per worker.")]
PrecisionOpt = Annotated[str | None, typer.Option("--precision", help="fp32, fp16 or bf16.")]
PortOpt = Annotated[int | None, typer.Option("--port", min=1, max=65535, help="Port the runtime listens on.")]


def _load_facts(facts_file: Path | None) -> HostFacts:
    if facts_file is not None:
        return HostFacts.from_json_file(facts_file)
    from orchestrator.probe.host import probe_host  # the probe is heavy; only load it when needed

    return probe_host()


def _cli_overrides(sets: list[str] | None, **flags: object) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in sets or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item!r} is not KEY=VALUE", "for example --set workers=2")
        result[key.strip()] = value.strip()
    for flag, flag_value in flags.items():
        if flag_value is not None:
            result[flag] = str(flag_value)
    return result


def _prepare(facts_file: Path | None, profiles_dirs: list[Path] | None, profile: str | None,
             config_file: Path | None) -> tuple[HostFacts, ProfileSet, Selection, UserConfig | None]:
    profiles = load_profiles(tuple(profiles_dirs or ()))
    for sentence in profiles.overrides:
        out.info(sentence)
    config = load_config(config_file) if config_file is not None else None
    facts = _load_facts(facts_file)
    forced = profile or (config.profile if config is not None else None)
    return facts, profiles, select_profile(facts, profiles, forced), config


def _plan(facts_file: Path | None, profiles_dirs: list[Path] | None, profile: str | None,
          config_file: Path | None, overrides: Mapping[str, str]) -> tuple[Plan, Selection, HostFacts]:
    facts, _profiles, selection, config = _prepare(facts_file, profiles_dirs, profile, config_file)
    plan = make_plan(facts, selection, overrides, os.environ, config)
    for warning in plan.warnings:
        out.warn(warning)
    return plan, selection, facts


def profiles_command(facts: FactsOpt = None, profiles_dir: ProfilesDirOpt = None, json_out: JsonOpt = False) -> None:
    """Every profile and whether it fits this machine: fits / fits with a change / does not fit."""
    profiles = load_profiles(tuple(profiles_dir or ()))
    for sentence in profiles.overrides:
        out.info(sentence)
    host = _load_facts(facts)
    verdicts = {v.profile: v for v in judge_all(host, profiles)}
    try:
        chosen: str | None = select_profile(host, profiles).chosen.name
    except PlanError as exc:
        chosen = None
        out.warn(exc.message)
    if json_out:
        out.data_json({
            "chosen": chosen,
            "overrides": list(profiles.overrides),
            "profiles": [{"name": p.name, "priority": p.priority, "description": p.description,
                          "source": p.source, "engine": p.engine, "device": p.device,
                          "status": verdicts[p.name].status, "failures": list(verdicts[p.name].failures),
                          "changes": list(verdicts[p.name].changes)} for p in profiles.profiles],
        })
        return
    table = Table(title=f"Profiles for {host.hostname or 'this machine'}")
    for column in ("profile", "priority", "engine/device", "verdict", "why"):
        table.add_column(column)
    colors = {FITS: "green", FITS_WITH_CHANGE: "yellow", DOES_NOT_FIT: "red"}
    for p in profiles.profiles:
        verdict = verdicts[p.name]
        mark = f"[{colors[verdict.status]}]{STATUS_LABELS[verdict.status]}[/{colors[verdict.status]}]"
        why = "; ".join(verdict.failures + tuple(f"change: {c}" for c in verdict.changes)) or p.description
        name = f"[bold]{p.name}[/bold] (chosen)" if p.name == chosen else p.name
        table.add_row(name, str(p.priority), f"{p.engine}/{p.device}", mark, escape(why))
    out.table(table)


def plan_command(
    facts: FactsOpt = None, profile: ProfileOpt = None, config: ConfigOpt = None,
    profiles_dir: ProfilesDirOpt = None, json_out: JsonOpt = False,
    explain: Annotated[bool, typer.Option("--explain", help="Why each number: profiles, budget, sources.")] = False,
    workers: WorkersOpt = None, threads: ThreadsOpt = None, precision: PrecisionOpt = None,
    port: PortOpt = None, set_values: SetOpt = None,
) -> None:
    """The tuned plan for this machine (or --facts): engine, precision, workers x threads, memory budget."""
    overrides = _cli_overrides(set_values, workers=workers, threads=threads, precision=precision, port=port)
    plan, selection, _facts = _plan(facts, profiles_dir, profile, config, overrides)
    if json_out:
        data = plan.to_dict()
        if explain:
            data["selection"] = {"chosen": selection.chosen.name, "forced": selection.forced,
                                 "reasons": list(selection.reasons)}
        out.data_json(data)
        return
    out.data(f"[bold]profile[/bold] {plan.profile}   engine {plan.engine} on {plan.device}, {plan.precision}")
    out.data(f"workers {plan.workers} x threads {plan.threads} (inter-op {plan.inter_op_threads}), "
             f"max concurrency {plan.max_concurrency}, queue {plan.max_queue}, "
             f"batching {'on, max ' + str(plan.max_batch_size) if plan.batching else 'off'}")
    c = plan.container
    out.data(f"container {c.image}: memory {format_size(c.memory_limit_bytes)}, cpus {c.cpus:g}, "
             f"gpus {c.gpu_count}, shm {format_size(c.shm_size_bytes)}", markup=False)
    if not explain:
        return
    out.data("\n[bold]Profiles considered[/bold]")
    for reason in selection.reasons:
        out.data(f"  {reason}", markup=False)
    budget = Table(title="Memory budget")
    for column in ("item", "pool", "size", "detail"):
        budget.add_column(column)
    for row in plan.memory_budget.rows:
        budget.add_row(row.item, row.pool, format_size(row.bytes), row.detail)
    for total in plan.memory_budget.totals:
        budget.add_row(f"[bold]{total.pool} total[/bold]", total.pool,
                       f"{format_size(total.planned_bytes)} of {format_size(total.capacity_bytes)}",
                       f"headroom {format_size(total.headroom_bytes)}, free {format_size(total.free_bytes)}")
    out.table(budget)
    out.data("[bold]Derived numbers[/bold]")
    for reason in plan.reasons:
        out.data(f"  {reason}", markup=False)
    sources = Table(title="Runtime environment")
    for column in ("variable", "value", "source", "reason"):
        sources.add_column(column)
    for p in plan.provenance:
        if p.name in plan.env:
            sources.add_row(p.name, p.value, p.source, p.reason)
    out.table(sources)


def render_command(
    facts: FactsOpt = None, profile: ProfileOpt = None, config: ConfigOpt = None,
    profiles_dir: ProfilesDirOpt = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to write into.", file_okay=False)] = Path("deploy"),
    formats: Annotated[str, typer.Option("--format", help=f"Comma-separated: {','.join(FORMATS)}.")] = ",".join(FORMATS),
    public: Annotated[bool, typer.Option("--public", help="Publish on every interface, not only 127.0.0.1.")] = False,
    network: Annotated[str, typer.Option("--network", help="bridge (publish the port) or host.")] = "bridge",
    port: PortOpt = None,
    python: Annotated[str | None, typer.Option("--python", help="Interpreter for the systemd unit (default: this one).")] = None,
    workers: WorkersOpt = None, threads: ThreadsOpt = None, precision: PrecisionOpt = None,
    set_values: SetOpt = None,
) -> None:
    """Write docker-compose.yml + .env, k8s.yaml and a systemd unit for the plan."""
    chosen = parse_formats(formats)
    if network not in ("bridge", "host"):
        raise UsageError(f"--network {network!r} is not bridge or host", "use --network bridge or --network host")
    overrides = _cli_overrides(set_values, workers=workers, threads=threads, precision=precision, port=port)
    plan, _selection, host_facts = _plan(facts, profiles_dir, profile, config, overrides)
    options = RenderOptions(public=public, network=network, python=python or sys.executable)
    for path in write_rendered(render(plan, chosen, options), out_dir):
        out.data(str(path), markup=False)
    # plan.json + facts.json let `deploy up DIR` step this deployment down after an OOM kill.
    from orchestrator.supervise.deployment import write_plan_files

    for path in write_plan_files(out_dir, plan.to_dict(), host_facts):
        out.data(str(path), markup=False)


def env_command(json_out: JsonOpt = False) -> None:
    """Every runtime variable: name, default, description."""
    rows = [{"name": v.name, "default": v.default, "description": v.description} for v in VARIABLES]
    if json_out:
        out.data_json(rows)
        return
    table = Table(title="Runtime variables (runtime/settings.py)")
    for column in ("name", "default", "description"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], row["default"] or '""', row["description"])
    out.table(table)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("profiles")(profiles_command)
    app.command("plan")(plan_command)
    app.command("render")(render_command)
    app.command("env")(env_command)
