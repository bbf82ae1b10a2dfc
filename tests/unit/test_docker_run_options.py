"""LaunchSpec -> docker run options (pure), and how a missing daemon is explained."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from orchestrator.launch.docker_backend import daemon_status, run_options
from orchestrator.launch.spec import LaunchSpec

SPEC = LaunchSpec(
    profile="t4-8gb", image="tailor-runtime:0.1.0-cuda", flavor="cuda",
    env=(("TAILOR_HOST", "127.0.0.1"), ("TAILOR_PORT", "8000"), ("TAILOR_WORKERS", "2")), port=8000,
    memory_limit_bytes=6 * 1024**3, cpus=3.5, shm_size_bytes=256 * 1024**2, gpu_count=1, gpu_device_ids=("0",),
)


def test_run_options_bridge_with_gpu() -> None:
    opts = run_options(SPEC, "/srv/tailor")
    assert opts["ports"] == {"8000/tcp": ("127.0.0.1", 8000)}
    assert opts["environment"]["TAILOR_HOST"] == "0.0.0.0"  # inside its own namespace, published on loopback only
    assert opts["mem_limit"] == opts["memswap_limit"] == 6 * 1024**3
    assert opts["nano_cpus"] == 3_500_000_000 and opts["shm_size"] == 256 * 1024**2
    (request,) = opts["device_requests"]
    assert request["DeviceIDs"] == ["0"] and request["Capabilities"] == [["gpu"]]
    assert opts["user"] == "10001:10001" and opts["read_only"] is True and opts["cap_drop"] == ["ALL"]
    assert opts["security_opt"] == ["no-new-privileges"] and "/tmp" in opts["tmpfs"]
    assert opts["labels"]["io.tailor.deployment"] == "/srv/tailor"
    assert opts["healthcheck"]["test"][-2:] == ["--port", "8000"]
    assert "runtime" not in opts


def test_run_options_host_network_and_jetson_runtime() -> None:
    spec = dataclasses.replace(SPEC, flavor="l4t", runtime="nvidia", gpu_count=0, gpu_device_ids=(),
                               network_mode="host")
    opts = run_options(spec, "x")
    assert "ports" not in opts and opts["network_mode"] == "host"
    assert opts["environment"]["TAILOR_HOST"] == "127.0.0.1"
    assert opts["runtime"] == "nvidia" and "device_requests" not in opts


def test_no_daemon_is_explained(tmp_path: Path) -> None:
    status = daemon_status({"DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"})
    assert not status.reachable and status.reason.startswith("no Docker daemon:")
    assert "nothing.sock" in status.reason
