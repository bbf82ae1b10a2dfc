"""Faults injected into the 3-container test fleet, through the real CLI and real Ansible.

- a host whose deployment is FATAL (a crash loop): `deploy fleet status` exits 1, names the host,
  shows FATAL with the cause (the runtime's own error) and the inventory variable that fixes it;
- a rollout that fails on a host whose previous deployment cannot be relaunched either: one short
  line for what failed, what was restored and whether the restore is ready, and the host's full
  log in a file the report names;
- the wall clock stepped forward between `up` and `status`/`up`/`down`: every answer stays right
  (runs as root only; the clock is always stepped back).

Each test starts from a healthy fleet (`deploy fleet up`, unchanged hosts are left alone), so
they run alone (-k) or after the other fleet tests, which share the containers.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from orchestrator.fleet import report
from tests.fleet.conftest import (
    deploy_fleet,
    host_status,
    in_host,
    readyz_from_inside,
    reset_inventory_vars,
    rows_by_host,
    runtime_processes,
    with_inventory,
)

# Run alone, the first test installs Tailor on three bare hosts first (minutes on a busy 2-core machine).
pytestmark = [pytest.mark.docker, pytest.mark.fleet, pytest.mark.slow, pytest.mark.timeout(1200)]

TTS = ("fleet-a", "fleet-b", "fleet-c")
DEPLOY = "/opt/tailor/venv/bin/deploy"
STATE = "/opt/tailor/state"


@pytest.fixture(autouse=True)
def _inventory_defaults(test_fleet) -> Iterator[None]:
    reset_inventory_vars(test_fleet)
    yield
    reset_inventory_vars(test_fleet)


def healthy_fleet(test_fleet, wheelhouse: Path, limit: str = "tts") -> dict[str, dict]:
    """`deploy fleet up` until every host of ``limit`` is RUNNING and ready (as the other tests leave them)."""
    rc, data, err = deploy_fleet(*with_inventory(
        test_fleet, "up", "--fleet-dir", str(test_fleet.fleet_dir), "--wheelhouse", str(wheelhouse),
        "--limit", limit, "--json"), timeout=1000)  # bare hosts install first
    rows = rows_by_host(data)
    assert rc == 0, err
    assert all(r["outcome"] == "ok" and r["ready"] is True for r in rows.values()), rows
    return rows


def test_a_fatal_host_is_shown_fatal_with_its_cause_and_status_exits_1(test_fleet, wheelhouse: Path) -> None:
    healthy_fleet(test_fleet, wheelhouse)
    # fleet-c's own Tailor relaunched with a voice that does not exist: the runtime exits at
    # start-up until the supervisor gives up (FATAL), as a broken model or config would.
    script = (f"set -e; {DEPLOY} down --state-dir {STATE}; "
              "printf 'env:\\n  TAILOR_VOICE: no-such-voice\\n' > /tmp/bad.yaml; "
              f"rm -rf /tmp/bad && {DEPLOY} render --config /tmp/bad.yaml --out /tmp/bad > /dev/null; "
              f"{DEPLOY} up /tmp/bad --backend process --detach --state-dir {STATE}")
    code, output = in_host(test_fleet, "fleet-c", "sh", "-c", script)
    assert code != 0 and "FATAL" in output, output
    own = host_status(test_fleet, "fleet-c")
    assert own["state"] == "FATAL", own

    rc, data, err = deploy_fleet(*with_inventory(
        test_fleet, "status", "--fleet-dir", str(test_fleet.fleet_dir), "--limit", "tts", "--json"))
    rows = rows_by_host(data)
    assert rc == 1, err
    assert "fleet-c" in err.split("error:", 1)[1], err  # the summary names the host
    fatal = rows["fleet-c"]
    assert fatal["outcome"] == "unhealthy" and fatal["state"] == "FATAL" and fatal["ready"] is False, fatal
    assert fatal["host_status"]["state_reason"] == own["state_reason"]  # the host's own account, whole
    assert fatal["restarts"] == own["restarts"] and fatal["last_exit"] == own["last_exit_reason"]
    assert "FATAL" in fatal["why"]["cause"]
    # The runtime's own error: quoted in the supervisor's reason or kept as the detail, not the hint.
    assert "no-such-voice" in fatal["why"]["cause"] + fatal["why"]["detail"]
    assert "tailor_settings.voice" in fatal["why"]["fix"] or "tailor_env.TAILOR_VOICE" in fatal["why"]["fix"]
    assert "\n" not in fatal["reason"]
    log = Path(fatal["log"])
    assert log.is_file() and "no-such-voice" in log.read_text()
    for host in ("fleet-a", "fleet-b"):
        assert rows[host]["outcome"] == "ok" and rows[host]["ready"] is True, rows[host]

    # The table for people: FATAL with its cause on the host's line, and the log file named.
    rc, _data, err = deploy_fleet(*with_inventory(
        test_fleet, "status", "--fleet-dir", str(test_fleet.fleet_dir), "--limit", "fleet-c"))
    flat = " ".join(err.split())
    assert rc == 1
    assert "fleet-c: unhealthy: the runtime is FATAL" in flat and f"fleet-c: full log: {log}" in flat, err


def test_a_failed_rollback_is_reported_in_one_line_each_with_its_log(test_fleet, wheelhouse: Path) -> None:
    healthy_fleet(test_fleet, wheelhouse, limit="fleet-a")
    # The deployment in place cannot be relaunched (its plan is damaged on disk), and the new one
    # asks for a Docker engine the host does not have: the rollout fails and so does its rollback.
    code, output = in_host(test_fleet, "fleet-a", "sh", "-c", "echo '{' > /opt/tailor/deployments/current/plan.json")
    assert code == 0, output
    (test_fleet.inventory / "host_vars" / "fleet-a.yml").write_text(
        "tailor_backend: docker\ntailor_settings:\n  log_level: debug\ntailor_ready_timeout_s: 60\n")
    rc, data, err = deploy_fleet(*with_inventory(
        test_fleet, "up", "--fleet-dir", str(test_fleet.fleet_dir), "--wheelhouse", str(wheelhouse),
        "--limit", "fleet-a", "--json"))
    row = rows_by_host(data)["fleet-a"]
    assert rc == 1, err
    assert "[0 done, 1 failed, 0 unreachable]" in err  # the progress counter counts the failed host
    assert row["outcome"] == "failed"
    failed, restored, ready = row["rollback"]
    assert failed.startswith("failed: Launch and wait until ready: no Docker daemon"), failed
    assert "fix: set tailor_backend: process in the inventory" in failed, failed
    assert restored.startswith("restored: the previous deployment (/opt/tailor/deployments/current"), restored
    assert ready.startswith("restore ready: NO: ") and "plan.json" in ready, ready
    for line in row["rollback"]:
        assert "\n" not in line and len(line) <= report.LINE, line
    assert "rolled back to the previous deployment, which is NOT ready" in row["reason"]
    log = Path(row["log"])
    assert log == test_fleet.fleet_dir / "logs" / "fleet-a.up.log"
    text = log.read_text()
    assert "no Docker daemon" in text and "not valid JSON" in text  # both commands' whole output
    # The people's view says the same, one line per part, and names the log.
    lines = [" ".join(line.split()) for line in err.splitlines()]
    assert any(line.startswith("warning: fleet-a: restore ready: NO:") for line in lines), err
    assert any(line == f"warning: fleet-a: full log: {log}" for line in lines), err
    # The next `up` (the clock test's) repairs fleet-a: its damaged deployment differs from a new render.


def _btime() -> int:
    """The kernel's boot time in wall-clock seconds (/proc/stat), which moves with every clock step."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return int(line.split()[1])
    raise AssertionError("no btime in /proc/stat")


