"""Retries: what is retried, how long the client waits, and when it stops.

Reads are retried on any transient failure; a query-creating POST only where no query can
exist, and otherwise it raises SubmissionOutcomeUnknownError after exactly one request.
Waits are recorded by a fake sleep that advances a fake clock: nothing really sleeps.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import Awaitable, Callable
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey

from halo_async import HaloClient, RetryPolicy, errors, models

if TYPE_CHECKING:
    from conftest import FakeClock, HaloMock, RecordingSleep

BASE = "https://api.haloconnect.io"
SITE = "3f91c577-20a8-467b-8991-b96dfb90e8c6"
QUERY = "1366ef6e-d536-457c-8f1b-eaa4352059f9"
SITE_URL = f"{BASE}/integrator/sites/{SITE}"
SITE_BODY = {"id": SITE, "status": "active"}

QUERY_BODY = {
    "id": QUERY,
    "siteId": SITE,
    "mode": "immediate",
    "status": "successful",
    "result": {"rows": 0, "size": 2, "data": "W10="},
}
SELECT_1 = {"text": "SELECT 1", "executionMode": "reader", "type": "text", "parameters": []}


def refused() -> aiohttp.ClientConnectorError:
    """What aiohttp raises when the TCP connection is refused: nothing was sent."""
    key = ConnectionKey("api.haloconnect.io", 443, True, True, None, None, None)
    return aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "Connection refused"))


def error_body(status: int, message: str = "try again") -> dict[str, Any]:
    return {"error": {"status": status, "statusText": "x", "message": message}}


class CeilingRandom(random.Random):
    """Full jitter that always draws its upper bound, to make the exponential growth visible."""

    def uniform(self, a: float, b: float) -> float:
        return b


def requests_to(mocked: HaloMock, method: str) -> int:
    return sum(1 for m, _, _ in mocked.made() if m == method)


# -- Reads -------------------------------------------------------------------------------------

TRANSIENT_FAILURES = {
    "connection-refused": refused,
    "connection-reset": lambda: aiohttp.ClientOSError(104, "Connection reset by peer"),
    "server-disconnected": lambda: aiohttp.ServerDisconnectedError(),
    "asyncio-timeout": asyncio.TimeoutError,
    "server-timeout": lambda: aiohttp.ServerTimeoutError("Timeout on reading data from socket"),
    "connection-timeout": lambda: aiohttp.ConnectionTimeoutError("Connection timeout"),
}


@pytest.mark.parametrize("failure", sorted(TRANSIENT_FAILURES))
async def test_reads_retry_network_failures(
    failure: str, client: HaloClient, mocked: HaloMock, sleeps: RecordingSleep
) -> None:
    mocked.get(SITE_URL, exception=TRANSIENT_FAILURES[failure]())
    mocked.get(SITE_URL, payload=SITE_BODY)

    site = await client.get_site(SITE)

    assert site.id == SITE
    assert requests_to(mocked, "GET") == 2
    assert len(sleeps.calls) == 1
    assert 0 <= sleeps.calls[0] <= client.retry.initial_delay


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_reads_retry_server_errors(
    status: int, client: HaloClient, mocked: HaloMock, sleeps: RecordingSleep
) -> None:
    mocked.get(SITE_URL, status=status, payload=error_body(status))
    mocked.get(SITE_URL, status=status, payload=error_body(status))
    mocked.get(SITE_URL, payload=SITE_BODY)

    assert (await client.get_site(SITE)).id == SITE
    assert requests_to(mocked, "GET") == 3
    assert len(sleeps.calls) == 2


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, errors.BadRequestError),
        (401, errors.AuthenticationError),
        (403, errors.PermissionDeniedError),
        (404, errors.NotFoundError),
        (410, errors.ResultExpiredError),
    ],
)
async def test_reads_never_retry_client_errors(
    status: int,
    error: type[errors.APIError],
    client: HaloClient,
    mocked: HaloMock,
    sleeps: RecordingSleep,
) -> None:
    mocked.get(SITE_URL, status=status, payload=error_body(status, "no"), repeat=True)

    with pytest.raises(error) as caught:
        await client.get_site(SITE)

    assert caught.value.status == status
    assert requests_to(mocked, "GET") == 1
    assert sleeps.calls == []


async def test_429_waits_the_retry_after_seconds(
    client: HaloClient, mocked: HaloMock, sleeps: RecordingSleep
) -> None:
    mocked.get(SITE_URL, status=429, payload=error_body(429), headers={"Retry-After": "7"})
    mocked.get(SITE_URL, payload=SITE_BODY)

    assert (await client.get_site(SITE)).id == SITE
    assert sleeps.calls == [7.0]


async def test_429_waits_until_the_retry_after_http_date(
    client: HaloClient, mocked: HaloMock, sleeps: RecordingSleep
) -> None:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    mocked.get(
        SITE_URL,
        status=429,
        payload=error_body(429),
        headers={"Retry-After": format_datetime(when, usegmt=True)},
    )
    mocked.get(SITE_URL, payload=SITE_BODY)

    assert (await client.get_site(SITE)).id == SITE
    # An HTTP-date has whole seconds, and a little wall time passes before it is read.
    assert sleeps.calls == [pytest.approx(30, abs=1.5)]


async def test_503_retry_after_is_honoured_too(
    client: HaloClient, mocked: HaloMock, sleeps: RecordingSleep
) -> None:
    mocked.get(SITE_URL, status=503, payload=error_body(503), headers={"Retry-After": "3"})
    mocked.get(SITE_URL, payload=SITE_BODY)

    await client.get_site(SITE)

    assert sleeps.calls == [3.0]


async def test_retry_after_is_capped(
    mocked: HaloMock, clock: FakeClock, sleeps: RecordingSleep, api_key: str
) -> None:
    policy = RetryPolicy(sleep=sleeps, clock=clock, retry_after_cap=20, deadline=600)
    mocked.get(SITE_URL, status=429, payload=error_body(429), headers={"Retry-After": "3600"})
    mocked.get(SITE_URL, payload=SITE_BODY)

    async with HaloClient(api_key, retry=policy) as client:
        await client.get_site(SITE)

    assert sleeps.calls == [20]


async def test_a_retry_after_past_the_deadline_gives_up_at_once(
    mocked: HaloMock, clock: FakeClock, sleeps: RecordingSleep, api_key: str
) -> None:
    policy = RetryPolicy(sleep=sleeps, clock=clock, deadline=60, retry_after_cap=600)
    mocked.get(SITE_URL, status=429, payload=error_body(429), headers={"Retry-After": "90"})

    async with HaloClient(api_key, retry=policy) as client:
        with pytest.raises(errors.RateLimitedError) as caught:
            await client.get_site(SITE)

    assert caught.value.retry_after == 90
    assert sleeps.calls == []
    assert requests_to(mocked, "GET") == 1


async def test_attempts_are_bounded_by_max_attempts(
    mocked: HaloMock, clock: FakeClock, sleeps: RecordingSleep, api_key: str
) -> None:
    policy = RetryPolicy(max_attempts=3, sleep=sleeps, clock=clock)
    mocked.get(SITE_URL, status=503, payload=error_body(503), repeat=True)

    async with HaloClient(api_key, retry=policy) as client:
        with pytest.raises(errors.SiteUnavailableError):
            await client.get_site(SITE)

    assert requests_to(mocked, "GET") == 3
    assert len(sleeps.calls) == 2


async def test_network_failures_after_the_last_attempt_raise_connection_error(
    client: HaloClient, mocked: HaloMock, sleeps: RecordingSleep
) -> None:
    mocked.get(SITE_URL, exception=aiohttp.ServerDisconnectedError(), repeat=True)

    with pytest.raises(errors.HaloConnectionError) as caught:
        await client.get_site(SITE)

    assert requests_to(mocked, "GET") == client.retry.max_attempts == 5
    assert len(sleeps.calls) == 4
    assert isinstance(caught.value.__cause__, aiohttp.ServerDisconnectedError)
    assert caught.value.method == "GET"
    assert caught.value.path == f"/integrator/sites/{SITE}"
    assert "5 attempt(s)" in str(caught.value)


async def test_the_total_deadline_bounds_the_retries(
    mocked: HaloMock, clock: FakeClock, sleeps: RecordingSleep, api_key: str
) -> None:
    policy = RetryPolicy(
        max_attempts=10,
        initial_delay=4,
        max_delay=100,
        deadline=10,
        sleep=sleeps,
        clock=clock,
        rng=CeilingRandom(),
    )
    mocked.get(SITE_URL, status=500, payload=error_body(500), repeat=True)
    started = clock.now

    async with HaloClient(api_key, retry=policy) as client:
        with pytest.raises(errors.ServerError):
            await client.get_site(SITE)

    # Waited 4 s; the next wait (8 s) would end 12 s after the first attempt, past 10 s.
    assert sleeps.calls == [4]
    assert requests_to(mocked, "GET") == 2
    assert clock.now - started <= 10


async def test_backoff_grows_exponentially_up_to_max_delay(
    mocked: HaloMock, clock: FakeClock, sleeps: RecordingSleep, api_key: str
) -> None:
    policy = RetryPolicy(
        max_attempts=7,
        initial_delay=0.5,
        max_delay=5,
        deadline=1000,
        sleep=sleeps,
        clock=clock,
        rng=CeilingRandom(),
    )
    mocked.get(SITE_URL, status=502, payload=error_body(502), repeat=True)

    async with HaloClient(api_key, retry=policy) as client:
        with pytest.raises(errors.BadGatewayError):
            await client.get_site(SITE)

    assert sleeps.calls == [0.5, 1, 2, 4, 5, 5]


async def test_backoff_draws_full_jitter_within_the_exponential_bounds(
    mocked: HaloMock, clock: FakeClock, sleeps: RecordingSleep, api_key: str
) -> None:
    policy = RetryPolicy(
        max_attempts=30,
        initial_delay=0.5,
        max_delay=8,
        deadline=10_000,
        sleep=sleeps,
        clock=clock,
        rng=random.Random(7),
    )
    mocked.get(SITE_URL, status=504, payload=error_body(504), repeat=True)

    async with HaloClient(api_key, retry=policy) as client:
        with pytest.raises(errors.GatewayTimeoutError):
            await client.get_site(SITE)

    ceilings = [min(0.5 * 2**n, 8) for n in range(29)]
    assert len(sleeps.calls) == 29
    assert all(0 <= wait <= ceiling for wait, ceiling in zip(sleeps.calls, ceilings, strict=True))
    # Full jitter spreads the waits over [0, ceiling], so a fleet does not retry in lockstep.
    assert min(wait / ceiling for wait, ceiling in zip(sleeps.calls, ceilings, strict=True)) < 0.25
    assert len(set(sleeps.calls)) == len(sleeps.calls)


async def test_retry_policy_none_sends_once(
    mocked: HaloMock, clock: FakeClock, sleeps: RecordingSleep, api_key: str
) -> None:
    mocked.get(SITE_URL, status=503, payload=error_body(503), repeat=True)

    async with HaloClient(api_key, retry=RetryPolicy.none()) as client:
        with pytest.raises(errors.SiteUnavailableError):
            await client.get_site(SITE)

    assert requests_to(mocked, "GET") == 1


# -- Query-creating POSTs ------------------------------------------------------------------

Create = Callable[[HaloClient], Awaitable[Any]]

CREATES: dict[str, tuple[str, Create, dict[str, Any], int, dict[str, Any]]] = {
    "immediate": (
        f"{SITE_URL}/queries/immediate",
        lambda c: c.immediate_query(SITE, "SELECT 1"),
        {"command": SELECT_1},
        200,
        QUERY_BODY,
    ),
    "async": (
        f"{SITE_URL}/queries/async",
        lambda c: c.create_async_query(SITE, "SELECT 1", max_time_in_queue=900000),
        {"command": SELECT_1, "maxTimeInQueue": 900000},
        201,
        {**QUERY_BODY, "mode": "async", "status": "initialising", "result": None},
    ),
    "registered": (
        f"{SITE_URL}/queries/registered",
        lambda c: c.create_registered_query(
            SITE, "SELECT 1", name="Test", frequency=300, duration=43200
        ),
        {
            "name": "Test",
            "registeredQueryType": "query",
            "frequency": 300,
            "duration": 43200,
            "registerCommand": {"command": SELECT_1},
        },
        202,
        {"id": QUERY},
    ),
}


@pytest.fixture(params=sorted(CREATES))
def create(request: pytest.FixtureRequest) -> tuple[str, Create, dict[str, Any], int, Any]:
    """Each query-creating operation: URL, call, the body it sends, its success answer."""
    return CREATES[request.param]


@pytest.mark.parametrize(
    ("status", "headers"),
    [(429, {"Retry-After": "2"}), (503, {})],
)
async def test_creating_posts_retry_where_nothing_was_created(
    status: int,
    headers: dict[str, str],
    create: tuple[str, Create, dict[str, Any], int, Any],
    client: HaloClient,
    mocked: HaloMock,
    sleeps: RecordingSleep,
) -> None:
    url, call, body, ok, answer = create
    mocked.post(url, exception=refused())
    mocked.post(url, status=status, payload=error_body(status), headers=headers)
    mocked.post(url, status=ok, payload=answer)

    result = await call(client)

    assert result is not None
    assert requests_to(mocked, "POST") == 3
    assert [mocked.body(kwargs) for _, _, kwargs in mocked.made()] == [body] * 3
    assert len(sleeps.calls) == 2


SENT_BUT_UNKNOWN = {
    "500": (500, None),
    "502": (502, None),
    "504": (504, None),
    "read-timeout": (None, lambda: aiohttp.ServerTimeoutError("Timeout on reading data")),
    "asyncio-timeout": (None, asyncio.TimeoutError),
    "server-disconnected": (None, lambda: aiohttp.ServerDisconnectedError()),
}


@pytest.mark.parametrize("failure", sorted(SENT_BUT_UNKNOWN))
async def test_creating_posts_with_an_unknown_outcome_are_sent_exactly_once(
    failure: str,
    create: tuple[str, Create, dict[str, Any], int, Any],
    client: HaloClient,
    mocked: HaloMock,
    sleeps: RecordingSleep,
) -> None:
    url, call, body, *_ = create
    status, make_exception = SENT_BUT_UNKNOWN[failure]
    if status is not None:
        mocked.post(url, status=status, payload=error_body(status, "hm"), repeat=True)
    else:
        assert make_exception is not None
        exception = make_exception()
        mocked.post(url, exception=exception, repeat=True)

    with pytest.raises(errors.SubmissionOutcomeUnknownError) as caught:
        await call(client)

    assert requests_to(mocked, "POST") == 1
    assert sleeps.calls == []
    unknown = caught.value
    assert unknown.body == body
    assert unknown.method == "POST"
    assert url.endswith(unknown.path)
    if status is not None:
        assert isinstance(unknown.cause, errors.ServerError)
        assert unknown.cause.status == status
    else:
        assert unknown.cause is exception
    assert unknown.__cause__ is unknown.cause
    assert "not resubmitted" in str(unknown)


async def test_creating_posts_that_never_connect_raise_connection_error(
    create: tuple[str, Create, dict[str, Any], int, Any],
    client: HaloClient,
    mocked: HaloMock,
) -> None:
    url, call, *_ = create
    mocked.post(url, exception=refused(), repeat=True)

    with pytest.raises(errors.HaloConnectionError) as caught:
        await call(client)

    # Nothing reached Halo, so the outcome is known: no query exists.
    assert not isinstance(caught.value, errors.SubmissionOutcomeUnknownError)
    assert requests_to(mocked, "POST") == client.retry.max_attempts


async def test_creating_posts_exhausting_503_raise_site_unavailable(
    create: tuple[str, Create, dict[str, Any], int, Any],
    client: HaloClient,
    mocked: HaloMock,
) -> None:
    url, call, *_ = create
    mocked.post(url, status=503, payload=error_body(503), repeat=True)

    with pytest.raises(errors.SiteUnavailableError):
        await call(client)

    assert requests_to(mocked, "POST") == client.retry.max_attempts


async def test_creating_posts_never_retry_a_bad_request(
    create: tuple[str, Create, dict[str, Any], int, Any],
    client: HaloClient,
    mocked: HaloMock,
) -> None:
    url, call, *_ = create
    mocked.post(url, status=400, payload=error_body(400, "Malformed SQL"), repeat=True)

    with pytest.raises(errors.BadRequestError, match="Malformed SQL"):
        await call(client)

    assert requests_to(mocked, "POST") == 1


# -- Other POSTs retry like reads --------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(lambda: {"status": 500, "payload": error_body(500)}, id="500"),
        pytest.param(lambda: {"status": 504, "payload": error_body(504)}, id="504"),
        pytest.param(lambda: {"exception": aiohttp.ServerTimeoutError("read")}, id="timeout"),
        pytest.param(lambda: {"exception": aiohttp.ServerDisconnectedError()}, id="disconnect"),
    ],
)
async def test_batch_status_and_pairing_retry_like_reads(
    failure: Callable[[], dict[str, Any]], client: HaloClient, mocked: HaloMock
) -> None:
    status_url = f"{SITE_URL}/queries/status"
    pair_url = (
        f"{BASE}/integrator/pair-site?practiceManagementSiteId=777&practiceManagementName=Zedmed"
    )
    mocked.post(status_url, **failure())
    mocked.post(status_url, payload={"results": [{"queryId": QUERY, "status": "notFound"}]})
    mocked.post(pair_url, **failure())
    mocked.post(pair_url, payload=SITE_BODY)

    statuses = await client.get_query_statuses(SITE, [QUERY])
    site = await client.pair_site("777", "Zedmed")

    assert statuses == [models.QueryStatusResult(QUERY, models.BatchStatus.NOT_FOUND)]
    assert site.id == SITE
    assert requests_to(mocked, "POST") == 4


async def test_cancel_retries_like_a_read(client: HaloClient, mocked: HaloMock) -> None:
    url = f"{SITE_URL}/queries/registered/{QUERY}"
    mocked.delete(url, status=502, payload=error_body(502))
    mocked.delete(url, status=204, body=b"")

    await client.cancel_registered_query(SITE, QUERY)

    assert requests_to(mocked, "DELETE") == 2


def attempt_timeouts(mocked: HaloMock) -> list[float]:
    return [kwargs["timeout"].total for _, _, kwargs in mocked.made()]


async def test_the_retry_deadline_bounds_each_attempt_not_only_the_waits(
    mocked: HaloMock, clock: FakeClock, sleeps: RecordingSleep
) -> None:
    policy = RetryPolicy(deadline=10, sleep=sleeps, clock=clock, rng=CeilingRandom())
    mocked.get(SITE_URL, status=503, payload=error_body(503))
    mocked.get(SITE_URL, status=503, payload=error_body(503))
    mocked.get(SITE_URL, payload=SITE_BODY)

    async with HaloClient("k", retry=policy, request_timeout=60) as halo:
        await halo.get_site(SITE)

    # 0.5 s and 1 s waited before the second and third attempts: each gets what is left.
    assert sleeps.calls == [0.5, 1.0]
    assert attempt_timeouts(mocked) == [10, 9.5, 8.5]


async def test_a_call_timeout_and_with_options_set_each_attempts_bound(
    mocked: HaloMock, policy: RetryPolicy
) -> None:
    mocked.get(SITE_URL, payload=SITE_BODY, repeat=True)

    async with HaloClient("k", retry=policy) as halo:
        await halo.get_site(SITE)
        await halo.get_site(SITE, timeout=5)
        fast = halo.with_options(timeout=2.5, retry=RetryPolicy.none())
        await fast.get_site(SITE)
        await fast.get_site(SITE, timeout=1)  # the call's own wins
        assert fast.retry.max_attempts == 1
        assert halo.retry is policy
        await fast.close()  # a copy leaves the shared session open
        await halo.get_site(SITE)

    assert attempt_timeouts(mocked) == [60, 5, 2.5, 1, 60]
    assert fast.closed  # closing the original closed it for both


async def test_a_with_options_copy_retries_under_its_own_policy(
    mocked: HaloMock, policy: RetryPolicy
) -> None:
    mocked.get(SITE_URL, status=503, payload=error_body(503), repeat=True)

    async with HaloClient("k", retry=policy) as halo:
        with pytest.raises(errors.SiteUnavailableError):
            await halo.with_options(retry=RetryPolicy.none()).get_site(SITE)

    assert requests_to(mocked, "GET") == 1


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "5"])
async def test_a_bad_timeout_is_refused_before_sending(
    mocked: HaloMock, policy: RetryPolicy, bad: Any
) -> None:
    async with HaloClient("k", retry=policy) as halo:
        with pytest.raises(errors.ValidationError, match="timeout"):
            await halo.get_site(SITE, timeout=bad)
        with pytest.raises(errors.ValidationError, match="timeout"):
            halo.with_options(timeout=bad)

    assert mocked.made() == []
