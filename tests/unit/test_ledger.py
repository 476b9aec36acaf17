"""The ledger's backends: the same records, claims and refusals from SQLite and Redis."""

from __future__ import annotations

import asyncio
import multiprocessing
from pathlib import Path

import pytest

from halo_async import InvalidArgumentError, LedgerMismatchError
from halo_async.ledger import (
    EntryKey,
    EntryState,
    Ledger,
    LedgerEntry,
    SQLiteLedger,
    check_entry,
    open_ledger,
    query_key,
)

KEY = EntryKey("night-1", "3f5e7a10-0000-4000-8000-000000000001")
BODY = {"command": {"sql": "SELECT 1", "executionMode": "query"}, "catalogue": "Patients"}


async def test_a_claim_records_the_create_before_it_is_sent(ledger: Ledger) -> None:
    entry, mine = await ledger.claim(KEY, "q1")

    assert mine
    assert entry.state is EntryState.CREATING
    assert entry.query_id is None
    assert await ledger.get(KEY) == entry


async def test_of_two_claims_of_one_entry_exactly_one_wins(ledger: Ledger) -> None:
    results = await asyncio.gather(*(ledger.claim(KEY, "q1") for _ in range(8)))

    assert [mine for _, mine in results].count(True) == 1
    assert len({entry for entry, _ in results}) == 1


async def test_records_come_back_as_written_across_a_reopen(
    ledger: Ledger, ledger_backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from tests.conftest import open_test_ledger

    entry, _ = await ledger.claim(KEY, "q1")
    entry = await ledger.record(entry, state=EntryState.CREATED, query_id="q-id", status="queued")
    entry = await ledger.record(entry, next_page=3, rows_delivered=250, pages_delivered=2)
    other = EntryKey(KEY.run_id, KEY.site_id, occurrence=1)
    await ledger.claim(other, "q1")
    await ledger.claim(EntryKey("another-run", KEY.site_id), "q1")

    async with open_test_ledger(ledger_backend, tmp_path, request) as reopened:
        stored = await reopened.get(KEY)
        entries = await reopened.entries(KEY.run_id)

    assert stored == entry
    assert stored is not None
    assert stored.checkpoint is not None
    assert (stored.checkpoint.query_id, stored.checkpoint.next_page) == ("q-id", 3)
    assert sorted(e.key.occurrence for e in entries) == [0, 1]
    assert {e.key.run_id for e in entries} == {KEY.run_id}


async def test_a_forgotten_entry_can_be_claimed_again(ledger: Ledger) -> None:
    entry, _ = await ledger.claim(KEY, "q1")
    await ledger.record(entry, state=EntryState.UNKNOWN, error="HaloConnectionError: reset")

    again, mine = await ledger.claim(KEY, "q1")
    assert not mine
    assert again.state is EntryState.UNKNOWN

    await ledger.forget(KEY)
    assert await ledger.get(KEY) is None
    assert (await ledger.claim(KEY, "q1"))[1]


def test_an_entry_of_a_newer_version_loads_without_its_unknown_fields() -> None:
    entry = LedgerEntry(KEY, "q1", EntryState.CREATED, query_id="q")
    data = entry.to_json()[:-1] + b',"added_later":[1,2]}'

    assert LedgerEntry.from_json(KEY, data) == entry


def test_the_query_key_names_the_query_not_its_queue_time() -> None:
    same = {**BODY, "maxTimeInQueue": 60_000}
    other_sql = {**BODY, "command": {"sql": "SELECT 2", "executionMode": "query"}}
    other_catalogue = {**BODY, "catalogue": "Appointments"}

    assert query_key(BODY) == query_key(same)
    assert len({query_key(BODY), query_key(other_sql), query_key(other_catalogue)}) == 3


def test_a_run_id_reused_for_other_sql_is_refused_naming_the_run() -> None:
    entry = LedgerEntry(KEY, query_key(BODY), EntryState.CREATED, query_id="q")

    with pytest.raises(LedgerMismatchError, match="night-1") as caught:
        check_entry(entry, "another-key")
    assert isinstance(caught.value, InvalidArgumentError)
    assert caught.value.value == "night-1"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///relative/ledger.db", Path("relative/ledger.db")),
        ("sqlite:////var/lib/halo/ledger.db", Path("/var/lib/halo/ledger.db")),
        ("ledger.db", Path("ledger.db")),
    ],
)
async def test_open_ledger_reads_sqlite_urls_as_sqlalchemy_does(url: str, expected: Path) -> None:
    ledger = open_ledger(url)
    try:
        assert isinstance(ledger, SQLiteLedger)
        assert ledger.path == expected
    finally:
        await ledger.close()


async def test_open_ledger_opens_redis_from_its_url(redis_url: str) -> None:
    from halo_async.ledger import RedisLedger

    async with open_ledger(redis_url) as ledger:
        assert isinstance(ledger, RedisLedger)
        assert (await ledger.claim(KEY, "q1"))[1]


@pytest.mark.parametrize("url", ["", "sqlite://"])
def test_open_ledger_refuses_an_empty_location(url: str) -> None:
    with pytest.raises(InvalidArgumentError, match="ledger URL"):
        open_ledger(url)


def _claim_in_a_process(path: str, results: multiprocessing.Queue[bool]) -> None:
    async def claim() -> bool:
        async with SQLiteLedger(path) as ledger:
            return (await ledger.claim(KEY, "q1"))[1]

    results.put(asyncio.run(claim()))


def test_processes_sharing_one_sqlite_file_claim_an_entry_once(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[bool] = context.Queue()
    workers = [context.Process(target=_claim_in_a_process, args=(path, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    claims = [results.get(timeout=5) for _ in workers]
    results.close()
    results.join_thread()

    assert claims.count(True) == 1


async def test_a_closed_sqlite_ledger_says_so(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "l.db")
    await ledger.close()
    await ledger.close()  # twice is harmless

    with pytest.raises(RuntimeError, match="closed"):
        await ledger.get(KEY)


async def test_two_claims_in_the_same_instant_still_have_one_winner(
    ledger_backend: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import halo_async.ledger
    from tests.conftest import open_test_ledger

    monkeypatch.setattr(halo_async.ledger.time, "time", lambda: 1_000.0)
    async with (
        open_test_ledger(ledger_backend, tmp_path, request) as one,
        open_test_ledger(ledger_backend, tmp_path, request) as other,
    ):
        claims = [await one.claim(KEY, "q1"), await other.claim(KEY, "q1")]

    assert [mine for _, mine in claims] == [True, False]


async def test_closing_with_work_queued_leaves_no_connection_open(tmp_path: Path) -> None:
    ledger = SQLiteLedger(tmp_path / "l.db")
    await ledger.get(KEY)
    queued = [asyncio.ensure_future(ledger.get(KEY)) for _ in range(2)]
    await asyncio.sleep(0)
    await ledger.close()
    await asyncio.gather(*queued, return_exceptions=True)

    assert ledger._db is None
