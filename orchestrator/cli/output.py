"""One output sink: data on stdout (human or JSON), diagnostics on stderr.

Tables never cut data: on a terminal a cell that does not fit wraps at spaces; a table too wide
for every column to hold its longest word (the fleet's 11 columns at 80 columns) is printed as one
``column: value`` record per row instead, so no name is cut (``prof…``) or split (``gpu-`` /
``16gb``); written to a pipe or a file, a table is plain text, one row per line in aligned columns
of any width, so `| grep` and `> file` see every value whole.
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
        _stdout.print(wrapping(obj) if fits(obj, _stdout.width) else records(obj))
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


def _rows(table: Any) -> list[list[str]]:
    return [[_cell_text(c._cells[i]) if i < len(c._cells) else "" for c in table.columns]
            for i in range(table.row_count)]


def fits(table: Any, width: int) -> bool:
    """Whether ``table`` fits ``width`` columns with each column as wide as its longest word
    (header included): 3 characters of border and padding per column, plus 1."""
    words = [[_cell_text(c.header), *(r[j] for r in _rows(table))] for j, c in enumerate(table.columns)]
    need = sum(max((len(w) for cell in col for w in cell.split()), default=0) for col in words)
    return need + 3 * len(table.columns) + 1 <= width


def records(table: Any) -> Any:
    """``table`` as one ``column: value`` record per row (a header-less two-column table, names
    whole, values wrapping at spaces), for a terminal too narrow for its columns."""
    from rich.table import Table

    out = Table(title=table.title, show_header=False, box=None, padding=(0, 1), title_justify="left")
    out.add_column(no_wrap=True, style="bold")
    out.add_column(overflow="fold")
    headers = [_cell_text(c.header) for c in table.columns]
    for n, row in enumerate(_rows(table)):
        if n:
            out.add_row("", "")
        for header, cell in zip(headers, row, strict=True):
            out.add_row(f"{header}:", cell)
    return out


def plain_table(table: Any) -> str:
    """``table`` as plain text: its title, a header line and one line per row, columns aligned by
    two spaces, nothing cut or wrapped (a cell's own line breaks become "; ")."""
    columns = table.columns
    rows = [[_cell_text(c.header) for c in columns]] if table.show_header else []
    rows += [[cell.replace("\n", "; ") for cell in row] for row in _rows(table)]
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
