"""``python -m benchmarks._launcher``: the emulator with a per-page upload latency.

``python -m halo_async.emulator`` offers only the ``zero`` and ``realistic`` latency presets;
the time-to-first-row benchmark needs pages that turn ``cached`` one by one at a known pace
and nothing else slowed down. This serves the same :class:`~halo_async.emulator.Emulator`
through its in-process API and prints the same banner as the emulator's command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from halo_async.emulator import Emulator, Latency


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._launcher", description=__doc__)
    parser.add_argument("--sites", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--page-size", type=int, default=1_000_000)
    parser.add_argument(
        "--page-upload", type=float, default=0.05, help="seconds per result page upload"
    )
    return parser


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    async with Emulator(
        sites=args.sites,
        seed=args.seed,
        port=args.port,
        page_size=args.page_size,
        latency=Latency(page_upload=args.page_upload),
    ) as emulator:
        print(f"Halo emulator serving {len(emulator.sites)} sites at {emulator.base_url}")
        print(f"API key: {emulator.api_key}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM."""
    asyncio.run(_serve(_parser().parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
