"""The emulator at an integrator's scale: runaway queries stay on their own site."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from halo_async.emulator import Emulator, SiteSpec

RUNAWAY = (
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT COUNT(*) AS n FROM r"
)
ENDLESS_ROWS = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r"


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    # statement_timeout far beyond the test: only closing the emulator may end the runaway.
    async with Emulator(
        [SiteSpec(patients=30), SiteSpec(patients=30), SiteSpec(pms_type="Zedmed", patients=30)],
        seed=3,
        api_key="k",
        statement_timeout=120,
        max_result_rows=10_000,
        sql_workers=2,
    ) as emulator:
        yield emulator


@pytest.fixture
async def http(emu: Emulator) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        emu.base_url, headers={"Ocp-Apim-Subscription-Key": "k"}
    ) as session:
        yield session


async def post(http: aiohttp.ClientSession, site: str, kind: str, sql: str) -> tuple[int, Any]:
    path = f"/integrator/sites/{site}/queries/{kind}"
    async with http.post(path, json={"command": {"text": sql}}) as response:
        return response.status, await response.json()


async def test_other_sites_answer_while_one_runs_away_and_close_still_returns(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    runaway_site, other, zedmed = (s.id for s in emu.sites)
    status, created = await post(http, runaway_site, "async", RUNAWAY)
    assert status == 201
    await emu.wait_for_query(created["id"], "executing")

    for site in (other, zedmed, other):
        status, body = await post(http, site, "immediate", "SELECT 1 AS n")
        assert status == 200, body
    # Both other sites answered, one of them twice, while the runaway was still running.
    assert emu.query(created["id"]).status == "executing"  # type: ignore[union-attr]

    # Closing interrupts the runaway statement instead of waiting for it.
    await asyncio.wait_for(emu.close(), timeout=30)


async def test_a_result_without_end_fails_on_the_row_limit(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    site = emu.sites[0].id
    status, body = await post(http, site, "immediate", ENDLESS_ROWS)
    assert status == 413
    assert body["errorDetails"]["errorCode"] == 413
    assert "10,000 rows" in body["errorDetails"]["errorMessage"]

    status, created = await post(http, site, "async", ENDLESS_ROWS)
    record = await emu.wait_for_query(created["id"])
    assert record.status == "executionFailed"
    assert record.error is not None
    assert record.error["errorCode"] == 413
    # The site is fine afterwards.
    status, body = await post(http, site, "immediate", "SELECT 1 AS n")
    assert status == 200


async def test_a_statement_timeout_is_a_sql_error_with_the_servers_number() -> None:
    async with (
        Emulator([SiteSpec(patients=10)], api_key="k", statement_timeout=0.05) as emu,
        aiohttp.ClientSession(emu.base_url, headers={"Ocp-Apim-Subscription-Key": "k"}) as http,
    ):
        status, body = await post(http, emu.sites[0].id, "immediate", RUNAWAY)
    assert status == 400
    assert body["status"] == "executionFailed"
    assert body["errorDetails"]["errorType"] == "mssql"
    assert body["errorDetails"]["errorCode"] == -2


async def test_a_body_shorter_than_its_content_length_times_out_and_the_site_still_answers() -> (
    None
):
    async with Emulator(sites=1, body_timeout=0.05) as emu:
        site = emu.sites[0].id
        reader, writer = await asyncio.open_connection(emu.host, emu.port)
        writer.write(
            f"POST /integrator/sites/{site}/queries/async HTTP/1.1\r\n"
            f"Host: {emu.host}\r\nOcp-Apim-Subscription-Key: {emu.api_key}\r\n"
            "Content-Type: application/json\r\nContent-Length: 400\r\n\r\n"
            '{"command": {"text": "SELECT 1"'.encode()
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        await writer.wait_closed()
        headers = {"Ocp-Apim-Subscription-Key": emu.api_key}
        async with (
            aiohttp.ClientSession(headers=headers) as http,
            http.get(f"{emu.base_url}/integrator/sites/{site}") as response,
        ):
            assert response.status == 200

    assert status_line.split()[1] == b"408"
