"""Docker tier: a real engine (DOCKER_HOST, e.g. from scripts/docker-test-env.sh).

Without a daemon these tests skip, unless ``TAILOR_REQUIRE_DOCKER=1``: then they fail, so a
CI job that meant to run them cannot pass silently.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import psutil
import pytest

from orchestrator.launch import image
from orchestrator.launch.docker_backend import daemon_status
from tests.helpers import state_or_none

WHEELHOUSE_CACHE = Path(os.environ.get("TAILOR_CI_CACHE", Path.home() / ".cache" / "tailor-ci")) / "wheelhouse-cp311"


def _unavailable(reason: str) -> None:
    if os.environ.get("TAILOR_REQUIRE_DOCKER") == "1":
        pytest.fail(f"TAILOR_REQUIRE_DOCKER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client():
    status = daemon_status(os.environ)  # checks the socket path first: the SDK leaks a socket on a missing one
    if not status.reachable:
        _unavailable(f"{status.reason}; source scripts/docker-test-env.sh and run tailor_docker_start")
    client = docker.from_env(timeout=60)
    yield client
    client.close()


@pytest.fixture(scope="session")
def base_image(docker_client) -> str:
    tag = os.environ.get("TAILOR_TEST_BASE_IMAGE", "")
    if not tag:
        _unavailable("TAILOR_TEST_BASE_IMAGE is not set (tailor_docker_start exports it)")
    try:
        docker_client.images.get(tag)
    except docker.errors.ImageNotFound:
        _unavailable(f"base image {tag} is not in the daemon (tailor_docker_start imports it)")
    return tag


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    """Dependency wheels for CPython 3.11 on this architecture (the bookworm base's Python).

    ``TAILOR_TEST_WHEELHOUSE`` points at a prepared one; otherwise they are downloaded once with
    ``pip download`` into ~/.cache/tailor-ci/ (a package index must be reachable then).
    """
    given = os.environ.get("TAILOR_TEST_WHEELHOUSE")
    if given:
        return Path(given)
    WHEELHOUSE_CACHE.mkdir(parents=True, exist_ok=True)
    fl = image.FLAVORS["cpu"]
    argv = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--implementation", "cp",
            "--python-version", "3.11", "--dest", str(WHEELHOUSE_CACHE)]
    import platform

    for tag in image.platform_tags(platform.machine()):
        argv += ["--platform", tag]
    proc = subprocess.run([*argv, *image.dependency_requirements(fl.extras)], capture_output=True, text=True,
                          check=False, timeout=600)
    if proc.returncode != 0:
        _unavailable(f"cannot prepare the wheelhouse with pip download: {proc.stderr.strip()[-500:]}")
    return WHEELHOUSE_CACHE


@pytest.fixture(scope="session")
def runtime_image(docker_client, base_image: str, wheelhouse: Path) -> str:
    """The runtime image, built offline (--wheelhouse) from the registry-free base."""
    from orchestrator import __version__

    tag = f"tailor-runtime:{__version__}-cpu"
    t0 = time.monotonic()
    result = image.ensure_image(docker_client, tag, "cpu", port=8000, base_image=base_image,
                                wheelhouse=wheelhouse, rebuild=True)
    print(f"runtime image build (layer cache as found): {time.monotonic() - t0:.1f} s")
    assert result.built
    return tag


@pytest.fixture
def tailor_containers(docker_client):
    """Removes every container the test's deployments created (by label), even after a failure."""
    yield
    for container in docker_client.containers.list(all=True, filters={"label": "io.tailor.deployment"}):
        container.remove(force=True)


@pytest.fixture
def state_dir(tmp_path: Path, tailor_containers):
    """A deployment's state directory; afterwards its supervisor is SIGKILLed by pid if it still runs
    (tailor_containers then removes the containers by label)."""
    sd = tmp_path / "state"
    yield sd
    state = state_or_none(sd)
    if state is not None and psutil.pid_exists(state.supervisor_pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(state.supervisor_pid, signal.SIGKILL)
