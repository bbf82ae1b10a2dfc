"""Docker backend decisions for launch safety (pure): identity, restart policy, pids, network checks.

The same behaviour runs for real in tests/docker/test_launch_safety_docker.py; these rows cover
inspect results a test engine cannot produce on demand (a bridge container without an address or
without its port published).
"""

from __future__ import annotations

import dataclasses

import pytest

from orchestrator.launch.docker_backend import ENGINE_RESTARTS, published_problem, run_options
from orchestrator.launch.spec import LaunchSpec

SPEC = LaunchSpec(profile="cpu-only", image="tailor-runtime:0.1.0-cpu", flavor="cpu",
                  env=(("TAILOR_PORT", "8000"),), port=8000, pids_limit=640)


def test_container_carries_instance_restart_policy_and_pids_limit() -> None:
    opts = run_options(SPEC, "/srv/a", "feedface00000000")
    assert opts["environment"]["TAILOR_INSTANCE_ID"] == "feedface00000000"
    assert opts["labels"] == {"io.tailor.deployment": "/srv/a", "io.tailor.instance": "feedface00000000"}
    # Docker repairs a crash even with no supervisor; a clean stop is never restarted.
    assert opts["restart_policy"] == {"Name": "on-failure", "MaximumRetryCount": ENGINE_RESTARTS}
    assert opts["pids_limit"] == 640


def _attrs(networks: dict[str, dict[str, str]], ports: dict[str, object] | None) -> dict[str, object]:
    return {"NetworkSettings": {"Networks": networks, "Ports": ports}}


@pytest.mark.parametrize(("attrs", "problem"), [
    (_attrs({"bridge": {"IPAddress": "172.17.0.2"}}, {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8000"}]}),
     ""),
    (_attrs({}, {}), "the container has no network address (networks: none)"),
    (_attrs({"bridge": {"IPAddress": ""}}, {}), "the container has no network address (networks: bridge)"),
    (_attrs({"bridge": {"IPAddress": "172.17.0.2"}}, {"8000/tcp": None}),
     "port 8000/tcp is not published on the host"),
], ids=["published", "no-network", "no-address", "not-published"])
def test_a_started_bridge_container_without_network_or_port_is_named(attrs: dict[str, object], problem: str) -> None:
    assert published_problem(attrs, SPEC) == problem


def test_host_network_needs_no_published_port() -> None:
    assert published_problem(_attrs({}, None), dataclasses.replace(SPEC, network_mode="host")) == ""
