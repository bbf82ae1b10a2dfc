"""GPU tier (``pytest -m gpu``; skipped without an NVIDIA GPU): the GPU path on the real card.

The real probe's GPUs go through the GPU choice into a plan whose k8s render validates; the
runtime started from that plan's own environment serves on CUDA from every visible GPU, with
the primary engine in use, batches that form under concurrent load and the warm-up done.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator

import httpx
import pytest
import yaml

from orchestrator import pipeline
from orchestrator.probe.host import probe_host
from orchestrator.render.renderer import render
from tests.runtime.conftest import LiveServer, start_server, stop_server

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def planned() -> pipeline.Planned:
    facts = probe_host(environ={})
    return pipeline.plan_from(pipeline.Inputs(facts=facts, environ={}))


def test_real_gpus_are_chosen(planned: pipeline.Planned) -> None:
    plan = planned.plan
    assert planned.facts.gpus, "NVML reported no GPU"
    assert plan.device == "cuda", plan.reasons
    assert plan.container.gpu_device_ids and plan.container.cuda_build
    # The GPUs the plan reserves and shows the runtime are ones the probe found, by UUID, once each.
    probed = {g.uuid for g in planned.facts.gpus}
    used = plan.env["CUDA_VISIBLE_DEVICES"].split(",")
    assert set(used) <= probed and len(set(used)) == len(used) == int(plan.env["TAILOR_GPUS"])


def test_real_gpu_plan_renders_valid_k8s(planned: pipeline.Planned) -> None:
    # kubernetes-validate carries every API version's schemas (~100 MB): a GPU box that lacks it
    # skips this half; its render is then checked where the package is (benchmarks/RESULTS.md).
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for doc in yaml.safe_load_all(render(planned.plan, ["k8s"])["k8s.yaml"]):
        if doc:
            kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


@pytest.fixture(scope="module")
def gpu_server(planned: pipeline.Planned, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {k: v for k, v in planned.plan.env.items() if k not in ("LD_PRELOAD", "MALLOC_CONF", "TAILOR_HOST",
                                                                   "TAILOR_PORT")}
    server = start_server(tmp_path_factory.mktemp("gpu"), env, ready_timeout_s=600)
    yield server
    stop_server(server)


def test_serves_on_cuda_with_batches(gpu_server: LiveServer, planned: pipeline.Planned) -> None:
    ready = httpx.get(f"{gpu_server.base_url}/readyz", timeout=10).json()
    assert ready["engine_in_use"]["device"] == "cuda" and ready["engine_in_use"]["role"] == "primary"
    assert ready["warmup_seconds"] > 0
    texts = [f"Sentence number {i} is here. And a second one follows it." for i in range(32)]

    def speak(text: str) -> int:
        response = httpx.post(f"{gpu_server.base_url}/v1/audio/speech", timeout=120,
                              json={"input": text, "response_format": "pcm"})
        assert response.status_code == 200, response.text
        return len(response.content)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        assert all(size > 0 for size in pool.map(speak, texts))
    metrics = httpx.get(f"{gpu_server.base_url}/metrics", timeout=10).text
    samples = {line.split(" ")[0]: float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("tailor_batch_size_") and not line.startswith("#")}
    if planned.plan.batching:
        assert samples["tailor_batch_size_count"] > samples['tailor_batch_size_bucket{le="1.0"}']
