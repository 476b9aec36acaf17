"""Fan-out results into the data stack: a Parquet dataset or a DuckDB table, page by page.

A sink takes pages as they land, ``sink.write_page(site_id, query_id, page_number, rows)``,
from a fan-out's stream or from any callback, and ``sink.close()`` finishes it and returns
a :class:`SinkSummary`. :func:`write_parquet` and :func:`write_duckdb` drain a
``halo.fan_out(sql, sites, stream=True)`` stream into one::

    summary = await write_parquet(halo.fan_out(sql, site_ids, stream=True), "out/")

Every row gets a ``site_id`` column (and ``practice_name``, from the ``site_names`` mapping
the caller passes: the fan-out knows no names). Column types follow the values, across
every site, as :meth:`QueryJob.arrow_batches <halo_async.QueryJob.arrow_batches>` infers
them; ``types`` declares the ones inference cannot know. Memory holds the page being
written, not the result: each page is written as it comes, as one Parquet row group or
one DuckDB insert. Needs the ``arrow`` extra (``duckdb`` for the DuckDB sink).
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import urllib.parse
from collections.abc import AsyncIterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

# First: without pyarrow, _arrow's import fails in one line naming the extra to install.
from halo_async import _arrow

# isort: split
import pyarrow as pa

from halo_async.errors import ColumnTypeError, InvalidArgumentError
from halo_async.fanout import SiteFailure, SiteOutcome, SitePage

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "NAME_COLUMN",
    "SITE_COLUMN",
    "DuckDBSink",
    "ParquetSink",
    "SinkSummary",
    "write_duckdb",
    "write_parquet",
]

SITE_COLUMN = "site_id"
"""The column (and, partitioned by site, the hive partition key) naming each row's site."""
NAME_COLUMN = "practice_name"
"""The column of each row's practice name, when the caller passes ``site_names``."""

# More writers than the fan-out's default queries in flight, so that a site streaming its
# pages keeps its file; past this the least recently written is closed (and a later page
# of that site starts a new file), so that thousands of sites never exhaust descriptors.
_MAX_OPEN_FILES = 128
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@attrs.frozen
class SinkSummary:
    """What a sink wrote: rows per site, pages, the final schema, and (from the
    ``write_*`` helpers) each site's outcome. ``target`` is the directory or the table."""

    target: str
    rows_by_site: Mapping[str, int]
    pages: int
    schema: Any
    """The ``pyarrow.Schema`` of what was written, at its widest."""
    outcomes: tuple[SiteOutcome, ...] = ()

    @property
    def rows(self) -> int:
        """Rows written, across every site."""
        return sum(self.rows_by_site.values())

    @property
    def failed(self) -> tuple[SiteFailure, ...]:
        """The outcomes of the sites that failed (their rows delivered before the failure
        were written; each failure's error says where to resume)."""
        return tuple(outcome for outcome in self.outcomes if isinstance(outcome, SiteFailure))


class _Sink:
    """What both sinks share: one schema across sites, and the site columns."""

    def __init__(
        self,
        target: str,
        *,
        site_names: Mapping[str, str] | None,
        types: Mapping[str, Any] | None,
        site_column: bool,
    ) -> None:
        self._target = target
        self._names = dict(site_names) if site_names is not None else None
        self._site_column = site_column
        reserved = [SITE_COLUMN] + ([NAME_COLUMN] if self._names is not None else [])
        self._builder = _arrow.BatchBuilder(types, reserved=reserved)
        self._rows: collections.Counter[str] = collections.Counter()
        self._pages = 0
        self._closed = False

    @property
    def schema(self) -> Any:
        """The schema of the rows as written: the site columns, then the result's."""
        fields = [pa.field(SITE_COLUMN, pa.string())] if self._site_column else []
        if self._names is not None:
            fields.append(pa.field(NAME_COLUMN, pa.string()))
        return pa.schema(fields + list(self._builder.schema))

    def _page_batch(
        self, site_id: str, query_id: str, page_number: int, rows: Sequence[Mapping[str, Any]]
    ) -> Any:
        if self._closed:
            raise InvalidArgumentError(
                f"the sink for {self._target} is closed; pages go to an open sink",
                field="sink",
                value=self._target,
            )
        try:
            batch = self._builder.batch(rows, page_number)
        except ColumnTypeError as exc:
            raise ColumnTypeError(
                f"site {site_id}, query {query_id}: {exc}",
                page_number=exc.page_number,
                column=exc.column,
                expected=exc.expected,
                found=exc.found,
            ) from exc
        count = batch.num_rows
        if self._names is not None:
            name = pa.array([self._names.get(site_id)] * count, pa.string())
            batch = batch.add_column(0, NAME_COLUMN, name)
        if self._site_column:
            batch = batch.add_column(0, SITE_COLUMN, pa.array([site_id] * count, pa.string()))
        self._rows[site_id] += count
        self._pages += 1
        return batch

    def _summary(self) -> SinkSummary:
        return SinkSummary(self._target, dict(self._rows), self._pages, self.schema)


