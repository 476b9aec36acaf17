"""Injected faults over real sockets: 429 + Retry-After, 5xx, dropped connections, latency."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from halo_async.emulator import Emulator, ManualClock, SiteSpec

KEY = "fault-key"


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(
        [SiteSpec(patients=20), SiteSpec(patients=20)], api_key=KEY, clock=ManualClock()
    ) as emulator:
        yield emulator


async def test_faults_are_off_by_default(http: aiohttp.ClientSession, emu: Emulator) -> None:
    for _ in range(20):
        async with http.get(f"/integrator/sites/{emu.sites[0].id}") as response:
            assert response.status == 200
    assert not emu.faults.enabled


async def test_scripted_429_carries_retry_after_then_recovers(
    http: aiohttp.ClientSession, emu: Emulator
) -> None:
    emu.faults.fail_next("getSite", 2, status=429, retry_after=7)
    path = f"/integrator/sites/{emu.sites[0].id}"
    for _ in range(2):
        async with http.get(path) as response:
            assert response.status == 429
            assert response.headers["Retry-After"] == "7"
            body = await response.json()
            assert body["error"]["status"] == 429
            assert body["error"]["statusText"] == "Too Many Requests"
            assert "7 seconds" in body["error"]["message"]
    async with http.get(path) as response:
        assert response.status == 200
    assert emu.stats.requests["getSite"] == 3
    assert emu.stats.responses[("getSite", 429)] == 2


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (500, "Failed to create query container in CosmosDB."),
        (502, "The practice management software returned an unexpected result code."),
        (
            503,
            "Site could not be contacted, please try again later or contact a system "
            "administrator.",
        ),
        (504, "Query took more than 30 seconds to return a result."),
    ],
)
async def test_scripted_server_errors_use_the_oas_texts(
    http: aiohttp.ClientSession, emu: Emulator, status: int, message: str
) -> None:
    emu.faults.fail_next("createAsyncQuery", status=status)
    site = emu.sites[0].id
    async with http.post(
        f"/integrator/sites/{site}/queries/async", json={"command": {"text": "SELECT 1 AS One"}}
    ) as response:
        assert response.status == status
        assert await response.json() == {
            "error": {"status": status, "statusText": response.reason, "message": message}
        }
    assert emu.state.queries(site) == []  # the server did not act on it


async def test_dropped_post_closes_the_connection_after_creating_the_query(
    http: aiohttp.ClientSession, emu: Emulator
) -> None:
    emu.faults.fail_next("createAsyncQuery", drop=True)
    site = emu.sites[0].id
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with http.post(
            f"/integrator/sites/{site}/queries/async",
            json={"command": {"text": "SELECT 1 AS One"}},
        ):
            pass
    assert emu.stats.dropped["createAsyncQuery"] == 1
    # The caller cannot know, but the query exists: that is what makes the outcome unknown.
    assert len(emu.state.queries(site)) == 1


async def test_dropped_get_never_answers(http: aiohttp.ClientSession, emu: Emulator) -> None:
    # aiohttp retries an idempotent request once when the server disconnects, so two drops.
    emu.faults.fail_next("getSite", 2, drop=True)
    path = f"/integrator/sites/{emu.sites[0].id}"
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with http.get(path):
            pass
    assert emu.stats.dropped["getSite"] >= 1
    assert emu.stats.responses[("getSite", 200)] == 0
    emu.faults.clear()
    async with http.get(path) as response:
        assert response.status == 200


async def test_per_site_rules_leave_other_sites_alone(
    http: aiohttp.ClientSession, emu: Emulator
) -> None:
    sick, healthy = emu.sites[0].id, emu.sites[1].id
    emu.faults.set(site=sick, server_errors=1.0, server_error_statuses=(502,))
    for _ in range(5):
        async with http.get(f"/integrator/sites/{sick}") as response:
            assert response.status == 502
        async with http.get(f"/integrator/sites/{healthy}") as response:
            assert response.status == 200
    emu.faults.clear()
    async with http.get(f"/integrator/sites/{sick}") as response:
        assert response.status == 200


async def test_probabilistic_rate_limits_are_seeded(
    http: aiohttp.ClientSession, emu: Emulator
) -> None:
    emu.faults.set("getSite", rate_limits=0.5, retry_after=2)
    statuses = []
    for _ in range(40):
        async with http.get(f"/integrator/sites/{emu.sites[0].id}") as response:
            statuses.append(response.status)
            if response.status == 429:
                assert response.headers["Retry-After"] == "2"
    assert 5 < statuses.count(429) < 35
    assert set(statuses) == {200, 429}


async def test_added_latency_waits_on_the_emulator_clock(
    http: aiohttp.ClientSession, emu: Emulator
) -> None:
    clock = emu.clock
    assert isinstance(clock, ManualClock)
    emu.faults.set("getSite", latency=30)
    request = asyncio.ensure_future(http.get(f"/integrator/sites/{emu.sites[0].id}"))
    for _ in range(2000):
        if 30.0 in clock.pending:
            break
        await asyncio.sleep(0.001)
    assert not request.done()
    clock.advance(30)
    response = await request
    assert response.status == 200
    response.release()


async def test_async_query_upload_failure_and_site_drop(
    http: aiohttp.ClientSession, emu: Emulator
) -> None:
    site = emu.sites[0].id
    emu.faults.set("createAsyncQuery", upload_failures=1.0)
    async with http.post(
        f"/integrator/sites/{site}/queries/async", json={"command": {"text": "SELECT 1 AS One"}}
    ) as response:
        query_id = (await response.json())["id"]
    await emu.wait_for_query(query_id)
    async with http.get(f"/integrator/sites/{site}/queries/{query_id}") as response:
        body = await response.json()
    assert body["status"] == "uploadFailed"
    assert body["errorDetails"]["errorType"] == "haloLink"
    assert "endTime" in body["statusTiming"]["uploading"]

    emu.faults.clear()
    emu.faults.set(site=site, site_offline=1.0)
    async with http.post(
        f"/integrator/sites/{site}/queries/async", json={"command": {"text": "SELECT 1 AS One"}}
    ) as response:
        query_id = (await response.json())["id"]
    record = await emu.wait_for_query(query_id)
    assert record.status in {"initialisationFailedSiteOffline", "executionFailed"}
    async with http.post(
        f"/integrator/sites/{site}/queries/immediate", json={"command": {"text": "SELECT 1"}}
    ) as response:
        assert response.status == 504
        assert (await response.json())["error"]["message"] == "Site is offline"


async def test_early_page_expiry_is_410(http: aiohttp.ClientSession, emu: Emulator) -> None:
    site = emu.sites[0].id
    async with http.post(
        f"/integrator/sites/{site}/queries/async", json={"command": {"text": "SELECT 1 AS One"}}
    ) as response:
        query_id = (await response.json())["id"]
    await emu.wait_for_query(query_id, "successful")
    emu.faults.set("getResultPage", page_expiry=1.0)
    async with http.get(f"/integrator/sites/{site}/queries/{query_id}/results/1") as response:
        assert response.status == 410
