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


# -- the unit follows the target's facts and the options, never the machine that renders ----------

def _refuse(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("the render looked at the filesystem of the machine it runs on")


def test_the_render_looks_at_nothing_on_the_machine_it_runs_on(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import pwd

    from orchestrator.pipeline import render_options

    host = HostFacts.from_json_file(FACTS / "cpu-4core-16gb.json")
    plan = make_plan(host, select_profile(host, load_profiles()), environ={})
    with monkeypatch.context() as sealed:
        for name in ("realpath", "exists", "lexists", "islink", "isfile", "isdir", "expanduser"):
            sealed.setattr(os.path, name, _refuse)
        for name in ("lstat", "readlink", "access"):
            sealed.setattr(os, name, _refuse)
        for name in ("resolve", "exists", "owner", "is_symlink", "readlink", "home", "cwd"):
            sealed.setattr(Path, name, _refuse)
        sealed.setattr(pwd, "getpwuid", _refuse)
        sealed.setattr(pwd, "getpwnam", _refuse)
        sealed.setattr(sys, "executable", "/root/clone/.venv/bin/python")  # never consulted either
        unit = render(plan, ["systemd"], render_options(host))["tailor-runtime.service"]
    d = _directives(unit)
    assert d["ExecStart"] == "/opt/tailor/venv/bin/python -m runtime" and d["DynamicUser"] == "yes"


INSTALL_OVER_PYENV = {"python": "/opt/tailor/venv/bin/python",
                      "python_real": "/root/.pyenv/versions/3.11.9/bin/python3.11", "home_owner": "root"}


@pytest.mark.parametrize(("install", "python", "user", "exec_start", "runs_as"), [
    (None, None, None, "/opt/tailor/venv/bin/python", "DynamicUser=yes"),
    (INSTALL_OVER_PYENV, None, None, "/opt/tailor/venv/bin/python", "User=root"),
    (INSTALL_OVER_PYENV, None, "dynamic", "/opt/tailor/venv/bin/python", "DynamicUser=yes"),
    ({"python": "/home/ana/tailor/.venv/bin/python", "python_real": "/usr/bin/python3.11", "home_owner": "ana"},
     None, None, "/home/ana/tailor/.venv/bin/python", "User=ana"),
    (INSTALL_OVER_PYENV, "/usr/local/bin/python3", None, "/usr/local/bin/python3", "DynamicUser=yes"),
    (None, "/srv/py/bin/python", "tts", "/srv/py/bin/python", "User=tts"),
], ids=["no-install-facts", "venv-over-pyenv", "forced-dynamic", "clone-in-home", "explicit-python", "explicit-user"])
def test_the_units_interpreter_and_user_follow_the_targets_facts_or_the_options(
        install: dict[str, str] | None, python: str | None, user: str | None, exec_start: str, runs_as: str) -> None:
    import dataclasses

    from orchestrator.pipeline import render_options
    from orchestrator.probe.facts import InstallFacts

    host = HostFacts.from_json_file(FACTS / "cpu-4core-16gb.json")
    host = dataclasses.replace(host, install=InstallFacts(**install) if install else None)
    plan = make_plan(host, select_profile(host, load_profiles()), environ={})
    unit = render(plan, ["systemd"], render_options(host, python=python, service_user=user))["tailor-runtime.service"]
    assert f"ExecStart={exec_start} -m runtime" in unit and runs_as in unit.splitlines()


def test_deploy_render_for_another_machine_does_not_use_this_machines_interpreter(tmp_path: Path) -> None:
    from tests.helpers import deploy

    res = deploy("render", "--facts", str(FACTS / "cpu-4core-16gb.json"), "--format", "systemd",
                 "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    unit = (tmp_path / "tailor-runtime.service").read_text()
    assert "ExecStart=/opt/tailor/venv/bin/python -m runtime" in unit and sys.executable not in unit


def test_a_live_probe_records_the_install_that_probed(tmp_path: Path) -> None:
    import json

    from tests.helpers import deploy

    facts = json.loads(deploy("probe", "--json", "--no-docker").stdout)
    assert facts["install"]["python"] == sys.executable
    res = deploy("render", "--format", "systemd", "--out", str(tmp_path))  # this machine: its own install
    assert res.returncode == 0, res.stderr
    assert f"ExecStart={sys.executable} -m runtime" in (tmp_path / "tailor-runtime.service").read_text()
