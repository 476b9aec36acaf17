"""Queries in flight per API key, bounded across processes by a Redis request budget
(``max_in_flight_queries``): counts are read from Redis and from the emulator's records,
clocks are injected, and no test waits for a lease in real time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from halo_async import FanOutEvent, HaloClient, RetryPolicy, SiteOutcome, SitePage
from halo_async.budget import RedisRequestBudget, RequestBudget, key_fingerprint
from halo_async.emulator import Emulator, Latency, ManualClock
from halo_async.errors import (
    APIError,
    FanOutDeadlineError,
    HaloConnectionError,
    InvalidArgumentError,
)
from halo_async.fanout import FanOutEventKind
from halo_async.ledger import SQLiteLedger
from tests.support import FAST_POLL, FakeTime, bp_sites

ROOT = Path(__file__).resolve().parents[2]
SLOTS = "halo:budget:k:in-flight"

# One process's share: 4 tasks, 5 holds each, of a key's 3 slots; each hold reads how many
# slots Redis counts as held. Polls and renewals come a couple of milliseconds apart.
HOLDERS = """
import asyncio, sys
import redis.asyncio
from halo_async.budget import RedisRequestBudget

async def main():
    url = sys.argv[1]
    quick = lambda seconds: asyncio.sleep(min(seconds, 0.002))
    budget = RedisRequestBudget(url, rate=1, max_in_flight_queries=3, sleep=quick)
    raw = redis.asyncio.from_url(url)
    seen = []

    async def holds():
        for _ in range(5):
            async with budget.query_slot("k", "site"):
                seen.append(await raw.zcard("halo:budget:k:in-flight"))
                await asyncio.sleep(0)

    async with budget:
        await asyncio.gather(*(holds() for _ in range(4)))
    await raw.aclose()
    print(max(seen), len(seen))

asyncio.run(main())
"""

# Takes both of the key's slots at the frozen instant 1000, says so, and waits to be killed.
DIES_HOLDING = """
import asyncio, sys
from halo_async.budget import RedisRequestBudget

