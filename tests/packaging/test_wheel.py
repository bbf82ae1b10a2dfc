"""A non-editable `pip install` of the wheel into a fresh virtualenv works from any directory,
with templates/ and profiles/ shipped inside the wheel."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        check=True,
    )
    (whl,) = out.glob("tailor_deploy-*.whl")
    return whl


def test_wheel_ships_templates_and_profiles(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("orchestrator/_data/templates/") and n.endswith(".j2") for n in names)
    profiles = [n for n in names if n.startswith("orchestrator/_data/profiles/") and n.endswith(".yaml")]
    assert len(profiles) >= 5, profiles
    assert "runtime/settings.py" in names
    # The core install stays light: torch and the runtime stack are extras only.
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [
        line for line in zipfile.ZipFile(wheel).read(meta).decode().splitlines() if line.startswith("Requires-Dist:")
    ]
    core = [r for r in requires if "extra ==" not in r]
    assert not any(("torch" in r) or ("onnxruntime" in r) for r in core), core


def test_fresh_venv_install_runs_from_another_directory(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    pip_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
        check=True,
        env=pip_env,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    deploy = str(env_dir / "bin" / "deploy")
    facts = subprocess.run(
        [deploy, "probe", "--json", "--no-docker"], cwd=elsewhere, env=pip_env, check=True, capture_output=True, text=True
    ).stdout
    facts_file = elsewhere / "facts.json"
    facts_file.write_text(facts)
    plan = subprocess.run(
        [deploy, "plan", "--facts", str(facts_file), "--json"],
        cwd=elsewhere, env=pip_env, check=True, capture_output=True, text=True,
    ).stdout
    assert json.loads(plan)["profile"]
    out = elsewhere / "rendered"
    subprocess.run(
        [deploy, "render", "--facts", str(facts_file), "--out", str(out)],
        cwd=elsewhere, env=pip_env, check=True, capture_output=True, text=True,
    )
    assert (out / "docker-compose.yml").is_file()
    assert (out / ".env").is_file()
    # The systemd unit runs the installed package's interpreter, not a clone's, and verifies.
    unit = (out / "tailor-runtime.service").read_text()
    assert f"ExecStart={env_dir / 'bin' / 'python'} -m runtime" in unit, unit
    analyze = shutil.which("systemd-analyze")
    if analyze is not None:
        verified = subprocess.run([analyze, "verify", str(out / "tailor-runtime.service")],
                                  capture_output=True, text=True, timeout=60, check=False)
        assert verified.returncode == 0, verified.stderr
