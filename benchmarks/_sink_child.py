"""``python -m benchmarks._sink_child BASE_URL SITE SQL DIRECTORY``: a fan-out into Parquet.

Runs ``write_parquet(halo.fan_out(SQL, [SITE], stream=True), DIRECTORY)`` in a fresh process,
so that its peak RSS is this one result's alone (see :mod:`benchmarks._memory_child`, whose
reading of the peak it shares), and prints one JSON line: ``rows``, ``pages``,
``rss_before_kb``, ``max_rss_kb``, ``source`` and ``ru_maxrss_kb``. The API key comes from
``$HALO_API_KEY``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

import orjson

from benchmarks._memory_child import max_rss_kb, ru_maxrss_kb
from halo_async import HaloClient, PollPolicy
from halo_async.arrow import write_parquet

# The emulator needs seconds to page a large result: poll often, not at the default pace.
_POLL = PollPolicy(initial_interval=0.1, max_interval=0.5)


async def fan_out_to_parquet(
    base_url: str, site: str, sql: str, directory: str
) -> dict[str, int | str]:
    """Write the fan-out's pages into a Parquet dataset; report the rows and peak RSS."""
    async with HaloClient(base_url=base_url) as halo:
        before, _ = max_rss_kb()
        summary = await write_parquet(halo.fan_out(sql, [site], stream=True, poll=_POLL), directory)
    if summary.failed:
        raise RuntimeError(f"the fan-out failed: {summary.failed[0].error}")
    peak, source = max_rss_kb()
    return {
        "rows": summary.rows,
        "pages": summary.pages,
        "rss_before_kb": before,
        "max_rss_kb": peak,
        "source": source,
        "ru_maxrss_kb": ru_maxrss_kb(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fan-out named on the command line; print the figures as JSON."""
    base_url, site, sql, directory = argv if argv is not None else sys.argv[1:]
    report = asyncio.run(fan_out_to_parquet(base_url, site, sql, directory))
    print(orjson.dumps(report).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
