"""select_profile over the reference machines of the field reports."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from orchestrator.errors import PlanError, UsageError
from orchestrator.probe.facts import HostFacts
from orchestrator.select.profiles import load_profile_file, load_profiles
from orchestrator.select.selection import (
    DOES_NOT_FIT,
    FITS,
    FITS_WITH_CHANGE,
    resolve_precision,
    select_profile,
)

FACTS = Path(__file__).resolve().parents[1] / "fixtures" / "facts"
GIB = 1024**3


def facts(name: str) -> HostFacts:
    return HostFacts.from_json_file(FACTS / f"{name}.json")


REFERENCE = [
    # (facts file, what it stands for, expected profile)
    ("t4-8gb-4cpu", "cloud VM: 4 vCPU, 8 GB RAM, Tesla T4 16 GB", "t4-8gb"),
    ("rtx3060-16gb", "desktop: 12 threads, 16 GB RAM, RTX 3060 12 GB", "gpu-16gb"),
    ("cpu-4core-16gb", "office box: 4 cores, 16 GB RAM, no GPU", "cpu-only"),
    ("gtx1050-16gb", "old laptop: 8 threads, 16 GB RAM, GTX 1050 2 GB", "low-vram-gpu"),
    ("rtx2060-6gb", "desktop: 6 cores, 16 GB RAM, RTX 2060 6 GB", "low-vram-gpu"),
    ("jetson-orin-nx-8gb", "Jetson Orin NX 8 GB, L4T R35.4.1", "jetson-cpu"),
    ("jetson-agx-orin-r36", "Jetson AGX Orin 64 GB, L4T R36.4.3", "jetson-edge"),
    ("jetson-nano-r32", "Jetson Nano 4 GB, L4T R32.7.4", "jetson-cpu"),
    ("h100x8-2tb", "HGX: 224 threads, 2 TiB, 8 x H100 80 GB", "gpu-large"),
    ("a100-mig", "A100 40 GB in MIG mode; largest instance 3g.20gb", "gpu-16gb"),
    ("a5000x2-busy", "2 x RTX A5000, GPU 0 held by another job", "gpu-16gb"),
    ("rtx3060-busy", "RTX 3060 with 412 MiB free", "cpu-only"),
    ("t4-driver470", "T4 on driver 470 (CUDA 11.4)", "cpu-only"),
    ("cgroup-4cpu-on-64core", "container limited to 4 CPUs / 16 GiB on a 64-core host", "cpu-only"),
]


@pytest.mark.parametrize(("name", "stands_for", "expected"), REFERENCE, ids=[r[0] for r in REFERENCE])
def test_reference_machine_lands_on_expected_profile(name: str, stands_for: str, expected: str) -> None:
    selection = select_profile(facts(name), load_profiles())
    assert selection.chosen.name == expected, (stands_for, selection.reasons)
    assert not selection.forced and selection.warnings == ()
    assert selection.reasons[0].startswith(f"{expected}: fits")
    assert len(selection.verdicts) == len(load_profiles().profiles)


def test_every_verdict_says_why_with_numbers() -> None:
    selection = select_profile(facts("gtx1050-16gb"), load_profiles())
    gpu = selection.verdict("gpu-16gb")
    assert gpu.status == DOES_NOT_FIT
    assert "GPU memory 2.0 GiB < 7.5 GiB required" in gpu.failures[0]
    assert selection.verdict("low-vram-gpu").status == FITS
    assert selection.verdict("cpu-only").status == FITS
    old_driver = select_profile(facts("t4-driver470"), load_profiles()).verdict("t4-8gb")
    assert old_driver.status == DOES_NOT_FIT
    assert "driver 470.256.02: the driver supports CUDA <= 11.4" in old_driver.failures[0]
    assert "upgrade the NVIDIA driver" in old_driver.failures[0]


def test_too_little_ram_is_a_change_not_a_refusal() -> None:
    selection = select_profile(facts("t4-8gb-4cpu"), load_profiles())
    verdict = selection.verdict("gpu-16gb")
    assert verdict.status == FITS_WITH_CHANGE
    assert verdict.changes == ("needs 6.4 GiB more RAM",)


def test_cgroup_limit_change_points_at_the_container_limit() -> None:
    host = facts("cgroup-4cpu-on-64core")
    small = dataclasses.replace(host, memory=dataclasses.replace(host.memory, effective_total_bytes=1 * GIB,
                                                                 cgroup_limit_bytes=1 * GIB))
    verdict = select_profile(small, load_profiles(), override="cpu-only").verdict("cpu-only")
    assert verdict.status == FITS_WITH_CHANGE
    assert verdict.changes[0].startswith("raise the container memory limit by 512.0 MiB")


def test_strict_precision_fits_with_precision_fp32(tmp_path: Path) -> None:
    text = (Path(load_profiles().get("gpu-16gb").source).read_text(encoding="utf-8")
            .replace("bf16-if-supported", "fp16").replace("min_vram: 7.5GiB", "min_vram: 1GiB")
            .replace('min_compute_capability: "7.0"', 'min_compute_capability: "6.0"'))
    path = tmp_path / "strict-fp16.yaml"
    path.write_text(text.replace("priority: 80", "priority: 99"), encoding="utf-8")
    profile = load_profile_file(path)
    selection = select_profile(facts("gtx1050-16gb"), [profile, *load_profiles().profiles])
    verdict = selection.verdict("strict-fp16")
    assert verdict.status == FITS_WITH_CHANGE
    assert verdict.changes == ("fits with precision fp32",)
    assert selection.chosen.name == "low-vram-gpu"


def test_forced_profile_that_does_not_fit_is_used_with_a_warning() -> None:
    selection = select_profile(facts("cpu-4core-16gb"), load_profiles(), override="gpu-16gb")
    assert selection.chosen.name == "gpu-16gb" and selection.forced
    assert len(selection.warnings) == 1
    assert "forced but does not fit" in selection.warnings[0]
    assert "needs an NVIDIA GPU" in selection.warnings[0]


def test_forced_profile_that_fits_has_no_warning() -> None:
    selection = select_profile(facts("rtx3060-16gb"), load_profiles(), override="cpu-only")
    assert selection.chosen.name == "cpu-only" and selection.warnings == ()


def test_unknown_forced_profile_is_a_usage_error_with_a_suggestion() -> None:
    with pytest.raises(UsageError, match="no profile named 'gpu-99gb'; did you mean 'gpu-16gb'") as info:
        select_profile(facts("rtx3060-16gb"), load_profiles(), override="gpu-99gb")
    assert "cpu-only" in info.value.hint and info.value.exit_code == 2
    with pytest.raises(UsageError) as far:
        select_profile(facts("rtx3060-16gb"), load_profiles(), override="zzz")
    assert far.value.message == "no profile named 'zzz'"  # nothing close: no suggestion


def test_nothing_fits_is_an_error_with_every_reason() -> None:
    only_gpu = [load_profiles().get("gpu-16gb")]
    with pytest.raises(PlanError) as info:
        select_profile(facts("cpu-4core-16gb"), only_gpu)
    assert "gpu-16gb: needs an NVIDIA GPU" in info.value.message
    assert "--profile" in info.value.hint


def test_selection_is_deterministic_and_ignores_input_order() -> None:
    profiles = load_profiles().profiles
    first = select_profile(facts("rtx3060-16gb"), profiles)
    again = select_profile(facts("rtx3060-16gb"), tuple(reversed(profiles)))
    assert first == again
    assert first.verdict("cpu-only").status == FITS  # fits too, loses on priority
    assert any(r.startswith("cpu-only: fits too, lower priority") for r in first.reasons)


@pytest.mark.parametrize(("policy", "cc", "expected"), [
    ("bf16-if-supported", (8, 6), "bf16"),    # RTX 3060
    ("bf16-if-supported", (7, 5), "fp16"),    # T4: tensor cores, no bf16
    ("bf16-if-supported", (6, 1), "fp32"),    # GTX 1050
    ("fp16-if-supported", (8, 7), "fp16"),    # Orin
    ("fp16-if-supported", (5, 3), "fp32"),    # Nano: no tensor cores
    ("fp32", (9, 0), "fp32"),
])
def test_precision_rule(policy: str, cc: tuple[int, int], expected: str) -> None:
    assert resolve_precision(policy, "cuda", cc)[0] == expected
    assert resolve_precision(policy, "cpu", cc)[0] == "fp32"
