"""IndexTTS2 runs from its own engine image (issue 18 item 5): plan, render, and the launch refusals.

IndexTTS2 pins Python 3.11, torch 2.8 and transformers 4.52.1, which Tailor's runtime images do not
hold, so an IndexTTS2 plan picks the engine image (templates/docker/indextts2-engine.Dockerfile.j2)
and its containers name the engine's interpreter. Nothing here builds an image or needs Docker.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from orchestrator.cli.app import main
from orchestrator.errors import LaunchError
from orchestrator.launch import image
from orchestrator.launch.docker_backend import run_options
from orchestrator.launch.spec import LaunchSpec
from orchestrator.pipeline import Inputs, plan_from
from orchestrator.plan import engine_image
from orchestrator.plan.planner import Plan
from orchestrator.render.renderer import RenderOptions, render, runtime_env
from orchestrator.supervise.session import check_engine_python

FACTS = Path(__file__).resolve().parents[1] / "fixtures" / "facts"
ENGINE_PYTHON = "/opt/indextts2/bin/python"


def plan_json(machine: str, model: str, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    assert main(["plan", "--facts", str(FACTS / f"{machine}.json"), "--model", model, "--json", *extra]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


@pytest.mark.parametrize(("machine", "build"), [("rtx3060-16gb", "cu128"), ("t4-8gb-4cpu", "cu128")])
def test_indextts2_plan_picks_the_engine_image_and_says_why(machine: str, build: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    plan = plan_json(machine, "indextts2", capsys)
    c = plan["container"]
    assert c["image"] == f"tailor-runtime:0.1.0-indextts2-{build}" and c["flavor"] == "indextts2"
    assert c["cuda_build"] == build and c["base_image"] == "python:3.11-slim-bookworm"
    why = next(r for r in plan["reasons"] if "engine image" in r)
    assert "Python 3.11, torch 2.8" in why and "transformers 4.52.1" in why and ENGINE_PYTHON in why
    # The plan's env is the host process's: the user's setting (unset here), with a clear warning.
    assert plan["env"]["TAILOR_INDEXTTS2_PYTHON"] == ""
    warning = next(w for w in plan["warnings"] if w.startswith("TAILOR_INDEXTTS2_PYTHON is unset"))
    assert "process backend and the systemd unit" in warning and "python3.11 -m venv /opt/indextts2" in warning


def test_a_user_set_interpreter_is_kept_and_not_warned_about(capsys: pytest.CaptureFixture[str]) -> None:
    plan = plan_json("rtx3060-16gb", "indextts2", capsys, "--set", "TAILOR_INDEXTTS2_PYTHON=/srv/itts/bin/python")
    assert plan["env"]["TAILOR_INDEXTTS2_PYTHON"] == "/srv/itts/bin/python"
    assert not any("TAILOR_INDEXTTS2_PYTHON is unset" in w for w in plan["warnings"])


@pytest.mark.parametrize("model", ["piper", "kokoro-82m"])
@pytest.mark.parametrize(("machine", "image_tag"), [("rtx3060-16gb", "tailor-runtime:0.1.0-cuda-cu128"),
                                                    ("t4-8gb-4cpu", "tailor-runtime:0.1.0-cuda-cu128"),
                                                    ("vps-2cpu-4gb", "tailor-runtime:0.1.0-cpu")])
def test_other_families_keep_the_runtime_image(model: str, machine: str, image_tag: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    plan = plan_json(machine, model, capsys)
    assert plan["container"]["image"] == image_tag and plan["env"]["TAILOR_INDEXTTS2_PYTHON"] == ""
    assert not any("engine image" in r for r in plan["reasons"])


def load_plan(machine: str, model: str, **settings: str) -> Plan:
    return plan_from(Inputs(facts=FACTS / f"{machine}.json", settings={"TAILOR_MODEL": model, **settings},
                            environ={})).plan


@pytest.mark.parametrize("machine", ["rtx3060-16gb", "t4-8gb-4cpu"])
def test_render_runs_the_engine_image_and_writes_its_recipe(machine: str) -> None:
    plan = load_plan(machine, "indextts2")
    files = render(plan)
    assert f'image: "{plan.container.image}"' in files["docker-compose.yml"]
    assert f"TAILOR_INDEXTTS2_PYTHON={ENGINE_PYTHON}\n" in files[".env"]
    assert f'value: "{ENGINE_PYTHON}"' in files["k8s.yaml"]
    assert "TAILOR_INDEXTTS2_PYTHON=\n" in files["tailor-runtime.env"]  # systemd: the user's (unset)
    recipe = files["indextts2-engine.Dockerfile"]
    assert "FROM python:3.11-slim-bookworm" in recipe and f"TAILOR_INDEXTTS2_PYTHON={ENGINE_PYTHON}" in recipe
    assert "https://download.pytorch.org/whl/cu128" in recipe and '"tailor-deploy[runtime]"' in recipe
    assert "indextts2-engine.Dockerfile" not in render(plan, ["systemd"])


def test_piper_render_has_no_engine_recipe() -> None:
    files = render(load_plan("rtx3060-16gb", "piper"))
    assert "indextts2-engine.Dockerfile" not in files and "TAILOR_INDEXTTS2_PYTHON=\n" in files[".env"]


def test_a_container_keeps_an_interpreter_the_user_set() -> None:
    plan = load_plan("rtx3060-16gb", "indextts2", TAILOR_INDEXTTS2_PYTHON="/custom/python")
    assert engine_image.container_env(plan.container.flavor, plan.env) == {}
    assert runtime_env(plan, "container", RenderOptions())[0]["TAILOR_INDEXTTS2_PYTHON"] == "/custom/python"
    assert run_options(LaunchSpec.from_plan(plan), "d")["environment"]["TAILOR_INDEXTTS2_PYTHON"] == "/custom/python"


def test_docker_backend_sets_the_engine_interpreter() -> None:
    spec = LaunchSpec.from_plan(load_plan("rtx3060-16gb", "indextts2"))
    assert spec.flavor == "indextts2" and spec.env_map["TAILOR_INDEXTTS2_PYTHON"] == ""
    assert run_options(spec, "d")["environment"]["TAILOR_INDEXTTS2_PYTHON"] == ENGINE_PYTHON
    piper = LaunchSpec.from_plan(load_plan("rtx3060-16gb", "piper"))
    assert run_options(piper, "d")["environment"]["TAILOR_INDEXTTS2_PYTHON"] == ""


def test_engine_flavor_installs_the_same_tailor_requirement_the_render_names() -> None:
    assert image.requirement(image.flavor("indextts2")) == engine_image.REQUIREMENT


class FakeImages:
    def __init__(self, present: set[str]) -> None:
        self.present = present

    def get(self, tag: str) -> object:
        if tag not in self.present:
            raise docker.errors.ImageNotFound(tag)
        return object()


class FakeClient:
    def __init__(self, *present: str) -> None:
        self.images = FakeImages(set(present))


def no_commands(argv: Any) -> Any:
    raise AssertionError(f"nothing may run before the refusal: {argv}")


TAG = "tailor-runtime:0.1.0-indextts2-cu128"


@pytest.mark.parametrize("wheelhouse", [None, "empty"])
def test_missing_engine_image_without_its_wheels_is_refused_before_anything(tmp_path: Path,
                                                                            wheelhouse: str | None) -> None:
    given = None
    if wheelhouse == "empty":
        given = tmp_path / "wh"
        (given / "indextts2").mkdir(parents=True)
    with pytest.raises(LaunchError) as info:
        image.ensure_image(FakeClient(), TAG, "indextts2", port=8000, wheelhouse=given,  # type: ignore[arg-type]
                           run=no_commands, log=no_commands)
    err = info.value
    assert err.exit_code == 1
    assert TAG in err.message and "IndexTTS2's wheels" in err.message
    assert ("DIR/indextts2" if given is None else str(given / "indextts2")) in err.message
    assert "pip wheel" in err.hint and "transformers==4.52.1" in err.hint and "--wheelhouse DIR" in err.hint
    assert f"docker build -f indextts2-engine.Dockerfile -t {TAG} ." in err.hint


def test_an_engine_image_already_here_is_used() -> None:
    result = image.ensure_image(FakeClient(TAG), TAG, "indextts2", port=8000,  # type: ignore[arg-type]
                                run=no_commands, log=no_commands)
    assert not result.built and "already exists" in result.reason


@pytest.mark.parametrize(("env", "importable", "refused"), [
    ({"TAILOR_MODEL": "indextts2"}, False, True),
    ({"TAILOR_MODEL": "indextts2", "TAILOR_INDEXTTS2_PYTHON": " "}, False, True),
    ({"TAILOR_MODEL": "indextts2"}, True, False),  # this interpreter has IndexTTS2
    ({"TAILOR_MODEL": "indextts2", "TAILOR_INDEXTTS2_PYTHON": "/opt/indextts2/bin/python"}, False, False),
    ({"TAILOR_MODEL": "indextts2", "TAILOR_INDEXTTS2_ADAPTER": "standin"}, False, False),
    ({"TAILOR_MODEL": "piper"}, False, False),
])
def test_process_backend_refuses_indextts2_without_its_interpreter(env: Mapping[str, str], importable: bool,
                                                                   refused: bool) -> None:
    if not refused:
        check_engine_python(env, lambda: importable)
        return
    with pytest.raises(LaunchError) as info:
        check_engine_python(env, lambda: importable)
    assert "TAILOR_INDEXTTS2_PYTHON is unset" in info.value.message
    assert "python3.11 -m venv /opt/indextts2" in info.value.hint and "--backend docker" in info.value.hint


class ClosingClient(FakeClient):
    closed = False

    def close(self) -> None:
        self.closed = True


def test_launch_checks_the_engine_image_before_touching_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.launch import docker_backend
    from orchestrator.supervise import session

    spec = LaunchSpec.from_plan(load_plan("rtx3060-16gb", "indextts2"))
    client = ClosingClient()
    monkeypatch.setattr(docker_backend, "connect", lambda environ: client)
    with pytest.raises(LaunchError, match="IndexTTS2's engine image"):
        session._check_engine_image(spec, session.LaunchOptions(), {})
    assert client.closed
    client.images.present.add(spec.image)
    session._check_engine_image(spec, session.LaunchOptions(), {})  # present: used as it is


def test_engine_image_build_context_holds_both_wheelhouses_and_the_recipe(tmp_path: Path) -> None:
    given = tmp_path / "wh"
    for sub, wheel in (("indextts2", "indextts-2.0-py3-none-any.whl"), ("tailor", "typer-0.12-py3-none-any.whl")):
        (given / sub).mkdir(parents=True)
        (given / sub / wheel).write_bytes(b"w")
    seen: dict[str, Any] = {}

    def fake_run(argv: Any) -> Any:  # `pip wheel` of the checkout: drop the project wheel where asked
        dest = Path(argv[argv.index("--wheel-dir") + 1])
        (dest / "tailor_deploy-0.1.0-py3-none-any.whl").write_bytes(b"w")
        return subprocess.CompletedProcess(argv, 0, "", "")

    class Api:
        def build(self, path: str, **kwargs: Any) -> list[Any]:
            ctx = Path(path)
            seen["files"] = sorted(str(p.relative_to(ctx)) for p in ctx.rglob("*") if p.is_file())
            seen["dockerfile"] = (ctx / "Dockerfile").read_text()
            seen["tag"] = kwargs["tag"]
            return []

    client = FakeClient()
    client.api = Api()  # type: ignore[attr-defined]
    result = image.ensure_image(client, TAG, "indextts2", port=8000, wheelhouse=given,  # type: ignore[arg-type]
                                run=fake_run, cuda_build="cu128")
    assert result.built and seen["tag"] == TAG
    assert seen["files"] == ["Dockerfile", "wheels/indextts2/indextts-2.0-py3-none-any.whl",
                             "wheels/tailor/tailor_deploy-0.1.0-py3-none-any.whl",
                             "wheels/tailor/typer-0.12-py3-none-any.whl"]
    assert "FROM python:3.11-slim-bookworm" in seen["dockerfile"] and "whl/cu128" in seen["dockerfile"]
