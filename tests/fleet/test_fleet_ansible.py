"""`deploy fleet` through real Ansible against Docker containers as hosts.

Three bare containers (the registry-free base: python3 + venv, nothing else) with different
limits, each with ``--network none``: Ansible reaches them with community.docker's docker_api
connection; every runtime listens on its own host's loopback and is health-checked from inside
that host. A fourth inventory host probes a recorded Jetson tree (planned and rendered, never
launched) and a fifth names a container that does not exist (unreachable).

The tests run in file order and build on each other: probe -> up -> status -> idempotent second
run -> rollback of one broken host -> down.
"""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.fleet.conftest import (
    deploy_fleet,
    host_status,
    in_host,
    readyz_from_inside,
    rows_by_host,
    runtime_processes,
    with_inventory,
)

pytestmark = [pytest.mark.docker, pytest.mark.fleet, pytest.mark.slow]

GIB = 1024**3
TTS = ("fleet-a", "fleet-b", "fleet-c")
EXPECTED_CPUS = {"fleet-a": 1, "fleet-b": 2, "fleet-c": 1}
EXPECTED_MEMORY_GIB = {"fleet-a": 2, "fleet-b": 4, "fleet-c": 3}


def test_probe_plans_each_host_for_its_own_limits(test_fleet, wheelhouse: Path) -> None:
    rc, data, err = deploy_fleet(*with_inventory(
        test_fleet, "probe", "--fleet-dir", str(test_fleet.fleet_dir), "--wheelhouse", str(wheelhouse),
        "--limit", "tts:gone", "--json"))
    rows = rows_by_host(data)
    assert rc == 1, err  # one host is unreachable; the others are probed all the same
    assert "fleet-gone (unreachable)" in err
    assert rows["fleet-gone"]["state"] == "unreachable" and "fleet-gone" in rows["fleet-gone"]["reason"]
    for host in TTS:
        row = rows[host]
        assert row["state"] == "planned", row
        assert row["cpus"] == EXPECTED_CPUS[host]
        assert abs(row["memory_bytes"] - EXPECTED_MEMORY_GIB[host] * GIB) < 0.05 * GIB
        assert row["profile"] == "cpu-only" and row["device"] == "cpu"
        assert row["workers"] * row["threads"] <= row["cpus"]
    assert rows["fleet-b"]["workers"] * rows["fleet-b"]["threads"] == 2
    facts = json.loads((test_fleet.fleet_dir / "facts" / "fleet-c.json").read_text())
    assert facts["cpu"]["cpuset_cpus"] == 1 and facts["cpu"]["effective_cpus_source"] == "cpuset"


def test_recorded_jetson_is_planned_and_rendered(test_fleet, wheelhouse: Path, tmp_path: Path) -> None:
    rc, _data, err = deploy_fleet(*with_inventory(
        test_fleet, "probe", "--fleet-dir", str(test_fleet.fleet_dir), "--wheelhouse", str(wheelhouse),
        "--limit", "recorded", "--json"))
    assert rc == 0, err
    rc, data, err = deploy_fleet("plan", "--fleet-dir", str(test_fleet.fleet_dir), "--json")
    rows = rows_by_host(data)
    assert rc == 0, err
    assert set(rows) == {*TTS, "jetson-recorded", "fleet-gone"}  # the earlier probe's hosts are kept
    jetson = rows["jetson-recorded"]
    assert jetson["architecture"] == "aarch64" and jetson["jetson"]
    out = tmp_path / "k8s"
    rc, data, err = deploy_fleet("render", "--k8s", "--fleet-dir", str(test_fleet.fleet_dir),
                                 "--out", str(out), "--json")
    assert rc == 0, err
    hosts_in_classes = {h for c in data["classes"] for h in c["hosts"]}
    assert hosts_in_classes == {*TTS, "jetson-recorded"}
    arches = set()
    for path in out.glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            kubernetes_validate.validate(doc, "1.30", strict=True)
            if doc["kind"] == "Deployment":
                arches.add(doc["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/arch"])
    assert arches == {"amd64", "arm64"}


def test_up_makes_every_host_ready(test_fleet, wheelhouse: Path) -> None:
    rc, data, err = deploy_fleet(*with_inventory(
        test_fleet, "up", "--fleet-dir", str(test_fleet.fleet_dir), "--wheelhouse", str(wheelhouse),
        "--limit", "tts", "--json"))
    assert rc == 0, err
    rows = rows_by_host(data)
    assert set(rows) == set(TTS)
    for host in TTS:
        assert rows[host]["outcome"] == "ok" and rows[host]["state"] == "RUNNING" and rows[host]["ready"] is True
        assert readyz_from_inside(test_fleet, host) == 200
    assert "done" in err  # progress while Ansible ran


