"""Webhooks: signatures (the reference's test vector), payloads, freshness, replays and the
job registry waking a real QueryJob without sockets; the emulator's sender posting over a
real socket to a scripted server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from halo_async import PollPolicy, QueryJob, models
from halo_async._otel import Telemetry
from halo_async.emulator.state import QueryEvent
from halo_async.emulator.webhooks import WebhookSender, format_timestamp
from halo_async.errors import HaloError, ValidationError
from halo_async.webhooks import (
    JobRegistry,
    WebhookError,
    WebhookEvent,
    WebhookPayloadError,
    WebhookReplayError,
    WebhookSignatureError,
    WebhookSource,
    WebhookTimestampError,
    WebhookVerifier,
    compute_signature,
    parse_webhook,
    verify_signature,
)
from tests.support import Origin, Received, free_port, in_turn, status

# REFERENCE §7, the COMPOSED test vector.
VECTOR_SECRET = "test-secret"
VECTOR_PAYLOAD = {
    "id": "a1b2c3d4-e5f6-7890-abcd-ef1234567890",
    "occurredAt": "2026-03-05T14:30:00.0000000+00:00",
    "siteId": "12345678-abcd-ef01-2345-6789abcdef01",
    "queryId": "abcdef01-2345-6789-abcd-ef0123456789",
    "webhookSource": "async",
}
VECTOR_BODY = orjson.dumps(VECTOR_PAYLOAD)  # compact: no spaces
VECTOR_TIMESTAMP = "2026-03-05T14:30:01.0000000+00:00"
VECTOR_SIGNATURE = "e5a7a8887ca51d1a240ccbe45182dd72418172f479b652c63861fa426574a4b6"
SENT_AT = dt.datetime(2026, 3, 5, 14, 30, 1, tzinfo=dt.UTC)


def vector_headers(**overrides: str) -> dict[str, str]:
    headers = {
        "X-Halo-Id": str(VECTOR_PAYLOAD["id"]),
        "X-Halo-Timestamp": VECTOR_TIMESTAMP,
        "X-Halo-Signature-256": VECTOR_SIGNATURE,
    }
    headers.update(overrides)
    return headers


class FixedClock:
    """The verifier's clock, moved by hand."""

    def __init__(self, now: dt.datetime = SENT_AT) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def signed(
    payload: dict[str, Any], *, secret: str = VECTOR_SECRET, timestamp: str = VECTOR_TIMESTAMP
) -> tuple[bytes, dict[str, str]]:
    body = orjson.dumps(payload)
    return body, {
        "X-Halo-Id": str(payload.get("id", "")),
        "X-Halo-Timestamp": timestamp,
        "X-Halo-Signature-256": compute_signature(secret, body, timestamp),
    }


# ------------------------------------------------------------------------------- signatures


def test_reference_test_vector_signature_is_reproduced_exactly() -> None:
    assert VECTOR_BODY == (
        b'{"id":"a1b2c3d4-e5f6-7890-abcd-ef1234567890",'
        b'"occurredAt":"2026-03-05T14:30:00.0000000+00:00",'
        b'"siteId":"12345678-abcd-ef01-2345-6789abcdef01",'
        b'"queryId":"abcdef01-2345-6789-abcd-ef0123456789","webhookSource":"async"}'
    )
    assert compute_signature(VECTOR_SECRET, VECTOR_BODY, VECTOR_TIMESTAMP) == VECTOR_SIGNATURE
    assert compute_signature(b"test-secret", VECTOR_BODY, VECTOR_TIMESTAMP) == VECTOR_SIGNATURE
    assert verify_signature(VECTOR_SECRET, VECTOR_BODY, VECTOR_TIMESTAMP, VECTOR_SIGNATURE)


def test_signature_comparison_ignores_case() -> None:
    upper = VECTOR_SIGNATURE.upper()
    assert verify_signature(VECTOR_SECRET, VECTOR_BODY, VECTOR_TIMESTAMP, upper)


