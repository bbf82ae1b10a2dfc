"""A YAML document that remembers where each key was written.

Profiles (``profiles/*.yaml``) and the user config file (``--config FILE``) are composed here,
then validated by the one type-driven validator (:func:`orchestrator.model.from_jsonable`) with
this document's line map, so every error names the file, the line and the dotted field, e.g.
``profiles/gpu-16gb.yaml:12: field match.min_memory: expected a size like 8GiB``.

The document is composed into yaml's node tree (which carries line marks) and converted to
plain values by hand, so duplicate keys are caught rather than silently overwritten.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import DeployError

ErrorFactory = Callable[[str, str], DeployError]


@dataclass(frozen=True)
class YamlDoc:
    """Plain data of one YAML file plus the line (1-based) of every key, by dotted path
    (``match.min_memory``, ``match.architectures[1]``); :class:`orchestrator.model.Reader` reads it."""

    source: str
    data: Any
    lines: Mapping[str, int]


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
