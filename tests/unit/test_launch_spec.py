"""Plan -> LaunchSpec, plan.json read strictly, and a spec from a directory rendered without plan.json."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from orchestrator import pipeline
from orchestrator.errors import LaunchError, PlanError, UsageError
from orchestrator.launch.rendered import spec_from_rendered_dir
from orchestrator.launch.spec import LaunchSpec
from orchestrator.plan.planner import PLAN_VERSION, Plan

FACTS = Path(__file__).resolve().parents[1] / "fixtures" / "facts"


def planned(machine: str, **settings: str) -> pipeline.Planned:
    return pipeline.plan_from(pipeline.Inputs(facts=FACTS / f"{machine}.json", settings=settings, environ={}))


def test_spec_from_plan_takes_container_and_env_without_a_dict_round_trip() -> None:
    plan = planned("t4-8gb-4cpu", port="9001").plan
    spec = LaunchSpec.from_plan(plan)
    c = plan.container
    assert (spec.profile, spec.image, spec.flavor) == (plan.profile, c.image, c.flavor)
    assert spec.port == 9001 == plan.port and spec.env_map == dict(plan.env)
    assert (spec.memory_limit_bytes, spec.cpus, spec.gpu_device_ids) == (
        c.memory_limit_bytes, c.cpus, ("GPU-5a0c9f7e-1b1d-4c55-9d0e-0000000000t4",))
    assert spec.cuda_build == c.cuda_build == "cu128"
    assert spec.plan is plan
    moved = spec.with_port(9002)
    assert moved.port == 9002 and moved.env_map["TAILOR_PORT"] == "9002" and moved.url == "http://127.0.0.1:9002"


def test_the_spec_holds_the_port_once_typed_and_writes_it_only_into_the_childs_environment() -> None:
    spec = planned("cpu-4core-16gb", port="9005").spec
    assert spec.port == 9005 and "TAILOR_PORT" not in dict(spec.env)
    assert spec.env_map["TAILOR_PORT"] == "9005"
    moved = spec.with_port(9006)
    assert "TAILOR_PORT" not in dict(moved.env) and moved.env_map["TAILOR_PORT"] == "9006"
    with pytest.raises(ValueError, match="TAILOR_PORT=1 disagrees with port 2"):
        LaunchSpec(profile="p", image="i", flavor="cpu", env=(("TAILOR_PORT", "1"),), port=2)


def test_spec_settings_are_typed_by_the_knob_table() -> None:
    result = planned("cpu-4core-16gb", workers="3")
    spec = result.spec
    assert isinstance(result.plan.workers, int) and result.plan.workers == 3
    workers = spec.setting("TAILOR_WORKERS", 0)
    assert workers == 3 and type(workers) is int
    assert spec.setting("TAILOR_BATCHING", None) is False
    assert spec.setting("TAILOR_NOT_SET_ANYWHERE", 7) == 7
    broken = dataclasses.replace(spec, env=tuple({**dict(spec.env), "TAILOR_WORKERS": "three"}.items()))
    assert broken.setting("TAILOR_WORKERS", 1) == 1  # the runtime refuses it itself, with its message


def test_plan_json_round_trip_keeps_the_types(tmp_path: Path) -> None:
    result = planned("cpu-4core-16gb", workers="2")
    pipeline.write_plan_files(tmp_path, result.plan, result.facts)
    again = Plan.from_json_file(tmp_path / "plan.json")
    assert (type(again.workers), type(again.port), type(again.batching), type(again.batch_window_ms)) == (
        int, int, bool, float)
    assert again.workers == 2 and LaunchSpec.from_plan(again).setting("TAILOR_WORKERS", 0) == 2


def test_plan_json_round_trip_is_exact(tmp_path: Path) -> None:
    result = planned("rtx3060-16gb")
    pipeline.write_plan_files(tmp_path, result.plan, result.facts)
    again = Plan.from_json_file(tmp_path / "plan.json")
    assert again == result.plan
    assert LaunchSpec.from_plan(again) == result.spec
    assert (tmp_path / "plan.json").stat().st_mode & 0o777 == 0o600  # the env may hold TAILOR_API_KEY


@pytest.mark.parametrize(("path", "change", "message"), [
    (("container",), None, r"field container: is missing"),
    (("container", "image"), None, r"field container.image: is missing"),
    (("container", "cpus"), "4", r"field container.cpus: expected a number, got '4'"),
    (("container", "read_only"), 1, r"field container.read_only: expected true or false, got 1"),
    (("other_env", "TAILOR_LOG_LEVEL"), 1, r"field other_env.TAILOR_LOG_LEVEL: expected a string, got 1"),
    (("port",), "8000", r"field port: expected an integer, got '8000'"),
    (("surprise",), 1, r"field surprise: unknown field; known fields here: "),
])
def test_plan_reader_names_the_file_and_the_field(tmp_path: Path, path: tuple[str, ...], change: object,
                                                  message: str) -> None:
    data = planned("cpu-4core-16gb").plan.to_dict()
    target = data
    for key in path[:-1]:
        target = target[key]
    if change is None:
        del target[path[-1]]
    else:
        target[path[-1]] = change
    file = tmp_path / "plan.json"
    file.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(PlanError, match=f"^{file}: {message}"):
        Plan.from_json_file(file)


PLANS = Path(__file__).resolve().parents[1] / "fixtures" / "plans"
V2_FILES = {"cpu-4core-16gb": ("plan-v2-cpu-4core-16gb.json", {"port": "9005"}),
            "t4-8gb-4cpu": ("plan-v2-t4-8gb-4cpu.json", {"workers": "2"})}
"""Version-2 plan.json files as the version-2 writer wrote them (kept to prove they stay readable)."""


@pytest.mark.parametrize("machine", sorted(V2_FILES))
def test_a_version_2_plan_is_read_as_the_plan_it_was(machine: str) -> None:
    name, settings = V2_FILES[machine]
    stored = json.loads((PLANS / name).read_text(encoding="utf-8"))
    assert stored["plan_version"] == 2
    old = Plan.from_json_file(PLANS / name)
    plan = planned(machine, **settings).plan
    assert old == plan
    # The environment a launch writes is byte for byte what version 2 stored.
    assert old.env == stored["env"] and LaunchSpec.from_plan(old).env_map == stored["env"]
    assert old.port == int(stored["env"]["TAILOR_PORT"])


def test_a_plan_file_stores_each_value_once() -> None:
    plan = planned("t4-8gb-4cpu", port="9001", workers="2").plan
    data = plan.to_dict()
    assert data["plan_version"] == PLAN_VERSION == 3
    assert "env" not in data and (data["port"], data["workers"]) == (9001, 2)
    held = {"TAILOR_PORT", "TAILOR_WORKERS", "TAILOR_THREADS_PER_WORKER", "TAILOR_MAX_QUEUE", "TAILOR_PROCESSES",
            "TAILOR_MAX_BATCH_SIZE", "TAILOR_BATCHING", "TAILOR_BATCH_WINDOW_MS", "TAILOR_CACHE_BYTES"}
    assert not held & set(data["other_env"])  # no setting stored twice
    assert held <= set(plan.env)
    assert (plan.env["TAILOR_PORT"], plan.env["TAILOR_WORKERS"]) == ("9001", "2")  # text made from the fields
    assert plan.to_view() == {**data, "env": plan.env}
    assert dataclasses.replace(plan, workers=3).env["TAILOR_WORKERS"] == "3"  # one owner: the field


def test_a_version_2_plan_with_a_bad_port_names_the_field(tmp_path: Path) -> None:
    data = json.loads((PLANS / "plan-v2-t4-8gb-4cpu.json").read_text(encoding="utf-8"))
    data["env"]["TAILOR_PORT"] = "http"
    file = tmp_path / "plan.json"
    file.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(PlanError, match=f"^{file}: field env.TAILOR_PORT: must be a port number, got 'http'"):
        Plan.from_json_file(file)


def test_a_version_1_plan_is_read_and_other_versions_are_refused(tmp_path: Path) -> None:
    plan = planned("cpu-4core-16gb", port="9005").plan
    data = json.loads((PLANS / "plan-v2-cpu-4core-16gb.json").read_text(encoding="utf-8"))
    # What version 1 wrote: the port twice, no planned process limit.
    del data["container"]["pids_limit"]
    data["container"]["port"] = 9005
    data["plan_version"] = 1
    file = tmp_path / "plan.json"
    file.write_text(json.dumps(data), encoding="utf-8")
    old = Plan.from_json_file(file)
    assert old == plan and old.port == 9005 and LaunchSpec.from_plan(old).pids_limit == plan.container.pids_limit
    data["plan_version"] = 0
    file.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(PlanError, match=f"plan_version 0 is an older plan format than this tailor reads \\({PLAN_VERSION}\\)") as info:
        Plan.from_json_file(file)
    assert "deploy render --out DIR" in info.value.hint
    data["plan_version"] = PLAN_VERSION + 1
    file.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(PlanError, match="is newer than this tailor reads"):
        Plan.from_json_file(file)


def test_plan_file_missing_or_not_json(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="is not a rendered deployment"):
        Plan.from_json_file(tmp_path / "plan.json")
    (tmp_path / "plan.json").write_text("{\n  oops", encoding="utf-8")
    with pytest.raises(PlanError, match=r"plan.json:2:3: not valid JSON"):
        Plan.from_json_file(tmp_path / "plan.json")


def test_step_down_keeps_the_typed_plan() -> None:
    plan = planned("rtx3060-16gb").plan
    smaller = dataclasses.replace(plan, workers=1)
    assert LaunchSpec.from_plan(smaller).plan is smaller


COMPOSE = """# Generated by tailor 0.1.0 for profile t4-8gb; re-run `deploy render` instead of editing.
services:
  tailor-runtime:
    image: "tailor-runtime:0.1.0-cuda"
    user: "10001:10001"
    read_only: true
    mem_limit: "6144m"
    cpus: "3.5"
    shm_size: "256m"
    ports:
      - "127.0.0.1:8000:8000"
    deploy:
      resources:
        reservations:
          devices:
            - driver: nvidia
              device_ids: ["0"]
              capabilities: [gpu]
