"""The policies of waiting: RetryPolicy (requests) and PollPolicy (query jobs), and the
retry predicates, each with the reason it holds.

The request loop in ``_http`` is the only place that retries. Polling a query's status is
not retrying: the jobs poll under a :class:`PollPolicy`, and a poll's own request is
retried under the client's :class:`RetryPolicy` like any other read (BigQuery keeps its
request retry and job retry apart the same way).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import random
from collections.abc import Awaitable, Callable
from email.utils import parsedate_to_datetime

import aiohttp
import attrs

from halo_async import _constants as C
from halo_async.errors import (
    RateLimitedError,
    ServerError,
    SiteUnavailableError,
    ValidationError,
)

__all__ = [
    "PollPolicy",
    "RetryPolicy",
    "parse_retry_after",
    "retryable_for_create",
    "retryable_for_read",
]


def _non_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    """The one validator of both policies' durations and factors: a real number, not NaN
    (every comparison with NaN is false, so it would pass any bound), >= 0."""
    real = isinstance(value, int | float) and not isinstance(value, bool)
    if not real or math.isnan(value) or value < 0:
        raise ValidationError(
            f"{type(instance).__name__}.{attribute.name} must be >= 0, got {value!r}",
            field=attribute.name,
            value=value,
        )


@attrs.frozen
class RetryPolicy:
    """How the client retries a request that failed for a transient reason.

    Delays grow exponentially from ``initial_delay`` by ``multiplier`` up to ``max_delay``,
    each drawn with full jitter (uniform in ``[0, delay]``) so that a fan-out across hundreds
    of sites does not retry in lockstep. A ``Retry-After`` from the server replaces the drawn
    delay (capped at ``retry_after_cap``). Retrying stops after ``max_attempts`` attempts or
    when the next wait would pass ``deadline`` seconds since the first attempt, whichever
    comes first. ``RetryPolicy.none()`` turns retries off.

    ``sleep`` and ``clock`` are injectable so that tests run retries without waiting.
    """

    max_attempts: int = C.RETRY_MAX_ATTEMPTS
    initial_delay: float = attrs.field(default=C.RETRY_INITIAL_DELAY_S, validator=_non_negative)
    max_delay: float = attrs.field(default=C.RETRY_MAX_DELAY_S, validator=_non_negative)
    multiplier: float = attrs.field(default=2.0, validator=_non_negative)
    deadline: float = attrs.field(default=C.RETRY_DEADLINE_S, validator=_non_negative)
    retry_after_cap: float = attrs.field(default=C.RETRY_AFTER_CAP_S, validator=_non_negative)
    sleep: Callable[[float], Awaitable[None]] = attrs.field(default=asyncio.sleep, repr=False)
    clock: Callable[[], float] | None = attrs.field(default=None, repr=False)
    rng: random.Random = attrs.field(factory=random.Random, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        attempts = self.max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValidationError(
                f"RetryPolicy.max_attempts must be >= 1, got {self.max_attempts!r}",
                field="max_attempts",
                value=self.max_attempts,
            )

    @classmethod
    def none(cls) -> RetryPolicy:
        """A policy that never retries."""
        return cls(max_attempts=1)

    def backoff_delay(self, attempt: int) -> float:
        """The jittered exponential wait after failed attempt number ``attempt`` (1-based):
        uniform in ``[0, min(max_delay, initial_delay * multiplier ** (attempt - 1))]``."""
        # Capped before the power can overflow: attempt counts are small, but a policy may
        # set max_attempts in the thousands.
        exponent = min(attempt - 1, 64)
        ceiling = min(self.max_delay, self.initial_delay * self.multiplier**exponent)
        return self.rng.uniform(0, ceiling)

    def now(self) -> float:
        """Seconds on the policy's clock (the event loop's, unless one was injected)."""
        return self.clock() if self.clock is not None else asyncio.get_running_loop().time()

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """The wait before the next attempt: the server's ``Retry-After`` if it sent one."""
        if retry_after is not None:
            return min(retry_after, self.retry_after_cap)
        return self.backoff_delay(attempt)


