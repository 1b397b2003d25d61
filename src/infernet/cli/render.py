"""Tables and JSON for the commands' output.

Ids are printed whole, always: they are what an operator copies into the next command.
In a narrow terminal the id columns keep their width and the other columns wrap; into a
pipe or a file (where Rich would assume 80 columns) the table gets the width it needs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from infernet.cli.app import console


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, ids: Sequence[str] = (), title: str | None = None) -> None:
    """`ids`: the columns that hold ids (never cut, never wrapped)."""
    table = Table(title=title)
    for name in columns:
        if name in ids:
            width = max([len(name), *(len(str(r[columns.index(name)])) for r in rows)])
            table.add_column(name, no_wrap=True, min_width=width)
        else:
            table.add_column(name)
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    out = console
    if not console.is_terminal:
        natural = Console(width=100_000).measure(table).maximum
        out = Console(width=max(console.width, natural), force_terminal=False, no_color=True)
    out.print(table, highlight=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