"""


def test_spec_from_rendered_compose_and_env(tmp_path: Path) -> None:
    (tmp_path / "docker-compose.yml").write_text(COMPOSE, encoding="utf-8")
    (tmp_path / ".env").write_text("# where from\nTAILOR_HOST=0.0.0.0\nTAILOR_PORT=8000\nTAILOR_VOICE='x y'\n",
                                   encoding="utf-8")
    spec = spec_from_rendered_dir(tmp_path)
    assert (spec.profile, spec.flavor, spec.port) == ("t4-8gb", "cuda", 8000)
    assert spec.memory_limit_bytes == 6144 * 1024**2 and spec.cpus == 3.5 and spec.shm_size_bytes == 256 * 1024**2
    assert spec.gpu_device_ids == ("0",) and spec.network_mode == "bridge" and spec.plan is None
    assert spec.env_map["TAILOR_HOST"] == "127.0.0.1" and spec.env_map["TAILOR_VOICE"] == "x y"


def test_rendered_env_garbage_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "docker-compose.yml").write_text(COMPOSE, encoding="utf-8")
    (tmp_path / ".env").write_text("TAILOR_PORT=8000\nthis is not env\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"\.env:2: not a NAME=value line"):
        spec_from_rendered_dir(tmp_path)


def test_rendered_dir_without_compose_is_a_launch_error(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="is not a rendered deployment"):
        spec_from_rendered_dir(tmp_path)
