"""`deploy fleet wheelhouse|probe|plan|up|status|down|render`: thin commands over Ansible and the planner.

Ansible (driven through ansible-runner) connects, parallelises, batches and stops rollouts; the
tailor.fleet collection in fleet/ansible runs Tailor's own probe/plan/render/launch on each
host. These commands build the wheelhouse archive, start a playbook, show progress while it
runs, and print one table of the fleet. A host that fails never stops the others. Every host is
judged as strictly as its own `deploy status` (orchestrator.fleet.report): one that failed, was
not reached or is not as the command wants it is listed by name with its cause, fix and log
file, and the exit code is then 1.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from orchestrator.cli import output as out
from orchestrator.cli.options import JsonOpt, ProfilesDirOpt
from orchestrator.errors import UsageError
from orchestrator.fleet import ansible_run
from orchestrator.fleet.facts_dir import (
    CONFIG_SUFFIX,
    HostPlan,
    facts_files,
    plan_fleet,
    read_probe_summary,
    recorded_inventory,
    safe_host_name,
    write_host_facts,
    write_probe_summary,
)
from orchestrator.fleet.reasons import one_line
from orchestrator.fleet.report import HostReport, judge_run, write_logs
from orchestrator.plan.user_config import check_value
from orchestrator.render.renderer import pod_shape
from orchestrator.select.profiles import load_profiles
from orchestrator.units import format_size

fleet_app = typer.Typer(
    name="fleet",
    help="Many hosts: probe, plan, roll out, check and stop Tailor through Ansible; Kubernetes manifests per hardware class.",
    no_args_is_help=True,
)

InventoryOpt = Annotated[Path, typer.Option("-i", "--inventory", help="Ansible inventory (file or directory).")]
FleetDirOpt = Annotated[Path, typer.Option(
    "--fleet-dir", help="Controller-side working directory: facts/ of every host and the wheelhouse archive.",
    file_okay=False)]
FactsDirOpt = Annotated[Path | None, typer.Option(
    "--facts-dir", help="Facts directory to plan from (default: <fleet dir>/facts, filled by `deploy fleet probe`).",
    file_okay=False)]
LimitOpt = Annotated[str | None, typer.Option("--limit", help="Only these hosts (an Ansible host pattern, e.g. 'web1,web2' or 'tts:!edge').")]
WheelhouseOpt = Annotated[Path | None, typer.Option(
    "--wheelhouse", help="Directory of dependency wheels for the hosts' Python (offline); default: pip download them.",
    file_okay=False)]
PythonVersionOpt = Annotated[str, typer.Option("--python-version", help="Python of the hosts, for downloaded wheels.")]
ModelOpt = Annotated[str | None, typer.Option(
    "--model", help="Model family for every host (default: each host's tailor_model, else piper); "
                    "`deploy models` lists them.")]
PlanInventoryOpt = Annotated[Path | None, typer.Option(
    "-i", "--inventory",
    help="Plan with this inventory's current variables (tailor_profile, tailor_settings, ...); "
         "default: the inventory the last `deploy fleet probe` ran with.")]
DEFAULT_FLEET_DIR = Path(".tailor-fleet")
_SERIAL = re.compile(r"^([1-9][0-9]*%?|100%)$")


def register(app: typer.Typer) -> None:
    """Add `deploy fleet ...` to the app."""
    app.add_typer(fleet_app, name="fleet")


def _progress(line: str) -> None:
    out.info(line)


def _archive(fleet_dir: Path, wheelhouse: Path | None, python_version: str) -> Path:
    from orchestrator.fleet.wheelhouse import build_archive

    return build_archive(fleet_dir / "wheelhouse.tar", wheelhouse=wheelhouse, python_version=python_version,
                         log=out.info)


def _install_vars(fleet_dir: Path, wheelhouse: Path | None, python_version: str) -> dict[str, Any]:
    from orchestrator import __version__

    archive = _archive(fleet_dir, wheelhouse, python_version)
    return {"tailor_wheelhouse_archive": str(archive.resolve()), "tailor_version": __version__}


def _report_failures(result: ansible_run.RunResult) -> None:
    """Exit 1 (FleetError) when a host failed or was not reached (probe: no status to judge)."""
    failed = result.failed()
    if failed:
        names = ",".join(h.host for h in failed)
        raise ansible_run.FleetError(
            f"{len(failed)} of {len(result.hosts)} host(s) did not succeed: "
            + ", ".join(f"{h.host} ({h.state})" for h in failed),
            f"the reasons are in the table above; after fixing them, re-run with --limit '{names}'")


def _finish(result: ansible_run.RunResult, fleet_dir: Path, json_out: bool) -> None:
    """Judge every host, write the logs of those that are not ok, show the table, exit 1 if any is not ok."""
    reports = write_logs(result, judge_run(result), fleet_dir)
    _show_status(result, reports, json_out)
    bad = [r for r in reports if not r.ok]
    if bad:
        names = ",".join(r.host for r in bad)
        raise ansible_run.FleetError(
            f"{len(bad)} of {len(reports)} host(s) are not as `deploy fleet {result.playbook}` wants them: "
            + ", ".join(f"{r.host} ({r.summary()})" for r in bad),
            "each host's cause, fix and log file are listed above; after fixing them, "
            f"re-run with --limit '{names}'")


@fleet_app.command("wheelhouse")
def wheelhouse_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to fill with wheels (created if missing).",
                                          file_okay=False)],
    python_version: PythonVersionOpt = "3.11",
    architecture: Annotated[str | None, typer.Option(
        "--architecture", help="The hosts' machine (x86_64, aarch64); default: this machine's.")] = None,
) -> None:
    """Fill a directory with every wheel the hosts need: Tailor's own (built from this installation)
    and its runtime's dependencies for the hosts' Python and architecture (pip download). Run it on
    a machine that reaches a package index; `deploy fleet probe|up --wheelhouse DIR` then need none."""
    from dataclasses import replace

    from orchestrator.launch.image import FLAVORS, prepare_wheelhouse

    if architecture is not None and architecture not in ("x86_64", "aarch64"):
        raise UsageError(f"--architecture {architecture!r} is not x86_64 or aarch64", "for example --architecture aarch64")
    flavor = replace(FLAVORS["cpu"], architecture=architecture) if architecture else FLAVORS["cpu"]
    names = prepare_wheelhouse(out_dir, flavor, python_version=python_version, wheelhouse=None, log=out.info)
    out.info(f"{len(names)} wheels in {out_dir} (Python {python_version}); "
             f"use them with: deploy fleet probe -i INVENTORY --wheelhouse {out_dir}")


@fleet_app.command("probe")
def probe(inventory: InventoryOpt, fleet_dir: FleetDirOpt = DEFAULT_FLEET_DIR, limit: LimitOpt = None,
          wheelhouse: WheelhouseOpt = None, python_version: PythonVersionOpt = "3.11",
          json_out: JsonOpt = False) -> None:
    """Install Tailor on every host (air-gapped, from the wheelhouse) and collect each host's facts."""
    extravars = _install_vars(fleet_dir, wheelhouse, python_version)
    result = ansible_run.run_playbook("probe", inventory, extravars=extravars, limit=limit, progress=_progress)
    facts_dir = fleet_dir / "facts"
    # A --limit run updates its hosts and keeps what earlier runs learnt about the others.
    summary: dict[str, dict[str, str]] = read_probe_summary(facts_dir) if facts_dir.is_dir() else {}
    for name, host in result.hosts.items():
        state, reason = host.state, host.reason
        if host.state == "ok" and host.tailor is not None:
            write_host_facts(facts_dir, name, host.tailor, host.tailor.get("config_text"))
        elif host.state == "ok":
            state, reason = "failed", "the probe returned no facts"
        if state != "ok":  # stale facts from an earlier probe must not be planned as if current
            (facts_dir / f"{safe_host_name(name)}.json").unlink(missing_ok=True)
        summary[name] = {"state": state, "reason": reason}
    write_probe_summary(facts_dir, summary, inventory)
    out.info(f"facts of {sum(1 for n in result.hosts if summary[n]['state'] == 'ok')} host(s) in {facts_dir}")
    _show_plan(plan_fleet(facts_dir, load_profiles(())), json_out)
    _report_failures(result)