@pytest.mark.parametrize(
    ("body", "timestamp", "signature", "secret"),
    [
        # one byte of the body changed
        (VECTOR_BODY.replace(b"async", b"Async"), VECTOR_TIMESTAMP, VECTOR_SIGNATURE,
         "test-secret"),
        # the same body re-serialised with spaces: the raw bytes are signed, not the JSON
        (orjson.dumps(VECTOR_PAYLOAD, option=orjson.OPT_INDENT_2), VECTOR_TIMESTAMP,
         VECTOR_SIGNATURE, "test-secret"),
        # the same instant written differently: the header text is signed, not the instant
        (VECTOR_BODY, "2026-03-05T14:30:01+00:00", VECTOR_SIGNATURE, "test-secret"),
        (VECTOR_BODY, "2026-03-05T14:30:01.0000000Z", VECTOR_SIGNATURE, "test-secret"),
        # the header not used exactly as received (no trimming, no prefix stripping)
        (VECTOR_BODY, VECTOR_TIMESTAMP, f" {VECTOR_SIGNATURE}", "test-secret"),
        (VECTOR_BODY, VECTOR_TIMESTAMP, f"sha256={VECTOR_SIGNATURE}", "test-secret"),
        (VECTOR_BODY, VECTOR_TIMESTAMP, VECTOR_SIGNATURE[:-1], "test-secret"),
        (VECTOR_BODY, VECTOR_TIMESTAMP, "é" * 64, "test-secret"),
        (VECTOR_BODY, VECTOR_TIMESTAMP, VECTOR_SIGNATURE, "another-secret"),
    ],
)  # fmt: skip
def test_signature_rejects_anything_but_the_exact_signed_bytes(
    body: bytes, timestamp: str, signature: str, secret: str
) -> None:
    assert not verify_signature(secret, body, timestamp, signature)


# ---------------------------------------------------------------------------------- payload


def test_parse_webhook_reads_the_documented_payload() -> None:
    event = parse_webhook(VECTOR_BODY)
    assert event == WebhookEvent(
        id="a1b2c3d4-e5f6-7890-abcd-ef1234567890",
        occurred_at=dt.datetime(2026, 3, 5, 14, 30, tzinfo=dt.UTC),
        site_id="12345678-abcd-ef01-2345-6789abcdef01",
        query_id="abcdef01-2345-6789-abcd-ef0123456789",
        webhook_source=WebhookSource.ASYNC,
    )
    assert event.occurred_at.tzinfo is not None
    assert parse_webhook(VECTOR_PAYLOAD) == event
    assert parse_webhook(VECTOR_BODY.decode()) == event


def test_parse_webhook_tolerates_new_sources_and_fields() -> None:
    payload = {**VECTOR_PAYLOAD, "webhookSource": "fhirSubscription", "attempt": 3}
    event = parse_webhook(payload)
    assert event.webhook_source == "fhirSubscription"
    assert parse_webhook({**VECTOR_PAYLOAD, "webhookSource": "registered"}).webhook_source is (
        WebhookSource.REGISTERED
    )


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "JSON list"),
        (orjson.dumps({"id": "x"}), "occurred_at"),
        (orjson.dumps({**VECTOR_PAYLOAD, "occurredAt": "yesterday"}), "occurred_at"),
    ],
)
def test_parse_webhook_names_what_is_wrong(body: bytes, says: str) -> None:
    with pytest.raises(WebhookPayloadError, match=says) as caught:
        parse_webhook(body)
    assert isinstance(caught.value, HaloError)


# --------------------------------------------------------------------------------- verifier


def test_verifier_accepts_the_reference_delivery() -> None:
    verifier = WebhookVerifier(VECTOR_SECRET, clock=FixedClock())
    event = verifier.verify(VECTOR_BODY, vector_headers())
    assert event.query_id == VECTOR_PAYLOAD["queryId"]
    assert verifier.remembered == 1


