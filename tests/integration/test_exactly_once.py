"""Exactly once, however the consumer stops: every row a site's ``ok`` outcome counts was
yielded before it, in order, once; rows not yet delivered are never silently dropped."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter, defaultdict
from collections.abc import AsyncGenerator
from typing import Any

import attrs
import pytest

from halo_async import (
    Checkpoint,
    FanOutEvent,
    FanOutLimits,
    HaloClient,
    QueryJob,
    SiteOutcome,
    SitePage,
)
from halo_async.emulator import Emulator, SiteSpec
from halo_async.errors import FanOutDeadlineError, HaloError
from tests.support import FAST_POLL, FAST_RETRY, bp_sites, client_tasks, expected_counts

ORDERED_PATIENTS = "SELECT INTERNALID, SURNAME FROM PATIENTS ORDER BY INTERNALID"

# The project's own pytest plugin serves these tests (halo_emulator, halo_client); these are
# their defaults here, which a test's own marker overrides.
pytestmark = pytest.mark.halo_emulator(sites=bp_sites(6), seed=7, page_size=2_000)


@pytest.mark.halo_emulator(sites=bp_sites(2, patients=300), page_size=4_000)
async def test_a_deadline_never_drops_streamed_pages_of_an_ok_site(
    halo_emulator: Emulator, halo_client: HaloClient
) -> None:
    site_ids = [site.id for site in halo_emulator.sites]
    expected = await expected_counts(halo_client, site_ids)
    delivered: defaultdict[int, list[Any]] = defaultdict(list)
    outcomes: dict[int, SiteOutcome] = {}

    async for item in halo_client.fan_out(
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


@pytest.mark.halo_emulator(sites=bp_sites(2))
async def test_a_site_listed_twice_does_not_hold_a_global_slot_it_cannot_use(
    halo_emulator: Emulator, halo_client: HaloClient
) -> None:
    a, b = (site.id for site in halo_emulator.sites)
    events: list[tuple[str, str]] = []

    def record(event: FanOutEvent) -> None:
        events.append((str(event.kind), event.site_id))

    outcomes = [
        item
        async for item in halo_client.fan_out(
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


@pytest.mark.halo_emulator(sites=bp_sites(1, patients=50))
async def test_breaking_out_of_rows_resumes_at_the_next_row(
    halo_emulator: Emulator, halo_client: HaloClient
) -> None:
    site = halo_emulator.sites[0].id
    job = await halo_client.submit(site, ORDERED_PATIENTS, poll=FAST_POLL)

    first: list[int] = []
    async for row in job.rows():
        first.append(row["INTERNALID"])
        if len(first) == 10:
            break
    rest = [row["INTERNALID"] async for row in job.rows()]

    assert len(first) + len(rest) == 50
    assert first + rest == sorted(set(first + rest))


@pytest.mark.halo_emulator(sites=bp_sites(1, patients=50))
async def test_a_checkpoint_carries_the_row_offset_to_another_client(
    halo_emulator: Emulator, halo_client: HaloClient
) -> None:
    site = halo_emulator.sites[0].id
    job = await halo_client.submit(site, ORDERED_PATIENTS, poll=FAST_POLL)
    first: list[int] = []
    async for row in job.rows():
        first.append(row["INTERNALID"])
        if len(first) == 10:
            break
    checkpoint = job.checkpoint()
    assert (checkpoint.next_page, checkpoint.next_row) == (1, 10)

    # Another process: a new client, from the checkpoint's plain data.
    restored = Checkpoint.from_dict(checkpoint.as_dict())
    async with HaloClient(halo_emulator.api_key, base_url=halo_emulator.base_url) as other:
        rest = [row["INTERNALID"] async for row in other.resume(restored, poll=FAST_POLL).rows()]

    assert len(first) + len(rest) == 50
    assert first + rest == sorted(set(first + rest))


# -- property: random consumers over seeded trials --------------------------------------------


@attrs.define
class Delivery:
    """What a consumer received for one fan-out entry."""

    ids: list[int] = attrs.Factory(list)
    outcome: SiteOutcome | None = None
    pages_after_outcome: int = 0


async def consume(
    results: AsyncGenerator[SiteOutcome | SitePage, None],
    deliveries: defaultdict[int, Delivery],
    rng: random.Random,
    *,
    stop_after: int | None,
    slow: bool,
) -> None:
    """Take items until ``stop_after`` of them (a break), or the end; maybe slowly."""
    async with contextlib.aclosing(results):
        taken = 0
        async for item in results:
            delivery = deliveries[item.index]
            if isinstance(item, SitePage):
                if delivery.outcome is not None:
                    delivery.pages_after_outcome += 1
                delivery.ids.extend(row["INTERNALID"] for row in item.rows)
            else:
                delivery.outcome = item
                if item.rows is not None:
                    delivery.ids.extend(row["INTERNALID"] for row in item.rows)
            taken += 1
            if stop_after is not None and taken >= stop_after:
                break
            if slow:
                await asyncio.sleep(rng.uniform(0, 0.02))


def check_trial(
    deliveries: dict[int, Delivery], entries: list[str], expected: dict[str, int], stream: bool
) -> None:
    for index, delivery in deliveries.items():
        ids = delivery.ids
        assert ids == sorted(set(ids)), f"entry {index}: rows repeated or out of order"
        assert delivery.pages_after_outcome == 0, f"entry {index}: a page after its outcome"
        outcome = delivery.outcome
        if outcome is None:
            continue  # the consumer stopped before this entry ended
        assert outcome.site_id == entries[index]
        assert outcome.row_count == len(ids), f"entry {index}: counted rows never delivered"
        if outcome.ok:
            assert len(ids) == expected[outcome.site_id], f"entry {index}: rows missing"
            assert (outcome.rows is None) == stream
        else:
            assert isinstance(outcome.error, HaloError), f"entry {index}: {outcome.error!r}"


TRIALS = 60
QUEUE_SITES = [*bp_sites(4, patients=45), SiteSpec(pms_type="BestPractice", availability="offline")]


@pytest.mark.halo_emulator(sites=QUEUE_SITES, page_size=800, seed=11)
async def test_every_row_once_under_random_consumers_deadlines_and_faults(
    halo_emulator: Emulator,
) -> None:
    sites = [site.id for site in halo_emulator.sites]
    async with HaloClient(halo_emulator.api_key, base_url=halo_emulator.base_url) as probe:
        expected = await expected_counts(probe, sites[:4])
    halo_emulator.faults.set(server_errors=0.04, rate_limits=0.03, retry_after=1)
    halo_emulator.faults.set("createAsyncQuery", server_errors=0.03, site_offline=0.05)
    halo_emulator.faults.set("getResultPage", page_expiry=0.03, server_errors=0.05)
    tasks_before = client_tasks()
    ways: Counter[str] = Counter()
    ends: Counter[str] = Counter()

    for trial in range(TRIALS):
        rng = random.Random(trial)
        entries = [rng.choice(sites) for _ in range(rng.randint(2, 6))]
        way = rng.choice(["to the end", "break", "cancel", "deadline"])
        stream = rng.random() < 0.6
        ways[way] += 1
        deliveries: defaultdict[int, Delivery] = defaultdict(Delivery)
        async with HaloClient(
            halo_emulator.api_key, base_url=halo_emulator.base_url, retry=FAST_RETRY
        ) as c:
            results = c.fan_out(
                ORDERED_PATIENTS,
                entries,
                limits=FanOutLimits(max_in_flight=rng.randint(1, 4), per_site=rng.randint(1, 2)),
                deadline=rng.uniform(0.005, 0.2) if way == "deadline" else None,
                stream=stream,
                poll=FAST_POLL,
            )
            consumer = asyncio.ensure_future(
                consume(
                    results,
                    deliveries,
                    rng,
                    stop_after=rng.randint(1, 8) if way == "break" else None,
                    slow=rng.random() < 0.5,
                )
            )
            if way == "cancel":
                for _ in range(rng.randint(1, 300)):
                    await asyncio.sleep(0)
                consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer

        check_trial(dict(deliveries), entries, expected, stream)
        ends.update(
            "ok" if d.outcome.ok else type(d.outcome.error).__name__
            for d in deliveries.values()
            if d.outcome is not None
        )
        if way in ("to the end", "deadline"):
            assert sorted(deliveries) == list(range(len(entries)))
            assert all(d.outcome is not None for d in deliveries.values())
        assert client_tasks() == tasks_before, f"trial {trial} left tasks"

    assert min(ways.values()) >= 8, ways
    # The trials saw successes, deadlines and the faults' typed failures, not one of them.
    assert ends["ok"] >= 30, ends
    assert ends["FanOutDeadlineError"] >= 1, ends
    assert len(ends) >= 4, ends


async def take_some_rows(job: QueryJob, rng: random.Random, into: list[int]) -> None:
    """Rows until a random break, a random cancellation, or the end."""
    stop_at = rng.randint(1, 40)
    rows = job.rows()
    async with contextlib.aclosing(rows):
        async for row in rows:
            into.append(row["INTERNALID"])
            if rng.random() < 0.05:
                await asyncio.sleep(0)
            if len(into) % stop_at == 0:
                break


@pytest.mark.halo_emulator(sites=bp_sites(1, patients=150), page_size=900, seed=5)
async def test_a_job_delivers_every_row_once_across_random_breaks_and_cancellations(
    halo_emulator: Emulator, halo_client: HaloClient
) -> None:
    site = halo_emulator.sites[0].id
    full = [
        row["INTERNALID"]
        for row in await (await halo_client.submit(site, ORDERED_PATIENTS)).fetch_all()
    ]
    halo_emulator.faults.set("getResultPage", server_errors=0.1)
    tasks_before = client_tasks()

    for trial in range(25):
        rng = random.Random(trial)
        job = await halo_client.submit(
            site, ORDERED_PATIENTS, poll=FAST_POLL, prefetch=rng.randint(1, 3)
        )
        delivered: list[int] = []
        while len(delivered) < len(full):
            taking = asyncio.ensure_future(take_some_rows(job, rng, delivered))
            if rng.random() < 0.3:
                for _ in range(rng.randint(0, 30)):
                    await asyncio.sleep(0)
                taking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await taking
            if rng.random() < 0.2:
                # Carry on from the checkpoint, as another process would.
                job = halo_client.resume(job.checkpoint(), poll=FAST_POLL)
        assert delivered == full, f"trial {trial}"
        assert client_tasks() == tasks_before
