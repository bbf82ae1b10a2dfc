"""make_plan over the reference machines: sane numbers, budget, precision, provenance."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from orchestrator.errors import PlanError, UsageError
from orchestrator.plan.planner import PLAN_VERSION, Plan, make_plan
from orchestrator.plan.user_config import parse_config
from orchestrator.probe.facts import HostFacts
from orchestrator.select.profiles import load_profiles
from orchestrator.select.selection import select_profile
from orchestrator.yaml_doc import parse_yaml_text
from runtime.settings import VARIABLES, Settings

FACTS = Path(__file__).resolve().parents[1] / "fixtures" / "facts"
GIB = 1024**3
MIB = 1024**2


def facts(name: str) -> HostFacts:
    return HostFacts.from_json_file(FACTS / f"{name}.json")


def plan_for(host: HostFacts, override: str | None = None, **kwargs) -> Plan:
    kwargs.setdefault("environ", {})
    return make_plan(host, select_profile(host, load_profiles(), override), **kwargs)


def source(plan: Plan, name: str) -> str:
    return next(p.source for p in plan.provenance if p.name == name)


REFERENCE = [
    # (facts, stands for, profile, engine, device, precision, workers, threads, max_concurrency)
    ("t4-8gb-4cpu", "4 vCPU / 8 GB / T4 16 GB", "t4-8gb", "torch", "cuda", "fp16", 1, 2, 8),
    ("rtx3060-16gb", "16 GB + RTX 3060 12 GB", "gpu-16gb", "torch", "cuda", "bf16", 2, 4, 32),
    # CPU plans spread over 1-thread workers first (profile threads.spread: workers, measured).
    ("cpu-4core-16gb", "4 cores / 16 GB, no GPU", "cpu-only", "onnx", "cpu", "fp32", 4, 1, 4),
    # The bundled voice needs ~750 MiB of VRAM: a 2 GB Pascal card runs it on the GPU in fp32 (cu126 build).
    ("gtx1050-16gb", "16 GB + GTX 1050 2 GB", "low-vram-gpu", "torch", "cuda", "fp32", 1, 2, 4),
    ("rtx2060-6gb", "16 GB + RTX 2060 6 GB", "low-vram-gpu", "torch", "cuda", "fp16", 1, 2, 4),
    # JetPack 5 cannot run the runtime's Python on its GPU builds: onnx on the Arm cores.
    ("jetson-orin-nx-8gb", "Jetson Orin NX 8 GB, R35", "jetson-cpu", "onnx", "cpu", "fp32", 4, 1, 4),
    ("jetson-agx-orin-r36", "Jetson AGX Orin 64 GB, R36", "jetson-edge", "torch", "cuda", "fp16", 1, 4, 4),
    ("jetson-nano-r32", "Jetson Nano 4 GB, R32", "jetson-cpu", "onnx", "cpu", "fp32", 4, 1, 4),
    # Eight H100: two workers per GPU, batch 32 each.
    ("h100x8-2tb", "HGX 8 x H100 80 GB", "gpu-large", "torch", "cuda", "bf16", 16, 2, 512),
    ("a100-mig", "A100 40 GB with MIG 3g.20gb+2g.10gb+2x1g.5gb", "gpu-16gb", "torch", "cuda", "bf16", 2, 4, 32),
    ("a5000x2-busy", "2 x RTX A5000, GPU 0 busy", "gpu-16gb", "torch", "cuda", "bf16", 2, 4, 32),
    ("rtx3060-busy", "RTX 3060 with 412 MiB free", "cpu-only", "onnx", "cpu", "fp32", 8, 1, 8),
    ("t4-driver470", "T4 on driver 470 (CUDA 11.4)", "cpu-only", "onnx", "cpu", "fp32", 4, 1, 4),
    ("cgroup-4cpu-on-64core", "4-CPU cgroup on a 64-core host", "cpu-only", "onnx", "cpu", "fp32", 4, 1, 4),
]


EXPECTED_WARNINGS = {
    # Every GPU left out is said, with its reason; Jetsons on the CPU say why and how to get the GPU.
    "gtx1050-16gb": ("Docker has no nvidia runtime registered",),
    "jetson-orin-nx-8gb": ("L4T R35.4.1 (JetPack 5.1.2): the model runs with onnx on the CPU",),
    "jetson-nano-r32": ("L4T R32.7.4 (JetPack 4.6.4): the model runs with onnx on the CPU",),
    "a100-mig": ("MIG 2g.10gb (MIG-0a9d4e62-37bc-5f18-9e4d-2b6c8f1a7d45) (NVIDIA A100-SXM4-40GB MIG 2g.10gb) is not "
                 "used: a smaller MIG profile", "MIG 1g.5gb (MIG-c71b3f08", "MIG 1g.5gb (MIG-f3a86d25"),
    "a5000x2-busy": ("GPU 0 (NVIDIA RTX A5000) is not used: busy: other processes hold 23.0 GiB of 24.0 GiB",),
    "rtx3060-busy": ("GPU 0 (NVIDIA GeForce RTX 3060) is not used: busy: other processes hold 11.6 GiB of 12.0 GiB, "
                     "412.0 MiB free < 752.3 MiB the model needs",),
    "t4-driver470": ("GPU 0 (Tesla T4) is not used: driver 470.256.02: the driver supports CUDA <= 11.4; torch 2.13 "
                     "is built for CUDA 12.x at the oldest (driver >= 525.60.13): upgrade the NVIDIA driver",),
}


@pytest.mark.parametrize("row", REFERENCE, ids=[r[0] for r in REFERENCE])
def test_reference_machine_plan(row: tuple) -> None:
    name, _stands_for, profile, engine, device, precision, workers, threads, concurrency = row
    host = facts(name)
    plan = plan_for(host)
    assert (plan.profile, plan.engine, plan.device, plan.precision) == (profile, engine, device, precision)
    assert (plan.workers, plan.threads, plan.max_concurrency) == (workers, threads, concurrency)
    assert plan.workers * plan.threads <= host.cpu.effective_cpus
    assert plan.memory_budget.fits, plan.memory_budget
    expected = EXPECTED_WARNINGS.get(name, ())
    assert len(plan.warnings) == len(expected), plan.warnings
    for warning, words in zip(plan.warnings, expected, strict=True):
        assert words in warning, (warning, words)
    assert plan.max_queue == plan.max_concurrency * 4
    # The env is exactly what the runtime reads: every declared variable, valid for Settings.
    settings = Settings.from_environ(plan.env)
    assert {v.name for v in VARIABLES} <= set(plan.env)
    assert (settings.workers, settings.threads_per_worker, settings.precision) == (workers, threads, precision)
    assert plan.env["OMP_NUM_THREADS"] == str(threads)
    assert plan.container.memory_limit_bytes <= host.memory.effective_total_bytes
    assert plan.container.cpus == host.cpu.effective_cpus


def test_cgroup_container_on_big_host_uses_at_most_its_cpus() -> None:
    host = facts("cgroup-4cpu-on-64core")
    assert host.cpu.logical_cores == 64 and host.cpu.effective_cpus == 4
    plan = plan_for(host)
    assert plan.workers * plan.threads <= 4
    assert plan.container.cpus == 4.0
    assert plan.container.memory_limit_bytes < 16 * GIB  # the cgroup limit, not the host's 256 GiB


@pytest.mark.parametrize("ram_gib", [6.0, 6.5, 7.6])
def test_t4_box_never_plans_more_than_fits(ram_gib: float) -> None:
    host = facts("t4-8gb-4cpu")
    mem = dataclasses.replace(host.memory, total_bytes=int(ram_gib * GIB), effective_total_bytes=int(ram_gib * GIB))
    plan = plan_for(dataclasses.replace(host, memory=mem))
    assert plan.profile == "t4-8gb"
    for total in plan.memory_budget.totals:
        assert total.planned_bytes + total.headroom_bytes <= total.capacity_bytes, total
    ram = plan.memory_budget.total("ram")
    assert ram.headroom_bytes >= GIB


def test_memory_bound_cpu_plan_shrinks_and_goes_lazy() -> None:
    host = facts("cpu-4core-16gb")
    mem = dataclasses.replace(host.memory, total_bytes=int(1.6 * GIB), effective_total_bytes=int(1.6 * GIB))
    cpu = dataclasses.replace(host.cpu, effective_cpus=16)
    roomy = plan_for(dataclasses.replace(host, cpu=cpu))
    assert roomy.workers == 8 and roomy.preload is True and roomy.cache_bytes == 64 * MIB
    assert roomy.env["TAILOR_SOLO_WIDE"] == "true"  # a lone request still gets every CPU
    plan = plan_for(dataclasses.replace(host, memory=mem, cpu=cpu))
    # 1.6 GiB - 512 MiB headroom - 350 MiB overhead leaves room for 2 sessions of 89 + 192 MiB.
    assert plan.workers == 2 and plan.max_concurrency == 2 and plan.threads == 4
    assert plan.cache_bytes == 0 and plan.preload is False
    assert plan.env["TAILOR_ORT_MEMORY_ARENA"] == "false"
    assert plan.env["TAILOR_SOLO_WIDE"] == "false"  # no extra model instance when memory is tight
    assert plan.memory_budget.fits
    assert source(plan, "cache_bytes") == "derived"


def test_more_cpus_more_workers_but_never_more_threads_than_cpus() -> None:
    host = facts("cpu-4core-16gb")
    for cpus in (1, 2, 3, 8, 16, 64):
        big = dataclasses.replace(host, cpu=dataclasses.replace(host.cpu, effective_cpus=cpus))
        plan = plan_for(big)
        assert plan.workers * plan.threads <= cpus
        assert plan.threads <= 4
    plan16 = plan_for(dataclasses.replace(host, cpu=dataclasses.replace(host.cpu, effective_cpus=16)))
    assert (plan16.workers, plan16.threads) == (8, 2)


def test_user_env_wins_over_profile_and_is_recorded() -> None:
    plan = plan_for(facts("cpu-4core-16gb"), environ={"TAILOR_WORKERS": "2", "TAILOR_LOG_LEVEL": "debug",
                                                      "OMP_NUM_THREADS": "1", "HOME": "/root"})
    assert plan.workers == 2 and plan.threads == 2  # threads follow the user's workers
    assert plan.env["TAILOR_LOG_LEVEL"] == "debug" and plan.env["OMP_NUM_THREADS"] == "1"
    assert source(plan, "workers") == "env" and source(plan, "TAILOR_WORKERS") == "env"
    assert source(plan, "TAILOR_LOG_LEVEL") == "env"
    assert source(plan, "threads") == "derived"
    assert "HOME" not in plan.env


def test_precedence_cli_over_env_over_config() -> None:
    doc = parse_yaml_text("settings:\n  workers: 3\n  port: 9000\nenv:\n  TAILOR_LOG_LEVEL: warning\n",
                          "user.yaml", UsageError, "")
    config = parse_config(doc)
    host = facts("cpu-4core-16gb")
    plan = plan_for(host, overrides={"workers": "1"}, environ={"TAILOR_WORKERS": "2", "TAILOR_PORT": "9100"},
                    config=config)
    assert plan.workers == 1 and source(plan, "workers") == "cli"
    assert plan.env["TAILOR_PORT"] == "9100" and source(plan, "TAILOR_PORT") == "env"
    assert plan.env["TAILOR_LOG_LEVEL"] == "warning" and source(plan, "TAILOR_LOG_LEVEL") == "config"
    assert plan.port == 9100  # the port has one record in the plan: env TAILOR_PORT
    only_config = plan_for(host, config=config)
    assert only_config.workers == 3 and source(only_config, "workers") == "config"
    reason = next(p.reason for p in only_config.provenance if p.name == "workers")
    assert reason == "set in user.yaml:2"


def test_user_threads_shape_the_derived_workers() -> None:
    host = facts("cpu-4core-16gb")
    big = dataclasses.replace(host, cpu=dataclasses.replace(host.cpu, effective_cpus=16))
    plan = plan_for(big, overrides={"threads": "2"})
    assert (plan.workers, plan.threads) == (8, 2)
    assert source(plan, "threads") == "cli" and source(plan, "workers") == "derived"


def test_user_threads_beyond_cpus_are_clamped_with_a_warning() -> None:
    plan = plan_for(facts("cpu-4core-16gb"), overrides={"workers": "2", "threads": "8"})
    assert plan.workers * plan.threads <= 4
    assert any("exceeds the 4 effective CPUs" in w for w in plan.warnings)
    assert source(plan, "threads") == "derived"


def test_bad_user_values_are_clear_errors() -> None:
    host = facts("cpu-4core-16gb")
    with pytest.raises(UsageError, match=r"environment: TAILOR_WORKERS='lots' is invalid: expected an integer"):
        plan_for(host, environ={"TAILOR_WORKERS": "lots"})
    with pytest.raises(UsageError, match=r"precision fp16 \(cli\) is not supported on device cpu"):
        plan_for(host, overrides={"precision": "fp16"})
    with pytest.raises(UsageError, match="TAILOR_NOPE is not a runtime variable"):
        plan_for(host, overrides={"TAILOR_NOPE": "1"})


def test_bf16_only_from_compute_capability_8() -> None:
    host = facts("rtx3060-16gb")
    turing = dataclasses.replace(host.gpus[0], compute_capability="7.5")
    plan = plan_for(dataclasses.replace(host, gpus=(turing,)))
    assert plan.precision == "fp16"
    assert source(plan, "precision") == "derived"
    with pytest.raises(UsageError, match="bf16"):
        plan_for(dataclasses.replace(host, gpus=(turing,)), overrides={"precision": "bf16"})


def test_jetson_plan_has_one_pool_and_no_expandable_segments() -> None:
    plan = plan_for(facts("jetson-agx-orin-r36"), environ={"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"})
    assert "PYTORCH_CUDA_ALLOC_CONF" not in plan.env
    assert any("ignored on Jetson" in w for w in plan.warnings)
    assert [t.pool for t in plan.memory_budget.totals] == ["shared"]
    assert {r.pool for r in plan.memory_budget.rows} == {"shared"}
    assert plan.container.runtime == "nvidia" and plan.container.flavor == "l4t"
    assert plan.container.gpu_count == 0  # the L4T runtime mounts the integrated GPU


def test_discrete_gpu_plan_reserves_the_gpu_and_sets_the_allocator() -> None:
    plan = plan_for(facts("rtx3060-16gb"))
    assert plan.env["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
    assert plan.env["TAILOR_FALLBACK"] == "onnx:en_US-joe-medium"
    assert plan.container.gpu_device_ids == ("GPU-3060aaaa-0000-4000-8000-000000003060",)
    assert plan.container.image.endswith("-cuda-cu128")
    assert plan.container.gpu_product == "NVIDIA-GeForce-RTX-3060"
    assert [t.pool for t in plan.memory_budget.totals] == ["ram", "vram"]


def test_gpu_plan_warns_when_docker_cannot_reach_the_gpu() -> None:
    host = facts("rtx3060-16gb")
    plan = plan_for(dataclasses.replace(host, container=dataclasses.replace(host.container, nvidia_runtime=False)))
    assert any("nvidia-container-toolkit" in w for w in plan.warnings)


def test_mig_enabled_gpu_without_instances_is_not_planned_on() -> None:
    host = facts("t4-8gb-4cpu")
    mig = dataclasses.replace(host.gpus[0], mig_mode="enabled")
    plan = plan_for(dataclasses.replace(host, gpus=(mig,)))
    assert plan.device == "cpu"
    assert any("MIG is enabled but no MIG instance exists" in r for r in plan.reasons)
    assert plan_for(host).warnings == ()


def test_ld_preload_only_when_the_library_exists_on_the_host() -> None:
    with_lib = plan_for(facts("rtx3060-16gb"))
    assert with_lib.env["LD_PRELOAD"] == "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
    assert with_lib.env["MALLOC_CONF"].startswith("background_thread:true")
    without = plan_for(dataclasses.replace(facts("rtx3060-16gb"), allocator_libraries=()))
    assert "LD_PRELOAD" not in without.env and "MALLOC_CONF" not in without.env
    assert without.env["MALLOC_ARENA_MAX"] == "2"


def test_forced_profile_plan_carries_the_warning() -> None:
    plan = plan_for(facts("cpu-4core-16gb"), override="gpu-16gb")
    assert plan.profile == "gpu-16gb"
    assert any("forced but does not fit" in w for w in plan.warnings)


@pytest.mark.parametrize("name", [r[0] for r in REFERENCE])
def test_plan_round_trips_through_json(name: str) -> None:
    plan = plan_for(facts(name), environ={"TAILOR_API_KEY": "k"})
    text = json.dumps(plan.to_dict(), sort_keys=True)
    again = Plan.from_dict(json.loads(text))
    assert again == plan
    assert json.dumps(again.to_dict(), sort_keys=True) == text


def test_unreadable_stored_plan_is_a_plan_error() -> None:
    with pytest.raises(PlanError, match=r"^plan: field engine: is missing"):
        Plan.from_dict({"plan_version": PLAN_VERSION, "profile": "x"})
    with pytest.raises(PlanError, match="plan_version 0 is an older plan format"):
        Plan.from_dict({"plan_version": 0, "profile": "x"})


def test_plan_is_deterministic() -> None:
    host = facts("t4-8gb-4cpu")
    assert plan_for(host).to_dict() == plan_for(host).to_dict()


def test_reasons_explain_every_derived_number() -> None:
    plan = plan_for(facts("t4-8gb-4cpu"))
    text = "\n".join(plan.reasons)
    for word in ("headroom", "usable CPU", "workers=1", "threads=2", "max_batch_size=8", "max_concurrency=8"):
        assert word in text
    assert all(p.source in ("cli", "env", "config", "profile", "default", "derived") for p in plan.provenance)
