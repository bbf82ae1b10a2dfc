"""`--help` reads as help: value names, not Python types; paragraphs wrap at the terminal."""

from __future__ import annotations

import re

import pytest

from orchestrator.cli.app import cli, main

PYTHON_TYPES = re.compile(r"<(?:bool|str|int|float|list\[[^\]]*\]|Path)>")


def _commands(command: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        found += _commands(sub, (*path, name))
    return found


@pytest.mark.parametrize("path", _commands(cli()), ids=lambda p: " ".join(p) or "deploy")
def test_help_names_values_not_python_types(path: tuple[str, ...], capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    assert main([*path, "--help"]) == 0
    text = capsys.readouterr().out
    assert "Usage: deploy" in text
    assert not PYTHON_TYPES.findall(text), PYTHON_TYPES.findall(text)


def test_a_help_paragraph_wraps_at_the_terminal_not_mid_sentence(capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["up", "--help"]) == 0
    text = capsys.readouterr().out
    assert ("With a container left running by a supervisor that died, it adopts that container when it runs this "
            "plan and answers ready, and otherwise stops it first; it says which.") in text
    assert re.search(r"--detach\s+Leave the supervisor", text)  # a flag shows no value name
