"""The model-family seam: the registry's errors, request routing between served families, and a
text-in streaming family (the shape of XTTS-v2 and IndexTTS2) served beside the real Piper voice
through the real app (tests/families/fake_engine.py is the stand-in engine)."""

from __future__ import annotations

import concurrent.futures
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from runtime.engines.base import EngineOptions
from runtime.errors import BadRequest, StartupError
from runtime.families.base import FamilyContext, TextFrontEnd, Voice
from runtime.families.catalog import FAMILIES, UnknownFamilyError, family
from runtime.families.footprint import ram_estimate_bytes, weights_bytes
from runtime.families.registry import load_family, resolve_loader
from runtime.serving.routing import parse_model_map, route
from runtime.settings import Settings, SettingsError
from tests.families import fake_engine


def context(**env: str) -> FamilyContext:
    return FamilyContext(Settings.from_environ(env), {})


# --- the registry ------------------------------------------------------------------------------
@pytest.mark.parametrize(("loader", "says"), [
    ("runtime.families.no_such_family.loader:load", "has no runtime in this installation"),
    ("tests.families.needs_missing:load", "needs a library that is not installed"),
    ("tests.families.fake_engine", "is not 'module:function'"),
    ("tests.families.fake_engine:no_such_function", "has no function 'no_such_function'"),
])
def test_a_loader_that_cannot_be_had_is_a_startup_error(loader: str, says: str) -> None:
    with pytest.raises(StartupError) as caught:
        resolve_loader(fake_engine.spec(loader=loader))
    assert says in caught.value.message and "tone" in caught.value.message
    assert caught.value.hint


def test_a_missing_library_names_the_install_that_brings_it() -> None:
    with pytest.raises(StartupError) as caught:
        resolve_loader(fake_engine.spec(loader="tests.families.needs_missing:load"))
    assert "definitely_not_installed_library" in caught.value.message
    assert "nothing (a test stand-in)" in caught.value.hint


@pytest.mark.parametrize(("loader", "says"), [
    ("tests.families.fake_engine:load_broken", "failed to load: RuntimeError: weights are corrupt"),
    ("tests.families.fake_engine:load_not_a_family", "returned object, not a Family"),
    ("tests.families.fake_engine:load_engine_fails", "engine did not start: OSError: no such checkpoint"),
])
def test_a_failing_loader_is_a_startup_error_with_the_reason(loader: str, says: str) -> None:
    with pytest.raises(StartupError) as caught:
        load_family(fake_engine.spec(loader=loader), context())
    assert says in caught.value.message and caught.value.hint


def test_the_catalogue_names_and_their_loaders() -> None:
    assert list(FAMILIES) == ["piper", "kokoro-82m", "xtts-v2", "indextts2"]
    assert family("Kokoro-82M").loader == "runtime.families.kokoro.loader:load"
    assert {f.name: f.sample_rate_hz for f in FAMILIES.values()}["kokoro-82m"] == 24000
    with pytest.raises(UnknownFamilyError) as caught:
        family("kokoro")
    assert caught.value.suggestion == "kokoro-82m" and "did you mean 'kokoro-82m'" in str(caught.value)


@pytest.mark.parametrize(("raw", "parsed"), [("piper", "piper"), (" Kokoro-82M , piper", "kokoro-82m,piper")])
def test_tailor_model_lists_families(raw: str, parsed: str) -> None:
    assert Settings.from_environ({"TAILOR_MODEL": raw}).model == parsed