def test_verifier_reads_headers_in_any_case() -> None:
    verifier = WebhookVerifier(VECTOR_SECRET, clock=FixedClock())
    headers = {key.lower(): value for key, value in vector_headers().items()}
    assert verifier.verify(VECTOR_BODY, headers).id == VECTOR_PAYLOAD["id"]


@pytest.mark.parametrize("missing", ["X-Halo-Signature-256", "X-Halo-Timestamp"])
def test_verifier_refuses_a_delivery_without_signature_or_timestamp(missing: str) -> None:
    headers = vector_headers()
    del headers[missing]
    with pytest.raises(WebhookSignatureError, match=missing):
        WebhookVerifier(VECTOR_SECRET, clock=FixedClock()).verify(VECTOR_BODY, headers)


def test_verifier_refuses_a_wrong_signature_and_does_not_remember_it() -> None:
    verifier = WebhookVerifier("not-the-secret", clock=FixedClock())
    with pytest.raises(WebhookSignatureError, match="does not match"):
        verifier.verify(VECTOR_BODY, vector_headers())
    assert verifier.remembered == 0


def test_verifier_accepts_any_secret_of_a_rotation() -> None:
    verifier = WebhookVerifier(["new-secret", VECTOR_SECRET], clock=FixedClock())
    assert verifier.verify(VECTOR_BODY, vector_headers()).id == VECTOR_PAYLOAD["id"]


@pytest.mark.parametrize(
    ("received_after", "accepted"),
    [
        (dt.timedelta(0), True),
        (dt.timedelta(minutes=5), True),  # the boundary itself is still fresh
        (dt.timedelta(minutes=5, seconds=1), False),
        (dt.timedelta(hours=3), False),
        (-dt.timedelta(minutes=4), True),  # a sender's clock a little ahead
        (-dt.timedelta(minutes=6), False),  # ... or far ahead
    ],
)
def test_verifier_refuses_timestamps_more_than_five_minutes_off(
    received_after: dt.timedelta, accepted: bool
) -> None:
    verifier = WebhookVerifier(VECTOR_SECRET, clock=FixedClock(SENT_AT + received_after))
    if accepted:
        verifier.verify(VECTOR_BODY, vector_headers())
    else:
        with pytest.raises(WebhookTimestampError, match="refused"):
            verifier.verify(VECTOR_BODY, vector_headers())
        assert verifier.remembered == 0


def test_verifier_tolerance_is_configurable() -> None:
    clock = FixedClock(SENT_AT + dt.timedelta(seconds=31))
    with pytest.raises(WebhookTimestampError):
        WebhookVerifier(VECTOR_SECRET, tolerance=30, clock=clock).verify(
            VECTOR_BODY, vector_headers()
        )


def test_verifier_refuses_a_signed_but_unreadable_timestamp() -> None:
    body, headers = signed(VECTOR_PAYLOAD, timestamp="last Tuesday")
    with pytest.raises(WebhookTimestampError, match="not an ISO 8601"):
        WebhookVerifier(VECTOR_SECRET, clock=FixedClock()).verify(body, headers)


def test_verifier_refuses_a_signed_body_that_is_not_a_payload() -> None:
    body, headers = signed({"hello": "world"})
    with pytest.raises(WebhookPayloadError):
        WebhookVerifier(VECTOR_SECRET, clock=FixedClock()).verify(body, headers)


def test_verifier_refuses_an_id_header_that_disagrees_with_the_signed_payload() -> None:
    # X-Halo-Id is not signed: a forger could change it to dodge the replay check.
    headers = vector_headers(**{"X-Halo-Id": "ffffffff-0000-0000-0000-000000000000"})
    with pytest.raises(WebhookPayloadError, match="does not match the payload id"):
        WebhookVerifier(VECTOR_SECRET, clock=FixedClock()).verify(VECTOR_BODY, headers)
    upper = vector_headers(**{"X-Halo-Id": str(VECTOR_PAYLOAD["id"]).upper()})
    WebhookVerifier(VECTOR_SECRET, clock=FixedClock()).verify(VECTOR_BODY, upper)


