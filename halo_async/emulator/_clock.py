"""The emulator's one source of time.

Every timestamp the emulator reports and every expiry it decides (queue expiry, result
retention, registered-query schedules, latency sleeps) goes through a :class:`Clock`, so tests
can swap the wall clock for a :class:`ManualClock` and move time forward without sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """What the emulator needs from time: the current UTC instant and a way to wait."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait until ``seconds`` have passed on this clock."""
        ...


class SystemClock:
    """The wall clock: ``datetime.now(UTC)`` and ``asyncio.sleep``."""

    def now(self) -> datetime:
        """The current wall-clock time in UTC."""
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        """Sleep on the event loop; non-positive durations still yield once."""
        await asyncio.sleep(max(seconds, 0.0))

    def __repr__(self) -> str:
        return "SystemClock()"


_DEFAULT_START = datetime(2025, 5, 27, 5, 23, 40, tzinfo=UTC)
_PRUNE_AT = 1024


class ManualClock:
    """A clock that only moves when told to.

    ``sleep`` parks the caller until :meth:`advance` has moved the clock past its deadline;
    zero-length sleeps return after one event-loop iteration. ``advance`` may be called from the
    event loop's thread or from another thread (the contract tests run the server in a thread).
    """

    def __init__(self, start: datetime | None = None) -> None:
        start = start if start is not None else _DEFAULT_START
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start time")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> datetime:
        """The clock's current time."""
        with self._lock:
            return self._now

    @property
    def pending(self) -> list[float]:
        """Seconds until each waiting sleeper's deadline, soonest first."""
        with self._lock:
            return sorted(
                (deadline - self._now).total_seconds()
                for deadline, _, fut in self._sleepers
                if not fut.done()
            )

    def advance(self, seconds: float) -> datetime:
        """Move time forward by ``seconds`` and wake every sleeper whose deadline has passed."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        with self._lock:
            self._now += timedelta(seconds=seconds)
            due: list[asyncio.Future[None]] = []
            while self._sleepers and self._sleepers[0][0] <= self._now:
                due.append(heapq.heappop(self._sleepers)[2])
            now = self._now
        for fut in due:
            if not fut.done():
                # The future belongs to the loop of whoever slept; waking it from its own loop's
                # thread is the only safe way when advance() runs elsewhere.
                fut.get_loop().call_soon_threadsafe(_resolve, fut)
        return now

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock has been advanced by ``seconds`` from now."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            deadline = self._now + timedelta(seconds=seconds)
            if len(self._sleepers) > _PRUNE_AT:
                # Cancelled timers linger until their deadline; drop them now and then.
                self._sleepers = [s for s in self._sleepers if not s[2].done()]
                heapq.heapify(self._sleepers)
            heapq.heappush(self._sleepers, (deadline, next(self._order), fut))
        try:
            await fut
        finally:
            if not fut.done():
                fut.cancel()

    def __repr__(self) -> str:
        return f"ManualClock(now={self.now().isoformat()})"


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