@pytest.mark.parametrize("raw", ["kokoro", "piper,piper", "", "piper,,xtts"])
def test_tailor_model_refuses_unknown_or_repeated_names(raw: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_environ({"TAILOR_MODEL": raw})
    assert "kokoro-82m" in str(caught.value)


# --- routing -----------------------------------------------------------------------------------
def _voice(name: str) -> Voice:
    return Voice(name, "en_US", 16000, "test")


CATALOGS = {"piper": {"joe": _voice("joe"), "amy": _voice("amy")},
            "kokoro-82m": {"jf_alpha": _voice("jf_alpha"), "af_heart": _voice("af_heart")}}
DEFAULTS = {"piper": "joe", "kokoro-82m": "af_heart"}


@pytest.mark.parametrize(("model", "voice", "model_map", "expected"), [
    ("kokoro-82m", None, {}, ("kokoro-82m", "af_heart")),
    ("kokoro-82m", "jf_alpha", {}, ("kokoro-82m", "jf_alpha")),
    ("kokoro-82m", "alloy", {}, ("kokoro-82m", "af_heart")),
    ("tts-1", None, {}, ("piper", "joe")),
    ("tts-1-hd", "nova", {"tts-1-hd": "kokoro-82m"}, ("kokoro-82m", "af_heart")),
    ("tts-1-1106", None, {"tts-1": "kokoro-82m"}, ("kokoro-82m", "af_heart")),  # a dated snapshot maps as its base
    ("tts-1", "jf_alpha", {}, ("kokoro-82m", "jf_alpha")),  # a voice only another family has picks it
    ("amy", None, {}, ("piper", "amy")),  # a voice name as model
    ("jf_alpha", "af_heart", {}, ("kokoro-82m", "af_heart")),
])
def test_route(model: str, voice: str | None, model_map: dict[str, str], expected: tuple[str, str]) -> None:
    family_name, chosen = route(model, voice, CATALOGS, DEFAULTS, model_map, {})
    assert (family_name, chosen.name) == expected


def test_route_refuses_an_unloaded_family_naming_the_loaded_ones() -> None:
    with pytest.raises(BadRequest) as caught:
        route("xtts-v2", None, CATALOGS, DEFAULTS, {}, {})
    assert caught.value.code == "model_not_found" and caught.value.param == "model"
    assert "not loaded" in caught.value.message and "piper, kokoro-82m" in caught.value.message
    with pytest.raises(BadRequest) as caught:
        route("whisper-1", None, CATALOGS, DEFAULTS, {}, {})
    assert "unknown model 'whisper-1'" in caught.value.message
    with pytest.raises(BadRequest) as caught:
        route("kokoro-82m", "joe", CATALOGS, DEFAULTS, {}, {})  # a Piper voice asked of Kokoro
    assert caught.value.code == "voice_not_found"


def test_a_voice_map_entry_of_another_family_falls_to_this_familys_default() -> None:
    assert route("kokoro-82m", "onyx", CATALOGS, DEFAULTS, {}, {"onyx": "amy"})[1].name == "af_heart"
    assert route("tts-1", "onyx", CATALOGS, DEFAULTS, {}, {"onyx": "amy"})[1].name == "amy"


@pytest.mark.parametrize(("spec", "says"), [
    ("tts-1", "is not NAME=FAMILY"),
    ("whisper-1=piper", "is not an OpenAI model name"),
    ("tts-1=xtts-v2", "does not serve"),
    ("tts-1=nothing", "known families"),
])
def test_model_map_errors(spec: str, says: str) -> None:
    with pytest.raises(StartupError) as caught:
        parse_model_map(spec, ["piper", "kokoro-82m"])
    assert says in caught.value.message


def test_model_map_parses() -> None:
    assert parse_model_map("tts-1=piper, tts-1-hd=Kokoro-82M", ["piper", "kokoro-82m"]) == {
        "tts-1": "piper", "tts-1-hd": "kokoro-82m"}


# --- pieces of the seam -------------------------------------------------------------------------
def test_text_front_end_bounds_chunks_in_characters_and_carries_text() -> None:
    text = "First sentence here. " + "word " * 60 + "end. Last one."
    chunks = TextFrontEnd().prepare(text, 80, 30)
    assert chunks[0].text == "First sentence here."
    assert all(len(c.text) <= 80 for c in chunks) and all(c.phoneme_ids == () for c in chunks)
    assert chunks[-1].text == "Last one."
    assert TextFrontEnd().prepare("... !!") == []


def test_a_second_family_runs_in_its_own_precision(kokoro_models: Path) -> None:
    from runtime.serving.served import secondary_options as _secondary_options

    kokoro = load_family(family("kokoro-82m"), context(TAILOR_PRECISION="int8", TAILOR_MODELS_DIR=str(kokoro_models)))
    assert _secondary_options(kokoro, EngineOptions(precision="bf16")).precision == "int8"
    assert _secondary_options(kokoro, EngineOptions(precision="fp32")).precision == "fp32"


def test_footprint_counts_weights_at_the_served_precision() -> None:
    kokoro = family("kokoro-82m")
    assert weights_bytes(kokoro, "int8") == 92_361_271  # the int8 ONNX file, as assembled
    assert weights_bytes(kokoro, "int8") * 3 < weights_bytes(kokoro, "fp32")
    one = ram_estimate_bytes(kokoro, "cpu", "int8", 1)
    assert ram_estimate_bytes(kokoro, "cpu", "int8", 2) - one == one - kokoro.memory.overhead_ram_bytes["onnx"]
    assert ram_estimate_bytes(kokoro, "cpu", "int8", 1, with_overhead=False) == one - kokoro.memory.overhead_ram_bytes["onnx"]
    on_gpu = ram_estimate_bytes(kokoro, "cuda", "fp16", 1)
    assert ram_estimate_bytes(kokoro, "cuda", "fp16", 2) - on_gpu < one - kokoro.memory.overhead_ram_bytes["onnx"]  # weights in VRAM
    indextts2 = family("indextts2")
    assert weights_bytes(indextts2, "fp16", "cuda") < weights_bytes(indextts2, "fp32", "cuda")


# --- a streaming family served beside Piper -------------------------------------------------------
@pytest.fixture(scope="module")
def two_families() -> Iterator[httpx.Client]:
    from starlette.testclient import TestClient

    from runtime.http.app import create_app
    from tests.runtime.conftest import wait_ready

    fake_engine.OPENED.clear()
    settings = Settings.from_environ({"TAILOR_WORKERS": "2", "TAILOR_CACHE_BYTES": "0",
                                      "TAILOR_MODEL_MAP": "tts-1-hd=tone"})
    with TestClient(create_app(settings, families=[family("piper"), fake_engine.spec()])) as client:
        wait_ready(client)
        yield client
    assert fake_engine.OPENED and all(e.closed for e in fake_engine.OPENED)


def _speak(client: httpx.Client, **body: object) -> tuple[np.ndarray, int]:
    import soundfile

    response = client.post("/v1/audio/speech", json={"response_format": "wav", **body})
    assert response.status_code == 200, response.text
    samples, rate = soundfile.read(io.BytesIO(response.content), dtype="float32")
    return samples, int(rate)


def test_readyz_names_the_served_families(two_families: httpx.Client) -> None:
    body = two_families.get("/readyz").json()
    assert body["model"] == "piper" and body["models"] == ["piper", "tone"]
    tone = body["families"]["tone"]
    assert tone["engine"] == "tone:tone-high" and tone["streaming"] == "token-chunk"
    assert tone["batching"] is False and tone["concurrent_safe"] is False and tone["sample_rate_hz"] == 16000
    assert body["families"]["piper"]["engine_in_use"]["role"] == "primary"
    # The memory models' expectation: Piper's with its overhead and 2 workers; the tone family adds none.
    assert body["memory"]["model_estimate_bytes"] == ram_estimate_bytes(family("piper"), "cpu", "fp32", 2)


def test_the_model_field_picks_the_family(two_families: httpx.Client) -> None:
    text = "A tone of known length. And a second sentence."
    samples, rate = _speak(two_families, model="tone", input=text, voice="tone-low")
    assert rate == fake_engine.SAMPLE_RATE
    expected = sum(len(s) for s in ("A tone of known length.", "And a second sentence.")) * fake_engine.SECONDS_PER_CHAR
    assert abs(len(samples) / rate - expected) < 0.01
    spectrum = np.abs(np.fft.rfft(samples))
    assert abs(np.argmax(spectrum) * rate / len(samples) - 220.0) < 5  # the voice it asked for
    assert _speak(two_families, model="tts-1", input="Piper speaks.")[1] == 22050
    assert _speak(two_families, model="tts-1-hd", input="Mapped to tones.")[1] == fake_engine.SAMPLE_RATE
    assert _speak(two_families, model="tts-1", voice="tone-low", input="The voice picks it.")[1] == 16000


def test_a_family_that_is_not_loaded_is_a_400_listing_the_loaded_ones(two_families: httpx.Client) -> None:
    response = two_families.post("/v1/audio/speech", json={"model": "kokoro-82m", "input": "Hello."})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "model_not_found" and error["param"] == "model" and error["type"] == "invalid_request_error"
    assert "piper, tone" in error["message"]


def test_models_and_voices_list_every_family(two_families: httpx.Client) -> None:
    rows = {m["id"]: m for m in two_families.get("/v1/models").json()["data"]}
    assert rows["piper"]["kind"] == "family" and rows["piper"]["default"] is True
    assert rows["tone"]["kind"] == "family" and rows["tone"]["voices"] == 2
    assert rows["tts-1-hd"]["family"] == "tone" and rows["tts-1"]["family"] == "piper"
    assert rows["tone-low"]["family"] == "tone" and rows["en_US-joe-medium"]["family"] == "piper"
    voices = two_families.get("/v1/audio/voices").json()
    assert voices["families"]["tone"] == {"default": "tone-high", "voices": ["tone-high", "tone-low"],
                                          "sample_rate": 16000}
    assert {v["family"] for v in voices["voices"]} == {"piper", "tone"}


def test_an_instance_that_is_not_concurrent_safe_serves_one_request_at_a_time(two_families: httpx.Client) -> None:
    texts = [f"Request number {i} speaks a while. Then a second sentence." for i in range(6)]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda t: _speak(two_families, model="tone", input=t), texts))
    assert all(rate == 16000 and len(samples) > 0 for samples, rate in results)
    used = [e for e in fake_engine.OPENED if e.calls]
    assert len(used) == 2  # one engine per worker (TAILOR_WORKERS=2)
    assert all(e.most_active == 1 for e in fake_engine.OPENED)