def _model_settings(model: str | None) -> dict[str, str]:
    """``--model`` as a command-line setting, checked once for the whole fleet (exit 2 with a suggestion)."""
    if model is None:
        return {}
    return {"model": check_value("TAILOR_MODEL", model, "command line (model)")}
@contextmanager
def _current_configs(inventory: Path | None, directory: Path) -> Iterator[dict[str, Path]]:
    """Each host's Tailor config from the inventory's variables as they are now (templated on the
    controller by the role's config action; no host is contacted), as files to plan with.

    ``inventory`` None: the inventory the last probe into ``directory`` ran with, if recorded;
    without one (a directory of recorded facts) the configs recorded beside the facts are used.
    """
    chosen = inventory if inventory is not None else recorded_inventory(directory)
    if chosen is None:
        yield {}
        return
    if inventory is None and not chosen.exists():
        out.warn(f"the inventory of the last probe ({chosen}) is gone: planning with the variables "
                 "recorded by that probe (pass -i INVENTORY to use another)")
        yield {}
        return
    result = ansible_run.run_playbook("config", chosen, progress=lambda _m: None)
    with tempfile.TemporaryDirectory(prefix="tailor-fleet-config-") as tmp:
        configs: dict[str, Path] = {}
        for name, host in result.hosts.items():
            if host.config is not None:
                path = Path(tmp) / f"{safe_host_name(name)}{CONFIG_SUFFIX}"
                path.write_text(yaml.safe_dump(host.config, sort_keys=True), encoding="utf-8")
                configs[name] = path
            elif host.state != "ok":
                out.warn(f"{name}: its inventory variables give no config ({host.reason}); planning with "
                         "those recorded by the last probe")
        out.info(f"planning with the current variables of {chosen} ({len(configs)} host(s))")
        yield configs


