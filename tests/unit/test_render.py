"""render(): golden files per profile, parse-back, determinism and options.

Regenerate the golden files after an intended change with
``TAILOR_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_render.py`` and review the diff.
"""

from __future__ import annotations

import configparser
import os
import stat
from pathlib import Path

import pytest
import yaml

from orchestrator.errors import RenderError, UsageError
from orchestrator.plan.planner import Plan, make_plan
from orchestrator.probe.facts import HostFacts
from orchestrator.render.renderer import (
    RenderOptions,
    parse_env_text,
    parse_formats,
    render,
    write_rendered,
)
from orchestrator.select.profiles import load_profiles
from orchestrator.select.selection import select_profile
from runtime.settings import Settings

TESTS = Path(__file__).resolve().parents[1]
GOLDEN = TESTS / "golden"
OPTIONS = RenderOptions(python="/opt/tailor/venv/bin/python")
PROFILE_MACHINES = {
    "gpu-16gb": "rtx3060-16gb",
    "t4-8gb": "t4-8gb-4cpu",
    "cpu-only": "cpu-4core-16gb",
    "low-vram-gpu": "gtx1050-16gb",
    "jetson-edge": "jetson-agx-orin-r36",
    "jetson-cpu": "jetson-orin-nx-8gb",
    "gpu-large": "h100x8-2tb",
}


def plan_for(machine: str, **kwargs) -> Plan:
    host = HostFacts.from_json_file(TESTS / "fixtures" / "facts" / f"{machine}.json")
    return make_plan(host, select_profile(host, load_profiles()), environ={}, **kwargs)


PYENV_PYTHON = "/root/.pyenv/versions/3.11.9/bin/python3.11"