def test_verifier_recognises_a_replay_even_when_re_signed_later() -> None:
    clock = FixedClock()
    verifier = WebhookVerifier(VECTOR_SECRET, clock=clock)
    first = verifier.verify(VECTOR_BODY, vector_headers())
    with pytest.raises(WebhookReplayError) as caught:
        verifier.verify(VECTOR_BODY, vector_headers())
    assert caught.value.event == first
    # Halo re-signs a retry with a fresh timestamp; it is the same delivery all the same.
    clock.now = SENT_AT + dt.timedelta(hours=2)
    later = "2026-03-05T16:30:01.0000000+00:00"
    body, headers = signed(VECTOR_PAYLOAD, timestamp=later)
    with pytest.raises(WebhookReplayError):
        verifier.verify(body, headers)


def test_replay_memory_is_bounded_by_count() -> None:
    verifier = WebhookVerifier(VECTOR_SECRET, remember=3, clock=FixedClock())
    ids = [f"00000000-0000-4000-8000-00000000000{n}" for n in range(5)]
    for webhook_id in ids:
        verifier.verify(*signed({**VECTOR_PAYLOAD, "id": webhook_id}))
        assert verifier.remembered <= 3
    # The two oldest were forgotten (a replay of them would pass); the newest are still known.
    verifier.verify(*signed({**VECTOR_PAYLOAD, "id": ids[0]}))
    with pytest.raises(WebhookReplayError):
        verifier.verify(*signed({**VECTOR_PAYLOAD, "id": ids[4]}))


def test_replay_memory_forgets_ids_after_remember_for() -> None:
    clock = FixedClock()
    verifier = WebhookVerifier(VECTOR_SECRET, remember_for=dt.timedelta(minutes=10), clock=clock)
    verifier.verify(VECTOR_BODY, vector_headers())
    clock.now = SENT_AT + dt.timedelta(minutes=11)
    later = format_timestamp(clock.now)
    other = {**VECTOR_PAYLOAD, "id": "00000000-0000-4000-8000-000000000009"}
    verifier.verify(*signed(other, timestamp=later))
    assert verifier.remembered == 1  # the first id aged out


def test_verifier_never_shows_its_secret() -> None:
    verifier = WebhookVerifier("s3cr3t-value")
    assert "s3cr3t" not in repr(verifier)
    with pytest.raises(ValidationError) as caught:
        WebhookVerifier("")
    assert caught.value.value is None
    with pytest.raises(WebhookSignatureError) as wrong:
        WebhookVerifier("s3cr3t-value", clock=FixedClock()).verify(VECTOR_BODY, vector_headers())
    assert "s3cr3t" not in str(wrong.value)
    assert isinstance(wrong.value, WebhookError)


# --------------------------------------------------------------------------------- registry


class CountingJob:
    def __init__(self, query_id: str) -> None:
        self.query_id = query_id
        self.woken = 0

    def notify(self) -> None:
        self.woken += 1


def test_registry_wakes_only_the_jobs_of_the_announced_query() -> None:
    registry = JobRegistry()
    a, b, a_again = CountingJob("AAAA"), CountingJob("bbbb"), CountingJob("aaaa")
    for job in (a, b, a_again):
        registry.register(job)
    registry.register(a)  # twice is once
    assert len(registry) == 3
    assert registry.notify("aaaa") == 2
    assert (a.woken, b.woken, a_again.woken) == (1, 0, 1)
    assert registry.notify("cccc") == 0


def test_registry_tracking_never_leaks() -> None:
    registry = JobRegistry()
    job = CountingJob("q1")
    with registry.tracking(job):
        assert "q1" in registry
    assert len(registry) == 0
    assert registry.query_ids() == []
    with pytest.raises(RuntimeError), registry.tracking(job):
        raise RuntimeError("the stream failed")
    assert len(registry) == 0
    registry.unregister(job)  # unknown: nothing happens


