"""launch/backends.py: the backend choice and the runners it builds (launch work, not supervise's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import pipeline
from orchestrator.errors import LaunchError, UsageError
from orchestrator.launch.backends import BACKENDS, adopted_runner, choose_backend, runner_factory
from orchestrator.launch.process_backend import ProcessRunner
from orchestrator.launch.runner import RuntimeIdentity

FACTS = Path(__file__).resolve().parents[1] / "fixtures" / "facts"


def no_daemon(tmp_path: Path) -> dict[str, str]:
    return {"DOCKER_HOST": f"unix://{tmp_path / 'no-docker.sock'}"}


def test_process_is_taken_as_asked_without_asking_docker(tmp_path: Path) -> None:
    assert choose_backend("process", no_daemon(tmp_path)) == ("process", "chosen with --backend process")


def test_auto_falls_back_to_process_and_says_why_when_no_daemon_answers(tmp_path: Path) -> None:
    backend, why = choose_backend("auto", no_daemon(tmp_path))
    assert backend == "process" and "no-docker.sock" in why


def test_docker_without_a_daemon_is_a_launch_error_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(LaunchError) as info:
        choose_backend("docker", no_daemon(tmp_path))
    assert "--backend process" in info.value.hint


def test_an_unknown_backend_is_a_usage_error_naming_the_choices(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--backend 'podman' is not one of auto, docker, process"):
        choose_backend("podman", no_daemon(tmp_path))
    assert BACKENDS == ("auto", "docker", "process")


def test_the_process_factory_builds_a_process_runner_per_spec(tmp_path: Path) -> None:
    spec = pipeline.plan_from(pipeline.Inputs(facts=FACTS / "cpu-4core-16gb.json", environ={})).spec
    factory = runner_factory("process", tmp_path, {})
    first, second = factory(spec), factory(spec.with_port(spec.port + 1))
    assert isinstance(first, ProcessRunner) and isinstance(second, ProcessRunner) and first is not second
    with pytest.raises(LaunchError, match="cannot adopt container abc123: it is not a running container any more"):
        adopted_runner(factory, spec, RuntimeIdentity(ident="abc123", instance_id="i-1"))
