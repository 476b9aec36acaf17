"""``halo emulator``: serve the local Halo emulator, or list the sites it would serve."""

from __future__ import annotations

import sys
from typing import Any

import click

from halo_async.cli._connection import emulator_missing
from halo_async.cli._errors import run_async
from halo_async.cli._output import format_option, row_writer

__all__ = ["COLD_START_NOTICE", "emulator_group"]

COLD_START_NOTICE = (
    "halo emulator: each site's practice database is generated on the first query to it, "
    "so the first queries (or fan-out) wait a few seconds while that happens"
)

_sites_option = click.option(
    "--sites", type=click.IntRange(0, 10_000), default=50, show_default=True, help="Sites."
)
_seed_option = click.option(
    "--seed",
    type=int,
    default=1,
    show_default=True,
    help="Seed of the sites and their data: the same seed gives the same sites.",
)


@click.group("emulator")
def emulator_group() -> None:
    """The local emulator of Halo Cloud: develop and test without a Halo key."""


@emulator_group.command("serve")
@_sites_option
@_seed_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="0: any."
)
@click.option(
    "--latency",
    type=click.Choice(("zero", "realistic")),
    default="zero",
    show_default=True,
    help="Simulated latency of each query phase.",
)
def serve_command(sites: int, seed: int, host: str, port: int, latency: str) -> None:
    """Serve the emulator over HTTP until Ctrl-C (the same as python -m halo_async.emulator).

    Point a client at the printed base URL with the printed API key, e.g.
    HALO_BASE_URL=http://127.0.0.1:8080 HALO_API_KEY=... halo sites status SITE.
    """
    try:
        from halo_async.emulator.__main__ import main as serve_main
    except ImportError as exc:
        raise emulator_missing(exc) from exc
    click.echo(COLD_START_NOTICE, err=True)
    argv = ["--sites", str(sites), "--seed", str(seed), "--host", host]
    argv += ["--port", str(port), "--latency", latency]
    sys.exit(serve_main(argv))


@emulator_group.command("sites")
@_sites_option
@_seed_option
@click.option(
    "--ids",
    is_flag=True,
    help="Print only the GUIDs of the sites that can be queried (a --sites-file for fan-out).",
)
@format_option()
def sites_command(sites: int, seed: int, ids: bool, output_format: str) -> None:
    """List the sites an emulator with this --sites and --seed serves (nothing is started)."""
    rows = run_async(_emulated_sites(sites, seed))
    if ids:
        for row in rows:
            if row["authoritative"]:
                click.echo(row["id"])
        return
    writer = row_writer(output_format, sys.stdout)
    writer.write(rows)
    writer.close()


async def _emulated_sites(count: int, seed: int) -> list[dict[str, Any]]:
    try:
        from halo_async.emulator import Emulator
    except ImportError as exc:
        raise emulator_missing(exc) from exc
    emulator = Emulator(sites=count, seed=seed)
    try:
        return [
            {
                "id": site.id,
                "practice": site.practice_name,
                "pms": site.pms_type,
                "pms_site_id": site.pms_site_id,
                "authoritative": site.authoritative,
                "availability": site.availability,
            }
            for site in emulator.sites
        ]
    finally:
        await emulator.close()
