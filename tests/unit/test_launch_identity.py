"""Readiness by identity, port holders and launch timings, against real sockets and HTTP servers.

The servers here are stdlib HTTP servers on 127.0.0.1 standing in for "something else answers
on the port": another deployment's runtime (right body, wrong instance), an older Tailor (no
instance at all) and any other program (no /readyz).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator.errors import PortInUseError
from orchestrator.launch.ports import ensure_port_free, find_holders, port_is_free
from orchestrator.launch.spec import LaunchSpec
from orchestrator.supervise.deployment import launch_policy, startup_budget
from orchestrator.supervise.http_client import check_ready, fetch_readiness
from tests.helpers import QuietHandler, served


def _server(status: int, body: dict[str, Any] | None, header: str | None) -> Iterator[str]:
    class Handler(QuietHandler):
        def do_GET(self) -> None:
            payload = json.dumps(body).encode() if body is not None else b"<html>hello</html>"
            self.send_response(status)
            if header is not None:
                self.send_header("X-Tailor-Instance", header)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    with served(Handler) as url:
        yield url


@pytest.fixture
def other_deployment() -> Iterator[str]:
    yield from _server(200, {"ready": True, "state": "ready", "instance": "aaaa", "engine": "onnx:x", "workers": 2,
                             "queue_depth": 0}, "aaaa")


def test_ready_counts_only_for_this_launchs_instance(other_deployment: str) -> None:
    ours = check_ready(other_deployment, "aaaa")
    assert ours.ok and "from instance aaaa" in ours.detail
    foreign = check_ready(other_deployment, "bbbb")
    assert not foreign.ok
    assert foreign.detail == "port answered by another server (instance aaaa; this launch is instance bbbb)"


def test_a_server_without_instance_is_never_ready_for_a_launch() -> None:
    for url in _server(200, None, None):
        result = check_ready(url, "bbbb")
        assert not result.ok and "gives no Tailor instance id" in result.detail


def test_not_ready_says_the_runtimes_own_reason() -> None:
    body = {"ready": False, "state": "memory_pressure", "reason": "resident memory above the soft limit",
            "instance": "cccc", "workers": 1, "queue_depth": 3}
    for url in _server(503, body, "cccc"):
        result = check_ready(url, "cccc")
        assert not result.ok and result.detail == "GET /readyz 503: resident memory above the soft limit"
        view = fetch_readiness(url)
        assert view.instance == "cccc" and not view.ready
        assert view.summary() == "memory_pressure (resident memory above the soft limit), 1 workers, queue 3"


def test_the_summary_names_the_served_model_families() -> None:
    from orchestrator.supervise.http_client import RuntimeView

    one = RuntimeView(True, True, "x", "GET /readyz 200", {"state": "ready", "model": "kokoro-82m",
                                                           "models": ["kokoro-82m"], "engine": "onnx:jf_alpha"})
    assert one.summary() == "ready, model kokoro-82m, engine onnx:jf_alpha"
    two = RuntimeView(True, True, "x", "GET /readyz 200", {"state": "ready", "model": "piper",
                                                           "models": ["piper", "kokoro-82m"]})
    assert two.summary() == "ready, models piper, kokoro-82m"


def test_instance_from_the_body_when_the_header_is_missing() -> None:
    for url in _server(200, {"ready": True, "instance": "dddd"}, None):
        assert check_ready(url, "dddd").ok


def test_holder_of_a_port_is_named_with_pid_and_command() -> None:
    import os

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert not port_is_free(port)
        holders = find_holders(port)
        assert [h.pid for h in holders] == [os.getpid()]
        assert "pytest" in holders[0].command or "python" in holders[0].command
        with pytest.raises(PortInUseError, match=f"port {port} is already in use by pid {os.getpid()} ") as err:
            ensure_port_free(port)
        assert "pass --port with a free port" in err.value.hint
    ensure_port_free(port)  # closed again: free


SPEC = LaunchSpec(profile="cpu-only", image="i", flavor="cpu", port=8000,
                  env=(("TAILOR_DEVICE", "cpu"), ("TAILOR_ENGINE", "onnx"), ("TAILOR_WORKERS", "4")))


def test_startup_budget_grows_with_workers_engine_and_device() -> None:
    assert startup_budget(SPEC) == (140.0, "60 s + 20 s x 4 onnx worker(s)")
    torch_gpu = LaunchSpec(profile="gpu-16gb", image="i", flavor="cuda", port=8000,
                           env=(("TAILOR_DEVICE", "cuda"), ("TAILOR_ENGINE", "torch"), ("TAILOR_WORKERS", "2")))
    assert startup_budget(torch_gpu) == (210.0, "60 s + 45 s x 2 torch worker(s) + 60 s GPU start")


def test_startup_budget_counts_the_plans_model_weights() -> None:
    from pathlib import Path

    from orchestrator.plan.planner import make_plan
    from orchestrator.probe.facts import HostFacts
    from orchestrator.select.profiles import load_profiles
    from orchestrator.select.selection import select_profile

    host = HostFacts.from_json_file(Path(__file__).resolve().parents[1] / "fixtures" / "facts" / "cpu-4core-16gb.json")
    plan = make_plan(host, select_profile(host, load_profiles()), environ={})
    weights = sum(r.bytes for r in plan.memory_budget.rows if r.item.startswith("model weights"))
    assert weights > 0
    budget, why = startup_budget(LaunchSpec.from_plan(plan))
    load = round(weights / (50 * 1024 * 1024))
    assert budget == 60 + 20 * plan.workers + load
    assert f"+ {load} s for {weights // 1024**2} MiB of model weights" in why


@pytest.mark.parametrize(("flags", "settings", "budget", "interval", "said"), [
    ({}, {}, 140.0, 2.0, "start-up budget 140 s (60 s + 20 s x 4 onnx worker(s)), health check every 2 s (default)"),
    ({}, {"startup_timeout_s": 30.0, "health_interval_s": 5.0}, 30.0, 5.0,
     "start-up budget 30 s (settings startup_timeout_s), health check every 5 s (settings health_interval_s)"),
    ({"startup_timeout_s": 400.0, "health_interval_s": 1.0}, {"startup_timeout_s": 30.0}, 400.0, 1.0,
     "start-up budget 400 s (--startup-timeout), health check every 1 s (--health-interval)"),
], ids=["derived", "config", "flags-win"])
def test_launch_timings_precedence(flags: dict[str, float], settings: dict[str, float], budget: float,
                                   interval: float, said: str) -> None:
    policy, explain = launch_policy(SPEC, settings=settings, **flags)
    assert (policy.startup_budget_s, policy.health_interval_s, explain) == (budget, interval, said)


def _record_running(sd: Any, url: str, instance: str) -> None:
    import os
    import time

    from orchestrator.launch.identity import read_stamp
    from orchestrator.supervise.state import DeploymentState, write_state

    stamp = read_stamp(os.getpid())
    assert stamp is not None
    write_state(sd, DeploymentState(
        profile="cpu-only", backend="docker", backend_reason="test", url=url, state="RUNNING",
        state_reason="ready", supervisor_pid=os.getpid(), supervisor_started_at_s=time.time(),
        runner_id="c0ffee", instance_id=instance, instance_started_at_s=time.time(), updated_at_s=time.time(),
        supervisor_start_ticks=stamp.start_ticks, boot_id=stamp.boot_id))


def test_status_names_another_server_answering_on_the_port(tmp_path: Any, other_deployment: str) -> None:
    from orchestrator.supervise.status import deployment_status

    _record_running(tmp_path, other_deployment, "bbbb")
    report = deployment_status(tmp_path)
    assert not report.healthy
    assert report.problem == f"another server answers on {other_deployment} (instance aaaa, expected bbbb)"
    assert any(line.startswith("runtime:      another server answers") for line in report.lines())


def test_status_is_healthy_when_its_own_instance_is_ready(tmp_path: Any, other_deployment: str) -> None:
    from orchestrator.supervise.status import deployment_status

    _record_running(tmp_path, other_deployment, "aaaa")
    report = deployment_status(tmp_path)
    assert report.healthy, report.problem
    assert "runtime:      ready, engine onnx:x, 2 workers, queue 0" in report.lines()
    assert report.to_dict()["runtime"]["ours"] is True


def test_status_reports_the_runtimes_own_refusal(tmp_path: Any) -> None:
    from orchestrator.supervise.status import deployment_status

    body = {"ready": False, "state": "draining", "reason": "shutting down", "instance": "eeee"}
    for url in _server(503, body, "eeee"):
        _record_running(tmp_path, url, "eeee")
        report = deployment_status(tmp_path)
        assert report.problem == "the runtime says it is not ready: draining (shutting down)"


def test_process_runtime_keeps_the_driver_library_path_and_nothing_else_of_the_shell() -> None:
    from orchestrator.launch.process_backend import child_environment

    shell = {"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/usr/local/nvidia/lib64", "TAILOR_WORKERS": "9",
             "OMP_NUM_THREADS": "64", "AWS_SECRET_ACCESS_KEY": "s3cr3t"}
    env = child_environment(SPEC, shell, instance_id="abc")
    # libcuda is found where the operator's shell finds it (CUDA images: /usr/local/nvidia/lib64)
    assert env["LD_LIBRARY_PATH"] == "/usr/local/nvidia/lib64"
    # the plan's values win over the shell's; unrelated variables (and secrets) stay behind
    assert env["TAILOR_WORKERS"] == "4" and "OMP_NUM_THREADS" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert env["TAILOR_INSTANCE_ID"] == "abc" and env["PYTHONUNBUFFERED"] == "1"


def test_status_shows_the_runtimes_calibrated_admission(tmp_path: Any) -> None:
    from orchestrator.supervise.status import deployment_status

    body = {"ready": True, "state": "ready", "instance": "ffff", "engine": "onnx:x", "workers": 2, "queue_depth": 0,
            "admission": {"seconds_per_char": 0.042, "effective_max_input_chars": 1900, "max_input_chars": 4096,
                          "budget_s": 48.0}}
    for url in _server(200, body, "ffff"):
        _record_running(tmp_path, url, "ffff")
        lines = deployment_status(tmp_path).lines()
        assert ("admission:    0.042 s/char per worker; about 1900 characters finish within 48.0 s "
                "(TAILOR_MAX_INPUT_CHARS=4096 admits more: longer inputs get 413; raise TAILOR_REQUEST_TIMEOUT_S "
                "or lower TAILOR_MAX_INPUT_CHARS)") in lines
