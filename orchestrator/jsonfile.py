"""Reading the JSON files Tailor writes (facts, plan.json, state.json) with errors that say
which file, where in it, and what to do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.errors import DeployError


def read_json(path: Path, error: type[DeployError], *, missing: str, hint: str,
              invalid: type[DeployError] | None = None) -> Any:
    """The parsed contents of ``path``.

    A missing file raises ``error(missing, hint)``; an unreadable one ``error`` with the OS reason;
    text that is not JSON raises ``invalid`` (default ``error``) with line and column.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(missing, hint) from None
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror}", hint) from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise (invalid or error)(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})", hint) from exc
