"""Tables for people and for scripts: the columns are described once, and rendered four ways.

- `table`: a rich table. In a terminal it fits the window; in a pipe, a log or `| tee` it is
  sized to its content, so no value is ever cut to "…".
- `markdown`: a GitHub table that pastes into an issue or a README as it is.
- `csv` and `json`: the raw values (numbers unformatted, missing values empty or null).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

FORMATS = ("table", "markdown", "csv", "json")
DASH = "—"


@dataclass(frozen=True)
class Column:
    """One column as people see it: a header and how a record becomes the cell's text."""

    header: str
    cell: Callable[[dict[str, Any]], str]
    right: bool = False  # numbers are right-aligned
    style: str | None = None  # in the terminal only
    no_wrap: bool = False  # e.g. a run's name: whole on one line even in a narrow terminal
    # a style for one cell, from its record (terminal only): e.g. a flag that should stand out
    cell_style: Callable[[dict[str, Any]], str | None] | None = None


def value(key: str, fmt: Callable[[Any], str] | None = None) -> Callable[[dict[str, Any]], str]:
    """The cell of one record field: `fmt(value)`, or the value as text (a dash when missing)."""
    if fmt is not None:
        return lambda record: fmt(record.get(key))
    return lambda record: DASH if record.get(key) is None else str(record[key])


@dataclass
class Tabular:
    """Records and how to show them; `keys` are the record fields that csv and json carry."""

    name: str
    title: str
    columns: list[Column]
    keys: list[str]
    records: list[dict[str, Any]]
    dim: Callable[[dict[str, Any]], bool] = field(default=lambda record: False)

    def cells(self) -> list[list[str]]:
        return [[column.cell(record) for column in self.columns] for record in self.records]


def rich_table(tab: Tabular) -> Table:
    table = Table(title=tab.title)
    for column in tab.columns:
        justify: Literal["right", "left"] = "right" if column.right else "left"
        table.add_column(column.header, justify=justify, style=column.style, no_wrap=column.no_wrap)
    for record, cells in zip(tab.records, tab.cells(), strict=True):
        # Cells are text, not markup: a run or file name like "a[bold].png" stays as it is.
        texts = [
            Text(cell, style=(column.cell_style and column.cell_style(record)) or "")
            for column, cell in zip(tab.columns, cells, strict=True)
        ]
        table.add_row(*texts, style="dim" if tab.dim(record) else None)
    return table


def markdown_table(tab: Tabular) -> str:
    rows = [[c.header for c in tab.columns]] + tab.cells()
    align = ["---:" if c.right else "---" for c in tab.columns]
    lines = [_md_row(rows[0]), "| " + " | ".join(align) + " |"]
    return "\n".join(lines + [_md_row(row) for row in rows[1:]]) + "\n"


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(" ".join(c.split()).replace("|", "\\|") for c in cells) + " |"


def csv_text(tab: Tabular) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=tab.keys, lineterminator="\n")
    writer.writeheader()
    for record in tab.records:
        writer.writerow({k: "" if record.get(k) is None else record[k] for k in tab.keys})
    return buffer.getvalue()


def json_records(tab: Tabular) -> list[dict[str, Any]]:
    return [{k: record.get(k) for k in tab.keys} for record in tab.records]


def emit(console: Console, tabs: list[Tabular], fmt: str) -> None:
    """Print `tabs` in `fmt`. csv takes one table (the caller picks which); json prints a list
    of records for one table, an object of lists by table name for several."""
    if fmt == "table":
        for tab in tabs:
            print_table(console, rich_table(tab))
    elif fmt == "markdown":
        parts = [f"**{tab.title}**\n\n{markdown_table(tab)}" for tab in tabs]
        print_plain(console, "\n".join(parts))
    elif fmt == "csv":
        (tab,) = tabs
        print_plain(console, csv_text(tab))
    elif fmt == "json":
        data = (
            json_records(tabs[0])
            if len(tabs) == 1
            else {tab.name: json_records(tab) for tab in tabs}
        )
        print_plain(console, json.dumps(data, indent=2) + "\n")
    else:
        raise ValueError(f"unknown table format {fmt!r}; valid: {', '.join(FORMATS)}")


def print_table(console: Console, table: Table) -> None:
    """In a terminal: fit the window. Elsewhere: as wide as the content needs, never cut."""
    if console.is_terminal:
        console.print(table)
        return
    options = console.options.update(max_width=100_000)
    width = Measurement.get(console, options, table).maximum
    saved = console.width
    console.width = max(width, saved)
    try:
        console.print(table, crop=False)
    finally:
        console.width = saved


def print_plain(console: Console, text: str) -> None:
    """Text for machines: no markup, no highlighting, no wrapping."""
    console.print(text, end="", markup=False, highlight=False, emoji=False, soft_wrap=True)
