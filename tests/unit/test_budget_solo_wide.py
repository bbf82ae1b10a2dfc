"""The memory budget counts the solo-wide instance whenever the plan turns it on (issue 11 soak)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from orchestrator.plan.budget import MIB
from orchestrator.plan.planner import Plan, make_plan
from orchestrator.probe.facts import HostFacts
from orchestrator.select.profiles import load_profiles
from orchestrator.select.selection import select_profile
from runtime.families.catalog import family

FACTS = Path(__file__).resolve().parents[1] / "fixtures" / "facts"
GIB = 1024**3
_PIPER_CPU = family("piper").footprint(family("piper").default_placement("cpu"))
ONNX_SESSION_BYTES = _PIPER_CPU.weights_ram_per_worker_bytes
ONNX_PER_REQUEST_BYTES = _PIPER_CPU.per_request_ram_bytes


def plan_for(host: HostFacts) -> Plan:
    return make_plan(host, select_profile(host, load_profiles(), None), environ={})


def rows(plan: Plan) -> dict[str, int]:
    return {row.item: row.bytes for row in plan.memory_budget.rows}


def test_a_solo_wide_plan_budgets_one_more_session_and_its_arena() -> None:
    plan = plan_for(HostFacts.from_json_file(FACTS / "cpu-4core-16gb.json"))
    assert plan.env["TAILOR_SOLO_WIDE"] == "true" and plan.workers > 1
    budget = rows(plan)
    assert budget["solo-wide instance"] == ONNX_SESSION_BYTES + ONNX_PER_REQUEST_BYTES
    assert budget["model weights"] == plan.workers * ONNX_SESSION_BYTES
    ram = plan.memory_budget.total("ram")
    assert ram.planned_bytes == sum(budget.values())
    assert ram.planned_bytes >= (plan.workers + 1) * (ONNX_SESSION_BYTES + ONNX_PER_REQUEST_BYTES)


def test_no_solo_wide_row_when_memory_is_tight() -> None:
    host = HostFacts.from_json_file(FACTS / "cpu-4core-16gb.json")
    mem = dataclasses.replace(host.memory, total_bytes=int(1.6 * GIB), effective_total_bytes=int(1.6 * GIB))
    plan = plan_for(dataclasses.replace(host, memory=mem, cpu=dataclasses.replace(host.cpu, effective_cpus=16)))
    assert plan.env["TAILOR_SOLO_WIDE"] == "false"
    assert "solo-wide instance" not in rows(plan)
    assert plan.memory_budget.fits, f"{plan.memory_budget.total('ram').free_bytes / MIB:.0f} MiB free"
