"""Every profile's rendered compose file passes the real `docker-compose config` (no daemon needed).

Uses Debian's docker-compose 1.29.2 at /usr/bin/docker-compose (or the one on PATH). Where it
is absent the test fails under CI=true and skips otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from orchestrator.plan.planner import make_plan
from orchestrator.probe.facts import HostFacts
from orchestrator.render.renderer import RenderOptions, render, write_rendered
from orchestrator.select.profiles import load_profiles
from orchestrator.select.selection import select_profile

FACTS = Path(__file__).resolve().parents[1] / "fixtures" / "facts"
MACHINES = ["rtx3060-16gb", "t4-8gb-4cpu", "cpu-4core-16gb", "gtx1050-16gb", "jetson-orin-nx-8gb"]


def compose_binary() -> str:
    found = "/usr/bin/docker-compose" if Path("/usr/bin/docker-compose").exists() else shutil.which("docker-compose")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("docker-compose is not installed; CI must install it (apt-get install docker-compose)")
        pytest.skip("docker-compose is not installed")
    return found


@pytest.mark.parametrize("network", ["bridge", "host"])
@pytest.mark.parametrize("machine", MACHINES)
def test_docker_compose_config_accepts_the_render(tmp_path: Path, machine: str, network: str) -> None:
    binary = compose_binary()
    host = HostFacts.from_json_file(FACTS / f"{machine}.json")
    plan = make_plan(host, select_profile(host, load_profiles()), environ={})
    write_rendered(render(plan, ["compose"], RenderOptions(network=network)), tmp_path)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    result = subprocess.run([binary, "-f", str(tmp_path / "docker-compose.yml"), "config"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, env=env, check=False)
    assert result.returncode == 0, result.stderr
    service = yaml.safe_load(result.stdout)["services"]["tailor-runtime"]
    # compose read the .env through env_file: the runtime's variables arrive in the container.
    assert service["environment"]["TAILOR_WORKERS"] == plan.env["TAILOR_WORKERS"]
    assert service["environment"]["TAILOR_ENGINE"] == plan.engine
    assert service["image"] == plan.container.image
    assert service["read_only"] is True and service["user"] == "10001:10001"
    if network == "host":
        assert service["network_mode"] == "host" and "ports" not in service
    else:
        port = service["ports"][0]  # compose 1.x prints the short form, v2 the long one
        host_ip = port["host_ip"] if isinstance(port, dict) else port.split(":")[0]
        assert host_ip == "127.0.0.1"
    if plan.container.gpu_count:
        assert service["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    if plan.container.runtime == "nvidia":
        assert service["runtime"] == "nvidia"
