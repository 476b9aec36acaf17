"""``halo query`` (one site) and ``halo fan-out`` (many sites): rows to stdout as they land."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Sequence
from typing import IO

import attrs
import click
from rich.console import Console

from halo_async import models
from halo_async.cli._connection import Connection, connection_options, open_session
from halo_async.cli._errors import CommandFailed, describe, run_async
from halo_async.cli._output import (
    DATA_FORMATS,
    FORMATS,
    PageSink,
    check_output,
    discard,
    format_option,
    page_sink,
)
from halo_async.cli._params import PARAM_HELP, parameters_callback
from halo_async.cli._progress import FanOutMonitor, QueryMonitor
from halo_async.client import HaloClient
from halo_async.fanout import (
    FanOutEvent,
    FanOutEventKind,
    FanOutLimits,
    FanOutProgress,
    SiteOutcome,
    SitePage,
)

__all__ = ["fan_out_command", "query_command"]

# Each fan-out row says which site it came from, under a name no practice column uses.
SITE_COLUMN = "halo_site_id"

_format_help = (
    "table for reading (printed at the end); jsonl or csv stream rows as pages land; "
    "{files} write --output as pages land."
)
_output_option = click.option(
    "--output",
    type=click.Path(dir_okay=True, writable=True),
    metavar="PATH",
    help="Where --format parquet, arrow or duckdb writes (required for them).",
)
_table_option = click.option(
    "--table",
    metavar="NAME",
    help="The DuckDB table rows are appended to (default halo_results).",
)
_param_option = click.option(
    "--param",
    "parameters",
    multiple=True,
    metavar="NAME=TYPE:VALUE",
    callback=parameters_callback,
    help=PARAM_HELP,
)
_catalogue_option = click.option(
    "--catalogue", metavar="NAME", help="The database to query (default: the site's default)."
)


def _read_sql(sql: str) -> str:
    text = sys.stdin.read() if sql == "-" else sql
    if not text.strip():
        raise click.BadParameter("the SQL is empty", param_hint="SQL")
    return text


def _shows_progress(err_console: Console, output_format: str) -> bool:
    """Progress goes to stderr on a terminal, but not over rows streaming to the same one."""
    to_stdout = output_format not in ("table", *DATA_FORMATS)
    return err_console.is_terminal and not (to_stdout and sys.stdout.isatty())


@click.command("query")
@click.argument("site")
@click.argument("sql")
@click.option(
    "--pms",
    metavar="NAME",
    help="SITE is a PMS site id of this PMS ('Best Practice', 'Zedmed', 'D4w'): "
    "query its authoritative Halo site.",
)
@_param_option
@_catalogue_option
@click.option(
    "--immediate",
    is_flag=True,
    help="Run as an immediate query (one request; results up to 8 MB, 30 s). "
    "Default: an async query, its pages streamed as they are cached.",
)
@format_option(
    (*FORMATS, *DATA_FORMATS),
    help=_format_help.format(files="parquet (one file), arrow (an Arrow IPC file) and duckdb"),
)
@_output_option
@_table_option
@connection_options
def query_command(
    site: str,
    sql: str,
    pms: str | None,
    parameters: tuple[models.Parameter, ...],
    catalogue: str | None,
    immediate: bool,
    output_format: str,
    output: str | None,
    table: str | None,
    connection: Connection,
) -> None:
    """Run SQL on one SITE (a Halo GUID) and print its rows.

    SQL is the query text, or - to read it from stdin. Example:

    \b
        halo query 3f91c577-20a8-467b-8991-b96dfb90e8c6 \\
          "SELECT TOP 5 Firstname, Surname FROM BPS_Patients WHERE Surname LIKE @s" \\
          --param "@s=NVarChar:Smi%" --format jsonl
    """
    check_output(output_format, output, table)
    text = _read_sql(sql)
    if pms is None and not _is_guid(site):
        raise click.BadParameter(
            f"{site!r} is not a Halo GUID; for a PMS site id add --pms NAME", param_hint="SITE"
        )
    writer = page_sink(output_format, output, table, site_column=None)
    err_console = Console(stderr=True, soft_wrap=True)
    monitor = QueryMonitor(
        err_console, f"site {site}", enabled=_shows_progress(err_console, output_format)
    )
    run_async(
        _run_query(connection, site, pms, text, parameters, catalogue, immediate, writer, monitor),
        connection.error_context({"site_id": "SITE", "pms_site_id": "SITE"}),
    )


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


async def _run_query(
    connection: Connection,
    site: str,
    pms: str | None,
    sql: str,
    parameters: Sequence[models.Parameter],
    catalogue: str | None,
    immediate: bool,
    writer: PageSink,
    monitor: QueryMonitor,
) -> None:
    try:
        async with open_session(connection) as session:
            halo = session.halo
            with monitor:
                site_id = site
                if pms is not None:
                    monitor.set_status("resolving site")
                    site_id = (await halo.resolve_site(site, pms)).id
                if immediate:
                    monitor.set_status("running immediate query")
                    result = await halo.immediate_query(
                        site_id, sql, parameters=list(parameters) or None, catalogue=catalogue
                    )
                    rows = result.decode_rows()
                    monitor.on_rows(len(rows))
                    writer.write_page(site_id, result.id, 1, rows)
                else:
                    await _stream_async_query(
                        halo, site_id, sql, parameters, catalogue, writer, monitor
                    )
    except BaseException:
        discard(writer)
        raise
    writer.close()


async def _stream_async_query(
    halo: HaloClient,
    site_id: str,
    sql: str,
    parameters: Sequence[models.Parameter],
    catalogue: str | None,
    writer: PageSink,
    monitor: QueryMonitor,
) -> None:
    # A one-site fan-out: its events carry each status change for the progress line, and
    # its pages arrive as they land.
    def on_event(event: FanOutEvent) -> None:
        if event.kind is FanOutEventKind.STATUS and event.status is not None:
            monitor.set_status(event.status)

    async for item in halo.fan_out(
        sql,
        [site_id],
        parameters=list(parameters) or None,
        catalogue=catalogue,
        stream=True,
        coalesce_status=False,
        on_event=on_event,
    ):
        if isinstance(item, SitePage):
            monitor.on_rows(len(item.rows))
            writer.write_page(item.site_id, item.query_id, item.page_number, item.rows)
        elif item.error is not None:
            raise item.error


@click.command("fan-out")
@click.argument("sql")
@click.option(
    "--sites-file",
    type=click.File("r"),
    help="Halo GUIDs, one per line ('#' comments allowed; - for stdin). "
    "With --emulator, defaults to every queryable emulated site.",
)
@_param_option
@_catalogue_option
@click.option(
    "--max-in-flight",
    type=click.IntRange(1, 1000),
    default=64,
    show_default=True,
    help="Queries running at once across all sites.",
)
@click.option(
    "--deadline",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Give up on sites still unfinished after this long.",
)
@format_option(
    (*FORMATS, "parquet", "duckdb"),
    help=_format_help.format(files="parquet (a dataset directory) and duckdb"),
)
@_output_option
@_table_option
@connection_options
def fan_out_command(
    sql: str,
    sites_file: IO[str] | None,
    parameters: tuple[models.Parameter, ...],
    catalogue: str | None,
    max_in_flight: int,
    deadline: float | None,
    output_format: str,
    output: str | None,
    table: str | None,
    connection: Connection,
) -> None:
    """Run SQL on many sites at once and print every site's rows as they land.

    Each row gets a halo_site_id column (site_id in Parquet and DuckDB). A site that fails
    gets one line on stderr and the others carry on; the exit status is 1 when any site
    failed (its rows delivered before the failure stay written).
    """
    check_output(output_format, output, table)
    text = _read_sql(sql)
    if sites_file is None and not connection.emulator:
        raise click.UsageError("--sites-file is required (unless --emulator)")
    site_ids = read_sites_file(sites_file) if sites_file is not None else None
    writer = page_sink(output_format, output, table, site_column=SITE_COLUMN)
    err_console = Console(stderr=True, soft_wrap=True)
    run = _FanOutRun(
        connection,
        text,
        site_ids,
        parameters,
        catalogue,
        max_in_flight,
        deadline,
        writer,
        err_console,
        _shows_progress(err_console, output_format),
    )
    run_async(_run_fan_out(run), connection.error_context())


def read_sites_file(stream: IO[str]) -> list[str]:
    """The Halo GUIDs of a sites file: one per line, first field, blank lines and '#' skipped."""
    sites: list[str] = []
    name = getattr(stream, "name", "sites file")
    for number, line in enumerate(stream, start=1):
        content = line.split("#", 1)[0].replace(",", " ").split()
        if not content:
            continue
        if not _is_guid(content[0]):
            raise click.BadParameter(
                f"{name} line {number}: {content[0]!r} is not a Halo GUID",
                param_hint="--sites-file",
            )
        sites.append(str(uuid.UUID(content[0])))
    if not sites:
        raise click.BadParameter(f"{name} lists no sites", param_hint="--sites-file")
    return sites


@attrs.frozen
class _FanOutRun:
    """What ``halo fan-out`` was asked to do, and where its rows and messages go."""

    connection: Connection
    sql: str
    site_ids: list[str] | None
    parameters: Sequence[models.Parameter]
    catalogue: str | None
    max_in_flight: int
    deadline: float | None
    writer: PageSink
    err_console: Console
    show_progress: bool


async def _run_fan_out(run: _FanOutRun) -> None:
    writer, err_console = run.writer, run.err_console
    started = time.perf_counter()
    try:
        totals, failed = await _fan_out_into(run)
    except BaseException:
        discard(writer)
        raise
    writer.close()
    elapsed = time.perf_counter() - started
    summary = (
        f"{totals.total} sites: {totals.completed} ok, {totals.failed} failed; "
        f"{totals.rows} rows in {elapsed:.1f} s"
    )
    if failed:
        raise CommandFailed(f"{summary} (the failures are listed above)")
    err_console.print(f"halo: {summary}", markup=False, highlight=False)


async def _fan_out_into(run: _FanOutRun) -> tuple[FanOutProgress, list[SiteOutcome]]:
    connection, site_ids, err_console = run.connection, run.site_ids, run.err_console
    async with open_session(connection) as session:
        if site_ids is None:
            assert session.emulator is not None
            site_ids = [s.id for s in session.emulator.sites if s.authoritative and s.paired]
        failed: list[SiteOutcome] = []
        context = connection.error_context()
        # Before the first site answers (a cold emulator generates each practice's data on
        # its first query) the command would otherwise sit silent.
        err_console.print(
            f"halo: querying {len(site_ids)} sites (up to {run.max_in_flight} at once); "
            "rows are written as each site's pages land",
            markup=False,
            highlight=False,
        )
        with FanOutMonitor(err_console, len(site_ids), enabled=run.show_progress) as monitor:
            async for item in session.halo.fan_out(
                run.sql,
                site_ids,
                parameters=list(run.parameters) or None,
                catalogue=run.catalogue,
                limits=FanOutLimits(max_in_flight=run.max_in_flight),
                deadline=run.deadline,
                stream=True,
                on_event=monitor.listener("fan-out"),
            ):
                if isinstance(item, SitePage):
                    run.writer.write_page(item.site_id, item.query_id, item.page_number, item.rows)
                elif not item.ok:
                    failed.append(item)
                    assert item.error is not None
                    err_console.print(
                        f"halo: site {item.site_id} failed: "
                        + describe(item.error, context, site_named=item.site_id),
                        markup=False,
                        highlight=False,
                    )
            return monitor.totals, failed
