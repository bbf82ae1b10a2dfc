"""The CUDA plan's fallback really serves: the runtime started with a GPU plan's environment
(torch on CUDA in fp16, onnx fallback) where no planned GPU exists comes up on the fallback,
onnx on the CPU in fp32 with its own threads, and says so in /readyz and /metrics.

The environment is the one `deploy plan` writes for the recorded T4 machine; its
CUDA_VISIBLE_DEVICES names that machine's GPU UUID, which exists nowhere else, so this test
sees no usable GPU on any machine (a GPU host included).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator.plan.planner import make_plan
from orchestrator.probe.facts import HostFacts
from orchestrator.select.profiles import load_profiles
from orchestrator.select.selection import select_profile
from tests.runtime.conftest import LiveServer, decode, start_server, stop_server

FACTS = Path(__file__).resolve().parents[1] / "fixtures" / "facts" / "t4-8gb-4cpu.json"


@pytest.fixture(scope="module")
def cuda_plan_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    facts = HostFacts.from_json_file(FACTS)
    plan = make_plan(facts, select_profile(facts, load_profiles(), environ={}), environ={})
    assert (plan.engine, plan.device, plan.precision) == ("torch", "cuda", "fp16")
    env = {k: v for k, v in plan.env.items() if k not in ("LD_PRELOAD", "MALLOC_CONF", "TAILOR_HOST", "TAILOR_PORT")}
    env["TAILOR_PRELOAD"] = "true"
    server = start_server(tmp_path_factory.mktemp("cuda-fallback"), env)
    yield server
    stop_server(server)


def test_serves_from_the_fallback_and_readyz_names_it(cuda_plan_server: LiveServer) -> None:
    ready = httpx.get(f"{cuda_plan_server.base_url}/readyz", timeout=10)
    assert ready.status_code == 200
    body = ready.json()
    assert body["engine_in_use"] == {"engine": "onnx", "voice": "en_US-joe-medium", "device": "cpu",
                                     "precision": "fp32", "role": "fallback"}
    entries = {e["engine"]: e for e in body["fallback"]["entries"]}
    assert entries["torch"]["status"] == "load_failed"
    assert "CUDA" in entries["torch"]["error"]
    assert entries["onnx"]["status"] == "loaded" and entries["onnx"]["device"] == "cpu"

    response = httpx.post(f"{cuda_plan_server.base_url}/v1/audio/speech", timeout=60,
                          json={"model": "tts-1", "voice": "alloy", "input": "The fallback serves.",
                                "response_format": "wav"})
    assert response.status_code == 200
    samples, rate = decode(response.content)
    assert rate == 22050 and len(samples) > rate // 4


def test_metrics_name_the_engine_in_use(cuda_plan_server: LiveServer) -> None:
    text = httpx.get(f"{cuda_plan_server.base_url}/metrics", timeout=10).text
    info = [line for line in text.splitlines() if line.startswith("tailor_engine_info{")]
    assert len(info) == 1, info
    for label in ('engine="onnx"', 'device="cpu"', 'precision="fp32"', 'role="fallback"'):
        assert label in info[0]
    assert info[0].endswith(" 1.0")


def test_the_log_says_why(cuda_plan_server: LiveServer) -> None:
    log = cuda_plan_server.log()
    assert "engine torch:en_US-joe-medium failed to load on cuda" in log
