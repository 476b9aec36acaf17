"""A fan-out with a ledger, against the emulator: a restart with the same run id resumes
each site's query by its id and never pays twice; each test runs on SQLite and on Redis."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from halo_async import (
    FanOutEvent,
    FanOutLimits,
    HaloClient,
    InvalidArgumentError,
    LedgerMismatchError,
    SiteOutcome,
    SitePage,
    SubmissionOutcomeUnknownError,
)
from halo_async.client import _async_body
from halo_async.emulator import Emulator
from halo_async.errors import FanOutDeadlineError
from halo_async.fanout import FanOutEventKind
from halo_async.ledger import EntryKey, EntryState, Ledger, SQLiteLedger, query_key
from tests.support import FAST_POLL, bp_sites

ORDERED = "SELECT INTERNALID FROM PATIENTS ORDER BY INTERNALID"
RUN = "nightly-2026-12-02"

pytestmark = pytest.mark.halo_emulator(sites=bp_sites(4, patients=90), seed=3, page_size=600)


def async_creates(emulator: Emulator) -> dict[str, int]:
    """Async queries the emulator created per site: what Halo would bill."""
    counts: defaultdict[str, int] = defaultdict(int)
    for query in emulator.queries(mode="async"):
        counts[query.site_id] += 1
    return dict(counts)


async def expected_ids(halo: HaloClient, site_ids: list[str]) -> dict[str, list[int]]:
    expected = {}
    for site in site_ids:
        result = await halo.immediate_query(site, ORDERED)
        expected[site] = [row["INTERNALID"] for row in result.decode_rows()]
    return expected


class PositionSink:
    """What a sink that survives restarts keeps: each row under its (site, page, row)
    position, so that what a restart delivers again is written once."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[tuple[int, int], int]] = defaultdict(dict)
        self.deliveries = 0
        self.outcomes: list[SiteOutcome] = []

    def take(self, item: SitePage | SiteOutcome) -> None:
        if isinstance(item, SitePage):
            self.deliveries += len(item.rows)
            site = self.rows[item.site_id]
            for offset, row in enumerate(item.rows):
                site.setdefault((item.page_number, item.first_row + offset), row["INTERNALID"])
        else:
            self.outcomes.append(item)

    def ids(self, site_id: str) -> list[int]:
        site = self.rows[site_id]
        return [site[position] for position in sorted(site)]


async def run_to_end(
    halo: HaloClient, sites: list[str], ledger: Ledger, sink: PositionSink, **kwargs: Any
) -> list[FanOutEvent]:
    events: list[FanOutEvent] = []
    async for item in halo.fan_out(
        ORDERED,
        sites,
        stream=True,
        ledger=ledger,
        run_id=RUN,
        poll=FAST_POLL,
        on_event=events.append,
        **kwargs,
    ):
        sink.take(item)
    return events


async def test_a_finished_run_sends_nothing_when_run_again(
    halo_emulator: Emulator, halo_client: HaloClient, ledger: Ledger
) -> None:
    sites = [site.id for site in halo_emulator.sites]
    expected = await expected_ids(halo_client, sites)
    first = PositionSink()
    await run_to_end(halo_client, sites, ledger, first)
    requests = sum(halo_emulator.stats.requests.values())

    again = PositionSink()
    await run_to_end(halo_client, sites, ledger, again)

    assert all(outcome.ok for outcome in first.outcomes)
    assert len(first.outcomes) == 4
    assert {site: first.ids(site) for site in sites} == expected
    assert again.outcomes == []
    assert again.deliveries == 0
    assert sum(halo_emulator.stats.requests.values()) == requests, "the rerun sent requests"
    entries = {entry.key.site_id: entry for entry in await ledger.entries(RUN)}
    assert {entry.state for entry in entries.values()} == {EntryState.SUCCEEDED}
    assert {site: entries[site].rows_delivered for site in sites} == {
        site: len(ids) for site, ids in expected.items()
    }
    assert async_creates(halo_emulator) == dict.fromkeys(sites, 1)


