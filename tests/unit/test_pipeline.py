"""One pipeline behind every command: the same inputs give the same plan in `plan`, `render` and
`auto`; config files, extra profiles and --set combine with recorded sources; config values obey
the flags' rules; secrets never print unless asked."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from orchestrator import pipeline
from orchestrator.cli import launch_cmd
from orchestrator.cli.app import main
from orchestrator.errors import UsageError
from orchestrator.plan.planner import Plan
from orchestrator.plan.runtime_env import REDACTED
from orchestrator.supervise.deployment import Prepared

FACTS = Path(__file__).resolve().parents[1] / "fixtures" / "facts"
PROFILES = Path(__file__).resolve().parents[2] / "profiles"


pytestmark = pytest.mark.usefixtures("clean_runtime_env")


@pytest.fixture
def user_inputs(tmp_path: Path) -> list[str]:
    """`--config tailor.yaml --profiles ./mine --set TAILOR_WORKERS=1` as in the issue, on recorded facts."""
    mine = tmp_path / "mine"
    mine.mkdir()
    text = (PROFILES / "cpu-only.yaml").read_text(encoding="utf-8")
    (mine / "my-cpu.yaml").write_text(text.replace("priority: 10", "priority: 11")
                                      .replace("max_workers: 8", "max_workers: 3"), encoding="utf-8")
    config = tmp_path / "tailor.yaml"
    config.write_text("profile: my-cpu\nsettings:\n  threads: 1\n  cache_bytes: 1048576\n"
                      "env:\n  TAILOR_LOG_LEVEL: warning\n  TAILOR_API_KEY: s3cret-key\n", encoding="utf-8")
    return ["--facts", str(FACTS / "cpu-4core-16gb.json"), "--config", str(config), "--profiles", str(mine),
            "--set", "TAILOR_WORKERS=1", "--port", "9123"]


def source(plan: Plan, name: str) -> str:
    return next(p.source for p in plan.provenance if p.name == name)


def test_the_same_inputs_give_the_same_plan_in_plan_render_and_auto(
        tmp_path: Path, user_inputs: list[str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["plan", *user_inputs, "--json", "--show-secrets"]) == 0
    from_plan = json.loads(capsys.readouterr().out)

    assert main(["render", *user_inputs, "--out", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    from_render = json.loads((tmp_path / "out" / "plan.json").read_text(encoding="utf-8"))

    launched: list[Prepared] = []
    monkeypatch.setattr(launch_cmd, "launch", lambda prepared, *_args, **_kw: launched.append(prepared))
    assert main(["auto", *user_inputs, "--state-dir", str(tmp_path / "state")]) == 0
    capsys.readouterr()
    (prepared,) = launched
    from_auto = json.loads((tmp_path / "state" / "rendered" / "plan.json").read_text(encoding="utf-8"))

    # `deploy plan --json` prints the stored plan plus `env`, the environment made from it.
    shown_env = from_plan.pop("env")
    assert from_plan == from_render == from_auto
    assert prepared.plan is not None and prepared.plan.to_dict() == from_plan
    assert shown_env == prepared.plan.env == prepared.spec.env_map and "env" not in from_render
    assert prepared.spec.port == 9123 and prepared.spec.env_map["TAILOR_WORKERS"] == "1"
    # The inputs really took effect, each with its source.
    plan = prepared.plan
    assert plan.profile == "my-cpu" and plan.workers == 1 and plan.threads == 1
    assert source(plan, "TAILOR_WORKERS") == "cli" and source(plan, "TAILOR_PORT") == "cli"
    assert source(plan, "TAILOR_THREADS_PER_WORKER") == "config" and source(plan, "TAILOR_LOG_LEVEL") == "config"
    assert plan.env["TAILOR_CACHE_BYTES"] == "1048576" and source(plan, "TAILOR_CACHE_BYTES") == "config"
    assert source(plan, "TAILOR_BATCHING") == "profile" and source(plan, "TAILOR_MAX_INPUT_CHARS") == "derived"
    assert source(plan, "TAILOR_HEADER_TIMEOUT_S") == "default"


def test_auto_explain_shows_each_value_and_its_source_with_secrets_redacted(
        tmp_path: Path, user_inputs: list[str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.cli import output

    monkeypatch.setattr(output._stdout, "width", 300)
    monkeypatch.setattr(launch_cmd, "launch", lambda *_args, **_kw: None)
    assert main(["auto", *user_inputs, "--explain", "--state-dir", str(tmp_path / "state")]) == 0
    shown = capsys.readouterr().out  # not a terminal: the table is plain text, columns two spaces apart
    rows = {cells[0]: cells[1:] for line in shown.splitlines() if line.startswith("TAILOR_")
            for cells in [re.split(r"\s{2,}", line.strip())]}
    assert rows["TAILOR_WORKERS"][:2] == ["1", "cli"]
    assert rows["TAILOR_LOG_LEVEL"][:2] == ["warning", "config"]
    assert rows["TAILOR_BATCHING"][1] == "profile" and rows["TAILOR_MAX_INPUT_CHARS"][1] == "derived"
    assert rows["TAILOR_HEADER_TIMEOUT_S"][1] == "default"
    assert rows["TAILOR_API_KEY"][:2] == [REDACTED, "config"] and "s3cret-key" not in shown


def test_secrets_are_redacted_in_plan_output_unless_asked(user_inputs: list[str],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", *user_inputs, "--json"]) == 0
    text = capsys.readouterr().out
    data = json.loads(text)
    assert "s3cret-key" not in text
    assert data["env"]["TAILOR_API_KEY"] == REDACTED and data["user_values"]["TAILOR_API_KEY"][0] == REDACTED
    assert data["other_env"]["TAILOR_API_KEY"] == REDACTED
    assert main(["plan", *user_inputs, "--explain"]) == 0
    assert "s3cret-key" not in capsys.readouterr().out
    assert main(["plan", *user_inputs, "--json", "--show-secrets"]) == 0
    assert json.loads(capsys.readouterr().out)["env"]["TAILOR_API_KEY"] == "s3cret-key"


def test_rendered_files_keep_the_secret_so_the_runtime_gets_it(tmp_path: Path, user_inputs: list[str],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", *user_inputs, "--out", str(tmp_path)]) == 0
    assert "s3cret-key" not in capsys.readouterr().out
    assert "TAILOR_API_KEY=s3cret-key" in (tmp_path / ".env").read_text(encoding="utf-8")
    for name in (".env", "plan.json", "tailor-runtime.env"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name


@pytest.mark.parametrize(("setting", "value", "expected"), [
    ("port", "99999", "an integer from 1-65535"),
    ("port", "0", "an integer from 1-65535"),
    ("workers", "0", "an integer >= 1"),
    ("cache_bytes", "-1", "an integer >= 0"),
    ("precision", "fp8", "one of fp32, fp16, bf16"),
])
def test_config_values_obey_the_same_rules_as_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    setting: str, value: str, expected: str) -> None:
    config = tmp_path / "tailor.yaml"
    config.write_text(f"# mine\nsettings:\n  {setting}: {value}\n", encoding="utf-8")
    facts = str(FACTS / "cpu-4core-16gb.json")
    assert main(["plan", "--facts", facts, "--config", str(config)]) == 2
    from_file = capsys.readouterr().err
    assert f"{config}:3: field settings.{setting}" in from_file and expected in from_file
    assert main(["plan", "--facts", facts, "--set", f"{setting}={value}"]) == 2
    from_flag = capsys.readouterr().err
    assert f"command line ({setting})" in from_flag and expected in from_flag


def test_port_flag_out_of_range_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--facts", str(FACTS / "cpu-4core-16gb.json"), "--port", "70000"]) == 2
    assert "an integer from 1-65535" in capsys.readouterr().err


def test_unknown_profile_exits_2_with_did_you_mean(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--facts", str(FACTS / "cpu-4core-16gb.json"), "--profile", "cpu-onyl"]) == 2
    assert "no profile named 'cpu-onyl'; did you mean 'cpu-only'?" in capsys.readouterr().err


def test_a_tuned_config_is_recorded_under_its_label() -> None:
    from orchestrator.plan.user_config import UserConfig

    tuned = UserConfig(source="tuned.yaml", values={"TAILOR_WORKERS": 2}, where={"TAILOR_WORKERS": "tuned.yaml:2"})
    planned = pipeline.plan_from(pipeline.Inputs(facts=FACTS / "cpu-4core-16gb.json", config=tuned,
                                                 config_label="tuned", environ={}))
    assert planned.plan.workers == 2 and source(planned.plan, "TAILOR_WORKERS") == "tuned"
    # A flag still wins over it, and the environment too.
    over = pipeline.plan_from(pipeline.Inputs(facts=FACTS / "cpu-4core-16gb.json", config=tuned,
                                              config_label="tuned", settings={"workers": "1"}, environ={}))
    assert over.plan.workers == 1 and source(over.plan, "TAILOR_WORKERS") == "cli"
    env = pipeline.plan_from(pipeline.Inputs(facts=FACTS / "cpu-4core-16gb.json", config=tuned,
                                             config_label="tuned", environ={"TAILOR_WORKERS": "3"}))
    assert env.plan.workers == 3 and source(env.plan, "TAILOR_WORKERS") == "env"


def test_given_facts_skip_the_probe_and_bad_set_items_are_usage_errors() -> None:
    from orchestrator.probe.facts import HostFacts

    facts = HostFacts.from_json_file(FACTS / "t4-8gb-4cpu.json")
    planned = pipeline.plan_from(pipeline.Inputs(facts=facts, environ={}))
    assert planned.facts is facts and planned.plan.profile == "t4-8gb"
    with pytest.raises(UsageError, match="is not KEY=VALUE"):
        pipeline.cli_settings(["workers"])
    assert pipeline.cli_settings(["workers=2", "port=1"], port=5) == {"workers": "2", "port": "5"}


def test_launch_knobs_come_from_config_and_set_but_never_reach_the_runtime_env(tmp_path: Path) -> None:
    config = tmp_path / "tailor.yaml"
    config.write_text("settings:\n  startup_timeout_s: 300\n  health_interval_s: 2.5\n", encoding="utf-8")
    planned = pipeline.plan_from(pipeline.Inputs(facts=FACTS / "cpu-4core-16gb.json", config=config,
                                                 settings={"startup_timeout_s": "90"}, environ={}))
    plan = planned.plan
    assert plan.launch_settings == {"health_interval_s": 2.5, "startup_timeout_s": 90.0}
    assert source(plan, "startup_timeout_s") == "cli" and source(plan, "health_interval_s") == "config"
    assert not {"startup_timeout_s", "health_interval_s"} & set(plan.env)
    assert Plan.from_dict(plan.to_dict()) == plan
    from orchestrator.cli.explain import source_rows

    rows = {row["name"]: row for row in source_rows(plan)}
    assert (rows["startup_timeout_s"]["value"], rows["startup_timeout_s"]["source"]) == ("90", "cli")
    config.write_text("settings:\n  startup_timeout_s: 0\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"tailor.yaml:2: field settings.startup_timeout_s: .* > 0"):
        pipeline.plan_from(pipeline.Inputs(facts=FACTS / "cpu-4core-16gb.json", config=config, environ={}))


def test_pids_limit_is_decided_once_and_reaches_the_launch_spec() -> None:
    planned = pipeline.plan_from(pipeline.Inputs(facts=FACTS / "cgroup-4cpu-on-64core.json", environ={}))
    assert planned.plan.container.pids_limit == 512 == planned.spec.pids_limit


def test_status_explain_shows_the_running_plans_sources(tmp_path: Path, user_inputs: list[str],
                                                        capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.supervise.state import DeploymentState, write_state

    monkeypatch.setattr(launch_cmd, "launch", lambda *_args, **_kw: None)
    state_dir = tmp_path / "state"
    assert main(["auto", *user_inputs, "--state-dir", str(state_dir)]) == 0
    write_state(state_dir, DeploymentState(
        profile="my-cpu", backend="process", backend_reason="test", url="http://127.0.0.1:9123", state="STOPPED",
        state_reason="stopped by `deploy down`", supervisor_pid=1, supervisor_started_at_s=0.0,
        rendered_dir=str(state_dir / "rendered")))
    capsys.readouterr()
    assert main(["status", "--json", "--explain", "--state-dir", str(state_dir)]) == 0  # stopped cleanly: not a problem
    data = json.loads(capsys.readouterr().out)
    rows = {row["name"]: row for row in data["sources"]}
    assert (rows["TAILOR_WORKERS"]["value"], rows["TAILOR_WORKERS"]["source"]) == ("1", "cli")
    assert rows["TAILOR_LOG_LEVEL"]["source"] == "config" and rows["TAILOR_API_KEY"]["value"] == REDACTED
    assert main(["status", "--explain", "--state-dir", str(state_dir)]) == 0
    shown = capsys.readouterr().out
    assert "where each value came from" in shown and "s3cret-key" not in shown
    # A FATAL deployment still explains its plan, and the exit code says it is a problem.
    write_state(state_dir, DeploymentState(
        profile="my-cpu", backend="process", backend_reason="test", url="http://127.0.0.1:9123", state="FATAL",
        state_reason="crash loop: 6 failures within 120 s", supervisor_pid=1, supervisor_started_at_s=0.0,
        rendered_dir=str(state_dir / "rendered")))
    assert main(["status", "--json", "--explain", "--state-dir", str(state_dir)]) == 1
    captured = capsys.readouterr()
    fatal = json.loads(captured.out)
    assert fatal["state"] == "FATAL" and {row["name"] for row in fatal["sources"]} == set(rows)
    assert "crash loop" in captured.err


def test_up_port_is_checked_by_the_same_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", str(tmp_path), "--port", "70000", "--state-dir", str(tmp_path / "state")]) == 2
    assert "command line (port): TAILOR_PORT='70000' is invalid: expected an integer from 1-65535" in \
        capsys.readouterr().err


def test_a_loaded_profile_set_is_reused_for_many_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.select import profiles as profiles_module

    loaded = profiles_module.load_profiles()
    calls: list[object] = []
    monkeypatch.setattr("orchestrator.pipeline.load_profiles", lambda *a: calls.append(a) or loaded)
    for machine in ("cpu-4core-16gb", "t4-8gb-4cpu"):
        planned = pipeline.plan_from(pipeline.Inputs(facts=FACTS / f"{machine}.json", profiles=loaded, environ={}))
        assert planned.profiles is loaded
    assert calls == []
    with pytest.raises(UsageError, match="not both"):
        pipeline.select_from(pipeline.Inputs(facts=FACTS / "t4-8gb-4cpu.json", profiles=loaded,
                                             profile_dirs=(Path("x"),)))
