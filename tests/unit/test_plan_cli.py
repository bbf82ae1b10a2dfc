"""deploy profiles / plan / render / env through orchestrator.cli.app.main, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from orchestrator.cli.app import main
from runtime.settings import VARIABLES

FACTS = Path(__file__).resolve().parents[1] / "fixtures" / "facts"


def facts(name: str) -> str:
    return str(FACTS / f"{name}.json")


pytestmark = pytest.mark.usefixtures("clean_runtime_env")


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    """Human tables wrap at the console width; make it wide so phrases stay on one line."""
    from orchestrator.cli import output

    monkeypatch.setattr(output._stdout, "width", 300)


def test_plan_json_has_the_public_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--facts", facts("t4-8gb-4cpu"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    for key in ("profile", "engine", "device", "precision", "workers", "threads", "max_concurrency", "env",
                "container", "memory_budget", "warnings", "reasons", "provenance"):
        assert key in data
    assert (data["profile"], data["engine"], data["device"], data["precision"]) == ("t4-8gb", "torch", "cuda", "fp16")
    assert data["env"]["TAILOR_WORKERS"] == str(data["workers"])
    assert data["container"]["image"] == "tailor-runtime:0.1.0-cuda-cu128"


def test_plan_flags_and_user_env(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAILOR_LOG_LEVEL", "debug")
    assert main(["plan", "--facts", facts("cpu-4core-16gb"), "--json", "--workers", "2", "--port", "9001",
                 "--set", "TAILOR_MAX_INPUT_CHARS=1000"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["workers"] == 2 and data["threads"] == 2
    assert data["env"]["TAILOR_PORT"] == "9001" and data["env"]["TAILOR_MAX_INPUT_CHARS"] == "1000"
    sources = {p["name"]: p["source"] for p in data["provenance"]}
    assert sources["workers"] == "cli" and sources["TAILOR_LOG_LEVEL"] == "env"


def test_plan_explain_shows_profiles_budget_and_sources(capsys: pytest.CaptureFixture[str], wide: None) -> None:
    assert main(["plan", "--facts", facts("gtx1050-16gb"), "--explain"]) == 0
    out = capsys.readouterr().out
    assert "low-vram-gpu" in out and "gpu-16gb: does not fit" in out
    assert "GPU memory 2.0 GiB < 7.5 GiB" in out
    assert "Memory budget" in out and "per-request working memory" in out
    assert "TAILOR_WORKERS" in out and "derived" in out


def test_forced_profile_warns_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--facts", facts("cpu-4core-16gb"), "--profile", "gpu-16gb", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["profile"] == "gpu-16gb"
    assert "forced but does not fit" in captured.err


def test_config_file_and_its_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "tailor.yaml"
    config.write_text("profile: cpu-only\nsettings:\n  workers: 3\n", encoding="utf-8")
    assert main(["plan", "--facts", facts("rtx3060-16gb"), "--config", str(config), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["profile"] == "cpu-only" and data["workers"] == 3
    config.write_text("settings:\n  wrkers: 3\n", encoding="utf-8")
    assert main(["plan", "--facts", facts("rtx3060-16gb"), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{config}:2: field settings.wrkers: unknown field" in err
    assert "Traceback" not in err


def test_profiles_lists_every_verdict(capsys: pytest.CaptureFixture[str], wide: None) -> None:
    assert main(["profiles", "--facts", facts("t4-8gb-4cpu"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["chosen"] == "t4-8gb"
    verdicts = {p["name"]: p for p in data["profiles"]}
    assert verdicts["gpu-16gb"]["status"] == "fits-with-change"
    assert verdicts["gpu-16gb"]["changes"] == ["needs 6.4 GiB more RAM"]
    assert verdicts["jetson-edge"]["status"] == "does-not-fit"
    assert main(["profiles", "--facts", facts("t4-8gb-4cpu")]) == 0
    assert "fits with a change" in capsys.readouterr().out


def test_profiles_lists_verdicts_even_when_nothing_fits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator.resources import profiles_dir

    only = tmp_path / "only-gpu"
    only.mkdir()
    (only / "gpu-16gb.yaml").write_text((profiles_dir() / "gpu-16gb.yaml").read_text(encoding="utf-8"))
    host = json.loads(Path(facts("cpu-4core-16gb")).read_text())
    host["memory"]["effective_total_bytes"] = 1024**3  # below cpu-only's 1.5 GiB too
    small = tmp_path / "small.json"
    small.write_text(json.dumps(host))
    assert main(["profiles", "--facts", str(small), "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["chosen"] is None
    assert {p["name"]: p["status"] for p in data["profiles"]}["cpu-only"] == "fits-with-change"
    assert "no profile fits" in captured.err
    assert main(["plan", "--facts", str(small)]) == 1
    assert "force one with --profile" in capsys.readouterr().err


def test_user_profiles_dir_override_is_announced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator.resources import profiles_dir

    mine = tmp_path / "mine"
    mine.mkdir()
    text = (profiles_dir() / "cpu-only.yaml").read_text(encoding="utf-8").replace("per_worker_max: 4",
                                                                                 "per_worker_max: 1")
    (mine / "cpu-only.yaml").write_text(text, encoding="utf-8")
    assert main(["plan", "--facts", facts("cpu-4core-16gb"), "--profiles", str(mine), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["threads"] == 1
    assert "replaces" in captured.err


def test_malformed_profile_exits_2_with_location(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.yaml").write_text("priority: 5\nengine: onnx\ndevice: gpu\n", encoding="utf-8")
    assert main(["profiles", "--facts", facts("cpu-4core-16gb"), "--profiles", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:3: field device: 'gpu' is not one of cpu, cuda" in err


def test_render_writes_parseable_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "deploy"
    assert main(["render", "--facts", facts("rtx3060-16gb"), "--out", str(out), "--format", "compose,k8s",
                 "--network", "host", "--port", "8100"]) == 0
    listed = capsys.readouterr().out.split()
    assert sorted(Path(p).name for p in listed) == [".env", "docker-compose.yml", "facts.json", "k8s.yaml",
                                                    "plan.json"]
    service = yaml.safe_load((out / "docker-compose.yml").read_text())["services"]["tailor-runtime"]
    assert service["network_mode"] == "host" and "8100" in service["healthcheck"]["test"]


def test_render_rejects_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--facts", facts("rtx3060-16gb"), "--out", str(tmp_path), "--format", "helm"]) == 2
    assert "unknown format" in capsys.readouterr().err
    assert main(["render", "--facts", facts("rtx3060-16gb"), "--out", str(tmp_path), "--network", "macvlan"]) == 2
    assert "--network" in capsys.readouterr().err
    assert main(["plan", "--facts", facts("rtx3060-16gb"), "--set", "workers"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_env_lists_every_runtime_variable(capsys: pytest.CaptureFixture[str], wide: None) -> None:
    assert main(["env", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == [v.name for v in VARIABLES]
    assert all(set(r) == {"name", "type", "unit", "default", "allowed", "knob", "secret", "description"}
               for r in rows)
    port = next(r for r in rows if r["name"] == "TAILOR_PORT")
    assert (port["type"], port["allowed"], port["knob"]) == ("int", "1-65535", "port")
    assert main(["env"]) == 0
    assert "TAILOR_WORKERS" in capsys.readouterr().out


def test_missing_facts_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--facts", str(tmp_path / "none.json")]) == 2
    err = capsys.readouterr().err
    assert f"facts file {tmp_path / 'none.json'} does not exist" in err
    assert "deploy probe --json > FILE" in err


def test_profiles_judges_with_the_selections_facts_and_gpus(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """`deploy profiles` shows the verdicts the choice was made from: the facts completed and the
    GPUs chosen once by the selection, not judged again on the raw facts."""
    from orchestrator.pipeline import Inputs, select_from
    from orchestrator.select.selection import DOES_NOT_FIT

    data = json.loads((FACTS / "cpu-4core-16gb.json").read_text(encoding="utf-8"))
    for key in ("total_bytes", "available_bytes", "effective_total_bytes", "effective_available_bytes"):
        data["memory"][key] = 0  # a probe that could not read the memory: the selection assumes a size
    file = tmp_path / "facts.json"
    file.write_text(json.dumps(data), encoding="utf-8")
    assert main(["profiles", "--facts", str(file), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    selection = select_from(Inputs(facts=file, environ={})).select()
    assert shown["chosen"] == selection.chosen.name
    by_name = {p["name"]: p for p in shown["profiles"]}
    assert by_name[shown["chosen"]]["status"] != DOES_NOT_FIT  # the chosen profile is not shown as failing
    assert {name: (p["status"], tuple(p["failures"])) for name, p in by_name.items()} == {
        v.profile: (v.status, v.failures) for v in selection.verdicts}
