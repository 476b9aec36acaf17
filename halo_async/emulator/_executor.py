"""The emulator's SQL threads: a bounded pool that runs database work off the event loop.

SQLite releases the GIL while it steps a statement, and generation and copying run here too,
so the event loop only ever waits for the result. The pool is small on purpose: every busy
Python thread takes a share of the GIL from the event loop, and one site runs one command at
a time anyway, so a few threads serve hundreds of sites. A runaway statement holds one thread
until its statement timeout; the other sites keep the rest.

:meth:`SqlExecutor.shutdown` never hangs on a runaway query: it interrupts every running
command first (through the ``interrupt`` of the database it runs on) and waits a bounded time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["DEFAULT_SQL_WORKERS", "SqlExecutor"]

_T = TypeVar("_T")

DEFAULT_SQL_WORKERS = 4
"""Two per core of the 2-core machines the emulator is measured on; more only add GIL
contention with the event loop."""


class SqlExecutor:
    """A thread pool that knows which database each running call is on, to interrupt it."""

    def __init__(self, workers: int = DEFAULT_SQL_WORKERS) -> None:
        if workers < 1:
            raise ValueError("sql_workers must be at least 1")
        self.workers = workers
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._running: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._closed = False

    async def run(self, database: Any, call: Callable[[], _T]) -> _T:
        """``call()`` in a SQL thread; cancelling the await interrupts the database's command."""
        if self._closed:
            raise RuntimeError("the emulator's SQL threads are shut down")
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.workers, thread_name_prefix="halo-emulator-sql"
            )
        token = next(self._ids)

        def tracked() -> _T:
            with self._lock:
                self._running[token] = database
            try:
                return call()
            finally:
                with self._lock:
                    self._running.pop(token, None)

        future = asyncio.get_running_loop().run_in_executor(self._pool, tracked)
        try:
            return await future
        except asyncio.CancelledError:
            # Not started: the pool drops it. Started: stop its statement, free the thread.
            with self._lock:
                running = self._running.get(token)
            if running is not None:
                _interrupt(running)
            raise

    @property
    def running(self) -> int:
        """Calls running in a SQL thread now."""
        with self._lock:
            return len(self._running)

    def interrupt_all(self) -> None:
        """Stop every running command."""
        with self._lock:
            running = list(self._running.values())
        for database in running:
            _interrupt(database)

    async def shutdown(self, grace: float = 5.0) -> None:
        """Drop queued calls, interrupt running ones and wait for the threads, at most ``grace``.

        The wait runs in a daemon thread of its own: the loop's default executor would make
        ``asyncio.run`` wait for it at exit.
        """
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is None:
            return
        pool.shutdown(wait=False, cancel_futures=True)
        self.interrupt_all()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def wait() -> None:
            pool.shutdown(wait=True)
            with contextlib.suppress(RuntimeError):  # the loop closed first
                loop.call_soon_threadsafe(_settle, done)

        threading.Thread(target=wait, name="halo-emulator-sql-shutdown", daemon=True).start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(done), grace)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _interrupt(database: Any) -> None:
    interrupt = getattr(database, "interrupt", None)
    if callable(interrupt):
        interrupt()
