"""XTTS-v2 served for real: ``python -m runtime`` with TAILOR_MODEL=xtts-v2 loads a tiny random-weight
checkpoint (built once per session, in the release's layout, under TAILOR_MODELS_DIR/xtts-v2/) and answers
``/v1/audio/speech`` through the family seam: voices cloned from the recordings in its voices/ folder,
streamed by GPT token chunks, one generation at a time per instance.

Random weights make noise, not speech: the checks are on the plumbing (audio that is there, of the
length the model makes, in the blocks the engine makes). The tiny model generates exactly
``TOKENS`` audio tokens per sentence (its stop token is suppressed), which the family streams as one
block per 20 tokens plus the tail: two blocks per sentence.
"""

from __future__ import annotations

import base64
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

if importlib.util.find_spec("TTS") is None:
    pytest.skip("coqui-tts is not installed (the XTTS-v2 family's extra: "
                "pip install -e '.[xtts]' -c ci/constraints.txt)", allow_module_level=True)

from runtime.families.xtts.family import STREAM_CHUNK_TOKENS, served_name, voice_language
from runtime.families.xtts.tiny import TINY, build_random_checkpoint
from tests.runtime.conftest import REPO, LiveServer, decode, start_server, stop_server

pytestmark = pytest.mark.slow

SLOW_MACHINE_S = 600.0
"""Readiness wait and request deadline: the tiny model's HiFi-GAN is the real one, slow on a busy CPU."""
SPEC = dataclasses.replace(TINY, gpt_max_audio_tokens=26)
TOKENS = SPEC.gpt_max_audio_tokens - 3
"""Audio tokens per sentence (23: one block of 20, then the tail)."""
SECONDS = TOKENS * 1024 / 22050
"""One GPT token is 1024 samples at 22.05 kHz."""


def _speechlike(seconds: float, rate: int, seed: int) -> np.ndarray:
    """A voiced, vowel-like signal with breath noise (a stand-in for a reference recording)."""
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(120 + 20 * np.sin(2 * np.pi * 0.7 * t)) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    noise = np.random.default_rng(seed).standard_normal(len(t))
    return (0.15 * voiced * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2) + 0.01 * noise).astype(np.float32)


