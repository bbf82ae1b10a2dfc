"""Each model family on each reference machine, through the CLI (`deploy plan --facts F --model X --json`).

The rows say which real machine each facts file stands for (tests/fixtures/facts/generate.py) and
what the plan must do there: device, precision, the reductions it takes, or the refusal naming the
memory that is short. Exit codes: 0 planned, 1 refused (does not fit), 2 bad input.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli.app import main

ROOT = Path(__file__).resolve().parents[2]
FACTS = ROOT / "tests" / "fixtures" / "facts"

MACHINES = {
    "vps-2cpu-4gb": "a 2-vCPU / 4 GB VPS, no GPU",
    "t4-8gb-4cpu": "an 8 GB RAM cloud VM with a T4 16 GB",
    "gtx1050-16gb": "a laptop with a GTX 1050 2 GB (CC 6.1) and 16 GB RAM",
    "rtx3070-8gb": "a desktop with an RTX 3070 8 GB that drives the display, 16 GB RAM",
    "rtx3060-16gb": "a desktop with an RTX 3060 12 GB, 16 GB RAM",
    "server-8cpu-8gb": "an 8-CPU / 8 GB server without a GPU",
    "h100x8-2tb": "an 8 x H100 80 GB node, 2 TB RAM",
    "jetson-agx-orin-r36": "a Jetson AGX Orin 64 GB on L4T R36 (one shared memory pool)",
}

# (machine, family): ("plan", profile, engine/device/precision, reductions, tight) or ("refuse", [phrases]).
EXPECTED: dict[tuple[str, str], tuple[Any, ...]] = {
    ("vps-2cpu-4gb", "piper"): ("plan", "cpu-only", "onnx/cpu/fp32", (), False),
    ("vps-2cpu-4gb", "kokoro-82m"): ("plan", "cpu-only", "onnx/cpu/int8", (), False),
    ("vps-2cpu-4gb", "xtts-v2"): ("refuse", ["needs 5.0 GiB RAM", "the machine has 3.8 GiB effective"]),
    ("vps-2cpu-4gb", "indextts2"): ("refuse", ["GiB RAM", "the machine has 3.8 GiB effective (3.0 GiB after headroom)"]),
    ("t4-8gb-4cpu", "piper"): ("plan", "t4-8gb", "torch/cuda/fp16", (), False),
    ("t4-8gb-4cpu", "kokoro-82m"): ("plan", "t4-8gb", "torch/cuda/fp16", (), False),
    ("t4-8gb-4cpu", "xtts-v2"): ("plan", "t4-8gb", "torch/cuda/fp16", (), False),
    # RAM is what is short on this box (the field report: 6 GB resident, 7.8 GB load peak, swapping):
    # fp16 GPT, no emotion model, mapped checkpoints, and a memory warning.
    ("t4-8gb-4cpu", "indextts2"): ("plan", "t4-8gb", "torch/cuda/fp16", ("drop emotion", "mmap"), True),
    ("gtx1050-16gb", "piper"): ("plan", "low-vram-gpu", "torch/cuda/fp32", (), False),
    ("gtx1050-16gb", "kokoro-82m"): ("plan", "low-vram-gpu", "torch/cuda/fp32", (), False),
    # Does not fit the 2 GB card (2.1 GB after loading alone): the CPU profile takes it, with VRAM numbers.
    ("gtx1050-16gb", "xtts-v2"): ("plan", "cpu-only", "torch/cpu/fp32", (), False),
    ("gtx1050-16gb", "indextts2"): ("refuse", ["on the GPU: needs", "VRAM", "GTX 1050", "GiB RAM"]),
    ("rtx3070-8gb", "piper"): ("plan", "gpu-16gb", "torch/cuda/bf16", (), False),
    ("rtx3070-8gb", "kokoro-82m"): ("plan", "gpu-16gb", "torch/cuda/fp16", (), False),
    ("rtx3070-8gb", "xtts-v2"): ("plan", "gpu-16gb", "torch/cuda/fp16", (), False),
    ("rtx3070-8gb", "indextts2"): ("plan", "gpu-16gb", "torch/cuda/fp16", ("drop emotion", "offload w2v-bert"),
                                   False),
    ("rtx3060-16gb", "piper"): ("plan", "gpu-16gb", "torch/cuda/bf16", (), False),
    ("rtx3060-16gb", "kokoro-82m"): ("plan", "gpu-16gb", "torch/cuda/fp16", (), False),
    ("rtx3060-16gb", "xtts-v2"): ("plan", "gpu-16gb", "torch/cuda/fp16", (), False),
    ("rtx3060-16gb", "indextts2"): ("plan", "gpu-16gb", "torch/cuda/fp16", (), False),
    ("server-8cpu-8gb", "piper"): ("plan", "cpu-only", "onnx/cpu/fp32", (), False),
    ("server-8cpu-8gb", "kokoro-82m"): ("plan", "cpu-only", "onnx/cpu/int8", (), False),
    ("server-8cpu-8gb", "xtts-v2"): ("plan", "cpu-only", "torch/cpu/fp32", (), False),
    ("server-8cpu-8gb", "indextts2"): ("refuse", ["the machine has 7.7 GiB effective"]),
    ("h100x8-2tb", "piper"): ("plan", "gpu-large", "torch/cuda/bf16", (), False),
    ("h100x8-2tb", "kokoro-82m"): ("plan", "gpu-large", "torch/cuda/fp16", (), False),
    ("h100x8-2tb", "xtts-v2"): ("plan", "gpu-large", "torch/cuda/fp16", (), False),
    ("h100x8-2tb", "indextts2"): ("plan", "gpu-large", "torch/cuda/fp16", (), False),
    ("jetson-agx-orin-r36", "piper"): ("plan", "jetson-edge", "torch/cuda/fp16", (), False),
    ("jetson-agx-orin-r36", "kokoro-82m"): ("plan", "jetson-edge", "torch/cuda/fp16", (), False),
    ("jetson-agx-orin-r36", "xtts-v2"): ("plan", "jetson-edge", "torch/cuda/fp16", (), False),
    ("jetson-agx-orin-r36", "indextts2"): ("plan", "jetson-edge", "torch/cuda/fp16", (), False),
}


def run_plan(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["plan", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(("machine", "model"), list(EXPECTED), ids=lambda v: v)
def test_each_family_on_each_machine(machine: str, model: str, capsys: pytest.CaptureFixture[str]) -> None:
    expected = EXPECTED[(machine, model)]
    code, out, err = run_plan(capsys, "--facts", str(FACTS / f"{machine}.json"), "--model", model, "--json")
    if expected[0] == "refuse":
        assert code == 1, f"{MACHINES[machine]}: {model} should be refused; got {out[:300]}"
        assert f"{model} does not fit this machine" in err
        for phrase in expected[1]:
            assert phrase in err, f"{MACHINES[machine]}: {phrase!r} not in {err}"
        assert "needs a machine with >= " in err or "needs an NVIDIA GPU with >= " in err  # the smallest class
        return
    _, profile, placement, reductions, tight = expected
    assert code == 0, f"{MACHINES[machine]}: {err}"
    plan = json.loads(out)
    fit = plan["model_fit"]
    assert (plan["model"], plan["env"]["TAILOR_MODEL"]) == (model, model)
    assert plan["profile"] == profile, MACHINES[machine]
    assert f"{plan['engine']}/{plan['device']}/{plan['precision']}" == placement, MACHINES[machine]
    assert tuple(fit["reductions"]) == reductions, MACHINES[machine]
    assert fit["fits"] and fit["tight"] == tight
    assert plan["env"]["TAILOR_MODEL_DROP"] == ",".join(fit["dropped"])
    assert plan["env"]["TAILOR_MODEL_OFFLOAD"] == ",".join(fit["offloaded"])
    assert plan["env"]["TAILOR_MODEL_MMAP"] == ("true" if fit["mmap"] else "false")
    for step in fit["steps"]:  # every reduction is explained with numbers
        assert "GiB" in step["detail"] and "->" in step["detail"]
    if reductions:
        assert any(w.startswith(f"{model} is planned with reductions") for w in plan["warnings"])
        assert any(r.startswith(f"model {model} reduction 1:") for r in plan["reasons"])
    if tight:
        assert any(w.startswith(f"memory is tight for {model}") for w in plan["warnings"])
    licence = [w for w in plan["warnings"] if "not licensed for commercial use" in w]
    assert bool(licence) == (model in ("xtts-v2", "indextts2"))
    if model == "xtts-v2":
        assert "Coqui Public Model License" in licence[0]
    if not plan["memory_budget"]["totals"][0]["fits"] or not plan["memory_budget"]["load_peak"]["fits"]:
        pytest.fail(f"{MACHINES[machine]}: {model} planned over budget: {plan['memory_budget']}")


def test_xtts_on_the_gtx1050_says_why_it_left_the_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_plan(capsys, "--facts", str(FACTS / "gtx1050-16gb.json"), "--model", "xtts-v2")
    assert code == 0
    assert "low-vram-gpu: xtts-v2 does not fit the GPU: needs 2.4 GiB VRAM" in err
    assert "free on the NVIDIA GeForce GTX 1050" in err and "the plan uses profile cpu-only" in err
    assert "non-commercial" in err  # the licence, in the human output too
    assert "model xtts-v2" in out and "engine torch on cpu, fp32" in out


@pytest.mark.parametrize("machine", list(MACHINES))
def test_piper_is_the_default_and_unchanged(machine: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, default_out, _ = run_plan(capsys, "--facts", str(FACTS / f"{machine}.json"), "--json")
    assert code == 0
    code, piper_out, _ = run_plan(capsys, "--facts", str(FACTS / f"{machine}.json"), "--model", "piper", "--json")
    assert code == 0
    default, piper = json.loads(default_out), json.loads(piper_out)
    assert default["model"] == "piper" and default["env"] == piper["env"]
    assert default["memory_budget"] == piper["memory_budget"]
    assert default["model_fit"]["steps"] == [] and default["env"]["TAILOR_MODEL"] == "piper"


def test_explain_shows_each_reduction_with_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_plan(capsys, "--facts", str(FACTS / "rtx3070-8gb.json"), "--model", "indextts2", "--explain")
    assert code == 0
    assert "Model indextts2" in out and "drop emotion" in out and "offload w2v-bert" in out
    assert "model placement: torch on cuda, fp16; without emotion; w2v-bert on the CPU" in out
    code, out, _ = run_plan(capsys, "--facts", str(FACTS / "rtx3070-8gb.json"), "--model", "indextts2", "--json")
    rows = {row["item"]: row for row in json.loads(out)["memory_budget"]["rows"]}
    host = rows["model in host RAM (per worker)"]  # the budget's row for the offloaded weights and the residue
    assert host["pool"] == "ram" and "w2v-bert on the CPU" in host["detail"] and "engine process" in host["detail"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)


def test_the_real_cli_exit_codes() -> None:
    vps = str(FACTS / "vps-2cpu-4gb.json")
    planned = _cli("plan", "--facts", vps, "--model", "kokoro-82m", "--json")
    assert planned.returncode == 0, planned.stderr
    assert json.loads(planned.stdout)["precision"] == "int8"
    refused = _cli("plan", "--facts", vps, "--model", "indextts2", "--json")
    assert refused.returncode == 1 and refused.stdout == ""
    assert "indextts2 does not fit this machine" in refused.stderr and "Traceback" not in refused.stderr
    unknown = _cli("plan", "--facts", vps, "--model", "kokoro", "--json")
    assert unknown.returncode == 2 and "did you mean 'kokoro-82m'?" in unknown.stderr


def test_a_model_list_is_planned_for_its_first_family_and_served_whole() -> None:
    """TAILOR_MODEL=kokoro-82m,piper: the runtime serves both; the plan sizes the first (its
    precision, no Piper fallback) and writes the whole list into the runtime's environment."""
    vps = str(FACTS / "vps-2cpu-4gb.json")
    listed = _cli("plan", "--facts", vps, "--model", "kokoro-82m,piper", "--json")
    assert listed.returncode == 0, listed.stderr
    plan = json.loads(listed.stdout)
    assert plan["env"]["TAILOR_MODEL"] == "kokoro-82m,piper" and plan["precision"] == "int8"
    assert plan["model_fit"]["family"] == "kokoro-82m" and plan["env"]["TAILOR_FALLBACK"] == ""
    piper_first = json.loads(_cli("plan", "--facts", vps, "--model", "piper,kokoro-82m", "--json").stdout)
    assert piper_first["env"]["TAILOR_MODEL"] == "piper,kokoro-82m" and piper_first["model_fit"]["family"] == "piper"
    unknown = _cli("plan", "--facts", vps, "--model", "piper,kokoro", "--json")
    assert unknown.returncode == 2 and "did you mean 'kokoro-82m'?" in unknown.stderr
