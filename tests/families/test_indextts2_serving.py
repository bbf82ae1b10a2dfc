"""IndexTTS2 served through the real runtime: ``python -m runtime`` with TAILOR_MODEL=indextts2 and
TAILOR_INDEXTTS2_ADAPTER=standin spawns its engine processes (the real engine server and protocol,
the model-free stand-in adapter: no weights exist on this machine) and answers ``/v1/audio/speech``
through them: audio in every format, the engine's blocks streamed as they come, one synthesis at a
time per engine process, a SIGKILLed engine restarted, an engine that never gets ready a clear
start-up failure, and ``/readyz`` showing the engine processes."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from runtime.families.indextts2.standin import (
    CHAR_SAMPLES,
    PIECE_SAMPLES,
    SAMPLE_RATE_HZ,
    expected_samples,
)
from tests.helpers import alive, free_port
from tests.runtime.conftest import REPO, LiveServer, decode, start_server, stop_server

pytestmark = pytest.mark.slow

CHAR_DELAY_S = 0.02
"""The stand-in's synthesis time per character: a 40-character sentence holds its engine 0.8 s."""
PCM_RATE_HZ = 24000
"""``response_format: pcm`` is 16-bit mono at 24 kHz, as OpenAI's."""
WAIT_S = 60.0
"""Bound of every wait here (readiness, a restart, a request) on a busy 2-core machine."""


