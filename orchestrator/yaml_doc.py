"""A YAML document that remembers where each key was written, and strict typed readers.

Profiles (``profiles/*.yaml``) and the user config file (``--config FILE``) are read through
this module so every validation error names the file, the line and the dotted field, e.g.
``profiles/gpu-16gb.yaml:12: field match.min_memory: expected a size like 8GiB``.

The document is composed into yaml's node tree (which carries line marks) and converted to
plain values by hand, so duplicate keys are caught rather than silently overwritten.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml

from orchestrator.errors import DeployError
from orchestrator.model import unknown_field
from orchestrator.units import SIZE_EXAMPLES, parse_size

ErrorFactory = Callable[[str, str], DeployError]

@dataclass(frozen=True)
class YamlDoc:
    """Plain data of one YAML file plus the line (1-based) of every key, by dotted path."""

    source: str
    data: Any
    lines: Mapping[str, int]

    def line(self, path: str) -> int:
        """Line of ``path``, or of its nearest written parent (1 for the top)."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path.rpartition(".")[0]
        return 1

    def where(self, path: str) -> str:
        return f"{self.source}:{self.line(path)}"


def load_yaml_document(path: Path, error: ErrorFactory, hint: str) -> YamlDoc:
    """Read and compose ``path``; syntax errors and duplicate keys raise ``error`` with the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror}", hint) from exc
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text ({exc.reason})", hint) from exc
    return parse_yaml_text(text, str(path), error, hint)


def parse_yaml_text(text: str, source: str, error: ErrorFactory, hint: str) -> YamlDoc:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else 1
        raise error(f"{source}:{line}: not valid YAML ({exc.problem})", hint) from exc
    except yaml.YAMLError as exc:
        raise error(f"{source}: not valid YAML ({exc})", hint) from exc
    lines: dict[str, int] = {}
    data = None if node is None else _to_plain(node, "", source, lines, error, hint)
    return YamlDoc(source=source, data=data, lines=lines)


def _to_plain(node: yaml.Node, path: str, source: str, lines: dict[str, int],
              error: ErrorFactory, hint: str) -> Any:
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise error(f"{source}:{line}: keys must be plain words", hint)
            sub = f"{path}.{key}" if path else key
            if key in result:
                raise error(f"{source}:{line}: field {sub}: written twice "
                            f"(first on line {lines[sub]})", hint)
            lines[sub] = line
            result[key] = _to_plain(value_node, sub, source, lines, error, hint)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            lines[f"{path}[{i}]"] = item.start_mark.line + 1
            items.append(_to_plain(item, f"{path}[{i}]", source, lines, error, hint))
        return items
    # Scalars: let the safe constructor resolve ints, floats, bools and nulls.
    return yaml.SafeLoader("").construct_object(node, deep=True)


class FieldReader:
    """Typed, strict access to one mapping of a :class:`YamlDoc` (unknown keys are errors)."""

    def __init__(self, doc: YamlDoc, path: str, data: Any, error: ErrorFactory, hint: str) -> None:
        self.doc = doc
        self.path = path
        self.error = error
        self.hint = hint
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self.fail(path, f"expected a mapping of fields, got {_kind(data)}")
        self.data: dict[str, Any] = data

    def fail(self, field: str, problem: str) -> NoReturn:
        label = field or "(top)"
        raise self.error(f"{self.doc.where(field)}: field {label}: {problem}", self.hint)

    def _path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def reject_unknown(self, known: set[str] | frozenset[str]) -> None:
        for key in self.data:
            if key not in known:
                self.fail(self._path(key), unknown_field(key, known))

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def child(self, key: str) -> FieldReader:
        return FieldReader(self.doc, self._path(key), self.data.get(key), self.error, self.hint)

    def text(self, key: str, default: str | None = None, choices: tuple[str, ...] = ()) -> str:
        value = self.data.get(key)
        if value is None:
            if default is None:
                self.fail(self._path(key), "is required")
            return default
        if not isinstance(value, str):
            self.fail(self._path(key), f"expected text, got {_kind(value)} {value!r}")
        if choices and value not in choices:
            self.fail(self._path(key), f"{value!r} is not one of " + ", ".join(choices))
        return value

    def optional_text(self, key: str) -> str | None:
        return self.text(key) if self.has(key) else None

    def integer(self, key: str, default: int | None = None, minimum: int = 0) -> int:
        value = self.data.get(key)
        if value is None:
            if default is None:
                self.fail(self._path(key), "is required")
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(self._path(key), f"expected a whole number, got {_kind(value)} {value!r}")
        if value < minimum:
            self.fail(self._path(key), f"must be at least {minimum}, got {value}")
        return value

    def number(self, key: str, default: float, minimum: float = 0.0, maximum: float | None = None) -> float:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(self._path(key), f"expected a number, got {_kind(value)} {value!r}")
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            self.fail(self._path(key), f"must be {bound}, got {value}")
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(self._path(key), f"expected true or false, got {_kind(value)} {value!r}")
        return value

    def size(self, key: str, default: int | None = None) -> int | None:
        """Bytes from an integer or a string like ``8GiB``; ``default`` when absent."""
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool):
            self.fail(self._path(key), f"expected a size like 8GiB, got {value!r}")
        if isinstance(value, int):
            if value < 0:
                self.fail(self._path(key), f"a size cannot be negative, got {value}")
            return value
        parsed = parse_size(value) if isinstance(value, str) else None
        if parsed is None:
            self.fail(self._path(key), f"expected {SIZE_EXAMPLES}, got {value!r}")
        return parsed

    def text_list(self, key: str, choices: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.data.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(self._path(key), f"expected a list of words, got {value!r}")
        for i, item in enumerate(value):
            if choices and item not in choices:
                self.fail(f"{self._path(key)}[{i}]", f"{item!r} is not one of " + ", ".join(choices))
        return tuple(value)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
