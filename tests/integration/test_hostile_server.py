"""A hostile or misconfigured server, over real sockets: the key never follows a redirect
off its origin, a query-creating POST is never redirected, and no traceback frame of a
failed request holds the key."""

from __future__ import annotations

import asyncio
import socket
import traceback
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from halo_async import HaloClient, RetryPolicy
from halo_async.errors import (
    HaloConnectionError,
    HaloError,
    RedirectRefusedError,
    SubmissionOutcomeUnknownError,
)
from tests.support import Origin, no_sleep

KEY = "4f1c9e2ab7d84c0e9a55c3b1d2e6f708"
SITE = "3f91c577-20a8-467b-8991-b96dfb90e8c6"
SITE_BODY = {"id": SITE, "status": "active"}


@pytest.fixture
async def halo_origin() -> AsyncIterator[Origin]:
    async with Origin() as origin:
        yield origin


@pytest.fixture
async def elsewhere() -> AsyncIterator[Origin]:
    async with Origin() as origin:
        yield origin


def client(origin: Origin) -> HaloClient:
    return HaloClient(KEY, base_url=origin.url, retry=RetryPolicy(sleep=no_sleep))


def redirect_to(url: str, status: int = 307) -> Callable[[web.Request], Any]:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": url})

    return handler


async def test_a_redirect_to_another_origin_is_refused_and_the_key_stays_home(
    halo_origin: Origin, elsewhere: Origin
) -> None:
    halo_origin.handler = redirect_to(f"{elsewhere.url}/steal")

    async with client(halo_origin) as halo:
        with pytest.raises(RedirectRefusedError) as caught:
            await halo.get_site(SITE)

    assert elsewhere.requests == [], "a request followed the redirect to another origin"
    assert caught.value.status == 307
    assert caught.value.location == f"{elsewhere.url}/steal"
    assert "another origin" in str(caught.value)
    assert KEY not in repr(caught.value.headers)


@pytest.mark.parametrize("path", ["queries/async", "queries/immediate"])
async def test_a_query_creating_post_is_never_redirected(halo_origin: Origin, path: str) -> None:
    halo_origin.handler = redirect_to(f"{halo_origin.url}/integrator/sites/{SITE}/{path}/v2")

    async with client(halo_origin) as halo:
        create = halo.create_async_query if path == "queries/async" else halo.immediate_query
        with pytest.raises(RedirectRefusedError, match="never redirected"):
            await create(SITE, "INSERT INTO NOTES VALUES (1)", execution_mode="nonQuery")

    assert [request.method for request in halo_origin.requests] == ["POST"], "sent twice"


async def test_a_same_origin_redirect_of_a_read_is_followed(halo_origin: Origin) -> None:
    async def handler(request: web.Request) -> web.Response:
        if request.path.startswith("/old/"):
            return web.Response(status=301, headers={"Location": f"/integrator/sites/{SITE}"})
        return web.json_response(SITE_BODY)

    halo_origin.handler = handler
    async with HaloClient(KEY, base_url=f"{halo_origin.url}/old") as halo:
        site = await halo.get_site(SITE)

    assert site.id == SITE
    assert [request.path_qs for request in halo_origin.requests] == [
        f"/old/integrator/sites/{SITE}",
        f"/integrator/sites/{SITE}",
    ]


async def test_endless_redirects_stop(halo_origin: Origin) -> None:
    halo_origin.handler = redirect_to(f"/integrator/sites/{SITE}", status=302)

    async with client(halo_origin) as halo:
        with pytest.raises(RedirectRefusedError, match="more than 5 redirects"):
            await halo.get_site(SITE)

    assert len(halo_origin.requests) == 6