def write_voice(path: Path) -> None:
    tone = (np.sin(np.arange(SAMPLE_RATE_HZ // 2) * 2 * np.pi * 180 / SAMPLE_RATE_HZ) * 8000).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE_HZ)
        out.writeframes(tone.tobytes())


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TAILOR_MODELS_DIR with indextts2/voices/{alice,bob}.wav (the stand-in needs no weights)."""
    directory = tmp_path_factory.mktemp("models")
    voices = directory / "indextts2" / "voices"
    voices.mkdir(parents=True)
    write_voice(voices / "alice.wav")
    write_voice(voices / "bob.wav")
    return directory


def indextts2_env(models: Path, **extra: str) -> dict[str, str]:
    return {"TAILOR_MODEL": "indextts2", "TAILOR_MODELS_DIR": str(models), "TAILOR_INDEXTTS2_ADAPTER": "standin",
            "TAILOR_INDEXTTS2_ARGS": f"--char-delay-s {CHAR_DELAY_S}", "TAILOR_WORKERS": "1",
            "TAILOR_CACHE_BYTES": "0", "TAILOR_REQUEST_TIMEOUT_S": str(WAIT_S),
            "TAILOR_INDEXTTS2_STARTUP_TIMEOUT_S": str(WAIT_S), **extra}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[LiveServer]:
    live = start_server(tmp_path_factory.mktemp("indextts2"), indextts2_env(models_dir), ready_timeout_s=WAIT_S)
    yield live
    pids = engine_pids(live)
    assert stop_server(live) == 0, live.log()
    deadline = time.monotonic() + 15.0
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in pids), f"engine processes {pids} outlived the runtime"


def readyz(server: LiveServer) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{server.base_url}/readyz", timeout=10.0).json()
    return body


def engines(server: LiveServer) -> list[dict[str, Any]]:
    processes: list[dict[str, Any]] = readyz(server)["families"]["indextts2"]["engine_processes"]
    return processes


def engine_pids(server: LiveServer) -> list[int]:
    return [int(p["pid"]) for p in engines(server) if p["pid"] is not None]


def speak(server: LiveServer, **body: object) -> httpx.Response:
    return httpx.post(f"{server.base_url}/v1/audio/speech", json={"model": "indextts2", **body}, timeout=WAIT_S)


def test_readyz_shows_the_engine_processes(server: LiveServer) -> None:
    body = readyz(server)
    assert body["ready"] is True and body["model"] == "indextts2"
    assert body["engine_in_use"]["engine"] == "process"
    view = body["families"]["indextts2"]
    assert view["sample_rate_hz"] == SAMPLE_RATE_HZ and view["concurrent_safe"] is False
    assert view["engines_ready"] == 1 and view["engine_adapter"] == "standin" and view["voices"] == 2
    [process] = view["engine_processes"]
    assert process["state"] == "ready" and process["reason"] is None and alive(process["pid"])
    assert process["pid"] != server.process.pid
    voices = httpx.get(f"{server.base_url}/v1/audio/voices").json()["families"]["indextts2"]
    assert voices["voices"] == ["alice", "bob"] and voices["default"] == "alice"


def test_speech_as_wav_and_pcm(server: LiveServer) -> None:
    text = "Good morning and welcome."
    wav = speak(server, input=text, voice="bob", response_format="wav")
    assert wav.status_code == 200, wav.text
    assert wav.headers["x-tailor-sample-rate"] == str(SAMPLE_RATE_HZ)
    samples, rate = decode(wav.content)
    assert rate == SAMPLE_RATE_HZ
    assert abs(samples.size - expected_samples(text)) <= 0.05 * expected_samples(text)  # the stand-in's rule
    assert float(np.abs(samples).max()) > 0.1
    pcm = speak(server, input=text, voice="bob", response_format="pcm")
    assert pcm.status_code == 200, pcm.text
    raw = np.frombuffer(pcm.content, dtype="<i2")  # OpenAI's pcm: 24 kHz, resampled from the engine's 22.05 kHz
    assert abs(raw.size - samples.size * PCM_RATE_HZ / SAMPLE_RATE_HZ) <= CHAR_SAMPLES and np.abs(raw).max() > 3000


def test_the_engine_blocks_stream_as_they_come(server: LiveServer) -> None:
    """One sentence of 40 characters is 2.4 s of audio that the stand-in sends as 0.4 s blocks, one
    every 0.16 s: the answer arrives as those blocks, not as one piece at the end."""
    text = "Streaming sends every block it receives."
    response = speak(server, input=text, voice="alice", response_format="pcm", stream_format="sse")
    assert response.status_code == 200, response.text
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    deltas = [base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta"]
    assert events[-1]["type"] == "speech.audio.done"
    blocks = -(-expected_samples(text) // PIECE_SAMPLES)
    assert len(deltas) >= blocks - 1, (len(deltas), blocks)
    block_bytes = 2 * PIECE_SAMPLES * PCM_RATE_HZ / SAMPLE_RATE_HZ  # pcm16 at 24 kHz
    # No delta bigger than one engine block, give or take the few ms the stream's 22.05 -> 24 kHz
    # resampler holds back from one block and sends with the next.
    assert max(len(d) for d in deltas) <= block_bytes + 1024

    arrivals: list[float] = []
    start = time.monotonic()
    with httpx.stream("POST", f"{server.base_url}/v1/audio/speech", timeout=WAIT_S,
                      json={"model": "indextts2", "input": text, "voice": "alice", "response_format": "pcm"}) as chunked:
        assert chunked.status_code == 200
        for piece in chunked.iter_raw():
            if piece:
                arrivals.append(time.monotonic() - start)
    synthesis_s = CHAR_DELAY_S * len(text)
    assert arrivals[0] < arrivals[-1] - 0.5 * synthesis_s, arrivals  # the first audio came well before the last


def timed_stream(server: LiveServer, text: str, voice: str, out: dict[str, Any]) -> None:
    """Stream one answer, recording (monotonic) when its first and last bytes came."""
    with httpx.stream("POST", f"{server.base_url}/v1/audio/speech", timeout=WAIT_S,
                      json={"model": "indextts2", "input": text, "voice": voice, "response_format": "pcm"}) as r:
        out["status"] = r.status_code
        size = 0
        for piece in r.iter_raw():
            if piece:
                out.setdefault("first", time.monotonic())
                size += len(piece)
        out["last"] = time.monotonic()
        out["bytes"] = size


def run_two(server: LiveServer) -> list[dict[str, Any]]:
    texts = ("The first request speaks these words now.", "The second one waits for its own turn.")
    results: list[dict[str, Any]] = [{}, {}]
    threads = [threading.Thread(target=timed_stream, args=(server, t, v, out))
               for t, v, out in zip(texts, ("alice", "bob"), results, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    assert all(r.get("status") == 200 and r["bytes"] > 0 for r in results), results
    return sorted(results, key=lambda r: r["first"])


def test_two_requests_on_one_engine_process_are_served_one_after_the_other(server: LiveServer) -> None:
    """Each sentence holds the engine ~0.8 s, its blocks spread over that time. With one engine
    process the second answer starts only after the first has ended; had they overlapped, the
    second's first block would come while the first was still streaming."""
    earlier, later = run_two(server)
    assert later["first"] >= earlier["last"] - 0.05, (earlier, later)
    assert later["last"] - earlier["first"] >= 2 * 0.9 * CHAR_DELAY_S * 38


def test_two_engine_processes_serve_two_requests_at_once(tmp_path: Path, models_dir: Path) -> None:
    """The contrast: TAILOR_WORKERS=2 starts two engine processes and the two answers overlap."""
    live = start_server(tmp_path, indextts2_env(models_dir, TAILOR_WORKERS="2"), ready_timeout_s=WAIT_S)
    try:
        processes = engines(live)
        assert len(processes) == 2 and all(p["state"] == "ready" for p in processes)
        assert len({p["pid"] for p in processes}) == 2
        earlier, later = run_two(live)
        assert later["first"] < earlier["last"], (earlier, later)
    finally:
        assert stop_server(live) == 0, live.log()


def wait_engine(server: LiveServer, check: Any, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        [process] = engines(server)
        if check(process):
            return process
        time.sleep(0.1)
    raise AssertionError(f"{what} within {WAIT_S} s: {engines(server)}\n{server.log()[-3000:]}")


def test_an_engine_killed_mid_request_is_restarted_and_the_next_request_succeeds(server: LiveServer) -> None:
    [before] = engines(server)
    text = "This answer is cut off when its engine is killed with a signal."
    result: dict[str, Any] = {}
    with httpx.stream("POST", f"{server.base_url}/v1/audio/speech", timeout=WAIT_S,
                      json={"model": "indextts2", "input": text, "voice": "alice", "response_format": "pcm"}) as cut:
        assert cut.status_code == 200
        received = 0
        try:
            for piece in cut.iter_raw():
                if piece and not received:
                    os.kill(before["pid"], signal.SIGKILL)
                received += len(piece)
        except httpx.HTTPError as exc:  # the runtime cuts a started stream: an incomplete chunked body
            result["error"] = exc
    assert received < 2 * expected_samples(text), "the answer was not cut short"

    after = wait_engine(server, lambda p: p["state"] == "ready" and p["pid"] != before["pid"],
                        "the killed engine was not restarted")
    assert after["restarts"] == before["restarts"] + 1 and not alive(before["pid"])
    assert "SIGKILL" in server.log() or "signal 9" in server.log()
    again = speak(server, input="Back again.", voice="alice", response_format="wav")
    assert again.status_code == 200, again.text
    assert abs(decode(again.content)[0].size - expected_samples("Back again.")) <= CHAR_SAMPLES
    assert readyz(server)["ready"] is True


def test_unknown_voice_and_other_models_are_4xx_json(server: LiveServer) -> None:
    response = speak(server, input="Hello.", voice="carol")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "voice_not_found" and error["param"] == "voice"
    assert "alice, bob" in error["message"]
    other = httpx.post(f"{server.base_url}/v1/audio/speech", timeout=WAIT_S,
                       json={"model": "kokoro-82m", "input": "Hello.", "voice": "alice"})
    assert other.status_code == 400 and other.json()["error"]["code"] == "model_not_found"
    assert speak(server, input="Hello.", voice="alloy").status_code == 200  # an OpenAI voice: the default


def test_an_engine_that_gives_up_makes_readyz_not_ready_and_requests_get_a_json_error(
        tmp_path: Path, models_dir: Path) -> None:
    live = start_server(tmp_path, indextts2_env(models_dir, TAILOR_INDEXTTS2_MAX_RESTARTS="0"), ready_timeout_s=WAIT_S)
    try:
        [process] = engines(live)
        os.kill(process["pid"], signal.SIGKILL)
        failed = wait_engine(live, lambda p: p["state"] == "failed", "the engine was not given up")
        assert "gave up after 0 restarts" in failed["reason"] and "TAILOR_INDEXTTS2_MAX_RESTARTS" in failed["reason"]
        answer = httpx.get(f"{live.base_url}/readyz", timeout=10.0)
        assert answer.status_code == 503
        body = answer.json()
        assert body["ready"] is False and body["status"] == "engines_unavailable"
        assert body["reason"].startswith("model family indextts2: no IndexTTS2 engine process is ready: engine 0: failed")
        assert body["families"]["indextts2"]["engines_ready"] == 0
        refused = speak(live, input="Anyone there?", voice="alice", response_format="wav")
        # Unavailable, not broken: 503 (a balancer retries elsewhere), never a 500 engine_failed.
        assert refused.status_code == 503, refused.text
        assert "no IndexTTS2 engine is ready" in refused.json()["error"]["message"]
    finally:
        stop_server(live)


def run_runtime(env: dict[str, str], timeout_s: float = WAIT_S) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TAILOR_")}
    return subprocess.run([sys.executable, "-m", "runtime", "--host", "127.0.0.1", "--port", str(free_port())], cwd=REPO,
                          env={**environ, **env}, capture_output=True, text=True, timeout=timeout_s)


@pytest.mark.parametrize(("args", "said"), [
    ("--load-delay-s 120", "the engine was not ready within 2 s (TAILOR_INDEXTTS2_STARTUP_TIMEOUT_S)"),
    ("--fail-load 'checkpoint gpt.pth is truncated'", "the model failed to load: checkpoint gpt.pth is truncated"),
    ("--die-on-load", "the engine process exited while starting"),
])
def test_an_engine_that_never_gets_ready_stops_the_runtime_with_its_reason(
        models_dir: Path, args: str, said: str) -> None:
    started = time.monotonic()
    done = run_runtime(indextts2_env(models_dir, TAILOR_INDEXTTS2_ARGS=args, TAILOR_INDEXTTS2_STARTUP_TIMEOUT_S="2"))
    assert done.returncode == 3, done.stderr
    assert "error: IndexTTS2 engine 0 did not start: " + said in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 40.0


def test_no_model_directory_for_the_real_engine_is_a_clear_startup_error(tmp_path: Path) -> None:
    done = run_runtime({"TAILOR_MODEL": "indextts2", "TAILOR_MODELS_DIR": str(tmp_path)})
    assert done.returncode == 4, done.stderr  # broken configuration: no restart can help
    assert f"no IndexTTS2 model directory: looked in {tmp_path / 'indextts2'}" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_voices_directory_is_a_clear_startup_error(tmp_path: Path) -> None:
    done = run_runtime(indextts2_env(tmp_path, TAILOR_INDEXTTS2_VOICES_DIR=str(tmp_path / "nowhere")))
    assert done.returncode == 4, done.stderr  # broken configuration: no restart can help
    assert f"IndexTTS2 voices directory {tmp_path / 'nowhere'} does not exist" in done.stderr
