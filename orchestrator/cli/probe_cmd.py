"""`deploy probe`: what this machine (or a recorded tree) offers for speech inference."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli import output as out
from orchestrator.errors import UsageError

if TYPE_CHECKING:
    from rich.table import Table

    from orchestrator.probe.facts import HostFacts


def _gib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**30:.1f} GiB"


def facts_table(facts: HostFacts) -> Table:
    """The compact human view: one row per fact group."""
    from rich.markup import escape
    from rich.table import Table

    cpu, mem, box = facts.cpu, facts.memory, facts.container
    table = Table(title=f"Host {escape(facts.hostname or '(unnamed)')}", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("facts")
    quota = "none" if cpu.cgroup_quota_cpus is None else f"{cpu.cgroup_quota_cpus:g}"
    table.add_row("CPU", escape(
        f"{cpu.model_name} ({cpu.architecture}), {cpu.logical_cores} logical / {cpu.physical_cores} physical, "
        f"{cpu.numa_nodes} NUMA node(s)\n"
        f"use {cpu.effective_cpus} CPU(s), decided by {cpu.effective_cpus_source} "
        f"(affinity {cpu.allowed_cpus}, cpuset {cpu.cpuset_cpus or '-'}, quota {quota})\n"
        f"ISA: {' '.join(cpu.isa_flags) or '-'}"))
    table.add_row("Memory", escape(
        f"host {_gib(mem.total_bytes)} total, {_gib(mem.available_bytes)} available, swap {_gib(mem.swap_total_bytes)}\n"
        f"cgroup limit {_gib(mem.cgroup_limit_bytes)}, used {_gib(mem.cgroup_usage_bytes)}\n"
        f"use {_gib(mem.effective_total_bytes)} total, {_gib(mem.effective_available_bytes)} available "
        f"(decided by {mem.effective_source})"))
    if facts.gpus:
        gpu_lines = [
            (f"  #{g.index} MIG {g.mig_profile} {g.uuid}: {_gib(g.memory_total_bytes)} "
             f"({_gib(g.memory_free_bytes)} free)" if g.is_mig_instance else
             f"#{g.index} {g.name}: {_gib(g.memory_total_bytes)} ({_gib(g.memory_free_bytes)} free), "
             f"sm {g.compute_capability}, driver {g.driver_version}, CUDA {g.cuda_version}"
             + (f", MIG {g.mig_mode}" if g.mig_mode else ""))
            for g in facts.gpus
        ]
        table.add_row("GPUs", escape("\n".join(gpu_lines)))
    else:
        table.add_row("GPUs", escape(f"none ({facts.nvml.reason})"))
    if facts.jetson is not None:
        j = facts.jetson
        table.add_row("Jetson", escape(
            f"{j.board_model}, {j.soc}, L4T {j.l4t_release}, JetPack {j.jetpack_version or 'unknown'}, unified memory"))
    kind = f"yes ({box.container_kind or 'unknown kind'})" if box.in_container else "no"
    table.add_row("Container", escape(
        f"in container: {kind}, cgroup v{box.cgroup_version or '?'}\n"
        f"docker: {box.docker_reason}{', nvidia runtime' if box.nvidia_runtime else ''}\n"
        f"models dir: {box.models_dir} ({_gib(box.models_dir_free_bytes)} free)"))
    if facts.allocator_libraries:
        table.add_row("Allocators", escape("\n".join(facts.allocator_libraries)))
    if facts.notes:
        table.add_row("Notes", escape("\n".join(f"- {n}" for n in facts.notes)), style="yellow")
    return table


def probe_command(
    root: Annotated[Path, typer.Option(
        "--root", metavar="DIR", help="Probe a recorded tree (proc/, sys/, etc/) instead of this machine.",
    )] = Path("/"),
    as_json: Annotated[bool, typer.Option("--json", help="Print HostFacts as JSON on stdout.")] = False,
    no_docker: Annotated[bool, typer.Option("--no-docker", help="Do not ping the Docker daemon.")] = False,
) -> None:
    """Probe CPU, memory, GPUs, Jetson and container limits."""
    from orchestrator.probe.host import probe_host

    if not root.is_dir():
        raise UsageError(f"--root {root} is not a directory",
                         "pass a recorded tree (with proc/, sys/, etc/) or leave --root out to probe this machine")
    started = time.perf_counter()
    facts = probe_host(root=root, check_docker=not no_docker)
    elapsed_ms = (time.perf_counter() - started) * 1000
    if as_json:
        out.data_json(facts.to_dict())
        return
    out.table(facts_table(facts))
    out.info(f"probed in {elapsed_ms:.1f} ms")


COMMANDS: dict[str, Callable[..., None]] = {"probe": probe_command}
"""Command name -> function; cli/app.py registers them."""
