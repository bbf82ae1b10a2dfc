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
    options = RenderOptions(python=sys.executable, env_file=str(tmp_path / "tailor-runtime.env"),
                            working_dir=str(tmp_path))
    write_rendered(render(plan, ["systemd"], options), tmp_path)
    result = subprocess.run([binary, "verify", str(tmp_path / "tailor-runtime.service")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    for complaint in ("Unknown key", "Failed to parse", "ignoring", "not executable"):
        assert complaint not in result.stderr, result.stderr
