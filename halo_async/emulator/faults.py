"""Fault injection for the emulator: off by default, seeded, switchable at runtime.

Two kinds of control:

- **Rules** (:meth:`Faults.set`): probabilities per operation (its OAS ``operationId``) and/or
  per site (Halo GUID). Request-level faults: server errors (500/502/503/504 with the OAS
  texts), 429 with ``Retry-After``, added latency, dropped connections. Query-level faults: the
  site dropping mid-query, result upload failures, result pages expiring early (410).
- **Scripted failures** (:meth:`Faults.fail_next`): "the next N requests to operation X fail
  with Y", consumed before any rule, for deterministic tests.

Request faults that answer with an error status short-circuit the request: the server did not
act on it. A dropped connection is different: the request is handled first and then the
connection is closed without a response, so the caller cannot know what happened (a query may
well have been created), which is what makes dropped POSTs interesting to test.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from collections.abc import Iterator
from typing import Literal

__all__ = ["FaultRule", "Faults", "RequestFault", "ScriptedFailure"]

SERVER_ERROR_STATUSES = (500, 502, 503, 504)
# Query-level knobs apply to the operation that triggers them, or to every operation.
_ASYNC_OPERATIONS = frozenset({None, "createAsyncQuery"})
_IMMEDIATE_OPERATIONS = frozenset({None, "createImmediateQuery"})
_PAGE_OPERATIONS = frozenset({None, "getResultPage", "streamResultPage"})


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} is a probability between 0 and 1, got {value}")


@dataclasses.dataclass(frozen=True)
class FaultRule:
    """Fault probabilities for one operation and/or site (None matches every one)."""

    operation: str | None = None
    site: str | None = None
    server_errors: float = 0.0
    """Probability of answering with one of ``server_error_statuses``."""
    server_error_statuses: tuple[int, ...] = SERVER_ERROR_STATUSES
    rate_limits: float = 0.0
    """Probability of a 429 with ``Retry-After: retry_after``."""
    retry_after: int = 1
    latency: float = 0.0
    """Seconds added before the request is handled (on the emulator clock)."""
    drops: float = 0.0
    """Probability of closing the connection without a response (after handling it)."""
    site_offline: float = 0.0
    """Probability that the site drops mid-query: async queries fail with
    initialisationFailedSiteOffline or executionFailed (haloLink); immediates get 504."""
    upload_failures: float = 0.0
    """Probability that an async result upload fails part-way (uploadFailed)."""
    page_expiry: float = 0.0
    """Probability that fetching a page finds the results expired early (410)."""

    def __post_init__(self) -> None:
        for name in (
            "server_errors",
            "rate_limits",
            "drops",
            "site_offline",
            "upload_failures",
            "page_expiry",
        ):
            _check_probability(name, getattr(self, name))
        if self.latency < 0:
            raise ValueError("latency must not be negative")
        if self.retry_after < 0:
            raise ValueError("retry_after must not be negative")
        unknown = set(self.server_error_statuses) - set(SERVER_ERROR_STATUSES)
        if unknown or not self.server_error_statuses:
            raise ValueError(f"server_error_statuses must be drawn from {SERVER_ERROR_STATUSES}")

    def matches(self, operation: str | None, site: str | None) -> bool:
        """True when the rule covers this operation and site."""
        return (self.operation is None or self.operation == operation) and (
            self.site is None or self.site == site
        )


@dataclasses.dataclass
class ScriptedFailure:
    """One entry of :meth:`Faults.fail_next`: how many more requests it will fail."""

    operation: str | None
    site: str | None
    remaining: int
    status: int | None
    drop: bool
    retry_after: int | None


@dataclasses.dataclass(frozen=True)
class RequestFault:
    """What to do to one request: wait, then answer ``status`` or drop the connection."""

    latency: float = 0.0
    status: int | None = None
    retry_after: int | None = None
    drop: bool = False


class Faults:
    """The emulator's fault switchboard. Thread-safe; decisions draw from a seeded generator."""

    def __init__(self, seed: int = 1) -> None:
        self._rng = random.Random(f"halo-emulator-faults:{seed}")
        self._lock = threading.Lock()
        self._rules: dict[tuple[str | None, str | None], FaultRule] = {}
        self._scripted: list[ScriptedFailure] = []

    @property
    def rules(self) -> list[FaultRule]:
        """The active rules."""
        with self._lock:
            return list(self._rules.values())

    @property
    def enabled(self) -> bool:
        """True when any rule or scripted failure is active."""
        with self._lock:
            return bool(self._rules) or any(s.remaining > 0 for s in self._scripted)

    def set(
        self,
        operation: str | None = None,
        site: str | None = None,
        *,
        server_errors: float = 0.0,
        server_error_statuses: tuple[int, ...] = SERVER_ERROR_STATUSES,
        rate_limits: float = 0.0,
        retry_after: int = 1,
        latency: float = 0.0,
        drops: float = 0.0,
        site_offline: float = 0.0,
        upload_failures: float = 0.0,
        page_expiry: float = 0.0,
    ) -> FaultRule:
        """Install (or replace) the rule for ``operation`` x ``site``; returns it."""
        rule = FaultRule(
            operation=operation,
            site=site,
            server_errors=server_errors,
            server_error_statuses=tuple(server_error_statuses),
            rate_limits=rate_limits,
            retry_after=retry_after,
            latency=latency,
            drops=drops,
            site_offline=site_offline,
            upload_failures=upload_failures,
            page_expiry=page_expiry,
        )
        with self._lock:
            self._rules[(operation, site)] = rule
        return rule

    def fail_next(
        self,
        operation: str | None,
        times: int = 1,
        *,
        status: int | None = 503,
        drop: bool = False,
        retry_after: int | None = None,
        site: str | None = None,
    ) -> None:
        """Make the next ``times`` requests to ``operation`` (None: any) fail.

        They answer ``status`` (with ``Retry-After`` when given, and always for 429), or with
        ``drop=True`` lose their connection after being handled.
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        if not drop and (status is None or not 400 <= status <= 599):
            raise ValueError("status must be an HTTP error status unless drop=True")
        if status == 429 and retry_after is None:
            retry_after = 1
        with self._lock:
            self._scripted.append(
                ScriptedFailure(operation, site, times, None if drop else status, drop, retry_after)
            )

    def clear(self) -> None:
        """Remove every rule and scripted failure."""
        with self._lock:
            self._rules.clear()
            self._scripted.clear()

    def _matching(self, operations: frozenset[str | None], site: str | None) -> Iterator[FaultRule]:
        for rule in self._rules.values():
            if rule.operation in operations and (rule.site is None or rule.site == site):
                yield rule

    def _roll(self, probability: float) -> bool:
        return probability > 0 and self._rng.random() < probability

    def for_request(self, operation: str, site: str | None) -> RequestFault | None:
        """The fault to apply to one request, or None to handle it normally."""
        with self._lock:
            for scripted in self._scripted:
                matches_op = scripted.operation is None or scripted.operation == operation
                matches_site = scripted.site is None or scripted.site == site
                if scripted.remaining > 0 and matches_op and matches_site:
                    scripted.remaining -= 1
                    self._scripted = [s for s in self._scripted if s.remaining > 0]
                    return RequestFault(
                        status=scripted.status, retry_after=scripted.retry_after, drop=scripted.drop
                    )
            latency = 0.0
            decision: RequestFault | None = None
            for rule in self._rules.values():
                if not rule.matches(operation, site):
                    continue
                latency += rule.latency
                if decision is not None:
                    continue
                if self._roll(rule.drops):
                    decision = RequestFault(drop=True)
                elif self._roll(rule.rate_limits):
                    decision = RequestFault(status=429, retry_after=rule.retry_after)
                elif self._roll(rule.server_errors):
                    decision = RequestFault(status=self._rng.choice(rule.server_error_statuses))
            if decision is None:
                return RequestFault(latency=latency) if latency > 0 else None
            return dataclasses.replace(decision, latency=latency)

    def site_drop_phase(self, site: str) -> Literal["initialising", "executing"] | None:
        """For a new async query: the phase in which its site drops, if it does."""
        with self._lock:
            for rule in self._matching(_ASYNC_OPERATIONS, site):
                if self._roll(rule.site_offline):
                    return self._rng.choice(("initialising", "executing"))
        return None

    def immediate_site_drops(self, site: str) -> bool:
        """For a new immediate query: whether its site drops while it executes."""
        with self._lock:
            return any(
                self._roll(r.site_offline) for r in self._matching(_IMMEDIATE_OPERATIONS, site)
            )

    def upload_failure_page(self, site: str, pages: int) -> int | None:
        """For a result upload: the 0-based index of the page whose upload fails, if any."""
        with self._lock:
            for rule in self._matching(_ASYNC_OPERATIONS, site):
                if self._roll(rule.upload_failures):
                    return self._rng.randrange(pages)
        return None

    def page_expires_early(self, operation: str, site: str) -> bool:
        """For a page fetch: whether the results turn out to have expired already."""
        with self._lock:
            return any(
                self._roll(r.page_expiry)
                for r in self._matching(_PAGE_OPERATIONS, site)
                if r.operation is None or r.operation == operation
            )

    def __repr__(self) -> str:
        with self._lock:
            return f"Faults(rules={len(self._rules)}, scripted={len(self._scripted)})"
