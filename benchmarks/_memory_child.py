"""``python -m benchmarks._memory_child BASE_URL SITE QUERY``: stream one result, report memory.

Runs in a fresh process so that its peak RSS is this one result's alone. The API key comes
from ``$HALO_API_KEY`` (never the command line, which other users of the machine can read).
Prints one JSON line: ``rows``, ``pages``, ``rss_before_kb`` (peak RSS with the client open,
before the first row) and ``max_rss_kb`` (peak RSS at the end).
"""

from __future__ import annotations

import asyncio
import resource
import sys
from collections.abc import Sequence

import orjson

from halo_async import Checkpoint, HaloClient


def max_rss_kb() -> int:
    """This process's peak resident set size so far, in KiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # macOS counts bytes


async def stream(base_url: str, site: str, query_id: str) -> dict[str, int]:
    """Consume and discard every row of the query with ``job.rows()``."""
    rows = 0
    async with HaloClient(base_url=base_url) as halo:
        job = halo.resume(Checkpoint(site, query_id))
        before = max_rss_kb()
        async for _ in job.rows():
            rows += 1
        pages = job.checkpoint().next_page - 1
    return {"rows": rows, "pages": pages, "rss_before_kb": before, "max_rss_kb": max_rss_kb()}


def main(argv: Sequence[str] | None = None) -> int:
    """Stream the result named on the command line; print the figures as JSON."""
    base_url, site, query_id = argv if argv is not None else sys.argv[1:]
    print(orjson.dumps(asyncio.run(stream(base_url, site, query_id))).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