class StatusScript:
    """A job runner whose statuses are ``executing`` until ``finish()``, then ``successful``.

    Like fan-out's batcher it schedules each ask within its window: an ask that may wait
    (``latest`` > 0) parks, standing in for an hour-long poll interval, until ``hurry()``
    (which the job calls when notified) makes it due.
    """

    coalesces = True

    def __init__(self) -> None:
        self.finished = False
        self.calls = 0
        self.windows: list[tuple[float, float]] = []
        self.hurried = asyncio.Event()
        self.changes: list[str] = []

    def hurry(self, job: QueryJob) -> None:
        self.hurried.set()

    def status_changed(self, job: QueryJob, query: models.AsyncQuery) -> None:
        self.changes.append(str(query.status))

    def finish(self) -> None:
        self.finished = True

    async def status(self, job: QueryJob, earliest: float, latest: float) -> models.AsyncQuery:
        self.windows.append((earliest, latest))
        if latest > 0:
            await self.hurried.wait()
        self.calls += 1
        status = "successful" if self.finished else "executing"
        return models.AsyncQuery(
            id="0b7e2c1a-0000-4000-8000-00000000000a",
            site_id="3f91c577-20a8-467b-8991-b96dfb90e8c6",
            mode="async",
            status=models.QueryStatus(status),
        )


async def test_registry_notify_cuts_a_real_jobs_long_wait_short() -> None:
    script = StatusScript()
    job = QueryJob(
        # Statuses come from the script: the client only says there is no telemetry.
        SimpleNamespace(_telemetry=Telemetry("https://api.haloconnect.io")),  # type: ignore[arg-type]
        script_site := "3f91c577-20a8-467b-8991-b96dfb90e8c6",
        "0b7e2c1a-0000-4000-8000-00000000000a",
        poll=PollPolicy(initial_interval=3600, max_interval=3600, jitter=False),
        _runner=script,
    )
    registry = JobRegistry()

    async def wait_for_it() -> models.AsyncQuery:
        with registry.tracking(job):
            return await job.wait()

    waiting = asyncio.ensure_future(wait_for_it())
    for _ in range(50):
        await asyncio.sleep(0)
        if len(script.windows) == 2:
            break
    # Polled at once (a job without a status), then asked to wait its hour.
    assert script.windows == [(0.0, 0.0), (3600, 3600)]
    assert script.calls == 1
    assert not waiting.done()
    script.finish()
    assert registry.notify(job.query_id.upper()) == 1
    query = await asyncio.wait_for(waiting, 1)
    assert query.status == models.QueryStatus.SUCCESSFUL
    assert query.site_id == script_site
    assert script.calls == 2
    assert script.changes == ["executing", "successful"]
    assert len(registry) == 0


