"""One output sink: data on stdout (human or JSON), diagnostics on stderr."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

_stdout = Console(soft_wrap=True, highlight=False)
_stderr = Console(stderr=True, soft_wrap=True, highlight=False)


def data_json(obj: Any) -> None:
    """Machine-readable result on stdout: stable key order, trailing newline."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    sys.stdout.flush()


def data(text: str = "", *, markup: bool = True) -> None:
    """Human-readable result on stdout (rich markup allowed)."""
    _stdout.print(text, markup=markup)


def table(obj: Any) -> None:
    """A rich renderable (Table, Panel...) on stdout."""
    _stdout.print(obj)


def info(text: str) -> None:
    _stderr.print(text, markup=False)


def warn(text: str) -> None:
    _stderr.print(f"[yellow]warning:[/yellow] {_escape(text)}")


def error(text: str, hint: str = "") -> None:
    _stderr.print(f"[red]error:[/red] {_escape(text)}")
    if hint:
        _stderr.print(f"[cyan]hint:[/cyan] {_escape(hint)}")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
