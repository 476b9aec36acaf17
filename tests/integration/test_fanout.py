"""fan_out and QueryJob against the emulator over real sockets, faults on."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from collections import Counter, defaultdict
from typing import Any

import pytest

from halo_async import (
    FanOutEvent,
    FanOutLimits,
    HaloClient,
    PollPolicy,
    RetryPolicy,
    SiteOutcome,
    SitePage,
    fanout,
)
from halo_async.emulator import Emulator
from halo_async.errors import (
    ClientClosedError,
    FanOutDeadlineError,
    HaloError,
    QueryFailedError,
    RateLimitedError,
)
from halo_async.jobs import QueryJob
from halo_async.webhooks import JobRegistry
from tests.support import (
    FAST_POLL,
    bp_sites,
    client_tasks,
    expected_counts,
    no_sleep,
)

ORDERED_PATIENTS = "SELECT INTERNALID, SURNAME FROM PATIENTS ORDER BY INTERNALID"

# The project's own pytest plugin serves these tests (halo_emulator, halo_client); these are
# their defaults here, which a test's own marker overrides.
pytestmark = pytest.mark.halo_emulator(sites=bp_sites(6), seed=7, page_size=2_000)


def assert_complete_and_ordered(rows: list[dict[str, Any]], expected: int) -> None:
    ids = [row["INTERNALID"] for row in rows]
    assert len(ids) == expected
    assert ids == sorted(set(ids)), "rows repeated or out of order"


@pytest.mark.halo_emulator(sites=bp_sites(120, patients=40), seed=11, page_size=400)
async def test_fan_out_across_120_sites_with_faults(
    halo_emulator: Emulator, halo_client: HaloClient
) -> None:
    site_ids = [site.id for site in halo_emulator.sites]
    expected = await expected_counts(halo_client, site_ids)
    halo_emulator.faults.set(server_errors=0.03, rate_limits=0.03, retry_after=1)
    halo_emulator.faults.set("getResultPage", page_expiry=0.02, server_errors=0.05)
    halo_emulator.faults.set("createAsyncQuery", site_offline=0.05, drops=0.02)
    halo_emulator.set_site_offline(site_ids[0])
    tasks_before = client_tasks()

    outcomes: list[SiteOutcome] = []
    async for item in halo_client.fan_out(ORDERED_PATIENTS, site_ids, poll=FAST_POLL):
        assert isinstance(item, SiteOutcome)
        outcomes.append(item)

    assert sorted(o.site_id for o in outcomes) == sorted(site_ids)
    succeeded = [o for o in outcomes if o.ok]
    failed = [o for o in outcomes if not o.ok]
    assert len(succeeded) > 60, [repr(o.error) for o in failed][:5]
    for outcome in succeeded:
        assert outcome.rows is not None
        assert outcome.page_count > 1
        assert_complete_and_ordered(outcome.rows, expected[outcome.site_id])
        assert outcome.row_count == expected[outcome.site_id]
    assert failed, "the faults should have failed some sites"
    for outcome in failed:
        assert isinstance(outcome.error, HaloError), repr(outcome.error)
        if isinstance(outcome.error, QueryFailedError):
            assert outcome.error.site_id == outcome.site_id
    offline = next(o for o in outcomes if o.site_id == site_ids[0])
    assert not offline.ok
    assert client_tasks() == tasks_before


@pytest.mark.halo_emulator(sites=bp_sites(4), page_size=2_000)
async def test_per_site_limit_and_batch_status_coalescing(
    halo_emulator: Emulator, halo_client: HaloClient
) -> None:
    site_ids = [site.id for site in halo_emulator.sites] * 3  # three runs per site
    in_flight: Counter[str] = Counter()
    peak: defaultdict[str, int] = defaultdict(int)

    events: list[FanOutEvent] = []

    def track(event: FanOutEvent) -> None:
        events.append(event)
        if event.kind == "submitted":
            in_flight[event.site_id] += 1
            peak[event.site_id] = max(peak[event.site_id], in_flight[event.site_id])
        elif event.kind in ("completed", "failed"):
            in_flight[event.site_id] -= 1

    outcomes = [
        item
        async for item in halo_client.fan_out(
            ORDERED_PATIENTS,
            site_ids,
            limits=FanOutLimits(per_site=2),
            poll=FAST_POLL,
            on_event=track,
        )
    ]

    assert len(outcomes) == 12
    assert all(isinstance(o, SiteOutcome) and o.ok for o in outcomes)
    assert max(peak.values()) <= 2
    final = events[-1].progress
    assert (final.total, final.submitted, final.completed, final.failed) == (12, 12, 12, 0)
    assert final.rows == sum(o.row_count for o in outcomes if isinstance(o, SiteOutcome))
    assert final.pages == sum(o.page_count for o in outcomes if isinstance(o, SiteOutcome))
    assert {e.status for e in events if e.kind == "status"} >= {"successful"}
    requests = halo_emulator.stats.requests
    assert requests.get("getQuery", 0) == 0
    assert requests["getQueryStatusBatch"] >= 1
    assert requests["createAsyncQuery"] == 12


async def test_streaming_mode_yields_pages_then_the_outcome(
    halo_emulator: Emulator, halo_client: HaloClient
) -> None:
    site_ids = [site.id for site in halo_emulator.sites]
    expected = await expected_counts(halo_client, site_ids)
    pages: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    ended: dict[str, SiteOutcome] = {}

    async for item in halo_client.fan_out(ORDERED_PATIENTS, site_ids, stream=True, poll=FAST_POLL):
        if isinstance(item, SitePage):
            assert item.site_id not in ended, "a page arrived after its site's outcome"
            pages[item.site_id].extend(item.rows)
        else:
            ended[item.site_id] = item

    for site in site_ids:
        assert ended[site].ok
        assert ended[site].rows is None
        assert ended[site].row_count == expected[site]
        assert_complete_and_ordered(pages[site], expected[site])


@pytest.mark.parametrize("stream", [False, True], ids=["outcomes", "streamed"])
async def test_a_finished_sites_job_is_let_go_while_the_fan_out_runs(
    halo_emulator: Emulator,
    halo_client: HaloClient,
    monkeypatch: pytest.MonkeyPatch,
    stream: bool,
) -> None:
    # A fan-out of thousands of sites must not keep every finished site's job (and its last
    # status) to the end: that memory grows with the fan-out, and every object kept is one
    # more for each garbage collection to walk. By reference counting alone (the collector
    # is off), a site's job is gone once the consumer has its outcome and asks for more.
    jobs: dict[str, weakref.ref[QueryJob]] = {}

    class RecordedJob(QueryJob):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            jobs[self.query_id] = weakref.ref(self)

    monkeypatch.setattr(fanout, "QueryJob", RecordedJob)
    site_ids = [site.id for site in halo_emulator.sites]
    taken: list[str] = []
    gc.disable()
    try:
        async for item in halo_client.fan_out(
            ORDERED_PATIENTS, site_ids, stream=stream, poll=FAST_POLL
        ):
            kept = [query_id for query_id in taken if jobs[query_id]() is not None]
            assert kept == [], f"finished sites' jobs still held: {kept}"
            if isinstance(item, SiteOutcome):
                assert item.ok
                assert item.query_id is not None
                taken.append(item.query_id)
    finally:
        gc.enable()

    assert len(taken) == len(site_ids)


async def test_one_failing_site_does_not_sink_the_others(
    halo_emulator: Emulator, halo_client: HaloClient
) -> None:
    site_ids = [site.id for site in halo_emulator.sites]
    halo_emulator.set_site_offline(site_ids[2])

    outcomes: dict[str, SiteOutcome] = {}
    async for item in halo_client.fan_out(ORDERED_PATIENTS, site_ids, poll=FAST_POLL):
        assert isinstance(item, SiteOutcome)
        outcomes[item.site_id] = item

    assert not outcomes[site_ids[2]].ok
    assert all(outcomes[s].ok for s in site_ids if s != site_ids[2])


@pytest.mark.halo_emulator(sites=bp_sites(5), latency="realistic")
async def test_deadline_ends_unfinished_sites_cleanly(
    halo_emulator: Emulator, halo_client: HaloClient
) -> None:
    site_ids = [site.id for site in halo_emulator.sites]
    tasks_before = client_tasks()

    outcomes: list[SiteOutcome] = []
    async for item in halo_client.fan_out(ORDERED_PATIENTS, site_ids, deadline=0.2, poll=FAST_POLL):
        assert isinstance(item, SiteOutcome)
        outcomes.append(item)

    assert sorted(o.site_id for o in outcomes) == sorted(site_ids)
    assert any(isinstance(o.error, FanOutDeadlineError) for o in outcomes)
    assert client_tasks() == tasks_before


async def test_breaking_out_of_a_fan_out_stops_everything(
    halo_emulator: Emulator, halo_client: HaloClient
) -> None:
    site_ids = [site.id for site in halo_emulator.sites]
    tasks_before = client_tasks()

    results = halo_client.fan_out(ORDERED_PATIENTS, site_ids, poll=FAST_POLL)
    async for _ in results:
        break
    await results.aclose()  # type: ignore[attr-defined]

    assert client_tasks() == tasks_before


async def test_a_job_streams_pages_while_the_query_uploads(
    halo_emulator: Emulator, halo_client: HaloClient
) -> None:
    site = halo_emulator.sites[0].id
    expected = (await expected_counts(halo_client, [site]))[site]

    job = await halo_client.submit(site, ORDERED_PATIENTS, poll=FAST_POLL, prefetch=2)
    rows = [row async for row in job.rows()]

    assert_complete_and_ordered(rows, expected)
    assert job.query is not None
    assert job.query.is_successful
    assert job.checkpoint().next_page == len(job.query.pages) + 1


async def test_a_job_registry_lets_webhooks_wake_fan_out_jobs(
    halo_emulator: Emulator, halo_client: HaloClient
) -> None:
    registry = JobRegistry()
    site_ids = [site.id for site in halo_emulator.sites]
    woken: set[str] = set()
    stop = asyncio.Event()

    async def webhooks() -> None:
        # Stands in for the webhook route: once a query has finished, wake its job.
        while not stop.is_set():
            for query_id in registry.query_ids():
                record = halo_emulator.query(query_id)
                if record is not None and record.terminal and query_id not in woken:
                    woken.add(query_id)
                    registry.notify(query_id)
            await asyncio.sleep(0.005)

    sender = asyncio.ensure_future(webhooks())
    # A minute between polls: only the wake-ups can finish this within the timeout.
    poll = PollPolicy(initial_interval=60, max_interval=60)
    async with asyncio.timeout(20):
        outcomes = [
            o
            async for o in halo_client.fan_out(ORDERED_PATIENTS, site_ids, poll=poll, jobs=registry)
        ]
    stop.set()
    await sender

    assert len(outcomes) == len(site_ids)
    assert all(isinstance(o, SiteOutcome) and o.ok for o in outcomes)
    assert woken
    assert len(registry) == 0


async def test_a_rate_limited_site_slows_only_itself(
    halo_emulator: Emulator, halo_client: HaloClient
) -> None:
    slow, *others = [site.id for site in halo_emulator.sites]
    await expected_counts(halo_client, [slow, *others])  # every site's database generated first
    # Its status asks, batched or single (one query per site is polled on its own), are 429s.
    for operation in ("getQueryStatusBatch", "getQuery"):
        halo_emulator.faults.set(operation, slow, rate_limits=1.0, retry_after=2)

    async def scaled_sleep(seconds: float) -> None:
        await asyncio.sleep(seconds / 10)  # Retry-After: 2 s becomes 0.2 s of real waiting

    retry = RetryPolicy(sleep=scaled_sleep, max_attempts=4)
    async with HaloClient(
        halo_emulator.api_key, base_url=halo_emulator.base_url, retry=retry
    ) as scaled:
        outcomes: dict[str, SiteOutcome] = {}
        async for item in scaled.fan_out(ORDERED_PATIENTS, [slow, *others], poll=FAST_POLL):
            assert isinstance(item, SiteOutcome)
            outcomes[item.site_id] = item

    assert isinstance(outcomes[slow].error, RateLimitedError)
    assert outcomes[slow].error.retry_after == 2
    assert all(outcomes[site].ok for site in others)
    # The others finished while the slow site was still waiting out its Retry-After.
    assert max(outcomes[site].elapsed for site in others) < outcomes[slow].elapsed / 2


@pytest.mark.halo_emulator(sites=bp_sites(12, patients=30))
async def test_a_held_generator_stops_creating_queries(
    halo_emulator: Emulator, halo_client: HaloClient
) -> None:
    site_ids = [site.id for site in halo_emulator.sites]
    results = halo_client.fan_out(
        ORDERED_PATIENTS, site_ids, limits=FanOutLimits(max_in_flight=2), poll=FAST_POLL
    )
    first = await anext(results)  # then the consumer breaks out but keeps the generator
    created = halo_emulator.stats.requests["createAsyncQuery"]
    for _ in range(40):  # long enough for the queries in flight to finish several times
        await asyncio.sleep(0.01)
    held = halo_emulator.stats.requests["createAsyncQuery"]
    await results.aclose()

    assert isinstance(first, SiteOutcome)
    assert held == created <= 3, f"{held - created} queries created after the consumer left"


@pytest.mark.halo_emulator(sites=bp_sites(6, patients=300), page_size=1_500)
async def test_streamed_pages_waiting_for_a_slow_consumer_are_bounded(
    halo_emulator: Emulator, halo_client: HaloClient
) -> None:
    site_ids = [site.id for site in halo_emulator.sites]
    limits = FanOutLimits(max_in_flight=6, prefetch=1, buffered_pages=3)
    fetched = 0

    def count(event: FanOutEvent) -> None:
        nonlocal fetched
        fetched += event.kind == "page_fetched"

    results = halo_client.fan_out(
        ORDERED_PATIENTS, site_ids, limits=limits, stream=True, poll=FAST_POLL, on_event=count
    )
    async with contextlib.aclosing(results):
        taken = [await anext(results)]
        for _ in range(40):  # the consumer stalls; the sites have pages to spare
            await asyncio.sleep(0.01)
        stalled_at = fetched
        taken += [item async for item in results]

    pages = sum(isinstance(item, SitePage) for item in taken)
    assert pages > 30, "the sites should have many pages each"
    # One taken, three waiting, and one more in each site's hands (fetched, waiting for room):
    # the rest wait on the server, not in memory.
    assert stalled_at <= 1 + 3 + 6, stalled_at


@pytest.mark.halo_emulator(sites=bp_sites(8, patients=400), page_size=1_000)
async def test_closing_the_client_under_a_fan_out_gives_client_closed_errors(
    halo_emulator: Emulator,
) -> None:
    site_ids = [site.id for site in halo_emulator.sites]
    # Requests being retried when the client closes: their next attempt finds it closed.
    halo_emulator.faults.set("getResultPage", server_errors=0.5)
    halo_emulator.faults.set("getQueryStatusBatch", server_errors=0.5)
    # Enough attempts that no status check runs out of them before the close (with six, one
    # in 64 did, and a fast emulator polls dozens of times before the first page).
    retry = RetryPolicy(sleep=no_sleep, max_attempts=30)
    halo = HaloClient(halo_emulator.api_key, base_url=halo_emulator.base_url, retry=retry)
    outcomes: list[SiteOutcome] = []
    async with contextlib.aclosing(
        halo.fan_out(
            ORDERED_PATIENTS,
            site_ids,
            # Few pages fetched ahead: every site still has requests to make at the close.
            limits=FanOutLimits(prefetch=1, buffered_pages=2),
            stream=True,
            poll=FAST_POLL,
        )
    ) as results:
        async for item in results:
            if isinstance(item, SitePage) and not halo.closed:
                await halo.close()  # mid-stream: every site is still fetching pages
            elif isinstance(item, SiteOutcome):
                outcomes.append(item)
    job_error: BaseException | None = None
    try:
        await halo.submit(site_ids[0], ORDERED_PATIENTS)
    except Exception as exc:
        job_error = exc

    errors = [o.error for o in outcomes if o.error is not None]
    assert len(outcomes) == len(site_ids)
    assert any(isinstance(e, ClientClosedError) for e in errors), "no site saw the close"
    # Typed errors only (a fault's 5xx that outlasted its retries may come first), never
    # aiohttp's bare RuntimeError("Session is closed").
    assert all(isinstance(e, HaloError) for e in errors), errors
    assert isinstance(job_error, ClientClosedError)
