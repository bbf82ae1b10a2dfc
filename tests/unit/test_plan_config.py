"""The user config file (--config): strict keys, runtime-checked values, file:line in errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import UsageError
from orchestrator.plan.user_config import load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tailor.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_good_config_maps_knobs_to_runtime_variables(tmp_path: Path) -> None:
    path = write(tmp_path, "profile: cpu-only\nsettings:\n  workers: 2\n  batching: yes\n  batch_window_ms: 7.5\n"
                           "env:\n  TAILOR_API_KEY: s3cret\n  OMP_NUM_THREADS: 3\n")
    config = load_config(path)
    assert config.profile == "cpu-only"
    # Typed once, as the knob table types them (issue 19: no text round trip before the boundary).
    assert config.values == {"TAILOR_WORKERS": 2, "TAILOR_BATCHING": True, "TAILOR_BATCH_WINDOW_MS": 7.5,
                             "TAILOR_API_KEY": "s3cret", "OMP_NUM_THREADS": "3"}
    assert type(config.values["TAILOR_WORKERS"]) is int
    assert config.where["TAILOR_API_KEY"] == f"{path}:7"


@pytest.mark.parametrize(("text", "expected"), [
    ("profiel: cpu-only\n", ":1: field profiel: unknown field"),
    ("settings:\n  wrkers: 2\n", ":2: field settings.wrkers: unknown field"),
    ("settings:\n  workers: 0\n", ":2: field settings.workers: TAILOR_WORKERS='0' is invalid: expected an integer >= 1"),
    ("settings:\n  precision: fp8\n", ":2: field settings.precision: TAILOR_PRECISION='fp8' is invalid"),
    ("env:\n  TAILOR_WORKRS: 2\n", ":2: field env.TAILOR_WORKRS: TAILOR_WORKRS is not a runtime variable"),
    ("env:\n  TAILOR_PORT: [1, 2]\n", ":2: field env.TAILOR_PORT: expected a single value"),
    ("settings:\n  port: 8080\nenv:\n  TAILOR_PORT: 9090\n", ":4: field env.TAILOR_PORT: also set as settings"),
    ("- just\n- a list\n", ":1: field (top): expected a mapping"),
    ("settings: {workers: 2\n", "not valid YAML"),
    ("tuned:\n  by: tune\n  when: now\n", ":3: field tuned.when: unknown field; known fields here: at, by, host"),
    ("settings: 3\n", ":1: field settings: expected a mapping, got 3"),
    ("profile: 3\n", ":1: field profile: expected a string, got 3"),
])
def test_bad_config_names_file_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as info:
        load_config(path)
    assert info.value.message.startswith(str(path))
    assert expected in info.value.message
    assert info.value.hint


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_an_empty_config_file_sets_nothing(tmp_path: Path) -> None:
    # It raised a TypeError before the config was read by the one validator (issue 19, item 4).
    config = load_config(write(tmp_path, "# nothing yet\n"))
    assert (config.profile, dict(config.values), config.label) == (None, {}, "config")
    assert load_config(write(tmp_path, "tuned:\n  by: tune\n")).label == "tuned"