@attrs.frozen
class PollPolicy:
    """How a job polls its query's status.

    The first wait is ``initial_interval`` seconds; each poll that shows no progress
    multiplies it by ``multiplier`` up to ``max_interval``, and progress (a new status or a
    newly cached page) resets it. With ``jitter`` each wait is drawn uniformly from
    ``[interval/2, interval]`` so that many jobs do not poll in lockstep. ``deadline`` bounds
    the whole wait in seconds; when None it is derived from the query's ``maxTimeInQueue``
    plus the 5 minutes Halo allows for execution and a margin for the upload.

    ``sleep`` and ``clock`` are injectable for tests.
    """

    initial_interval: float = attrs.field(
        default=C.POLL_INITIAL_INTERVAL_S, validator=_non_negative
    )
    multiplier: float = attrs.field(default=C.POLL_MULTIPLIER, validator=_non_negative)
    max_interval: float = attrs.field(default=C.POLL_MAX_INTERVAL_S, validator=_non_negative)
    deadline: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(_non_negative)
    )
    jitter: bool = True
    sleep: Callable[[float], Awaitable[None]] = attrs.field(default=asyncio.sleep, repr=False)
    clock: Callable[[], float] | None = attrs.field(default=None, repr=False)
    rng: random.Random = attrs.field(factory=random.Random, repr=False, eq=False)

    def now(self) -> float:
        """Seconds on the policy's clock (the event loop's, unless one was injected)."""
        return self.clock() if self.clock is not None else asyncio.get_running_loop().time()

    def next_interval(self, interval: float) -> float:
        """The interval after a poll that showed no progress."""
        longer = (interval if interval > 1e-3 else 1e-3) * self.multiplier
        return longer if longer < self.max_interval else self.max_interval

    def wait_for(self, interval: float) -> float:
        """The actual wait for ``interval``, jittered."""
        return self.rng.uniform(interval / 2, interval) if self.jitter else interval

    def deadline_for(self, max_time_in_queue_ms: int | None) -> float:
        """The total wait allowed for a query with this ``maxTimeInQueue``."""
        if self.deadline is not None:
            return self.deadline
        queue_ms = (
            max_time_in_queue_ms
            if max_time_in_queue_ms is not None
            else C.ASYNC_DEFAULT_TIME_IN_QUEUE_MS
        )
        return queue_ms / 1000 + C.ASYNC_EXECUTION_LIMIT_S + C.ASYNC_UPLOAD_MARGIN_S


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    now = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - now).total_seconds())


# -- Predicates ----------------------------------------------------------------------------

# 500: an internal error (e.g. "Failed to create query container in CosmosDB") is usually
#      transient. 502: the PMS misbehaved; worth a few tries. 503: the site could not be
#      contacted; it often is again seconds later. 504: a timeout or a site that dropped
#      mid-request. All are safe to repeat for requests that change nothing.
_RETRYABLE_SERVER_STATUSES = frozenset({500, 502, 503, 504})


def _connection_not_established(exc: BaseException) -> bool:
    # aiohttp raises ClientConnectorError when the TCP/TLS connection could not be made and
    # ConnectionTimeoutError when no connection came within the connect timeout (pool wait
    # included). In both cases not one byte of the request left this machine.
    return isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)


def retryable_for_read(exc: BaseException) -> bool:
    """Whether a request that changes nothing (GETs, batch status, pairing) may be retried."""
    if isinstance(exc, RateLimitedError):
        # The gateway rejected the request before it reached Halo; it asks us to wait.
        return True
    if isinstance(exc, ServerError):
        return exc.status in _RETRYABLE_SERVER_STATUSES
    # Connection resets, disconnects and timeouts are transient network trouble; a read can
    # be repeated whether or not the first one reached the server.
    return isinstance(exc, aiohttp.ClientError | asyncio.TimeoutError)


def retryable_for_create(exc: BaseException) -> bool:
    """Whether a query-creating POST may be retried: only when no query can exist.

    A POST that creates a query is not idempotent (there is no idempotency key): a retry
    after the server received it would run the query twice. So it is retried only when the
    request certainly created nothing: the connection never opened, the gateway rate-limited
    it (429), or Halo could not contact the site (503).
    """
    if isinstance(exc, RateLimitedError | SiteUnavailableError):
        return True
    return _connection_not_established(exc)
