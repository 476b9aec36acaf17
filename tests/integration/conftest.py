"""Fixtures of the integration tests: the emulator over real sockets and clients on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from halo_async import HaloClient
from halo_async.emulator import Emulator
from tests.support import FAST_RETRY, bp_sites


@pytest.fixture
async def emulator(request: pytest.FixtureRequest) -> AsyncIterator[Emulator]:
    """Six small Best Practice sites; ``@pytest.mark.emu(**kwargs)`` overrides arguments."""
    marker = request.node.get_closest_marker("emu")
    kwargs: dict[str, Any] = {"sites": bp_sites(6), "seed": 7, "page_size": 2_000}
    if marker is not None:
        kwargs.update(marker.kwargs)
    async with Emulator(**kwargs) as emu:
        yield emu


@pytest.fixture
async def halo(emulator: Emulator) -> AsyncIterator[HaloClient]:
    """A client on ``emulator`` whose retries do not wait."""
    async with HaloClient(emulator.api_key, base_url=emulator.base_url, retry=FAST_RETRY) as c:
        yield c


@pytest.fixture
async def http(emu: Emulator) -> AsyncIterator[aiohttp.ClientSession]:
    """A raw aiohttp session on a module's own ``emu`` fixture, with its key."""
    headers = {"Ocp-Apim-Subscription-Key": emu.api_key}
    async with aiohttp.ClientSession(emu.base_url, headers=headers) as session:
        yield session
