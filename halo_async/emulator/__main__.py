"""``python -m halo_async.emulator``: serve a local Halo Cloud until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from halo_async.emulator._emulator import DEFAULT_API_KEY, DEFAULT_DATABASE_TEMPLATES, Emulator
from halo_async.emulator._executor import DEFAULT_SQL_WORKERS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m halo_async.emulator",
        description="A local emulator of the Halo Cloud API for Integrators.",
    )
    parser.add_argument("--sites", type=int, default=50, help="number of sites (default 50)")
    parser.add_argument("--seed", type=int, default=1, help="seed for sites and data (default 1)")
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port, 0 for any (default 8080)")
    parser.add_argument(
        "--latency",
        choices=("zero", "realistic"),
        default="zero",
        help="simulated phase latencies (default zero)",
    )
    parser.add_argument(
        "--page-size", type=int, default=1_000_000, help="bytes per result page (default 1 MB)"
    )
    parser.add_argument(
        "--retention", type=float, default=86_400.0, help="seconds results stay (default 24 h)"
    )
    parser.add_argument("--api-key", default=DEFAULT_API_KEY, help="the key to accept")
    parser.add_argument(
        "--database-templates",
        type=int,
        default=DEFAULT_DATABASE_TEMPLATES,
        help="generated datasets per PMS that sites share, 0 for one per site "
        f"(default {DEFAULT_DATABASE_TEMPLATES})",
    )
    parser.add_argument(
        "--statement-timeout",
        type=float,
        default=30.0,
        help="real seconds a statement may run before it fails as a timeout (default 30)",
    )
    parser.add_argument(
        "--sql-workers",
        type=int,
        default=DEFAULT_SQL_WORKERS,
        help=f"threads that run SQL (default {DEFAULT_SQL_WORKERS})",
    )
    parser.add_argument(
        "--stream-rows",
        action="store_true",
        help="/stream sends bare rows instead of the {data, parameters} envelope",
    )
    return parser


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Windows has no loop signal handlers; Ctrl-C then arrives as KeyboardInterrupt.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    async with Emulator(
        sites=args.sites,
        seed=args.seed,
        latency=args.latency,
        host=args.host,
        port=args.port,
        page_size=args.page_size,
        retention=args.retention,
        api_key=args.api_key,
        stream_rows=args.stream_rows,
        database_templates=args.database_templates or None,
        statement_timeout=args.statement_timeout,
        sql_workers=args.sql_workers,
    ) as emulator:
        print(f"Halo emulator serving {len(emulator.sites)} sites at {emulator.base_url}")
        print(f"API key: {emulator.api_key}")
        print(f"First site: {emulator.sites[0].id}" if emulator.sites else "No sites.")
        print("Press Ctrl-C to stop.", flush=True)
        await stop.wait()
    print("Halo emulator stopped.", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator until SIGINT/SIGTERM; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"halo emulator: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