async def main():
    budget = RedisRequestBudget(
        sys.argv[1], rate=1, max_in_flight_queries=2, lease=30, clock=lambda: 1000.0
    )
    async with budget.query_slot("k", "a"), budget.query_slot("k", "b"):
        print("held", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.from_url(redis_url)
    yield client
    await client.aclose()


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Let the loop run (a millisecond at a time, 5 s at most) until ``condition()`` holds."""
    for _ in range(5000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"timed out waiting for {what}")


async def python(script: str, *args: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, *args, env=env, stdout=asyncio.subprocess.PIPE
    )


async def test_processes_sharing_query_slots_never_hold_more_than_the_bound(
    redis_url: str, raw: redis.asyncio.Redis
) -> None:
    processes = [await python(HOLDERS, redis_url) for _ in range(4)]
    outputs = [await asyncio.wait_for(p.communicate(), 60) for p in processes]

    seen = [tuple(map(int, out.split())) for out, _ in outputs]
    # Sixteen tasks in four processes contend for three slots: the bound was reached (the
    # count is the key's, across processes), never passed.
    assert max(most for most, _ in seen) == 3
    assert sum(holds for _, holds in seen) == 80
    assert await raw.exists(SLOTS) == 0, "slots left held after every holder released"


async def test_a_killed_holders_slots_free_themselves_once_their_lease_passed(
    redis_url: str, raw: redis.asyncio.Redis
) -> None:
    holder = await python(DIES_HOLDING, redis_url)
    assert holder.stdout is not None
    assert await asyncio.wait_for(holder.stdout.readline(), 60) == b"held\n"
    holder.send_signal(signal.SIGKILL)
    await holder.wait()
    time = FakeTime(1000.0)
    budget = RedisRequestBudget(
        redis_url, rate=1, max_in_flight_queries=2, lease=30, clock=time, sleep=time.sleep
    )

    async with budget, budget.query_slot("k", "c"):
        acquired_at, polls = time.now, list(time.waits)
        held = await raw.zcard(SLOTS)

    # Not before the dead holder's leases passed (at 1030), and soon after: polls back off
    # to a quarter second, never spinning.
    assert 1030.0 < acquired_at <= 1030.25
    assert max(polls) == 0.25
    assert len(polls) < 130
    assert held == 1, "the dead holder's slots are still counted"
    assert await raw.exists(SLOTS) == 0


async def test_held_slots_are_renewed_by_one_task_per_budget(
    redis_url: str, raw: redis.asyncio.Redis
) -> None:
    clock = ManualClock()
    start = clock.now().timestamp()

    def now() -> float:
        return clock.now().timestamp()

    budget = RedisRequestBudget(
        redis_url, rate=1, max_in_flight_queries=3, lease=30, clock=now, sleep=clock.sleep
    )
    other = RedisRequestBudget(
        redis_url, rate=1, max_in_flight_queries=4, lease=30, clock=now, sleep=clock.sleep
    )
    before = asyncio.all_tasks()
    async with budget, other, contextlib.AsyncExitStack() as held:
        for site in "abc":
            await held.enter_async_context(budget.query_slot("k", site))
        assert len(asyncio.all_tasks() - before) == 1, "not one renewal task for three slots"
        assert {score for _, score in await raw.zrange(SLOTS, 0, -1, withscores=True)} == {
            start + 30
        }

        async def scores() -> set[float]:
            return {score for _, score in await raw.zrange(SLOTS, 0, -1, withscores=True)}

        for step in (10, 20, 30):  # a renewal every third of a lease, past the first lease
            clock.advance(10)
            for _ in range(5000):
                if await scores() == {start + step + 30}:
                    break
                await asyncio.sleep(0.001)
            assert await scores() == {start + step + 30}
        clock.advance(5)
        # Another process at 35 s, allowing four: the renewed leases still count.
        async with other.query_slot("k", "d"):
            assert await raw.zcard(SLOTS) == 4
        await held.aclose()
        assert await raw.exists(SLOTS) == 0
        await eventually(lambda: asyncio.all_tasks() == before, "the renewal task to stop")


@pytest.mark.parametrize("clients", [1, 2])
async def test_a_fan_out_runs_no_more_queries_at_once_than_the_key_may(
    redis_url: str, clients: int
) -> None:
    clock = ManualClock()
    # Each query executes for a second of the emulator's clock, which the test moves.
    emulator = Emulator(sites=bp_sites(6), seed=5, clock=clock, latency=Latency(execution=1.0))
    async with emulator, contextlib.AsyncExitStack() as stack:
        sites = [site.id for site in emulator.sites]
        shares = [sites[i::clients] for i in range(clients)]
        halos = []
        for _ in range(clients):
            budget = await stack.enter_async_context(
                RedisRequestBudget(
                    redis_url, rate=1000, max_in_flight_queries=2, sleep=lambda s: asyncio.sleep(0)
                )
            )
            halos.append(
                await stack.enter_async_context(
                    HaloClient(emulator.api_key, base_url=emulator.base_url, budget=budget)
                )
            )

        async def run(halo: HaloClient, share: list[str]) -> list[SiteOutcome | SitePage]:
            return [item async for item in halo.fan_out("SELECT 1", share, poll=FAST_POLL)]

        runs = asyncio.gather(
            *(run(halo, share) for halo, share in zip(halos, shares, strict=True))
        )
        executing_at_once = []
        while not runs.done():
            # Whenever the executions due to end have started (as many as may run, or every
            # one left), count them in the emulator's records, then end them.
            due = min(2, 6 - sum(query.terminal for query in emulator.queries()))
            if due == 0:
                break
            await eventually(
                lambda due=due: runs.done() or sum(s <= 1.0 for s in clock.pending) >= due,
                "the queries due to execute",
            )
            executing_at_once.append(
                sum(query.status == "executing" for query in emulator.queries())
            )
            clock.advance(1.0)
        outcomes = [item for items in await runs for item in items]

    assert len(outcomes) == 6
    assert all(isinstance(item, SiteOutcome) and item.ok for item in outcomes)
    assert max(executing_at_once) == 2, executing_at_once
    assert len(emulator.queries()) == 6


async def test_a_query_slot_is_released_when_the_query_fails(
    redis_url: str, raw: redis.asyncio.Redis
) -> None:
    async with Emulator(sites=bp_sites(2), seed=5) as emulator:
        emulator.faults.fail_next("createAsyncQuery", status=400, site=emulator.sites[0].id)
        budget = RedisRequestBudget(redis_url, rate=1000, max_in_flight_queries=1)
        async with (
            budget,
            HaloClient(
                emulator.api_key,
                base_url=emulator.base_url,
                budget=budget,
                retry=RetryPolicy.none(),
            ) as halo,
        ):
            outcomes = [
                item
                async for item in halo.fan_out(
                    "SELECT 1", [site.id for site in emulator.sites], poll=FAST_POLL
                )
            ]

    assert isinstance(outcomes[0], SiteOutcome)
    assert isinstance(outcomes[0].error, APIError)
    assert isinstance(outcomes[1], SiteOutcome)
    assert outcomes[1].ok, "the failed site's slot was never given back"
    assert await raw.exists(f"halo:budget:{key_fingerprint(emulator.api_key)}:in-flight") == 0


async def test_a_query_slot_is_released_when_the_fan_out_is_cancelled(
    redis_url: str, raw: redis.asyncio.Redis
) -> None:
    clock = ManualClock()  # never moved: every query executes until the deadline stops it
    emulator = Emulator(sites=bp_sites(3), seed=5, clock=clock, latency=Latency(execution=60))
    budget = RedisRequestBudget(
        redis_url, rate=1000, max_in_flight_queries=2, sleep=lambda s: asyncio.sleep(0)
    )
    async with (
        emulator,
        budget,
        HaloClient(emulator.api_key, base_url=emulator.base_url, budget=budget) as halo,
    ):
        slots = f"halo:budget:{key_fingerprint(emulator.api_key)}:in-flight"
        outcomes = [
            item
            async for item in halo.fan_out(
                "SELECT 1", [site.id for site in emulator.sites], poll=FAST_POLL, deadline=0.2
            )
        ]
        left = await raw.zrange(slots, 0, -1, withscores=True)
        assert left == []

    assert len(outcomes) == 3
    assert all(
        isinstance(o, SiteOutcome) and isinstance(o.error, FanOutDeadlineError) for o in outcomes
    )
    assert len(emulator.queries()) == 2, "the third site created its query without a slot"


async def test_a_holder_and_a_waiter_cancelled_leave_nothing_held(
    redis_url: str, raw: redis.asyncio.Redis
) -> None:
    polls: list[float] = []

    async def sleep(seconds: float) -> None:
        polls.append(seconds)
        await asyncio.sleep(0)

    budget = RedisRequestBudget(redis_url, rate=1, max_in_flight_queries=1, sleep=sleep)
    entered: list[str] = []

    async def hold(site: str) -> None:
        async with budget.query_slot("k", site):
            entered.append(site)
            await asyncio.Event().wait()

    async with budget:
        holder = asyncio.create_task(hold("a"))
        await eventually(lambda: entered == ["a"], "the first slot")
        waiter = asyncio.create_task(hold("b"))
        await eventually(lambda: len(polls) > 3, "the second to poll for a slot")
        [member] = await raw.zrange(SLOTS, 0, -1)
        assert member.endswith(b":a")
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        assert await raw.zrange(SLOTS, 0, -1) == [member]
        holder.cancel()
        await asyncio.gather(holder, return_exceptions=True)

    assert entered == ["a"]
    assert await raw.exists(SLOTS) == 0


class RecordingBudget(RequestBudget):
    """Logs each query slot taken and given back, and counts requests."""

    def __init__(self, log: list[tuple[str, str]]) -> None:
        self.log = log
        self.requests = 0

    async def acquire(self, key: str, site_id: str | None) -> None:
        self.requests += 1

    async def rate_limited(self, key: str, site_id: str | None, retry_after: float | None) -> None:
        raise AssertionError("no 429 in this test")

    @contextlib.asynccontextmanager
    async def query_slot(self, key: str, site_id: str) -> AsyncIterator[None]:
        self.log.append(("hold", site_id))
        try:
            yield
        finally:
            self.log.append(("release", site_id))


async def test_a_resumed_query_holds_a_slot_while_it_runs(tmp_path: Path) -> None:
    log: list[tuple[str, str]] = []
    ledger = SQLiteLedger(tmp_path / "ledger.db")
    async with (
        Emulator(sites=bp_sites(2, patients=90), seed=3, page_size=600) as emulator,
        ledger,
        HaloClient(
            emulator.api_key, base_url=emulator.base_url, budget=RecordingBudget(log)
        ) as halo,
    ):
        sites = [site.id for site in emulator.sites]
        fan_out = halo.fan_out(
            "SELECT * FROM PATIENTS", sites, stream=True, ledger=ledger, run_id="r", poll=FAST_POLL
        )
        async with contextlib.aclosing(fan_out) as first:
            async for item in first:
                assert isinstance(item, SitePage)
                break  # stops with every query created and not delivered in full
        log.clear()

        def on_event(event: FanOutEvent) -> None:
            if event.kind is FanOutEventKind.RESUMED:
                log.append(("resumed", event.site_id))

        async for _ in halo.fan_out(
            "SELECT * FROM PATIENTS",
            sites,
            stream=True,
            ledger=ledger,
            run_id="r",
            poll=FAST_POLL,
            on_event=on_event,
        ):
            pass

    resumed = [site for kind, site in log if kind == "resumed"]
    assert resumed, "nothing was resumed"
    for site in resumed:
        assert (
            log.index(("hold", site)) < log.index(("resumed", site)) < log.index(("release", site))
        )
    assert len(emulator.queries(mode="async")) == 2


async def test_a_budget_whose_slots_fail_fails_the_site_before_anything_is_sent() -> None:
    class Broken(RecordingBudget):
        @contextlib.asynccontextmanager
        async def query_slot(self, key: str, site_id: str) -> AsyncIterator[None]:
            raise OSError("redis is down")
            yield

    async with (
        Emulator(sites=bp_sites(1), seed=5) as emulator,
        HaloClient(emulator.api_key, base_url=emulator.base_url, budget=Broken([])) as halo,
    ):
        [outcome] = [item async for item in halo.fan_out("SELECT 1", [emulator.sites[0].id])]

    assert isinstance(outcome, SiteOutcome)
    assert isinstance(outcome.error, HaloConnectionError)
    assert "query slot failed: " in str(outcome.error)
    assert emulator.queries() == []


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"max_in_flight_queries": 0}, "max_in_flight_queries"),
        ({"max_in_flight_queries": 1.5}, "max_in_flight_queries"),
        ({"max_in_flight_queries": 2, "lease": 0}, "lease"),
        ({"max_in_flight_queries": 2, "lease": float("inf")}, "lease"),
    ],
)
def test_bad_query_slot_settings_are_refused(arguments: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        RedisRequestBudget("redis://localhost", rate=1, **arguments)

    assert raised.value.field == named


async def test_a_budget_without_a_bound_holds_nothing(
    redis_url: str, raw: redis.asyncio.Redis
) -> None:
    async with RedisRequestBudget(redis_url, rate=1) as budget, budget.query_slot("k", "a"):
        assert await raw.exists(SLOTS) == 0
    assert "max_in_flight_queries" not in repr(budget)