@pytest.fixture(scope="session")
def xtts_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TAILOR_MODELS_DIR holding xtts-v2/ (the tiny checkpoint) and xtts-v2/voices/ (three recordings,
    one too short to clone)."""
    import soundfile

    models = tmp_path_factory.mktemp("xtts-models")
    checkpoint = build_random_checkpoint(models / "xtts-v2", SPEC)
    voices = checkpoint / "voices"
    voices.mkdir()
    soundfile.write(voices / "alice.wav", _speechlike(3.0, 16000, 1), 16000)
    soundfile.write(voices / "anna.de.flac", _speechlike(2.5, 44100, 2), 44100)
    soundfile.write(voices / "short.wav", _speechlike(0.4, 16000, 3), 16000)
    return models


@pytest.fixture(scope="module")
def xtts_server(tmp_path_factory: pytest.TempPathFactory, xtts_models: Path) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("xtts-server"), {
        "TAILOR_MODEL": "xtts-v2", "TAILOR_MODELS_DIR": str(xtts_models), "TAILOR_WORKERS": "1",
        "TAILOR_THREADS_PER_WORKER": "1", "TAILOR_CACHE_BYTES": "0",
        "TAILOR_REQUEST_TIMEOUT_S": str(int(SLOW_MACHINE_S))}, ready_timeout_s=SLOW_MACHINE_S)
    yield server
    assert stop_server(server) == 0, server.log()


def speak(server: LiveServer, **body: object) -> httpx.Response:
    return httpx.post(f"{server.base_url}/v1/audio/speech", json={"model": "xtts-v2", **body}, timeout=SLOW_MACHINE_S)


def family_status(server: LiveServer) -> dict[str, object]:
    status: dict[str, object] = httpx.get(f"{server.base_url}/readyz", timeout=30).json()["families"]["xtts-v2"]
    return status


def audible(samples: np.ndarray) -> bool:
    return bool(np.isfinite(samples).all() and np.sqrt(np.mean(samples**2)) > 1e-3)


def test_readyz_and_voices_describe_the_checkpoint_its_recordings_and_licence(
        xtts_server: LiveServer, xtts_models: Path) -> None:
    ready = httpx.get(f"{xtts_server.base_url}/readyz", timeout=30).json()
    assert ready["model"] == "xtts-v2" and ready["voice"] == "alice"
    assert ready["engine_in_use"]["engine"] == "torch" and ready["engine_in_use"]["precision"] == "fp32"
    status = family_status(xtts_server)
    assert status["model_dir"] == str(xtts_models / "xtts-v2")
    assert status["voices_dir"] == str(xtts_models / "xtts-v2" / "voices")
    assert status["commercial_use"] is False and "non-commercial" in str(status["licence"])
    assert status["streaming"] == "token-chunk" and status["concurrent_safe"] is False
    assert "short.wav is 0.40 s long" in str(status["unusable_voices"]), status["unusable_voices"]
    listed = httpx.get(f"{xtts_server.base_url}/v1/audio/voices", timeout=30).json()
    voices = {v["name"]: v for v in listed["voices"]}
    assert sorted(voices) == ["Tiny_Studio", "alice", "anna.de"]  # the recordings; the built-in speaker "Tiny Studio"
    assert voices["anna.de"]["language"] == "de" and voices["alice"]["language"] == "en"
    assert {v["sample_rate"] for v in voices.values()} == {24000}
    assert "non-commercial use only" in xtts_server.log()  # said at start-up, in the log


def test_wav_has_the_models_audio(xtts_server: LiveServer) -> None:
    response = speak(xtts_server, voice="alice", input="Hello there, this is a test.", response_format="wav")
    assert response.status_code == 200, response.text
    samples, rate = decode(response.content)
    assert rate == 24000 and response.headers["x-tailor-sample-rate"] == "24000"
    assert samples.size / rate == pytest.approx(SECONDS, rel=0.1)
    assert audible(samples)


def test_pcm_has_the_models_audio(xtts_server: LiveServer) -> None:
    response = speak(xtts_server, voice="Tiny_Studio", input="Built in speakers work too.", response_format="pcm")
    assert response.status_code == 200, response.text
    rate = int(response.headers["x-tailor-sample-rate"])
    samples = np.frombuffer(response.content, dtype="<i2").astype(np.float32) / 32768
    assert rate == 24000 and samples.size / rate == pytest.approx(SECONDS, rel=0.1)
    assert audible(samples)


def test_a_sentence_streams_in_token_chunks(xtts_server: LiveServer) -> None:
    """One sentence, several blocks: each goes out as the engine makes it, not the sentence at once."""
    response = speak(xtts_server, voice="anna.de", input="Guten Morgen, wie geht es dir?",
                     response_format="pcm", stream_format="sse")
    assert response.status_code == 200, response.text
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    deltas = [base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta"]
    assert events[-1]["type"] == "speech.audio.done"
    assert len(deltas) == TOKENS // STREAM_CHUNK_TOKENS + 1, [len(d) for d in deltas]
    first = np.frombuffer(deltas[0], dtype="<i2").size / 24000  # the first block is 20 tokens of audio
    assert first == pytest.approx(STREAM_CHUNK_TOKENS * 1024 / 22050, rel=0.15)
    samples = np.frombuffer(b"".join(deltas), dtype="<i2").astype(np.float32) / 32768
    assert samples.size / 24000 == pytest.approx(SECONDS, rel=0.1) and audible(samples)


@pytest.mark.parametrize("voice", ["nobody", "short"])
def test_a_voice_it_does_not_have_is_a_400_naming_the_ones_it_has(xtts_server: LiveServer, voice: str) -> None:
    response = speak(xtts_server, voice=voice, input="Who am I?")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "voice_not_found" and error["param"] == "voice"
    assert "alice" in error["message"] and "anna.de" in error["message"]


def test_two_concurrent_requests_both_succeed_one_generation_at_a_time(xtts_server: LiveServer) -> None:
    before = family_status(xtts_server)["instances"]
    assert isinstance(before, list) and len(before) == 1
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(speak, xtts_server, voice=voice, input=text, response_format="wav")
                   for voice, text in (("alice", "First caller here."), ("anna.de", "Zweiter Anrufer."))]
        responses = [f.result(timeout=SLOW_MACHINE_S) for f in futures]
    for response in responses:
        assert response.status_code == 200, response.text
        samples, _ = decode(response.content)
        assert samples.size / 24000 == pytest.approx(SECONDS, rel=0.1) and audible(samples)
    after = family_status(xtts_server)["instances"]
    assert isinstance(after, list)
    assert after[0]["generations"] == before[0]["generations"] + 2
    assert after[0]["most_concurrent"] == 1  # the one instance never ran two generations at once


def test_no_checkpoint_stops_the_start_saying_where_to_put_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAILOR_")}
    env.update(TAILOR_MODEL="xtts-v2", TAILOR_MODELS_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-m", "runtime", "--host", "127.0.0.1", "--port", "9"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 4, done.stderr  # broken configuration: no restart can help
    assert f"no XTTS-v2 checkpoint in {tmp_path / 'xtts-v2'}" in done.stderr
    assert "config.json, model.pth and vocab.json" in done.stderr and "Traceback" not in done.stderr


def test_served_names_are_names_the_api_accepts() -> None:
    assert served_name("Claribel Dervla") == "Claribel_Dervla"
    assert served_name("anna.de") == "anna.de" and served_name("a..b") == "a.b" and served_name("..") == "_"


def test_voice_language_suffix() -> None:
    languages = ("en", "de", "zh-cn")
    assert voice_language("anna.de", languages) == "de"
    assert voice_language("li.zh-cn", languages) == "zh-cn"
    assert voice_language("alice", languages) == "en"
    assert voice_language("dr.who", languages) == "en"  # not a language: English
    assert voice_language(".de", languages) == "en"
