"""The ledger's crash test: a 100-site fan-out whose process is SIGKILLed at random points
20 times, restarted with the same run id each time, then run to the end. Checked against
the emulator's own records: no (run, site) was created twice, and every row of every
successful site reached the sink once (by its position), in order."""

from __future__ import annotations

import asyncio
import random
import signal
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from halo_async import HaloClient
from halo_async.emulator import Emulator
from halo_async.ledger import EntryState, open_ledger
from tests.support import bp_sites

CHILD = Path(__file__).with_name("ledger_crash_child.py")
SQL = "SELECT INTERNALID FROM PATIENTS ORDER BY INTERNALID"
RUN = "crash-test"
KILLS = 20
IN_FLIGHT = 16
CHILD_TIMEOUT_S = 120.0

pytestmark = pytest.mark.halo_emulator(sites=bp_sites(100, patients=24), seed=11, page_size=300)


async def run_child(config: dict[str, Any]) -> int:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD),
        orjson.dumps(config).decode(),
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(CHILD_TIMEOUT_S):
            _, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    if process.returncode not in (0, -signal.SIGKILL):
        pytest.fail(f"the fan-out process failed ({process.returncode}):\n{stderr.decode()}")
    return process.returncode


def read_sink(path: Path) -> tuple[dict[str, list[tuple[int, int, int]]], list[dict[str, Any]]]:
    """Each site's rows as (page, row, id) in delivery order, and the outcome lines."""
    rows: defaultdict[str, list[tuple[int, int, int]]] = defaultdict(list)
    outcomes = []
    for line in path.read_bytes().splitlines():
        item = orjson.loads(line)
        if "ids" in item:
            for offset, row_id in enumerate(item["ids"]):
                rows[item["site"]].append((item["page"], item["first_row"] + offset, row_id))
        else:
            outcomes.append(item)
    return rows, outcomes


def delivered_once(deliveries: list[tuple[int, int, int]]) -> list[int]:
    """The ids a position-keeping sink ends with, checking that what came again was the
    same row at the same position, and that new positions only ever moved forward."""
    kept: dict[tuple[int, int], int] = {}
    for page, row, row_id in deliveries:
        position = (page, row)
        if position in kept:
            assert kept[position] == row_id, f"position {position} changed its row"
            continue
        assert not kept or position > max(kept), f"position {position} came out of order"
        kept[position] = row_id
    return list(kept.values())


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_twenty_kills_never_create_a_query_twice_nor_lose_or_repeat_a_row(
    halo_emulator: Emulator,
    halo_client: HaloClient,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    backend: str,
) -> None:
    ledger_url = (
        f"sqlite:///{tmp_path / 'ledger.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("redis_url")
    )
    sink = tmp_path / "sink.jsonl"
    sites = [site.id for site in halo_emulator.sites]
    expected = {}
    for site in sites:
        result = await halo_client.immediate_query(site, SQL)
        expected[site] = [row["INTERNALID"] for row in result.decode_rows()]
    config = {
        "base_url": halo_emulator.base_url,
        "api_key": halo_emulator.api_key,
        "ledger": ledger_url,
        "run_id": RUN,
        "sites": sites,
        "sql": SQL,
        "sink": str(sink),
        "in_flight": IN_FLIGHT,
    }
    chance = random.Random(20261202)
    kills = 0
    for _ in range(KILLS):
        code = await run_child({**config, "kill_after": chance.randint(1, 60)})
        kills += code == -signal.SIGKILL
    assert await run_child({**config, "kill_after": None}) == 0

    creates = Counter(query.site_id for query in halo_emulator.queries(mode="async"))
    assert max(creates.values()) == 1, "a (run, site) was created twice"
    async with open_ledger(ledger_url) as ledger:
        entries = {entry.key.site_id: entry for entry in await ledger.entries(RUN)}
        assert sorted(entries) == sorted(sites), "a site was never run"
        states = Counter(entry.state for entry in entries.values())
        assert set(states) <= {EntryState.SUCCEEDED, EntryState.UNKNOWN}, states
        # A kill between sending a create and recording its answer leaves its site unknown:
        # at most the creates in flight at once, per kill.
        assert states[EntryState.UNKNOWN] <= kills * IN_FLIGHT
        # Someone checks each unknown site (here, in the emulator's records), settles it, and
        # the run goes on to the end.
        for site, entry in entries.items():
            if entry.state is EntryState.UNKNOWN:
                assert site not in read_sink(sink)[0], "rows of a site whose create is unknown"
                found = [query.id for query in halo_emulator.queries(site, mode="async")]
                await ledger.resolve(entry.key, found[0] if found else None)
    assert await run_child({**config, "kill_after": None}) == 0

    creates = Counter(query.site_id for query in halo_emulator.queries(mode="async"))
    assert creates == dict.fromkeys(sites, 1), "a site was created twice, or never"
    async with open_ledger(ledger_url) as ledger:
        final = {entry.key.site_id: entry.state for entry in await ledger.entries(RUN)}
    assert final == dict.fromkeys(sites, EntryState.SUCCEEDED)
    rows, _ = read_sink(sink)
    for site in sites:
        assert delivered_once(rows[site]) == expected[site], f"site {site}"
    assert kills >= KILLS // 2, f"only {kills} of the runs were killed before they finished"
