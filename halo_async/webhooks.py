"""Halo webhooks: verify them, parse them, drop replays, and wake the jobs they announce.

Halo POSTs a small JSON payload when an async query succeeds or a registered query's result
changes (REFERENCE §7), signed with a per-integrator secret::

    X-Halo-Id: <the payload id>
    X-Halo-Timestamp: <ISO 8601 time of sending>
    X-Halo-Signature-256: <lowercase hex HMAC-SHA256 of b"<raw body>.<X-Halo-Timestamp>">

Nothing here depends on a web framework: hand :meth:`WebhookVerifier.verify` the raw body
and the headers, and it returns a :class:`WebhookEvent` or raises a :class:`WebhookError`
subclass that says how to answer. :class:`JobRegistry` wakes the :class:`~halo_async.QueryJob`
polling the announced query, so it streams at once instead of after its next poll interval;
polling stays the backstop for webhooks that never arrive. ``halo_async.contrib.fastapi``
wires these into a FastAPI route.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import enum
import hashlib
import hmac
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final, Protocol

import attrs
import orjson

from halo_async import _convert
from halo_async.errors import (
    DecodeError,
    ValidationError,
    WebhookError,
    WebhookPayloadError,
    WebhookReplayError,
    WebhookSignatureError,
    WebhookTimestampError,
)

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_REMEMBER",
    "DEFAULT_REMEMBER_FOR",
    "DEFAULT_TOLERANCE",
    "ID_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "JobRegistry",
    "Wakeable",
    "WebhookError",
    "WebhookEvent",
    "WebhookPayloadError",
    "WebhookReplayError",
    "WebhookSignatureError",
    "WebhookSource",
    "WebhookTimestampError",
    "WebhookVerifier",
    "compute_signature",
    "parse_webhook",
    "verify_signature",
]

ID_HEADER: Final = "X-Halo-Id"
TIMESTAMP_HEADER: Final = "X-Halo-Timestamp"
SIGNATURE_HEADER: Final = "X-Halo-Signature-256"

# REFERENCE §7 (AE): reject deliveries whose timestamp is over 5 minutes off.
DEFAULT_TOLERANCE: Final = dt.timedelta(minutes=5)
# How many delivery ids the replay guard remembers, and for how long. Halo re-signs each
# retry with a fresh timestamp, so a retry of a delivery we already handled (our 2xx was
# lost) passes the staleness check; remembering ids for a day catches it. The count bounds
# the memory whatever the traffic: about 100 bytes an id.
DEFAULT_REMEMBER: Final = 10_000
DEFAULT_REMEMBER_FOR: Final = dt.timedelta(hours=24)
# The largest webhook body a receiver reads. Halo's payload is a few hundred bytes; a body
# far larger is not a webhook, and reading it whole first would let anyone cost the
# service memory without a signature.
DEFAULT_MAX_BODY: Final = 64 * 1024

Secret = str | bytes


# -- the payload --------------------------------------------------------------------------------


class WebhookSource(enum.StrEnum):
    """What fired the webhook."""

    ASYNC = "async"
    """An async query succeeded: its result pages are cached."""
    REGISTERED = "registered"
    """A registered query ran and its result changed."""


@attrs.frozen
class WebhookEvent:
    """One webhook payload (REFERENCE §7). It carries no results: fetch them by ``query_id``.

    ``occurred_at`` is when the query completed, not when the webhook was sent. An unknown
    ``webhook_source`` is kept as its plain string.
    """

    id: str
    occurred_at: dt.datetime
    site_id: str
    query_id: str
    webhook_source: WebhookSource | str


def parse_webhook(body: bytes | str | Mapping[str, Any]) -> WebhookEvent:
    """The :class:`WebhookEvent` in a webhook body (JSON text or an already decoded object).

    This does not verify anything: use :class:`WebhookVerifier` for deliveries from the
    network. Raises :class:`WebhookPayloadError` when the body is not a webhook payload.
    """
    if isinstance(body, Mapping):
        payload: Any = body
    else:
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise WebhookPayloadError(f"the webhook body is not JSON: {exc}") from exc
    if not isinstance(payload, Mapping):
        raise WebhookPayloadError(
            f"the webhook body is a JSON {type(payload).__name__}, not an object"
        )
    try:
        return _convert.structure(payload, WebhookEvent)
    except DecodeError as exc:
        raise WebhookPayloadError(str(exc).replace("the answer", "the webhook body")) from exc


# -- signatures ---------------------------------------------------------------------------------


def _secret_bytes(secret: Secret) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def compute_signature(secret: Secret, body: bytes, timestamp: str) -> str:
    """The lowercase hex ``X-Halo-Signature-256`` of ``body`` sent at ``timestamp``.

    ``timestamp`` is the ``X-Halo-Timestamp`` header string exactly as sent: the signature
    covers its text, not the instant it names.
    """
    message = body + b"." + timestamp.encode("utf-8")
    return hmac.new(_secret_bytes(secret), message, hashlib.sha256).hexdigest()


def verify_signature(secret: Secret, body: bytes, timestamp: str, signature: str) -> bool:
    """Whether ``signature`` is the HMAC of ``body`` and ``timestamp`` under ``secret``.

    ``body`` must be the raw bytes received (re-serialised JSON would not match) and
    ``timestamp`` the header string exactly as received. The comparison ignores case and
    runs in constant time.
    """
    if not signature.isascii():
        return False
    expected = compute_signature(secret, body, timestamp)
    return hmac.compare_digest(expected.encode("ascii"), signature.lower().encode("ascii"))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    # HTTP header names are case-insensitive; a plain dict is not.
    folded = name.casefold()
    for key, candidate in headers.items():
        if key.casefold() == folded:
            return candidate
    return None


def _seconds(value: float | dt.timedelta, name: str) -> dt.timedelta:
    delta = value if isinstance(value, dt.timedelta) else dt.timedelta(seconds=value)
    if delta <= dt.timedelta(0):
        raise ValidationError(f"{name} must be positive, got {value!r}", field=name, value=value)
    return delta


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class WebhookVerifier:
    """Checks webhook deliveries: signature, freshness, payload, and replays.

    ``secret`` is the webhook secret Halo issued, or several of them while one is being
    rotated (a delivery signed with any of them passes). ``tolerance`` (seconds or a
    timedelta, default 5 minutes) is how far ``X-Halo-Timestamp`` may be from ``clock()``,
    either way. The last ``remember`` delivery ids are kept for ``remember_for`` to recognise
    retries and replays; memory stays bounded by ``remember`` whatever the traffic.

    ``clock`` returns the current time as an aware datetime (inject one in tests).
    :meth:`verify` does no I/O, so one verifier may serve every request of an event loop.
    """

    def __init__(
        self,
        secret: Secret | Sequence[Secret],
        *,
        tolerance: float | dt.timedelta = DEFAULT_TOLERANCE,
        remember: int = DEFAULT_REMEMBER,
        remember_for: float | dt.timedelta = DEFAULT_REMEMBER_FOR,
        clock: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        secrets = [secret] if isinstance(secret, str | bytes) else list(secret)
        if not secrets or not all(isinstance(s, str | bytes) and s for s in secrets):
            raise ValidationError(
                "secret must be a non-empty string or bytes (or a list of them)",
                field="secret",
                value=None,  # never the secret itself
            )
        if isinstance(remember, bool) or not isinstance(remember, int) or remember < 1:
            raise ValidationError(
                f"remember must be an integer >= 1, got {remember!r}",
                field="remember",
                value=remember,
            )
        self._secrets = [_secret_bytes(s) for s in secrets]
        self.tolerance = _seconds(tolerance, "tolerance")
        self.remember = remember
        self.remember_for = _seconds(remember_for, "remember_for")
        self._clock = clock
        self._seen: collections.OrderedDict[str, dt.datetime] = collections.OrderedDict()

    def __repr__(self) -> str:
        # Never the secret.
        return (
            f"<WebhookVerifier secrets={len(self._secrets)} tolerance={self.tolerance} "
            f"remembered={len(self._seen)}>"
        )

    def check_headers(self, headers: Mapping[str, str]) -> None:
        """The checks that need no body: both signed headers present and the timestamp
        fresh. A receiver runs them before reading the body, so that an unsigned or stale
        delivery costs it nothing (:meth:`verify` runs them again, with the signature)."""
        timestamp = _header(headers, TIMESTAMP_HEADER)
        if _header(headers, SIGNATURE_HEADER) is None or timestamp is None:
            missing = TIMESTAMP_HEADER if timestamp is None else SIGNATURE_HEADER
            raise WebhookSignatureError(f"the delivery has no {missing} header")
        self._check_fresh(timestamp, self._clock())

    def verify(self, body: bytes, headers: Mapping[str, str]) -> WebhookEvent:
        """Check one delivery and return its event; raise a :class:`WebhookError` if it must
        not be acted on.

        Checks, in order: the signature (:class:`WebhookSignatureError`), the timestamp's
        freshness (:class:`WebhookTimestampError`), the payload and its agreement with
        ``X-Halo-Id`` (:class:`WebhookPayloadError`), then replays
        (:class:`WebhookReplayError`). Only a delivery that passes everything is remembered.
        """
        signature = _header(headers, SIGNATURE_HEADER)
        timestamp = _header(headers, TIMESTAMP_HEADER)
        if signature is None or timestamp is None:
            missing = SIGNATURE_HEADER if signature is None else TIMESTAMP_HEADER
            raise WebhookSignatureError(f"the delivery has no {missing} header")
        if not any(verify_signature(s, body, timestamp, signature) for s in self._secrets):
            raise WebhookSignatureError(
                f"{SIGNATURE_HEADER} does not match the body and {TIMESTAMP_HEADER}: "
                "not signed with the configured webhook secret"
            )
        now = self._clock()
        self._check_fresh(timestamp, now)
        event = parse_webhook(body)
        header_id = _header(headers, ID_HEADER)
        # The header is not signed, the payload is: de-duplicate on the payload's id, and
        # refuse a delivery whose header disagrees with it.
        if header_id is not None and header_id.strip().lower() != event.id.lower():
            raise WebhookPayloadError(
                f"{ID_HEADER} {header_id!r} does not match the payload id {event.id!r}"
            )
        self._forget_expired(now)
        key = event.id.lower()
        if key in self._seen:
            raise WebhookReplayError(f"webhook {event.id} was already received", event=event)
        self._seen[key] = now
        while len(self._seen) > self.remember:
            self._seen.popitem(last=False)
        return event

    def _check_fresh(self, timestamp: str, now: dt.datetime) -> None:
        try:
            sent = dt.datetime.fromisoformat(timestamp.strip())
        except ValueError:
            raise WebhookTimestampError(
                f"{TIMESTAMP_HEADER} {timestamp!r} is not an ISO 8601 time"
            ) from None
        if sent.tzinfo is None:
            sent = sent.replace(tzinfo=dt.UTC)
        skew = now - sent
        if abs(skew) > self.tolerance:
            direction = "old" if skew > dt.timedelta(0) else "in the future"
            raise WebhookTimestampError(
                f"{TIMESTAMP_HEADER} {timestamp} is {abs(skew).total_seconds():.0f} s "
                f"{direction}; deliveries more than {self.tolerance.total_seconds():.0f} s "
                "off are refused"
            )

    def _forget_expired(self, now: dt.datetime) -> None:
        horizon = now - self.remember_for
        while self._seen:
            oldest = next(iter(self._seen.values()))
            if oldest >= horizon:
                break
            self._seen.popitem(last=False)

    @property
    def remembered(self) -> int:
        """How many delivery ids the replay guard holds now."""
        return len(self._seen)


# -- waking jobs --------------------------------------------------------------------------------


class Wakeable(Protocol):
    """What the registry wakes: a :class:`~halo_async.QueryJob`, or anything polling one
    query that can cut its wait short."""

    @property
    def query_id(self) -> str:
        """The query it polls."""
        ...

    def notify(self) -> None:
        """Stop waiting and poll now."""
        ...


class JobRegistry:
    """The jobs polling right now, by query id, so a webhook can wake the right one.

    Jobs join while they poll and leave when they finish, fail or are abandoned (use
    :meth:`tracking`, which cannot leak)::

        with registry.tracking(job):
            async for row in job.rows():
                ...

    and the webhook route calls :meth:`notify` with the announced query id. A webhook that
    arrives before its job registers wakes nobody, and needs not: a job polls once as soon
    as it starts.
    """

    def __init__(self) -> None:
        self._jobs: dict[str, list[Wakeable]] = {}

    def __len__(self) -> int:
        return sum(len(jobs) for jobs in self._jobs.values())

    def __contains__(self, query_id: object) -> bool:
        return isinstance(query_id, str) and query_id.lower() in self._jobs

    def __repr__(self) -> str:
        return f"<JobRegistry jobs={len(self)}>"

    def register(self, job: Wakeable) -> None:
        """Wake ``job`` on webhooks for its query until :meth:`unregister`."""
        jobs = self._jobs.setdefault(job.query_id.lower(), [])
        if not any(existing is job for existing in jobs):
            jobs.append(job)

    def unregister(self, job: Wakeable) -> None:
        """Forget ``job``; forgetting one that is not registered does nothing."""
        key = job.query_id.lower()
        jobs = [existing for existing in self._jobs.get(key, ()) if existing is not job]
        if jobs:
            self._jobs[key] = jobs
        else:
            self._jobs.pop(key, None)

    @contextlib.contextmanager
    def tracking(self, job: Wakeable) -> Iterator[Wakeable]:
        """Register ``job`` for the ``with`` block, and unregister it however the block ends."""
        self.register(job)
        try:
            yield job
        finally:
            self.unregister(job)

    def jobs(self, query_id: str) -> tuple[Wakeable, ...]:
        """The jobs registered for ``query_id``."""
        return tuple(self._jobs.get(query_id.lower(), ()))

    def query_ids(self) -> list[str]:
        """The query ids with a registered job."""
        return list(self._jobs)

    def notify(self, query_id: str) -> int:
        """Wake every job polling ``query_id``; returns how many were woken."""
        jobs = self.jobs(query_id)
        for job in jobs:
            job.notify()
        return len(jobs)
