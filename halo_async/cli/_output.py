"""Result rows on stdout: a table for people, JSON lines or CSV for programs.

JSON lines and CSV are written as each page of rows arrives and flushed, so a pipe sees rows
while the query is still uploading and memory holds one page at a time. A table has to see
every row to size its columns, so it collects them and prints at the end.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Any, Protocol

import click
import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = ["FORMATS", "RowWriter", "format_option", "plain_console", "print_wide", "row_writer"]

FORMATS = ("table", "jsonl", "csv")


def format_option(
    choices: tuple[str, ...] = FORMATS, help: str = "Output format."
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``--format`` option of every command that prints rows."""
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(choices),
        default="table",
        show_default=True,
        help=help,
    )


# Wide enough that a table of GUIDs and practice names is never wrapped in a pipe or a log.
_PLAIN_MIN_WIDTH = 160


class RowWriter(Protocol):
    """Writes result rows to a stream."""

    def write(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Write (or collect) some rows."""
        ...

    def close(self) -> None:
        """Finish the output (a table prints here)."""
        ...


class JsonLinesWriter:
    """One JSON object per row and line, flushed per batch."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Write the rows, then flush so that a pipe sees them now."""
        for row in rows:
            self._stream.write(orjson.dumps(row, default=str).decode())
            self._stream.write("\n")
        self._stream.flush()

    def close(self) -> None:
        """Nothing is held back."""
        self._stream.flush()


class CsvWriter:
    """CSV with a header taken from the first row's columns, flushed per batch.

    A later row with columns the header lacks (a fan-out across sites whose results differ)
    cannot fit the CSV: its extra columns are left out, and stderr says so once.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._writer: csv.DictWriter[str] | None = None
        self._warned = False

    def write(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Write the rows (the header before the first), then flush."""
        for row in rows:
            if self._writer is None:
                self._writer = csv.DictWriter(
                    self._stream, fieldnames=list(row), extrasaction="ignore", lineterminator="\n"
                )
                self._writer.writeheader()
            extra = [column for column in row if column not in self._writer.fieldnames]
            if extra and not self._warned:
                self._warned = True
                click.echo(
                    f"halo: warning: CSV columns are those of the first row; "
                    f"columns {extra} of later rows are left out (use --format jsonl)",
                    err=True,
                )
            self._writer.writerow({key: _csv_value(value) for key, value in row.items()})
        self._stream.flush()

    def close(self) -> None:
        """Nothing is held back."""
        self._stream.flush()


def _csv_value(value: Any) -> Any:
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return value


class TableWriter:
    """Collects the rows and prints them as one table, with the row count under it."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._rows: list[Mapping[str, Any]] = []

    def write(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Collect the rows."""
        self._rows.extend(rows)

    def close(self) -> None:
        """Print the table."""
        if not self._rows:
            self._console.print("(no rows)")
            return
        columns: dict[str, None] = {}
        for row in self._rows:
            columns.update(dict.fromkeys(row))
        table = Table(*columns, show_lines=False, highlight=False)
        for row in self._rows:
            table.add_row(*(_cell(row.get(column)) for column in columns))
        print_wide(self._console, table)
        noun = "row" if len(self._rows) == 1 else "rows"
        self._console.print(f"{len(self._rows)} {noun}")


def _cell(value: Any) -> Text:
    if value is None:
        return Text("NULL", style="dim")
    if isinstance(value, dict | list):
        return Text(orjson.dumps(value).decode())
    return Text(str(value))


def plain_console(stream: IO[str]) -> Console:
    """A rich console on ``stream``: colours and live display only on a terminal."""
    return Console(file=stream, highlight=False, soft_wrap=False)


def print_wide(console: Console, renderable: Any) -> None:
    """Print ``renderable``; off a terminal, as wide as it needs so nothing is cut."""
    if not console.is_terminal:
        needed = console.measure(renderable, options=console.options.update_width(10_000))
        console.width = max(_PLAIN_MIN_WIDTH, needed.maximum)
    console.print(renderable)


def row_writer(output_format: str, stream: IO[str]) -> RowWriter:
    """The writer for ``--format``."""
    if output_format == "jsonl":
        return JsonLinesWriter(stream)
    if output_format == "csv":
        return CsvWriter(stream)
    return TableWriter(plain_console(stream))
