"""The one serialisation and validation strategy for every file tailor reads.

The hand-off models (HostFacts, Plan, LaunchSpec, state) and the files people write (profiles,
the user config) are frozen dataclasses with typed fields. :func:`to_jsonable` writes them as
JSON objects field by field, and :func:`from_jsonable` reads them back *strictly*: every field
is type-checked against its annotation, a missing or unknown field is an error, and each error
names the file and the field path (``plan.json: field container.cpus: expected a number``).
Given the line of every key (a YAML file, :class:`orchestrator.yaml_doc.YamlDoc`), errors name
the line too (``profiles/mine.yaml:12: field match.min_memory: expected a size like 8GiB``).

Supported field types: ``bool``, ``int``, ``float``, ``str``, ``object`` (any value, checked by
the caller), ``Literal["a", "b"]`` (choices), ``None`` unions, nested dataclasses,
``tuple[X, ...]``, fixed ``tuple[X, Y]`` and ``Mapping[str, X]`` / ``dict[str, X]``.
``Annotated[X, ...]`` adds per-field rules: :class:`Range` (bounds, checked after decoding) and
:class:`Parse` (a function that reads the raw value itself, e.g. a size like ``8GiB``).
A field's ``metadata`` may rename its key in the file (:func:`file_key`) or keep it out of the
file (:data:`NOT_READ`: the reader fills it in). A dataclass may list read-only properties in
``JSON_COMPUTED`` (a ``ClassVar``): they are written for readers of the JSON and ignored when
reading. Checks across fields stay plain code after decoding (they raise :meth:`Reader.fail`).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
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
    lines: Mapping[str, int] | None = None
    """Line (1-based) of each field path, for files people write (YAML); errors then say
    ``FILE:LINE``, the line of the field or of its nearest written parent (1 for the top)."""
    null_is_absent: bool = False
    """YAML's ``key:`` with nothing after it means "not set": the field's default applies."""

    def fail(self, path: str, problem: str) -> DeployError:
        return self.error(f"{self.where(path)}: field {path or '(top)'}: {problem}", self.hint)

    def where(self, path: str) -> str:
        """``FILE:LINE`` of ``path`` when lines are known, else ``FILE``."""
        if self.lines is None:
            return self.source
        while path and path not in self.lines:
            path = path[:max(path.rfind("."), path.rfind("["), 0)]
        return f"{self.source}:{self.lines.get(path, 1)}"


@dataclasses.dataclass(frozen=True)
class Range:
    """``Annotated[int, Range(1)]``: the decoded number must lie within these bounds."""

    minimum: float
    maximum: float | None = None

    def problem(self, value: Any) -> str | None:
        if value < self.minimum or (self.maximum is not None and value > self.maximum):
            bound = (f"between {self.minimum} and {self.maximum}" if self.maximum is not None
                     else f"at least {self.minimum}")
            return f"must be {bound}, got {value}"
        return None


@dataclasses.dataclass(frozen=True)
class Parse:
    """``Annotated[int, Parse(size)]``: ``function`` reads the raw value (never None) itself and
    raises ValueError with the problem (``expected a size like 8GiB, got 'lots'``)."""

    function: Callable[[Any], Any]


NOT_READ: Mapping[str, Any] = {"read": False}
"""Field metadata: not a key of the file (the reader fills it in; it needs a default)."""


def file_key(name: str) -> Mapping[str, Any]:
    """Field metadata: the field is written ``name`` in the file (``min_memory`` for
    ``min_memory_bytes``)."""
    return {"key": name}


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'threads'?)`` for the closest known name, "" when none is close."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_field(key: str, known: Iterable[str]) -> str:
    """The problem sentence for an unknown field, with the closest known one."""
    names = sorted(known)
    return f"unknown field{did_you_mean(key, names)}; known fields here: " + ", ".join(names)


def _keyed_fields(tp: Any) -> dict[str, dataclasses.Field[Any]]:
    """The fields a file holds, by their key in the file."""
    return {f.metadata.get("key", f.name): f for f in dataclasses.fields(tp) if f.metadata.get("read", True)}


def to_jsonable(value: Any) -> Any:
    """A dataclass tree as plain JSON values (dicts, lists, scalars)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data = {key: to_jsonable(getattr(value, f.name)) for key, f in _keyed_fields(type(value)).items()}
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
    if origin is typing.Annotated:
        return _annotated(tp, data, reader, path)
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if isinstance(data, (list, dict)) or data not in choices:
            raise reader.fail(path, f"{data!r} is not one of " + ", ".join(str(c) for c in choices))
        return data
    if tp is object:
        return data
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
            raise reader.fail(path, f"expected a mapping, got {_kind(data)}")
        _key_tp, value_tp = typing.get_args(tp)
        return {str(k): from_jsonable(value_tp, v, reader, f"{path}.{k}") for k, v in data.items()}
    return _scalar(tp, data, reader, path)


def _annotated(tp: Any, data: Any, reader: Reader, path: str) -> Any:
    inner, *rules = typing.get_args(tp)
    parse = next((r for r in rules if isinstance(r, Parse)), None)
    if parse is None:
        value = from_jsonable(inner, data, reader, path)
    else:
        try:
            value = parse.function(data)
        except ValueError as exc:
            raise reader.fail(path, str(exc)) from None
    for rule in rules:
        problem = rule.problem(value) if isinstance(rule, Range) else None
        if problem:
            raise reader.fail(path, problem)
    return value


def _dataclass(tp: Any, data: Any, reader: Reader, path: str) -> Any:
    if not isinstance(data, dict):
        raise reader.fail(path, f"expected a mapping of fields, got {_kind(data)}")
    hints = typing.get_type_hints(tp, include_extras=True)
    fields = _keyed_fields(tp)
    computed = getattr(tp, "JSON_COMPUTED", ())
    for key in data:
        if key not in fields and key not in computed:
            raise reader.fail(f"{path}.{key}" if path else str(key), unknown_field(str(key), fields))
    kwargs: dict[str, Any] = {}
    for key, f in fields.items():
        sub = f"{path}.{key}" if path else key
        if key not in data or (data[key] is None and reader.null_is_absent):
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                continue
            raise reader.fail(sub, "is missing")
        kwargs[f.name] = from_jsonable(hints[f.name], data[key], reader, sub)
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
    """What was found instead: ``a mapping``, ``a list``, or the value itself (``3``, ``'x'``)."""
    if isinstance(data, dict):
        return "a mapping"
    return "a list" if isinstance(data, list) else repr(data)


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
