"""The per-site status batcher of fan_out: coalescing, and asks that arrive mid-flight."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from halo_async import models
from halo_async.errors import NotFoundError, SiteUnavailableError
from halo_async.fanout import _StatusBatcher

SITE = "3f91c577-20a8-467b-8991-b96dfb90e8c6"


def query(query_id: str, status: str = "executing") -> models.AsyncQuery:
    return models.AsyncQuery(id=query_id, site_id=SITE, status=status, mode="async")


class FakeClient:
    """Answers batch status requests, optionally holding each one until released."""

    def __init__(self, *, hold: bool = False, fail: Exception | None = None) -> None:
        self.batches: list[list[str]] = []
        self.release = asyncio.Event()
        self.hold = hold
        self.fail = fail

    async def _get_query_statuses(
        self, site: str, query_ids: list[str], **_: object
    ) -> list[models.QueryStatusResult]:
        self.batches.append(list(query_ids))
        if self.hold:
            await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return [
            models.QueryStatusResult(query_id=q, status="found", query=query(q))
            if q != "missing"
            else models.QueryStatusResult(query_id=q, status="notFound")
            for q in query_ids
        ]


async def test_asks_in_the_same_tick_share_one_request() -> None:
    client = FakeClient()
    batcher = _StatusBatcher(client, SITE)  # type: ignore[arg-type]

    answers = await asyncio.gather(*(batcher.status(q) for q in ("a", "b", "c")))

    assert [a.id for a in answers] == ["a", "b", "c"]
    assert client.batches == [["a", "b", "c"]]


async def test_an_ask_arriving_while_a_batch_is_in_flight_is_answered() -> None:
    client = FakeClient(hold=True)
    batcher = _StatusBatcher(client, SITE)  # type: ignore[arg-type]

    first = asyncio.ensure_future(batcher.status("a"))
    for _ in range(3):  # the first batch request is now in flight, held by the fake
        await asyncio.sleep(0)
    assert client.batches == [["a"]]
    second = asyncio.ensure_future(batcher.status("b"))
    await asyncio.sleep(0)
    client.release.set()

    done = await asyncio.wait_for(asyncio.gather(first, second), timeout=5)
    assert [q.id for q in done] == ["a", "b"]
    assert client.batches == [["a"], ["b"]]


async def test_failures_reach_every_ask_of_the_batch() -> None:
    error = SiteUnavailableError("down", status=503, method="POST", path="/x")
    batcher = _StatusBatcher(FakeClient(fail=error), SITE)  # type: ignore[arg-type]

    results: list[Any] = await asyncio.gather(
        batcher.status("a"), batcher.status("b"), return_exceptions=True
    )

    assert results == [error, error]


async def test_an_unknown_query_is_not_found() -> None:
    batcher = _StatusBatcher(FakeClient(), SITE)  # type: ignore[arg-type]

    with pytest.raises(NotFoundError, match="missing"):
        await batcher.status("missing")


async def test_asks_due_by_the_first_deadline_share_one_request() -> None:
    client = FakeClient()
    batcher = _StatusBatcher(client, SITE)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    started = loop.time()

    # Three jobs' jittered windows: a and b overlap, c may not be asked before 0.3 s.
    a = asyncio.ensure_future(batcher.status("a", 0.01, 0.05))
    b = asyncio.ensure_future(batcher.status("b", 0.02, 0.2))
    c = asyncio.ensure_future(batcher.status("c", 0.3, 0.4))
    await asyncio.gather(a, b)
    first_batch_at = loop.time() - started
    await c

    assert client.batches == [["a", "b"], ["c"]]
    assert 0.04 <= first_batch_at < 0.2


async def test_a_more_urgent_ask_is_not_held_back_by_a_later_deadline() -> None:
    client = FakeClient()
    batcher = _StatusBatcher(client, SITE)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()

    slow = asyncio.ensure_future(batcher.status("slow", 5.0, 10.0))
    await asyncio.sleep(0)
    started = loop.time()
    urgent = await batcher.status("urgent")

    assert urgent.id == "urgent"
    assert loop.time() - started < 1.0
    assert client.batches == [["urgent"]]
    slow.cancel()
    await asyncio.gather(slow, return_exceptions=True)
    await batcher.close()


async def test_hurry_makes_a_waiting_ask_due_now() -> None:
    client = FakeClient()
    batcher = _StatusBatcher(client, SITE)  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    started = loop.time()

    waiting = asyncio.ensure_future(batcher.status("a", 30.0, 60.0))
    await asyncio.sleep(0)
    batcher.hurry("a")  # a webhook said query a finished

    assert (await asyncio.wait_for(waiting, timeout=5)).id == "a"
    assert loop.time() - started < 5
    assert client.batches == [["a"]]