async def test_a_consumer_that_stops_early_resumes_each_query_where_delivery_stood(
    halo_emulator: Emulator, halo_client: HaloClient, ledger: Ledger
) -> None:
    sites = [site.id for site in halo_emulator.sites]
    expected = await expected_ids(halo_client, sites)
    sink = PositionSink()
    taken = 0
    async for item in halo_client.fan_out(
        ORDERED, sites, stream=True, ledger=ledger, run_id=RUN, poll=FAST_POLL
    ):
        sink.take(item)
        taken += isinstance(item, SitePage)
        if taken == 3:
            break  # the process stops here, say; the third page was never recorded
    resumed = await run_to_end(halo_client, sites, ledger, sink)

    assert {site: sink.ids(site) for site in sites} == expected
    assert async_creates(halo_emulator) == dict.fromkeys(sites, 1), "a query was created twice"
    assert any(event.kind is FanOutEventKind.RESUMED for event in resumed)
    # At least once, and no more than the page the consumer had but had not acknowledged.
    total = sum(len(ids) for ids in expected.values())
    assert total <= sink.deliveries <= total + 200


async def test_sites_cut_off_by_a_deadline_are_resumed_by_the_next_run(
    halo_emulator: Emulator, halo_client: HaloClient, ledger: Ledger
) -> None:
    sites = [site.id for site in halo_emulator.sites]
    expected = await expected_ids(halo_client, sites)
    sink = PositionSink()
    # Pages slower than the deadline (short, so that the emulator's close does not wait).
    halo_emulator.faults.set("getResultPage", latency=0.6)
    await run_to_end(halo_client, sites, ledger, sink, deadline=0.2)
    halo_emulator.faults.clear()

    cut_off = [outcome for outcome in sink.outcomes if not outcome.ok]
    assert cut_off
    assert all(isinstance(o.error, FanOutDeadlineError) for o in cut_off)
    entries = await ledger.entries(RUN)
    assert {entry.state for entry in entries} == {EntryState.CREATED}

    sink.outcomes.clear()
    await run_to_end(halo_client, sites, ledger, sink)

    assert all(outcome.ok for outcome in sink.outcomes)
    assert len(sink.outcomes) == 4
    assert {site: sink.ids(site) for site in sites} == expected
    assert async_creates(halo_emulator) == dict.fromkeys(sites, 1)


async def test_a_create_whose_answer_was_lost_is_reported_and_never_sent_again(
    halo_emulator: Emulator, halo_client: HaloClient, ledger: Ledger
) -> None:
    site = halo_emulator.sites[0].id
    halo_emulator.faults.fail_next("createAsyncQuery", drop=True)
    first = PositionSink()
    await run_to_end(halo_client, [site], ledger, first)
    again = PositionSink()
    await run_to_end(halo_client, [site], ledger, again)

    for sink in (first, again):
        (outcome,) = sink.outcomes
        assert isinstance(outcome.error, SubmissionOutcomeUnknownError)
    assert "Ledger.resolve" in str(again.outcomes[0].error)
    # The dropped POST did create the query: it is the only one, ever.
    assert async_creates(halo_emulator) == {site: 1}
    (entry,) = await ledger.entries(RUN)
    assert entry.state is EntryState.UNKNOWN
    assert entry.query_id is None

    # Someone checks the site and finds the query the lost answer was about.
    (created,) = halo_emulator.queries(site, mode="async")
    await ledger.resolve(entry.key, created.id)
    third = PositionSink()
    await run_to_end(halo_client, [site], ledger, third)
    assert [outcome.ok for outcome in third.outcomes] == [True]
    assert third.ids(site) == (await expected_ids(halo_client, [site]))[site]
    assert async_creates(halo_emulator) == {site: 1}


