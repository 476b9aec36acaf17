"""``halo sites find`` and ``halo sites status``: which Halo site is a practice, and how is it."""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.table import Table

from halo_async import models
from halo_async.cli._connection import Connection, connection_options, open_session
from halo_async.cli._errors import CommandFailed, run_async
from halo_async.cli._output import format_option, plain_console, print_wide, row_writer

__all__ = ["site_row", "sites_group"]

_PMS_HELP = "The practice management software: 'Best Practice', 'Zedmed' or 'D4w'."


def site_row(site: models.Site) -> dict[str, Any]:
    """A site as one flat row, the fields a person checks first."""
    meta = site.practice_metadata
    heartbeat = site.heartbeat_timestamp_utc
    return {
        "id": site.id,
        "practice": (meta.practice_name if meta else None) or site.name,
        "pms": None if site.pms_type is None else str(site.pms_type),
        "pms_site_id": (meta.practice_management_site_id if meta else None)
        or site.practice_management_site_id,
        "authoritative": site.authoritative,
        "status": None if site.status is None else str(site.status),
        "availability": None if site.availability is None else str(site.availability),
        "last_heartbeat": None if heartbeat is None else heartbeat.isoformat(),
        "halo_link_version": site.halo_link_version,
        "catalogues": ", ".join(
            f"{c.name} (default)" if c.is_default else str(c.name) for c in site.catalogue
        ),
    }


@click.group("sites")
def sites_group() -> None:
    """Find a practice's Halo sites and check their status."""


@sites_group.command("find")
@click.argument("pms_site_id")
@click.option("--pms", required=True, metavar="NAME", help=_PMS_HELP)
@format_option()
@connection_options
def find_command(pms_site_id: str, pms: str, output_format: str, connection: Connection) -> None:
    """List the Halo sites of a practice, by its PMS site id (Bp Site ID, Zedmed Database ID).

    One PMS id can have several sites (backups, test installs); the one to query is marked
    in the 'use' column: authoritative first, then active, then the latest heartbeat.
    """
    rows = run_async(
        _find(connection, pms_site_id, pms),
        connection.error_context({"pms_site_id": "PMS_SITE_ID"}),
    )
    writer = row_writer(output_format, sys.stdout)
    writer.write(rows)
    writer.close()


async def _find(connection: Connection, pms_site_id: str, pms: str) -> list[dict[str, Any]]:
    async with open_session(connection) as session:
        halo = session.halo
        sites = await halo.find_sites(pms_site_id, pms)
        if not sites:
            raise CommandFailed(
                f"no Halo site for {pms} site id {pms_site_id!r} (is the practice paired with "
                "your integration, and is that its PMS site id?)"
            )
        # The same choice as resolve_site; asked only when there is a choice to make.
        chosen = sites[0].id if len(sites) == 1 else (await halo.resolve_site(pms_site_id, pms)).id
    return [{"use": "*" if site.id == chosen else "", **site_row(site)} for site in sites]


@sites_group.command("status")
@click.argument("site")
@click.option("--pms", metavar="NAME", help=f"SITE is a PMS site id. {_PMS_HELP}")
@format_option(("table", "jsonl"))
@connection_options
def status_command(site: str, pms: str | None, output_format: str, connection: Connection) -> None:
    """Show a site's status: availability, last heartbeat, Halo Link version, catalogues."""
    row = run_async(
        _status(connection, site, pms),
        connection.error_context({"site_id": "SITE", "pms_site_id": "SITE"}),
    )
    if output_format == "jsonl":
        row_writer("jsonl", sys.stdout).write([row])
        return
    table = Table(show_header=False, box=None, highlight=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in row.items():
        table.add_row(key, "" if value is None else str(value))
    print_wide(plain_console(sys.stdout), table)


async def _status(connection: Connection, site: str, pms: str | None) -> dict[str, Any]:
    async with open_session(connection) as session:
        halo = session.halo
        if pms is not None:
            return site_row(await halo.resolve_site(site, pms))
        return site_row(await halo.get_site(site))
