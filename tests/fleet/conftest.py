"""Fleet tier: Docker containers as Ansible hosts on the private test engine.

The engine, the registry-free base image and the cp311 wheelhouse are the Docker tier's own
session fixtures (tests/docker/conftest.py), imported here so both tiers share one wheelhouse
download and one base image.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from tests.docker.conftest import base_image, docker_client, runtime_image, wheelhouse  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[2]
HOSTS_DIR = ROOT / "tests" / "fixtures" / "hosts"
RECORDED = "jetson-orin-nx-r35"

# name -> docker run limits: each host has different limits, each its own network namespace.
LIMITS = {
    "fleet-a": {"nano_cpus": 1_000_000_000, "mem_limit": "2g"},
    "fleet-b": {"nano_cpus": 2_000_000_000, "mem_limit": "4g"},
    "fleet-c": {"cpuset_cpus": "0", "mem_limit": "3g"},
}


@dataclass(frozen=True)
class TestFleet:
    inventory: Path
    """Inventory directory (hosts.ini, group_vars/, host_vars/)."""
    fleet_dir: Path
    containers: dict[str, str]
    """Inventory name -> container name."""
    client: docker.DockerClient


def _put_tree(container, src: Path, dest: str) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(src, arcname=Path(dest).name)
    container.exec_run(["mkdir", "-p", str(Path(dest).parent)])
    container.put_archive(str(Path(dest).parent), buffer.getvalue())


@pytest.fixture(scope="session")
def test_fleet(docker_client, base_image: str, tmp_path_factory) -> Iterator[TestFleet]:  # noqa: F811
    """Three bare hosts (python3 + venv only, --network none) and a recorded Jetson tree on fleet-a."""
    suffix = uuid.uuid4().hex[:6]
    containers: dict[str, str] = {}
    started = []
    try:
        for name, limits in LIMITS.items():
            cname = f"tailor-{name}-{suffix}"
            started.append(docker_client.containers.run(
                base_image, ["sleep", "infinity"], name=cname, hostname=name, detach=True,
                network_mode="none", labels={"io.tailor.fleet-test": suffix}, init=True, **limits))
            containers[name] = cname
        _put_tree(started[0], HOSTS_DIR / RECORDED, f"/opt/recorded/{RECORDED}")
        root = tmp_path_factory.mktemp("fleet")
        inventory = root / "inventory"
        (inventory / "group_vars").mkdir(parents=True)
        (inventory / "host_vars").mkdir()
        lines = ["[tts]"]
        lines += [f"{name} ansible_host={cname}" for name, cname in containers.items()]
        lines += ["", "[recorded]",
                  f"jetson-recorded ansible_host={containers['fleet-a']} "
                  f"tailor_probe_root=/opt/recorded/{RECORDED}",
                  "", "[gone]", f"fleet-gone ansible_host=tailor-fleet-gone-{suffix}", "", *connection_vars()]
        (inventory / "hosts.ini").write_text("\n".join(lines) + "\n")
        yield TestFleet(inventory, root / "fleet-dir", containers, docker_client)
    finally:
        for container in started:
            container.remove(force=True)


def deploy_fleet(*args: str, timeout: float = 540) -> tuple[int, dict, str]:
    """``deploy fleet ARGS`` in a subprocess: (exit code, its --json output or {}, stderr)."""
    argv = [sys.executable, "-m", "orchestrator", "fleet", *args]
    t0 = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=dict(os.environ), timeout=timeout,
                          check=False)
    print(f"deploy fleet {' '.join(args[:1])}: {time.monotonic() - t0:.1f} s, exit {proc.returncode}")
    assert "Traceback" not in proc.stderr, proc.stderr
    data = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
    return proc.returncode, data, proc.stderr


def rows_by_host(data: dict) -> dict[str, dict]:
    return {r["host"]: r for r in data["hosts"]}


def connection_vars() -> list[str]:
    """Inventory ``[all:vars]`` lines: Ansible reaches container hosts through the test engine."""
    docker_host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    return ["[all:vars]", "ansible_connection=community.docker.docker_api",
            f"ansible_docker_docker_host={docker_host}", "ansible_docker_timeout=60", "ansible_user=root",
            "ansible_python_interpreter=/usr/bin/python3"]


def with_inventory(test_fleet: TestFleet, command: str, *args: str) -> list[str]:
    return [command, "-i", str(test_fleet.inventory / "hosts.ini"), *args]


def in_host(test_fleet: TestFleet, host: str, *argv: str) -> tuple[int, str]:
    container = test_fleet.client.containers.get(test_fleet.containers[host])
    code, output = container.exec_run(list(argv))
    return code, output.decode(errors="replace")


def readyz_from_inside(test_fleet: TestFleet, host: str) -> int:
    """HTTP status of /readyz on the host's own loopback (0 when nothing answers)."""
    code, output = in_host(test_fleet, host, "python3", "-c",
                           "import urllib.request, urllib.error\n"
                           "try:\n print(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=5).status)\n"
                           "except urllib.error.HTTPError as e:\n print(e.code)\n"
                           "except OSError:\n print(0)")
    assert code == 0, output
    return int(output.strip().splitlines()[-1])


def host_status(test_fleet: TestFleet, host: str) -> dict:
    """The host's own ``deploy status --json`` (printed whatever its verdict, exit 0 or 1)."""
    container = test_fleet.client.containers.get(test_fleet.containers[host])
    _code, (stdout, stderr) = container.exec_run(
        ["/opt/tailor/venv/bin/deploy", "status", "--json", "--state-dir", "/opt/tailor/state"], demux=True)
    text = (stdout or b"").decode(errors="replace")
    assert text.strip().startswith("{"), text + (stderr or b"").decode(errors="replace")
    return json.loads(text)


def runtime_processes(test_fleet: TestFleet, host: str) -> str:
    """The command lines of every Tailor process on the host (supervisor or runtime), one a line."""
    code, output = in_host(test_fleet, host, "python3", "-c",
                           "import os, pathlib\n"
                           "for p in pathlib.Path('/proc').glob('[0-9]*/cmdline'):\n"
                           "  if p.parent.name == str(os.getpid()): continue\n"
                           "  try: line = p.read_bytes().replace(b'\\0', b' ').decode()\n"
                           "  except OSError: continue\n"
                           "  if 'orchestrator' in line or '-m runtime' in line: print(line)")
    assert code == 0, output
    return output.strip()


def reset_inventory_vars(test_fleet: TestFleet) -> None:
    """Remove every group_vars/host_vars file a test wrote: the inventory's own defaults again."""
    for folder in ("group_vars", "host_vars"):
        for path in (test_fleet.inventory / folder).glob("*.yml"):
            path.unlink()