@fleet_app.command("plan")
def plan(fleet_dir: FleetDirOpt = DEFAULT_FLEET_DIR, facts_dir: FactsDirOpt = None,
         inventory: PlanInventoryOpt = None, profiles_dir: ProfilesDirOpt = None, model: ModelOpt = None,
         json_out: JsonOpt = False) -> None:
    """Plan every host from its collected facts (same planner as `deploy plan --facts`) and the
    inventory's current variables; one table."""
    settings = _model_settings(model)
    profiles = load_profiles(tuple(profiles_dir or ()))
    directory = facts_dir or fleet_dir / "facts"
    if not facts_files(directory) and not read_probe_summary(directory):
        raise UsageError(f"no facts files in {directory}", "collect them with `deploy fleet probe -i INVENTORY`")
    with _current_configs(inventory, directory) as configs:
        _show_plan(plan_fleet(directory, profiles, configs=configs, settings=settings), json_out)


def _show_plan(rows: Iterable[HostPlan], json_out: bool) -> int:
    """Print the fleet table (or JSON); consumes ``rows`` one at a time, keeping only text, so
    memory stays flat however many hosts there are. Returns the number of hosts."""
    if json_out:
        light = [r.row() for r in rows]
        out.data_json({"hosts": light})
        return len(light)
    table = Table()
    table.add_column("host", no_wrap=True)
    for column in ("CPUs", "RAM", "GPUs", "model", "profile", "engine", "precision", "workers x threads",
                   "concurrency", "notes"):
        table.add_column(column)
    notes: list[str] = []
    count = 0
    for r in rows:
        count += 1
        f, p = r.facts, r.plan
        gpus = ", ".join(g.name for g in f.gpus) if f is not None and f.gpus else "-"
        if f is not None and f.jetson is not None:
            gpus = f.jetson.board_model
        if p is not None:
            note = f"{len(p.warnings)} warning(s)" if p.warnings else ""
            notes += [f"{r.host}: {w}" for w in p.warnings]
        else:
            note = f"[red]{r.state}[/red]"
            notes.append(f"{r.host}: {r.state}: {r.reason}")
        table.add_row(r.host,
                      str(f.cpu.effective_cpus) if f else "-",
                      format_size(f.memory.effective_total_bytes) if f else "-",
                      escape(gpus), p.model if p else "-", p.profile if p else "-",
                      f"{p.engine}/{p.device}" if p else "-",
                      p.precision if p else "-", f"{p.workers}x{p.threads}" if p else "-",
                      str(p.max_concurrency) if p else "-", note)
    table.title = f"Fleet plan ({count} hosts)"
    out.table(table)
    for line in notes:
        out.warn(line)
    return count


