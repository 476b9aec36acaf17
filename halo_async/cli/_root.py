"""The ``halo`` command group and its entry point."""

from __future__ import annotations

from collections.abc import Sequence

import click

from halo_async import __version__
from halo_async.cli._demo import demo_command
from halo_async.cli._emulator_cmd import emulator_group
from halo_async.cli._query import fan_out_command, query_command
from halo_async.cli._sites import sites_group

__all__ = ["cli", "main"]


@click.group("halo", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="halo")
def cli() -> None:
    """halo: the Halo Cloud API for Integrators from the command line.

    Start with `halo demo` (no key needed). Commands that talk to Halo take the API key from
    $HALO_API_KEY or --api-key, or run against an embedded emulator with --emulator.
    """


cli.add_command(demo_command)
cli.add_command(query_command)
cli.add_command(fan_out_command)
cli.add_command(sites_group)
cli.add_command(emulator_group)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``halo`` command (``argv`` defaults to the process's arguments)."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="halo")