def test_status_reports_every_host(test_fleet) -> None:
    rc, data, err = deploy_fleet(*with_inventory(test_fleet, "status", "--fleet-dir", str(test_fleet.fleet_dir),
                                                 "--limit", "tts", "--json"))
    assert rc == 0, err
    for host, row in rows_by_host(data).items():
        assert row["ready"] is True and row["state"] == "RUNNING" and row["restarts"] == 0, host
        assert str(row["last_health"]).startswith("ok")


def test_facts_module_works_in_check_mode(test_fleet) -> None:
    from orchestrator.fleet.ansible_run import run_playbook

    code, config_before = in_host(test_fleet, "fleet-b", "cat", "/opt/tailor/config.yaml")
    result = run_playbook("probe", test_fleet.inventory / "hosts.ini", limit="fleet-b", check=True,
                          extravars={"tailor_wheelhouse_archive": str(test_fleet.fleet_dir / "wheelhouse.tar")})
    host = result.hosts["fleet-b"]
    assert host.state == "ok", host.reason
    assert host.tailor is not None and host.tailor["plan"]["workers"] >= 1 and host.changed == 0
    assert host.tailor["facts"]["cpu"]["effective_cpus"] == EXPECTED_CPUS["fleet-b"]
    assert in_host(test_fleet, "fleet-b", "cat", "/opt/tailor/config.yaml") == (code, config_before)


def test_second_run_changes_nothing_and_restarts_nothing(test_fleet, wheelhouse: Path) -> None:
    before = {h: host_status(test_fleet, h) for h in TTS}
    rc, data, err = deploy_fleet(*with_inventory(
        test_fleet, "up", "--fleet-dir", str(test_fleet.fleet_dir), "--wheelhouse", str(wheelhouse),
        "--limit", "tts", "--json"))
    assert rc == 0, err
    assert "is up to date" in err and "building the tailor-deploy wheel" not in err  # the wheel is not rebuilt
    for host, row in rows_by_host(data).items():
        assert row["changed"] == 0, (host, row)
        after = host_status(test_fleet, host)
        assert (after["runner_id"], after["instance_started_at_s"]) == (
            before[host]["runner_id"], before[host]["instance_started_at_s"]), host


def test_a_broken_host_is_rolled_back_and_the_others_updated(test_fleet, wheelhouse: Path) -> None:
    (test_fleet.inventory / "group_vars" / "tts.yml").write_text("tailor_settings:\n  log_level: debug\n")
    (test_fleet.inventory / "host_vars" / "fleet-b.yml").write_text(
        "tailor_env:\n  TAILOR_VOICE: no-such-voice\ntailor_ready_timeout_s: 30\n")
    rc, data, err = deploy_fleet(*with_inventory(
        test_fleet, "up", "--fleet-dir", str(test_fleet.fleet_dir), "--wheelhouse", str(wheelhouse),
        "--limit", "tts", "--serial", "2", "--json"))
    rows = rows_by_host(data)
    assert rc == 1
    assert "[2 done, 1 failed, 0 unreachable] finished" in err  # failed hosts are counted
    assert rows["fleet-b"]["outcome"] == "failed"
    assert "rolled back to the previous deployment, which is ready" in rows["fleet-b"]["reason"]
    failed, restored, ready = rows["fleet-b"]["rollback"]
    assert failed.startswith("failed: ") and "no-such-voice" in failed, failed  # the runtime's own error
    assert restored.startswith("restored: the previous deployment") and ready == "restore ready: yes"
    assert rows["fleet-b"]["ready"] is True and rows["fleet-b"]["state"] == "RUNNING"  # the restored one
    assert Path(rows["fleet-b"]["log"]).is_file()
    for host in ("fleet-a", "fleet-c"):
        assert rows[host]["outcome"] == "ok" and rows[host]["ready"] is True
        code, env = in_host(test_fleet, host, "cat", "/opt/tailor/deployments/current/.env")
        assert "TAILOR_LOG_LEVEL=debug" in env
    code, env = in_host(test_fleet, "fleet-b", "cat", "/opt/tailor/deployments/current/.env")
    assert "TAILOR_LOG_LEVEL=info" in env and "no-such-voice" not in env
    code, failed = in_host(test_fleet, "fleet-b", "cat", "/opt/tailor/deployments/failed/.env")
    assert code == 0 and "no-such-voice" in failed
    assert readyz_from_inside(test_fleet, "fleet-b") == 200


def test_down_leaves_nothing_running(test_fleet) -> None:
    rc, _data, err = deploy_fleet(*with_inventory(test_fleet, "down", "--fleet-dir", str(test_fleet.fleet_dir),
                                                  "--limit", "tts", "--json"))
    assert rc == 0, err
    for host in TTS:
        assert readyz_from_inside(test_fleet, host) == 0
        assert runtime_processes(test_fleet, host) == ""
        assert host_status(test_fleet, host)["state"] == "STOPPED"
