"""The API key never leaks: not in a log line, a repr, an exception, or a URL.

Every scenario runs with all loggers at DEBUG; afterwards every log record (message,
arguments and formatted traceback) and every raised exception (str, repr, attributes and
its whole cause chain) is searched for the key.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
import yarl
from multidict import CIMultiDict, CIMultiDictProxy

from halo_async import HaloClient, errors

if TYPE_CHECKING:
    from conftest import HaloMock

BASE = "https://api.haloconnect.io"
SITE = "3f91c577-20a8-467b-8991-b96dfb90e8c6"
QUERY = "1366ef6e-d536-457c-8f1b-eaa4352059f9"
# The key of the `client` fixture (conftest.API_KEY), for a server that echoes it back.
API_KEY = "4f1c9e2ab7d84c0e9a55c3b1d2e6f708"
SITE_URL = f"{BASE}/integrator/sites/{SITE}"
IMMEDIATE_URL = f"{SITE_URL}/queries/immediate"
SITE_BODY = {"id": SITE}
QUERY_BODY = {"id": QUERY, "siteId": SITE, "mode": "immediate", "status": "successful"}


def envelope(status: int, message: str) -> dict[str, Any]:
    return {"error": {"status": status, "statusText": "x", "message": message}}


def response_error() -> aiohttp.ClientResponseError:
    """An aiohttp response error: it carries the request's headers, the key among them."""
    url = yarl.URL(SITE_URL)
    sent = CIMultiDictProxy(CIMultiDict({"Ocp-Apim-Subscription-Key": API_KEY}))
    info = aiohttp.RequestInfo(url, "GET", sent, url)
    return aiohttp.ClientResponseError(info, (), status=200, message="Not enough data")


Scenario = tuple[
    Callable[["HaloMock"], None],
    Callable[[HaloClient], Awaitable[Any]],
    type[BaseException] | None,
]

SCENARIOS: dict[str, Scenario] = {
    "success": (
        lambda m: m.get(SITE_URL, payload=SITE_BODY),
        lambda c: c.get_site(SITE),
        None,
    ),
    "immediate-success": (
        lambda m: m.post(IMMEDIATE_URL, payload=QUERY_BODY),
        lambda c: c.immediate_query(SITE, "SELECT 1"),
        None,
    ),
    "retried-503-then-success": (
        lambda m: (
            m.get(SITE_URL, status=503, payload=envelope(503, "busy")),
            m.get(SITE_URL, status=429, payload={}, headers={"Retry-After": "1"}),
            m.get(SITE_URL, exception=aiohttp.ServerDisconnectedError()),
            m.get(SITE_URL, payload=SITE_BODY),
        ),
        lambda c: c.get_site(SITE),
        None,
    ),
    "retries-exhausted": (
        lambda m: m.get(SITE_URL, exception=TimeoutError(), repeat=True),
        lambda c: c.get_site(SITE),
        errors.HaloConnectionError,
    ),
    "aiohttp-error-carrying-the-headers": (
        lambda m: m.get(SITE_URL, exception=response_error(), repeat=True),
        lambda c: c.get_site(SITE),
        errors.HaloConnectionError,
    ),
    "unauthorised": (
        lambda m: m.get(
            SITE_URL,
            status=401,
            payload={
                "statusCode": 401,
                "message": "Access denied due to invalid subscription key.",
            },
        ),
        lambda c: c.get_site(SITE),
        errors.AuthenticationError,
    ),
    "forbidden": (
        lambda m: m.get(SITE_URL, status=403, payload=envelope(403, "Caller Ip Not Allowed")),
        lambda c: c.get_site(SITE),
        errors.PermissionDeniedError,
    ),
    "server-error-exhausted": (
        lambda m: m.get(SITE_URL, status=500, body=b"Internal Server Error", repeat=True),
        lambda c: c.get_site(SITE),
        errors.ServerError,
    ),
    "outcome-unknown": (
        lambda m: m.post(IMMEDIATE_URL, exception=aiohttp.ServerTimeoutError("read timeout")),
        lambda c: c.immediate_query(SITE, "INSERT INTO X VALUES (1)", execution_mode="nonQuery"),
        errors.SubmissionOutcomeUnknownError,
    ),
    "query-failed": (
        lambda m: m.post(
            IMMEDIATE_URL,
            status=400,
            payload={
                **QUERY_BODY,
                "status": "executionFailed",
                "errorDetails": {"errorType": "mssql", "errorCode": 208, "errorMessage": "no"},
            },
        ),
        lambda c: c.immediate_query(SITE, "SELECT * FROM NOPE"),
        errors.SqlExecutionError,
    ),
    "malformed-answer": (
        lambda m: m.get(SITE_URL, payload={"not": "a site"}),
        lambda c: c.get_site(SITE),
        errors.DecodeError,
    ),
    "server-echoes-the-key": (
        lambda m: m.get(
            SITE_URL,
            status=401,
            payload=envelope(401, f"Subscription Key Invalid: {API_KEY}"),
        ),
        lambda c: c.get_site(SITE),
        errors.AuthenticationError,
    ),
    # Escaped in the JSON, the key reads back whole once the body is parsed.
    "server-echoes-the-key-json-escaped": (
        lambda m: m.get(
            SITE_URL,
            status=401,
            body=b'{"error": {"status": 401, "message": "Invalid key '
            + "".join(f"\\u{ord(c):04x}" for c in API_KEY).encode()
            + b'"}}',
            content_type="application/json",
        ),
        lambda c: c.get_site(SITE),
        errors.AuthenticationError,
    ),
    "validation": (
        lambda m: None,
        lambda c: c.get_result_page(SITE, QUERY, 0),
        errors.ValidationError,
    ),
}


