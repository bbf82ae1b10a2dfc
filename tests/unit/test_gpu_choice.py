"""choose_gpus and cuda_stack: which GPUs are used, which torch build runs on them, or why not."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from orchestrator.probe.facts import HostFacts
from orchestrator.select.gpus import MIN_GPU_BYTES, choose_gpus, cuda_stack
from runtime.families.catalog import family
from runtime.families.spec import Placement

FACTS = Path(__file__).resolve().parents[1] / "fixtures" / "facts"
MIB = 1024**2


def host(name: str) -> HostFacts:
    return HostFacts.from_json_file(FACTS / f"{name}.json")


def test_minimum_matches_the_budget() -> None:
    piper = family("piper")
    fp = piper.footprint(Placement("torch", "cuda", "fp32"))
    assert fp.cuda_context_bytes + fp.weights_vram_per_worker_bytes + fp.per_item_vram_bytes == MIN_GPU_BYTES


@pytest.mark.parametrize(("card", "driver_cuda", "cc", "build", "base"), [
    ("H100 on driver 550", "12.4", (9, 0), "cu128", "nvidia/cuda:12.4.1-base-ubuntu22.04"),
    ("GTX 1050 (Pascal) on driver 535", "12.2", (6, 1), "cu126", "nvidia/cuda:12.2.2-base-ubuntu22.04"),
    ("V100 (Volta) on driver 550", "12.4", (7, 0), "cu126", "nvidia/cuda:12.4.1-base-ubuntu22.04"),
    ("RTX 5090 (Blackwell) on driver 575", "12.9", (12, 0), "cu128", "nvidia/cuda:12.8.1-base-ubuntu22.04"),
    ("L4 on driver 580 (CUDA 13)", "13.0", (8, 9), "cu130", "nvidia/cuda:13.0.1-base-ubuntu22.04"),
    ("GTX 1080 on driver 580: CUDA 13 has no Pascal kernels", "13.0", (6, 1), "cu126",
     "nvidia/cuda:12.6.3-base-ubuntu22.04"),
])
def test_build_follows_driver_and_compute_capability(card: str, driver_cuda: str, cc: tuple[int, int], build: str,
                                                     base: str) -> None:
    stack, why = cuda_stack(driver_cuda, cc)
    assert stack is not None, (card, why)
    assert (stack.build.tag, stack.base_image) == (build, base), card
    assert stack.build.index_url == f"https://download.pytorch.org/whl/{build}"


@pytest.mark.parametrize(("driver_cuda", "cc", "words"), [
    ("11.4", (7, 5), "the driver supports CUDA <= 11.4; torch 2.13 is built for CUDA 12.x at the oldest "
                     "(driver >= 525.60.13): upgrade the NVIDIA driver"),
    ("12.4", (3, 7), "no torch 2.13 CUDA build has kernels for compute capability 3.7"),
])
def test_refusals_name_the_fix(driver_cuda: str, cc: tuple[int, int], words: str) -> None:
    stack, why = cuda_stack(driver_cuda, cc)
    assert stack is None
    assert words in why


def test_uuid_prefix_and_an_invalid_entry_end_the_list_like_cuda() -> None:
    facts = host("h100x8-2tb")
    choice = choose_gpus(facts, {"CUDA_VISIBLE_DEVICES": "GPU-9c1d0003,7,bogus,1"})
    assert [g.index for g in choice.used] == [3, 7]
    assert choice.warnings == ("CUDA_VISIBLE_DEVICES entry 'bogus' names no GPU; CUDA ignores it and every entry "
                               "after it",)


def test_mig_uuid_selects_that_instance() -> None:
    choice = choose_gpus(host("a100-mig"), {"CUDA_VISIBLE_DEVICES": "MIG-c71b3f08-e25a-5d46-81f9-6a0e3d2c9b57"})
    assert [g.mig_profile for g in choice.used] == ["1g.5gb"]
    assert choice.used[0].memory_total_bytes == 4864 * MIB


def test_too_small_card_is_left_out_with_numbers() -> None:
    facts = host("gtx1050-16gb")
    tiny = dataclasses.replace(facts.gpus[0], name="NVIDIA GeForce GT 710", memory_total_bytes=512 * MIB,
                               memory_free_bytes=500 * MIB, compute_capability="5.2")
    choice = choose_gpus(dataclasses.replace(facts, gpus=(tiny,)))
    assert choice.used == ()
    assert choice.verdicts[0].reason.startswith("too small: 512.0 MiB < 752.3 MiB the model needs")


def test_mixed_cards_use_the_largest_kind() -> None:
    facts = host("rtx3060-16gb")
    small = dataclasses.replace(host("gtx1050-16gb").gpus[0], index=1, driver_version=facts.gpus[0].driver_version,
                                cuda_version=facts.gpus[0].cuda_version)
    choice = choose_gpus(dataclasses.replace(facts, gpus=(small, facts.gpus[0])))
    assert [g.name for g in choice.used] == ["NVIDIA GeForce RTX 3060"]
    assert "a smaller card than GPU 0" in choice.verdicts[0].reason