def test_a_secondary_family_that_fails_to_load_stops_the_start() -> None:
    from runtime.http.app import create_app

    with pytest.raises(StartupError) as caught:
        create_app(Settings.defaults(), families=[family("piper"),
                                                  fake_engine.spec(loader="tests.families.fake_engine:load_broken")])
    assert "weights are corrupt" in caught.value.message


def test_a_token_chunk_family_streams_blocks_as_its_engine_makes_them(two_families: httpx.Client) -> None:
    import base64
    import json

    def stream(speed: float) -> tuple[int, float]:
        response = two_families.post("/v1/audio/speech", json={
            "model": "tone", "input": "First sentence here. Second one.", "response_format": "pcm",
            "stream_format": "sse", "speed": speed})
        assert response.status_code == 200, response.text
        events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
        deltas = [base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta"]
        assert events[-1]["type"] == "speech.audio.done"
        return len(deltas), sum(len(d) for d in deltas) / 2 / 24000  # pcm: 16-bit at 24 kHz

    expected = len("First sentence here.Second one.") * fake_engine.SECONDS_PER_CHAR
    blocks, seconds = stream(1.0)
    assert blocks >= 6  # the engine's three blocks per sentence, each sent as it came
    assert abs(seconds - expected) < 0.02
    blocks, seconds = stream(2.0)  # speed still applies, block by block
    assert blocks >= 6 and abs(seconds - expected / 2) < 0.1 * expected


# --- main's API beside the families: admission per family, captioned speech, retrieve model -----
def test_each_family_is_calibrated_on_its_own(two_families: httpx.Client) -> None:
    body = two_families.get("/readyz").json()
    piper, tone = body["families"]["piper"]["admission"], body["families"]["tone"]["admission"]
    assert piper["calibrated"] and tone["calibrated"]
    assert body["admission"]["seconds_per_char"] == piper["seconds_per_char"]  # the default family's
    # Different engines, different measured rates (the tone engine's is its own sleep per character).
    assert tone["seconds_per_char"] != piper["seconds_per_char"]
    assert tone["samples"]["loaded"] >= 1 and piper["samples"]["loaded"] >= 1


def test_captioned_speech_needs_a_family_with_durations(two_families: httpx.Client) -> None:
    refused = two_families.post("/v1/audio/captioned_speech", json={"model": "tone", "input": "Hello there."})
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "timestamps_unsupported" and error["param"] == "return_timestamps"
    assert "tone" in error["message"]
    plain = two_families.post("/v1/audio/captioned_speech",
                              json={"model": "tone", "input": "Hello there.", "return_timestamps": False})
    assert plain.status_code == 200 and plain.json()["timestamps"] is None
    assert plain.json()["sample_rate"] == fake_engine.SAMPLE_RATE
    timed = two_families.post("/v1/audio/captioned_speech", json={"model": "tts-1", "input": "Hello there."})
    assert timed.status_code == 200, timed.text
    assert [w["word"] for w in timed.json()["timestamps"]] == ["Hello", "there"]


def test_retrieve_model_names_its_family(two_families: httpx.Client) -> None:
    assert two_families.get("/v1/models/tone").json()["family"] == "tone"
    assert two_families.get("/v1/models/tts-1-hd").json()["family"] == "tone"  # TAILOR_MODEL_MAP
    snapshot = two_families.get("/v1/models/gpt-4o-mini-tts-2025-03-20").json()
    assert snapshot["family"] == "piper" and snapshot["object"] == "model"
    assert two_families.get("/v1/models/tone-low").json()["kind"] == "voice"
    missing = two_families.get("/v1/models/kokoro-82m")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


def test_every_declared_family_has_a_serving_path() -> None:
    # Each family the planner sizes can be served: its loader resolves to a callable, so
    # TAILOR_MODEL naming it never starts a runtime that serves something else under its name.
    from runtime.families.catalog import FAMILIES
    from runtime.families.registry import resolve_loader

    assert set(FAMILIES) == {"piper", "kokoro-82m", "xtts-v2", "indextts2"}
    for spec in FAMILIES.values():
        assert callable(resolve_loader(spec)), spec.name


def test_int8_is_refused_only_for_a_family_without_an_int8_model() -> None:
    from runtime.serving.lifecycle import check_served_family

    check_served_family(Settings.from_environ({"TAILOR_MODEL": "kokoro-82m", "TAILOR_PRECISION": "int8"}))
    with pytest.raises(StartupError, match="TAILOR_PRECISION=int8 is for families with an int8 model"):
        check_served_family(Settings.from_environ({"TAILOR_PRECISION": "int8"}))
