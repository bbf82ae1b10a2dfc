"""The plan picks the image base: on Jetson it must match the board's L4T release."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from orchestrator.plan.container_spec import DEFAULT_BASE_IMAGES, base_image_for
from orchestrator.plan.planner import make_plan
from orchestrator.probe.facts import HostFacts
from orchestrator.select.gpus import choose_gpus
from orchestrator.select.profiles import load_profiles
from orchestrator.select.selection import select_profile

FACTS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "facts"


def _facts(name: str) -> HostFacts:
    return HostFacts.from_json_file(FACTS_DIR / name)


def _with_l4t(facts: HostFacts, release: str, jetpack: str | None) -> HostFacts:
    assert facts.jetson is not None
    jetson = dataclasses.replace(facts.jetson, l4t_release=release, jetpack_version=jetpack)
    return dataclasses.replace(facts, jetson=jetson)


@pytest.mark.parametrize(
    ("release", "image"),
    [("R36.3.0", "nvcr.io/nvidia/l4t-jetpack:r36.3.0"), ("R36.4.3", "nvcr.io/nvidia/l4t-jetpack:r36.4.0")],
)
def test_jetpack6_boards_get_the_matching_l4t_image(release: str, image: str) -> None:
    facts = _with_l4t(_facts("jetson-orin-nx-8gb.json"), release, "6.0")
    assert base_image_for(facts, "l4t", choose_gpus(facts)) == (image, None)


def test_jetpack5_board_runs_onnx_on_the_cpu_and_says_why() -> None:
    facts = _with_l4t(_facts("jetson-orin-nx-8gb.json"), "R35.4.1", "5.1.2")
    image, warning = base_image_for(facts, "l4t", choose_gpus(facts))
    assert image == DEFAULT_BASE_IMAGES["l4t"]
    assert warning is not None and "R35.4.1" in warning and "--base-image" in warning
    plan = make_plan(facts, select_profile(facts, load_profiles(()), None), {}, {})
    assert (plan.profile, plan.engine, plan.device, plan.container.flavor) == ("jetson-cpu", "onnx", "cpu", "cpu")
    assert plan.container.base_image == DEFAULT_BASE_IMAGES["cpu"]  # a plain arm64 Python image runs on R35
    assert plan.container.architecture == "arm64"
    assert any("L4T R35.4.1 (JetPack 5.1.2)" in w and "Python >= 3.10" in w and "JetPack 6" in w
               for w in plan.warnings)
    # Forced onto the GPU profile, the image problem is still said.
    forced = make_plan(facts, select_profile(facts, load_profiles(()), "jetson-edge"), {}, {})
    assert warning in forced.warnings


def test_cuda_base_follows_the_driver() -> None:
    facts = _facts("t4-8gb-4cpu.json")  # driver 550, CUDA 12.4
    assert base_image_for(facts, "cuda", choose_gpus(facts)) == ("nvidia/cuda:12.4.1-base-ubuntu22.04", None)
    plan = make_plan(facts, select_profile(facts, load_profiles(()), None), {}, {})
    assert plan.container.base_image == "nvidia/cuda:12.4.1-base-ubuntu22.04"
    assert plan.to_dict()["container"]["base_image"] == plan.container.base_image
    assert plan.container.cuda_build == "cu128" and plan.container.image.endswith("-cuda-cu128")


def test_cuda_without_a_usable_gpu_keeps_the_default_base() -> None:
    facts = _facts("t4-driver470.json")
    assert base_image_for(facts, "cuda", choose_gpus(facts)) == (DEFAULT_BASE_IMAGES["cuda"], None)