@contextmanager
def clock_stepped_forward(seconds: float) -> Iterator[None]:
    """Step the system's wall clock forward by ``seconds`` (as an NTP step or a VM resume does) and
    always step it back by as much, however the body ends."""
    if os.geteuid() != 0:
        pytest.skip("stepping the system clock needs root")
    btime = _btime()
    try:
        time.clock_settime(time.CLOCK_REALTIME, time.clock_gettime(time.CLOCK_REALTIME) + seconds)
    except PermissionError as exc:
        pytest.skip(f"cannot step the clock here: {exc}")
    try:
        assert _btime() - btime >= seconds - 2, "the clock step did not move the kernel's boot time"
        yield
    finally:
        time.clock_settime(time.CLOCK_REALTIME, time.clock_gettime(time.CLOCK_REALTIME) - seconds)


def test_a_clock_step_between_up_and_status_or_down_changes_no_answer(test_fleet, wheelhouse: Path) -> None:
    before = healthy_fleet(test_fleet, wheelhouse)
    identity = {h: (r["host_status"]["instance_id"], r["host_status"]["runner_id"]) for h, r in before.items()}
    with clock_stepped_forward(60):
        rc, data, err = deploy_fleet(*with_inventory(
            test_fleet, "status", "--fleet-dir", str(test_fleet.fleet_dir), "--limit", "tts", "--json"))
        rows = rows_by_host(data)
        assert rc == 0, err
        for host in TTS:
            row = rows[host]
            assert row["outcome"] == "ok" and row["state"] == "RUNNING" and row["ready"] is True, row
            assert row["stale"] is False and not row["contradictions"], row

        # An unchanged rollout after the step: nothing changed, nothing restarted.
        rc, data, err = deploy_fleet(*with_inventory(
            test_fleet, "up", "--fleet-dir", str(test_fleet.fleet_dir), "--wheelhouse", str(wheelhouse),
            "--limit", "tts", "--json"))
        rows = rows_by_host(data)
        assert rc == 0, err
        for host in TTS:
            assert rows[host]["outcome"] == "ok" and rows[host]["changed"] == 0, rows[host]
            st = rows[host]["host_status"]
            assert (st["instance_id"], st["runner_id"]) == identity[host], (host, st)

        rc, data, err = deploy_fleet(*with_inventory(
            test_fleet, "down", "--fleet-dir", str(test_fleet.fleet_dir), "--limit", "tts", "--json"))
        rows = rows_by_host(data)
        assert rc == 0, err
        for host in TTS:
            assert rows[host]["outcome"] == "ok" and rows[host]["ready"] is False, rows[host]
            assert readyz_from_inside(test_fleet, host) == 0, host
            assert runtime_processes(test_fleet, host) == "", host
            assert host_status(test_fleet, host)["state"] == "STOPPED", host
    print(json.dumps({h: rows[h]["state"] for h in TTS}))
