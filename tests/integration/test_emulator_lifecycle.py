"""The async lifecycle over HTTP on a manual clock: stamps, progressive pages, expiry."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import orjson
import pytest

from halo_async.emulator import Emulator, Latency, ManualClock, SiteSpec

KEY = "lifecycle-key"


async def eventually(predicate: Callable[[], bool], what: str) -> None:
    """Let the server's tasks and SQL threads run until ``predicate`` holds (~2 s at most)."""
    for _ in range(2000):
        if predicate():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"timed out waiting for {what}")


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


async def get_json(http: aiohttp.ClientSession, path: str) -> tuple[int, Any]:
    async with http.get(path) as response:
        return response.status, await response.json()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def emu(clock: ManualClock) -> AsyncIterator[Emulator]:
    latency = Latency(initialising=1, queue_pickup=2, execution=3, page_upload=4)
    async with Emulator(
        [SiteSpec(patients=400)], api_key=KEY, clock=clock, latency=latency, page_size=4096
    ) as emulator:
        yield emulator


async def test_every_phase_is_visible_and_stamped(
    http: aiohttp.ClientSession, emu: Emulator, clock: ManualClock
) -> None:
    site = emu.sites[0].id
    t0 = clock.now()
    async with http.post(
        f"/integrator/sites/{site}/queries/async",
        json={"command": {"text": "SELECT INTERNALID, SURNAME, MEDICARENO FROM PATIENTS"}},
    ) as response:
        assert response.status == 201
        query_id = (await response.json())["id"]
    path = f"/integrator/sites/{site}/queries/{query_id}"
    statuses = []
    for seconds, status in ((1, "queued"), (2, "executing"), (3, "uploading")):
        statuses.append((await get_json(http, path))[1]["status"])
        await eventually(lambda s=seconds: float(s) in clock.pending, f"the {seconds}s phase")
        clock.advance(seconds)
        await emu.wait_for_query(query_id, status)
    _, uploading = await get_json(http, path)
    statuses.append(uploading["status"])
    assert statuses == ["initialising", "queued", "executing", "uploading"]
    assert uploading["metrics"]["sqlExecutionDuration"] >= 3000
    pages = uploading["result"]["pages"]
    assert len(pages) >= 3
    assert [p["status"] for p in pages[:2]] == ["uploading", "queued"]

    # Page 1 turns cached while the rest still uploads; a client can fetch it early.
    status, _ = await get_json(http, f"{path}/results/1")
    assert status == 404
    clock.advance(4)
    await eventually(lambda: emu.query(query_id).pages[1].status == "uploading", "page 2 upload")  # type: ignore[union-attr]
    _, partial = await get_json(http, path)
    assert partial["status"] == "uploading"
    assert [p["status"] for p in partial["result"]["pages"][:2]] == ["cached", "uploading"]
    status, first = await get_json(http, f"{path}/results/1")
    assert status == 200
    rows = orjson.loads(base64.b64decode(first["data"]))
    assert len(rows) == pages[0]["rows"]["count"]

    for _ in range(len(pages) - 1):
        await eventually(lambda: 4.0 in clock.pending, "the next page upload")
        clock.advance(4)
    await emu.wait_for_query(query_id, "successful")
    _, done = await get_json(http, path)
    timing = {
        phase: {k: parse(v) for k, v in stamps.items()}
        for phase, stamps in done["statusTiming"].items()
    }
    at = lambda seconds: t0 + timedelta(seconds=seconds)  # noqa: E731
    assert timing["initialising"] == {"startTime": at(0), "endTime": at(1)}
    assert timing["queued"] == {"startTime": at(1), "endTime": at(3)}
    assert timing["executing"] == {"startTime": at(3), "endTime": at(6)}
    assert timing["uploading"] == {"startTime": at(6), "endTime": at(6 + 4 * len(pages))}
    assert parse(done["completedAt"]) == at(6 + 4 * len(pages))
    assert all(p["status"] == "cached" for p in done["result"]["pages"])

    # Pages cover the rows in order, 0-based inclusive ranges, each within the page size.
    all_rows: list[Any] = []
    for page in done["result"]["pages"]:
        async with http.get(f"{path}/results/{page['pageNumber']}") as response:
            body = await response.json()
            chunk = orjson.loads(base64.b64decode(body["data"]))
            assert int(response.headers["Rows-Range-Start"]) == len(all_rows)
            assert int(response.headers["Rows-Range-End"]) == len(all_rows) + len(chunk) - 1
            assert int(response.headers["Size"]) == page["size"] <= 4096
            all_rows.extend(chunk)
    assert len(all_rows) == done["result"]["rows"] == 400


