"""The pytest plugin's fixtures, as users get them: an emulator and a client pointed at it."""

from __future__ import annotations

import pytest

from halo_async import HaloClient
from halo_async.emulator import Emulator
from halo_async.errors import SqlExecutionError


async def test_halo_client_talks_to_halo_emulator(
    halo_emulator: Emulator, halo_client: HaloClient
) -> None:
    site = next(s for s in halo_emulator.sites if s.pms_type == "BestPractice")

    query = await halo_client.immediate_query(site.id, "SELECT TOP 3 INTERNALID FROM PATIENTS")

    assert len(query.decode_rows()) == 3
    assert halo_client.base_url == halo_emulator.base_url


async def test_halo_client_raises_typed_errors(
    halo_emulator: Emulator, halo_client: HaloClient
) -> None:
    site = next(s for s in halo_emulator.sites if s.pms_type == "BestPractice")

    with pytest.raises(SqlExecutionError) as caught:
        await halo_client.immediate_query(site.id, "SELECT * FROM NO_SUCH_TABLE")

    assert caught.value.error_code == 208


@pytest.mark.halo_emulator(sites=2)
async def test_halo_client_retries_without_waiting(
    halo_emulator: Emulator, halo_client: HaloClient
) -> None:
    halo_emulator.faults.fail_next("getSite", 2, status=429, retry_after=30)

    site = await halo_client.get_site(halo_emulator.sites[0].id)

    assert site.id == halo_emulator.sites[0].id
    assert halo_emulator.stats.requests["getSite"] == 3
