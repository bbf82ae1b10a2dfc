"""Why a host failed, in one line: the cause first, then the hint, then the inventory variable that fixes it.

What a host reports comes from Tailor's own CLI run there (``error: ...`` / ``hint: ...`` lines on
stderr, a supervisor's ``last log lines:`` block indented under them) or from Ansible (a task's
``msg``). The cause is the first error line, never the last line printed (usually the hint); when
the supervisor quotes the runtime's own error, that error is kept as the detail. A hint speaks in
``deploy``'s flags and variables (``--profile NAME``, ``TAILOR_VOICE``); a fleet is configured
through the role's inventory variables instead, so each one is translated into the variable that
sets it (``tailor_profile: NAME``), as long as the installed role declares that variable.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

_ERROR = "error:"
_HINT = "hint:"
_INDENT = ("  ", "\t")

FLAG_VARIABLES: Mapping[str, str] = {
    "--profile": "tailor_profile",
    "--port": "tailor_port",
    "--model": "tailor_model",
    "--backend": "tailor_backend",
    "--network": "tailor_network",
    "--base-image": "tailor_base_image",
    "--state-dir": "tailor_state_dir",
    "--timeout": "tailor_stop_timeout_s",
}
"""``deploy`` flags and the role variable that sets the same thing on every fleet host."""

LAUNCH_FLAGS: Mapping[str, str] = {
    "--startup-timeout": "startup_timeout_s",
    "--health-interval": "health_interval_s",
}
"""``deploy up`` flags whose value a config file takes under ``settings:`` (``tailor_settings``)."""

CONTROLLER_FLAGS: Mapping[str, str] = {
    "--wheelhouse": "pass --wheelhouse DIR to `deploy fleet up`",
    "--python-version": "pass --python-version X.Y to `deploy fleet up`",
}
"""Flags whose fleet counterpart is a flag of the fleet command on the controller, not a variable."""

_FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)(?:[ =]([A-Z][A-Z_]*(?:=[A-Z_]+)?|[0-9][0-9.]*|"
                   r"process\b|docker\b|bridge\b|host\b))?")
"""A flag and the value written after it: a placeholder (NAME, N), a number, or a backend or
network choice (``use --backend process``); other words after a flag are prose."""
_VARIABLE = re.compile(r"\b([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\b")
_QUOTED = re.compile(r"`[^`]*`")


@dataclass(frozen=True)
class Reason:
    """Why one host failed, split into its parts (``line()`` joins them into one line)."""

    cause: str
    """The first error line (what went wrong), without the ``error:`` prefix."""
    task: str = ""
    """The Ansible task that failed ("" when unknown)."""
    detail: str = ""
    """The runtime's own error, when the supervisor quoted it under the cause (its last log lines)."""
    hint: str = ""
    """How to fix it, as the host's Tailor said it (flags of ``deploy``)."""
    fix: str = ""
    """The same fix for the fleet: the inventory variable(s) to set ("" when none applies)."""

    def line(self, *, with_task: bool = True) -> str:
        parts = [f"{self.task}: {self.cause}" if self.task and with_task else self.cause]
        if self.detail:
            parts[0] += f" ({self.detail})"
        if self.hint:
            parts.append(f"hint: {self.hint}")
        if self.fix:
            parts.append(f"fix: {self.fix}")
        return "; ".join(one_line(p) for p in parts if p)

    def short(self, *, with_task: bool = True, part: int = 80) -> str:
        """``line()`` for a report of several lines: the cause cut to ``part * 7 // 4`` characters
        (the supervisor puts the runtime's own error first and its verdict after it, so the start is
        what to keep), the detail to ``part``, the hint left out when a fix says the same for the
        fleet, and the fix whole (it is what the reader acts on)."""
        cut = Reason(cause=one_line(self.cause, part * 7 // 4), task=self.task,
                     detail=one_line(self.detail, part), hint="" if self.fix else one_line(self.hint, part),
                     fix=self.fix)
        return cut.line(with_task=with_task)

    def to_dict(self) -> dict[str, str]:
        return {"task": self.task, "cause": self.cause, "detail": self.detail, "hint": self.hint, "fix": self.fix}


def one_line(text: str, limit: int = 400) -> str:
    """Whitespace folded to single spaces, cut at ``limit`` characters (with an ellipsis)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3].rstrip() + "..."


def parse_cli_output(text: str) -> tuple[str, str, str]:
    """(cause, detail, hint) from what a ``deploy`` command printed on stderr; "" for what is missing.

    ``cause``: the first top-level ``error:`` line. ``detail``: the last ``error:`` line of an
    indented block under it (the runtime's own words in a supervisor's ``last log lines:``), when
    it differs from the cause. ``hint``: the hint that follows that detail in the block, else the
    first top-level ``hint:`` after the cause. Text without an ``error:`` line gives its first
    non-empty line as the cause (a traceback's last line when it is one).
    """
    lines = [ln.rstrip() for ln in str(text).splitlines() if ln.strip()]
    cause, top_hint, detail, inner_hint = "", "", "", ""
    for ln in lines:
        stripped = ln.strip()
        indented = ln.startswith(_INDENT)
        if not indented and stripped.lower().startswith(_ERROR):
            if not cause:
                cause = stripped[len(_ERROR):].strip()
        elif not indented and stripped.lower().startswith(_HINT):
            if cause and not top_hint:
                top_hint = stripped[len(_HINT):].strip()
        elif indented and cause and stripped.lower().startswith(_ERROR):
            detail, inner_hint = stripped[len(_ERROR):].strip(), ""
        elif indented and detail and stripped.lower().startswith(_HINT):
            inner_hint = stripped[len(_HINT):].strip()
    if not cause:
        if lines and lines[0].startswith("Traceback"):
            return lines[-1].strip(), "", ""
        return " ".join(ln.strip() for ln in lines), "", ""
    if "; fix: " in cause:  # a supervisor's reason that carries the runtime's fix
        cause, carried = cause.split("; fix: ", 1)
        inner_hint = inner_hint or carried.strip()
    if detail and detail in cause:
        detail = ""
    hint = inner_hint or top_hint
    if hint and hint in cause:  # a cause that already carries its fix (a FATAL reason may)
        hint = ""
    return cause, detail, hint


def reason_from_result(task: str, res: Mapping[str, Any], declared: Iterable[str] | None = None) -> Reason:
    """The Reason of a failed Ansible task result (a loop's first failed item says why)."""
    for item in res.get("results") or ():
        if isinstance(item, Mapping) and (item.get("failed") or item.get("unreachable")):
            res = item
            break
    message = str(res.get("msg") or "").strip()
    stderr = str(res.get("stderr") or "").strip()
    stdout = str(res.get("stdout") or "").strip()
    if message and not message.startswith("non-zero return code") and not _ERROR_LINE.search(stderr):
        cause, detail, hint = parse_cli_output(message)
    else:
        cause, detail, hint = parse_cli_output(stderr or stdout or message)
    if not hint and res.get("hint"):
        hint = str(res["hint"]).strip()
    return Reason(cause=one_line(cause), task=task, detail=one_line(detail), hint=one_line(hint),
                  fix=inventory_fix(" ".join((cause, detail, hint)), declared))


_ERROR_LINE = re.compile(r"^error:", re.M | re.I)


def reason_from_text(text: str, task: str = "", declared: Iterable[str] | None = None) -> Reason:
    cause, detail, hint = parse_cli_output(text)
    return Reason(cause=one_line(cause), task=task, detail=one_line(detail), hint=one_line(hint),
                  fix=inventory_fix(" ".join((cause, detail, hint)), declared))


def inventory_fix(text: str, declared: Iterable[str] | None = None) -> str:
    """``set VAR: VALUE in the inventory`` for every flag or variable ``text`` names that a role
    variable sets; "" when none does. ``declared``: the role's variables (default: the installed
    role's defaults), so a variable the role does not have is never suggested."""
    known = frozenset(declared) if declared is not None else role_variables()
    settings = "tailor_settings" in known
    suggestions: list[str] = []
    controller: list[str] = []

    def add(item: str) -> None:
        if item not in suggestions:
            suggestions.append(item)

    text = _QUOTED.sub(" ", text)  # `deploy down --state-dir X` is a command to run, not a setting
    for flag, value in _FLAG.findall(text):
        if flag in FLAG_VARIABLES and FLAG_VARIABLES[flag] in known:
            add(f"{FLAG_VARIABLES[flag]}: {value}" if value else FLAG_VARIABLES[flag])
        elif flag in CONTROLLER_FLAGS:
            if CONTROLLER_FLAGS[flag] not in controller:
                controller.append(CONTROLLER_FLAGS[flag])
        elif settings and flag in LAUNCH_FLAGS:
            add(f"tailor_settings.{LAUNCH_FLAGS[flag]}")
        elif settings and flag == "--set":
            add("tailor_settings: {NAME: VALUE} (tailor_env for TAILOR_ variables)")
        elif settings and flag[2:].replace("-", "_") in _knobs():
            add(f"tailor_settings.{flag[2:].replace('-', '_')}")
    for name in _VARIABLE.findall(text):
        if name not in _env_names():
            continue
        knob = _knob_of(name)
        if knob == "port" and "tailor_port" in known:
            add("tailor_port")
        elif knob is not None and settings:
            add(f"tailor_settings.{knob}")
        elif "tailor_env" in known:
            add(f"tailor_env.{name}")
    parts = []
    if suggestions:
        parts.append("set " + " or ".join(suggestions) + " in the inventory")
    parts += controller
    return "; ".join(parts)


@functools.lru_cache(maxsize=1)
def _knob_table() -> dict[str, str]:
    from runtime.settings import VARIABLES

    return {v.name: v.knob for v in VARIABLES if v.knob is not None}


@functools.lru_cache(maxsize=1)
def _env_names() -> frozenset[str]:
    """Variables a config file's ``env:`` (``tailor_env``) may set: the runtime's and the pass-throughs."""
    from orchestrator.plan.user_config import PASS_THROUGH
    from runtime.settings import VARIABLES

    return frozenset(v.name for v in VARIABLES) | frozenset(PASS_THROUGH)


def _knobs() -> frozenset[str]:
    return frozenset(_knob_table().values())


def _knob_of(name: str) -> str | None:
    return _knob_table().get(name)


def role_defaults_path() -> Path:
    from orchestrator.fleet.ansible_run import role_path

    return role_path() / "defaults" / "main.yml"


@functools.lru_cache(maxsize=1)
def role_variables() -> frozenset[str]:
    """The variables the installed tailor.fleet.tailor role declares (its defaults)."""
    try:
        data = yaml.safe_load(role_defaults_path().read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return frozenset()
    return frozenset(str(k) for k in data) if isinstance(data, dict) else frozenset()
