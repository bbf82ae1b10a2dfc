"""What the CLI prints: sizes compared in one sentence read differently when they differ, and
tables never cut a value (issue 22: `1.5 GiB < 1.5 GiB required`, `prof…` at 80 columns)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from orchestrator.cli import output
from orchestrator.cli.app import main
from orchestrator.units import format_size, format_sizes
from tests.helpers import deploy

FACTS = Path(__file__).resolve().parents[1] / "fixtures" / "facts" / "cpu-4core-16gb.json"
MIB = 2**20


@pytest.fixture
def small_host(tmp_path: Path) -> Path:
    """The 4-core host with 1,500 MiB of memory: 36 MiB short of cpu-only's 1,536 MiB."""
    data = json.loads(FACTS.read_text())
    for key in ("total_bytes", "available_bytes", "effective_total_bytes", "effective_available_bytes"):
        data["memory"][key] = 1500 * MIB
    path = tmp_path / "small.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(("sizes", "shown"), [
    ((1500 * MIB, 1536 * MIB), ("1.46 GiB", "1.50 GiB")),
    ((7.5 * 2**30, 8 * 2**30), ("7.5 GiB", "8.0 GiB")),
    ((412 * MIB, 750 * MIB, 12 * 2**30), ("412.0 MiB", "750.0 MiB", "12.0 GiB")),
    ((2**30, 2**30), ("1.0 GiB", "1.0 GiB")),  # equal sizes may read equal
    ((2**30, 2**30 + 1), ("1.000 GiB (1,073,741,824 bytes)", "1.000 GiB (1,073,741,825 bytes)")),
])
def test_compared_sizes_read_differently_when_they_differ(sizes: tuple[float, ...], shown: tuple[str, ...]) -> None:
    assert format_sizes(*sizes) == shown
    assert format_size(1536 * MIB) == "1.5 GiB"  # a lone size keeps its one decimal


def test_a_piped_table_is_plain_and_whole(small_host: Path) -> None:
    res = deploy("profiles", "--facts", str(small_host))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "…" not in res.stdout and "│" not in res.stdout
    assert lines[1].split() == ["profile", "priority", "engine/device", "verdict", "why"]
    cpu = next(line for line in lines if line.startswith("cpu-only "))
    assert cpu.endswith("effective memory 1.46 GiB < 1.50 GiB required; change: needs 36.0 MiB more RAM")
    gpu = next(line for line in lines if line.startswith("gpu-large "))
    assert "(libnvidia-ml.so.1 not found)" in gpu or "none reported" in gpu


def test_a_table_on_an_80_column_terminal_wraps_and_cuts_nothing(small_host: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(output, "_stdout", Console(file=screen, width=80, force_terminal=True, color_system=None,
                                                   soft_wrap=True, highlight=False))
    assert main(["profiles", "--facts", str(small_host)]) == 0
    text = screen.getvalue()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    names = [line.split("│")[1].strip() for line in text.splitlines() if line.count("│") >= 5]
    for profile in ("gpu-large", "gpu-16gb", "t4-8gb", "jetson-edge", "jetson-cpu", "low-vram-gpu", "cpu-only"):
        assert profile in names  # whole, on one line of its column
    assert "profile" in text.splitlines()[2]
    why = "".join(line.split("│")[5].strip() for line in text.splitlines() if line.count("│") >= 5)
    assert "(libnvidia-ml.so.1notfound)" in why.replace(" ", "")  # wrapped or folded, never cut


def test_an_a100_in_mig_mode_without_instances_is_named_by_deploy_auto(tmp_path: Path) -> None:
    import socket

    data = json.loads((FACTS.parent / "a100-mig.json").read_text())
    data["gpus"] = [g for g in data["gpus"] if g.get("mig_parent_index") is None]  # MIG on, no instance made
    facts = tmp_path / "a100-mig-no-instance.json"
    facts.write_text(json.dumps(data))
    plan = json.loads(deploy("plan", "--facts", str(facts), "--json").stdout)
    said = ("GPU 0 (NVIDIA A100-SXM4-40GB) is not used: MIG is enabled but no MIG instance exists "
            "(create one with `nvidia-smi mig -cgi PROFILE -C`)")
    assert plan["device"] == "cpu" and said in plan["warnings"]
    with socket.socket() as busy:  # `auto` stops at the busy port, after saying what it planned
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        res = deploy("auto", "--facts", str(facts), "--backend", "process", "--port", str(busy.getsockname()[1]),
                     "--state-dir", str(tmp_path / "state"), env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert res.returncode == 1 and f"warning: {said}" in " ".join(res.stderr.split()), res.stderr


def _fleet_plan_on(width: int, monkeypatch: pytest.MonkeyPatch) -> str:
    screen = io.StringIO()
    monkeypatch.setattr(output, "_stdout", Console(file=screen, width=width, force_terminal=True, color_system=None,
                                                   soft_wrap=True, highlight=False))
    assert main(["fleet", "plan", "--facts-dir", str(FACTS.parent)]) == 0
    return screen.getvalue()


def test_a_fleet_table_too_wide_for_80_columns_is_one_record_per_host_with_every_name_whole(
        monkeypatch: pytest.MonkeyPatch) -> None:
    hosts = sorted(p.stem for p in FACTS.parent.glob("*.json"))
    text = _fleet_plan_on(80, monkeypatch)
    lines = [line.rstrip() for line in text.splitlines()]
    assert "…" not in text and max(len(line) for line in lines) <= 80
    assert lines[0] == f"Fleet plan ({len(hosts)} hosts)"
    assert [line.split()[1] for line in lines if line.split()[:1] == ["host:"]] == hosts
    profiles = [line.split()[1] for line in lines if line.split()[:1] == ["profile:"]]
    assert len(profiles) == len(hosts) and {"low-vram-gpu", "gpu-16gb", "cpu-only", "jetson-cpu"} <= set(profiles)
    assert any(line.split() == ["workers", "x", "threads:", "16x2"] for line in lines)  # h100x8-2tb
    # A terminal wide enough for every column's longest word keeps the table.
    wide = _fleet_plan_on(400, monkeypatch)
    assert "host:" not in wide and "┃ host" in wide and "cgroup-4cpu-on-64core" in wide
