"""``python -m benchmarks._instructions_child BASE_URL CLIENT SITES_JSON QUERIES MODE``.

Runs one client of :mod:`benchmarks.fanout` in this process, which
:mod:`benchmarks.instructions` starts under ``valgrind --tool=callgrind``: first the
fan-out's untimed warm-up sample (the first use of each code path), then, with ``MODE``
``run``, the whole workload once. The instructions of the workload alone are those of a
``run`` less those of a ``sample``. The API key comes from ``$HALO_API_KEY``, never the
command line. Prints one JSON line: the rows and requests of the workload (``run`` only).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Sequence

from benchmarks import fanout
from halo_async import PollPolicy

_STALL_S = 600.0  # under valgrind a run is ~50x slower: wide, but still an end


async def _main(base_url: str, client: str, sites: list[str], queries: int, mode: str) -> None:
    entries = tuple(site for site in sites for _ in range(queries))
    key = os.environ["HALO_API_KEY"]
    work = fanout.Workload(base_url, key, entries, queries, PollPolicy())
    sample = fanout.Workload(base_url, key, entries[: 5 * queries], queries, PollPolicy())
    await fanout.time_client(client, sample, _STALL_S)
    if mode != "run":
        print(json.dumps({}))
        return
    run = await fanout.time_client(client, work, _STALL_S)
    print(json.dumps({"rows": run.rows, "requests": run.requests, "unfinished": run.unfinished}))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the client as the arguments say."""
    base_url, client, sites_json, queries, mode = list(argv if argv is not None else sys.argv[1:])
    asyncio.run(_main(base_url, client, json.loads(sites_json), int(queries), mode))
    return 0


if __name__ == "__main__":
    sys.exit(main())
