"""`deploy fleet up / status / down` with the Docker backend on a fleet host, through real Ansible.

The host is a container of the registry-free base image with the test engine's socket mounted as
its ``/var/run/docker.sock``: the Tailor that Ansible installs on it drives that engine, so the
runtime container it starts is the host's sibling. The engine runs with ``--bridge=none``, so the
inventory sets ``tailor_network=host`` and the host shares the machine's network namespace: the
runtime answers on this machine's 127.0.0.1, from inside the host (the role's readiness check) and
from this test alike. `up` builds nothing new here: the runtime image of this session (the Docker
tier's fixture) is already in the engine, as an air-gapped host's would be.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import docker
import pytest

from tests.fleet.conftest import connection_vars, deploy_fleet, rows_by_host
from tests.helpers import free_port

pytestmark = [pytest.mark.docker, pytest.mark.fleet, pytest.mark.slow]

HOST = "fleet-d"


@dataclass(frozen=True)
class DockerHost:
    inventory: Path
    fleet_dir: Path
    port: int
    client: docker.DockerClient

    def args(self, command: str, *rest: str) -> list[str]:
        logs = ["--fleet-dir", str(self.fleet_dir)] if command in ("status", "down") else []
        return [command, "-i", str(self.inventory), *logs, *rest, "--json"]

    def runtime_container(self) -> docker.models.containers.Container | None:
        try:
            return self.client.containers.get(f"tailor-runtime-{self.port}")
        except docker.errors.NotFound:
            return None


@pytest.fixture(scope="module")
def docker_host(docker_client, base_image: str, runtime_image: str, tmp_path_factory) -> Iterator[DockerHost]:
    engine = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if urlsplit(engine).scheme != "unix":
        pytest.skip(f"the test engine is not on a unix socket ({engine})")
    port = free_port()
    name = f"tailor-{HOST}-{uuid.uuid4().hex[:6]}"
    host = docker_client.containers.run(
        base_image, ["sleep", "infinity"], name=name, detach=True, init=True, network_mode="host",
        volumes={urlsplit(engine).path: {"bind": "/var/run/docker.sock", "mode": "rw"}},
        labels={"io.tailor.fleet-test": name})
    root = tmp_path_factory.mktemp("fleet-docker")
    inventory = root / "hosts.ini"
    inventory.write_text("\n".join([
        "[docker_hosts]",
        f"{HOST} ansible_host={name} tailor_backend=docker tailor_network=host "
        f"tailor_base_image={base_image} tailor_port={port}",
        "", *connection_vars()]) + "\n")
    fleet = DockerHost(inventory, root / "fleet-dir", port, docker_client)
    try:
        yield fleet
    finally:
        runtime = fleet.runtime_container()
        if runtime is not None:
            runtime.remove(force=True)
        host.remove(force=True)


def _speak(port: int) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/audio/speech", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"model": "tts-1", "voice": "alloy", "input": "Hello from a fleet host.",
                         "response_format": "wav"}).encode())
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, response.read()


def test_up_runs_the_runtime_as_a_container_on_the_hosts_engine(docker_host: DockerHost, wheelhouse: Path) -> None:
    rc, data, err = deploy_fleet(*docker_host.args("up", "--fleet-dir", str(docker_host.fleet_dir),
                                                   "--wheelhouse", str(wheelhouse)))
    assert rc == 0, err
    row = rows_by_host(data)[HOST]
    assert (row["outcome"], row["state"], row["ready"], row["backend"]) == ("ok", "RUNNING", True, "docker"), row
    runtime = docker_host.runtime_container()
    assert runtime is not None and runtime.status == "running"
    assert runtime.attrs["HostConfig"]["NetworkMode"] == "host"
    assert runtime.image.tags and runtime.image.tags[0].startswith("tailor-runtime:")
    status, body = _speak(docker_host.port)
    assert status == 200 and body[:4] == b"RIFF" and len(body) > 20_000


def test_status_then_down_removes_the_container(docker_host: DockerHost) -> None:
    rc, data, err = deploy_fleet(*docker_host.args("status"))
    assert rc == 0, err
    row = rows_by_host(data)[HOST]
    assert row["state"] == "RUNNING" and row["ready"] is True and row["backend"] == "docker", row

    rc, _data, err = deploy_fleet(*docker_host.args("down"))
    assert rc == 0, err
    assert docker_host.runtime_container() is None
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        _speak(docker_host.port)
