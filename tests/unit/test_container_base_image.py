"""The plan picks the image base: on Jetson it must match the board's L4T release."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from orchestrator.plan.container_spec import DEFAULT_BASE_IMAGES, base_image_for
from orchestrator.plan.planner import make_plan
from orchestrator.probe.facts import HostFacts
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
    assert base_image_for(facts, "l4t") == (image, None)


def test_jetpack5_board_is_warned_that_its_python_is_too_old() -> None:
    facts = _with_l4t(_facts("jetson-orin-nx-8gb.json"), "R35.4.1", "5.1.2")
    image, warning = base_image_for(facts, "l4t")
    assert image == DEFAULT_BASE_IMAGES["l4t"]
    assert warning is not None and "R35.4.1" in warning and "--base-image" in warning
    selection = select_profile(facts, load_profiles(()), None)
    plan = make_plan(facts, selection, {}, {})
    assert plan.profile == "jetson-edge"
    assert warning in plan.warnings


def test_non_jetson_flavors_use_the_default_base() -> None:
    facts = _facts("t4-8gb-4cpu.json")
    assert base_image_for(facts, "cuda") == (DEFAULT_BASE_IMAGES["cuda"], None)
    plan = make_plan(facts, select_profile(facts, load_profiles(()), None), {}, {})
    assert plan.container.base_image == DEFAULT_BASE_IMAGES["cuda"]
    assert plan.to_dict()["container"]["base_image"] == DEFAULT_BASE_IMAGES["cuda"]
