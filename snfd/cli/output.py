"""How ``snf`` answers: a table for people, JSON for scripts.

Every listing and every ``info`` goes through ``show``: with ``-o json``
(``snf -o json server list``) it prints the API's objects as JSON, keys as
the API names them (stable across versions, sorted); otherwise a table of
the chosen columns (``Column``), or for one object its fields one a line.

Exit codes say what failed (``exit_code``), so scripts can tell:

==== =====================================================================
0    done
1    any other failure (a bad config file, a local file, a refusal ...)
2    the command line itself (unknown option, missing argument: click's)
3    not found (404)
4    not allowed: no or a bad token, or forbidden (401, 403)
5    refused in the current state (409), or a bad request (400, a bad
     byte range: 416)
6    over quota or too large (413)
7    the cloud cannot be reached, or is unavailable (5xx)
==== =====================================================================
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs
import click

__all__ = ["Column", "exit_code", "show", "show_json"]


def exit_code(status: int) -> int:
    """The exit code of a failure with HTTP ``status`` (0: no answer)."""
    if status == 404:
        return 3
    if status in (401, 403):
        return 4
    if status in (400, 409, 411, 412, 416, 422):
        return 5
    if status == 413:
        return 6
    if status == 0 or status >= 500:
        return 7
    return 1


@attrs.frozen
class Column:
    """A table column: its title and how to get its text from an object
    (a key, or a function)."""

    title: str
    get: str | Callable[[Mapping[str, Any]], Any]

    def text(self, row: Mapping[str, Any]) -> str:
        value = self.get(row) if callable(self.get) else row.get(self.get)
        if value is None:
            return ""
        if isinstance(value, list | tuple):
            return ", ".join(str(v) for v in value)
        if isinstance(value, dict):
            return ", ".join(f"{k}={v}" for k, v in sorted(value.items()))
        return str(value)


def show_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def show(as_json: bool, value: Mapping[str, Any] | Sequence[Mapping[str, Any]],
         columns: Iterable[Column] = (), *, empty: str = "") -> None:
    """Print ``value`` (one object or a list of them) as JSON or as a
    table of ``columns`` (one object: every field, or ``columns``)."""
    if as_json:
        show_json(value)
        return
    from rich.console import Console
    from rich.table import Table

    # On a terminal, its width; otherwise (a pipe, a file) nothing is cut:
    # ids must survive ``| grep``.
    console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 4096)
    cols = list(columns)
    if isinstance(value, Mapping):
        table = Table(show_header=False, box=None, pad_edge=False)
        table.add_column(style="bold")
        table.add_column()
        pairs = [(c.title, c.text(value)) for c in cols] if cols else [
            (k, Column(k, k).text(value)) for k in sorted(value)]
        for title, text in pairs:
            table.add_row(title, text)
        console.print(table)
        return
    if not value:
        if empty:
            click.echo(empty)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for c in cols:
        table.add_column(c.title)
    for row in value:
        table.add_row(*(c.text(row) for c in cols))
    console.print(table)
