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
from orchestrator.cli.models import model_rows
from orchestrator.cli.options import (
    ConfigOpt,
    ExplainOpt,
    FactsOpt,
    JsonOpt,
    ModelOpt,
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
from orchestrator.model import to_jsonable
from orchestrator.render.renderer import FORMATS, parse_formats
from orchestrator.select.fit import ModelFit
from orchestrator.select.selection import (
    DOES_NOT_FIT,
    FITS,
    FITS_WITH_CHANGE,
    STATUS_LABELS,
)
from orchestrator.units import format_size
from runtime.families.catalog import DEFAULT_FAMILY


def _warn_and_note(notes: tuple[str, ...], warnings: tuple[str, ...] = ()) -> None:
    for sentence in notes:
        out.info(sentence)
    for warning in warnings:
        out.warn(warning)


def profiles_command(facts: FactsOpt = None, profiles_dir: ProfilesDirOpt = None, config: ConfigOpt = None,
                     model: ModelOpt = None, json_out: JsonOpt = False) -> None:
    """Every profile and whether it fits this machine and model: fits / fits with a change / does not fit."""
    selected = pipeline.select_from(pipeline_inputs(facts=facts, profiles_dirs=profiles_dir, config=config,
                                                    model=model))
    _warn_and_note(selected.notes)
    host, profiles = selected.facts, selected.profiles
    judged = selected.judge()  # the facts completed and the GPUs chosen once, as the plan would
    verdicts = {v.profile: v for v in judged.verdicts}
    try:
        chosen: str | None = selected.select(judged).chosen.name
    except PlanError as exc:
        chosen = None
        out.warn(exc.message)
    if json_out:
        out.data_json({
            "chosen": chosen,
            "model": selected.model.family.name,
            "overrides": list(profiles.overrides),
            "profiles": [{"name": p.name, "priority": p.priority, "description": p.description,
                          "source": p.source, "engine": p.engine, "device": p.device,
                          "status": verdicts[p.name].status, "failures": list(verdicts[p.name].failures),
                          "changes": list(verdicts[p.name].changes),
                          "model_fit": to_jsonable(verdicts[p.name].fit)} for p in profiles.profiles],
        })
        return
    table = Table(title=f"Profiles for {host.hostname or 'this machine'}, model {selected.model.family.name}")
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
    profiles_dir: ProfilesDirOpt = None, model: ModelOpt = None, json_out: JsonOpt = False,
    explain: ExplainOpt = False, workers: WorkersOpt = None, threads: ThreadsOpt = None,
    precision: PrecisionOpt = None, port: PortOpt = None, set_values: SetOpt = None,
    show_secrets: ShowSecretsOpt = False,
) -> None:
    """The plan for this machine (or --facts) and model family: engine, device, precision, reductions,
    workers x threads, memory budget."""
    planned = pipeline.plan_from(pipeline_inputs(
        facts=facts, profile=profile, profiles_dirs=profiles_dir, config=config, sets=set_values,
        workers=workers, threads=threads, precision=precision, port=port, model=model))
    _warn_and_note(planned.notes, planned.warnings)
    plan, selection = planned.plan, planned.selection
    if json_out:
        data = plan_json(plan, show_secrets=show_secrets)
        if explain:
            data["selection"] = {"chosen": selection.chosen.name, "forced": selection.forced,
                                 "reasons": list(selection.reasons)}
        out.data_json(data)
        return
    out.data(f"[bold]model[/bold] {plan.model}   [bold]profile[/bold] {plan.profile}   engine {plan.engine} on "
             f"{plan.device}, {plan.precision}")
    fit = plan.model_fit
    if fit is not None and (fit.steps or fit.dropped or fit.offloaded or fit.mmap):
        out.data(f"model placement: {escape(fit.placement.describe())} (reductions: "
                 + escape(", ".join(fit.reductions) or "none, set by you") + ")")
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
    if fit is not None:
        _print_fit(plan.model, fit)
    budget = Table(title="Memory budget")
    for column in ("item", "pool", "size", "detail"):
        budget.add_column(column)
    for row in plan.memory_budget.rows:
        budget.add_row(row.item, row.pool, format_size(row.bytes), row.detail)
    for total in plan.memory_budget.totals:
        budget.add_row(f"[bold]{total.pool} total[/bold]", total.pool,
                       f"{format_size(total.planned_bytes)} of {format_size(total.capacity_bytes)}",
                       f"headroom {format_size(total.headroom_bytes)}, free {format_size(total.free_bytes)}")
    peak = plan.memory_budget.load_peak
    if peak is not None:
        budget.add_row(f"[bold]{peak.pool} at load peak[/bold]", peak.pool,
                       f"{format_size(peak.planned_bytes)} of {format_size(peak.capacity_bytes)}",
                       f"while the largest checkpoint loads; free {format_size(peak.free_bytes)}")
    out.table(budget)
    out.data("[bold]Derived numbers[/bold]")
    for reason in plan.reasons:
        out.data(f"  {reason}", markup=False)
    print_sources(plan, show_secrets=show_secrets)


