"""One typed value per setting from the command line to the runtime's Settings (issue 19): parsed
once where it enters, held typed by the plan and the launch spec, text only in the child's env."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from orchestrator import pipeline
from orchestrator.plan.steps import Choices
from runtime.settings import EnvVar, Settings, variable

FACTS = Path(__file__).resolve().parents[1] / "fixtures" / "facts"


def test_workers_3_from_the_command_line_reaches_settings_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []

    def counting_variable(name: str) -> EnvVar:
        var = variable(name)
        if name != "TAILOR_WORKERS":
            return var

        def parse(var_name: str, raw: str) -> Any:
            parsed.append(raw)
            return var.parse(var_name, raw)
        return dataclasses.replace(var, parse=parse)  # type: ignore[arg-type]

    # Every orchestrator module that parses with the knob table (the planner's steps did, too).
    for module in ("orchestrator.plan.user_config", "orchestrator.plan.steps"):
        monkeypatch.setattr(f"{module}.variable", counting_variable, raising=False)
    settings = pipeline.cli_settings(workers=3)  # the CLI's flag, as argv text
    planned = pipeline.plan_from(pipeline.Inputs(facts=FACTS / "cpu-4core-16gb.json", settings=settings,
                                                 environ={}))
    assert parsed == ["3"]  # the knob table parsed it once, where it entered; no text round trip after
    plan = planned.plan
    assert type(plan.workers) is int and plan.workers == 3
    spec = planned.spec
    workers = spec.setting("TAILOR_WORKERS", 0)
    assert type(workers) is int and workers == 3
    parsed.clear()
    # The boundary: the child's environment is text, and the runtime's own Settings read it.
    assert spec.env_map["TAILOR_WORKERS"] == "3"
    assert Settings.from_environ(spec.env_map).workers == 3


def test_choices_hold_typed_values_and_give_text_only_when_asked() -> None:
    user = Choices({"workers": "3", "batching": "yes"}, {"TAILOR_BATCH_WINDOW_MS": "7.50"}, None,
                   {"TAILOR_MAX_BATCH_SIZE": 4}, "stepped")
    assert user.typed("TAILOR_WORKERS") == 3 and user.typed("TAILOR_BATCHING") is True
    assert user.typed("TAILOR_BATCH_WINDOW_MS") == 7.5 and user.typed("TAILOR_MAX_BATCH_SIZE") == 4
    assert user.get("TAILOR_BATCHING") == ("true", "cli")
    assert user.get("TAILOR_BATCH_WINDOW_MS") == ("7.5", "env")
    assert user.user_set() == {"TAILOR_BATCHING": ("true", "cli"), "TAILOR_BATCH_WINDOW_MS": ("7.5", "env"),
                               "TAILOR_WORKERS": ("3", "cli")}
