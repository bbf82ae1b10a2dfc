"""One output sink: data on stdout (human or JSON), diagnostics on stderr.

Tables never cut data: on a terminal a cell that does not fit wraps (a word longer than its
column folds, never ``prof…``); written to a pipe or a file, a table is plain text, one row per
line in aligned columns of any width, so `| grep` and `> file` see every value whole.
"""

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
    """A rich renderable (Table, Panel...) on stdout: wrapped on a terminal, plain text otherwise."""
    from rich.table import Table

    if not isinstance(obj, Table):
        _stdout.print(obj)
    elif _stdout.is_terminal:
        _stdout.print(wrapping(obj))
    else:
        sys.stdout.write(plain_table(obj))
        sys.stdout.flush()


def _cell_text(cell: Any) -> str:
    from rich.text import Text

    if isinstance(cell, Text):
        return cell.plain
    if isinstance(cell, str):
        return Text.from_markup(cell).plain
    return str(cell)


def wrapping(table: Any) -> Any:
    """``table`` with every column wrapping at spaces, and folding a word longer than its column,
    instead of cutting it with "…" (rich's default for a word that does not fit)."""
    for column in table.columns:
        column.overflow = "fold"
        column.no_wrap = False
    return table


def plain_table(table: Any) -> str:
    """``table`` as plain text: its title, a header line and one line per row, columns aligned by
    two spaces, nothing cut or wrapped (a cell's own line breaks become "; ")."""
    columns = table.columns
    rows = [[_cell_text(c.header) for c in columns]] if table.show_header else []
    rows += [[_cell_text(c._cells[i]).replace("\n", "; ") if i < len(c._cells) else "" for c in columns]
             for i in range(table.row_count)]
    widths = [max((len(r[j]) for r in rows), default=0) for j in range(len(columns))]
    lines = [_cell_text(table.title)] if table.title else []
    lines += ["  ".join(cell.ljust(widths[j]) for j, cell in enumerate(r)).rstrip() for r in rows]
    return "".join(line + "\n" for line in lines)


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
