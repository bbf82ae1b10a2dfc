"""Hostile input all the way through: garbage in /proc, unreadable files and NVML errors give a
clear message and still a valid plan and valid rendered files."""

from __future__ import annotations

import os
from pathlib import Path

import pynvml
import pytest

from orchestrator.plan.planner import make_plan
from orchestrator.probe.facts import HostFacts
from orchestrator.probe.host import probe_host
from orchestrator.render.renderer import render
from orchestrator.select.profiles import load_profiles
from orchestrator.select.selection import ASSUMED_MEMORY_BYTES, select_profile
from tests.unit.test_probe_nvml import FakeCard, FakeNvml

HOSTS = Path(__file__).resolve().parents[1] / "fixtures" / "hosts"
ENV = {"HOME": "/home/tester"}
GIB = 1024**3


def plan_and_render(facts: HostFacts):
    plan = make_plan(facts, select_profile(facts, load_profiles()), {}, {})
    files = render(plan)
    assert {"docker-compose.yml", ".env", "k8s.yaml", "tailor-runtime.service"} <= set(files)
    assert plan.workers >= 1 and plan.threads >= 1 and plan.max_concurrency >= 1
    assert plan.workers * plan.threads <= max(1, facts.cpu.effective_cpus)
    assert plan.memory_budget.fits
    assert plan.container.memory_limit_bytes > 0
    return plan


def test_garbage_proc_still_plans_conservatively_and_says_why() -> None:
    facts = probe_host(HOSTS / "garbage-proc", environ=ENV, check_docker=False)
    assert facts.memory.effective_total_bytes == 0 and facts.cpu.architecture == "unknown"
    plan = plan_and_render(facts)
    assert plan.profile == "cpu-only" and (plan.workers, plan.threads) == (1, 1)
    assert plan.container.memory_limit_bytes < ASSUMED_MEMORY_BYTES
    assert any("memory size could not be read" in w and "2.0 GiB" in w for w in plan.warnings)
    assert any("architecture could not be read" in w for w in plan.warnings)


def test_empty_root_still_plans(tmp_path: Path) -> None:
    plan = plan_and_render(probe_host(tmp_path, environ=ENV, check_docker=False))
    assert plan.profile == "cpu-only"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_meminfo_still_plans(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    meminfo = tmp_path / "proc" / "meminfo"
    meminfo.write_text("MemTotal: 16384000 kB\n")
    meminfo.chmod(0)
    try:
        plan = plan_and_render(probe_host(tmp_path, environ=ENV, check_docker=False))
    finally:
        meminfo.chmod(0o644)
    assert any("memory size could not be read" in w for w in plan.warnings)


def test_meminfo_replaced_by_a_directory_still_plans(tmp_path: Path) -> None:
    # What root cannot be kept from reading: a directory where the file should be.
    (tmp_path / "proc" / "meminfo").mkdir(parents=True)
    facts = probe_host(tmp_path, environ=ENV, check_docker=False)
    assert any("/proc/meminfo" in note for note in facts.notes)
    plan = plan_and_render(facts)
    assert any("memory size could not be read" in w for w in plan.warnings)


@pytest.mark.parametrize("error", [
    pynvml.NVMLError_DriverNotLoaded(), pynvml.NVMLError_LibraryNotFound(), pynvml.NVMLError_Unknown(),
], ids=["driver-not-loaded", "library-not-found", "unknown"])
def test_nvml_failure_plans_for_the_cpu(error: pynvml.NVMLError) -> None:
    card = FakeCard("Tesla T4", "GPU-1", 16 * GIB, 15 * GIB, (7, 5))
    facts = probe_host(HOSTS / "cgroup2-container-4cpu-8g", environ=ENV, check_docker=False,
                       nvml=FakeNvml([card], init_error=error))
    assert facts.gpus == () and not facts.nvml.available and facts.nvml.reason
    plan = plan_and_render(facts)
    assert plan.profile == "cpu-only" and plan.device == "cpu"
    assert "PYTORCH_CUDA_ALLOC_CONF" not in plan.env
