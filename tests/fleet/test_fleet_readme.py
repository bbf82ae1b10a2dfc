"""The README's fleet section stays true: every `deploy fleet ...` line names a real subcommand and
flags it accepts, and the worked Kubernetes example runs as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from orchestrator.cli.app import main
from tests.helpers import readme_command_lines

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
LINES = readme_command_lines(README, "shell", "deploy fleet ")


def test_readme_shows_every_fleet_command() -> None:
    assert {line.split()[2] for line in LINES} == {"probe", "plan", "up", "status", "down", "render"}


@pytest.mark.parametrize("line", LINES)
def test_readme_fleet_line_is_accepted(line: str, capsys: pytest.CaptureFixture[str]) -> None:
    sub = line.split()[2]
    assert main(["fleet", sub, "--help"]) == 0, line
    help_text = capsys.readouterr().out
    for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-z])\b", line):
        assert flag in help_text, f"README line {line!r}: `deploy fleet {sub}` has no {flag}"


def test_readme_kubernetes_example_runs_as_written(tmp_path: Path, monkeypatch, capsys) -> None:
    line = next(x for x in LINES if x.startswith("deploy fleet render") and "--facts-dir" in x)
    monkeypatch.chdir(REPO)
    argv = shlex.split(line)[1:]
    argv[argv.index("--out") + 1] = str(tmp_path / "k8s")
    assert main(argv) == 0
    shown = capsys.readouterr().out
    written = sorted(p.name for p in (tmp_path / "k8s").iterdir())
    assert "service.yaml" in written
    # Every deployment the README names is one the command writes.
    shown_names = re.findall(r"^(tailor-runtime-[a-z0-9-]+)-<class>\s", README, flags=re.M)
    assert shown_names
    for prefix in shown_names:
        assert any(re.fullmatch(re.escape(prefix) + r"-[0-9a-f]{6}\.yaml", w) for w in written), prefix
    assert "hardware classes" in shown