@attrs.define
class _File:
    path: Path
    schema: Any
    writer: Any = None


class ParquetSink(_Sink):
    """Writes pages into a Parquet dataset under the directory ``path``.

    One file per site and schema with ``partition_by_site`` (hive-partitioned,
    ``site_id=<guid>/part-N.parquet``, the ``site_id`` column then in the path), else one
    rolling ``part-N.parquet`` for every site. When a later page widens a column (a NULL-only
    column gets values, ints meet floats) the open file ends and a new one starts;
    ``close()`` then rewrites the few files of a narrower schema, a row group at a time, so
    that every file has the dataset's final schema and any reader reads them as one.
    ``path`` must hold no Parquet files yet: the dataset is never mixed with another.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        partition_by_site: bool = False,
        site_names: Mapping[str, str] | None = None,
        types: Mapping[str, Any] | None = None,
        compression: str = "zstd",
    ) -> None:
        self._pq = _arrow.require("pyarrow.parquet", "ParquetSink")
        root = Path(path)
        if root.exists() and (not root.is_dir() or any(root.rglob("*.parquet"))):
            raise InvalidArgumentError(
                f"path {str(root)!r} must be a new or empty directory, not one holding "
                "a file or Parquet files already",
                field="path",
                value=str(root),
            )
        super().__init__(
            str(root), site_names=site_names, types=types, site_column=not partition_by_site
        )
        root.mkdir(parents=True, exist_ok=True)
        self._root = root
        self._partitioned = partition_by_site
        self._compression = compression
        self._open: collections.OrderedDict[str, _File] = collections.OrderedDict()
        self._files: list[_File] = []

    def write_page(
        self, site_id: str, query_id: str, page_number: int, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Write one page of one site's rows (``query_id`` names the page in errors)."""
        batch = self._page_batch(site_id, query_id, page_number, rows)
        key = site_id if self._partitioned else ""
        current = self._open.get(key)
        if current is not None and not current.schema.equals(batch.schema):
            self._end(key)
            current = None
        if current is None:
            current = self._start(key, batch.schema)
        current.writer.write_batch(batch)
        self._open.move_to_end(key)
        if len(self._open) > _MAX_OPEN_FILES:
            self._end(next(iter(self._open)))

    def _start(self, key: str, schema: Any) -> _File:
        folder = self._root
        if self._partitioned:
            folder = folder / f"{SITE_COLUMN}={urllib.parse.quote(key, safe='')}"
            folder.mkdir(exist_ok=True)
        path = folder / f"part-{len(self._files)}.parquet"
        writer = self._pq.ParquetWriter(path, schema, compression=self._compression)
        opened = _File(path, schema, writer)
        self._files.append(opened)
        self._open[key] = opened
        return opened

    def _end(self, key: str) -> None:
        ended = self._open.pop(key)
        ended.writer.close()
        ended.writer = None

    def close(self) -> SinkSummary:
        """Close every file, give each the final schema, and say what was written.

        Safe to call again; a sink closed by an error keeps the files it had written."""
        if not self._closed:
            self._closed = True
            try:
                while self._open:
                    self._end(next(iter(self._open)))
            finally:
                # Any writer still open (another one's close failed) is let go of all the same.
                for leftover in self._files:
                    if leftover.writer is not None:
                        leftover.writer.close()
            self._align_files()
        return self._summary()

    def _align_files(self) -> None:
        final = self.schema  # partitioned by site, without the site_id of the path
        for written in self._files:
            if written.schema.equals(final):
                continue
            rewritten = written.path.with_suffix(".rewrite")
            with (
                self._pq.ParquetFile(written.path) as source,
                self._pq.ParquetWriter(rewritten, final, compression=self._compression) as out,
            ):
                for batch in source.iter_batches():
                    out.write_batch(_arrow.conform(batch, final))
            rewritten.replace(written.path)
            written.schema = final

    def __enter__(self) -> ParquetSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DuckDBSink(_Sink):
    """Appends pages to the DuckDB table ``table`` (created on the first page if absent).

    ``database`` is a path (a file the sink opens and closes) or an open
    ``duckdb.DuckDBPyConnection`` (the caller's: left open). A column a later page brings
    is added to the table; a widened one (a NULL-only column gets values, ints meet
    floats) is altered to the wider type.
    """

    def __init__(
        self,
        database: str | os.PathLike[str] | duckdb.DuckDBPyConnection,
        table: str = "halo_results",
        *,
        site_names: Mapping[str, str] | None = None,
        types: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(table, str) or _IDENTIFIER.fullmatch(table) is None:
            raise InvalidArgumentError(
                f"table must be a plain SQL name (letters, digits, _), got {table!r}",
                field="table",
                value=table,
            )
        module = _arrow.require("duckdb", "DuckDBSink")
        super().__init__(table, site_names=site_names, types=types, site_column=True)
        self._owned = isinstance(database, str | os.PathLike)
        self._connection: Any = (
            module.connect(os.fspath(database))
            if isinstance(database, str | os.PathLike)
            else database
        )
        self._columns: dict[str, Any] | None = None

    def write_page(
        self, site_id: str, query_id: str, page_number: int, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Append one page of one site's rows (``query_id`` names the page in errors)."""
        batch = self._page_batch(site_id, query_id, page_number, rows)
        page = pa.Table.from_batches([batch])
        connection = self._connection
        connection.register("_halo_page", page)
        try:
            if self._columns is None:
                connection.execute(
                    f'CREATE TABLE IF NOT EXISTS "{self._target}" AS '
                    "SELECT * FROM _halo_page LIMIT 0"
                )
                self._columns = {field.name: field.type for field in batch.schema}
            self._follow(batch.schema)
            connection.execute(f'INSERT INTO "{self._target}" BY NAME SELECT * FROM _halo_page')
        finally:
            connection.unregister("_halo_page")

    def _follow(self, schema: Any) -> None:
        """Add the page's new columns to the table, and widen those it widened."""
        assert self._columns is not None
        for field in schema:
            known = self._columns.get(field.name)
            if known is not None and known == field.type:
                continue
            sql_type = self._sql_type(field.type)
            column = field.name.replace('"', '""')
            change = (
                f'ADD COLUMN IF NOT EXISTS "{column}" {sql_type}'
                if known is None
                else f'ALTER COLUMN "{column}" TYPE {sql_type}'
            )
            self._connection.execute(f'ALTER TABLE "{self._target}" {change}')
            self._columns[field.name] = field.type

    def _sql_type(self, arrow_type: Any) -> str:
        empty = pa.table({"x": pa.array([], arrow_type)})
        return str(self._connection.from_arrow(empty).types[0])

    def close(self) -> SinkSummary:
        """Close the connection the sink opened (not one it was given); say what was written."""
        if not self._closed:
            self._closed = True
            if self._owned:
                self._connection.close()
        return self._summary()

    def __enter__(self) -> DuckDBSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def write_parquet(
    stream: AsyncIterable[SitePage | SiteOutcome],
    path: str | os.PathLike[str],
    *,
    partition_by_site: bool = False,
    site_names: Mapping[str, str] | None = None,
    types: Mapping[str, Any] | None = None,
    compression: str = "zstd",
) -> SinkSummary:
    """Write a fan-out's streamed pages into a Parquet dataset (see :class:`ParquetSink`);
    return the summary with every site's outcome. The files are closed on error or
    cancellation too, and the stream with them."""
    sink = ParquetSink(
        path,
        partition_by_site=partition_by_site,
        site_names=site_names,
        types=types,
        compression=compression,
    )
    return await _drain(stream, sink)


async def write_duckdb(
    stream: AsyncIterable[SitePage | SiteOutcome],
    database: str | os.PathLike[str] | duckdb.DuckDBPyConnection,
    table: str = "halo_results",
    *,
    site_names: Mapping[str, str] | None = None,
    types: Mapping[str, Any] | None = None,
) -> SinkSummary:
    """Append a fan-out's streamed pages to a DuckDB table (see :class:`DuckDBSink`);
    return the summary with every site's outcome."""
    return await _drain(stream, DuckDBSink(database, table, site_names=site_names, types=types))


async def _drain(
    stream: AsyncIterable[SitePage | SiteOutcome], sink: ParquetSink | DuckDBSink
) -> SinkSummary:
    outcomes: list[SiteOutcome] = []
    with sink:
        closing = getattr(stream, "aclose", None)
        async with contextlib.AsyncExitStack() as stack:
            if closing is not None:
                stack.push_async_callback(closing)
            async for item in stream:
                if isinstance(item, SitePage):
                    sink.write_page(item.site_id, item.query_id, item.page_number, item.rows)
                else:
                    outcomes.append(item)
    return attrs.evolve(sink.close(), outcomes=tuple(outcomes))
