"""Pure pieces around the supervisor: plan -> LaunchSpec, spec -> container options, Dockerfiles, formats."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from orchestrator.errors import LaunchError, UsageError
from orchestrator.launch.docker_backend import daemon_status, run_options
from orchestrator.launch.image import (
    FLAVORS,
    dependency_requirements,
    prepare_wheelhouse,
    render_dockerfile,
)
from orchestrator.launch.spec import load_plan_file, spec_from_plan_dict
from orchestrator.supervise.http_client import audio_format_for, check_ready

PLAN = {
    "profile": "t4-8gb",
    "env": {"TAILOR_PORT": "8000", "TAILOR_HOST": "127.0.0.1", "TAILOR_WORKERS": "2"},
    "container": {
        "image": "tailor-runtime:0.1.0-cuda", "flavor": "cuda", "memory_limit_bytes": 6 * 1024**3, "cpus": 3.5,
        "shm_size_bytes": 256 * 1024**2, "gpu_count": 1, "gpu_device_ids": ["0"], "runtime": None,
        "read_only": True, "user": "10001:10001", "port": 8000, "network_mode": "bridge",
    },
}


def test_spec_from_plan_dict_reads_container_and_env() -> None:
    spec = spec_from_plan_dict(PLAN)
    assert (spec.profile, spec.image, spec.flavor, spec.port) == ("t4-8gb", "tailor-runtime:0.1.0-cuda", "cuda", 8000)
    assert spec.memory_limit_bytes == 6 * 1024**3 and spec.cpus == 3.5 and spec.gpu_device_ids == ("0",)
    assert spec.env_map["TAILOR_WORKERS"] == "2"
    moved = spec.with_port(9001)
    assert moved.port == 9001 and moved.env_map["TAILOR_PORT"] == "9001" and moved.url == "http://127.0.0.1:9001"


@pytest.mark.parametrize(("path", "change", "message"), [
    (("container",), None, "field container is missing"),
    (("container", "image"), None, "container: field image is missing"),
    (("container", "port"), "80", "container: field port has '80', expected int"),
    (("container", "read_only"), 1, "container: field read_only has 1, expected bool"),
])
def test_spec_from_plan_dict_names_the_bad_field(path: tuple[str, ...], change: object, message: str) -> None:
    plan = copy.deepcopy(PLAN)
    target: dict = plan
    for key in path[:-1]:
        target = target[key]
    if change is None:
        del target[path[-1]]
    else:
        target[path[-1]] = change
    with pytest.raises(UsageError, match=message):
        spec_from_plan_dict(plan, source="plan.json")


def test_load_plan_file_errors(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="is not a rendered deployment"):
        load_plan_file(tmp_path)
    (tmp_path / "plan.json").write_text("{\n  oops", encoding="utf-8")
    with pytest.raises(UsageError, match=r"plan.json:2:3: not valid JSON"):
        load_plan_file(tmp_path)


def test_run_options_bridge_with_gpu() -> None:
    opts = run_options(spec_from_plan_dict(PLAN), "/srv/tailor")
    assert opts["ports"] == {"8000/tcp": ("127.0.0.1", 8000)}
    assert opts["environment"]["TAILOR_HOST"] == "0.0.0.0"  # inside its own namespace, published on loopback only
    assert opts["mem_limit"] == opts["memswap_limit"] == 6 * 1024**3
    assert opts["nano_cpus"] == 3_500_000_000 and opts["shm_size"] == 256 * 1024**2
    (request,) = opts["device_requests"]
    assert request["DeviceIDs"] == ["0"] and request["Capabilities"] == [["gpu"]]
    assert opts["user"] == "10001:10001" and opts["read_only"] is True and opts["cap_drop"] == ["ALL"]
    assert opts["security_opt"] == ["no-new-privileges"] and "/tmp" in opts["tmpfs"]
    assert opts["labels"] == {"io.tailor.deployment": "/srv/tailor"}
    assert opts["healthcheck"]["test"][-2:] == ["--port", "8000"]
    assert "runtime" not in opts


def test_run_options_host_network_and_jetson_runtime() -> None:
    plan = copy.deepcopy(PLAN)
    plan["container"].update(flavor="l4t", runtime="nvidia", gpu_count=0, gpu_device_ids=[], network_mode="host")
    opts = run_options(spec_from_plan_dict(plan), "x")
    assert "ports" not in opts and opts["network_mode"] == "host"
    assert opts["environment"]["TAILOR_HOST"] == "127.0.0.1"
    assert opts["runtime"] == "nvidia" and "device_requests" not in opts


@pytest.mark.parametrize("flavor", sorted(FLAVORS))
def test_dockerfiles_render_offline_install_nonroot_healthcheck(flavor: str) -> None:
    text = render_dockerfile(FLAVORS[flavor], "example/base:1", 8123)
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert lines[0] == "FROM example/base:1"
    assert "--no-index --find-links /tmp/wheels" in text
    assert "USER 10001:10001" in lines and "EXPOSE 8123" in lines
    assert "python -m runtime.healthcheck" in text
    assert lines[-1] == 'CMD ["/opt/tailor/bin/python", "-m", "runtime"]'
    assert "{{" not in text and "{%" not in text


def test_dependency_requirements_follow_extras() -> None:
    runtime = dependency_requirements(("runtime",))
    assert any(r.startswith("onnxruntime") for r in runtime) and any(r.startswith("typer") for r in runtime)
    assert not any(r.startswith("torch") for r in runtime) and not any(r.startswith("pytest") for r in runtime)
    assert any(r.startswith("torch") for r in dependency_requirements(("runtime", "torch")))


def test_wheelhouse_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is not a directory"):
        prepare_wheelhouse(tmp_path / "ctx", FLAVORS["cpu"], python_version="3.11", wheelhouse=tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"holds no \.whl files") as info:
        prepare_wheelhouse(tmp_path / "ctx", FLAVORS["cpu"], python_version="3.11", wheelhouse=tmp_path / "empty")
    assert "pip download" in info.value.hint


def test_audio_format_from_suffix() -> None:
    assert audio_format_for(Path("a.wav")) == "wav"
    assert audio_format_for(Path("a")) == "wav"
    assert audio_format_for(Path("a.MP3")) == "mp3"
    assert audio_format_for(Path("a.ogg")) == "opus"
    with pytest.raises(UsageError, match="cannot tell the audio format"):
        audio_format_for(Path("a.doc"))


def test_no_daemon_is_explained(tmp_path: Path) -> None:
    status = daemon_status({"DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"})
    assert not status.reachable and status.reason.startswith("no Docker daemon:")
    assert "nothing.sock" in status.reason


def test_readiness_on_a_closed_port_is_a_failed_check() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = check_ready(f"http://127.0.0.1:{port}")
    assert not result.ok and result.detail == "GET /readyz: connection refused"


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
    from orchestrator.launch.rendered import spec_from_rendered_dir

    (tmp_path / "docker-compose.yml").write_text(COMPOSE, encoding="utf-8")
    (tmp_path / ".env").write_text("# where from\nTAILOR_HOST=0.0.0.0\nTAILOR_PORT=8000\nTAILOR_VOICE='x y'\n",
                                   encoding="utf-8")
    spec = spec_from_rendered_dir(tmp_path)
    assert (spec.profile, spec.flavor, spec.port) == ("t4-8gb", "cuda", 8000)
    assert spec.memory_limit_bytes == 6144 * 1024**2 and spec.cpus == 3.5 and spec.shm_size_bytes == 256 * 1024**2
    assert spec.gpu_device_ids == ("0",) and spec.network_mode == "bridge" and spec.plan is None
    assert spec.env_map["TAILOR_HOST"] == "127.0.0.1" and spec.env_map["TAILOR_VOICE"] == "x y"


def test_rendered_env_garbage_names_the_line(tmp_path: Path) -> None:
    from orchestrator.launch.rendered import spec_from_rendered_dir

    (tmp_path / "docker-compose.yml").write_text(COMPOSE, encoding="utf-8")
    (tmp_path / ".env").write_text("TAILOR_PORT=8000\nthis is not env\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"\.env:2: not a NAME=value line"):
        spec_from_rendered_dir(tmp_path)
