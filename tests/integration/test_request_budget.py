"""A request budget in a real Redis, shared by several processes and clients: no more
requests are granted than the bucket holds, and a 429 one client got holds the site for all.
Clocks are injected, so the tests count grants instead of timing them."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio

from halo_async import HaloClient, RetryPolicy
from halo_async.budget import RedisRequestBudget, RequestBudget, key_fingerprint
from halo_async.emulator import Emulator
from halo_async.errors import HaloConnectionError, InvalidArgumentError, RateLimitedError
from tests.support import FakeTime, bp_sites, no_sleep

ROOT = Path(__file__).resolve().parents[2]

# One process's share of the contention: as many grants as it can get at one frozen instant.
TAKER = """
import asyncio, sys
from halo_async.budget import RedisRequestBudget

async def main():
    budget = RedisRequestBudget(sys.argv[1], rate=1, burst=25, clock=lambda: 1000.0)
    async with budget:
        granted = [await budget.try_acquire("k", None) == 0 for _ in range(20)]
    print(sum(granted))

asyncio.run(main())
"""


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(sites=bp_sites(2), seed=3) as emu:
        yield emu


async def test_processes_sharing_a_bucket_are_granted_no_more_than_it_holds(
    redis_url: str,
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", TAKER, redis_url, env=env, stdout=asyncio.subprocess.PIPE
        )
        for _ in range(4)
    ]
    outputs = [await asyncio.wait_for(p.communicate(), 60) for p in processes]

    # 4 x 20 asks against a bucket of 25 at one instant: exactly 25 granted, however the
    # processes interleaved.
    assert sum(int(out) for out, _ in outputs) == 25
    # Five seconds later at one request per second, five more, then a wait of a second.
    later = RedisRequestBudget(redis_url, rate=1, burst=25, clock=lambda: 1005.0)
    async with later:
        asks = [await later.try_acquire("k", None) for _ in range(6)]
    assert asks[:5] == [0.0] * 5
    assert asks[5] == pytest.approx(1.0)


async def test_a_client_waits_for_the_budget_before_each_request(
    emulator: Emulator, redis_url: str
) -> None:
    time = FakeTime()
    budget = RedisRequestBudget(redis_url, rate=10, burst=2, clock=time, sleep=time.sleep)
    site = emulator.sites[0].id
    async with (
        budget,
        HaloClient(emulator.api_key, base_url=emulator.base_url, budget=budget) as halo,
    ):
        for _ in range(5):
            await halo.get_site(site)

    # Two from the burst, then three at a tenth of a second each.
    assert time.now - 1000.0 == pytest.approx(0.3)
    assert len(time.waits) == 3


async def test_a_429_one_client_got_holds_the_site_for_every_client_on_the_budget(
    emulator: Emulator, redis_url: str
) -> None:
    first_site, other_site = (site.id for site in emulator.sites)
    time = FakeTime()
    emulator.faults.fail_next("getSite", status=429, retry_after=7, site=first_site)
    # Two budgets on one Redis, as two worker processes would have.
    budgets = [
        RedisRequestBudget(redis_url, rate=1000, burst=100, clock=time, sleep=time.sleep)
        for _ in range(2)
    ]
    one = HaloClient(
        emulator.api_key, base_url=emulator.base_url, retry=RetryPolicy.none(), budget=budgets[0]
    )
    other = HaloClient(emulator.api_key, base_url=emulator.base_url, budget=budgets[1])
    async with budgets[0], budgets[1], one, other:
        with pytest.raises(RateLimitedError):
            await one.get_site(first_site)
        await other.get_site(other_site)  # another site: not held
        assert time.waits == []
        await other.get_site(first_site)  # held until the other client's Retry-After passed

    assert time.waits == [pytest.approx(7.0)]


async def test_the_budget_never_stores_the_api_key(emulator: Emulator, redis_url: str) -> None:
    emulator.faults.fail_next("getSite", status=429, retry_after=1)
    time = FakeTime()
    budget = RedisRequestBudget(redis_url, rate=5, clock=time, sleep=time.sleep)
    retry = RetryPolicy(sleep=no_sleep)
    async with (
        budget,
        HaloClient(
            emulator.api_key, base_url=emulator.base_url, retry=retry, budget=budget
        ) as halo,
    ):
        await halo.get_site(emulator.sites[0].id)

    raw = redis.asyncio.from_url(redis_url)
    try:
        keys = [key.decode() async for key in raw.scan_iter()]
        values = [str(await raw.dump(key)) for key in keys]
    finally:
        await raw.aclose()
    assert keys, "the budget stored nothing"
    assert all(key.startswith(f"halo:budget:{key_fingerprint(emulator.api_key)}") for key in keys)
    assert not any(emulator.api_key in text for text in keys + values)
    assert emulator.api_key not in repr(budget)


async def test_a_budget_that_fails_fails_the_request_as_unsent(emulator: Emulator) -> None:
    class Broken(RequestBudget):
        async def acquire(self, key: str, site_id: str | None) -> None:
            raise OSError("redis is down")

        async def rate_limited(
            self, key: str, site_id: str | None, retry_after: float | None
        ) -> None:
            raise AssertionError("never asked")

    async with HaloClient(emulator.api_key, base_url=emulator.base_url, budget=Broken()) as halo:
        with pytest.raises(HaloConnectionError, match="not sent, the request budget failed"):
            await halo.create_async_query(emulator.sites[0].id, "SELECT 1")

    assert emulator.queries(mode="async") == []


@pytest.mark.parametrize(
    ("arguments", "named"),
    [({"rate": 0}, "rate"), ({"rate": float("inf")}, "rate"), ({"rate": 1, "burst": 0}, "burst")],
)
def test_bad_budget_settings_are_refused(arguments: dict[str, float], named: str) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        RedisRequestBudget("redis://localhost", **arguments)  # type: ignore[arg-type]

    assert raised.value.field == named


def test_a_client_refuses_a_budget_that_is_not_one() -> None:
    with pytest.raises(InvalidArgumentError, match="budget must be a RequestBudget"):
        HaloClient("key", budget="redis://localhost")  # type: ignore[arg-type]
