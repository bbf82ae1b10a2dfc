"""The one serialisation strategy for the hand-off models (HostFacts, Plan, LaunchSpec, state).

Models are frozen dataclasses with typed fields; :func:`to_jsonable` writes them as JSON
objects field by field, and :func:`from_jsonable` reads them back *strictly*: every field is
type-checked against its annotation, a missing or unknown field is an error, and each error
names the file and the field path (``plan.json: field container.cpus: expected a number``).

Supported field types: ``bool``, ``int``, ``float``, ``str``, ``None`` unions, nested
dataclasses, ``tuple[X, ...]``, fixed ``tuple[X, Y]`` and ``Mapping[str, X]`` / ``dict[str, X]``.
A dataclass may list read-only properties in ``JSON_COMPUTED`` (a ``ClassVar``): they are
written for readers of the JSON and ignored when reading.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Union

from orchestrator.errors import DeployError
from orchestrator.jsonfile import read_json


@dataclasses.dataclass(frozen=True)
class Reader:
    """How to report a bad file: the error class, the source (file name) and a fix."""

    error: type[DeployError]
    source: str
    hint: str
    non_negative_ints: bool = False
    """Facts are counts and sizes: a negative integer there is a damaged file."""

    def fail(self, path: str, problem: str) -> DeployError:
        return self.error(f"{self.source}: field {path or '(top)'}: {problem}", self.hint)


def to_jsonable(value: Any) -> Any:
    """A dataclass tree as plain JSON values (dicts, lists, scalars)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data = {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        for name in getattr(value, "JSON_COMPUTED", ()):
            data[name] = to_jsonable(getattr(value, name))
        return data
    if isinstance(value, (tuple, list)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, collections.abc.Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    return value


def from_jsonable(tp: Any, data: Any, reader: Reader, path: str = "") -> Any:
    """``data`` (parsed JSON) as an instance of ``tp``; ``reader.error`` naming the field otherwise."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if data is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return from_jsonable(inner[0], data, reader, path)
    if dataclasses.is_dataclass(tp):
        return _dataclass(tp, data, reader, path)
    if origin is tuple:
        if not isinstance(data, list):
            raise reader.fail(path, f"expected a list, got {_kind(data)}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_jsonable(args[0], v, reader, f"{path}[{i}]") for i, v in enumerate(data))
        if len(data) != len(args):
            raise reader.fail(path, f"expected a list of {len(args)} items, got {len(data)}")
        return tuple(from_jsonable(a, v, reader, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, data, strict=True)))
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(data, dict):
            raise reader.fail(path, f"expected an object, got {_kind(data)}")
        _key_tp, value_tp = typing.get_args(tp)
        return {str(k): from_jsonable(value_tp, v, reader, f"{path}.{k}") for k, v in data.items()}
    return _scalar(tp, data, reader, path)


def _dataclass(tp: Any, data: Any, reader: Reader, path: str) -> Any:
    if not isinstance(data, dict):
        raise reader.fail(path, f"expected an object, got {_kind(data)}")
    hints = typing.get_type_hints(tp)
    fields = {f.name: f for f in dataclasses.fields(tp)}
    unknown = sorted(set(data) - set(fields) - set(getattr(tp, "JSON_COMPUTED", ())))
    if unknown:
        where = f"{path}.{unknown[0]}" if path else unknown[0]
        raise reader.fail(where, "is not a known field (written by a newer version of tailor?)")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        sub = f"{path}.{name}" if path else name
        if name not in data:
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                continue
            raise reader.fail(sub, "is missing")
        kwargs[name] = from_jsonable(hints[name], data[name], reader, sub)
    return tp(**kwargs)


def _scalar(tp: Any, data: Any, reader: Reader, path: str) -> Any:
    if tp is bool:
        if not isinstance(data, bool):
            raise reader.fail(path, f"expected true or false, got {data!r}")
        return data
    if tp is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise reader.fail(path, f"expected an integer, got {data!r}")
        if reader.non_negative_ints and data < 0:
            raise reader.fail(path, f"expected a non-negative integer, got {data}")
        return data
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise reader.fail(path, f"expected a number, got {data!r}")
        return float(data)
    if tp is str:
        if not isinstance(data, str):
            raise reader.fail(path, f"expected a string, got {data!r}")
        return data
    raise reader.fail(path, f"unsupported type {tp!r} (a bug in tailor)")  # pragma: no cover


def _kind(data: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false"}.get(
        type(data), type(data).__name__)


def check_version(data: Any, key: str, supported: int, reader: Reader, what: str) -> None:
    """Refuse a file of another format version clearly (older files name how to regenerate)."""
    if not isinstance(data, dict):
        raise reader.fail("", f"expected a JSON object, got {_kind(data)}")
    version = data.get(key)
    if version == supported:
        return
    if isinstance(version, int) and not isinstance(version, bool) and version > supported:
        raise reader.error(f"{reader.source}: {key} {version} is newer than this tailor reads ({supported})",
                           f"upgrade tailor, or {reader.hint}")
    raise reader.error(f"{reader.source}: {key} {version!r} is an older {what} format than this tailor "
                       f"reads ({supported})", reader.hint)


def read_json_file(path: Path, reader: Reader, missing: str) -> Any:
    """Parsed JSON of ``path`` with the reader's error class (missing file, bad JSON: file:line:col)."""
    return read_json(path, reader.error, missing=missing, hint=reader.hint)
