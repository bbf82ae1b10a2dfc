"""The one size parser (binary units) and the one env-file reader/writer."""

from __future__ import annotations

import pytest

from orchestrator.envfile import assignment, parse_env_text
from orchestrator.errors import RenderError, UsageError
from orchestrator.units import format_size, parse_size


@pytest.mark.parametrize(("text", "expected"), [
    ("1024", 1024),
    ("1g", 2**30), ("1G", 2**30), ("1GB", 2**30), ("1GiB", 2**30), ("1 gib", 2**30),  # all binary
    ("256m", 256 * 2**20), ("256MiB", 256 * 2**20), ("256MB", 256 * 2**20),
    ("1.5g", 3 * 2**29), ("2k", 2048), ("1T", 2**40), ("512b", 512), ("512B", 512),
])
def test_every_unit_is_binary(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "g", "1x", "-1g", "1.g", "1 2", "1gigabyte", "1ib"])
def test_not_a_size(text: str) -> None:
    assert parse_size(text) is None


def test_format_size_round_trips_through_the_parser() -> None:
    assert format_size(7.5 * 2**30) == "7.5 GiB" and format_size(512) == "512 B"
    assert parse_size(format_size(3 * 2**29).replace(" ", "")) == 3 * 2**29


def test_env_writer_refuses_values_that_need_quoting() -> None:
    assert assignment("TAILOR_VOICE_MAP", "alloy=en_US-amy-medium,onyx=x", RenderError) == \
        "TAILOR_VOICE_MAP=alloy=en_US-amy-medium,onyx=x"
    with pytest.raises(RenderError, match="cannot carry safely"):
        assignment("TAILOR_API_KEY", "has space", RenderError)
    with pytest.raises(RenderError, match="not a valid environment variable name"):
        assignment("1BAD", "x", RenderError)


def test_env_reader_reads_what_the_writer_writes_and_hand_edits() -> None:
    text = "# comment\n\n" + assignment("A", "1", RenderError) + "\nB='two words'\n  C=\"x\"\nD=\n"
    assert parse_env_text(text, ".env", UsageError, "fix it") == {"A": "1", "B": "two words", "C": "x", "D": ""}


@pytest.mark.parametrize(("text", "message"), [
    ("A=1\nnot an assignment\n", r"^\.env:2: not a NAME=value line"),
    ("A=1\nA=2\n", r"^\.env:2: A is set twice"),
])
def test_env_reader_names_the_line(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        parse_env_text(text, ".env", UsageError, "re-render")
    assert info.value.hint == "re-render"