def render_command(
    facts: FactsOpt = None, profile: ProfileOpt = None, config: ConfigOpt = None,
    profiles_dir: ProfilesDirOpt = None, model: ModelOpt = None,
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
        workers=workers, threads=threads, precision=precision, port=port, model=model))
    options = pipeline.render_options(planned.facts, public=public, network=network, python=python,
                                      service_user=service_user)
    _warn_and_note(planned.notes, planned.warnings)
    # plan.json + facts.json let `deploy up DIR` launch this directory and step it down after an OOM kill.
    for path in pipeline.write_deployment(out_dir, planned, chosen, options):
        out.data(str(path), markup=False)


def _print_fit(model: str, fit: ModelFit) -> None:
    """--explain: the model family's fit, step by step with the numbers."""
    table = Table(title=f"Model {model}: {fit.placement.describe()}")
    for column in ("step", "what", "numbers"):
        table.add_column(column)
    table.add_row("start", escape(" ".join(fit.notes)) or "the profile's device, engine and precision",
                  "needs after the reductions below: " + escape(
                      f"RAM {format_size(fit.need_ram_bytes)} (load peak {format_size(fit.need_ram_load_peak_bytes)})"
                      f" of {format_size(fit.usable_ram_bytes)} usable"
                      + (f", VRAM {format_size(fit.need_vram_bytes)} of {format_size(fit.usable_vram_bytes)} usable"
                         if fit.usable_vram_bytes else "")))
    for i, step in enumerate(fit.steps, 1):
        table.add_row(str(i), escape(f"{step.reduction} {step.change}"), escape(step.detail))
    out.table(table)


def models_command(json_out: JsonOpt = False) -> None:
    """Every model family: parameters, footprint per device and precision, streaming, licence, where the weights are."""
    rows = model_rows()
    if json_out:
        out.data_json({"default": DEFAULT_FAMILY, "families": rows})
        return
    table = Table(title="Model families (runtime/families/catalog.py); one worker, one request in flight")
    table.add_column("family", no_wrap=True)
    for column in ("params", "device/precision", "weights", "RAM loaded", "RAM peak", "RAM serving", "VRAM"):
        table.add_column(column)
    for row in rows:
        first = True
        for fp in row["footprints"]:
            name = f"[bold]{row['name']}[/bold]" + (" (default)" if row["name"] == DEFAULT_FAMILY else "")
            table.add_row(name if first else "", f"{row['params'] / 1e6:,.1f} M" if first else "",
                          f"{fp['device']}/{fp['precision']} ({fp['engine']})", format_size(fp["weights_bytes"]),
                          format_size(fp["ram_after_load_bytes"]), format_size(fp["ram_load_peak_bytes"]),
                          format_size(fp["ram_serving_bytes"]),
                          format_size(fp["vram_peak_bytes"]) if fp["vram_peak_bytes"] else "-")
            first = False
    out.table(table)
    for row in rows:
        licence = row["licence"] + ("" if row["commercial_use"] else "  [red]NOT for commercial use[/red]")
        out.data(f"\n[bold]{row['name']}[/bold]: {escape(row['description'])}")
        out.data(f"  streaming {row['streaming']}, batching {'yes' if row['batches'] else 'no'}, "
                 f"concurrent requests per instance {'yes' if row['concurrent_safe'] else 'no (one at a time)'}, "
                 f"{row['sample_rate_hz']} Hz" + (", its own engine process" if row["separate_process"] else ""))
        out.data("  components: " + escape(", ".join(
            f"{c['name']} {c['params'] / 1e6:,.1f} M" + (" (optional)" if c["optional"] else "")
            + (" (offloadable)" if c["offloadable"] else "") for c in row["components"])))
        out.data(f"  licence: {licence}")
        out.data(f"  install: {escape(row['install'])}", markup=False)
        out.data(f"  weights: {escape(row['weights'])}", markup=False)
        out.data(f"  smallest machine: {escape(row['smallest_machine'])}", markup=False)


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


COMMANDS: dict[str, Callable[..., None]] = {"profiles": profiles_command, "plan": plan_command,
                                             "render": render_command, "env": env_command, "models": models_command}
"""Command name -> function; cli/app.py registers them."""