async def test_results_expire_after_24_hours_with_410(
    http: aiohttp.ClientSession, emu: Emulator, clock: ManualClock
) -> None:
    emu.latency = Latency()
    site = emu.sites[0].id
    async with http.post(
        f"/integrator/sites/{site}/queries/async", json={"command": {"text": "SELECT 1 AS One"}}
    ) as response:
        query_id = (await response.json())["id"]
    await emu.wait_for_query(query_id, "successful")
    page = f"/integrator/sites/{site}/queries/{query_id}/results/1"
    clock.advance(86_399)
    assert (await get_json(http, page))[0] == 200
    clock.advance(2)
    for path in (page, f"{page}/stream"):
        status, body = await get_json(http, path)
        assert status == 410
        assert body == {
            "error": {
                "status": 410,
                "statusText": "Gone",
                "message": "Access to the target resource is permanently no longer available "
                "at the origin server.",
            }
        }


async def test_queued_query_waits_for_an_offline_site_then_expires(
    http: aiohttp.ClientSession, emu: Emulator, clock: ManualClock
) -> None:
    site = emu.sites[0].id
    async with http.post(
        f"/integrator/sites/{site}/queries/async",
        json={"command": {"text": "SELECT 1 AS One"}, "maxTimeInQueue": 60_000},
    ) as response:
        query_id = (await response.json())["id"]
    await eventually(lambda: 1.0 in clock.pending, "initialising")
    clock.advance(1)
    await emu.wait_for_query(query_id, "queued")
    # Offline once Link has begun to pick the query up (on some event loops the pickup
    # would otherwise not have begun yet, and the query would wait without one).
    await eventually(lambda: 2.0 in clock.pending, "the queue pickup")
    emu.set_site_offline(site)
    # an immediate query against the offline site is refused before any attempt
    async with http.post(
        f"/integrator/sites/{site}/queries/immediate", json={"command": {"text": "SELECT 1"}}
    ) as response:
        assert response.status == 503
    clock.advance(2)
    path = f"/integrator/sites/{site}/queries/{query_id}"
    # queued at t=1 with 60 s to live; the pickup ended at t=3
    await eventually(lambda: 58.0 in clock.pending, "the queue deadline timer")
    assert (await get_json(http, path))[1]["status"] == "queued"  # Link holds it while offline
    clock.advance(58)
    status, body = await get_json(http, path)
    assert status == 200
    assert body["status"] == "expiredInQueue"
    queued = body["statusTiming"]["queued"]
    assert parse(queued["endTime"]) - parse(queued["startTime"]) == timedelta(seconds=60)
    assert body["completedAt"] == queued["endTime"]
    assert "executing" not in body["statusTiming"]


async def test_registered_query_reruns_on_the_emulator_clock(
    http: aiohttp.ClientSession, emu: Emulator, clock: ManualClock
) -> None:
    emu.latency = Latency()
    site = emu.sites[0].id
    body = {
        "name": "count",
        "registeredQueryType": "query",
        "frequency": 60,
        "duration": 120,
        "registerCommand": {"command": {"text": "SELECT COUNT(*) AS N FROM PATIENTS"}},
    }
    async with http.post(f"/integrator/sites/{site}/queries/registered", json=body) as response:
        assert response.status == 202
        query_id = (await response.json())["id"]
    path = f"/integrator/sites/{site}/queries/registered/{query_id}"
    record = emu.state.registered(emu.sites[0], query_id)
    await emu.state.wait_until(lambda: record.succeeded == 1, timeout=5)
    _, first = await get_json(http, path)
    clock.advance(60)
    await emu.state.wait_until(lambda: record.succeeded == 2, timeout=5)
    _, second = await get_json(http, path)
    assert second["lastHash"] == first["lastHash"]  # unchanged result, unchanged hash
    async with http.post(
        f"/integrator/sites/{site}/queries/immediate",
        json={
            "command": {
                "text": "DELETE FROM PATIENTS WHERE INTERNALID = 1",
                "executionMode": "nonQuery",
            }
        },
    ) as response:
        assert response.status == 200
    clock.advance(60)
    await emu.state.wait_until(lambda: record.status == "completed", timeout=5)
    _, third = await get_json(http, path)
    assert third["status"] == "completed"
    assert third["metrics"]["executionSucceededCount"] == 3
    assert third["lastHash"] != first["lastHash"]
    _, result = await get_json(http, f"{path}/results")
    assert orjson.loads(base64.b64decode(result["data"])) == [{"N": 399}]
