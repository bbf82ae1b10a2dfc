"""The README stays true: every `deploy` command line it shows names a real command and flags
that command accepts, and its two set-up commands exist and are what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.cli.app import main
from tests.helpers import readme_command_lines

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")


LINES = readme_command_lines(README, "sh", "deploy ")


def test_readme_shows_every_command() -> None:
    shown = {line.split()[1] for line in LINES}
    assert shown >= {"probe", "profiles", "plan", "render", "env", "auto", "up", "status", "logs", "down", "tune"}


@pytest.mark.parametrize("line", LINES)
def test_readme_command_line_is_accepted(line: str, capsys: pytest.CaptureFixture[str]) -> None:
    command = line.split()[1]
    assert main([command, "--help"]) == 0, line
    help_text = capsys.readouterr().out
    for flag in re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-[a-z])\b", line):
        assert flag in help_text, f"README line {line!r}: `deploy {command}` has no {flag}"


def test_two_setup_commands_exist_and_ci_runs_the_test_command() -> None:
    assert "bash scripts/quickstart.sh" in README and "bash scripts/test.sh" in README
    assert (REPO / "scripts" / "quickstart.sh").is_file() and (REPO / "scripts" / "test.sh").is_file()
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "scripts/test.sh" in ci


def test_readme_knob_table_is_the_generated_one() -> None:
    from orchestrator.cli.explain import knob_table_markdown

    start, end = "<!-- knob-table:start -->\n", "\n<!-- knob-table:end -->"
    assert start in README and end in README
    shown = README.split(start, 1)[1].split(end, 1)[0]
    assert shown == knob_table_markdown(), "README knob table is stale: paste `deploy env --markdown` into it"


def test_readme_fleet_kubernetes_example_matches_the_recorded_machines(tmp_path: Path, monkeypatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The worked `deploy fleet render --k8s` example: its sentence's machine count, its title and
    its columns are what the command prints today on tests/fixtures/facts (issue 22: "6 hardware
    classes" and a `replicas` column long after both changed). tests/fleet/test_fleet_readme.py
    also checks every row."""
    command = "deploy fleet render --k8s --facts-dir tests/fixtures/facts --out k8s/"
    before, after = README.split(command, 1)
    said = re.findall(r"recorded machines shipped in the tests \((\d+) machines, each its own class", before)
    block = re.search(r"```text\n(.*?)```", after, flags=re.S)
    assert said and block is not None
    example = [line for line in block.group(1).splitlines() if line.strip()]
    monkeypatch.chdir(REPO)
    assert main(["fleet", "render", "--k8s", "--facts-dir", "tests/fixtures/facts", "--out", str(tmp_path)]) == 0
    shown = capsys.readouterr().out.splitlines()  # captured: the plain table, one row per line
    machines = len(list((REPO / "tests" / "fixtures" / "facts").glob("*.json")))
    assert int(said[-1]) == machines
    assert example[0] == shown[0] == f"{machines} hardware classes, {machines} hosts"
    assert example[1].split() == shown[1].split()
