"""bf16 on the CPU: planned only with the torch engine on a CPU with native bf16, served by the torch
engine with the fp32 lengths, and offered by `deploy tune` only when it passed the quality gate."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from orchestrator.errors import UsageError
from orchestrator.plan.planner import make_plan
from orchestrator.probe.facts import HostFacts
from orchestrator.select.profiles import load_profiles
from orchestrator.select.selection import cpu_bf16_supported, select_profile
from orchestrator.tune.space import build_knobs

FACTS = Path(__file__).resolve().parents[1] / "fixtures" / "facts" / "cpu-4core-16gb.json"


def host(*flags: str) -> HostFacts:
    facts = HostFacts.from_json_file(FACTS)
    return dataclasses.replace(facts, cpu=dataclasses.replace(facts.cpu, isa_flags=tuple(sorted(flags))))


def plan(facts: HostFacts, **settings: str):  # type: ignore[no-untyped-def]
    return make_plan(facts, select_profile(facts, load_profiles(), None), settings, {})


@pytest.mark.parametrize("flags", [("avx2", "avx512_bf16", "avx512f"), ("amx", "avx2")])
def test_torch_bf16_is_planned_on_a_cpu_with_native_bf16(flags: tuple[str, ...]) -> None:
    p = plan(host(*flags), engine="torch", precision="bf16")
    assert (p.engine, p.device, p.precision) == ("torch", "cpu", "bf16")


def test_bf16_on_a_cpu_without_it_or_on_onnx_is_refused_with_a_hint() -> None:
    with pytest.raises(UsageError, match=r"precision bf16 \(cli\) is not supported on device cpu") as info:
        plan(host("avx2", "avx512f"), engine="torch", precision="bf16")
    assert "AVX-512-BF16 or AMX" in info.value.hint
    with pytest.raises(UsageError, match="not supported on device cpu"):
        plan(host("avx512_bf16"), engine="onnx", precision="bf16")
    assert not cpu_bf16_supported("fp16", "cpu", "torch", ("avx512_bf16",))


def test_tune_offers_torch_bf16_only_after_the_gate() -> None:
    base = {"workers": 2, "threads": 1, "device": "cpu", "engine": "onnx", "precision": "fp32", "env": {}}
    names = [k.name for k in build_knobs(base, torch_available=True, allocators={})]
    assert "torch bf16" not in names
    knob = next(k for k in build_knobs(base, torch_available=True, allocators={}, torch_bf16=True)
                if k.name == "torch bf16")
    assert dict(knob.options[0]) == {"TAILOR_ENGINE": "torch", "TAILOR_PRECISION": "bf16"}


@pytest.mark.slow
def test_torch_engine_runs_bf16_on_the_cpu_with_fp32_lengths() -> None:
    pytest.importorskip("torch")
    from runtime.engines.base import EngineOptions, SynthesisItem
    from runtime.families.piper.torch_engine import TorchEngine
    from runtime.families.piper.voices import bundled_voice, read_voice_info
    from runtime.text.frontend import Phonemizer

    files = bundled_voice()
    assert files is not None
    _info, raw = read_voice_info(files)
    item = SynthesisItem(Phonemizer(raw).ids("Half precision on the processor."), noise_scale=0.0, noise_w=0.0)
    fp32 = TorchEngine(files.model_path, 22050, EngineOptions()).synthesize(item)
    bf16 = TorchEngine(files.model_path, 22050, EngineOptions(precision="bf16")).synthesize(item)
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    assert 0 < float(np.linalg.norm(bf16 - fp32) / np.linalg.norm(fp32)) < 0.05  # changed, but slightly
