"""The user config file (``--config FILE``): the user's own defaults, below flags and env vars.

Format (YAML; every key optional)::

    profile: cpu-only          # preferred profile, like --profile
    model: kokoro-82m          # model family, like --model (`deploy models` lists them)
    settings:                  # plan knobs, by short name
      workers: 2
      threads: 2
      port: 8080
    env:                       # any runtime variable from `deploy env`, by name
      TAILOR_API_KEY: secret
      TAILOR_LOG_LEVEL: debug
    tuned:                     # written by `deploy tune`: its values show as source `tuned`
      report: tune-report/report.md

Values are checked with the runtime's own parsers, so a bad value is reported here, with its
file and line, rather than when the runtime starts.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import UsageError
from orchestrator.model import Reader, did_you_mean, from_jsonable, unknown_field
from orchestrator.yaml_doc import YamlDoc, load_yaml_document
from runtime.settings import VARIABLES, SettingsError, variable

_HINT = "fix the config file; `deploy env` lists every runtime variable"

KNOB_VARIABLES: Mapping[str, str] = {v.knob: v.name for v in VARIABLES if v.knob is not None}
"""Short knob names (``--workers``, ``settings.workers``) and the runtime variable each sets,
from the knob table (``EnvVar.knob`` in runtime/settings.py)."""

PASS_THROUGH = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "PYTORCH_CUDA_ALLOC_CONF",
                "MALLOC_ARENA_MAX", "LD_PRELOAD", "MALLOC_CONF", "TCMALLOC_RELEASE_RATE", "CUDA_VISIBLE_DEVICES",
                "CUDA_DEVICE_ORDER")
"""Non-TAILOR variables the plan writes; a user may set them too."""

_DECLARED = frozenset(v.name for v in VARIABLES)

LAUNCH_KNOBS: Mapping[str, str] = {
    "startup_timeout_s": "Seconds from start to ready before the launch counts as failed "
                         "(default: derived from the plan's workers, engine and device).",
    "health_interval_s": "Seconds between health checks of a running runtime.",
}
"""Settings of the launcher itself (not the runtime): accepted in ``settings:`` and ``--set``,
recorded in ``Plan.launch_settings`` with their source, never written to the runtime's env.
Positive numbers, in seconds."""


Value = str | int | float | bool
"""A setting's value as the knob table types it (``TAILOR_WORKERS`` -> int, ``TAILOR_BATCHING``
-> bool); pass-through variables stay text, launcher knobs are seconds (float)."""


def value_text(value: object) -> str:
    """A typed value as an env file, a manifest or a child's environment writes it: ``true``,
    ``8``, ``2.5`` (the one place a setting becomes text)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def check_value(name: str, raw: str, where: str) -> str:
    """``raw`` normalised for variable ``name`` (its text); a UsageError naming ``where`` if invalid."""
    return value_text(parse_value(name, raw, where))


def parse_value(name: str, raw: str, where: str) -> Value:
    """``raw`` parsed for variable ``name`` by the knob table; a UsageError naming ``where`` if invalid."""
    if name in _DECLARED:
        try:
            parsed = variable(name).parse(name, raw)
        except SettingsError as exc:
            choices = list(getattr(variable(name).parse, "choices", ()))
            # A list value (TAILOR_MODEL=a,b): the suggestion is for its first unknown name.
            parts = [p.strip().lower() for p in raw.split(",") if p.strip()]
            unknown = next((p for p in parts if p not in choices), raw.strip().lower())
            close = difflib.get_close_matches(unknown, choices, n=1, cutoff=0.5)
            guess = f"; did you mean {close[0]!r}?" if close else ""
            hint = ("`deploy models` lists the model families" if name == "TAILOR_MODEL" else
                    f"`deploy env` describes {name}")
            raise UsageError(f"{where}: {name}={raw!r} is invalid: expected {exc.expected}{guess}", hint) from None
        if not isinstance(parsed, (str, int, float)):  # bool is an int
            raise TypeError(f"the knob table parsed {name} to {type(parsed).__name__}")
        return parsed
    if name in PASS_THROUGH:
        return raw
    if name in LAUNCH_KNOBS:
        try:
            seconds = float(raw)
        except ValueError:
            seconds = -1.0
        if not seconds > 0 or seconds == float("inf"):
            raise UsageError(f"{where}: {name}={raw!r} is invalid: expected a number of seconds > 0",
                             "for example 300")
        return seconds
    known = [*_DECLARED, *PASS_THROUGH, *LAUNCH_KNOBS, *KNOB_VARIABLES]
    raise UsageError(f"{where}: {name} is not a runtime variable{did_you_mean(name, known)}",
                     "`deploy env` lists the variables the runtime reads")


