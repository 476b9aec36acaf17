"""Result rows on stdout: a table for people, JSON lines or CSV for programs; or data files.

JSON lines and CSV are written as each page of rows arrives and flushed, so a pipe sees rows
while the query is still uploading and memory holds one page at a time. A table has to see
every row to size its columns, so it collects them and prints at the end. Parquet, Arrow
IPC and DuckDB (the arrow and duckdb extras) go to ``--output``, a page at a time.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

import click
import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = [
    "DATA_FORMATS",
    "FORMATS",
    "PageSink",
    "RowWriter",
    "check_output",
    "discard",
    "format_option",
    "page_sink",
    "plain_console",
    "print_wide",
    "row_writer",
]

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


# -- data files: Parquet, Arrow IPC, DuckDB ------------------------------------------------

DATA_FORMATS = ("parquet", "arrow", "duckdb")
"""Formats written to ``--output`` rather than stdout, each as pages land."""


class PageSink(Protocol):
    """Where the pages of rows go: a row writer on stdout, or a data file."""

    def write_page(
        self, site_id: str, query_id: str, page_number: int, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Write one page of one site's rows."""
        ...

    def close(self) -> object:
        """Finish the output."""
        ...


class RowPages:
    """Pages into a :class:`RowWriter`, each row led by its site's column if one is named."""

    def __init__(self, writer: RowWriter, site_column: str | None = None) -> None:
        self._writer = writer
        self._site_column = site_column

    def write_page(
        self, site_id: str, query_id: str, page_number: int, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Write the page's rows."""
        column = self._site_column
        self._writer.write(rows if column is None else ({column: site_id, **row} for row in rows))

    def close(self) -> None:
        """Finish the writer (a table prints here)."""
        self._writer.close()


class ArrowFile:
    """One query's pages into one Parquet or Arrow IPC file, a page at a time.

    The file is written under a temporary name and renamed at the end. When a page widens
    a column, what was written is copied into a file of the wider schema, which then carries
    on: the file has one schema, and memory holds one page.
    """

    def __init__(self, path: str, output_format: str) -> None:
        from halo_async import _arrow

        self._arrow = _arrow
        self._pa = _arrow.require("pyarrow", f"--format {output_format}")
        self._pq = _arrow.require("pyarrow.parquet", f"--format {output_format}")
        self._builder = _arrow.BatchBuilder()
        self._path = Path(path)
        self._parquet = output_format == "parquet"
        self._writer: Any = None
        self._schema: Any = None
        self._parts = 0

    def write_page(
        self, site_id: str, query_id: str, page_number: int, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Write the page as one row group (Parquet) or record batch (Arrow)."""
        batch = self._builder.batch(rows, page_number)
        if self._writer is None or not batch.schema.equals(self._schema):
            self._restart(batch.schema)
        self._writer.write_batch(batch)

    def _part(self, number: int) -> Path:
        return self._path.with_name(f".{self._path.name}.{number}.part")

    def _open(self, path: Path, schema: Any) -> Any:
        if self._parquet:
            return self._pq.ParquetWriter(path, schema)
        return self._pa.ipc.new_file(str(path), schema)

    def _restart(self, schema: Any) -> None:
        old = self._part(self._parts) if self._writer is not None else None
        if self._writer is not None:
            self._writer.close()
            self._parts += 1
        self._writer, self._schema = self._open(self._part(self._parts), schema), schema
        if old is not None:
            for batch in self._read(old):
                self._writer.write_batch(self._arrow.conform(batch, schema))
            old.unlink()

    def _read(self, path: Path) -> Iterator[Any]:
        if self._parquet:
            with self._pq.ParquetFile(path) as source:
                yield from source.iter_batches()
            return
        with self._pa.memory_map(str(path)) as source:
            reader = self._pa.ipc.open_file(source)
            for index in range(reader.num_record_batches):
                yield reader.get_batch(index)

    def discard(self) -> None:
        """Close the file and remove it: the query failed."""
        if self._writer is not None:
            self._writer.close()
            self._part(self._parts).unlink(missing_ok=True)

    def close(self) -> None:
        """Finish the file under its name (an empty result still gets one)."""
        if self._writer is None:
            self._restart(self._builder.schema)
        self._writer.close()
        self._part(self._parts).replace(self._path)


def page_sink(
    output_format: str, output: str | None, table: str | None, *, site_column: str | None
) -> PageSink:
    """The sink for ``--format``: stdout's row writer, or a data file at ``--output``.

    With a site column (a fan-out) Parquet is a dataset directory with a ``site_id``
    column; without (one query) it is one file.
    """
    if output_format not in DATA_FORMATS:
        return RowPages(row_writer(output_format, sys.stdout), site_column)
    assert output is not None
    from halo_async import arrow

    if output_format == "duckdb":
        return arrow.DuckDBSink(output, table or "halo_results")
    if output_format == "parquet" and site_column is not None:
        return arrow.ParquetSink(output)
    return ArrowFile(output, output_format)


def check_output(output_format: str, output: str | None, table: str | None) -> None:
    """``--output`` is given exactly for the data formats, ``--table`` only for duckdb."""
    if output_format in DATA_FORMATS and output is None:
        raise click.UsageError(f"--format {output_format} writes a file: add --output PATH")
    if output_format not in DATA_FORMATS and output is not None:
        raise click.UsageError(
            f"--output is for --format {', '.join(DATA_FORMATS)}; {output_format} goes to stdout"
        )
    if table is not None and output_format != "duckdb":
        raise click.UsageError("--table is for --format duckdb")


def discard(sink: PageSink) -> None:
    """After a failure: close a data sink, keeping what it wrote (a fan-out's sites that
    succeeded stay written), but leave no half-written single file under its name and print
    no partial table."""
    if isinstance(sink, ArrowFile):
        sink.discard()
    elif not isinstance(sink, RowPages):
        sink.close()
