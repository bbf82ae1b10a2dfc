"""TAILOR_MODEL_VARIANT: the runtime serves an int8 variant of the default voice and says so."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from runtime.errors import StartupError
from runtime.families.piper.variants import (
    VARIANT_NAMES,
    find_variant,
    make_variant,
    variant_file_name,
)
from runtime.settings import Settings, SettingsError


def test_unknown_variant_is_a_settings_error_naming_the_choices() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_environ({"TAILOR_MODEL_VARIANT": "int4"})
    assert "int8-static-decoder" in info.value.expected


def test_a_variant_never_made_is_a_startup_error_with_the_command_that_makes_it(tmp_path: Path) -> None:
    model = tmp_path / "voice.onnx"
    model.write_bytes(b"not used")
    with pytest.raises(StartupError) as info:
        find_variant(model, "int8-static-decoder", {"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert "python -m runtime.tools.variants make int8-static-decoder" in (info.value.hint or "")
    assert find_variant(model, "fp32", {}) == model
    assert variant_file_name(model, "int8-dynamic") == "voice.int8-dynamic.onnx"
    assert VARIANT_NAMES[0] == "fp32"


def test_torch_engine_refuses_an_onnx_variant() -> None:
    from runtime.families.piper.loader import default_voice_variant
    from runtime.families.piper.voices import bundled_voice

    files = bundled_voice()
    assert files is not None
    with pytest.raises(StartupError, match="TAILOR_ENGINE=torch"):
        default_voice_variant(Settings.defaults().replace(engine="torch", model_variant="int8-dynamic"), files)


@pytest.mark.slow
def test_variant_is_served_and_named_in_models_metrics_and_readyz() -> None:
    from starlette.testclient import TestClient

    from runtime.families.piper.voices import bundled_voice, read_voice_info
    from runtime.http.app import create_app
    from runtime.text.frontend import Phonemizer
    from tests.runtime.conftest import decode, wait_ready

    files = bundled_voice()
    assert files is not None
    _info, raw = read_voice_info(files)
    path = make_variant(files.model_path, "int8-dynamic-decoder", Phonemizer(raw).ids, os.environ)
    settings = Settings.from_environ({"TAILOR_MODEL_VARIANT": "int8-dynamic-decoder", "TAILOR_CACHE_BYTES": "0",
                                      "TAILOR_PRELOAD": "false"})
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        assert client.get("/readyz").json()["model_variant"] == "int8-dynamic-decoder"
        models = {m["id"]: m["variant"] for m in client.get("/v1/models").json()["data"]}
        assert models["tts-1"] == models[files.name] == "int8-dynamic-decoder"
        metrics = client.get("/metrics").text
        assert re.search(r'tailor_model_variant_info\{variant="int8-dynamic-decoder",voice="en_US-joe-medium"\} 1\.0',
                         metrics), metrics
        response = client.post("/v1/audio/speech", json={"input": "Quantised voice.", "response_format": "wav"})
        assert response.status_code == 200
        samples, rate = decode(response.content)
        assert rate == 22050 and len(samples) > 5000
    assert path.name == "en_US-joe-medium.int8-dynamic-decoder.onnx"
