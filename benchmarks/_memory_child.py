"""``python -m benchmarks._memory_child BASE_URL SITE QUERY``: stream one result, report memory.

Runs in a fresh process so that its peak RSS is this one result's alone. The API key comes
from ``$HALO_API_KEY`` (never the command line, which other users of the machine can read).
Prints one JSON line: ``rows``, ``pages``, ``rss_before_kb`` (peak RSS with the client open,
before the first row), ``max_rss_kb`` (peak RSS at the end) and ``source``, where the peak
was read.

The peak is ``VmHWM`` from ``/proc/self/status`` where there is one, and
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` elsewhere: Linux carries ``ru_maxrss`` across
``fork`` + ``execve``, so a child of a large parent would report the parent's peak (the
benchmark's own process holds the other results), while ``VmHWM`` belongs to the child's own
address space alone. ``ru_maxrss`` is printed too, as ``ru_maxrss_kb``.
"""

from __future__ import annotations

import asyncio
import resource
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson

from halo_async import Checkpoint, HaloClient

_STATUS = Path("/proc/self/status")


def ru_maxrss_kb() -> int:
    """``ru_maxrss`` in KiB (macOS counts bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def max_rss_kb() -> tuple[int, str]:
    """This address space's peak resident set size so far, in KiB, and where it was read."""
    try:
        status = _STATUS.read_text()
    except OSError:
        return ru_maxrss_kb(), "ru_maxrss"
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]), "VmHWM"
    return ru_maxrss_kb(), "ru_maxrss"


async def stream(base_url: str, site: str, query_id: str) -> dict[str, int | str]:
    """Consume and discard every row of the query with ``job.rows()``."""
    rows = 0
    async with HaloClient(base_url=base_url) as halo:
        job = halo.resume(Checkpoint(site, query_id))
        before, _ = max_rss_kb()
        async for _ in job.rows():
            rows += 1
        pages = job.checkpoint().next_page - 1
    peak, source = max_rss_kb()
    return {
        "rows": rows,
        "pages": pages,
        "rss_before_kb": before,
        "max_rss_kb": peak,
        "source": source,
        "ru_maxrss_kb": ru_maxrss_kb(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Stream the result named on the command line; print the figures as JSON."""
    base_url, site, query_id = argv if argv is not None else sys.argv[1:]
    print(orjson.dumps(asyncio.run(stream(base_url, site, query_id))).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
