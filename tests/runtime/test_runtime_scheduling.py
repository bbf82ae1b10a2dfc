"""Admission, queueing, timeouts, memory watchdog, batching and the fallback chain.

The engines here wrap one real onnx engine (real inference); the wrapper only adds a gate to
hold a synthesis and a switch to make it fail, which a healthy model cannot do on demand.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from runtime.engines.base import EngineError
from runtime.errors import StartupError
from runtime.http.app import create_app
from runtime.settings import Settings
from tests.runtime.conftest import WrappedEngine, pin_admission, wait_ready

pytestmark = pytest.mark.slow
SPEECH = "/v1/audio/speech"


@contextmanager
def control_app(
    real_engine: object,
    env: Mapping[str, str],
    fail_load: frozenset[str] = frozenset(),
    rss_reader: Callable[[], int] | None = None,
    expect_ready: bool = True,
) -> Iterator[tuple[Any, dict[str, WrappedEngine]]]:
    from starlette.testclient import TestClient

    engines: dict[str, WrappedEngine] = {}

    def factory(name: str, _path: object, _rate: int, _options: object) -> WrappedEngine:
        if name in fail_load:
            raise EngineError(f"{name}: injected load failure")
        engines[name] = WrappedEngine(real_engine, name)
        return engines[name]

    kwargs: dict[str, Any] = {"engine_factory": factory}
    if rss_reader is not None:
        kwargs["rss_reader"] = rss_reader
    app = create_app(Settings.from_environ(env), **kwargs)
    with TestClient(app, raise_server_exceptions=False) as client:
        if expect_ready:
            wait_ready(client)
        yield client, engines


def post_in_thread(client: Any, body: dict[str, object], results: list[httpx.Response]) -> threading.Thread:
    thread = threading.Thread(target=lambda: results.append(client.post(SPEECH, json=body)))
    thread.start()
    return thread


def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_full_queue_gets_429_with_retry_after(real_engine: object) -> None:
    with control_app(real_engine, {"TAILOR_WORKERS": "1", "TAILOR_MAX_QUEUE": "1", "TAILOR_CACHE_BYTES": "0"}) as (client, engines):
        engine = engines["onnx"]
        engine.gate.clear()
        engine.entered.clear()
        results: list[httpx.Response] = []
        first = post_in_thread(client, {"input": "One.", "response_format": "pcm"}, results)
        assert engine.entered.wait(10)
        second = post_in_thread(client, {"input": "Two.", "response_format": "pcm"}, results)
        wait_for(lambda: client.get("/readyz").json()["in_flight"] == 2)
        refused = client.post(SPEECH, json={"input": "Three.", "response_format": "pcm"})
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["code"] == "queue_full"
        assert "TAILOR_MAX_QUEUE" in refused.json()["error"]["message"]
        engine.gate.set()
        first.join(30)
        second.join(30)
        assert [r.status_code for r in results] == [200, 200]
        assert client.get("/readyz").json()["in_flight"] == 0


def test_memory_soft_limit_refuses_new_requests(real_engine: object) -> None:
    rss = {"bytes": 1_000}
    env = {"TAILOR_RSS_SOFT_LIMIT_BYTES": "1000000", "TAILOR_CACHE_BYTES": "0"}
    with control_app(real_engine, env, rss_reader=lambda: rss["bytes"]) as (client, _engines):
        assert client.post(SPEECH, json={"input": "Fine.", "response_format": "pcm"}).status_code == 200
        rss["bytes"] = 2_000_000
        refused = client.post(SPEECH, json={"input": "Fine.", "response_format": "pcm"})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "memory_pressure"
        assert client.get("/readyz").json()["memory"]["over_soft_limit"] is True
        rss["bytes"] = 1_000
        assert client.post(SPEECH, json={"input": "Fine.", "response_format": "pcm"}).status_code == 200


def test_timeout_is_504_and_the_worker_survives(real_engine: object) -> None:
    env = {"TAILOR_REQUEST_TIMEOUT_S": "2", "TAILOR_CACHE_BYTES": "0"}
    with control_app(real_engine, env) as (client, engines):
        pin_admission(client)
        engine = engines["onnx"]
        engine.gate.clear()
        started = time.monotonic()
        response = client.post(SPEECH, json={"input": "Held.", "response_format": "pcm"})
        assert response.status_code == 504
        assert "TAILOR_REQUEST_TIMEOUT_S" in response.json()["error"]["message"]
        assert time.monotonic() - started < 5.0
        engine.gate.set()
        assert client.post(SPEECH, json={"input": "Next.", "response_format": "pcm"}).status_code == 200


def test_timeout_after_first_audio_ends_the_stream_cleanly(real_engine: object) -> None:
    import json

    env = {"TAILOR_REQUEST_TIMEOUT_S": "1.5", "TAILOR_CACHE_BYTES": "0", "TAILOR_WORKERS": "1"}
    with control_app(real_engine, env) as (client, engines):
        pin_admission(client)
        engine = engines["onnx"]
        engine.gate.clear()
        engine.free_calls = 1
        response = client.post(SPEECH, json={"input": "First part. Second part. Third part.",
                                             "response_format": "pcm", "stream_format": "sse"})
        assert response.status_code == 200
        events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
        assert [e["type"] for e in events] == ["speech.audio.delta", "error"]
        assert events[-1]["error"]["code"] == "timeout"
        engine.gate.set()
        engine.free_calls = None
        assert client.get("/readyz").json()["in_flight"] == 0


def test_batching_groups_concurrent_sentences_with_their_own_speed(real_engine: object) -> None:
    env = {"TAILOR_BATCHING": "true", "TAILOR_BATCH_WINDOW_MS": "300", "TAILOR_MAX_BATCH_SIZE": "4",
           "TAILOR_WORKERS": "1", "TAILOR_CACHE_BYTES": "0"}
    with control_app(real_engine, env) as (client, engines):
        engine = engines["onnx"]
        engine.gate.clear()
        engine.entered.clear()
        engine.calls.clear()
        results: list[httpx.Response] = []
        threads = [post_in_thread(client, {"input": "Hold the worker.", "response_format": "pcm"}, results)]
        assert engine.entered.wait(10)
        threads.append(post_in_thread(client, {"input": "Same words.", "response_format": "pcm", "speed": 2.0}, results))
        threads.append(post_in_thread(client, {"input": "Same words.", "response_format": "pcm", "speed": 0.5}, results))
        wait_for(lambda: client.get("/readyz").json()["queue_depth"] == 2)
        engine.gate.set()
        for thread in threads:
            thread.join(30)
        assert sorted(r.status_code for r in results) == [200, 200, 200]
        batches = [sorted(c) for c in engine.calls if len(c) > 1]
        assert batches == [[1.0, 1.0]]  # the engine speaks at the voice's pace; speed comes after
        by_speed = {r.request.content: len(r.content) for r in results}
        slow = next(v for k, v in by_speed.items() if b'"speed":0.5' in k)
        fast = next(v for k, v in by_speed.items() if b'"speed":2.0' in k)
        assert 3.6 < slow / fast < 4.4  # linear: 4x
        assert 'tailor_batch_size_bucket{le="2.0"}' in client.get("/metrics").text


@contextmanager
def solo_wide_app(real_engine: object) -> Iterator[tuple[Any, WrappedEngine, list[WrappedEngine]]]:
    """Two workers and the solo-wide instance, ready: the client, the wide (two-thread) engine and
    the one-thread engines, their load-time calls cleared."""
    from starlette.testclient import TestClient

    created: list[tuple[int, WrappedEngine]] = []

    def factory(name: str, _path: object, _rate: int, options: Any) -> WrappedEngine:
        created.append((options.intra_op_threads, WrappedEngine(real_engine, name)))
        return created[-1][1]

    env = {"TAILOR_WORKERS": "2", "TAILOR_SOLO_WIDE": "true", "TAILOR_CACHE_BYTES": "0"}
    with TestClient(create_app(Settings.from_environ(env), engine_factory=factory)) as client:
        wait_ready(client)
        assert sorted(threads for threads, _ in created) == [1, 1, 2]
        wide = next(engine for threads, engine in created if threads == 2)
        narrow = [engine for threads, engine in created if threads == 1]
        for engine in (wide, *narrow):
            engine.calls.clear()
        yield client, wide, narrow


def test_solo_wide_instance_serves_lone_sentences_only(real_engine: object) -> None:
    with solo_wide_app(real_engine) as (client, wide, narrow):
        assert client.post(SPEECH, json={"input": "Alone.", "response_format": "pcm"}).status_code == 200
        assert len(wide.calls) == 1 and all(not e.calls for e in narrow)

        wide.gate.clear()
        wide.entered.clear()
        results: list[httpx.Response] = []
        first = post_in_thread(client, {"input": "Held on the wide one.", "response_format": "pcm"}, results)
        assert wide.entered.wait(10)
        second = client.post(SPEECH, json={"input": "Runs beside it.", "response_format": "pcm"})
        assert second.status_code == 200
        assert sum(len(e.calls) for e in narrow) == 1  # not the busy wide instance
        wide.gate.set()
        first.join(30)
        assert results[0].status_code == 200
        body = client.get("/readyz").json()
        assert body["solo_wide"] == {"enabled": True, "runs": 2}  # "Alone." and the held one


def test_a_lone_requests_first_sentence_runs_alone_on_the_wide_instance(real_engine: object) -> None:
    """Issue 20: a lone several-sentence request runs its first sentence on the wide instance, and
    its second does not start beside it on a one-thread worker (the first audio is not slowed by
    it); a second request arriving meanwhile runs on a one-thread worker at once."""
    with solo_wide_app(real_engine) as (client, wide, narrow):
        text = "The first sentence is here. The second one follows it. And a third closes."

        # Held on its first sentence: the second is queued (lookahead) but does not start.
        wide.gate.clear()
        wide.entered.clear()
        results: list[httpx.Response] = []
        lone = post_in_thread(client, {"input": text, "response_format": "pcm"}, results)
        assert wide.entered.wait(10), "the lone request's first sentence did not take the wide instance"
        time.sleep(0.5)
        assert len(wide.calls) == 1 and all(not e.calls for e in narrow)
        wide.gate.set()
        lone.join(30)
        assert results[0].status_code == 200
        assert len(wide.calls) + sum(len(e.calls) for e in narrow) == 3

        # A companion releases the one-thread workers while the lone request holds the wide one.
        for engine in (wide, *narrow):
            engine.calls.clear()
        wide.gate.clear()
        wide.entered.clear()
        results.clear()
        lone = post_in_thread(client, {"input": text, "response_format": "pcm"}, results)
        assert wide.entered.wait(10)
        other = client.post(SPEECH, json={"input": "Meanwhile, another request.", "response_format": "pcm"})
        assert other.status_code == 200 and len(wide.calls) == 1
        assert sum(len(e.calls) for e in narrow) >= 1
        wide.gate.set()
        lone.join(30)
        assert results[0].status_code == 200
        assert len(wide.calls) + sum(len(e.calls) for e in narrow) == 4


def test_fallback_on_synthesis_failure(real_engine: object) -> None:
    env = {"TAILOR_ENGINE": "torch", "TAILOR_FALLBACK": "onnx:en_US-joe-medium", "TAILOR_CACHE_BYTES": "0"}
    with control_app(real_engine, env) as (client, engines):
        ready = client.get("/readyz").json()
        assert ready["engine"] == "torch:en_US-joe-medium" and ready["fallback"]["active"] is False
        engines["torch"].fail = True
        response = client.post(SPEECH, json={"input": "Served anyway.", "response_format": "pcm"})
        assert response.status_code == 200 and len(response.content) > 10000
        entries = {e["engine"]: e for e in client.get("/readyz").json()["fallback"]["entries"]}
        assert entries["torch"]["synthesis_failures"] == 1
        assert "injected failure" in entries["torch"]["last_synthesis_error"]
        assert entries["onnx"]["served_sentences"] == 1
        metrics = client.get("/metrics").text
        assert 'tailor_engine_fallbacks_total{reason="synthesis_error",to_engine="onnx:en_US-joe-medium"} 1' in metrics


def test_fallback_on_load_failure(real_engine: object) -> None:
    env = {"TAILOR_ENGINE": "torch", "TAILOR_FALLBACK": "onnx:en_US-joe-medium"}
    with control_app(real_engine, env, fail_load=frozenset({"torch"})) as (client, _engines):
        ready = client.get("/readyz").json()
        assert ready["engine"] == "onnx:en_US-joe-medium" and ready["fallback"]["active"] is True
        torch_entry = next(e for e in ready["fallback"]["entries"] if e["engine"] == "torch")
        assert torch_entry["status"] == "load_failed" and "injected load failure" in torch_entry["error"]
        assert 'tailor_engine_active{engine="onnx",voice="en_US-joe-medium"} 1' in client.get("/metrics").text


def test_no_engine_loads_means_not_ready_with_the_reason(real_engine: object) -> None:
    with control_app(real_engine, {}, fail_load=frozenset({"onnx"}), expect_ready=False) as (client, _):
        wait_for(lambda: client.get("/readyz").json()["status"] == "failed")
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "no engine could load" in ready.json()["detail"]
        refused = client.post(SPEECH, json={"input": "x"})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "not_ready"


@pytest.mark.parametrize(("env", "says"), [
    ({"TAILOR_FALLBACK": "onnx"}, "ENGINE:VOICE"),
    ({"TAILOR_FALLBACK": "tensorrt:en_US-joe-medium"}, "ENGINE one of"),
    ({"TAILOR_VOICE": "nobody"}, "default voice 'nobody'"),
    ({"TAILOR_VOICES_DIR": "/nonexistent/voices"}, "is not a directory"),
])
def test_bad_configuration_is_a_startup_error(env: dict[str, str], says: str) -> None:
    with pytest.raises(StartupError) as caught:
        create_app(Settings.from_environ(env))
    assert says in str(caught.value) and caught.value.hint


def test_stream_cut_by_the_deadline_ends_with_a_visible_error(real_engine: object) -> None:
    env = {"TAILOR_REQUEST_TIMEOUT_S": "1.5", "TAILOR_CACHE_BYTES": "0"}
    with control_app(real_engine, env) as (client, engines):
        pin_admission(client)
        engine = engines["onnx"]
        engine.free_calls = 1  # the first sentence is synthesized, the second hangs past the deadline
        engine.gate.clear()
        response = client.post(SPEECH, json={"input": "First sentence here. Second one never comes.",
                                             "response_format": "pcm", "stream_format": "sse"})
        engine.gate.set()
        assert response.status_code == 200  # the stream had started
        events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
        assert events[0]["type"] == "speech.audio.delta"
        assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "timeout"
        assert not any(e["type"] == "speech.audio.done" for e in events)


def test_the_batch_window_counts_requests_still_arriving(real_engine: object) -> None:
    """Alone in the server a worker skips the batch window; a request still being
    phonemized (not admitted yet) is a companion-to-be, so the window is waited out for it.
    /readyz counts such requests, and every way out of phonemization takes them off the count."""
    window_s = 4.0  # far above a short sentence's time on a loaded 2-core CI machine
    env = {"TAILOR_BATCHING": "true", "TAILOR_BATCH_WINDOW_MS": str(int(window_s * 1000)),
           "TAILOR_MAX_BATCH_SIZE": "4", "TAILOR_WORKERS": "1", "TAILOR_CACHE_BYTES": "0"}
    with control_app(real_engine, env) as (client, _engines):
        service = client.app.state.service

        def seconds_to_speak(text: str) -> float:
            started = time.monotonic()
            assert client.post(SPEECH, json={"input": text, "response_format": "wav"}).status_code == 200
            return time.monotonic() - started

        def counts() -> tuple[int, int]:
            body = client.get("/readyz").json()
            return body["arriving"], body["in_flight"]

        assert seconds_to_speak("Alone.") < window_s  # no one else: the window is skipped
        with service.arriving():  # another request, still being phonemized
            assert counts() == (1, 0)
            assert seconds_to_speak("Not alone.") >= window_s  # waited out for the companion-to-be
        assert counts() == (0, 0)
        with pytest.raises(RuntimeError), service.arriving():
            raise RuntimeError("a request that fails before admission")
        assert counts() == (0, 0)
        assert client.post(SPEECH, json={"input": "\u200b", "response_format": "wav"}).status_code == 400
        assert counts() == (0, 0)  # served or refused, both left the count
