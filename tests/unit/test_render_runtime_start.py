"""The rendered environment starts the real runtime: plan -> env file -> `python -m runtime`.

Uses the real voice and a real process on 127.0.0.1 (marked slow); the process is stopped by
its pid with SIGTERM and must drain and exit 0.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from orchestrator.plan.planner import make_plan
from orchestrator.probe.facts import HostFacts
from orchestrator.render.renderer import RenderOptions, parse_env_text, render
from orchestrator.select.profiles import load_profiles
from orchestrator.select.selection import select_profile
from tests.helpers import free_port

FACTS = Path(__file__).resolve().parents[1] / "fixtures" / "facts"
REPO = Path(__file__).resolve().parents[2]




@pytest.mark.slow
def test_rendered_env_starts_the_runtime_and_passes_its_healthcheck(tmp_path: Path) -> None:
    host = HostFacts.from_json_file(FACTS / "cpu-4core-16gb.json")
    port = free_port()
    plan = make_plan(host, select_profile(host, load_profiles()), {"port": str(port)}, {})
    files = render(plan, ["systemd"], RenderOptions(python=sys.executable))
    env = parse_env_text(files["tailor-runtime.env"])
    assert env["TAILOR_HOST"] == "127.0.0.1" and env["TAILOR_PORT"] == str(port)
    process_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), **env}
    log = (tmp_path / "runtime.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "runtime"], cwd=REPO, env=process_env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        ready = None
        while time.monotonic() < deadline and proc.poll() is None:
            ready = subprocess.run([sys.executable, "-m", "runtime.healthcheck", "--port", str(port)],
                                   cwd=REPO, env=process_env, capture_output=True, timeout=30, check=False)
            if ready.returncode == 0:
                break
            time.sleep(0.5)
        assert proc.poll() is None, (tmp_path / "runtime.log").read_text()
        assert ready is not None and ready.returncode == 0, ready
        body = json.dumps({"model": "tts-1", "input": "Plan, render, run.", "voice": "alloy",
                           "response_format": "wav"}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/audio/speech", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            audio = response.read()
        assert audio[:4] == b"RIFF" and len(audio) > 10_000
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        code = proc.wait(timeout=60)
        log.close()
    assert code == 0, (tmp_path / "runtime.log").read_text()
