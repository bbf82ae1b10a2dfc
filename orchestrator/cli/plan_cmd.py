"""`deploy profiles`, `deploy plan`, `deploy render`, `deploy env`: thin commands over the
pure services (profiles, selection, plan, render). Data goes to stdout, warnings to stderr."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from orchestrator import pipeline
from orchestrator.cli import output as out
from orchestrator.cli.explain import knob_rows, knob_table_markdown, plan_json, print_sources
from orchestrator.cli.options import (
    ConfigOpt,
    ExplainOpt,
    FactsOpt,
    JsonOpt,
    PortOpt,
    PrecisionOpt,
    ProfileOpt,
    ProfilesDirOpt,
    SetOpt,
    ShowSecretsOpt,
    ThreadsOpt,
    WorkersOpt,
    pipeline_inputs,
)
from orchestrator.errors import PlanError
from orchestrator.render.renderer import FORMATS, parse_formats
from orchestrator.select.gpus import choose_gpus
from orchestrator.select.selection import (
    DOES_NOT_FIT,
    FITS,
    FITS_WITH_CHANGE,
    STATUS_LABELS,
    judge_all,
)
from orchestrator.units import format_size


def _warn_and_note(notes: tuple[str, ...], warnings: tuple[str, ...] = ()) -> None:
    for sentence in notes:
        out.info(sentence)
    for warning in warnings:
        out.warn(warning)


def profiles_command(facts: FactsOpt = None, profiles_dir: ProfilesDirOpt = None, config: ConfigOpt = None,
                     json_out: JsonOpt = False) -> None:
    """Every profile and whether it fits this machine: fits / fits with a change / does not fit."""
    selected = pipeline.select_from(pipeline_inputs(facts=facts, profiles_dirs=profiles_dir, config=config))
    _warn_and_note(selected.notes)
    host, profiles = selected.facts, selected.profiles
    verdicts = {v.profile: v for v in judge_all(host, profiles, choose_gpus(host, selected.environ))}
    try:
        chosen: str | None = selected.select().chosen.name
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
    profiles_dir: ProfilesDirOpt = None, json_out: JsonOpt = False, explain: ExplainOpt = False,
    workers: WorkersOpt = None, threads: ThreadsOpt = None, precision: PrecisionOpt = None,
    port: PortOpt = None, set_values: SetOpt = None, show_secrets: ShowSecretsOpt = False,
) -> None:
    """The tuned plan for this machine (or --facts): engine, precision, workers x threads, memory budget."""
    planned = pipeline.plan_from(pipeline_inputs(
        facts=facts, profile=profile, profiles_dirs=profiles_dir, config=config, sets=set_values,
        workers=workers, threads=threads, precision=precision, port=port))
    _warn_and_note(planned.notes, planned.warnings)
    plan, selection = planned.plan, planned.selection
    if json_out:
        data = plan_json(plan, show_secrets=show_secrets)
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
    gpu_part = f", {c.gpu_resource}: {c.gpu_count}" if c.gpu_count else ""
    out.data(f"kubernetes pod: requests = limits {c.request_cpus:g} CPU, {format_size(c.request_memory_bytes)}"
             f"{gpu_part}", markup=False)
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
    print_sources(plan, show_secrets=show_secrets)


def render_command(
    facts: FactsOpt = None, profile: ProfileOpt = None, config: ConfigOpt = None,
    profiles_dir: ProfilesDirOpt = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to write into.", file_okay=False)] = Path("deploy"),
    formats: Annotated[str, typer.Option("--format", help=f"Comma-separated: {','.join(FORMATS)}.")] = ",".join(FORMATS),
    public: Annotated[bool, typer.Option("--public", help="Publish on every interface, not only 127.0.0.1.")] = False,
    network: Annotated[str, typer.Option("--network", help="bridge (publish the port) or host.")] = "bridge",
    port: PortOpt = None,
    python: Annotated[str | None, typer.Option(
        "--python", help="Interpreter for the systemd unit. Default: the target's install as its probe recorded it "
                         "(this machine's when no --facts), else /opt/tailor/venv/bin/python.")] = None,
    service_user: Annotated[str | None, typer.Option(
        "--service-user", help="User the systemd unit runs as, or 'dynamic' for a transient DynamicUser. Default: "
                               "the owner of the home directory the interpreter lives in, else dynamic.")] = None,
    workers: WorkersOpt = None, threads: ThreadsOpt = None, precision: PrecisionOpt = None,
    set_values: SetOpt = None,
) -> None:
    """Write docker-compose.yml + .env, k8s.yaml and a systemd unit for the plan, plus plan.json + facts.json."""
    chosen = parse_formats(formats)
    planned = pipeline.plan_from(pipeline_inputs(
        facts=facts, profile=profile, profiles_dirs=profiles_dir, config=config, sets=set_values,
        workers=workers, threads=threads, precision=precision, port=port))
    options = pipeline.render_options(planned.facts, public=public, network=network, python=python,
                                      service_user=service_user)
    _warn_and_note(planned.notes, planned.warnings)
    # plan.json + facts.json let `deploy up DIR` launch this directory and step it down after an OOM kill.
    for path in pipeline.write_deployment(out_dir, planned, chosen, options):
        out.data(str(path), markup=False)


def env_command(
    json_out: JsonOpt = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="The table as Markdown (the README's copy).")] = False,
) -> None:
    """Every runtime variable from the knob table: name, type, unit, default, range, config key, description."""
    rows = knob_rows()
    if json_out:
        out.data_json(rows)
        return
    if markdown:
        out.data(knob_table_markdown(), markup=False)
        return
    table = Table(title="Runtime variables (knob table: runtime/settings.py)")
    for column in ("name", "type", "unit", "default", "allowed", "config key", "description"):
        table.add_column(column)
    for row in rows:
        secret = " (secret)" if row["secret"] else ""
        table.add_row(row["name"], row["type"], row["unit"], row["default"] or '""', escape(row["allowed"]),
                      f"settings.{row['knob']}" if row["knob"] else f"env.{row['name']}",
                      escape(row["description"] + secret))
    out.table(table)


COMMANDS: dict[str, Callable[..., None]] = {"profiles": profiles_command, "plan": plan_command, "render": render_command, "env": env_command}
"""Command name -> function; cli/app.py registers them."""
