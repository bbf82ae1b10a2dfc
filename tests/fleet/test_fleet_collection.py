"""The tailor.fleet collection as Ansible sees it: it builds, its module documents itself, its
playbooks parse, and tailor_facts runs Tailor's real probe and planner (here, on this machine
through the local connection, in check mode)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.fleet.ansible_run import PLAYBOOKS, collection_root, playbook_path

BIN = Path(sys.executable).parent
COLLECTION = collection_root() / "ansible_collections" / "tailor" / "fleet"


def _ansible(tool: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(collection_root()), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCALHOST_WARNING": "False", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False"}
    return subprocess.run([str(BIN / tool), *args], capture_output=True, text=True, env=env, cwd=cwd,
                          check=False, timeout=300)


def test_the_collection_builds_into_an_installable_tarball(tmp_path: Path) -> None:
    proc = _ansible("ansible-galaxy", "collection", "build", str(COLLECTION), "--output-path", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in tmp_path.glob("*.tar.gz")] == ["tailor-fleet-0.1.0.tar.gz"]


def test_the_module_documents_itself() -> None:
    proc = _ansible("ansible-doc", "-j", "tailor.fleet.tailor_facts")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)["tailor.fleet.tailor_facts"]["doc"]
    assert set(doc["options"]) == {"python", "config", "profile", "model", "root"}


@pytest.mark.parametrize("name", PLAYBOOKS)
def test_every_playbook_parses(name: str) -> None:
    proc = _ansible("ansible-playbook", "--syntax-check", "-i", "localhost,", str(playbook_path(name)))
    assert proc.returncode == 0, proc.stderr


def test_tailor_facts_probes_and_plans_in_check_mode() -> None:
    # The module on this machine, with this interpreter's Tailor, in check mode: facts + a plan.
    proc = _ansible("ansible", "localhost", "-i", "localhost,", "-c", "local", "--check",
                    "-e", f"ansible_python_interpreter={sys.executable}",
                    "-m", "tailor.fleet.tailor_facts", "-a", f"python={sys.executable}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    payload = json.loads(proc.stdout.split("=>", 1)[1])
    tailor = payload["ansible_facts"]["tailor"]
    assert payload["changed"] is False
    assert tailor["facts"]["cpu"]["effective_cpus"] >= 1
    assert tailor["plan"]["workers"] >= 1 and tailor["profile"] == tailor["plan"]["profile"]


def test_tailor_facts_without_tailor_on_the_host_says_so() -> None:
    proc = _ansible("ansible", "localhost", "-i", "localhost,", "-c", "local",
                    "-e", f"ansible_python_interpreter={sys.executable}",
                    "-m", "tailor.fleet.tailor_facts", "-a", "python=/nonexistent/venv/bin/python")
    assert proc.returncode != 0
    assert "Tailor is not installed on this host" in proc.stdout