def _frame_locals(exc: BaseException) -> list[str]:
    """repr of every local of every frame in the error's traceback and its whole chain."""
    found: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for frame, _ in traceback.walk_tb(current.__traceback__):
            found += [f"{name}={value!r}" for name, value in frame.f_locals.items()]
        found.append(repr(vars(current)))
        current = current.__cause__ or current.__context__
    return found


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_no_traceback_frame_of_a_failed_request_holds_the_key(
    halo_origin: Origin,
) -> None:
    async def disconnect(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()  # the answer never comes
        return web.Response()

    halo_origin.handler = disconnect
    failures: list[HaloError] = []
    for base_url in (halo_origin.url, f"http://127.0.0.1:{_closed_port()}"):
        retry = RetryPolicy(sleep=no_sleep, max_attempts=2)
        async with HaloClient(KEY, base_url=base_url, retry=retry) as halo:
            with pytest.raises(HaloConnectionError) as caught:
                await halo.get_site(SITE)
            failures.append(caught.value)
        with pytest.raises(HaloError) as created:
            async with HaloClient(KEY, base_url=base_url, retry=retry) as halo:
                await halo.create_async_query(SITE, "SELECT 1")
        failures.append(created.value)

    for failure in failures:
        leaks = [local for local in _frame_locals(failure) if KEY in local]
        assert leaks == [], f"{type(failure).__name__}: the key is in {leaks[:3]}"


def _first_request_held(origin: Origin) -> tuple[asyncio.Event, asyncio.Event]:
    """The origin holds its first request (and so the connection it came on) until
    ``release`` is set; ``arrived`` is set once it has it. Every other request is answered."""
    release = asyncio.Event()
    arrived = asyncio.Event()

    async def slow_first(request: web.Request) -> web.Response:
        if len(origin.requests) == 1:
            arrived.set()
            await release.wait()
        return web.json_response(SITE_BODY)

    origin.handler = slow_first
    return arrived, release


async def test_waiting_for_a_pooled_connection_is_not_a_connect_timeout(
    halo_origin: Origin,
) -> None:
    # connect_timeout bounds making a connection, not the wait for one of the client's own:
    # with every connection busy (a fan-out of a thousand queries on 100 connections), a
    # request queued longer than connect_timeout is not a network failure, and retrying it
    # only queues it again (a create retried so was sent twice over in a slow fan-out).
    arrived, release = _first_request_held(halo_origin)
    async with HaloClient(
        KEY,
        base_url=halo_origin.url,
        connection_limit=1,
        connect_timeout=0.05,
        retry=RetryPolicy(max_attempts=1, sleep=no_sleep),
    ) as halo:
        first = asyncio.ensure_future(halo.get_site(SITE))
        await arrived.wait()  # the one connection is now busy
        second = asyncio.ensure_future(halo.get_site(SITE))
        await asyncio.sleep(0.2)  # the second waits for it four times connect_timeout
        assert not second.done(), f"the queued request ended: {second}"
        release.set()
        sites = await asyncio.gather(first, second)

    assert [site.id for site in sites] == [SITE, SITE]
    assert len(halo_origin.requests) == 2


async def test_a_create_that_never_got_a_connection_is_known_unsent(halo_origin: Origin) -> None:
    # A create queued behind a busy pool for its whole attempt never left the process: it
    # is a connection failure (safe to send again), not "the query may exist", which a
    # ledger would hold against the site for good. (The pool wait is the client's own.)
    arrived, release = _first_request_held(halo_origin)
    async with HaloClient(
        KEY,
        base_url=halo_origin.url,
        connection_limit=1,
        request_timeout=0.2,
        retry=RetryPolicy(max_attempts=1, sleep=no_sleep),
    ) as halo:
        busy = asyncio.ensure_future(halo.get_site(SITE, timeout=30))
        await arrived.wait()  # the one connection is now busy
        try:
            with pytest.raises(HaloConnectionError) as caught:
                await halo.submit(SITE, "SELECT 1")
        finally:
            release.set()
            await busy

    assert not isinstance(caught.value, SubmissionOutcomeUnknownError), caught.value
    assert "connection" in str(caught.value).lower(), caught.value
    assert [request.method for request in halo_origin.requests] == ["GET"]
