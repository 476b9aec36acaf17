"""The client's lifecycle: configuration, the session it owns or borrows, closing, keys."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import aiohttp
import pytest

from halo_async import PRODUCTION_BASE_URL, STAGE_BASE_URL, HaloClient, errors
from tests.support import HaloMock

SITE = "3f91c577-20a8-467b-8991-b96dfb90e8c6"
SITE_URL = f"{PRODUCTION_BASE_URL}/integrator/sites/{SITE}"
KEY = "4f1c9e2ab7d84c0e9a55c3b1d2e6f708"


@pytest.fixture
def mocked() -> Iterator[HaloMock]:
    with HaloMock() as m:
        yield m


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process without HALO_* variables."""
    monkeypatch.delenv("HALO_API_KEY", raising=False)
    monkeypatch.delenv("HALO_BASE_URL", raising=False)


def sent_keys(m: HaloMock) -> list[str]:
    return [
        call.kwargs["headers"]["Ocp-Apim-Subscription-Key"]
        for calls in m.requests.values()
        for call in calls
    ]


# -- Configuration ---------------------------------------------------------------------------


@pytest.mark.usefixtures("no_env")
@pytest.mark.parametrize("key", [None, ""])
def test_no_api_key_is_a_configuration_error(key: str | None) -> None:
    with pytest.raises(errors.ConfigurationError, match="HALO_API_KEY"):
        HaloClient(key)


@pytest.mark.usefixtures("no_env")
def test_defaults_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HALO_API_KEY", KEY)

    default = HaloClient()
    monkeypatch.setenv("HALO_BASE_URL", STAGE_BASE_URL + "/")
    stage = HaloClient()
    explicit = HaloClient("other-key", base_url="http://127.0.0.1:8080")

    assert default.api_key == KEY
    assert default.base_url == PRODUCTION_BASE_URL
    assert stage.base_url == STAGE_BASE_URL
    assert explicit.api_key == "other-key"
    assert explicit.base_url == "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080",
        "http://127.0.0.2",
        "http://localhost:8080",
        "http://[::1]:8080",
        "https://api.haloconnect.io",
        "https://halo.example.internal",
    ],
)
def test_https_and_loopback_http_are_accepted(url: str) -> None:
    assert HaloClient(KEY, base_url=url).base_url == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://api.haloconnect.io", "unencrypted"),
        ("http://10.0.0.5:8080", "unencrypted"),
        ("http://localhost.evil.example", "unencrypted"),
        ("ftp://api.haloconnect.io", "http"),
        ("api.haloconnect.io", "http"),
    ],
)
def test_other_base_urls_are_refused(url: str, reason: str) -> None:
    with pytest.raises(errors.ConfigurationError, match=reason):
        HaloClient(KEY, base_url=url)


def test_a_client_can_be_built_outside_an_event_loop() -> None:
    # A FastAPI module builds its client at import time; the session comes later, lazily.
    client = HaloClient(KEY)

    assert not client.closed
    assert "open" in repr(client)


# -- Sessions and closing ----------------------------------------------------------------------


async def test_the_owned_session_is_closed_with_the_client(mocked: HaloMock) -> None:
    mocked.get(SITE_URL, payload={"id": SITE})

    async with HaloClient(KEY) as client:
        await client.get_site(SITE)
        session = client._http._session
        assert session is not None
        assert not session.closed

    assert session.closed
    assert client.closed
    assert "closed" in repr(client)
    await client.close()  # a second close is harmless


async def test_a_closed_client_refuses_every_call(mocked: HaloMock) -> None:
    client = HaloClient(KEY)
    await client.close()

    with pytest.raises(errors.ClientClosedError, match="closed"):
        await client.get_site(SITE)
    with pytest.raises(errors.ClientClosedError):
        async with client:
            pass

    assert mocked.requests == {}


async def test_a_borrowed_session_is_used_and_left_open(mocked: HaloMock) -> None:
    mocked.get(SITE_URL, payload={"id": SITE})

    async with aiohttp.ClientSession(headers={"X-Trace": "abc"}) as session:
        async with HaloClient(KEY, session=session) as client:
            await client.get_site(SITE)

        assert not session.closed
        (call,) = next(iter(mocked.requests.values()))
        assert call.kwargs["headers"]["X-Trace"] == "abc"  # it went through that session

        await session.close()
        borrowed = HaloClient(KEY, session=session)
        with pytest.raises(errors.ClientClosedError, match="borrowed"):
            await borrowed.get_site(SITE)


def forget(references: list[HaloClient]) -> None:
    """Drop the last references to clients and collect them, as a leaking app would."""
    references.clear()
    gc.collect()


async def test_an_unclosed_client_warns() -> None:
    client = HaloClient(KEY)
    await client.__aenter__()
    session = client._http._session
    assert session is not None
    references = [client]
    del client

    with pytest.warns(ResourceWarning, match=r"HaloClient .* was never closed: use 'async with"):
        forget(references)

    # The warning was the point; close the session so that aiohttp has nothing to add.
    await session.close()


def test_a_client_that_never_opened_a_session_does_not_warn() -> None:
    # Nothing to leak; -W error::ResourceWarning would fail this test if it warned.
    forget([HaloClient(KEY)])


async def test_a_client_on_a_borrowed_session_does_not_warn() -> None:
    async with aiohttp.ClientSession() as session:
        client = HaloClient(KEY, session=session)
        await client.__aenter__()
        references = [client]
        del client
        forget(references)


# -- Keys ------------------------------------------------------------------------------------


async def test_a_rotated_key_is_sent_from_the_next_request(mocked: HaloMock) -> None:
    mocked.get(SITE_URL, payload={"id": SITE}, repeat=True)

    async with HaloClient(KEY) as client:
        await client.get_site(SITE)
        client.api_key = "rotated-secondary-key"
        await client.get_site(SITE)

        with pytest.raises(errors.ConfigurationError):
            client.api_key = ""

    assert sent_keys(mocked) == [KEY, "rotated-secondary-key"]
