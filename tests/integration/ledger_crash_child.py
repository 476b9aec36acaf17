"""A fan-out process for the ledger's crash test: it streams a query across the sites into
a JSON-lines sink, with a ledger, and (when told) SIGKILLs itself at a random point.

``python ledger_crash_child.py CONFIG_JSON``, where the config gives ``base_url``, ``api_key``,
``ledger`` (a URL for :func:`halo_async.ledger.open_ledger`), ``run_id``, ``sites``, ``sql``,
``sink`` (a file appended to), ``in_flight`` (queries at once) and ``kill_after`` (the
progress event after which to die, within a few milliseconds, so that the kill lands
anywhere: mid-request, mid-record, mid-write; null to run to the end). Each sink line is
written with one ``write`` on an ``O_APPEND`` file.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from typing import Any

import orjson

from halo_async import FanOutEvent, FanOutLimits, HaloClient, PollPolicy, SitePage
from halo_async.ledger import open_ledger


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


async def main(config: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    events = 0
    kill_after = config["kill_after"]

    def on_event(_: FanOutEvent) -> None:
        nonlocal events
        events += 1
        if events == kill_after:
            loop.call_later(random.uniform(0, 0.004), _die)

    sink = os.open(config["sink"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        async with (
            HaloClient(config["api_key"], base_url=config["base_url"]) as halo,
            open_ledger(config["ledger"]) as ledger,
        ):
            async for item in halo.fan_out(
                config["sql"],
                config["sites"],
                stream=True,
                ledger=ledger,
                run_id=config["run_id"],
                limits=FanOutLimits(max_in_flight=config["in_flight"]),
                poll=PollPolicy(initial_interval=0.002, max_interval=0.02),
                on_event=on_event,
            ):
                if isinstance(item, SitePage):
                    line = {
                        "site": item.site_id,
                        "page": item.page_number,
                        "first_row": item.first_row,
                        "ids": [row["INTERNALID"] for row in item.rows],
                    }
                else:
                    line = {"site": item.site_id, "ok": item.ok, "error": repr(item.error)}
                os.write(sink, orjson.dumps(line) + b"\n")
    finally:
        os.close(sink)


if __name__ == "__main__":
    asyncio.run(main(orjson.loads(sys.argv[1])))