@fleet_app.command("up")
def up(inventory: InventoryOpt, fleet_dir: FleetDirOpt = DEFAULT_FLEET_DIR, limit: LimitOpt = None,
       serial: Annotated[str, typer.Option("--serial", help="Hosts per batch: N or P% (rolling update).")] = "100%",
       max_fail: Annotated[int, typer.Option(
           "--max-fail", min=0, max=100,
           help="Stop the rollout once more than this percent of a batch failed (default 100: never).")] = 100,
       backend: Annotated[str | None, typer.Option(
           "--backend", help="process or docker for every host (default: the inventory's tailor_backend, else process).")] = None,
       wheelhouse: WheelhouseOpt = None, python_version: PythonVersionOpt = "3.11", json_out: JsonOpt = False) -> None:
    """Install, render with each host's own facts and launch, a batch at a time; roll back hosts that fail."""
    if not _SERIAL.match(serial) or (serial.endswith("%") and int(serial[:-1]) > 100):
        raise UsageError(f"--serial {serial!r} is not a host count or a percentage", "for example --serial 2 or --serial 25%")
    if backend is not None and backend not in ("process", "docker"):
        raise UsageError(f"--backend {backend!r} is not process or docker", "use --backend process or --backend docker")
    extravars = _install_vars(fleet_dir, wheelhouse, python_version)
    extravars.update({"tailor_serial": serial, "tailor_max_fail_percentage": max_fail})
    if backend is not None:
        extravars["tailor_backend"] = backend
    result = ansible_run.run_playbook("up", inventory, extravars=extravars, limit=limit, progress=_progress)
    _finish(result, fleet_dir, json_out)


@fleet_app.command("status")
def status(inventory: InventoryOpt, fleet_dir: FleetDirOpt = DEFAULT_FLEET_DIR, limit: LimitOpt = None,
           json_out: JsonOpt = False) -> None:
    """Each host's own `deploy status` (state, ready from inside the host, restarts, last exit) and
    where it contradicts what answers; exits 1 unless every host is RUNNING and ready."""
    result = ansible_run.run_playbook("status", inventory, limit=limit, progress=_progress)
    _finish(result, fleet_dir, json_out)


@fleet_app.command("down")
def down(inventory: InventoryOpt, fleet_dir: FleetDirOpt = DEFAULT_FLEET_DIR, limit: LimitOpt = None,
         json_out: JsonOpt = False) -> None:
    """Stop the runtime and its supervisor on every host (a host with nothing installed is fine)."""
    result = ansible_run.run_playbook("down", inventory, limit=limit, progress=_progress)
    _finish(result, fleet_dir, json_out)


def _show_status(result: ansible_run.RunResult, reports: list[HostReport], json_out: bool) -> None:
    """The table (or JSON) on stdout; each host's reason, rollback and log lines on stderr, in both cases."""
    if json_out:
        out.data_json({"playbook": result.playbook, "summary": result.summary, "hosts": [r.row() for r in reports]})
        _host_lines(reports)
        return
    counts: dict[str, int] = {}
    for r in reports:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    table = Table(title=f"Fleet {result.playbook}: {len(reports)} hosts, "
                        + ", ".join(f"{n} {outcome}" for outcome, n in counts.items()))
    for column in ("host", "outcome", "state", "ready", "profile", "restarts", "last exit", "changes / cause"):
        table.add_column(column, no_wrap=column in ("host", "outcome", "state", "ready"))
    for r in reports:
        st = r.status
        outcome = r.outcome if r.ok else f"[red]{r.outcome}[/red]"
        state = str(st.get("state") or "-") + (" (STALE)" if st.get("stale") else "")
        ready = "-" if r.ready is None else ("yes" if r.ready else "no")
        table.add_row(escape(r.host), outcome, escape(state), ready, escape(str(st.get("profile") or "-")),
                      str(st["restarts"]) if st.get("restarts") is not None else "-",
                      escape(one_line(str(st.get("last_exit_reason") or "-"), 40)), escape(r.cell()))
    out.table(table)
    _host_lines(reports)


