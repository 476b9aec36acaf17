"""The emulator's webhook sender: Halo's POSTs when a query completes (REFERENCE §7).

When an async query succeeds, or a registered query runs and its result changed, Halo POSTs
``{"id", "occurredAt", "siteId", "queryId", "webhookSource"}`` to the integrator's one
webhook URL (``{siteId}``, ``{queryId}`` and ``{source}`` substituted), signed::

    X-Halo-Signature-256 = hex(HMAC-SHA256(secret, b"<raw body>.<X-Halo-Timestamp>"))

and retries with exponential backoff and jitter: up to 10 attempts of 5 s each, on 5xx, 408,
429 and connection failures, never on another 4xx. The emulator does the same, with every
delay configurable down to zero and every wait on the emulator's clock.

Like the rest of the emulator it shares no code with the client side: the signature is
computed here independently of ``halo_async.webhooks``, so that a misreading of the
reference cannot hide on both sides at once.

```python
sender = WebhookSender("http://127.0.0.1:8000/halo/webhooks", secret="whsec")
async with Emulator(sites=5, webhooks=sender) as emu:
    ...  # every async success now POSTs a signed webhook
```
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import hmac
import logging
import random
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

import aiohttp
import orjson

from halo_async.emulator._clock import Clock, SystemClock

if TYPE_CHECKING:
    from halo_async.emulator.state import EmulatorState, QueryEvent

__all__ = ["DeliveryAttempt", "WebhookDelivery", "WebhookSender", "format_timestamp"]

_log = logging.getLogger("halo_async.emulator")

# REFERENCE §7 (AE): up to 10 attempts, 5 s each.
MAX_ATTEMPTS = 10
ATTEMPT_TIMEOUT_S = 5.0
# Our choice (the reference says only "exponential backoff"): 1 s doubling up to 5 min,
# which spreads 10 attempts over about 8 minutes.
INITIAL_DELAY_S = 1.0
MAX_DELAY_S = 300.0
# Each delay is drawn from [delay * (1 - JITTER), delay] so retries of many webhooks spread.
JITTER = 0.5
# Deliveries kept for inspection; older ones are dropped so a long-running server stays small.
HISTORY = 1000

Outcome = Literal["pending", "delivered", "rejected", "failed", "cancelled"]


def format_timestamp(moment: datetime) -> str:
    """``2026-03-05T14:30:00.0000000+00:00``: the .NET round-trip form of the reference's
    ``occurredAt``, also used for ``X-Halo-Timestamp``."""
    utc = moment.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond:06d}0+00:00"


def _retryable(status: int) -> bool:
    # Timeouts, rate limits and server errors may pass on a later try; any other 4xx says
    # the receiver refuses this delivery, and will again.
    return status in (408, 429) or status >= 500


@dataclasses.dataclass(frozen=True)
class DeliveryAttempt:
    """One POST of a webhook: the timestamp it was signed with and what came back."""

    number: int
    timestamp: str
    status: int | None
    """The HTTP status, or None when no answer came (connection failure, timeout)."""
    error: str | None = None


@dataclasses.dataclass
class WebhookDelivery:
    """One webhook and its attempts; ``outcome`` is ``pending`` until it is settled."""

    id: str
    url: str
    source: str
    site_id: str
    query_id: str
    body: bytes
    attempts: list[DeliveryAttempt] = dataclasses.field(default_factory=list)
    outcome: Outcome = "pending"


class WebhookSender:
    """Sends the emulator's webhooks to ``url``, signed with ``secret``.

    Pass it as ``Emulator(webhooks=sender)`` (or call :meth:`attach` with an
    :class:`EmulatorState`). ``url`` may contain ``{siteId}``, ``{queryId}`` and
    ``{source}``; it may be reassigned while running. ``initial_delay`` doubles (times
    ``multiplier``) after each failed attempt up to ``max_delay``, with ``jitter`` as a
    fraction; zero delays make retries immediate for tests. Waits and timestamps use the
    emulator's clock unless ``clock`` is given.
    """

    def __init__(
        self,
        url: str,
        secret: str | bytes,
        *,
        max_attempts: int = MAX_ATTEMPTS,
        timeout: float = ATTEMPT_TIMEOUT_S,
        initial_delay: float = INITIAL_DELAY_S,
        max_delay: float = MAX_DELAY_S,
        multiplier: float = 2.0,
        jitter: float = JITTER,
        seed: int = 1,
        clock: Clock | None = None,
    ) -> None:
        if not secret:
            raise ValueError("the webhook secret must not be empty")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if min(initial_delay, max_delay, multiplier) < 0:
            raise ValueError("delays and the multiplier must not be negative")
        if not 0 <= jitter <= 1:
            raise ValueError("jitter is a fraction between 0 and 1")
        self.url = url
        self._secret = secret.encode("utf-8") if isinstance(secret, str) else secret
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.multiplier = multiplier
        self.jitter = jitter
        self._rng = random.Random(f"halo-emulator-webhooks:{seed}")
        self._clock = clock
        self._state: EmulatorState | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.deliveries: collections.deque[WebhookDelivery] = collections.deque(maxlen=HISTORY)
        """The latest deliveries, oldest first."""

    @property
    def url(self) -> str:
        """The webhook URL template."""
        return self._url

    @url.setter
    def url(self, value: str) -> None:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"the webhook URL must be an http(s) URL, got {value!r}")
        self._url = value

    @property
    def clock(self) -> Clock:
        """The clock of the timestamps and retry waits."""
        if self._clock is not None:
            return self._clock
        if self._state is not None:
            return self._state.clock
        return SystemClock()

    def __repr__(self) -> str:
        # Never the secret.
        return f"WebhookSender(url={self._url!r}, pending={len(self._tasks)})"

    # ------------------------------------------------------------------ wiring

    def attach(self, state: EmulatorState) -> None:
        """Send a webhook for each completion ``state`` announces."""
        if self._state is not None and self._state is not state:
            raise RuntimeError("this sender already serves another emulator")
        if self._state is None:
            self._state = state
            state.add_listener(self._on_event)

    def _on_event(self, event: QueryEvent) -> None:
        self.send(event)

    def send(self, event: QueryEvent) -> WebhookDelivery | None:
        """Start delivering ``event`` in the background; returns its delivery record.

        Called by the emulator for each completion; None once the sender is closed.
        """
        if self._closed:
            return None
        delivery_id = str(uuid.uuid4())
        delivery = WebhookDelivery(
            id=delivery_id,
            url=self._target(event),
            source=event.source,
            site_id=event.site_id,
            query_id=event.query_id,
            # Compact JSON in the documented key order; the signature covers these bytes.
            body=orjson.dumps(
                {
                    "id": delivery_id,
                    "occurredAt": format_timestamp(event.occurred_at),
                    "siteId": event.site_id,
                    "queryId": event.query_id,
                    "webhookSource": event.source,
                }
            ),
        )
        self.deliveries.append(delivery)
        task = asyncio.ensure_future(self._deliver(delivery))
        task.set_name(f"halo-emulator-webhook-{delivery.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return delivery

    def _target(self, event: QueryEvent) -> str:
        return (
            self._url.replace("{siteId}", event.site_id)
            .replace("{queryId}", event.query_id)
            .replace("{source}", event.source)
        )

    # ------------------------------------------------------------------ delivery

    def signature(self, body: bytes, timestamp: str) -> str:
        """The ``X-Halo-Signature-256`` of ``body`` sent at ``timestamp``."""
        return hmac.new(
            self._secret, body + b"." + timestamp.encode("utf-8"), hashlib.sha256
        ).hexdigest()

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based), jittered."""
        base = min(self.max_delay, self.initial_delay * self.multiplier ** (attempt - 1))
        return base * self._rng.uniform(1 - self.jitter, 1.0)

    async def _deliver(self, delivery: WebhookDelivery) -> None:
        try:
            for number in range(1, self.max_attempts + 1):
                attempt = await self._attempt(delivery, number)
                delivery.attempts.append(attempt)
                if attempt.status is not None and 200 <= attempt.status < 300:
                    delivery.outcome = "delivered"
                    return
                if attempt.status is not None and not _retryable(attempt.status):
                    delivery.outcome = "rejected"
                    _log.info("webhook %s refused with %s", delivery.id, attempt.status)
                    return
                _log.info(
                    "webhook %s attempt %d failed (%s)",
                    delivery.id,
                    number,
                    attempt.status or attempt.error,
                )
                if number < self.max_attempts:
                    await self.clock.sleep(self.delay(number))
            delivery.outcome = "failed"
        except asyncio.CancelledError:
            delivery.outcome = "cancelled"
            raise

    async def _attempt(self, delivery: WebhookDelivery, number: int) -> DeliveryAttempt:
        timestamp = format_timestamp(self.clock.now())
        headers = {
            "Content-Type": "application/json",
            "X-Halo-Id": delivery.id,
            "X-Halo-Timestamp": timestamp,
            "X-Halo-Signature-256": self.signature(delivery.body, timestamp),
        }
        try:
            async with self._client().post(
                delivery.url,
                data=delivery.body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                allow_redirects=False,
            ) as response:
                await response.read()
                return DeliveryAttempt(number, timestamp, response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return DeliveryAttempt(number, timestamp, None, f"{type(exc).__name__}: {exc}")

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    # ------------------------------------------------------------------ lifecycle

    @property
    def pending(self) -> int:
        """Deliveries still being attempted."""
        return len(self._tasks)

    async def drain(
        self,
        timeout: float = 5.0,  # noqa: ASYNC109 - a real-time guard for tests, not an API knob
    ) -> None:
        """Wait (``timeout`` real seconds at most) until every delivery has settled."""
        async with asyncio.timeout(timeout):
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Stop sending: cancel the deliveries in progress and close the HTTP session."""
        if self._closed:
            return
        self._closed = True
        if self._state is not None:
            self._state.remove_listener(self._on_event)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        session, self._session = self._session, None
        if session is not None:
            await session.close()
