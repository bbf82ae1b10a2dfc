"""The rendered docker-compose.yml works for real with Debian's docker-compose."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.supervise.http_client import check_ready, synthesize_to
from tests.helpers import free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow]




def test_rendered_compose_up_ready_synthesize_down(runtime_image: str, tmp_path: Path, tailor_containers) -> None:
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.fail("docker-compose is not installed (tailor_docker_start installs it)")
    port = free_port()
    out = tmp_path / "deploy"
    res = subprocess.run([sys.executable, "-m", "orchestrator", "render", "--network", "host", "--port", str(port),
                          "--out", str(out)], capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    compose_file = out / "docker-compose.yml"
    assert runtime_image in compose_file.read_text()
    env = {**os.environ, "COMPOSE_PROJECT_NAME": f"tailortest{port}"}
    base = [compose, "-f", str(compose_file)]
    up = subprocess.run([*base, "up", "-d"], capture_output=True, text=True, timeout=180, check=False, env=env)
    try:
        assert up.returncode == 0, up.stderr
        url = f"http://127.0.0.1:{port}"
        end = time.monotonic() + 120
        while time.monotonic() < end and not check_ready(url).ok:
            time.sleep(0.5)
        assert check_ready(url).ok, subprocess.run([*base, "logs"], capture_output=True, text=True, env=env).stdout
        assert synthesize_to(url, tmp_path / "compose.wav") > 10_000
        assert (tmp_path / "compose.wav").read_bytes()[:4] == b"RIFF"
    finally:
        down = subprocess.run([*base, "down", "--timeout", "20"], capture_output=True, text=True, timeout=120,
                              check=False, env=env)
    assert down.returncode == 0, down.stderr
    ps = subprocess.run([*base, "ps", "-q"], capture_output=True, text=True, timeout=60, check=False, env=env)
    assert ps.stdout.strip() == ""