def _host_lines(reports: list[HostReport]) -> None:
    for r in reports:
        for line in r.lines():
            out.warn(line)


@fleet_app.command("render")
def render_k8s(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the manifests.", file_okay=False)],
    k8s: Annotated[bool, typer.Option("--k8s", help="Kubernetes: one Deployment per hardware class and a Service.")] = False,
    fleet_dir: FleetDirOpt = DEFAULT_FLEET_DIR, facts_dir: FactsDirOpt = None,
    inventory: PlanInventoryOpt = None, profiles_dir: ProfilesDirOpt = None, model: ModelOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Group the fleet's hosts into hardware classes (same plan) and write one Deployment per class.

    Plans from the collected facts and the inventory's current variables, like `deploy fleet plan`."""
    from orchestrator.fleet.k8s import fleet_manifests, group_classes
    from orchestrator.render.renderer import write_rendered

    if not k8s:
        raise UsageError("deploy fleet render needs a target format", "pass --k8s")
    settings = _model_settings(model)
    profiles = load_profiles(tuple(profiles_dir or ()))
    skipped: list[HostPlan] = []
    directory = facts_dir or fleet_dir / "facts"

    def planned(configs: dict[str, Path]) -> Any:
        for row in plan_fleet(directory, profiles, configs=configs, settings=settings):
            if row.plan is not None and row.facts is not None:
                yield row.host, row.plan, row.facts
            else:
                skipped.append(HostPlan(row.host, row.state, row.reason))

    with _current_configs(inventory, directory) as configs:
        classes = group_classes(planned(configs))
    if not classes:
        raise UsageError("no host of the fleet has a plan", "run `deploy fleet plan` to see why")
    files = fleet_manifests(classes)
    written = write_rendered(files, out_dir)
    summary: list[dict[str, Any]] = []
    for c in classes:
        pod = pod_shape(c.plan.container)
        summary.append({"class": c.key, "deployment": c.name, "hosts": sorted(c.hosts), "model": c.plan.model,
                        "profile": c.plan.profile,
                        "engine": c.plan.engine, "device": c.plan.device, "precision": c.plan.precision,
                        "workers": c.plan.workers, "threads": c.plan.threads,
                        "replicas": len(c.hosts) * pod.replicas, "pod_cpus": pod.cpus,
                        "pod_memory_bytes": pod.memory_bytes, "pod_gpus": pod.gpus})
    for row in skipped:
        out.warn(f"{row.host}: left out ({row.state}): {row.reason}")
    if json_out:
        out.data_json({"classes": summary, "files": [str(p) for p in written],
                       "skipped": [{"host": r.host, "state": r.state, "reason": r.reason} for r in skipped]})
        return
    table = Table(title=f"{len(classes)} hardware classes, {sum(len(c.hosts) for c in classes)} hosts")
    for column in ("deployment", "hosts", "pods", "profile", "engine/device", "workersxthreads",
                   "cpu/pod", "memory/pod", "GPUs/pod"):
        table.add_column(column)
    for s in summary:
        table.add_row(s["deployment"], str(len(s["hosts"])), str(s["replicas"]), s["profile"],
                      f"{s['engine']}/{s['device']}", f"{s['workers']}x{s['threads']}", f"{s['pod_cpus']:g}",
                      format_size(s["pod_memory_bytes"]), str(s["pod_gpus"]))
    out.table(table)
    out.info(f"wrote {len(written)} files to {out_dir} (apply with: kubectl apply -f {out_dir})")

