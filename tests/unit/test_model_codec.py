"""The one validator (orchestrator.model): choices, bounds, parsed values, renamed keys and
file:line errors when the lines of a YAML file are known."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

import pytest

from orchestrator.errors import UsageError
from orchestrator.model import NOT_READ, Parse, Range, Reader, file_key, from_jsonable, to_jsonable
from orchestrator.yaml_doc import parse_yaml_text


def _doubled(value: object) -> int:
    if not isinstance(value, str) or not value.isdigit():
        raise ValueError(f"expected digits, got {value!r}")
    return 2 * int(value)


@dataclass(frozen=True)
class Inner:
    count: Annotated[int, Range(1)] = 1
    share: Annotated[float, Range(0.0, 0.9)] = 0.5


@dataclass(frozen=True)
class Shape:
    mode: Literal["fast", "slow"]
    inner: Inner = field(default_factory=Inner)
    twice: Annotated[int, Parse(_doubled)] | None = field(default=None, metadata=file_key("double"))
    tags: tuple[Literal["a", "b"], ...] = ()
    source: str = field(default="", metadata=NOT_READ)


def decode(text: str) -> Shape:
    doc = parse_yaml_text(text, "f.yaml", UsageError, "hint")
    reader = Reader(UsageError, doc.source, "hint", lines=doc.lines, null_is_absent=True)
    result: Shape = from_jsonable(Shape, doc.data, reader)
    return result


def test_good_file_decodes_with_defaults_renamed_keys_and_parsed_values() -> None:
    shape = decode("mode: slow\ninner:\n  count: 3\ndouble: '21'\ntags: [b, a]\n")
    assert shape == Shape(mode="slow", inner=Inner(count=3, share=0.5), twice=42, tags=("b", "a"))
    assert decode("mode: fast\ninner:\ndouble:\n") == Shape(mode="fast")  # `key:` alone = not set
    assert to_jsonable(shape) == {"mode": "slow", "inner": {"count": 3, "share": 0.5}, "double": 42,
                                  "tags": ["b", "a"]}


@pytest.mark.parametrize(("text", "expected"), [
    ("mode: medium\n", "f.yaml:1: field mode: 'medium' is not one of fast, slow"),
    ("mode: fast\ninner:\n  count: 0\n", "f.yaml:3: field inner.count: must be at least 1, got 0"),
    ("mode: fast\ninner:\n  share: 2\n", "f.yaml:3: field inner.share: must be between 0.0 and 0.9, got 2.0"),
    ("mode: fast\ninner:\n  cuont: 2\n",
     "f.yaml:3: field inner.cuont: unknown field (did you mean 'count'?); known fields here: count, share"),
    ("mode: fast\ndouble: x\n", "f.yaml:2: field double: expected digits, got 'x'"),
    ("mode: fast\ntags:\n  - a\n  - c\n", "f.yaml:4: field tags[1]: 'c' is not one of a, b"),
    ("mode: fast\nsource: me\n", "f.yaml:2: field source: unknown field"),
    ("inner: {}\n", "f.yaml:1: field mode: is missing"),
    ("mode: fast\ninner: 3\n", "f.yaml:2: field inner: expected a mapping of fields, got 3"),
])
def test_bad_yaml_names_file_line_and_field(text: str, expected: str) -> None:
    with pytest.raises(UsageError) as info:
        decode(text)
    assert info.value.message.startswith(expected), info.value.message


def test_json_errors_name_the_file_without_a_line() -> None:
    with pytest.raises(UsageError, match=r"^f.json: field inner.count: must be at least 1, got 0\n"):
        from_jsonable(Shape, {"mode": "fast", "inner": {"count": 0}}, Reader(UsageError, "f.json", "hint"))
    with pytest.raises(UsageError, match=r"^f.json: field mode: None is not one of fast, slow\n"):
        from_jsonable(Shape, {"mode": None}, Reader(UsageError, "f.json", "hint"))  # JSON null is a value
