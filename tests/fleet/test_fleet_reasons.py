"""How a fleet run's outcome becomes verdicts and reasons, on outputs recorded from real runs.

Recorded in tests/fixtures/fleet/:
- ``deploy-up-crash-loop.stderr``: `deploy up --detach` of a deployment whose voice does not exist
  (the supervisor's crash loop, the runtime's own error quoted in its last log lines);
- ``deploy-render-no-fit.stderr``: `deploy render` on a 1 GiB host (no profile fits);
- ``deploy-up-port-in-use.stderr``: `deploy up` with another program on the port;
- ``deploy-status-fatal.json``: `deploy status --json` of that crash-looped deployment (exit 1);
- ``status-fatal.events.jsonl``: ansible-runner's events of `deploy fleet status` on the 3-container
  test fleet with one host FATAL (trimmed to the fields the fleet code reads);
- ``up-rollback.events.jsonl``: `deploy fleet up` where fleet-b's new deployment crash-looped and
  was rolled back (ready again) and fleet-a's failed and its previous one could not be relaunched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.fleet import ansible_run, reasons, report
from orchestrator.fleet.ansible_run import HostOutcome, RunResult

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "fleet"


def _text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def _replay(name: str, playbook: str) -> tuple[RunResult, list[str]]:
    """Feed a recorded event stream through the same handler run_playbook uses."""
    lines: list[str] = []
    events = ansible_run._Events(lines.append, ansible_run.FINAL_TASKS[playbook])
    for line in _text(name).splitlines():
        events(json.loads(line))
    return RunResult(playbook, 0, events.hosts, events.summary()), lines


# --- the cause, not the last line -------------------------------------------------------------

def test_a_crash_loop_gives_the_supervisors_verdict_and_the_runtimes_own_error() -> None:
    cause, detail, hint = reasons.parse_cli_output(_text("deploy-up-crash-loop.stderr"))
    assert cause == "the runtime is FATAL: crash loop: 6 failures within 120 s; last: exited with code 3"
    assert detail.startswith("default voice 'no-such-voice' (TAILOR_VOICE) was not found")
    # The runtime's hint, not the supervisor's "see supervisor.log" (the last line printed).
    assert hint.startswith("put NAME.onnx and NAME.onnx.json into TAILOR_VOICES_DIR")


def test_a_fatal_reason_that_quotes_the_runtime_keeps_it_once() -> None:
    # The supervisor's reason when the runtime's exit code says a restart cannot help: the
    # runtime's error and fix lead it, and its last log lines repeat them.
    text = ("error: the runtime is FATAL: default voice 'x' (TAILOR_VOICE) was not found; restarting cannot "
            "fix it (model or configuration broken, exit code 4); "
            "fix: put NAME.onnx into TAILOR_VOICES_DIR\nlast log lines:\n"
            "  error: default voice 'x' (TAILOR_VOICE) was not found\n"
            "  hint: put NAME.onnx into TAILOR_VOICES_DIR\nhint: see /opt/tailor/state/supervisor.log\n")
    cause, detail, hint = reasons.parse_cli_output(text)
    assert cause.startswith("the runtime is FATAL: default voice 'x' (TAILOR_VOICE) was not found")
    assert cause.endswith("(model or configuration broken, exit code 4)") and "fix:" not in cause  # its fix is the hint, said once
    assert (detail, hint) == ("", "put NAME.onnx into TAILOR_VOICES_DIR")
    # Cut for a rollback line, the cause keeps its start (the runtime's words), and the fix stays whole.
    why = reasons.reason_from_text(text.replace("'x'", "'no-such-voice'").replace(
        "was not found;", "was not found; available: en_US-joe-medium;", 1), task="Launch and wait until ready")
    short = why.short()
    assert short.startswith("Launch and wait until ready: the runtime is FATAL: default voice")
    assert "default voice 'no-such-voice' (TAILOR_VOICE) was not found; available: en_US-joe-medium" in short
    assert "hint:" not in short
    assert short.endswith("fix: set tailor_settings.voice or tailor_env.TAILOR_VOICES_DIR in the inventory")


def test_no_profile_fits_names_the_fleet_variable_that_forces_one() -> None:
    res = {"msg": "non-zero return code", "rc": 1, "stderr": _text("deploy-render-no-fit.stderr")}
    why = reasons.reason_from_result("Render this host's deployment with its own facts", res)
    assert why.cause.startswith("no profile fits this machine: gpu-large:")
    assert why.hint == "force one with --profile NAME, or add a profile with --profiles DIR"
    assert why.fix == "set tailor_profile: NAME in the inventory"
    line = why.line()
    assert "\n" not in line and line.startswith("Render this host's deployment with its own facts: no profile fits")
    assert line.endswith("; fix: set tailor_profile: NAME in the inventory")


def test_a_busy_port_names_the_program_and_tailor_port() -> None:
    why = reasons.reason_from_text(_text("deploy-up-port-in-use.stderr"))
    assert why.cause.startswith("port 18731 is already in use by pid ") and "http.server" in why.cause
    assert why.fix == "set tailor_port in the inventory"


@pytest.mark.parametrize(("text", "fix"), [
    ("use --backend process", "set tailor_backend: process in the inventory"),
    ("pass --network host on engines without a bridge", "set tailor_network: host in the inventory"),
    ("the base image needs python3 with venv (--base-image)", "set tailor_base_image in the inventory"),
    ("lower it with --workers N", "set tailor_settings.workers in the inventory"),
    ("raise --startup-timeout", "set tailor_settings.startup_timeout_s in the inventory"),
    ("set TAILOR_API_KEY", "set tailor_env.TAILOR_API_KEY in the inventory"),
    ("TAILOR_ENGINE=torch needs torch", "set tailor_settings.engine in the inventory"),
    ("put the wheel into --wheelhouse DIR", "pass --wheelhouse DIR to `deploy fleet up`"),
    # Commands to run and variables of the orchestrator itself are not settings of the fleet.
    ("stop it with `deploy down --state-dir /opt/tailor/state`", ""),
    ("pass --state-dir / TAILOR_STATE_DIR", "set tailor_state_dir in the inventory"),
    ("add a profile with --profiles DIR", ""),
    ("pass --port with a free port", "set tailor_port in the inventory"),
])
def test_deploy_flags_and_variables_map_onto_the_roles_variables(text: str, fix: str) -> None:
    assert reasons.inventory_fix(text) == fix


def test_every_mapped_variable_is_one_the_role_declares_or_is_not_suggested() -> None:
    declared = reasons.role_variables()
    assert {"tailor_profile", "tailor_port", "tailor_backend", "tailor_settings", "tailor_env"} <= declared
    for flag, variable in reasons.FLAG_VARIABLES.items():
        suggested = reasons.inventory_fix(f"use {flag} X")
        assert (variable in suggested) == (variable in declared), (flag, variable, suggested)
    # A variable the role gains is suggested as soon as its defaults declare it.
    assert reasons.inventory_fix("pick one with --model NAME", declared | {"tailor_model"}) == \
        "set tailor_model: NAME in the inventory"
    # Without it, the model is still a knob the role's tailor_settings carries.
    assert reasons.inventory_fix("pick one with --model NAME", declared - {"tailor_model"}) == \
        "set tailor_settings.model in the inventory"


def test_an_ansible_message_or_a_traceback_is_one_line() -> None:
    msg = ("no Python 3.10: the host's python (/usr/bin/python3) is\n3.9; Tailor needs 3.10 or newer "
           "(set ansible_python_interpreter to a newer python3)")
    why = reasons.reason_from_result("Tailor needs Python 3.10 or newer on the host", {"msg": msg})
    assert why.cause == " ".join(msg.split()) and why.fix == ""
    tb = "Traceback (most recent call last):\n  File \"x\", line 1\nOSError: [Errno 28] No space left on device"
    assert reasons.reason_from_result("t", {"rc": 1, "msg": "non-zero return code", "stderr": tb}).cause == \
        "OSError: [Errno 28] No space left on device"


# --- the fleet run, replayed ------------------------------------------------------------------

def test_a_fatal_host_in_a_recorded_status_run_is_unhealthy_with_its_cause() -> None:
    result, progress = _replay("status-fatal.events.jsonl", "status")
    reports = {r.host: r for r in report.judge_run(result)}
    fatal = reports["fleet-c"]
    assert fatal.outcome == "unhealthy" and not fatal.ok  # -> exit 1
    assert fatal.status["state"] == "FATAL" and fatal.ready is False and fatal.status["restarts"] == 5
    assert fatal.status["last_exit_reason"] == "exited with code 3"
    assert fatal.why is not None and fatal.why.cause.startswith("the runtime is FATAL: crash loop")
    assert "no-such-voice" in fatal.why.detail and "tailor_settings.voice" in fatal.why.fix
    assert fatal.summary() == "unhealthy: FATAL"
    assert len(fatal.cell()) <= report.CELL and "\n" not in fatal.reason
    for host in ("fleet-a", "fleet-b"):
        assert reports[host].ok and reports[host].ready is True and reports[host].status["state"] == "RUNNING"
    assert progress[-1].startswith("[3 done, 0 failed, 0 unreachable]")


def test_a_recorded_rollout_with_two_rollbacks_reports_each_in_short_lines(tmp_path: Path) -> None:
    result, progress = _replay("up-rollback.events.jsonl", "up")
    assert result.summary == "[0 done, 2 failed, 0 unreachable]"
    assert any(line.startswith("[0 done, 2 failed, 0 unreachable]") for line in progress)
    reports = {r.host: r for r in report.write_logs(result, report.judge_run(result), tmp_path)}

    back = reports["fleet-b"]  # crash loop, rolled back, the previous deployment ready again
    failed, restored, ready = back.rollback
    assert failed.startswith("failed: Launch and wait until ready: Task failed: Timed out after 30 second(s);")
    assert "no-such-voice" in failed and "fix: set tailor_settings.voice" in failed
    assert restored.startswith("restored: the previous deployment (/opt/tailor/deployments/current, profile cpu-only)")
    assert ready == "restore ready: yes"
    assert back.summary() == "failed, rolled back (ready)" and back.ready is True

    broken = reports["fleet-a"]  # no Docker engine for the new one, a damaged previous one
    failed, restored, ready = broken.rollback
    assert failed == ("failed: Launch and wait until ready: no Docker daemon: no socket at "
                      "unix:///var/run/docker.sock; fix: set tailor_backend: process in the inventory")
    assert ready.startswith("restore ready: NO: /opt/tailor/deployments/current/plan.json:2:1: not valid JSON")
    assert broken.summary() == "failed, rolled back (NOT ready)"
    assert "rolled back to the previous deployment, which is NOT ready" in broken.reason
    for r in (back, broken):
        assert all("\n" not in line and len(line) <= report.LINE for line in r.lines()), r.lines()
        log = Path(r.log)
        assert log == tmp_path / "logs" / f"{r.host}.up.log" and r.lines()[-1] == f"{r.host}: full log: {log}"
    text = Path(broken.log).read_text()
    assert "== task Launch and wait until ready: failed" in text and "not valid JSON" in text
    assert '"restore_ready": false' in text


def test_an_ok_host_has_its_old_log_removed(tmp_path: Path) -> None:
    stale = report.log_path(tmp_path, "web-1", "status")
    stale.parent.mkdir(parents=True)
    stale.write_text("old")
    ok = HostOutcome("web-1", status=_running())
    result = RunResult("status", 0, {"web-1": ok})
    (only,) = report.write_logs(result, report.judge_run(result), tmp_path)
    assert only.ok and only.log == "" and not stale.exists()


# --- contradictions and verdicts --------------------------------------------------------------

def _running(**changes: Any) -> dict[str, Any]:
    status = json.loads(_text("deploy-status-fatal.json"))
    status.update({"state": "RUNNING", "state_reason": "ready after 20 s", "problem": None, "stale": False,
                   "stale_reason": None, "process_alive": True, "restarts": 0, "last_log_lines": [],
                   "installed": True, "status_rc": 0, "port": 8000, "readyz_status": 200,
                   "readyz_instance": "e248ceba25f6b324"})
    status.update(changes)
    return status


def test_a_healthy_host_has_no_contradiction() -> None:
    assert report.contradictions(_running()) == []
    assert report.judge(HostOutcome("h", status=_running()), "status").ok


@pytest.mark.parametrize(("status", "expected"), [
    (_running(state="STOPPED", process_alive=False),
     "STOPPED but ready yes: the recorded runtime (instance e248ceba25f6b324) still answers /readyz 200 on port 8000"),
    (_running(state="STOPPED", readyz_instance="0123456789abcdef", process_alive=False),
     "STOPPED but ready yes: another Tailor runtime (instance 0123456789abcdef) answers /readyz 200 on port 8000"),
    (_running(readyz_status=503), "RUNNING but not ready: /readyz answered 503 on port 8000"),
    (_running(readyz_status=-1), "RUNNING but not ready: nothing answers /readyz on port 8000"),
    (_running(readyz_instance="0123456789abcdef"),
     "RUNNING but another server answers on port 8000 (instance 0123456789abcdef, expected e248ceba25f6b324)"),
    (_running(stale=True, stale_reason="the supervisor (pid 1) is gone", problem="the deployment is STALE: ..."),
     "STALE but ready yes: the supervisor (pid 1) is gone; yet the recorded runtime "
     "(instance e248ceba25f6b324) answers /readyz 200"),
    (_running(state="STOPPED", readyz_status=-1), "STOPPED but the runtime process (pid 25066) still runs"),
])
def test_the_record_and_the_live_host_disagreeing_is_named(status: dict[str, Any], expected: str) -> None:
    assert expected in report.contradictions(status)
    verdict = report.judge(HostOutcome("h", status=status), "status")
    assert verdict.outcome == "unhealthy" and expected in verdict.contradictions


def test_the_hosts_own_discrepancy_is_shown_and_fails_only_what_is_not_ready() -> None:
    # A host whose `deploy status` believes what runs (state) over its record (recorded_state).
    said = "state.json says STOPPED, but its supervisor (pid 7) still runs"
    running = _running(recorded_state="STOPPED", discrepancy=said)
    verdict = report.judge(HostOutcome("h", status=running), "status")
    assert verdict.ok and verdict.contradictions == (said,)
    assert f"h: contradiction: {said}" in verdict.lines()
    after_down = report.judge(HostOutcome("h", status=running), "down")
    assert after_down.outcome == "unhealthy" and said in after_down.reason
    bare = _running(recorded_state="STOPPED")
    assert report.contradictions(bare)[0] == "state.json says STOPPED, the host shows RUNNING"


def test_status_of_a_host_without_tailor_is_unhealthy_but_down_there_is_fine() -> None:
    absent = {"state": "ABSENT", "state_reason": "nothing installed (/opt/tailor/venv/bin/deploy does not exist)",
              "installed": False, "status_rc": None, "readyz_status": -1, "port": 8000}
    assert report.judge(HostOutcome("old", status=absent), "status").outcome == "unhealthy"
    never = {**absent, "installed": True, "status_rc": 1, "state_reason":
             "error: no deployment recorded in /opt/tailor/state (/opt/tailor/state/state.json does not exist)\n"
             "hint: start one with `deploy auto --detach`, or pass --state-dir / TAILOR_STATE_DIR"}
    verdict = report.judge(HostOutcome("new", status=never), "status")
    assert verdict.outcome == "unhealthy" and verdict.why is not None
    assert verdict.reason == ("no deployment recorded in /opt/tailor/state (/opt/tailor/state/state.json does not "
                              "exist); hint: `deploy fleet up` deploys it")
    down = report.judge(HostOutcome("old", status=absent), "down")
    assert down.ok and down.note == "nothing installed" and down.cell() == "nothing installed"


def test_down_that_left_our_runtime_answering_is_unhealthy() -> None:
    verdict = report.judge(HostOutcome("h", status=_running(state="STOPPED", process_alive=False)), "down")
    assert verdict.outcome == "unhealthy" and verdict.why is not None
    assert verdict.why.cause.startswith("still running after `deploy down`: STOPPED but ready yes")
    stopped = _running(state="STOPPED", process_alive=False, readyz_status=-1)
    assert report.judge(HostOutcome("h", status=stopped), "down").ok
    # A runtime the record lost track of, started anew (another instance), still counts.
    other = report.judge(HostOutcome("h", status=_running(state="STOPPED", process_alive=False,
                                                          readyz_instance="0123456789abcdef")), "down")
    assert other.outcome == "unhealthy" and "a Tailor runtime (instance 0123456789abcdef) answers" in other.reason
    # Something that is not Tailor on the port is not Tailor's to stop.
    foreign = _running(state="STOPPED", process_alive=False, readyz_instance="", instance_id="")
    assert report.judge(HostOutcome("h", status=foreign), "down").ok


def test_the_progress_counter_counts_failed_and_unreachable_hosts_apart() -> None:
    lines: list[str] = []
    events = ansible_run._Events(lines.append, ansible_run.FINAL_TASKS["status"])
    for name in ("a", "b", "c", "d"):
        events.hosts[name] = HostOutcome(name)
    final = ansible_run.FINAL_TASKS["status"]
    events({"event": "runner_on_ok", "event_data": {"host": "a", "task": final, "res": {}}})
    events({"event": "runner_on_failed", "event_data": {"host": "b", "task": "Supervisor state",
                                                        "res": {"msg": "boom"}}})
    events({"event": "runner_on_unreachable", "event_data": {"host": "c", "task": "Is Tailor installed",
                                                             "res": {"msg": "no route"}}})
    assert lines[-1] == "[1 done, 1 failed, 1 unreachable] c: UNREACHABLE: Is Tailor installed: no route"
    events({"event": "runner_on_ok", "event_data": {"host": "d", "task": final, "res": {}}})
    events({"event": "playbook_on_stats", "event_data": {"failures": {"b": 1}, "dark": {"c": 1},
                                                         "ok": {"a": 3, "d": 3}}})
    assert events.summary() == "[2 done, 1 failed, 1 unreachable]"
    assert events.hosts["b"].log[0]["msg"] == "boom"
