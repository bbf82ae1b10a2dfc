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
from orchestrator.model import did_you_mean, unknown_field
from orchestrator.yaml_doc import FieldReader, YamlDoc, load_yaml_document
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
TUNED_FIELDS = frozenset({"by", "at", "host", "objective", "report"})
"""Keys of the ``tuned:`` block `deploy tune` writes (informational; its presence marks the source)."""

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


def _scalar_text(reader: FieldReader, key: str) -> str:
    value = reader.data[key]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    reader.fail(f"{reader.path}.{key}" if reader.path else key, f"expected a single value, got {value!r}")


def parse_config(doc: YamlDoc) -> UserConfig:
    """The config file, every field checked; all problems are reported together, each with its line."""
    def error(message: str, hint: str) -> UsageError:
        return UsageError(message, hint)

    problems: list[str] = []

    def checked(reader: FieldReader, key: str, name: str, where: str) -> Value | None:
        try:
            return parse_value(name, _scalar_text(reader, key), where)
        except UsageError as exc:
            problems.append(exc.message)
            return None

    top = FieldReader(doc, "", doc.data, error, _HINT)
    top.reject_unknown(frozenset({"profile", "model", "settings", "env", "tuned"}))
    top.child("tuned").reject_unknown(TUNED_FIELDS)
    values: dict[str, Value] = {}
    where: dict[str, str] = {}
    settings = top.child("settings")
    known_settings = frozenset(KNOB_VARIABLES) | frozenset(LAUNCH_KNOBS)
    for key in sorted(settings.data, key=lambda k: doc.line(f"settings.{k}")):
        place = doc.where(f"settings.{key}")
        if key not in known_settings:
            problems.append(f"{place}: field settings.{key}: {unknown_field(key, known_settings)}")
            continue
        if settings.data[key] is None:
            continue
        name = variable_for(key)
        value = checked(settings, key, name, f"{place}: field settings.{key}")
        if value is not None:
            values[name], where[name] = value, place
    env = top.child("env")
    for key in sorted(env.data, key=lambda k: doc.line(f"env.{k}")):
        place = doc.where(f"env.{key}")
        if env.data[key] is None:
            continue
        if key in values:
            problems.append(f"{place}: field env.{key}: also set as settings ({where[key]})")
            continue
        value = checked(env, key, key, f"{place}: field env.{key}")
        if value is not None:
            values[key], where[key] = value, place
    model = top.optional_text("model")
    if model is not None:
        place = doc.where("model")
        if "TAILOR_MODEL" in values:
            problems.append(f"{place}: field model: also set as {where['TAILOR_MODEL']}")
        else:
            checked_value: Value | None = None
            try:
                checked_value = parse_value("TAILOR_MODEL", model, f"{place}: field model")
            except UsageError as exc:
                problems.append(exc.message)
            if checked_value is not None:
                values["TAILOR_MODEL"], where["TAILOR_MODEL"] = checked_value, place
    try:
        profile = top.optional_text("profile")
    except UsageError as exc:
        problems.append(exc.message)
        profile = None
    if problems:
        message = problems[0] if len(problems) == 1 else \
            f"{len(problems)} problems in {doc.source}:\n  " + "\n  ".join(problems)
        raise UsageError(message, _HINT)
    return UserConfig(source=doc.source, profile=profile, values=values, where=where,
                      label="tuned" if "tuned" in doc.data else "config")


def load_config(path: Path) -> UserConfig:
    def error(message: str, hint: str) -> UsageError:
        return UsageError(message, hint)

    return parse_config(load_yaml_document(path, error, _HINT))
