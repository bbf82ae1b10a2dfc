"""The rendered systemd unit passes the real `systemd-analyze verify` without warnings."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.plan.planner import make_plan
from orchestrator.probe.facts import HostFacts
from orchestrator.render.renderer import RenderOptions, render, write_rendered
from orchestrator.select.profiles import load_profiles
from orchestrator.select.selection import select_profile

FACTS = Path(__file__).resolve().parents[1] / "fixtures" / "facts"


@pytest.mark.parametrize("machine", ["cpu-4core-16gb", "rtx3060-16gb"])
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path, machine: str) -> None:
    binary = shutil.which("systemd-analyze")
    if binary is None:
        pytest.skip("systemd-analyze is not installed")
    host = HostFacts.from_json_file(FACTS / f"{machine}.json")
    plan = make_plan(host, select_profile(host, load_profiles()), environ={})
    options = RenderOptions(python=sys.executable, env_file=str(tmp_path / "tailor-runtime.env"))
    write_rendered(render(plan, ["systemd"], options), tmp_path)
    result = subprocess.run([binary, "verify", str(tmp_path / "tailor-runtime.service")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    for complaint in ("Unknown key", "Failed to parse", "ignoring", "not executable"):
        assert complaint not in result.stderr, result.stderr


def _unit(tmp_path: Path, python: str) -> str:
    host = HostFacts.from_json_file(FACTS / "cpu-4core-16gb.json")
    plan = make_plan(host, select_profile(host, load_profiles()), environ={})
    files = render(plan, ["systemd"], RenderOptions(python=python, env_file=str(tmp_path / "tailor-runtime.env")))
    return files["tailor-runtime.service"]


def _directives(unit: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    return {k: v for k, v in pairs}


def test_unit_stops_a_crash_loop_and_limits_tasks(tmp_path: Path) -> None:
    d = _directives(_unit(tmp_path, "/opt/tailor/venv/bin/python"))
    assert d["StartLimitBurst"] == "5" and d["StartLimitIntervalSec"] == "300"
    assert d["Restart"] == "on-failure" and int(d["TasksMax"]) >= 512
    # No directory that an install does not create: systemd makes the state directory itself.
    assert d["StateDirectory"] == "tailor" and d["WorkingDirectory"] == "%S/tailor"
    assert d["DynamicUser"] == "yes" and d["ProtectHome"] == "yes"


def test_an_install_under_a_home_directory_runs_as_its_owner(tmp_path: Path) -> None:
    # A clone's venv under /root: a DynamicUser could not even reach the interpreter.
    d = _directives(_unit(tmp_path, "/root/tailor/.venv/bin/python"))
    assert "DynamicUser" not in d and d["User"] == "root" and d["ProtectHome"] == "read-only"


def test_unit_from_an_install_outside_home_verifies(tmp_path: Path) -> None:
    binary = shutil.which("systemd-analyze")
    if binary is None:
        pytest.skip("systemd-analyze is not installed")
    install = tmp_path / "opt" / "bin"
    install.mkdir(parents=True)
    python = install / "python"
    shutil.copy("/bin/true", python)  # a real executable at an install path that is not in a home
    unit = _unit(tmp_path, str(python))
    assert f"ExecStart={python} -m runtime" in unit and "DynamicUser=yes" in unit
    (tmp_path / "tailor-runtime.service").write_text(unit, encoding="utf-8")
    result = subprocess.run([binary, "verify", str(tmp_path / "tailor-runtime.service")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "Unknown key" not in result.stderr and "ignoring" not in result.stderr, result.stderr
