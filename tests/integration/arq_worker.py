"""The arq worker the worker tests start as subprocesses (``python -m arq
tests.integration.arq_worker.WorkerSettings``), configured by environment variables:

- ``HALO_API_KEY``, ``HALO_BASE_URL``: the emulator (the client's own defaults);
- ``HALO_TEST_REDIS``: the Redis URL of the queue and the ledger;
- ``HALO_TEST_SINK_DIR``: where each shard's run writes its pages, one JSON line per page;
- ``HALO_TEST_STALL_AFTER``: if set, the worker stops dead after writing that many pages
  (the page written, its delivery not yet recorded), and says so in ``stalled.json``: the
  test kills it there, as a machine might die.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from arq.connections import RedisSettings

from halo_async import HaloClient, PollPolicy, RetryPolicy
from halo_async.contrib.arq import Shard, worker_settings

SINK_DIR = Path(os.environ.get("HALO_TEST_SINK_DIR", "."))
STALL_AFTER = int(os.environ.get("HALO_TEST_STALL_AFTER", "0"))
_written = 0


class JsonLinesSink:
    """One file per run of a shard; a line per page, with each row's position in it."""

    def __init__(self, shard: Shard) -> None:
        self.shard = shard
        name = f"shard-{shard.index}-try-{shard.job_try}-pid-{os.getpid()}.jsonl"
        self.file = (SINK_DIR / name).open("a", encoding="utf-8")

    async def write_page(
        self, site_id: str, query_id: str, page_number: int, rows: list[dict[str, Any]]
    ) -> None:
        global _written
        line = {"site_id": site_id, "query_id": query_id, "page": page_number, "rows": rows}
        self.file.write(json.dumps(line) + "\n")
        self.file.flush()
        _written += 1
        if STALL_AFTER and _written >= STALL_AFTER:
            stalled = {"index": self.shard.index, "site_ids": list(self.shard.site_ids)}
            (SINK_DIR / "stalled.json").write_text(json.dumps(stalled), encoding="utf-8")
            await asyncio.Event().wait()  # until the test kills this process

    def close(self) -> None:
        self.file.close()


def _client() -> HaloClient:
    return HaloClient(retry=RetryPolicy(max_attempts=6))


WorkerSettings = worker_settings(
    client=_client,
    sink=JsonLinesSink,
    poll=PollPolicy(initial_interval=0.005, max_interval=0.05),
    lease=1.0,
    redis_settings=RedisSettings.from_dsn(os.environ.get("HALO_TEST_REDIS", "redis://localhost")),
    max_jobs=1,
    poll_delay=0.05,
)
