"""`deploy fleet plan` and `deploy fleet render --k8s` on the controller, from facts files (no Ansible run).

Hosts that could not be planned are rows with their name and reason, never a stop: a host the
probe could not reach, one without Python 3.10, one whose facts file is damaged, and one where
no profile fits (a 1 GiB container).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestrator.cli.app import main

FACTS = Path(__file__).resolve().parents[1] / "fixtures" / "facts"
ROOT = Path(__file__).resolve().parents[2]
GIB = 1024**3


@pytest.fixture
def facts_dir(tmp_path: Path) -> Path:
    d = tmp_path / "facts"
    d.mkdir()
    for name in ("cpu-4core-16gb", "t4-8gb-4cpu", "jetson-orin-nx-8gb"):
        (d / f"{name}.json").write_text((FACTS / f"{name}.json").read_text())
    tiny = json.loads((FACTS / "cpu-4core-16gb.json").read_text())
    tiny["memory"].update(cgroup_limit_bytes=GIB, effective_total_bytes=GIB, effective_available_bytes=GIB // 2,
                          effective_source="cgroup")
    (d / "tiny-1g.json").write_text(json.dumps(tiny))
    (d / "damaged.json").write_text('{"cpu": ')
    # The inventory's settings for one host travel with its facts (the role wrote this file there).
    (d / "t4-8gb-4cpu.config.yaml").write_text("settings:\n  workers: 1\n  log_level: debug\n")
    (d / "_probe.json").write_text(json.dumps({"hosts": {
        "cpu-4core-16gb": {"state": "ok", "reason": ""},
        "edge-7": {"state": "unreachable", "reason": "Read the host's Python version: ssh: connect timed out"},
        "old-py": {"state": "failed", "reason": "no Python 3.10: the host's python (/usr/bin/python3) is 3.8"},
    }}))
    return d


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_plan_lists_every_host_with_its_plan_or_reason(facts_dir: Path, capsys) -> None:
    rc, out, _err = _run(capsys, "fleet", "plan", "--facts-dir", str(facts_dir), "--json")
    assert rc == 0
    rows = {r["host"]: r for r in json.loads(out)["hosts"]}
    assert set(rows) == {"cpu-4core-16gb", "t4-8gb-4cpu", "jetson-orin-nx-8gb", "tiny-1g", "damaged",
                         "edge-7", "old-py"}
    cpu = rows["cpu-4core-16gb"]
    assert (cpu["state"], cpu["profile"], cpu["cpus"]) == ("planned", "cpu-only", 4)
    assert cpu["workers"] * cpu["threads"] <= cpu["cpus"]
    assert rows["t4-8gb-4cpu"]["device"] == "cuda" and rows["t4-8gb-4cpu"]["workers"] == 1
    assert rows["jetson-orin-nx-8gb"]["architecture"] == "aarch64"
    assert rows["tiny-1g"]["state"] == "no-fit" and "no profile fits" in rows["tiny-1g"]["reason"]
    assert rows["damaged"]["state"] == "bad-facts" and "damaged.json" in rows["damaged"]["reason"]
    assert rows["edge-7"]["state"] == "unreachable" and "timed out" in rows["edge-7"]["reason"]
    assert rows["old-py"]["state"] == "failed" and "Python 3.10" in rows["old-py"]["reason"]


def test_plan_table_names_failed_hosts_on_stderr(facts_dir: Path, capsys) -> None:
    rc, out, err = _run(capsys, "fleet", "plan", "--facts-dir", str(facts_dir))
    assert rc == 0
    assert "Fleet plan (7 hosts)" in out
    assert "tiny-1g: no-fit: no profile fits" in " ".join(err.split())
    assert "edge-7: unreachable" in err


def test_plan_of_an_empty_or_missing_directory_is_a_clear_error(tmp_path: Path, capsys) -> None:
    rc, _out, err = _run(capsys, "fleet", "plan", "--facts-dir", str(tmp_path / "nope"))
    assert rc == 2 and "does not exist" in err and "deploy fleet probe" in err
    rc, _out, err = _run(capsys, "fleet", "plan", "--facts-dir", str(tmp_path))
    assert rc == 2 and "no facts files" in err


def test_render_k8s_writes_a_deployment_per_class_and_skips_unplanned_hosts(facts_dir: Path, tmp_path: Path,
                                                                           capsys) -> None:
    out_dir = tmp_path / "k8s"
    rc, out, err = _run(capsys, "fleet", "render", "--k8s", "--facts-dir", str(facts_dir), "--out", str(out_dir),
                        "--json")
    assert rc == 0
    summary = json.loads(out)
    assert {h for c in summary["classes"] for h in c["hosts"]} == {"cpu-4core-16gb", "t4-8gb-4cpu",
                                                                   "jetson-orin-nx-8gb"}
    assert {s["host"] for s in summary["skipped"]} == {"tiny-1g", "damaged", "edge-7", "old-py"}
    assert "tiny-1g: left out (no-fit)" in err
    written = sorted(p.name for p in out_dir.iterdir())
    assert "service.yaml" in written and len(written) == len(summary["classes"]) + 1
    t4 = next(c for c in summary["classes"] if "t4-8gb-4cpu" in c["hosts"])
    doc = yaml.safe_load((out_dir / f"{t4['deployment']}.yaml").read_text())
    env = {e["name"]: e["value"] for e in doc["spec"]["template"]["spec"]["containers"][0]["env"]}
    # The host's config file (from the inventory) was planned with: workers 1, log level debug.
    assert env["TAILOR_LOG_LEVEL"] == "debug" and env["TAILOR_WORKERS"] == "1"
    # The summary shows what each pod asks for (never the node's capacity), as the manifest does.
    requests = doc["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    assert doc["spec"]["replicas"] == t4["replicas"] == 1
    assert float(requests["cpu"]) == t4["pod_cpus"] < 4  # the T4 host has 4 vCPUs
    assert requests["memory"] == f"{t4['pod_memory_bytes'] // 2**20}Mi"
    assert t4["pod_gpus"] == 1


def test_render_without_a_format_says_which(facts_dir: Path, tmp_path: Path, capsys) -> None:
    rc, _out, err = _run(capsys, "fleet", "render", "--facts-dir", str(facts_dir), "--out", str(tmp_path / "o"))
    assert rc == 2 and "--k8s" in err


def test_up_rejects_a_bad_serial_before_running_ansible(tmp_path: Path, capsys) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[tts]\nhost-a\n")
    rc, _out, err = _run(capsys, "fleet", "up", "-i", str(inventory), "--serial", "0", "--fleet-dir",
                         str(tmp_path / "fleet"))
    assert rc == 2 and "--serial" in err and "25%" in err


def test_a_missing_inventory_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "orchestrator", "fleet", "status", "-i", str(tmp_path / "none.ini")],
                          capture_output=True, text=True, cwd=ROOT, check=False, timeout=120)
    assert proc.returncode == 2
    assert "inventory" in proc.stderr and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_plan_and_render_use_the_inventorys_current_variables_without_a_new_probe(tmp_path: Path, capsys) -> None:
    """A changed tailor_profile counts at once: the facts are the last probe's, the config is what
    the inventory says now (templated by the role's config action on the controller; the host,
    here a container that does not exist, is never contacted)."""
    facts = tmp_path / "facts"
    facts.mkdir()
    (facts / "t4-8gb-4cpu.json").write_text((FACTS / "t4-8gb-4cpu.json").read_text())
    # What the probe recorded: its inventory, and the config the host had then (cpu-only forced).
    (facts / "t4-8gb-4cpu.config.yaml").write_text("profile: cpu-only\nsettings:\n  port: 8000\n")
    inventory = tmp_path / "hosts.ini"
    (facts / "_probe.json").write_text(json.dumps({"hosts": {"t4-8gb-4cpu": {"state": "ok", "reason": ""}},
                                                   "inventory": str(inventory)}))
    connection = ["[all:vars]", "ansible_connection=community.docker.docker_api",
                  f"ansible_docker_docker_host=unix://{tmp_path}/no-engine.sock"]

    def planned() -> dict:
        rc, out, err = _run(capsys, "fleet", "plan", "--facts-dir", str(facts), "--json")
        assert rc == 0, err
        assert f"planning with the current variables of {inventory}" in err
        (row,) = json.loads(out)["hosts"]
        return row

    inventory.write_text("\n".join(["[tts]", "t4-8gb-4cpu ansible_host=nowhere tailor_profile=cpu-only",
                                    *connection]) + "\n")
    row = planned()
    assert (row["profile"], row["device"]) == ("cpu-only", "cpu")
    # The operator drops the forced profile and sets a knob: no probe, the next plan follows.
    inventory.write_text("\n".join(["[tts]", "t4-8gb-4cpu ansible_host=nowhere",
                                    "[tts:vars]", 'tailor_settings={"log_level": "debug"}', *connection]) + "\n")
    row = planned()
    assert (row["profile"], row["device"]) == ("t4-8gb", "cuda")
    rc, out, err = _run(capsys, "fleet", "render", "--k8s", "--facts-dir", str(facts), "--out", str(tmp_path / "k8s"),
                        "--json")
    assert rc == 0, err
    (cls,) = json.loads(out)["classes"]
    assert cls["profile"] == "t4-8gb"
    doc = yaml.safe_load((tmp_path / "k8s" / f"{cls['deployment']}.yaml").read_text())
    env = {e["name"]: e["value"] for e in doc["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TAILOR_LOG_LEVEL"] == "debug"
    # -i names another inventory explicitly; a recorded inventory that is gone falls back, saying so.
    inventory.unlink()
    rc, out, err = _run(capsys, "fleet", "plan", "--facts-dir", str(facts), "--json")
    assert rc == 0 and "is gone" in err and json.loads(out)["hosts"][0]["profile"] == "cpu-only"