def variable_for(knob_or_name: str) -> str:
    """``TAILOR_WORKERS`` for ``workers``; declared names pass through."""
    return KNOB_VARIABLES.get(knob_or_name, knob_or_name)


@dataclass(frozen=True)
class UserConfig:
    source: str
    profile: str | None = None
    values: Mapping[str, Value] = field(default_factory=dict)
    """Runtime variable name -> its value, typed by the knob table (parsed once, here)."""
    where: Mapping[str, str] = field(default_factory=dict)
    """Runtime variable name -> ``file:line`` it was set on."""
    label: str = "config"
    """Source label of these values in the plan (``tuned`` for a file `deploy tune` wrote)."""


@dataclass(frozen=True)
class TunedBlock:
    """The ``tuned:`` block `deploy tune` writes: informational (any values); its presence marks
    the file's values as source ``tuned``."""

    by: object = None
    at: object = None
    host: object = None
    objective: object = None
    report: object = None


@dataclass(frozen=True)
class ConfigFile:
    """The config file's shape, read by the one validator (:func:`orchestrator.model.from_jsonable`).
    The values under ``settings`` and ``env`` are checked afterwards by the runtime's own parsers,
    all of them, so every bad value is reported together."""

    profile: str | None = None
    model: str | None = None
    settings: Mapping[str, object] = field(default_factory=dict)
    env: Mapping[str, object] = field(default_factory=dict)
    tuned: TunedBlock | None = None


def parse_config(doc: YamlDoc) -> UserConfig:
    """The config file, every field checked; all problems are reported together, each with its line."""
    reader = Reader(UsageError, doc.source, _HINT, lines=doc.lines, null_is_absent=True)
    data = doc.data if doc.data is not None else {}
    shape: ConfigFile = from_jsonable(ConfigFile, data, reader)
    problems: list[str] = []

    def checked(path: str, name: str, raw: object) -> Value | None:
        if isinstance(raw, (bool, int, float, str)):
            try:
                return parse_value(name, value_text(raw) if isinstance(raw, bool) else str(raw),
                                   f"{reader.where(path)}: field {path}")
            except UsageError as exc:
                problems.append(exc.message)
        else:
            problems.append(reader.fail(path, f"expected a single value, got {raw!r}").message)
        return None

    values: dict[str, Value] = {}
    where: dict[str, str] = {}
    known_settings = frozenset(KNOB_VARIABLES) | frozenset(LAUNCH_KNOBS)
    for key, raw in shape.settings.items():
        path = f"settings.{key}"
        if key not in known_settings:
            problems.append(reader.fail(path, unknown_field(key, known_settings)).message)
            continue
        if raw is None:
            continue
        name = variable_for(key)
        value = checked(path, name, raw)
        if value is not None:
            values[name], where[name] = value, reader.where(path)
    for key, raw in shape.env.items():
        path = f"env.{key}"
        if raw is None:
            continue
        if key in values:
            problems.append(reader.fail(path, f"also set as settings ({where[key]})").message)
            continue
        value = checked(path, key, raw)
        if value is not None:
            values[key], where[key] = value, reader.where(path)
    if shape.model is not None:
        if "TAILOR_MODEL" in values:
            problems.append(reader.fail("model", f"also set as {where['TAILOR_MODEL']}").message)
        else:
            value = checked("model", "TAILOR_MODEL", shape.model)
            if value is not None:
                values["TAILOR_MODEL"], where["TAILOR_MODEL"] = value, reader.where("model")
    if problems:
        message = problems[0] if len(problems) == 1 else \
            f"{len(problems)} problems in {doc.source}:\n  " + "\n  ".join(problems)
        raise UsageError(message, _HINT)
    return UserConfig(source=doc.source, profile=shape.profile, values=values, where=where,
                      label="tuned" if isinstance(data, dict) and "tuned" in data else "config")


def load_config(path: Path) -> UserConfig:
    return parse_config(load_yaml_document(path, UsageError, _HINT))