def exception_texts(exc: BaseException) -> list[str]:
    """str, repr and attributes of an exception and of everything it was raised from."""
    texts: list[str] = []
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        texts += [str(current), repr(current), repr(vars(current))]
        pending += [current.__cause__, current.__context__, getattr(current, "cause", None)]
    return texts


def log_texts(records: list[logging.LogRecord]) -> list[str]:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return [formatter.format(record) + repr(record.args) for record in records]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
async def test_the_key_never_appears(
    scenario: str,
    client: HaloClient,
    mocked: HaloMock,
    api_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    arrange, call, expected = SCENARIOS[scenario]
    arrange(mocked)
    caplog.set_level(logging.DEBUG)

    raised: BaseException | None = None
    try:
        await call(client)
    except errors.HaloError as exc:
        raised = exc

    texts = [*log_texts(caplog.records), repr(client), repr(client.retry), repr(vars(client._http))]
    if expected is None:
        assert raised is None
    else:
        assert type(raised) is expected
        texts += exception_texts(raised)
    leaks = [text for text in texts if api_key in text]
    assert leaks == []
    for _, url, kwargs in mocked.made():
        assert api_key not in str(url)
        assert kwargs["headers"]["Ocp-Apim-Subscription-Key"] == api_key


async def test_the_retry_logs_say_what_happened(
    client: HaloClient, mocked: HaloMock, caplog: pytest.LogCaptureFixture
) -> None:
    # The redaction test above would pass with no logging at all; this one shows there is
    # something worth reading in the logs that were searched.
    SCENARIOS["retried-503-then-success"][0](mocked)
    caplog.set_level(logging.DEBUG, logger="halo_async")

    await client.get_site(SITE)

    messages = [record.getMessage() for record in caplog.records]
    path = f"/integrator/sites/{SITE}"
    assert f"GET {path} -> 503 (attempt 1" in messages[0]
    assert any(f"GET {path}: attempt 1 failed (HTTP 503); retrying in" in m for m in messages)
    assert any("attempt 3 failed (ServerDisconnectedError" in m for m in messages)
    assert f"GET {path} -> 200 (attempt 4" in messages[-1]


async def test_a_rotated_key_is_not_leaked_either(
    client: HaloClient, mocked: HaloMock, caplog: pytest.LogCaptureFixture
) -> None:
    new_key = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"
    mocked.get(SITE_URL, status=401, payload=envelope(401, "Subscription Key Invalid"))
    caplog.set_level(logging.DEBUG)
    client.api_key = new_key

    with pytest.raises(errors.AuthenticationError) as caught:
        await client.get_site(SITE)

    texts = log_texts(caplog.records) + exception_texts(caught.value) + [repr(client)]
    assert [text for text in texts if new_key in text] == []
