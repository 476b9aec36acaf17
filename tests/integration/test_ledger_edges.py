"""The ledger at its edges, against the emulator (each on SQLite and on Redis): a consumer
that stops while creates are in flight, a closed client, a rerun in the other mode, the
job's other exits, and what a finished entry gives back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from halo_async import HaloClient
from halo_async.emulator import Emulator
from halo_async.errors import ClientClosedError, HaloConnectionError, NotFoundError
from halo_async.fanout import FanOutEvent
from halo_async.ledger import EntryKey, EntryState, Ledger
from tests.support import FAST_POLL, bp_sites

ORDERED = "SELECT INTERNALID FROM PATIENTS ORDER BY INTERNALID"
RUN = "edges"

pytestmark = pytest.mark.halo_emulator(sites=bp_sites(4, patients=90), seed=3, page_size=600)


async def all_rows(halo: HaloClient, site: str) -> list[dict[str, Any]]:
    return (await halo.immediate_query(site, ORDERED)).decode_rows()


async def test_a_consumer_that_stops_waits_for_the_creates_in_flight_to_be_recorded(
    halo_emulator: Emulator,
    halo_client: HaloClient,
    ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sites = [site.id for site in halo_emulator.sites]
    create = halo_client._create_async_query
    answered = asyncio.Event()

    async def slow_answer(site_id: str, body: dict[str, Any], **_: Any) -> Any:
        query = await create(site_id, body)  # Halo created it...
        if site_id != sites[0]:
            await answered.wait()  # ...and its answer is still on its way
        return query

    monkeypatch.setattr(halo_client, "_create_async_query", slow_answer)
    stream = halo_client.fan_out(ORDERED, sites, stream=True, ledger=ledger, run_id=RUN)
    async for _ in stream:
        break
    closing = asyncio.ensure_future(stream.aclose())
    await asyncio.sleep(0.05)
    assert not closing.done(), "the stream closed under creates still in flight"
    answered.set()
    await closing

    entries = {entry.key.site_id: entry for entry in await ledger.entries(RUN)}
    assert {entry.state for entry in entries.values()} <= {
        EntryState.CREATED,
        EntryState.SUCCEEDED,
    }
    assert all(entry.query_id for entry in entries.values())


async def test_a_closed_client_records_nothing_and_sends_nothing(
    halo_emulator: Emulator, halo_client: HaloClient, ledger: Ledger
) -> None:
    sites = [site.id for site in halo_emulator.sites]
    await halo_client.close()

    outcomes = [o async for o in halo_client.fan_out(ORDERED, sites, ledger=ledger, run_id=RUN)]

    assert {type(outcome.error) for outcome in outcomes} == {ClientClosedError}
    assert await ledger.entries(RUN) == [], "a create that was never sent is not unknown"
    assert halo_emulator.queries(mode="async") == []


async def test_a_rerun_without_stream_delivers_every_row_of_a_resumed_site(
    halo_emulator: Emulator, halo_client: HaloClient, ledger: Ledger
) -> None:
    site = halo_emulator.sites[0].id
    taken = 0
    async for _ in halo_client.fan_out(
        ORDERED, [site], stream=True, ledger=ledger, run_id=RUN, poll=FAST_POLL
    ):
        taken += 1
        if taken == 2:  # the first page is recorded once the consumer asks for more
            break
    (entry,) = await ledger.entries(RUN)
    assert entry.next_page == 2

    outcomes = [o async for o in halo_client.fan_out(ORDERED, [site], ledger=ledger, run_id=RUN)]

    (outcome,) = outcomes
    assert outcome.ok
    assert outcome.rows == await all_rows(halo_client, site)
    assert len(halo_emulator.queries(mode="async")) == 1


async def test_a_rerun_counts_the_sites_an_earlier_run_finished(
    halo_emulator: Emulator, halo_client: HaloClient, ledger: Ledger
) -> None:
    sites = [site.id for site in halo_emulator.sites]
    async for _ in halo_client.fan_out(
        ORDERED, sites[:2], stream=True, ledger=ledger, run_id=RUN, poll=FAST_POLL
    ):
        pass
    events: list[FanOutEvent] = []
    async for _ in halo_client.fan_out(
        ORDERED,
        sites,
        stream=True,
        ledger=ledger,
        run_id=RUN,
        poll=FAST_POLL,
        on_event=events.append,
    ):
        pass

    last = events[-1].progress
    assert (last.total, last.done, last.completed) == (4, 4, 4)


async def test_fetch_all_records_its_rows_only_once_it_returns_them(
    halo_emulator: Emulator,
    halo_client: HaloClient,
    ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    site = halo_emulator.sites[0].id
    fetch = halo_client._result_page_answer

    async def third_page_fails(site_id: str, query_id: str, number: int, **kwargs: Any) -> Any:
        if number == 3:
            raise HaloConnectionError("no answer", method="GET", path="/page")
        return await fetch(site_id, query_id, number, **kwargs)

    job = await halo_client.submit(site, ORDERED, ledger=ledger, run_id=RUN, poll=FAST_POLL)
    monkeypatch.setattr(halo_client, "_result_page_answer", third_page_fails)
    with pytest.raises(HaloConnectionError):
        await job.fetch_all()  # the caller got no rows at all
    monkeypatch.setattr(halo_client, "_result_page_answer", fetch)

    again = await halo_client.submit(site, ORDERED, ledger=ledger, run_id=RUN, poll=FAST_POLL)
    assert await again.fetch_all() == await all_rows(halo_client, site)


async def test_to_arrow_records_the_rows_it_took(
    halo_emulator: Emulator, halo_client: HaloClient, ledger: Ledger
) -> None:
    site = halo_emulator.sites[0].id
    job = await halo_client.submit(site, ORDERED, ledger=ledger, run_id=RUN, poll=FAST_POLL)
    table = await job.to_arrow()

    entry = await ledger.get(EntryKey(RUN, site))
    assert entry is not None
    assert entry.state is EntryState.SUCCEEDED
    assert entry.rows_delivered == table.num_rows == 90


async def test_a_finished_entry_resubmitted_asks_halo_nothing_and_stays_finished(
    halo_emulator: Emulator,
    halo_client: HaloClient,
    ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    site = halo_emulator.sites[0].id
    job = await halo_client.submit(site, ORDERED, ledger=ledger, run_id=RUN, poll=FAST_POLL)
    await job.fetch_all()

    async def gone(*_: Any, **__: Any) -> Any:
        raise NotFoundError("the query is gone", status=404, method="GET", path="/query")

    monkeypatch.setattr(halo_client, "_get_query", gone)
    requests = sum(halo_emulator.stats.requests.values())
    again = await halo_client.submit(site, ORDERED, ledger=ledger, run_id=RUN, poll=FAST_POLL)

    assert [row async for row in again.rows()] == []
    assert sum(halo_emulator.stats.requests.values()) == requests
    entry = await ledger.get(EntryKey(RUN, site))
    assert entry is not None
    assert entry.state is EntryState.SUCCEEDED
