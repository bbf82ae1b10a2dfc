"""The reduction search (orchestrator/select/fit.py): order, numbers, pins, the CPU step, refusal."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from orchestrator.errors import PlanError, UsageError
from orchestrator.probe.facts import HostFacts
from orchestrator.select.fit import Pinned, Pools, fit_model, smallest_machine
from orchestrator.select.gpus import choose_gpus
from orchestrator.select.profiles import load_profiles
from orchestrator.select.selection import ModelRequest, select_profile
from runtime.families.catalog import family

FACTS = Path(__file__).resolve().parents[1] / "fixtures" / "facts"
GIB = 1024**3
MIB = 1024**2


def host(name: str) -> HostFacts:
    return HostFacts.from_json_file(FACTS / f"{name}.json")


def fit(name: str, machine: str, profile: str, pinned: Pinned | None = None, *, allow_cpu: bool = True,
        pools: Pools | None = None):  # type: ignore[no-untyped-def]
    facts = host(machine)
    return fit_model(family(name), facts, load_profiles().get(profile), choose_gpus(facts), pinned,
                     allow_cpu=allow_cpu, pools_for=(lambda _on_gpu: pools) if pools else None)


def test_a_model_that_fits_takes_no_step() -> None:
    result = fit("piper", "cpu-4core-16gb", "cpu-only")
    assert result.fits and result.steps == () and result.reductions == ()
    assert (result.engine, result.device, result.precision) == ("onnx", "cpu", "fp32")


def test_the_family_preference_beats_a_costlier_profile_precision() -> None:
    # cpu-only asks for fp32; Kokoro's own choice on the CPU is its int8 file.
    result = fit("kokoro-82m", "cpu-4core-16gb", "cpu-only")
    assert result.precision == "int8" and result.engine == "onnx" and not result.steps
    assert any("preferred precision" in n for n in result.notes)


def test_a_half_precision_profile_maps_to_the_familys_half() -> None:
    # gpu-16gb asks for bf16 on an Ampere card; IndexTTS2's half precision is fp16 (use_fp16).
    result = fit("indextts2", "rtx3060-16gb", "gpu-16gb")
    assert result.precision == "fp16" and result.fits and result.steps == ()


def test_reductions_go_in_order_and_stop_once_it_fits() -> None:
    # 7.5 GiB of VRAM, RAM to spare: fp16 (the profile's half precision) is not enough, then the
    # optional emotion model goes, and that is enough.
    pools = Pools(ram_capacity_bytes=32 * GIB, ram_headroom_bytes=4 * GIB, vram_capacity_bytes=int(7.5 * GIB),
                  vram_headroom_bytes=0, shared=False)
    result = fit("indextts2", "rtx3060-16gb", "gpu-16gb", Pinned(), pools=pools)
    assert result.reductions == ("drop emotion",)
    step = result.steps[0]
    assert step.reduction == "drop" and "VRAM 8.0 GiB -> " in step.detail and step.detail.endswith("fits")
    # fp32 pinned by the user: no precision step; the search goes on to offloading, stage by stage.
    pinned = fit("indextts2", "rtx3060-16gb", "gpu-16gb", Pinned(precision="fp32"), pools=pools, allow_cpu=False)
    assert pinned.precision == "fp32" and pinned.reductions[:2] == ("drop emotion", "offload w2v-bert")
    assert all(not r.startswith("precision") for r in pinned.reductions)


def test_a_lower_precision_is_tried_first_where_the_profile_starts_high() -> None:
    pools = Pools(ram_capacity_bytes=32 * GIB, ram_headroom_bytes=4 * GIB, vram_capacity_bytes=10 * GIB,
                  vram_headroom_bytes=0, shared=False)
    facts = host("rtx3060-16gb")
    profile = dataclasses.replace(load_profiles().get("gpu-16gb"), precision="fp32")
    result = fit_model(family("indextts2"), facts, profile, choose_gpus(facts), Pinned(),
                       pools_for=lambda _on_gpu: pools)
    assert result.reductions == ("precision fp16",)
    assert result.steps[0].change == "fp32 -> fp16" and "VRAM 12.3 GiB -> VRAM" in result.steps[0].detail.replace(
        "RAM 5.9 GiB, load peak 7.3 GiB, ", "")


def test_precisions_the_gpu_cannot_compute_are_skipped_with_the_reason() -> None:
    result = fit("indextts2", "gtx1050-16gb", "low-vram-gpu")
    assert any("fp16 skipped: fp16 needs compute capability >= 7.0, this GPU has 6.1" in n for n in result.notes)
    assert "precision fp16" not in result.reductions


def test_offloading_only_happens_while_vram_is_short_and_mmap_only_for_the_load_peak() -> None:
    t4 = fit("indextts2", "t4-8gb-4cpu", "t4-8gb")  # RAM is short, VRAM is plenty
    assert t4.reductions == ("drop emotion", "mmap") and t4.fits and t4.tight
    assert not t4.offloaded
    rtx = fit("indextts2", "rtx3070-8gb", "gpu-16gb")  # VRAM is short, RAM is plenty
    assert rtx.reductions == ("drop emotion", "offload w2v-bert") and not rtx.mmap


def test_the_cpu_is_the_last_step_and_only_when_allowed() -> None:
    moved = fit("xtts-v2", "gtx1050-16gb", "low-vram-gpu")
    assert moved.device == "cpu" and moved.fits and moved.reductions[-1] == "cpu"
    cpu_step = moved.steps[-1]
    assert "VRAM" in cpu_step.detail and cpu_step.change == "cuda -> cpu"
    stuck = fit("xtts-v2", "gtx1050-16gb", "low-vram-gpu", allow_cpu=False)
    assert stuck.device == "cuda" and not stuck.fits and stuck.shortfall is not None
    assert stuck.shortfall.pool == "VRAM" and stuck.shortfall.need_bytes > stuck.shortfall.usable_bytes


def test_pinned_values_are_never_reduced() -> None:
    pinned = Pinned(device="cuda", where={"TAILOR_DEVICE": "set on the command line"})
    result = fit("xtts-v2", "gtx1050-16gb", "low-vram-gpu", pinned)
    assert result.device == "cuda" and not result.fits
    dropped = fit("indextts2", "rtx3060-16gb", "gpu-16gb", Pinned(dropped=("emotion",)))
    assert dropped.dropped == ("emotion",) and dropped.steps == ()


def test_a_pin_the_family_cannot_take_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="kokoro-82m has no bf16 on cpu"):
        fit("kokoro-82m", "cpu-4core-16gb", "cpu-only", Pinned(precision="bf16"))
    with pytest.raises(UsageError, match="gpt cannot be dropped"):
        fit("indextts2", "rtx3060-16gb", "gpu-16gb", Pinned(dropped=("gpt",), where={"TAILOR_MODEL_DROP": "cli"}))


def test_the_refusal_names_the_shortfall_and_the_smallest_machine() -> None:
    with pytest.raises(PlanError) as caught:
        select_profile(host("vps-2cpu-4gb"), load_profiles(), model=ModelRequest(family("indextts2")))
    message, hint = caught.value.message, caught.value.hint
    assert "indextts2 does not fit this machine" in message
    assert "the machine has 3.8 GiB effective (3.0 GiB after headroom)" in message and "GiB RAM" in message
    assert "a machine with >= " in hint and "GB of RAM" in hint and "an NVIDIA GPU with >= " in hint


def test_smallest_machine_classes_follow_the_memory_model() -> None:
    assert smallest_machine(family("piper")).startswith("a machine with >= 2 GB of RAM")
    assert "a machine with >= 8 GB of RAM" in smallest_machine(family("xtts-v2"))
    index = smallest_machine(family("indextts2"))
    assert "an NVIDIA GPU with >= 6 GB of VRAM (compute capability >= 7.0)" in index


def test_a_shared_pool_counts_the_gpu_in_ram() -> None:
    # Jetson AGX Orin: one 61 GiB pool; shrink it until IndexTTS2's RAM and GPU memory together do not fit.
    orin = host("jetson-agx-orin-r36")
    small = dataclasses.replace(orin, memory=dataclasses.replace(orin.memory, effective_total_bytes=18 * GIB))
    result = fit_model(family("indextts2"), small, load_profiles().get("jetson-edge"), choose_gpus(small), Pinned())
    assert result.fits and "drop emotion" in result.reductions
    assert result.need_vram_bytes + result.need_ram_bytes <= result.usable_ram_bytes
