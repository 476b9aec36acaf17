"""RetryPolicy arithmetic, Retry-After parsing, and the retry predicates."""

from __future__ import annotations

import asyncio
import datetime as dt
import random

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey

from halo_async import RetryPolicy, errors
from halo_async._retry import parse_retry_after, retryable_for_create, retryable_for_read

NOW = dt.datetime(2025, 5, 27, 5, 23, 40, tzinfo=dt.UTC)


class CeilingRandom(random.Random):
    """Full jitter that always draws its upper bound."""

    def uniform(self, a: float, b: float) -> float:
        return b


def api_error(status: int) -> errors.APIError:
    cls = errors.STATUS_ERRORS.get(status, errors.APIError)
    return cls("x", status=status, method="GET", path="/integrator/sites")


def refused() -> aiohttp.ClientConnectorError:
    key = ConnectionKey("api.haloconnect.io", 443, True, True, None, None, None)
    return aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "Connection refused"))


def test_defaults() -> None:
    policy = RetryPolicy()

    assert policy.max_attempts == 5
    assert policy.initial_delay == 0.5
    assert policy.max_delay == 30
    assert policy.deadline == 180
    assert RetryPolicy.none().max_attempts == 1


def test_backoff_ceilings_double_up_to_max_delay() -> None:
    policy = RetryPolicy(initial_delay=0.25, multiplier=3, max_delay=5, rng=CeilingRandom())

    assert [policy.backoff_delay(attempt) for attempt in range(1, 6)] == [0.25, 0.75, 2.25, 5, 5]


def test_backoff_is_full_jitter_within_the_ceiling() -> None:
    policy = RetryPolicy(initial_delay=1, max_delay=16, rng=random.Random(3))
    draws = {attempt: [policy.backoff_delay(attempt) for _ in range(200)] for attempt in (1, 3, 9)}

    for attempt, ceiling in ((1, 1), (3, 4), (9, 16)):
        assert all(0 <= draw <= ceiling for draw in draws[attempt])
        # Spread over the whole range, not bunched near the ceiling.
        assert min(draws[attempt]) < ceiling * 0.1
        assert max(draws[attempt]) > ceiling * 0.9


def test_retry_after_replaces_the_backoff_and_is_capped() -> None:
    policy = RetryPolicy(retry_after_cap=60, rng=CeilingRandom())

    assert policy.delay(1, 12.0) == 12.0
    assert policy.delay(1, 0.0) == 0.0
    assert policy.delay(4, 3600.0) == 60
    assert policy.delay(2, None) == 1.0


def test_now_reads_the_injected_clock() -> None:
    assert RetryPolicy(clock=lambda: 42.0).now() == 42.0


async def test_now_defaults_to_the_event_loop_clock() -> None:
    before = asyncio.get_running_loop().time()

    assert before <= RetryPolicy().now() <= asyncio.get_running_loop().time()


def test_repr_hides_the_injected_callables() -> None:
    text = repr(RetryPolicy(sleep=asyncio.sleep, clock=lambda: 0.0))

    assert "max_attempts=5" in text
    assert "sleep" not in text
    assert "lambda" not in text


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("Tue, 27 May 2025 05:24:10 GMT", 30.0),
        ("Tue, 27 May 2025 05:20:00 GMT", 0.0),  # already past
        ("Tuesday, 27-May-25 05:24:40 GMT", 60.0),  # RFC 850, still legal to receive
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


@pytest.mark.parametrize(
    ("exc", "read", "create"),
    [
        pytest.param(api_error(429), True, True, id="429"),
        pytest.param(api_error(500), True, False, id="500"),
        pytest.param(api_error(502), True, False, id="502"),
        pytest.param(api_error(503), True, True, id="503"),
        pytest.param(api_error(504), True, False, id="504"),
        pytest.param(api_error(400), False, False, id="400"),
        pytest.param(api_error(401), False, False, id="401"),
        pytest.param(api_error(403), False, False, id="403"),
        pytest.param(api_error(404), False, False, id="404"),
        pytest.param(api_error(410), False, False, id="410"),
        pytest.param(api_error(413), False, False, id="413"),
        pytest.param(refused(), True, True, id="connection-refused"),
        pytest.param(aiohttp.ConnectionTimeoutError("connect"), True, True, id="connect-timeout"),
        pytest.param(aiohttp.ServerTimeoutError("read"), True, False, id="read-timeout"),
        pytest.param(TimeoutError(), True, False, id="asyncio-timeout"),
        pytest.param(aiohttp.ServerDisconnectedError(), True, False, id="disconnected"),
        pytest.param(aiohttp.ClientOSError(104, "reset"), True, False, id="connection-reset"),
        pytest.param(aiohttp.ClientPayloadError("cut"), True, False, id="payload-cut"),
        pytest.param(ValueError("bug"), False, False, id="a-bug"),
    ],
)
def test_retry_predicates(exc: BaseException, read: bool, create: bool) -> None:
    assert retryable_for_read(exc) is read
    assert retryable_for_create(exc) is create
