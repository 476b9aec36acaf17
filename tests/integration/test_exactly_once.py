"""Exactly once, however the consumer stops: every row a site's ``ok`` outcome counts was
yielded before it, in order, once; rows not yet delivered are never silently dropped."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest

from halo_async import Checkpoint, FanOutEvent, FanOutLimits, HaloClient, SiteOutcome, SitePage
from halo_async.emulator import Emulator
from halo_async.errors import FanOutDeadlineError
from tests.support import FAST_POLL, bp_sites, expected_counts

ORDERED_PATIENTS = "SELECT INTERNALID, SURNAME FROM PATIENTS ORDER BY INTERNALID"


@pytest.mark.emu(sites=bp_sites(2, patients=300), page_size=4_000)
async def test_a_deadline_never_drops_streamed_pages_of_an_ok_site(
    emulator: Emulator, halo: HaloClient
) -> None:
    site_ids = [site.id for site in emulator.sites]
    expected = await expected_counts(halo, site_ids)
    delivered: defaultdict[int, list[Any]] = defaultdict(list)
    outcomes: dict[int, SiteOutcome] = {}

    async for item in halo.fan_out(
        ORDERED_PATIENTS, site_ids, stream=True, deadline=0.3, poll=FAST_POLL
    ):
        if isinstance(item, SitePage):
            if not delivered:
                # A slow consumer: by the time it asks for more, the deadline has passed,
                # while every site finished and queued its pages long before.
                await asyncio.sleep(0.4)
            assert item.index not in outcomes, "a page came after its site's outcome"
            delivered[item.index].extend(row["INTERNALID"] for row in item.rows)
        else:
            outcomes[item.index] = item

    assert sorted(outcomes) == [0, 1]
    for index, outcome in outcomes.items():
        ids = delivered[index]
        assert ids == sorted(set(ids)), "rows repeated or out of order"
        assert len(ids) == outcome.row_count, "the outcome counts rows never delivered"
        if outcome.ok:
            assert len(ids) == expected[outcome.site_id]
        else:
            assert isinstance(outcome.error, FanOutDeadlineError)
    # Both sites finished well before the deadline: their queued pages are delivered.
    assert all(outcome.ok for outcome in outcomes.values())


@pytest.mark.emu(sites=bp_sites(2))
async def test_a_site_listed_twice_does_not_hold_a_global_slot_it_cannot_use(
    emulator: Emulator, halo: HaloClient
) -> None:
    a, b = (site.id for site in emulator.sites)
    events: list[tuple[str, str]] = []

    def record(event: FanOutEvent) -> None:
        events.append((str(event.kind), event.site_id))

    outcomes = [
        item
        async for item in halo.fan_out(
            ORDERED_PATIENTS,
            [a, a, b],
            limits=FanOutLimits(max_in_flight=2, per_site=1),
            poll=FAST_POLL,
            on_event=record,
        )
    ]

    assert all(isinstance(o, SiteOutcome) and o.ok for o in outcomes)
    # B's site is free and a global slot is free: it starts at once, before A's first query
    # has finished (the second A waits for its site without taking the second slot).
    first_end = min(i for i, (kind, _) in enumerate(events) if kind in {"completed", "failed"})
    assert ("submitted", b) in events[:first_end]


@pytest.mark.emu(sites=bp_sites(1, patients=50))
async def test_breaking_out_of_rows_resumes_at_the_next_row(
    emulator: Emulator, halo: HaloClient
) -> None:
    site = emulator.sites[0].id
    job = await halo.submit(site, ORDERED_PATIENTS, poll=FAST_POLL)

    first: list[int] = []
    async for row in job.rows():
        first.append(row["INTERNALID"])
        if len(first) == 10:
            break
    rest = [row["INTERNALID"] async for row in job.rows()]

    assert len(first) + len(rest) == 50
    assert first + rest == sorted(set(first + rest))


@pytest.mark.emu(sites=bp_sites(1, patients=50))
async def test_a_checkpoint_carries_the_row_offset_to_another_client(
    emulator: Emulator, halo: HaloClient
) -> None:
    site = emulator.sites[0].id
    job = await halo.submit(site, ORDERED_PATIENTS, poll=FAST_POLL)
    first: list[int] = []
    async for row in job.rows():
        first.append(row["INTERNALID"])
        if len(first) == 10:
            break
    checkpoint = job.checkpoint()
    assert (checkpoint.next_page, checkpoint.next_row) == (1, 10)

    # Another process: a new client, from the checkpoint's plain data.
    restored = Checkpoint.from_dict(checkpoint.as_dict())
    async with HaloClient(emulator.api_key, base_url=emulator.base_url) as other:
        rest = [row["INTERNALID"] async for row in other.resume(restored, poll=FAST_POLL).rows()]

    assert len(first) + len(rest) == 50
    assert first + rest == sorted(set(first + rest))
