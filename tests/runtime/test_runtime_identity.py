"""Who answers and how ready it is: instance id on every response, honest /readyz (the
launcher's contract, issue 9), request ids, the access line, and the Prometheus exposition."""

from __future__ import annotations

import json
import logging
import re

import pytest

from runtime.serving.lifecycle import ServiceState
from tests.runtime.test_runtime_scheduling import SPEECH, control_app

pytestmark = pytest.mark.slow
INSTANCE = "launch-7f3a"


def test_instance_id_on_every_response(real_engine: object) -> None:
    env = {"TAILOR_INSTANCE_ID": INSTANCE, "TAILOR_API_KEY": "k", "TAILOR_CACHE_BYTES": "0"}
    auth = {"Authorization": "Bearer k"}
    with control_app(real_engine, env) as (client, _engines):
        assert client.get("/healthz").json() == {"status": "alive", "instance": INSTANCE}
        assert client.get("/readyz").json()["instance"] == INSTANCE
        responses = [
            client.get("/healthz"), client.get("/readyz"), client.get("/metrics"),
            client.get("/v1/models", headers=auth),
            client.post(SPEECH, json={"input": "Hi.", "response_format": "pcm"}, headers=auth),
            client.post(SPEECH, json={"input": "Hi."}),  # 401
            client.post(SPEECH, json={"input": ""}, headers=auth),  # 400
            client.get("/nowhere"),  # 404
            client.delete("/healthz"),  # 405
        ]
        assert [r.status_code for r in responses] == [200, 200, 200, 200, 200, 401, 400, 404, 405]
        for response in responses:
            assert response.headers["x-tailor-instance"] == INSTANCE, response.request.url


def test_generated_instance_id_is_stable(real_engine: object) -> None:
    with control_app(real_engine, {}) as (client, _engines):
        first = client.get("/healthz").headers["x-tailor-instance"]
        assert re.fullmatch(r"[0-9a-f]{32}", first)
        assert client.get("/readyz").json()["instance"] == first
        assert client.get("/nowhere").headers["x-tailor-instance"] == first


def test_readyz_shows_the_runtimes_own_view(real_engine: object) -> None:
    with control_app(real_engine, {"TAILOR_WORKERS": "2"}) as (client, _engines):
        body = client.get("/readyz").json()
        assert body["ready"] is True and body["state"] == "ready" and body["reason"] is None
        assert body["engine_in_use"] == {"engine": "onnx", "voice": "en_US-joe-medium",
                                         "device": "cpu", "precision": "fp32", "role": "primary"}
        assert (body["workers"], body["queue_depth"], body["in_flight"]) == (2, 0, 0)
        metrics = client.get("/metrics").text
        assert ('tailor_engine_info{device="cpu",engine="onnx",precision="fp32",role="primary",'
                'voice="en_US-joe-medium"} 1.0') in metrics


def test_readyz_names_a_fallback_engine(real_engine: object) -> None:
    env = {"TAILOR_ENGINE": "torch", "TAILOR_FALLBACK": "onnx:en_US-joe-medium"}
    with control_app(real_engine, env, fail_load=frozenset({"torch"})) as (client, _engines):
        body = client.get("/readyz").json()
        assert body["engine_in_use"]["role"] == "fallback" and body["engine_in_use"]["engine"] == "onnx"
        assert 'role="fallback"' in client.get("/metrics").text


def test_readyz_is_503_under_memory_pressure_and_recovers(real_engine: object) -> None:
    rss = {"bytes": 1_000}
    env = {"TAILOR_RSS_SOFT_LIMIT_BYTES": "1000000"}
    with control_app(real_engine, env, rss_reader=lambda: rss["bytes"]) as (client, _engines):
        assert client.get("/readyz").status_code == 200
        rss["bytes"] = 2_000_000
        ready = client.get("/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert body["ready"] is False and body["state"] == "memory_pressure"
        assert "TAILOR_RSS_SOFT_LIMIT_BYTES" in body["reason"] and body["instance"]
        rss["bytes"] = 1_000
        assert client.get("/readyz").status_code == 200


def test_readyz_is_503_while_draining(real_engine: object) -> None:
    with control_app(real_engine, {}) as (client, _engines):
        service = client.app.state.service
        service.begin_drain()
        assert service.state is ServiceState.DRAINING
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["state"] == "draining" and ready.json()["reason"] == "shutting down"
        refused = client.post(SPEECH, json={"input": "Hi."})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "draining"


def test_request_id_echoed_or_generated_and_logged(
    real_engine: object, caplog: pytest.LogCaptureFixture
) -> None:
    with control_app(real_engine, {"TAILOR_CACHE_BYTES": "0"}) as (client, _engines):
        caplog.set_level(logging.INFO, logger="tailor.access")
        given = client.post(SPEECH, json={"input": "Two words.", "voice": "alloy", "response_format": "wav"},
                            headers={"X-Request-ID": "client-req-42"})
        assert given.status_code == 200 and given.headers["x-request-id"] == "client-req-42"
        made = client.get("/v1/models", headers={"X-Request-ID": "bad id with spaces"})
        probe = client.get("/healthz", headers={"X-Request-ID": "probe-1"})
        assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
        lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "tailor.access"]
        speech_line = next(line for line in lines if line["request_id"] == "client-req-42")
        assert speech_line["status"] == 200 and speech_line["voice"] == "en_US-joe-medium"
        assert speech_line["characters"] == len("Two words.") and speech_line["response_format"] == "wav"
        assert 0.3 < speech_line["audio_s"] < 3.0 and 0 < speech_line["ttfa_s"] <= speech_line["latency_s"]
        assert any(line["request_id"] == made.headers["x-request-id"] for line in lines)
        assert probe.headers["x-request-id"] == "probe-1"
        assert not any(line["request_id"] == "probe-1" for line in lines)  # probes log at DEBUG


def test_405_carries_allow(real_engine: object) -> None:
    with control_app(real_engine, {}) as (client, _engines):
        response = client.get(SPEECH)
        assert response.status_code == 405 and response.headers["allow"] == "POST"
        assert response.json()["error"]["code"] == "method_not_allowed"


def test_metrics_include_process_and_platform_collectors(real_engine: object) -> None:
    with control_app(real_engine, {}) as (client, _engines):
        text = client.get("/metrics").text
        for name in ("process_resident_memory_bytes", "process_cpu_seconds_total",
                     "process_open_fds", "python_info", "tailor_batch_size_bucket",
                     "tailor_batch_padding_fraction_bucket", "tailor_ready 1.0"):
            assert name in text, name
        assert "_created" not in text