async def test_an_unknown_create_found_absent_is_sent_by_the_next_run(
    halo_emulator: Emulator, halo_client: HaloClient, ledger: Ledger
) -> None:
    site = halo_emulator.sites[0].id
    # The POST never reached Halo, but the process died before it could tell.
    key = EntryKey(RUN, site)
    await ledger.claim(key, query_key_of(ORDERED))
    first = PositionSink()
    await run_to_end(halo_client, [site], ledger, first)
    assert isinstance(first.outcomes[0].error, SubmissionOutcomeUnknownError)
    assert async_creates(halo_emulator) == {}

    await ledger.resolve(key, None)
    second = PositionSink()
    await run_to_end(halo_client, [site], ledger, second)
    assert [outcome.ok for outcome in second.outcomes] == [True]
    assert async_creates(halo_emulator) == {site: 1}
    with pytest.raises(InvalidArgumentError, match="succeeded"):
        await ledger.resolve(key, None)


def query_key_of(sql: str) -> str:
    return query_key(_async_body(sql, {}))


async def test_a_create_refused_by_halo_is_not_recorded_so_the_next_run_sends_it(
    halo_emulator: Emulator, halo_client: HaloClient, ledger: Ledger
) -> None:
    site = halo_emulator.sites[0].id
    halo_emulator.faults.set("createAsyncQuery", rate_limits=1.0, retry_after=0)
    first = PositionSink()
    await run_to_end(halo_client, [site], ledger, first)
    halo_emulator.faults.clear()
    assert not first.outcomes[0].ok
    assert await ledger.entries(RUN) == []

    again = PositionSink()
    await run_to_end(halo_client, [site], ledger, again)
    assert [outcome.ok for outcome in again.outcomes] == [True]
    assert async_creates(halo_emulator) == {site: 1}


async def test_a_site_listed_twice_is_two_entries_of_the_run(
    halo_emulator: Emulator, halo_client: HaloClient, ledger: Ledger
) -> None:
    site = halo_emulator.sites[0].id
    sink = PositionSink()
    await run_to_end(halo_client, [site, site], ledger, sink, limits=FanOutLimits(per_site=2))
    await run_to_end(halo_client, [site, site], ledger, PositionSink())

    assert [entry.key.occurrence for entry in await ledger.entries(RUN)] in ([0, 1], [1, 0])
    assert async_creates(halo_emulator) == {site: 2}


async def test_a_run_id_reused_for_other_sql_is_refused_before_anything_is_sent(
    halo_emulator: Emulator, halo_client: HaloClient, ledger: Ledger
) -> None:
    sites = [halo_emulator.sites[0].id]
    await run_to_end(halo_client, sites, ledger, PositionSink())
    requests = sum(halo_emulator.stats.requests.values())

    with pytest.raises(LedgerMismatchError, match=RUN):
        async for _ in halo_client.fan_out(
            "SELECT SURNAME FROM PATIENTS", sites, ledger=ledger, run_id=RUN
        ):
            pass
    assert sum(halo_emulator.stats.requests.values()) == requests


async def test_rows_that_came_with_the_outcome_are_recorded_once_taken(
    halo_emulator: Emulator, halo_client: HaloClient, ledger: Ledger
) -> None:
    sites = [site.id for site in halo_emulator.sites]
    expected = await expected_ids(halo_client, sites)
    async for outcome in halo_client.fan_out(
        ORDERED, sites, ledger=ledger, run_id=RUN, poll=FAST_POLL
    ):
        assert outcome.ok
        assert outcome.rows is not None
    entries = {entry.key.site_id: entry for entry in await ledger.entries(RUN)}

    assert {site: entries[site].rows_delivered for site in sites} == {
        site: len(ids) for site, ids in expected.items()
    }
    assert {entry.state for entry in entries.values()} == {EntryState.SUCCEEDED}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"run_id": RUN}, "run_id"), ({"ledger": "sqlite:///l.db", "run_id": RUN}, "ledger")],
)
async def test_a_ledger_and_a_run_id_come_together(
    halo_client: HaloClient, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        halo_client.fan_out(ORDERED, [], **kwargs)
    assert caught.value.field == field


async def test_a_ledger_without_a_run_id_is_refused(halo_client: HaloClient, tmp_path: Any) -> None:
    async with SQLiteLedger(tmp_path / "l.db") as ledger:
        for run_id in (None, "  "):
            with pytest.raises(InvalidArgumentError, match="run_id"):
                halo_client.fan_out(ORDERED, [], ledger=ledger, run_id=run_id)
