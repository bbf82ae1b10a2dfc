"""Env files (``.env`` for compose, the systemd ``EnvironmentFile``): the one reader and writer.

The writer only emits values that every consumer reads the same way without quoting (letters,
digits and ``_ . , : / = + @ % -``), so compose, systemd and a shell agree on them; anything
else is refused at render time. The reader accepts what the writer writes plus what a person
may add by hand: ``#`` comments, blank lines and a value wrapped in matching quotes.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from orchestrator.errors import DeployError

_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.,:/=+@%-]*$")
SAFE_CHARACTERS = "letters, digits and _ . , : / = + @ % -"


def assignment(name: str, value: str, error: Callable[[str, str], DeployError]) -> str:
    """``NAME=value`` for an env file; ``error(message, hint)`` if the value needs quoting."""
    if not _LINE.match(f"{name}="):
        raise error(f"{name!r} is not a valid environment variable name", "use letters, digits and _")
    if not _SAFE_VALUE.match(value):
        raise error(f"variable {name} has a value with characters an env file cannot carry safely",
                    f"use {SAFE_CHARACTERS} only")
    return f"{name}={value}"


def parse_env_text(text: str, source: str, error: Callable[[str, str], DeployError], hint: str) -> dict[str, str]:
    """Name -> value from env-file text; ``error`` names ``source:line`` for a bad or repeated line."""
    result: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _LINE.match(stripped)
        if match is None:
            raise error(f"{source}:{number}: not a NAME=value line: {stripped!r}", hint)
        name, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if name in result:
            raise error(f"{source}:{number}: {name} is set twice", hint)
        result[name] = value
    return result