@pytest.mark.parametrize(("profile", "machine"), sorted(PROFILE_MACHINES.items()))
def test_golden_files(profile: str, machine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = plan_for(machine)
    assert plan.profile == profile
    # The machine running the tests may have /opt/tailor/venv as a venv over a pyenv Python in
    # /root (issue 22: every systemd golden then said User=root). The goldens come from their
    # inputs only, so here this machine says exactly that, and nothing changes.
    with monkeypatch.context() as lying:
        lying.setattr(os.path, "exists", lambda _path: True)
        lying.setattr(os.path, "realpath", lambda _path, **_kw: PYENV_PYTHON)
        files = render(plan, options=OPTIONS)
    assert sorted(files) == [".env", "docker-compose.yml", "k8s.yaml", "tailor-runtime.env", "tailor-runtime.service"]
    directory = GOLDEN / profile
    if os.environ.get("TAILOR_UPDATE_GOLDEN") == "1":
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (directory / name).write_text(text, encoding="utf-8")
    for name, text in files.items():
        golden = directory / name
        assert golden.is_file(), f"missing {golden}; run with TAILOR_UPDATE_GOLDEN=1"
        assert text == golden.read_text(encoding="utf-8"), f"{golden} differs; review, then TAILOR_UPDATE_GOLDEN=1"


@pytest.mark.parametrize("machine", sorted(PROFILE_MACHINES.values()))
def test_render_is_byte_identical_for_the_same_facts(machine: str) -> None:
    assert render(plan_for(machine), options=OPTIONS) == render(plan_for(machine), options=OPTIONS)


@pytest.mark.parametrize("machine", sorted(PROFILE_MACHINES.values()))
def test_outputs_parse_back_and_match_the_plan(machine: str) -> None:
    plan = plan_for(machine)
    files = render(plan, options=OPTIONS)
    compose = yaml.safe_load(files["docker-compose.yml"])["services"]["tailor-runtime"]
    assert compose["image"] == plan.container.image
    assert compose["user"] == "10001:10001" and compose["read_only"] is True
    assert compose["cap_drop"] == ["ALL"] and compose["security_opt"] == ["no-new-privileges:true"]
    assert compose["ports"] == ["127.0.0.1:8000:8000"]
    assert compose["healthcheck"]["test"] == ["CMD", "python3", "-m", "runtime.healthcheck", "--port", "8000"]
    gpu = plan.container.gpu_count > 0
    assert ("deploy" in compose) == gpu
    if gpu:
        device = compose["deploy"]["resources"]["reservations"]["devices"][0]
        assert device == {"driver": "nvidia", "device_ids": list(plan.container.gpu_device_ids),
                          "capabilities": ["gpu"]}
        assert all(d.startswith(("GPU-", "MIG-")) for d in device["device_ids"])  # by UUID, never by index
        assert "CUDA_VISIBLE_DEVICES" not in parse_env_text(files[".env"])  # the reservation picks the devices
        assert parse_env_text(files["tailor-runtime.env"])["CUDA_VISIBLE_DEVICES"] == ",".join(
            plan.container.gpu_device_ids)
    assert (compose.get("runtime") == "nvidia") == (plan.container.runtime == "nvidia")
    env = parse_env_text(files[".env"])
    for text in (files[".env"], files["tailor-runtime.env"]):
        Settings.from_environ(parse_env_text(text))  # the runtime accepts every value
    assert env["TAILOR_HOST"] == "0.0.0.0"  # reachable through the published loopback port
    # Containers leave out the host's malloc preload (the images ship none); the host unit keeps it.
    left_out = {"TAILOR_HOST", "LD_PRELOAD", "MALLOC_CONF", "TCMALLOC_RELEASE_RATE", "CUDA_VISIBLE_DEVICES"}
    assert {k: v for k, v in env.items() if k != "TAILOR_HOST"} == {
        k: v for k, v in plan.env.items() if k not in left_out}
    host_env = parse_env_text(files["tailor-runtime.env"])
    assert host_env["TAILOR_HOST"] == "127.0.0.1"
    assert {k: v for k, v in host_env.items() if k != "TAILOR_HOST"} == {
        k: v for k, v in plan.env.items() if k != "TAILOR_HOST"}
    deployment, service = yaml.safe_load_all(files["k8s.yaml"])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    limits = container["resources"]["limits"]
    assert ("nvidia.com/gpu" in limits) == gpu
    pod = deployment["spec"]["template"]["spec"]
    if gpu:
        assert pod["nodeSelector"]["nvidia.com/gpu.product"] == plan.container.gpu_product
    assert service["spec"]["ports"][0]["port"] == 8000
    unit = configparser.ConfigParser(interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(files["tailor-runtime.service"])
    assert unit["Service"]["ExecStart"] == "/opt/tailor/venv/bin/python -m runtime"
    assert unit["Service"]["MemoryMax"] == str(plan.container.memory_limit_bytes)
    assert unit["Service"]["NoNewPrivileges"] == "yes" and unit["Service"]["Restart"] == "on-failure"


def test_public_and_host_network_options() -> None:
    plan = plan_for("cpu-4core-16gb")
    public = yaml.safe_load(render(plan, ["compose"], RenderOptions(public=True))["docker-compose.yml"])
    assert public["services"]["tailor-runtime"]["ports"] == ["8000:8000"]
    host_files = render(plan, ["compose"], RenderOptions(network="host"))
    service = yaml.safe_load(host_files["docker-compose.yml"])["services"]["tailor-runtime"]
    assert service["network_mode"] == "host" and "ports" not in service
    assert parse_env_text(host_files[".env"])["TAILOR_HOST"] == "127.0.0.1"
    systemd = render(plan, ["systemd"], RenderOptions(public=True))
    assert parse_env_text(systemd["tailor-runtime.env"])["TAILOR_HOST"] == "0.0.0.0"


def test_port_and_user_host_flow_into_every_file() -> None:
    plan = plan_for("cpu-4core-16gb", overrides={"port": "9123", "TAILOR_HOST": "0.0.0.0"})
    files = render(plan, options=OPTIONS)
    service = yaml.safe_load(files["docker-compose.yml"])["services"]["tailor-runtime"]
    assert service["ports"] == ["127.0.0.1:9123:9123"]
    assert parse_env_text(files["tailor-runtime.env"])["TAILOR_HOST"] == "0.0.0.0"  # the user's choice stays
    assert "--port\", \"9123\"" in files["docker-compose.yml"]


def test_container_env_leaves_out_the_host_allocator_unless_the_user_set_it() -> None:
    plan = plan_for("rtx3060-16gb")
    assert "LD_PRELOAD" in plan.env
    files = render(plan, ["compose", "k8s"])
    assert "LD_PRELOAD" not in parse_env_text(files[".env"])
    assert "# render: LD_PRELOAD left out" in files[".env"]
    assert "LD_PRELOAD" not in files["k8s.yaml"]
    mine = plan_for("rtx3060-16gb", overrides={"LD_PRELOAD": "/opt/lib/libjemalloc.so.2"})
    assert parse_env_text(render(mine, ["env"])[".env"])["LD_PRELOAD"] == "/opt/lib/libjemalloc.so.2"


def test_formats_select_files() -> None:
    plan = plan_for("cpu-4core-16gb")
    assert sorted(render(plan, ["env"])) == [".env"]
    assert sorted(render(plan, ["compose"])) == [".env", "docker-compose.yml"]
    assert sorted(render(plan, ["k8s", "systemd"])) == ["k8s.yaml", "tailor-runtime.env", "tailor-runtime.service"]
    assert parse_formats("compose, k8s,compose") == ("compose", "k8s")
    with pytest.raises(UsageError, match="unknown format"):
        parse_formats("compose,helm")


def test_unsafe_env_value_is_refused() -> None:
    plan = plan_for("cpu-4core-16gb", overrides={"TAILOR_API_KEY": "a b#c"})
    with pytest.raises(RenderError, match="TAILOR_API_KEY"):
        render(plan, ["env"])


def test_env_parser_rejects_garbage() -> None:
    with pytest.raises(RenderError, match=r".env:2: not a NAME=value line"):
        parse_env_text("A=1\nthis is not\n")
    with pytest.raises(RenderError, match="set twice"):
        parse_env_text("A=1\nA=2\n")


def test_writer_writes_files_with_private_env(tmp_path: Path) -> None:
    files = render(plan_for("cpu-4core-16gb"), options=OPTIONS)
    written = write_rendered(files, tmp_path / "out")
    assert sorted(p.name for p in written) == sorted(files)
    for path in written:
        assert path.read_text(encoding="utf-8") == files[path.name]
    assert stat.S_IMODE((tmp_path / "out" / ".env").stat().st_mode) == 0o600
    assert not list((tmp_path / "out").glob(".*.tmp"))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RenderError, match="cannot write"):
        write_rendered(files, blocker / "sub")
