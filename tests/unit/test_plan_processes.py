"""The plan's server-process count (TAILOR_PROCESSES): the decision table with its reasons, the
budget per process, the per-process RSS limit, the OOM step-down, and the renders carrying it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orchestrator.plan.budget import MemoryBudget, Pools, build_budget
from orchestrator.plan.planner import Plan, make_plan, step_down
from orchestrator.plan.processes import decide_processes, scale_budget
from orchestrator.probe.facts import HostFacts
from orchestrator.render.renderer import RenderOptions, parse_env_text, render
from orchestrator.select.profiles import load_profiles
from orchestrator.select.selection import select_profile
from runtime.families.catalog import family
from runtime.families.spec import Placement

FACTS = Path(__file__).resolve().parents[1] / "fixtures" / "facts"
GIB = 1024**3


def host(name: str) -> HostFacts:
    return HostFacts.from_json_file(FACTS / f"{name}.json")


def plan_on(facts: HostFacts, overrides: dict[str, str] | None = None) -> Plan:
    return make_plan(facts, select_profile(facts, load_profiles()), overrides, environ={})


def reason(plan: Plan) -> str:
    return next(p.reason for p in plan.provenance if p.name == "TAILOR_PROCESSES")


def cpu_budget(workers: int, ram_gib: int) -> MemoryBudget:
    pools = Pools(ram_gib * GIB, GIB, 0, 0, shared=False)
    return build_budget(pools, family("piper").footprint(Placement("onnx", "cpu", "fp32")), workers, workers, 64 * 1024**2, on_gpu=False)


@pytest.mark.parametrize(("cpus", "workers"), [(2, 2), (16, 8)])
def test_cpu_hosts_keep_one_process_and_say_from_how_many_cpus_two_pay(cpus: int, workers: int) -> None:
    decided = decide_processes(on_gpu=False, devices=0, usable_cpus=cpus, budget=cpu_budget(workers, 16))
    assert decided.processes == 1
    assert f"{cpus} usable CPU(s) synthesize about {cpus * 12} audio-s/s" in decided.reason
    assert "below one process's ceiling of 890" in decided.reason and "75 CPUs" in decided.reason


def test_cpu_plan_from_facts_is_one_process_with_its_reason_in_env_and_explain() -> None:
    plan = plan_on(host("cpu-4core-16gb"))
    assert plan.processes == 1 and plan.env["TAILOR_PROCESSES"] == "1"
    assert reason(plan).startswith("processes=1: 3 usable CPU(s)") or reason(plan).startswith("processes=1: 4 usable")
    assert any(r.startswith("processes=1:") for r in plan.reasons)
    assert plan.to_dict()["processes"] == 1


def test_one_big_gpu_with_many_cpus_runs_three_processes_bound_by_the_engine_rate() -> None:
    plan = plan_on(host("h200-recorded"))
    assert plan.device == "cuda" and plan.processes == 3 and plan.env["TAILOR_PROCESSES"] == "3"
    text = reason(plan)
    assert "processes=3 per GPU" in text and "ceil(1 x 2430 engine audio-s/s / 890 per-process ceiling) = 3" in text
    assert "limited by the engine's rate" in text
    # Every budget row is per process: three CUDA contexts on the card.
    context = next(r for r in plan.memory_budget.rows if r.item == "CUDA context")
    assert context.bytes == 3 * 500 * 1024**2 and "x 3 server processes" in context.detail
    # The RSS soft limit is each process's share of the container's limit.
    assert int(plan.env["TAILOR_RSS_SOFT_LIMIT_BYTES"]) == plan.container.memory_limit_bytes * 9 // 10 // 3


def test_a_big_gpu_whose_vram_holds_one_copy_runs_one_process() -> None:
    # An 80 GiB card with 64 CPUs, a plan whose batch memory fills most of the card: one copy fits.
    pools = Pools(256 * GIB, 8 * GIB, 80 * GIB, 8 * GIB, shared=False)
    fp = family("piper").footprint(Placement("torch", "cuda", "bf16"))
    budget = build_budget(pools, fp, 2, 640, 0, on_gpu=True)  # 640 items x 96 MiB = 60 GiB
    decided = decide_processes(on_gpu=True, devices=1, usable_cpus=64, budget=budget, card_bytes=80 * GIB)
    assert decided.processes == 1, decided.reason
    assert "VRAM holds 1 process copies" in decided.reason and "limited by VRAM" in decided.reason
    roomy = build_budget(pools, fp, 2, 64, 0, on_gpu=True)
    assert decide_processes(on_gpu=True, devices=1, usable_cpus=64, budget=roomy, card_bytes=80 * GIB).processes == 3


def test_a_small_card_keeps_one_process_and_says_nothing_was_measured_there() -> None:
    plan = plan_on(host("rtx3060-16gb"))
    assert plan.processes == 1
    assert "measured on an H200" in reason(plan) and "below 40 GiB" in reason(plan)


def test_eight_gpus_share_the_processes_within_each_cards_vram() -> None:
    plan = plan_on(host("h100x8-2tb"))
    assert plan.processes == 10 and "each process uses 8 GPUs" in reason(plan) and "limited by VRAM" in reason(plan)
    assert plan.memory_budget.fits


def test_the_user_sets_the_count_and_the_plan_says_what_it_would_run() -> None:
    plan = plan_on(host("cpu-4core-16gb"), {"processes": "2"})
    assert plan.processes == 2 and plan.env["TAILOR_PROCESSES"] == "2"
    source = next(p for p in plan.provenance if p.name == "TAILOR_PROCESSES").source
    assert source == "cli"
    assert any(r.startswith("processes=2: set on the command line (the plan would run 1)") for r in plan.reasons)


def test_oom_step_down_halves_the_processes_first_and_keeps_the_count_afterwards() -> None:
    facts = host("h200-recorded")
    plan = plan_on(facts)
    stepped = step_down(plan, facts, load_profiles())
    assert stepped is not None and stepped.processes == 1
    assert stepped.steps[-1] == "OOM step-down: server processes 3 -> 1"
    assert stepped.max_batch_size == plan.max_batch_size and stepped.workers == plan.workers
    again = step_down(stepped, facts, load_profiles())
    assert again is not None and again.processes == 1 and again.max_batch_size == plan.max_batch_size // 2
    assert Plan.from_dict(again.to_dict()) == again


def test_scale_budget_multiplies_rows_and_totals() -> None:
    budget = cpu_budget(2, 16)
    doubled = scale_budget(budget, 2)
    assert [r.bytes for r in doubled.rows] == [2 * r.bytes for r in budget.rows]
    assert doubled.total("ram").planned_bytes == 2 * budget.total("ram").planned_bytes
    assert scale_budget(budget, 1) is budget


def test_renders_carry_the_count_and_its_reason_and_run_the_same_command() -> None:
    plan = plan_on(host("h200-recorded"))
    files = render(plan, options=RenderOptions(python="/opt/tailor/venv/bin/python"))
    env = parse_env_text(files[".env"])
    assert env["TAILOR_PROCESSES"] == "3"
    assert "# derived: processes=3 per GPU" in files[".env"]  # the reason is written beside it
    assert parse_env_text(files["tailor-runtime.env"])["TAILOR_PROCESSES"] == "3"
    docs = [d for d in yaml.safe_load_all(files["k8s.yaml"]) if d]
    containers = [c for d in docs if d.get("kind") in ("Deployment", "DaemonSet", "StatefulSet")
                  for c in d["spec"]["template"]["spec"]["containers"]]
    assert containers and all({"name": "TAILOR_PROCESSES", "value": "3"} in c["env"] for c in containers)
    one = render(plan_on(host("h200-recorded"), {"processes": "1"}),
                 options=RenderOptions(python="/opt/tailor/venv/bin/python"))
    assert one["tailor-runtime.service"].split("ExecStart=")[1].splitlines()[0] == \
        files["tailor-runtime.service"].split("ExecStart=")[1].splitlines()[0]


def test_a_pod_per_gpu_runs_its_share_of_the_processes_and_requests_their_memory() -> None:
    plan = plan_on(host("h100x8-2tb"))
    c = plan.container
    assert c.k8s_replicas == 8 and plan.processes == 10
    docs = [d for d in yaml.safe_load_all(render(plan, ["k8s"])["k8s.yaml"]) if d]
    env = {e["name"]: e["value"] for e in docs[0]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TAILOR_PROCESSES"] == "2"  # ceil(10 / 8 pods)
    one = plan_on(host("h100x8-2tb"), {"processes": "1"}).container.k8s_request_memory_bytes
    assert one < c.k8s_request_memory_bytes < 3 * one  # two processes' memory per pod, not ten
