"""`deploy render --out DIR` writes a directory that `deploy up DIR` can launch and step down."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli.app import main
from orchestrator.supervise.deployment import load_deployment

FACTS = Path(__file__).resolve().parents[1] / "fixtures" / "facts" / "t4-8gb-4cpu.json"


def test_render_out_dir_carries_plan_and_facts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "deploy"
    assert main(["render", "--facts", str(FACTS), "--out", str(out_dir), "--network", "host"]) == 0
    written = capsys.readouterr().out.split()
    assert str(out_dir / "plan.json") in written and str(out_dir / "facts.json") in written

    prepared = load_deployment(out_dir)
    assert prepared.plan is not None and prepared.plan.profile == "t4-8gb"
    assert prepared.facts is not None and prepared.facts.gpus[0].name.startswith("Tesla T4")
    # Without plan.json an OOM kill could not be stepped down; with it there is no such note.
    assert not any("cannot be stepped down" in note for note in prepared.notes)
