"""The one request loop: authentication, retries, error mapping, logging.

Every HTTP request of the client goes through :meth:`HttpTransport.request`: a plain loop
over attempts under a :class:`~halo_async._retry.RetryPolicy` whose branches say why they
retry or stop. It maps error answers to the classes of :mod:`halo_async.errors` and logs
each attempt without the API key.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import logging
import math
import string
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import aiohttp
import attrs
import orjson
import yarl
from multidict import CIMultiDict, CIMultiDictProxy

from halo_async import _constants as C
from halo_async import _convert, models
from halo_async._otel import Instruments, Telemetry
from halo_async._retry import (
    RetryPolicy,
    parse_retry_after,
    retryable_for_create,
    retryable_for_read,
)
from halo_async.errors import (
    APIError,
    ClientClosedError,
    HaloConnectionError,
    QueryFailedError,
    RateLimitedError,
    RedirectRefusedError,
    ServerError,
    SubmissionOutcomeUnknownError,
    api_error_class,
    error_for_details,
    error_for_query,
)

if TYPE_CHECKING:
    from halo_async.budget import RequestBudget

logger = logging.getLogger(C.LOGGER_NAME)


class Safety(enum.Enum):
    """What a repeat of the request could do, which decides how it may be retried."""

    #: Changes nothing, or the same thing again (GETs, batch status, pairing, cancel).
    IDEMPOTENT = "idempotent"
    #: Creates a query: repeated only when nothing can have been created.
    CREATES_QUERY = "creates_query"


class Response:
    """A successful answer, read whole. (A plain slotted class, not a frozen attrs one:
    one is made for every request, and a frozen class's __init__ makes an object more.)"""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: CIMultiDictProxy[str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"<Response {self.status}, {len(self.body)} bytes>"

    def json(self) -> Any:
        """The body as JSON (None for an empty body)."""
        return orjson.loads(self.body) if self.body else None


class _Secret:
    """Holds the API key, and the request headers that carry it, so that no repr, log line
    or traceback local shows it."""

    __slots__ = ("_value", "headers", "json_headers")

    def __init__(self, value: str) -> None:
        self._value = value
        # Built once per key, not once a request: aiohttp copies them into each request.
        self.headers = {C.API_KEY_HEADER: value, "Accept": "application/json"}
        self.json_headers = {**self.headers, "Content-Type": "application/json"}

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"


@attrs.define
class _Attempt:
    """One request as sent, and how many times it has been."""

    session: aiohttp.ClientSession
    method: str
    path: str
    params: Mapping[str, str] | None
    body: bytes | None
    read_timeout: float | None
    site_id: str | None
    safety: Safety
    policy: RetryPolicy
    started: float
    count: int = 0
    otel: Instruments | None = None  # what records its spans and metrics, if anything does


class HttpTransport:
    """Owns (or borrows) the aiohttp session and sends every request."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        session: aiohttp.ClientSession | None,
        retry: RetryPolicy,
        connect_timeout: float,
        request_timeout: float,
        connection_limit: int,
        budget: RequestBudget | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._key = _Secret(api_key)
        self._budget = budget
        self._key_fingerprint: str | None = None
        self.base_url = base_url.rstrip("/")
        base = yarl.URL(self.base_url)
        self._base, self._base_path = base, base.raw_path.rstrip("/")
        self.telemetry = telemetry or Telemetry(self.base_url)
        self.retry = retry
        self.request_timeout = request_timeout
        self._connect_timeout = connect_timeout
        self._connection_limit = connection_limit
        self._session = session
        self._owns_session = session is None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def api_key(self) -> str:
        return self._key.reveal()

    @api_key.setter
    def api_key(self, value: str) -> None:
        self._key = _Secret(value)
        self._key_fingerprint = None

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def owns_open_session(self) -> bool:
        return self._owns_session and self._session is not None and not self._session.closed

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ClientClosedError("this HaloClient is closed; create a new one")
        if self._session is None:
            # Created on first use, inside the running loop, so that a client can be built
            # at import time (e.g. a FastAPI module) without binding to a loop.
            connector = aiohttp.TCPConnector(limit=self._connection_limit, limit_per_host=0)
            self._session = aiohttp.ClientSession(
                connector=connector, headers={"User-Agent": C.USER_AGENT}
            )
        elif self._session.closed:
            raise ClientClosedError("the aiohttp session this HaloClient borrowed is closed")
        return self._session

    async def open(self) -> None:
        self._ensure_session()

    async def close(self) -> None:
        self._closed = True
        if self._owns_session and self._session is not None and not self._session.closed:
            await self._session.close()

    # -- requests ----------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        safety: Safety,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        read_timeout: float | None = None,
        site_id: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> Response:
        """Send a request, retrying as ``safety`` allows, and return a 2xx answer:
        ``read_timeout`` bounds each attempt (``request_timeout`` by default), cut to the
        time left before the deadline of ``retry`` (the transport's policy by default).
        Raises ``APIError``, ``QueryFailedError``, ``HaloConnectionError`` (no answer), or
        ``SubmissionOutcomeUnknownError`` (a query-creating POST whose fate is unknown)."""
        policy = retry or self.retry
        body = orjson.dumps(json) if json is not None else None
        session = self._ensure_session()
        started = policy.now()
        url = self._url(path)
        otel = self.telemetry.instruments()
        first: _Outcome = None
        if self._budget is None and otel is None and not logger.isEnabledFor(logging.DEBUG):
            # Nothing takes part in an attempt but the network (no budget to ask, no span,
            # no debug line): the first attempt goes out with no _Attempt, and a plain 2xx
            # answer comes back as it is, which is nearly every request. Anything else (an
            # error, a redirect, no answer) is taken up below as that first attempt's outcome.
            try:
                first = await self._round_trip(
                    session,
                    method,
                    url,
                    params=params,
                    data=body,
                    headers=self._key.headers if body is None else self._key.json_headers,
                    timeout=_first_timeout(
                        read_timeout or self.request_timeout,
                        policy.deadline,
                        self._connect_timeout,
                        safety is Safety.CREATES_QUERY,
                    ),
                )
            except (RuntimeError, aiohttp.ClientError, TimeoutError) as exc:
                first = exc
            else:
                if first[0] < 300:
                    return Response(*first)
        attempt = _Attempt(
            session, method, path, params, body, read_timeout, site_id, safety, policy,
            started=started, otel=otel,
        )  # fmt: skip
        return await self._attempts(attempt, url, json, first)

    async def _attempts(
        self, attempt: _Attempt, url: yarl.URL, sent: Any, first: _Outcome
    ) -> Response:
        """The loop over ``attempt``'s tries, retrying as its safety allows; ``first`` is the
        outcome of a first try already made (see ``request``), or None."""
        retryable = (
            retryable_for_read if attempt.safety is Safety.IDEMPOTENT else retryable_for_create
        )
        while True:
            attempt.count += 1
            if first is None and self._budget is not None:
                await self._spend(self._budget, attempt)
            try:
                if first is None:
                    started = time.perf_counter() if logger.isEnabledFor(logging.DEBUG) else None
                    answer = await self._send(attempt, url, attempt.params)
                    if started is not None:
                        self._log_answer(attempt, answer[0], started)
                elif isinstance(first, BaseException):
                    raise first
                else:
                    answer = first
                first = None
                if answer[0] in _REDIRECTS:
                    answer = await self._follow_redirects(attempt, url, answer)
                return self._answer(attempt, *answer)
            except RuntimeError as exc:
                # aiohttp's "Session is closed": the client was closed under this request.
                if not attempt.session.closed:
                    raise
                raise self._closed_under(attempt) from exc
            except (APIError, aiohttp.ClientError, TimeoutError) as exc:
                first = None
                if not isinstance(exc, APIError):
                    # aiohttp's frames hold the request's headers (the key) as locals, which
                    # Sentry, ``pytest -l`` or rich's show_locals would ship: dropped (see there).
                    _drop_frames(exc)
                if self._closed:
                    raise self._closed_under(attempt) from exc
                if self._budget is not None and isinstance(exc, RateLimitedError):
                    await self._slow_down(self._budget, attempt, exc.retry_after)
                delay = self._retry_delay(attempt, exc, retryable)
                if delay is None:
                    error = self._final_error(attempt, attempt.safety, sent, exc)
                    if error is exc:
                        raise
                    raise error from exc
                await attempt.policy.sleep(delay)
                if self._closed:
                    raise self._closed_under(attempt) from exc

    def _url(self, path: str) -> yarl.URL:
        """The URL of ``path``. A path of plain characters (what the SDK's own ids and
        segments make) is joined to the base as it is, not parsed and encoded again: 4 us
        a request, with new query ids missing yarl's cache."""
        if path.isascii() and path.encode().translate(_PLAIN).isascii():
            return self._base.with_path(self._base_path + path, encoded=True)
        return yarl.URL(self.base_url + path)

    def _fingerprint(self) -> str:
        """The budget's name for the key (computed once per key, never the key itself)."""
        if self._key_fingerprint is None:
            from halo_async.budget import key_fingerprint

            self._key_fingerprint = key_fingerprint(self._key.reveal())
        return self._key_fingerprint

    async def _spend(self, budget: RequestBudget, attempt: _Attempt) -> None:
        """Wait for the shared budget to allow the attempt. A budget that cannot be asked
        fails the request as one that never reached Halo (so a create is known unsent)."""
        try:
            await budget.acquire(self._fingerprint(), attempt.site_id)
        except Exception as exc:
            raise HaloConnectionError(
                f"{attempt.method} {attempt.path}: not sent, the request budget failed: "
                f"{_describe(exc)}",
                method=attempt.method,
                path=attempt.path,
            ) from exc

    def query_slot(self, site_id: str) -> contextlib.AbstractAsyncContextManager[None] | None:
        """One of the budget's slots for a query in flight on ``site_id``; None without a
        budget (nothing to hold, and no context manager to enter for it)."""
        if self._budget is None:
            return None
        return self._budget_slot(self._budget, site_id)

    @contextlib.asynccontextmanager
    async def _budget_slot(self, budget: RequestBudget, site_id: str) -> AsyncIterator[None]:
        """A budget that cannot give a slot fails the query before anything is sent."""
        async with contextlib.AsyncExitStack() as held:
            try:
                await held.enter_async_context(budget.query_slot(self._fingerprint(), site_id))
            except Exception as exc:
                path = f"/integrator/sites/{site_id}/queries"
                raise HaloConnectionError(
                    f"site {site_id}: query not created or resumed, the request budget's "
                    f"query slot failed: {_describe(exc)}",
                    method="POST",
                    path=path,
                ) from exc
            yield

    async def _slow_down(
        self, budget: RequestBudget, attempt: _Attempt, retry_after: float | None
    ) -> None:
        """Tell the shared budget of a 429; if it cannot be told, this client's own wait
        before its retry still honours the Retry-After."""
        try:
            await budget.rate_limited(self._fingerprint(), attempt.site_id, retry_after)
        except Exception as exc:
            logger.warning(
                "%s %s: the request budget could not be told of a 429: %s",
                attempt.method, attempt.path, _describe(exc),
            )  # fmt: skip

    def _closed_under(self, attempt: _Attempt) -> ClientClosedError:
        unsure = (
            "; the query may or may not have been created"
            if attempt.safety is Safety.CREATES_QUERY
            else ""
        )
        return ClientClosedError(
            f"{attempt.method} {attempt.path}: the HaloClient was closed while this request "
            f"was in progress{unsure}"
        )

    def _retry_delay(
        self, attempt: _Attempt, exc: BaseException, retryable: Callable[[BaseException], bool]
    ) -> float | None:
        """The wait before the next attempt, or None to stop here."""
        policy = attempt.policy
        if not retryable(exc):
            # Not transient (a 4xx), or a query-creating POST that may have created a query.
            return None
        if attempt.count >= policy.max_attempts:
            return None
        delay = policy.delay(attempt.count, getattr(exc, "retry_after", None))
        if policy.now() + delay - attempt.started > policy.deadline:
            # Waiting past the deadline to try once more would break the caller's bound.
            logger.warning(
                "%s %s: giving up after %d attempt(s): the next wait (%.2f s) would pass "
                "the %.0f s deadline",
                attempt.method, attempt.path, attempt.count, delay, policy.deadline,
            )  # fmt: skip
            return None
        logger.info(
            "%s %s: attempt %d failed (%s); retrying in %.2f s",
            attempt.method, attempt.path, attempt.count, _describe(exc), delay,
        )  # fmt: skip
        if attempt.otel is not None:
            attempt.otel.retried(attempt.method, attempt.path)
        return delay

    def _final_error(
        self, attempt: _Attempt, safety: Safety, sent: Any, exc: BaseException
    ) -> BaseException:
        """What the caller gets once retrying stopped at ``exc``."""
        unsure = not isinstance(exc, APIError) or isinstance(exc, ServerError)
        if safety is Safety.CREATES_QUERY and unsure and not retryable_for_create(exc):
            # No answer, or a 500/502/504, to a POST that may have reached Halo: the query
            # may exist, so it is reported as such and never sent again blindly.
            return self._outcome_unknown(attempt.method, attempt.path, sent, exc)
        if isinstance(exc, APIError):
            return exc
        return HaloConnectionError(
            f"{attempt.method} {attempt.path}: no answer after {attempt.count} attempt(s): "
            f"{_describe(exc)}",
            method=attempt.method,
            path=attempt.path,
        )

    def _outcome_unknown(
        self, method: str, path: str, sent: Any, exc: BaseException
    ) -> SubmissionOutcomeUnknownError:
        return SubmissionOutcomeUnknownError(
            f"{method} {path}: the request was sent but its outcome is unknown "
            f"({_describe(exc)}). The query may or may not exist; it was not resubmitted. "
            "Check the site before sending it again.",
            method=method,
            path=path,
            body=sent,
            cause=exc,
        )

    def _answer(
        self, attempt: _Attempt, status: int, headers: CIMultiDictProxy[str], payload: bytes
    ) -> Response:
        """A 2xx answer as a Response; any other raises its typed error."""
        if status >= 400:
            raise error_from_response(
                status,
                self._scrub(payload),
                headers,
                method=attempt.method,
                path=attempt.path,
                site_id=attempt.site_id,
            )
        return Response(status, headers, payload)

    def _send(
        self, attempt: _Attempt, url: yarl.URL, params: Mapping[str, str] | None
    ) -> Awaitable[tuple[int, CIMultiDictProxy[str], bytes]]:
        """The attempt's round trip to ``url``, handed back unawaited: ``request`` awaits it
        itself, a frame fewer on every resumption of every request (a fan-out resumes
        thousands). With telemetry, under its span (one per round trip)."""
        sent = self._round_trip(
            attempt.session,
            attempt.method,
            url,
            params=params,
            data=attempt.body,
            headers=self._headers(attempt),
            timeout=self._timeout(attempt),
        )
        if attempt.otel is None:
            return sent
        return attempt.otel.traced(sent, attempt.method, attempt.path, params, attempt.count)

    def _log_answer(self, attempt: _Attempt, status: int, started: float) -> None:
        logger.debug(
            "%s %s -> %d (attempt %d, %.3f s)",
            attempt.method, attempt.path, status, attempt.count, time.perf_counter() - started,
        )  # fmt: skip

    async def _follow_redirects(
        self, attempt: _Attempt, url: yarl.URL, answer: tuple[int, CIMultiDictProxy[str], bytes]
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        """The same-origin redirects of a read, followed from a redirect ``answer`` to ``url``:
        the final status, headers and body."""
        for _ in range(C.MAX_REDIRECTS):
            url = self._redirect_target(attempt, url, answer[0], answer[1])
            started = time.perf_counter()
            answer = await self._send(attempt, url, None)
            self._log_answer(attempt, answer[0], started)
            if answer[0] not in _REDIRECTS:
                return answer
        status, headers, _ = answer
        self._redirect_target(attempt, url, status, headers)  # refused for its own reason first
        raise self._refused(attempt, status, headers, f"more than {C.MAX_REDIRECTS} redirects")

    async def _round_trip(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: yarl.URL,
        *,
        params: Mapping[str, str] | None,
        data: bytes | None,
        headers: Mapping[str, str],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp enforces it
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        """Exactly one HTTP request, its answer read whole: status, headers, body.

        The only line that touches the network, kept apart so that the tests can stand in
        for it (``tests/support.py``'s ``HaloMock``) while everything around it (retries,
        redirects, timeouts, key scrubbing, error mapping) runs as in production, on
        whichever aiohttp is installed. It follows no redirect: ``request`` decides those.
        """
        async with session.request(
            method,
            url,
            params=params,
            data=data,
            headers=headers,
            timeout=timeout,
            allow_redirects=False,
        ) as resp:
            return resp.status, resp.headers, await resp.read()

    def _redirect_target(
        self, attempt: _Attempt, url: yarl.URL, status: int, headers: CIMultiDictProxy[str]
    ) -> yarl.URL:
        """Where a redirect may be followed to; raises when it may not."""
        location = headers.get("Location")
        if location is None:
            raise self._refused(attempt, status, headers, "a redirect without a Location")
        if attempt.safety is Safety.CREATES_QUERY:
            raise self._refused(
                attempt, status, headers, "a query-creating POST is never redirected"
            )
        if attempt.method != "GET" and status not in (307, 308):
            # 301/302/303 turn the request into a GET: not the request that was asked for.
            raise self._refused(attempt, status, headers, "the redirect would change the method")
        target = url.join(yarl.URL(location))
        if target.origin() != url.origin():
            raise self._refused(
                attempt, status, headers, f"it points to another origin ({target.origin()})"
            )
        return target

    def _refused(
        self, attempt: _Attempt, status: int, headers: CIMultiDictProxy[str], why: str
    ) -> RedirectRefusedError:
        return RedirectRefusedError(
            f"{attempt.method} {attempt.path}: HTTP {status} redirect not followed: {why}",
            status=status,
            method=attempt.method,
            path=attempt.path,
            headers=headers,
        )

    def _headers(self, attempt: _Attempt) -> dict[str, str]:
        return self._key.headers if attempt.body is None else self._key.json_headers

    def _timeout(self, attempt: _Attempt) -> aiohttp.ClientTimeout:
        # The retry deadline bounds the whole request, attempts included: an attempt may
        # not outlast it, however long the per-attempt timeout.
        left = attempt.policy.deadline - (attempt.policy.now() - attempt.started)
        return _attempt_timeout(
            attempt.read_timeout or self.request_timeout,
            left,
            self._connect_timeout,
            attempt.safety is Safety.CREATES_QUERY,
        )

    def _scrub(self, payload: bytes) -> bytes:
        """The body without the API key, should a server echo it back (a gateway quoting the
        rejected key, say), raw or JSON-escaped: it must not travel any further."""
        key = self._key.reveal()
        for form in _key_forms(key):
            if form in payload:
                payload = payload.replace(form, b"***")
        return payload


_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_Outcome = tuple[int, CIMultiDictProxy[str], bytes] | BaseException | None
"""A first attempt's outcome, made before its ``_Attempt`` (see ``HttpTransport.request``)."""
# Unreserved characters and "/" (RFC 3986 §2.3): a path of these means the same encoded or not.
# As a translation table that makes every other byte non-ASCII: a third of the time of a
# regular expression's search over a path (which scans a character class per character).
_PLAIN = bytes(
    byte if chr(byte) in string.ascii_letters + string.digits + "/._~-" else 0x80
    for byte in range(256)
)


def _attempt_timeout(
    timeout: float, left: float, connect_timeout: float, creates: bool
) -> aiohttp.ClientTimeout:
    """The timeouts of an attempt of at most ``timeout`` seconds, with ``left`` before the
    retry deadline. (Comparisons, not min() and max(): each of those makes an iterator.)"""
    left = left if left > 0.001 else 0.001
    total = timeout if timeout < left else left
    connect = connect_timeout if connect_timeout < total else total
    return _client_timeout(total, connect, creates)


# A first attempt has the whole deadline left: its timeouts depend on its arguments alone.
_first_timeout = functools.lru_cache(maxsize=64)(_attempt_timeout)


@functools.lru_cache(maxsize=256)
def _client_timeout(total: float, connect: float, creates: bool) -> aiohttp.ClientTimeout:
    # Most requests share a handful of timeouts; built once each, not once a request.
    #
    # ``connect_timeout`` is ``sock_connect``: the making of a connection. aiohttp's
    # ``connect`` also times the wait for a free connection of the pool, which is the
    # client's own queue (a fan-out keeps every connection busy). A create gets it, for the
    # attempt's whole time but a margin: a create that waited that long for a connection
    # (or a DNS answer) fails as aiohttp's ConnectionTimeoutError, known unsent (and so
    # retried), before ``total`` fires and leaves a bare TimeoutError, which for a create
    # means "maybe sent". No rounding of the deadlines up to whole seconds (aiohttp's
    # ``ceil_threshold``): it could make both fire at once. A read is retried after either
    # timeout alike, so it goes without the second timer (one fewer for every request).
    return aiohttp.ClientTimeout(
        total=total,
        connect=total - min(total * _POOL_WAIT_MARGIN, 1.0) if creates else None,
        sock_connect=connect,
        ceil_threshold=math.inf,
    )


_POOL_WAIT_MARGIN = 0.1
"""The share of an attempt's time (at most 1 s) left after the longest wait for a connection."""


def _key_forms(key: str) -> set[bytes]:
    """The key as it could appear in a body: raw, JSON-escaped, or every character escaped."""
    return {
        key.encode(),
        orjson.dumps(key)[1:-1],
        key.replace("/", "\\/").encode(),
        "".join(f"\\u{ord(char):04x}" for char in key).encode(),
        "".join(f"\\u{ord(char):04X}" for char in key).encode(),
    }


def _drop_frames(exc: BaseException) -> None:
    """Clear the tracebacks of an error and of the errors it chains (their frames' locals
    may hold the request headers), and the headers an aiohttp error carries itself."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = None
        if isinstance(current, aiohttp.ClientResponseError):
            info = current.request_info
            current.request_info = aiohttp.RequestInfo(
                info.url, info.method, CIMultiDictProxy(CIMultiDict()), info.real_url
            )
            current.history = ()
        current = current.__cause__ or current.__context__


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, APIError):
        return f"HTTP {exc.status}"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- Error answers --------------------------------------------------------------------------


def error_from_response(
    status: int,
    payload: bytes,
    headers: Mapping[str, str],
    *,
    method: str,
    path: str,
    site_id: str | None = None,
) -> APIError | QueryFailedError:
    """The error for an HTTP error answer, from any of the envelopes Halo has used.

    Parse order (REFERENCE §8): ``error`` -> ``errorDetails`` or ``executionFailed`` ->
    FHIR ``resourceType`` -> gateway ``statusCode`` -> bare ``status``/``message`` -> text.
    """
    text = payload[: C.ERROR_BODY_KEPT_BYTES].decode("utf-8", errors="replace")
    try:
        envelope: Any = orjson.loads(payload) if payload else None
    except orjson.JSONDecodeError:
        envelope = None
    if isinstance(envelope, dict) and is_query_failure(envelope):
        return query_failure(envelope, site_id=site_id, http_status=status)
    message = _capped(_message_of(envelope) or text.strip() or _reason(status), len(payload))
    cls = api_error_class(status, message)
    kwargs: dict[str, Any] = {
        "status": status,
        "method": method,
        "path": path,
        "envelope": envelope,
        "body": text,
        "headers": headers,
    }
    if issubclass(cls, RateLimitedError | ServerError):
        kwargs["retry_after"] = parse_retry_after(headers.get("Retry-After"))
    return cls(message, **kwargs)


def _capped(message: str, body_size: int) -> str:
    """A message short enough to log: a gateway's HTML error page can run to megabytes."""
    if len(message) <= C.ERROR_MESSAGE_MAX_CHARS:
        return message
    return f"{message[: C.ERROR_MESSAGE_MAX_CHARS]}... ({body_size} bytes)"


def is_query_failure(envelope: Mapping[str, Any]) -> bool:
    """Whether a body reports a failed query (a query object or a bare errorDetails)."""
    return "error" not in envelope and (
        isinstance(envelope.get("errorDetails"), dict)
        or envelope.get("status") == "executionFailed"
    )


def query_failure(
    body: Mapping[str, Any], *, site_id: str | None, http_status: int | None = None
) -> QueryFailedError:
    """The typed error for a failed query object, or for a bare ``errorDetails`` body."""
    if "id" in body and "status" in body:
        cls: type[models.AsyncQuery | models.ImmediateQuery] = (
            models.AsyncQuery if body.get("mode") == "async" else models.ImmediateQuery
        )
        try:
            query = _convert.structure(body, cls)
        except Exception:  # a malformed failure body must not hide the failure itself
            logger.debug("could not structure a failed query body", exc_info=True)
        else:
            return error_for_query(query, http_status=http_status)
    details_raw = body.get("errorDetails")
    details = (
        _convert.structure(details_raw, models.ErrorDetails)
        if isinstance(details_raw, dict)
        else None
    )
    status = body.get("status")
    return error_for_details(
        details,
        status=status if isinstance(status, str) else None,
        site_id=body.get("siteId") or site_id,
        query_id=body.get("id"),
        http_status=http_status,
    )


def _message_of(envelope: Any) -> str | None:
    if not isinstance(envelope, dict):
        return None
    inner = envelope.get("error")
    if isinstance(inner, dict) and inner.get("message"):
        return str(inner["message"])
    if isinstance(inner, str):
        return inner
    if envelope.get("resourceType") == "OperationOutcome":
        issues = envelope.get("issue") or []
        texts = [
            str(issue.get("details", {}).get("text") or issue.get("diagnostics") or "")
            for issue in issues
            if isinstance(issue, dict)
        ]
        return "; ".join(t for t in texts if t) or None
    if envelope.get("message"):
        return str(envelope["message"])
    return None


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"
