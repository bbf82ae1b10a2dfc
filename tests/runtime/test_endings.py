"""Honest endings and admission answers, over real HTTP (uvicorn in a thread, the app in process
with a real onnx engine behind a test gate, see ``WrappedEngine``).

* a whole answer (``"stream": false``, FLAC) that cannot finish is a 504 in OpenAI's JSON shape,
  with no audio byte before it;
* a stream cut after its first byte ends visibly: chunked audio as an incomplete read, SSE with an
  ``error`` event; the access line says ``cut:timeout``, ``tailor_requests_total`` counts
  ``status="200_cut"`` and ``tailor_stream_cuts_total{reason="timeout"}`` counts the cut;
* 413 for input that cannot finish even on an idle server, naming the rate and the settings; the
  503 message states the threshold it applied; /readyz shows the calibration.
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import soundfile

from runtime.engines.base import EngineError
from runtime.http.app import create_app
from runtime.settings import Settings
from tests.helpers import free_port
from tests.runtime.conftest import WrappedEngine, pin_admission

pytestmark = pytest.mark.slow
SPEECH = "/v1/audio/speech"
TWO_SENTENCES = "The first sentence arrives. The second one never does."


@contextmanager
def served(real_engine: object, env: Mapping[str, str]) -> Iterator[tuple[str, Any, WrappedEngine]]:
    """The app behind a real uvicorn on a free loopback port: (base url, app, gated engine)."""
    import uvicorn

    engines: list[WrappedEngine] = []

    def factory(name: str, _path: object, _rate: int, _options: object) -> WrappedEngine:
        if name != "onnx":
            raise EngineError(f"{name} is not used here")
        engines.append(WrappedEngine(real_engine, name))
        return engines[-1]

    app = create_app(Settings.from_environ({"TAILOR_CACHE_BYTES": "0", **env}), engine_factory=factory)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "app not ready"
            time.sleep(0.1)
        yield base, app, engines[0]
    finally:
        for engine in engines:
            engine.gate.set()
        server.should_exit = True
        thread.join(30)


class _Client:
    """What pin_admission needs: ``.app``."""

    def __init__(self, app: Any) -> None:
        self.app = app


def metric(base: str, name: str, labels: str) -> float:
    text = httpx.get(f"{base}/metrics").text
    series = f"{name}{{{labels}}}" if labels else name
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def hold_after_first_sentence(engine: WrappedEngine) -> None:
    engine.free_calls = 1  # the first sentence is synthesized, the second waits past the deadline
    engine.gate.clear()


@pytest.fixture(scope="module")
def short_deadline(real_engine: object) -> Iterator[tuple[str, Any, WrappedEngine]]:
    # 5 s: the first sentence must come out well within it even on a busy machine.
    with served(real_engine, {"TAILOR_REQUEST_TIMEOUT_S": "5", "TAILOR_WORKERS": "1"}) as running:
        pin_admission(_Client(running[1]))
        yield running


@pytest.mark.parametrize("body", [{"response_format": "wav", "stream": False},
                                  {"response_format": "mp3", "stream": False},
                                  {"response_format": "flac"}])
def test_a_whole_answer_that_cannot_finish_is_a_504_before_any_byte(
        short_deadline: tuple[str, Any, WrappedEngine], body: dict[str, Any]) -> None:
    base, _app, engine = short_deadline
    hold_after_first_sentence(engine)
    try:
        response = httpx.post(f"{base}{SPEECH}", json={"input": TWO_SENTENCES, **body}, timeout=30)
    finally:
        engine.free_calls = None
        engine.gate.set()
    assert response.status_code == 504, response.text[:200]
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "timeout" and error["type"] == "server_error"
    assert "TAILOR_REQUEST_TIMEOUT_S" in error["message"]


def test_a_whole_answer_has_its_exact_length(short_deadline: tuple[str, Any, WrappedEngine]) -> None:
    base, _app, _engine = short_deadline
    response = httpx.post(f"{base}{SPEECH}", json={"input": "Whole.", "response_format": "wav", "stream": False},
                          timeout=30)
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(response.content)
    assert "transfer-encoding" not in response.headers
    samples, rate = soundfile.read(io.BytesIO(response.content))
    assert rate == 22050 and len(samples) > 0.2 * rate


def test_a_chunked_stream_cut_after_its_first_byte_is_an_incomplete_read(
        short_deadline: tuple[str, Any, WrappedEngine], caplog: pytest.LogCaptureFixture) -> None:
    base, _app, engine = short_deadline
    before = metric(base, "tailor_stream_cuts_total", 'reason="timeout"')
    cut_before = metric(base, "tailor_requests_total", 'route="/v1/audio/speech",status="200_cut"')
    hold_after_first_sentence(engine)
    received = b""
    caplog.set_level(logging.INFO, logger="tailor.access")
    try:
        with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"), \
                httpx.stream("POST", f"{base}{SPEECH}", json={"input": TWO_SENTENCES, "response_format": "pcm"},
                             timeout=30) as response:
            assert response.status_code == 200
            for data in response.iter_bytes():
                received += data
    finally:
        engine.free_calls = None
        engine.gate.set()
    assert len(received) > 24000  # the first sentence's audio arrived, then the cut
    assert metric(base, "tailor_stream_cuts_total", 'reason="timeout"') == before + 1
    assert metric(base, "tailor_requests_total", 'route="/v1/audio/speech",status="200_cut"') == cut_before + 1
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "tailor.access"]
    cut = [line for line in lines if line.get("outcome") == "cut:timeout"]
    assert cut and cut[-1]["status"] == 200 and cut[-1]["audio_s"] > 0.5


def test_an_sse_stream_cut_ends_with_an_error_event_and_is_counted(
        short_deadline: tuple[str, Any, WrappedEngine]) -> None:
    base, _app, engine = short_deadline
    before = metric(base, "tailor_stream_cuts_total", 'reason="timeout"')
    hold_after_first_sentence(engine)
    try:
        response = httpx.post(f"{base}{SPEECH}", json={"input": TWO_SENTENCES, "response_format": "pcm",
                                                       "stream_format": "sse"}, timeout=30)
    finally:
        engine.free_calls = None
        engine.gate.set()
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert [e["type"] for e in events] == ["speech.audio.delta", "error"]
    assert events[-1]["error"]["code"] == "timeout"
    assert metric(base, "tailor_stream_cuts_total", 'reason="timeout"') == before + 1


def test_readyz_shows_the_calibrated_rate_and_the_effective_limit(real_engine: object) -> None:
    with served(real_engine, {"TAILOR_WORKERS": "2", "TAILOR_REQUEST_TIMEOUT_S": "60"}) as (base, _app, _engine):
        admission = httpx.get(f"{base}/readyz").json()["admission"]
        assert admission["calibrated"] is True
        assert admission["samples"]["loaded"] == 2  # both workers at once
        assert 0 < admission["seconds_per_char"] < 1
        assert admission["budget_s"] == 48.0 and admission["max_input_chars"] == 4096
        assert admission["effective_max_input_chars"] > 0
        gauge = metric(base, "tailor_effective_max_input_chars", "")
        assert gauge == min(admission["effective_max_input_chars"], 4096)


def test_413_names_the_rate_and_the_settings_and_503_the_threshold(real_engine: object) -> None:
    env = {"TAILOR_WORKERS": "1", "TAILOR_REQUEST_TIMEOUT_S": "10"}
    with served(real_engine, env) as (base, app, engine):
        pin_admission(_Client(app), seconds_per_char=0.05)  # budget 8 s: 160 characters
        too_long = httpx.post(f"{base}{SPEECH}", json={"input": "Far too long for this server. " * 6}, timeout=30)
        assert too_long.status_code == 413
        error = too_long.json()["error"]
        assert error["code"] == "input_too_long_for_timeout" and error["param"] == "input"
        for says in ("0.0500 s/char", "0.8 x 10 s = 8 s", "TAILOR_REQUEST_TIMEOUT_S", "TAILOR_MAX_INPUT_CHARS to 160"):
            assert says in error["message"], error["message"]
        # One request of 100 characters (5 s) is admitted and held; the next would end at 10 s.
        engine.gate.clear()
        engine.entered.clear()
        text = "A hundred characters of text keep the only worker busy while the next request is looked at."
        held: list[httpx.Response] = []
        thread = threading.Thread(target=lambda: held.append(
            httpx.post(f"{base}{SPEECH}", json={"input": text, "response_format": "pcm"}, timeout=60)))
        thread.start()
        try:
            assert engine.entered.wait(20)
            refused = httpx.post(f"{base}{SPEECH}", json={"input": text, "response_format": "pcm"}, timeout=30)
        finally:
            engine.gate.set()
            thread.join(60)
        assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
        message = refused.json()["error"]["message"]
        assert refused.json()["error"]["code"] == "overloaded"
        assert "admitted only when it fits 0.8 x 10 s = 8 s" in message and re.search(r"needs about \d+ s", message)
        assert held[0].status_code == 200
        assert metric(base, "tailor_admission_rejections_total", 'reason="too_long"') == 1
        assert metric(base, "tailor_admission_rejections_total", 'reason="deadline"') == 1
