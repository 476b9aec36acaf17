"""Fixtures of the integration tests. The emulator and a client on it come from the project's
own pytest plugin (``halo_emulator``, ``halo_client``, configured by the ``halo_emulator``
marker), as users get them; the raw ``http`` session below is for the emulator's own tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from halo_async.emulator import Emulator


@pytest.fixture
async def http(emu: Emulator) -> AsyncIterator[aiohttp.ClientSession]:
    """A raw aiohttp session on a module's own ``emu`` fixture, with its key."""
    headers = {"Ocp-Apim-Subscription-Key": emu.api_key}
    async with aiohttp.ClientSession(emu.base_url, headers=headers) as session:
        yield session
