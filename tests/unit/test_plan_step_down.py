"""step_down: after an OOM kill, lower batch, then workers, then move to a smaller profile."""

from __future__ import annotations

import itertools
from pathlib import Path

from orchestrator.plan.planner import Plan, make_plan, step_down
from orchestrator.probe.facts import HostFacts
from orchestrator.select.profiles import load_profiles
from orchestrator.select.selection import select_profile

FACTS = Path(__file__).resolve().parents[1] / "fixtures" / "facts"


def facts(name: str) -> HostFacts:
    return HostFacts.from_json_file(FACTS / f"{name}.json")


def chain(plan: Plan, host: HostFacts) -> list[Plan]:
    plans = [plan]
    while (nxt := step_down(plans[-1], host, load_profiles())) is not None:
        plans.append(nxt)
        assert len(plans) < 20
    return plans


def test_gpu_plan_steps_batch_then_workers_then_profile() -> None:
    host = facts("rtx3060-16gb")
    plans = chain(make_plan(host, select_profile(host, load_profiles()), environ={}), host)
    sizes = [(p.profile, p.workers, p.max_batch_size) for p in plans]
    assert sizes[:7] == [("gpu-16gb", 2, 16), ("gpu-16gb", 2, 8), ("gpu-16gb", 2, 4), ("gpu-16gb", 2, 2),
                         ("gpu-16gb", 2, 1), ("gpu-16gb", 1, 1), ("cpu-only", 8, 1)]
    assert sizes[-1] == ("cpu-only", 1, 1)
    for before, after in itertools.pairwise(plans):
        assert after.max_concurrency <= before.max_concurrency or after.profile != before.profile
        assert len(after.steps) == len(before.steps) + 1
        assert after.steps[-1].startswith("OOM step-down")
        assert after.reasons[-1] == after.steps[-1]
        assert after.workers * after.threads <= host.cpu.effective_cpus
    assert "moving to profile cpu-only" in plans[6].steps[-1]
    assert plans[1].memory_budget.total("vram").planned_bytes < plans[0].memory_budget.total("vram").planned_bytes
    batch = next(p for p in plans[1].provenance if p.name == "max_batch_size")
    assert (batch.source, batch.reason) == ("derived", plans[1].steps[-1])


def test_smallest_cpu_plan_has_nothing_below() -> None:
    host = facts("cpu-4core-16gb")
    plans = chain(make_plan(host, select_profile(host, load_profiles()), environ={}), host)
    assert [p.workers for p in plans] == [4, 2, 1]  # half the workers per OOM kill
    assert (plans[-1].workers, plans[-1].max_batch_size) == (1, 1)
    assert step_down(plans[-1], host, load_profiles()) is None


def test_user_settings_survive_a_profile_change() -> None:
    host = facts("t4-8gb-4cpu")
    plan = make_plan(host, select_profile(host, load_profiles()), {"port": "9000"},
                     {"TAILOR_LOG_LEVEL": "debug"})
    last = chain(plan, host)[-1]
    assert last.profile == "cpu-only"
    assert last.env["TAILOR_PORT"] == "9000" and last.env["TAILOR_LOG_LEVEL"] == "debug"
    sources = {p.name: p.source for p in last.provenance}
    assert sources["TAILOR_PORT"] == "cli" and sources["TAILOR_LOG_LEVEL"] == "env"


def test_step_down_plans_round_trip() -> None:
    host = facts("jetson-agx-orin-r36")
    plan = make_plan(host, select_profile(host, load_profiles()), environ={})
    stepped = step_down(plan, host, load_profiles())
    assert stepped is not None and stepped.max_batch_size == 2
    assert Plan.from_dict(stepped.to_dict()) == stepped