def test_importing_halo_async_does_not_import_fastapi() -> None:
    code = (
        "import sys, halo_async, halo_async.webhooks, halo_async.emulator.webhooks\n"
        "assert 'fastapi' not in sys.modules and 'starlette' not in sys.modules, 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------- emulator sender

# The sender POSTs over a real socket to an Origin on 127.0.0.1 with scripted answers; a
# closed port refuses, a handler that never answers times the sender out (its timeout is
# set to 50 ms there), and the retry waits go to the recording clock, never really slept.
PATH = "/hooks/{source}/{siteId}/{queryId}"
URL = f"http://receiver.test{PATH}"
EVENT = QueryEvent(
    "async",
    "3f91c577-20a8-467b-8991-b96dfb90e8c6",
    "1366ef6e-d536-457c-8f1b-eaa4352059f9",
    dt.datetime(2025, 5, 27, 5, 23, 44, 900_000, tzinfo=dt.UTC),
)
TARGET_PATH = (
    "/hooks/async/3f91c577-20a8-467b-8991-b96dfb90e8c6/1366ef6e-d536-457c-8f1b-eaa4352059f9"
)


class RecordingClock:
    """The emulator clock for the sender: fixed time, recorded waits, no real sleeping."""

    def __init__(self) -> None:
        self.instant = dt.datetime(2025, 5, 27, 5, 23, 45, 120_000, tzinfo=dt.UTC)
        self.waits: list[float] = []

    def now(self) -> dt.datetime:
        return self.instant

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.instant += dt.timedelta(seconds=seconds)
        await asyncio.sleep(0)


@pytest.fixture
async def receiver() -> AsyncIterator[Origin]:
    """The webhook receiver: records every POST, answers 200 unless told otherwise."""
    async with Origin() as origin:
        origin.handler = status(200)
        yield origin


@pytest.fixture
async def sender(receiver: Origin) -> AsyncIterator[WebhookSender]:
    webhooks = WebhookSender(receiver.url + PATH, "whsec-test", clock=RecordingClock(), jitter=0)
    yield webhooks
    await webhooks.close()


def sent(receiver: Origin) -> list[Received]:
    return receiver.requests


async def test_sender_posts_a_payload_the_client_verifier_accepts(
    sender: WebhookSender, receiver: Origin
) -> None:
    receiver.handler = status(200)
    delivery = sender.send(EVENT)
    await sender.drain()
    assert delivery is not None
    assert delivery.outcome == "delivered"
    assert delivery.url == receiver.url + TARGET_PATH
    [call] = sent(receiver)
    assert (call.method, call.path_qs) == ("POST", TARGET_PATH)
    body: bytes = call.body
    headers: dict[str, str] = call.headers
    assert orjson.loads(body) == {
        "id": delivery.id,
        "occurredAt": "2025-05-27T05:23:44.9000000+00:00",
        "siteId": EVENT.site_id,
        "queryId": EVENT.query_id,
        "webhookSource": "async",
    }
    assert list(orjson.loads(body)) == ["id", "occurredAt", "siteId", "queryId", "webhookSource"]
    assert b" " not in body
    assert headers["X-Halo-Id"] == delivery.id
    assert headers["X-Halo-Timestamp"] == "2025-05-27T05:23:45.1200000+00:00"
    assert headers["X-Halo-Signature-256"] == headers["X-Halo-Signature-256"].lower()
    assert len(headers["X-Halo-Signature-256"]) == 64
    # The client side, written separately, accepts what the emulator signs.
    verifier = WebhookVerifier(
        "whsec-test", clock=lambda: dt.datetime(2025, 5, 27, 5, 24, tzinfo=dt.UTC)
    )
    event = verifier.verify(body, headers)
    assert (event.query_id, event.webhook_source) == (EVENT.query_id, WebhookSource.ASYNC)


@pytest.mark.parametrize("code", [500, 502, 503, 408, 429])
async def test_sender_retries_server_errors_timeouts_and_rate_limits(
    sender: WebhookSender, receiver: Origin, code: int
) -> None:
    receiver.handler = in_turn(status(code), status(code), status(204))
    delivery = sender.send(EVENT)
    await sender.drain()
    assert delivery is not None
    assert delivery.outcome == "delivered"
    assert [a.status for a in delivery.attempts] == [code, code, 204]
    calls = sent(receiver)
    # Every attempt is the same delivery, re-signed with its own timestamp.
    assert {c.headers["X-Halo-Id"] for c in calls} == {delivery.id}
    assert {c.body for c in calls} == {delivery.body}
    stamps = [c.headers["X-Halo-Timestamp"] for c in calls]
    assert len(set(stamps)) == 3


@pytest.mark.parametrize("code", [400, 401, 404, 410, 422])
async def test_sender_does_not_retry_other_client_errors(
    sender: WebhookSender, receiver: Origin, code: int
) -> None:
    receiver.handler = status(code)
    delivery = sender.send(EVENT)
    await sender.drain()
    assert delivery is not None
    assert delivery.outcome == "rejected"
    assert len(sent(receiver)) == 1


async def test_sender_retries_connection_failures() -> None:
    # Nothing listens on the port at first: the connection is refused. The server starts
    # during the first retry wait, then hangs past the sender's 50 ms timeout once.
    receiver = Origin(port=free_port())
    receiver.handler = in_turn(receiver.hang, status(200))
    clock = RecordingClock()

    async def start_the_receiver(seconds: float) -> None:
        clock.waits.append(seconds)
        if len(clock.waits) == 1:
            await receiver.start()

    clock.sleep = start_the_receiver  # type: ignore[method-assign]
    webhooks = WebhookSender(receiver.url + PATH, "whsec-test", clock=clock, timeout=0.05)
    try:
        delivery = webhooks.send(EVENT)
        await webhooks.drain()
    finally:
        await webhooks.close()
        await receiver.close()
    assert delivery is not None
    assert delivery.outcome == "delivered"
    assert [a.status for a in delivery.attempts] == [None, None, 200]
    assert "ClientConnectorError" in (delivery.attempts[0].error or "")
    assert "Timeout" in (delivery.attempts[1].error or "")
    assert len(sent(receiver)) == 2


async def test_sender_gives_up_after_ten_attempts_backing_off_exponentially(
    receiver: Origin,
) -> None:
    receiver.handler = status(503)
    clock = RecordingClock()
    webhooks = WebhookSender(
        receiver.url + PATH, "whsec-test", clock=clock, jitter=0, max_delay=100
    )
    try:
        delivery = webhooks.send(EVENT)
        await webhooks.drain()
    finally:
        await webhooks.close()
    assert delivery is not None
    assert delivery.outcome == "failed"
    assert len(delivery.attempts) == 10
    assert len(sent(receiver)) == 10
    assert clock.waits == [1, 2, 4, 8, 16, 32, 64, 100, 100]


def test_sender_jitter_stays_within_the_backoff() -> None:
    webhooks = WebhookSender(URL, "whsec-test", jitter=0.5, seed=3)
    delays = [webhooks.delay(3) for _ in range(200)]
    assert all(2.0 <= d <= 4.0 for d in delays)
    assert len(set(delays)) > 100  # spread, not lockstep
    zero = WebhookSender(URL, "whsec-test", initial_delay=0)
    assert {zero.delay(n) for n in range(1, 10)} == {0.0}


async def test_sender_stops_when_closed(receiver: Origin) -> None:
    receiver.handler = status(500)
    clock = RecordingClock()
    webhooks = WebhookSender(receiver.url + PATH, "whsec-test", clock=clock)
    gate = asyncio.Event()
    parked = asyncio.Event()

    async def park(seconds: float) -> None:
        parked.set()
        await gate.wait()

    clock.sleep = park  # type: ignore[method-assign]
    delivery = webhooks.send(EVENT)
    await asyncio.wait_for(parked.wait(), timeout=5)
    assert webhooks.pending == 1
    await webhooks.close()
    assert delivery is not None
    assert delivery.outcome == "cancelled"
    assert webhooks.pending == 0
    assert webhooks.send(EVENT) is None


def test_sender_validates_its_configuration_and_hides_its_secret() -> None:
    with pytest.raises(ValueError, match="http"):
        WebhookSender("ftp://example.com/hook", "s")
    with pytest.raises(ValueError, match="secret"):
        WebhookSender("http://example.com/hook", "")
    with pytest.raises(ValueError, match="max_attempts"):
        WebhookSender("http://example.com/hook", "s", max_attempts=0)
    assert "whsec-hidden" not in repr(WebhookSender("http://example.com/h", "whsec-hidden"))


def test_timestamps_use_the_reference_format() -> None:
    moment = dt.datetime(2026, 3, 5, 14, 30, 1, tzinfo=dt.UTC)
    assert format_timestamp(moment) == VECTOR_TIMESTAMP
    sydney = dt.timezone(dt.timedelta(hours=11))
    assert format_timestamp(moment.astimezone(sydney)) == VECTOR_TIMESTAMP
