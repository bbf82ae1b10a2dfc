"""One knob table: runtime/settings.py declares each setting once; Settings, the config file's
keys, the plan's env and its fields, `deploy env` and redaction are all derived from it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from orchestrator import pipeline
from orchestrator.cli.app import main
from orchestrator.errors import UsageError
from orchestrator.plan import planner
from orchestrator.plan.runtime_env import SECRET_VARIABLES
from orchestrator.plan.user_config import KNOB_VARIABLES, LAUNCH_KNOBS, check_value
from runtime.settings import VARIABLES, Settings, SettingsError

FACTS = Path(__file__).resolve().parents[1] / "fixtures" / "facts"


def test_settings_fields_and_defaults_are_the_tables() -> None:
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    assert set(fields) == {v.field for v in VARIABLES}
    assert all(f.default is dataclasses.MISSING for f in fields.values())  # defaults: only the table's
    defaults = Settings.defaults()
    for var in VARIABLES:
        assert getattr(defaults, var.field) == var.parse(var.name, var.default)


def test_config_keys_are_the_tables_knobs() -> None:
    assert {v.knob: v.name for v in VARIABLES if v.knob} == KNOB_VARIABLES
    assert not set(KNOB_VARIABLES) & set(LAUNCH_KNOBS)
    # Every plan field named after a knob holds that knob's variable.
    plan_fields = {f.name for f in dataclasses.fields(planner.Plan)}
    assert set(planner._VARIABLE_FIELDS.values()) == plan_fields & set(KNOB_VARIABLES)
    assert {"workers", "threads", "engine", "cache_bytes"} <= set(planner._VARIABLE_FIELDS.values())


def test_the_plans_env_holds_every_declared_variable() -> None:
    plan = pipeline.plan_from(pipeline.Inputs(facts=FACTS / "cpu-4core-16gb.json", environ={})).plan
    assert {v.name for v in VARIABLES} <= set(plan.env)
    Settings.from_environ(plan.env)  # the runtime accepts every value the plan writes
    for var, field in planner._VARIABLE_FIELDS.items():
        value = getattr(plan, field)
        assert plan.env[var] == (str(value).lower() if isinstance(value, bool) else
                                 str(int(value)) if isinstance(value, float) and value.is_integer() else str(value))


@pytest.mark.parametrize("var", VARIABLES, ids=lambda v: v.name)
def test_each_variable_is_checked_by_its_own_rule(var: object) -> None:
    from runtime.settings import EnvVar

    assert isinstance(var, EnvVar)
    assert check_value(var.name, var.default, "test") is not None
    bad = {"int": "x", "float": "x", "choice": "no-such-choice", "bool": "maybe"}.get(var.type_name)
    if bad is None:
        return
    with pytest.raises(SettingsError):
        var.parse(var.name, bad)
    with pytest.raises(UsageError, match=f"{var.name}=.* is invalid: expected"):
        check_value(var.name, bad, "test")


def test_deploy_env_shows_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["env", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["knob"], r["secret"]) for r in rows] == [(v.name, v.knob, v.secret) for v in VARIABLES]
    assert {r["name"] for r in rows if r["secret"]} == SECRET_VARIABLES == {"TAILOR_API_KEY"}
    units = {r["name"]: r["unit"] for r in rows}
    assert units["TAILOR_CACHE_BYTES"] == "bytes" and units["TAILOR_BATCH_WINDOW_MS"] == "ms"


def test_switch_interval_knob_sets_the_gil_switch_interval() -> None:
    import sys

    from runtime.__main__ import apply_switch_interval
    from runtime.settings import Settings, SettingsError

    before = sys.getswitchinterval()
    try:
        apply_switch_interval(Settings.from_environ({"TAILOR_SWITCH_INTERVAL_MS": "0.5"}))
        assert sys.getswitchinterval() == pytest.approx(0.0005)
        apply_switch_interval(Settings.defaults())
        assert sys.getswitchinterval() == pytest.approx(0.005)  # CPython's own default
    finally:
        sys.setswitchinterval(before)
    with pytest.raises(SettingsError, match="TAILOR_SWITCH_INTERVAL_MS"):
        Settings.from_environ({"TAILOR_SWITCH_INTERVAL_MS": "0"})
