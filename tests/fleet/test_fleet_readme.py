"""The README's fleet section stays true: every `deploy fleet ...` line names a real subcommand and
flags it accepts, the worked Kubernetes example runs as written and prints what the README shows,
and the wheelhouse command makes a wheelhouse the fleet installs from."""

from __future__ import annotations

import os
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
    assert {line.split()[2] for line in LINES} == {"wheelhouse", "probe", "plan", "up", "status", "down", "render"}


@pytest.mark.parametrize("line", LINES)
def test_readme_fleet_line_is_accepted(line: str, capsys: pytest.CaptureFixture[str]) -> None:
    sub = line.split()[2]
    assert main(["fleet", sub, "--help"]) == 0, line
    help_text = capsys.readouterr().out
    for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-z])\b", line):
        assert flag in help_text, f"README line {line!r}: `deploy fleet {sub}` has no {flag}"


def _readme_example_output() -> list[str]:
    """The ```text block right after the worked Kubernetes example's command."""
    after = README.split("deploy fleet render --k8s --facts-dir tests/fixtures/facts", 1)[1]
    block = re.search(r"```text\n(.*?)```", after, flags=re.S)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.strip()]


def _cells(line: str) -> list[str]:
    """A rendered table row (rich box characters) or a README row (two or more spaces) as cells."""
    if "│" in line or "┃" in line:
        return [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]
    return re.split(r"\s{2,}", line.strip())


def test_readme_kubernetes_example_runs_as_written(tmp_path: Path, monkeypatch, capsys) -> None:
    line = next(x for x in LINES if x.startswith("deploy fleet render") and "--facts-dir" in x)
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("COLUMNS", "240")  # the whole table, as a wide terminal shows it
    argv = shlex.split(line)[1:]
    argv[argv.index("--out") + 1] = str(tmp_path / "k8s")
    assert main(argv) == 0
    shown = capsys.readouterr().out.splitlines()
    written = sorted(p.name for p in (tmp_path / "k8s").iterdir())
    assert "service.yaml" in written
    example = _readme_example_output()
    # The title (hardware classes and hosts), the columns, and every row the README shows.
    assert shown[0].strip() == example[0], (shown[0], example[0])
    header = next(_cells(x) for x in shown if "deployment" in x)
    assert _cells(example[1]) == header, (example[1], header)
    rows = [_cells(x) for x in shown if "tailor-runtime-" in x]
    assert example[-1] == "..." or len(example) - 2 == len(rows)
    for readme_row in (_cells(x) for x in example[2:] if x != "..."):
        pattern = re.escape(readme_row[0]).replace(re.escape("<class>"), "[0-9a-f]{6}")
        matches = [r for r in rows if re.fullmatch(pattern, r[0]) and r[1:] == readme_row[1:]]
        assert matches, f"README row {readme_row} is not in the output:\n" + "\n".join(shown)
        assert f"{matches[0][0]}.yaml" in written


@pytest.mark.slow
def test_readme_wheelhouse_command_makes_a_wheelhouse(tmp_path: Path, wheelhouse: Path) -> None:
    """`deploy fleet wheelhouse --out DIR` as written. pip is pointed at the test tier's cached
    wheels instead of an index (PIP_NO_INDEX + PIP_FIND_LINKS), so the run is offline; the
    command, its arguments and Tailor's own wheel build are the README's."""
    import subprocess
    import sys

    line = next(x for x in LINES if x.startswith("deploy fleet wheelhouse"))
    argv = shlex.split(line)[1:]
    out = tmp_path / "wheels"
    argv[argv.index("--out") + 1] = str(out)
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse)}
    proc = subprocess.run([sys.executable, "-m", "orchestrator", *argv], capture_output=True, text=True, cwd=REPO,
                          env=env, check=False, timeout=900)
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in out.glob("*.whl"))
    assert any(n.startswith("tailor_deploy-") for n in names), names
    for dependency in ("onnxruntime-", "piper_tts-", "fastapi-"):
        assert any(n.startswith(dependency) for n in names), (dependency, names)
    assert f"--wheelhouse {out}" in proc.stderr
