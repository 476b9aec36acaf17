"""The emulator's practice clocks over real sockets: GETDATE() is the practice's local time and
GETUTCDATE() is UTC, whatever the zone of the machine running the emulator."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import pytest

from halo_async.emulator import Emulator, ManualClock, SiteSpec

KEY = "dialect-key"


@pytest.fixture
def host_in_new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


async def immediate(emu: Emulator, site: str, text: str) -> list[dict[str, Any]]:
    command = {"command": {"text": text, "executionMode": "reader"}}
    headers = {"Ocp-Apim-Subscription-Key": KEY}
    async with (
        aiohttp.ClientSession(emu.base_url, headers=headers) as http,
        http.post(f"/integrator/sites/{site}/queries/immediate", json=command) as response,
    ):
        body = await response.json()
    assert response.status == 200, body
    rows: list[dict[str, Any]] = orjson.loads(base64.b64decode(body["result"]["data"]))
    return rows


@pytest.mark.usefixtures("host_in_new_york")
async def test_practice_clock_is_sydney_time_and_utc_is_utc() -> None:
    clock = ManualClock(datetime(2025, 1, 10, 22, 0, 0, tzinfo=UTC))  # 9 am in Sydney (AEDT)
    specs = [SiteSpec(pms_site_id="6001", patients=30), SiteSpec(pms_type="Zedmed", patients=30)]
    async with Emulator(specs, seed=4, api_key=KEY, clock=clock) as emu:
        bp, zedmed = emu.sites[0].id, emu.sites[1].id
        assert await immediate(
            emu, bp, "SET NOCOUNT ON SELECT GETDATE() AS L, GETUTCDATE() AS U, DB_NAME() AS D"
        ) == [{"L": "2025-01-11T09:00:00", "U": "2025-01-10T22:00:00", "D": "BPSPatients"}]
        assert await immediate(
            emu,
            zedmed,
            "SELECT CURRENT_DATE + 1 AS T, CAST('NOW' AS TIMESTAMP) AS N FROM RDB$DATABASE",
        ) == [{"T": "2025-01-12T00:00:00", "N": "2025-01-11T09:00:00"}]
