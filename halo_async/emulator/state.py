"""The emulator's query lifecycle: per-site queues, the async state machine, pages, expiry.

Each site runs one command at a time through a priority slot: immediate queries go before
queued async ones, FIFO within each class. SQL runs in a thread pool, never on the event loop,
so a slow site does not stall the others. Every timestamp and every expiry decision reads the
injected clock; every simulated delay sleeps on it. With zero latency an async query reaches
``successful`` within a few event-loop iterations; with a :class:`ManualClock` each phase waits
until the test advances time.

Expiry is decided lazily as well as by timers, so that a test that advances a manual clock
sees the new state on its very next read: a queued query past its ``maxTimeInQueue`` reads as
``expiredInQueue`` and result pages past the retention time answer 410.

Result pages turn ``cached`` one by one while the query is ``uploading``. Fetching a page that
is listed but not cached yet answers **404** (the emulator's choice: the page is not there yet,
and 404 is what a client already treats as "not available"); so does a page number beyond the
last page.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import dataclasses
import hashlib
import heapq
import itertools
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from halo_async.emulator import _errors, _sandbox
from halo_async.emulator._clock import Clock
from halo_async.emulator._errors import ApiError
from halo_async.emulator._executor import SqlExecutor
from halo_async.emulator._latency import Latency
from halo_async.emulator._records import (
    PageRecord,
    QueryRecord,
    RegisteredRecord,
    encode_value,
    paginate,
)
from halo_async.emulator._requests import CommandRequest, RegisteredRequest, parse_uuid
from halo_async.emulator._sites import PMS_NAMES, Site
from halo_async.emulator._wire import immediate_json, query_json
from halo_async.emulator.database import (
    ParameterConversionError,
    ResultTooLargeError,
    SqlError,
    UnknownCatalogueError,
)
from halo_async.emulator.faults import Faults

__all__ = ["EmulatorState", "Limits", "QueryEvent"]

_log = logging.getLogger("halo_async.emulator")
_T = TypeVar("_T")

IMMEDIATE_PRIORITY = 0
_UNEXPECTED = {
    "errorType": "haloLink",
    "errorCode": 500,
    "errorMessage": "Unexpected error in Halo Link.",
}
ASYNC_PRIORITY = 1


@dataclasses.dataclass(frozen=True)
class Limits:
    """The service limits of REFERENCE §9, all configurable."""

    page_size: int = 1_000_000
    """Bytes of row JSON per result page (about 1 MB in Halo Cloud)."""
    retention: float = 86_400.0
    """Seconds results stay fetchable after completion; then 410."""
    immediate_result_limit: int = 8 * 1024 * 1024
    """Bytes; larger immediate results answer 413."""
    immediate_timeout: float = 30.0
    """Seconds of execution before an immediate query answers 504."""
    async_execution_limit: float = 300.0
    """Seconds of database time before an async query fails."""
    body_timeout: float = 30.0
    """Seconds a request body may take to arrive: one shorter than its Content-Length then
    answers 408 instead of holding its handler forever."""
    registered_execution_limit: float = 60.0
    registered_result_limit: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.page_size < 16:
            raise ValueError("page_size must be at least 16 bytes")
        for name in ("retention", "immediate_timeout", "async_execution_limit"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


@dataclasses.dataclass(frozen=True)
class QueryEvent:
    """A completion a webhook would announce: an async success or a changed registered result."""

    source: Literal["async", "registered"]
    site_id: str
    query_id: str
    occurred_at: datetime


EventListener = Callable[[QueryEvent], None]


def _path_id(value: str, what: str) -> str:
    """A path id in canonical form; one that is not a UUID is a bad request, not an unknown id."""
    canonical = parse_uuid(value)
    if canonical is None:
        # The document's 400 ("Invalid request path, parameter or body"); 404 is for a
        # well-formed id that names nothing.
        raise ApiError(400, f"Invalid request path, parameter or body: the {what} '{value}' "
                       "is not a UUID.")  # fmt: skip
    return canonical


class _TimedOut(Exception):
    """A clock deadline passed before the awaited work finished."""


# What a command's failure in the database can be (the rest are emulator bugs).
_COMMAND_ERRORS = (SqlError, ParameterConversionError, ResultTooLargeError, UnknownCatalogueError)


@dataclasses.dataclass(frozen=True)
class _Execution:
    """A command's outcome, already encoded in the SQL thread (the loop only hands it out)."""

    rows_affected: int | None
    scalar: Any
    parameters: list[dict[str, Any]]
    mode: str
    duration_ms: int
    row_count: int
    data: bytes | None = None
    """The whole result as one JSON value (immediate and registered queries)."""
    pages: list[PageRecord] | None = None
    """The result split into pages (async queries)."""


class _SiteSlot:
    """One execution at a time per site; waiters served by (priority, arrival)."""

    def __init__(self) -> None:
        self._busy = False
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    @property
    def busy(self) -> bool:
        return self._busy

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, fut in self._waiters if not fut.done())

    async def acquire(self, priority: int) -> None:
        if not self._busy:
            self._busy = True
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._arrivals), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                # Granted and cancelled in the same iteration: pass the slot on.
                self.release()
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)  # ownership moves to the waiter; busy stays True
                return
        self._busy = False


class EmulatorState:
    """Sites, queries and registered queries, and the coroutines that move them along."""

    def __init__(
        self,
        *,
        sites: Sequence[Site],
        clock: Clock,
        latency: Latency,
        faults: Faults,
        seed: int = 1,
        integrator_id: str | None = None,
        limits: Limits | None = None,
        executor: SqlExecutor | None = None,
    ) -> None:
        self.clock = clock
        self.latency = latency
        self.faults = faults
        self.limits = limits or Limits()
        self.integrator_id = integrator_id or str(
            uuid.UUID(
                int=random.Random(f"halo-emulator-integrator:{seed}").getrandbits(128), version=4
            )
        )
        self.sites: dict[str, Site] = {site.id: site for site in sites}
        if len(self.sites) != len(sites):
            raise ValueError("site ids must be unique")
        self._rng = random.Random(f"halo-emulator-latency:{seed}")
        self._slots: dict[str, _SiteSlot] = collections.defaultdict(_SiteSlot)
        self._queries: dict[str, QueryRecord] = {}
        self._registered: dict[str, RegisteredRecord] = {}
        self._retention: collections.deque[QueryRecord] = collections.deque()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._registered_tasks: dict[str, asyncio.Task[None]] = {}
        self._listeners: list[EventListener] = []
        self._watchers: dict[str | None, list[tuple[Callable[[], bool], asyncio.Future[None]]]] = {}
        self.executor = executor if executor is not None else SqlExecutor()
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    async def close(self) -> None:
        """Stop every running query, shut the SQL threads down and close the databases."""
        if self._closed:
            return
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.executor.shutdown()
        for site in self.sites.values():
            site.database.close()
        for watchers in self._watchers.values():
            for _, fut in watchers:
                if not fut.done():
                    fut.cancel()

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        if self._closed:
            raise RuntimeError("the emulator is closed")
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ events (webhook seam)

    def add_listener(self, listener: EventListener) -> None:
        """Call ``listener`` for each async success and each changed registered result."""
        self._listeners.append(listener)

    def remove_listener(self, listener: EventListener) -> None:
        """Stop calling ``listener``."""
        self._listeners.remove(listener)

    def _emit(self, event: QueryEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                _log.exception("query event listener failed")

    def _changed(self, subject: str) -> None:
        """Wake the waiters of :meth:`wait_until` on ``subject`` (or on anything) now satisfied."""
        for key in (subject, None):
            watchers = self._watchers.get(key)
            if not watchers:
                continue
            still = []
            for predicate, fut in watchers:
                if fut.done():
                    continue
                if predicate():
                    fut.set_result(None)
                else:
                    still.append((predicate, fut))
            if still:
                self._watchers[key] = still
            else:
                del self._watchers[key]

    async def wait_until(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 - a real-time guard for tests, not an API knob
        *,
        subject: str | None = None,
    ) -> None:
        """Wait until ``predicate()`` holds after a state change (``timeout``: real seconds).

        With ``subject`` (a query or registered query id) the predicate is only re-checked
        when that query changes, which keeps thousands of waiters cheap.
        """
        if predicate():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watchers.setdefault(subject, []).append((predicate, fut))
        try:
            await asyncio.wait_for(fut, timeout)
        finally:
            if not fut.done():
                fut.cancel()

    # ------------------------------------------------------------------ sites

    def site(self, site_id: str) -> Site:
        """The site with this Halo GUID, or 404."""
        site = self.sites.get(_path_id(site_id, "site id"))
        if site is None:
            raise ApiError(404, f"Site '{site_id}' was not found.")
        return site

    def queryable_site(self, site_id: str) -> Site:
        """A site that may be queried: known (404), paired and authoritative (403)."""
        site = self.site(site_id)
        if not site.paired:
            raise ApiError(403, "The site is not paired with this integrator. Pair it first.")
        if not site.authoritative:
            raise ApiError(
                403,
                "The site is not the authoritative site for its practice management site id; "
                "look up the current Halo GUID.",
            )
        return site

    def find_sites(self, pms_site_id: str, pms_name: str) -> list[Site]:
        """Sites whose PMS id and PMS name match (any pairing state)."""
        return [
            site
            for site in self.sites.values()
            if site.pms_site_id == pms_site_id and site.pms_name == pms_name
        ]

    def pair(self, pms_site_id: str, pms_name: str, pairing_code: str | None) -> Site:
        """Pair every site of a PMS id; returns the authoritative one (pair-site)."""
        matches = self.find_sites(pms_site_id, pms_name)
        if not matches:
            raise ApiError(404, f"No {pms_name} site with id '{pms_site_id}' was found.")
        if pms_name == PMS_NAMES["BestPractice"]:
            if not pairing_code:
                raise ApiError(400, "A pairing code is required to pair with a Best Practice site.")
            codes = {site.pairing_code for site in matches}
            if pairing_code.strip().upper() not in codes:
                raise ApiError(400, "The pairing code is invalid or has expired.")
        for site in matches:
            site.paired = True
        return next((site for site in matches if site.authoritative), matches[0])

    def set_availability(self, site_id: str, availability: str) -> Site:
        """Put a site online, offline or unreachable."""
        site = self.site(site_id)
        site.set_availability(availability, self.clock.now())
        return site

    def _check_catalogue(self, site: Site, catalogue: str | None) -> None:
        if catalogue is None:
            return
        names = [c.name for c in site.database.catalogues]
        if catalogue.casefold() not in {name.casefold() for name in names}:
            raise ApiError(
                400,
                f"Catalogue '{catalogue}' is not available on this site. "
                f"Available catalogues: {', '.join(names)}.",
            )

    # ------------------------------------------------------------------ execution

    def _sample(self, phase: Any) -> float:
        return self.latency.sample(phase, self._rng)

    async def _within(self, awaitable: Awaitable[_T], seconds: float | None) -> _T:
        """Await ``awaitable``, or raise _TimedOut once ``seconds`` pass on the clock."""
        task = asyncio.ensure_future(awaitable)
        if seconds is None:
            return await task
        timer = asyncio.ensure_future(self.clock.sleep(seconds))
        try:
            done, _ = await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            if not task.done():
                # Cancelling the SQL work interrupts its statement (SqlExecutor.run).
                task.cancel()
        if task in done:
            return task.result()
        raise _TimedOut

    async def _acquire_site(self, site: Site, priority: int, *, wait_online: bool) -> None:
        slot = self._slots[site.id]
        while True:
            if wait_online:
                # Halo Link holds its queue while the site is down; queued queries wait.
                await site.online.wait()
            await slot.acquire(priority)
            if not wait_online or site.availability == "online":
                return
            slot.release()

    def _release_site(self, site: Site) -> None:
        self._slots[site.id].release()

    async def _execute(
        self,
        site: Site,
        command: CommandRequest | RegisteredRecord,
        *,
        limit: float | None,
        shape: Literal["data", "pages"],
    ) -> _Execution:
        """Run one command in the SQL pool plus the simulated execution latency.

        The result is encoded in the SQL thread too (``shape``: one JSON value, or pages), so
        that a large result costs the event loop nothing.
        """
        simulated = self._sample("execution")
        page_size = self.limits.page_size
        # Registered queries run on the site's default catalogue.
        catalogue = command.catalogue if isinstance(command, CommandRequest) else None

        def run() -> _Execution:
            started = time.perf_counter()
            result = site.database.execute(
                command.text,
                catalogue=catalogue,
                execution_mode=command.execution_mode,
                command_type=command.command_type,
                parameters=command.parameters,
            )
            duration_ms = round((time.perf_counter() - started + simulated) * 1000)
            return _encode(result, command.execution_mode, shape, page_size, duration_ms)

        async def work() -> _Execution:
            execution = await self.executor.run(site.database, run)
            await self.clock.sleep(simulated)
            return execution

        return await self._within(work(), limit)

    @staticmethod
    def _sql_error(exc: SqlError) -> dict[str, Any]:
        return {
            "errorType": exc.error_type,
            "errorCode": exc.error_code,
            "errorMessage": exc.message,
        }

    @staticmethod
    def _timeout_error(site: Site, seconds: float) -> dict[str, Any]:
        error_type = "fbsql" if site.pms_type == "Zedmed" else "mssql"
        code, message = _sandbox.timeout_error(error_type, seconds)
        return {"errorType": error_type, "errorCode": code, "errorMessage": message}

    @staticmethod
    def _command_error(exc: Exception) -> dict[str, Any]:
        """errorDetails for a command that failed in the database (not in the emulator)."""
        if isinstance(exc, SqlError):
            return EmulatorState._sql_error(exc)
        if isinstance(exc, ParameterConversionError):
            return {"errorType": "http", "errorCode": 400, "errorMessage": exc.message}
        if isinstance(exc, ResultTooLargeError):
            return {"errorType": "http", "errorCode": 413, "errorMessage": exc.message}
        assert isinstance(exc, UnknownCatalogueError)
        return {
            "errorType": "haloLink",
            "errorCode": 400,
            "errorMessage": f"Catalogue '{exc.catalogue}' is not available on this site.",
        }

    # ------------------------------------------------------------------ immediate queries

    def _new_query(self, site: Site, request: CommandRequest, mode: str) -> QueryRecord:
        now = self.clock.now()
        query = QueryRecord(
            id=str(uuid.uuid4()),
            integrator_id=self.integrator_id,
            site_id=site.id,
            mode=mode,
            status="initialising",
            max_time_in_queue=request.max_time_in_queue,
            command_size=request.command_size,
            request_size=request.request_size,
            created_at=now,
            updated_at=now,
        )
        query.start("initialising", now)
        self._queries[query.id] = query
        self._sweep(now)
        return query

    async def run_immediate(self, site: Site, request: CommandRequest) -> dict[str, Any]:
        """Run an immediate query to completion: the 200 body, or an ApiError."""
        if site.availability != "online":
            raise ApiError(503, _errors.SITE_NOT_CONTACTED)
        self._check_catalogue(site, request.catalogue)
        query = self._new_query(site, request, "immediate")
        drops = self.faults.immediate_site_drops(site.id)
        await self.clock.sleep(self._sample("immediate_overhead"))
        wait = request.max_time_in_queue / 1000
        try:
            await self._within(
                self._acquire_site(site, IMMEDIATE_PRIORITY, wait_online=False), wait
            )
        except _TimedOut:
            self._finish(query, "expiredInQueue")
            raise ApiError(504, _errors.EXPIRED_IN_QUEUE) from None
        try:
            execution = await self._execute_immediate(site, query, request)
        finally:
            self._release_site(site)
        if drops or site.availability != "online":
            error = {
                "errorType": "haloLink",
                "errorCode": 504,
                "errorMessage": _errors.SITE_OFFLINE_AFTER_ATTEMPT,
            }
            self._finish(query, "executionFailed", error)
            raise ApiError(504, _errors.SITE_OFFLINE_AFTER_ATTEMPT)
        return self._immediate_success(query, execution)

    async def _execute_immediate(
        self, site: Site, query: QueryRecord, request: CommandRequest
    ) -> _Execution:
        """Execute on the acquired site; every failure finishes the query and becomes a 4xx/5xx."""
        query.start("executing", self.clock.now())
        try:
            return await self._execute(
                site, request, limit=self.limits.immediate_timeout, shape="data"
            )
        except _COMMAND_ERRORS as exc:
            raise self._immediate_failure(query, exc) from None
        except _TimedOut:
            error = self._timeout_error(site, self.limits.immediate_timeout)
            self._finish(query, "executionFailed", error)
            raise ApiError(504, _errors.IMMEDIATE_TIMEOUT) from None
        except Exception:
            # An emulator bug, not the caller's: the app answers 500 and logs it; the record
            # must not stay `executing` for getQuery.
            self._finish(query, "executionFailed", dict(_UNEXPECTED))
            raise

    def _immediate_failure(self, query: QueryRecord, exc: Exception) -> ApiError:
        error = self._command_error(exc)
        if isinstance(exc, UnknownCatalogueError):
            self._finish(query, "executionFailed")
            return ApiError(400, error["errorMessage"])
        self._finish(query, "executionFailed", error)
        if isinstance(exc, SqlError):
            return ApiError(400, exc.message, body=immediate_json(query, None))
        if isinstance(exc, ResultTooLargeError):
            return ApiError(413, _errors.TOO_LARGE, body={"errorDetails": error})
        return ApiError(400, error["errorMessage"])

    def _immediate_success(self, query: QueryRecord, execution: _Execution) -> dict[str, Any]:
        data, kind, count = self._immediate_payload(execution)
        size = len(data) if data is not None else 0
        query.execution_ms = execution.duration_ms
        if size > self.limits.immediate_result_limit:
            error = {"errorType": "http", "errorCode": 413, "errorMessage": _errors.TOO_LARGE}
            self._finish(query, "executionFailed", error)
            raise ApiError(413, _errors.TOO_LARGE, body={"errorDetails": error})
        query.start("uploading", self.clock.now())
        query.result_kind, query.result_count, query.result_size = kind, count, size
        query.parameters = execution.parameters
        self._finish(query, "successful")
        return immediate_json(query, data)

    @staticmethod
    def _immediate_payload(execution: _Execution) -> tuple[bytes | None, str, int]:
        if execution.mode == "nonQuery":
            return None, "rowsAffected", execution.rows_affected or 0
        # Scalar data is the bare JSON value (REFERENCE §12 leaves it open; the SDK accepts a
        # bare value or a one-row array).
        return execution.data, "rows", execution.row_count

    def _finish(self, query: QueryRecord, status: str, error: dict[str, Any] | None = None) -> None:
        now = self.clock.now()
        phase = query.status if query.status in query.timing else None
        if phase is not None and query.mode == "async":
            query.end(phase, now)
        query.finish(status, now, error)
        if status in ("successful", "uploadFailed"):
            self._retention.append(query)
        self._changed(query.id)

    # ------------------------------------------------------------------ async queries

    def submit_async(self, site: Site, request: CommandRequest) -> QueryRecord:
        """Accept an async query (status ``initialising``) and start its lifecycle."""
        self._check_catalogue(site, request.catalogue)
        query = self._new_query(site, request, "async")
        drop_phase = self.faults.site_drop_phase(site.id)
        self._spawn(self._run_async(site, query, request, drop_phase), f"halo-async-{query.id}")
        return query

    async def _run_async(
        self, site: Site, query: QueryRecord, request: CommandRequest, drop_phase: str | None
    ) -> None:
        try:
            await self._async_lifecycle(site, query, request, drop_phase)
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("async query %s failed inside the emulator", query.id)
            if not query.terminal:
                self._finish(query, "executionFailed", dict(_UNEXPECTED))

    async def _async_lifecycle(
        self, site: Site, query: QueryRecord, request: CommandRequest, drop_phase: str | None
    ) -> None:
        if not await self._initialise(site, query, drop_phase):
            return
        if not await self._wait_in_queue(site, query):
            return
        try:
            execution = await self._execute_async(site, query, request)
            if execution is None:
                return
            if drop_phase == "executing" or site.availability != "online":
                error = {
                    "errorType": "haloLink",
                    "errorCode": 503,
                    "errorMessage": "The site went offline while the query was executing.",
                }
                self._finish(query, "executionFailed", error)
                return
        finally:
            self._release_site(site)
        await self._upload(site, query, execution)

    async def _initialise(self, site: Site, query: QueryRecord, drop_phase: str | None) -> bool:
        """``initialising`` -> ``queued``; False when the query failed there instead."""
        await self.clock.sleep(self._sample("initialising"))
        if site.availability != "online" or drop_phase == "initialising":
            status = (
                "initialisationFailedSiteUnreachable"
                if site.availability == "unreachable"
                else "initialisationFailedSiteOffline"
            )
            self._finish(query, status)
            return False
        now = self.clock.now()
        query.end("initialising", now)
        query.start("queued", now)
        self._changed(query.id)
        return True

    async def _wait_in_queue(self, site: Site, query: QueryRecord) -> bool:
        """Hold the site's slot, picked up while it is online; False if the query expired."""
        deadline = query.queue_deadline
        assert deadline is not None
        while True:
            remaining = (deadline - self.clock.now()).total_seconds()
            try:
                await self._within(
                    self._acquire_site(site, ASYNC_PRIORITY, wait_online=True), remaining
                )
            except _TimedOut:
                self._expire(query, deadline)
                return False
            try:
                await self.clock.sleep(self._sample("queue_pickup"))
            except BaseException:
                self._release_site(site)
                raise
            if self._expire_if_due(query) or query.status != "queued":
                self._release_site(site)
                return False
            if site.availability == "online":
                return True
            # The site dropped while Link was picking the query up: back to waiting.
            self._release_site(site)

    async def _execute_async(
        self, site: Site, query: QueryRecord, request: CommandRequest
    ) -> _Execution | None:
        now = self.clock.now()
        query.end("queued", now)
        query.start("executing", now)
        self._changed(query.id)
        try:
            return await self._execute(
                site, request, limit=self.limits.async_execution_limit, shape="pages"
            )
        except _COMMAND_ERRORS as exc:
            error = self._command_error(exc)
        except _TimedOut:
            error = self._timeout_error(site, self.limits.async_execution_limit)
        self._finish(query, "executionFailed", error)
        return None

    async def _upload(self, site: Site, query: QueryRecord, execution: _Execution) -> None:
        now = self.clock.now()
        query.end("executing", now)
        query.start("uploading", now)
        query.execution_ms = execution.duration_ms
        query.parameters = execution.parameters
        query.pages = execution.pages or []
        if execution.mode == "nonQuery":
            query.result_kind, query.result_count = "rowsAffected", execution.rows_affected or 0
            query.result_size = 0
        else:
            query.result_kind = "rows"
            query.result_count = sum(page.count for page in query.pages)
            # The size of the whole result as one JSON array: the pages' arrays joined, less
            # one pair of brackets per extra page plus the commas that join them.
            query.result_size = sum(page.size for page in query.pages) - len(query.pages) + 1
        self._changed(query.id)
        fail_at = self.faults.upload_failure_page(site.id, len(query.pages))
        for index, page in enumerate(query.pages):
            page.status = "uploading"
            query.updated_at = self.clock.now()
            self._changed(query.id)
            await self.clock.sleep(self._sample("page_upload"))
            if index == fail_at:
                self._finish(
                    query,
                    "uploadFailed",
                    {
                        "errorType": "haloLink",
                        "errorCode": 500,
                        "errorMessage": f"Failed to upload result page {page.number} of "
                        f"{len(query.pages)}.",
                    },
                )
                return
            page.status = "cached"
            query.updated_at = self.clock.now()
            self._changed(query.id)
        self._finish(query, "successful")
        self._emit(QueryEvent("async", site.id, query.id, query.completed_at or self.clock.now()))

    def _expire(self, query: QueryRecord, deadline: datetime) -> None:
        if query.status != "queued":
            return
        query.end("queued", deadline)
        query.finish("expiredInQueue", deadline)
        self._changed(query.id)

    def _expire_if_due(self, query: QueryRecord) -> bool:
        deadline = query.queue_deadline
        if query.status == "queued" and deadline is not None and self.clock.now() >= deadline:
            self._expire(query, deadline)
            return True
        return False

    # ------------------------------------------------------------------ reading queries

    def query(self, site: Site, query_id: str) -> QueryRecord:
        """A query of this site (immediate or async), or 404."""
        query = self._queries.get(_path_id(query_id, "query id"))
        if query is None or query.site_id != site.id:
            raise ApiError(404, f"Query '{query_id}' was not found.")
        self._expire_if_due(query)
        return query

    def batch_status(self, site: Site, query_ids: Iterable[str]) -> list[dict[str, Any]]:
        """The batch status results, in request order."""
        results: list[dict[str, Any]] = []
        for query_id in query_ids:
            query = self._queries.get(query_id)
            if query is None or query.site_id != site.id:
                results.append({"queryId": query_id, "status": "notFound"})
                continue
            self._expire_if_due(query)
            results.append({"queryId": query_id, "status": "found", "query": query_json(query)})
        return results

    def _results_expired(self, query: QueryRecord, now: datetime) -> bool:
        if query.results_gone:
            return True
        if query.completed_at is None:
            return False
        return now >= query.completed_at + timedelta(seconds=self.limits.retention)

    def _drop_results(self, query: QueryRecord) -> None:
        query.results_gone = True
        for page in query.pages:
            page.data = None

    def _sweep(self, now: datetime) -> None:
        """Free the pages of queries past retention (oldest first)."""
        while self._retention and self._results_expired(self._retention[0], now):
            self._drop_results(self._retention.popleft())

    def page(
        self, site: Site, query_id: str, number: int, operation: str
    ) -> tuple[QueryRecord, PageRecord]:
        """A cached result page, or 404 (unknown, not cached yet, beyond the last) / 410."""
        query = self.query(site, query_id)
        now = self.clock.now()
        self._sweep(now)
        if query.mode != "async":
            raise ApiError(
                404, "Immediate query results are returned with the query; it has no pages."
            )
        if self._results_expired(query, now):
            self._drop_results(query)
            raise ApiError(410, _errors.GONE)
        if not query.pages:
            raise ApiError(404, f"Query has no result pages (status {query.status}).")
        if number > len(query.pages):
            raise ApiError(
                404, f"Page {number} does not exist; the result has {len(query.pages)} page(s)."
            )
        page = query.pages[number - 1]
        if page.status != "cached":
            raise ApiError(404, f"Page {number} is not cached yet (status {page.status}).")
        if self.faults.page_expires_early(operation, site.id):
            self._drop_results(query)
            raise ApiError(410, _errors.GONE)
        return query, page

    # ------------------------------------------------------------------ registered queries

    def create_registered(self, site: Site, request: RegisteredRequest) -> RegisteredRecord:
        """Register a query: it runs now and every ``frequency`` seconds for ``duration``."""
        record = RegisteredRecord(
            id=str(uuid.uuid4()),
            site_id=site.id,
            name=request.name,
            frequency=request.frequency,
            duration=request.duration,
            text=request.text,
            execution_mode=request.execution_mode,
            command_type=request.command_type,
            parameters=request.parameters,
            request_size=request.request_size,
            created_at=self.clock.now(),
        )
        self._registered[record.id] = record
        self._registered_tasks[record.id] = self._spawn(
            self._run_registered(site, record), f"halo-registered-{record.id}"
        )
        return record

    def registered_queries(self, site: Site) -> list[RegisteredRecord]:
        """The site's registered queries, oldest first."""
        return [r for r in self._registered.values() if r.site_id == site.id]

    def registered(self, site: Site, query_id: str) -> RegisteredRecord:
        """One registered query of this site, or 404."""
        record = self._registered.get(_path_id(query_id, "registered query id"))
        if record is None or record.site_id != site.id:
            raise ApiError(404, f"Registered query '{query_id}' was not found.")
        return record

    def cancel_registered(self, site: Site, query_id: str) -> None:
        """Stop a registered query; cancelling a finished one changes nothing."""
        record = self.registered(site, query_id)
        if record.status != "enabled":
            return
        record.status = "cancelled"
        record.completed_at = self.clock.now()
        task = self._registered_tasks.pop(record.id, None)
        if task is not None:
            task.cancel()
        self._changed(record.id)

    def registered_result(self, site: Site, query_id: str) -> RegisteredRecord:
        """A registered query with a result, or 404 before its first successful run."""
        record = self.registered(site, query_id)
        if record.result_data is None:
            raise ApiError(404, "The registered query has no result yet.")
        return record

    async def _run_registered(self, site: Site, record: RegisteredRecord) -> None:
        runs = 0
        try:
            while record.status == "enabled":
                await self._registered_run(site, record)
                runs += 1
                offset = runs * record.frequency
                if offset > record.duration:
                    break
                wake = record.created_at + timedelta(seconds=offset)
                await self.clock.sleep((wake - self.clock.now()).total_seconds())
            if record.status == "enabled":
                record.status = "completed"
                record.completed_at = self.clock.now()
                self._changed(record.id)
        finally:
            self._registered_tasks.pop(record.id, None)

    async def _registered_run(self, site: Site, record: RegisteredRecord) -> None:
        error: dict[str, Any] | None = None
        execution: _Execution | None = None
        if site.availability != "online":
            error = {"errorType": "haloLink", "errorCode": 503, "errorMessage": "Site is offline."}
        else:
            await self._acquire_site(site, ASYNC_PRIORITY, wait_online=False)
            try:
                execution = await self._execute(
                    site, record, limit=self.limits.registered_execution_limit, shape="data"
                )
            except (SqlError, ParameterConversionError, ResultTooLargeError) as exc:
                error = self._command_error(exc)
            except _TimedOut:
                error = self._timeout_error(site, self.limits.registered_execution_limit)
            finally:
                self._release_site(site)
        now = self.clock.now()
        if execution is not None:
            data, _, count = self._immediate_payload(execution)
            data = data if data is not None else b"[]"
            if len(data) > self.limits.registered_result_limit:
                error = {"errorType": "http", "errorCode": 413, "errorMessage": _errors.TOO_LARGE}
            else:
                self._registered_success(site, record, execution, data, count, now)
        if error is not None:
            record.failed += 1
            record.last_failed_at = now
            record.last_error = error
            record.last_execution_ms = execution.duration_ms if execution else 0
        self._changed(record.id)

    def _registered_success(
        self,
        site: Site,
        record: RegisteredRecord,
        execution: _Execution,
        data: bytes,
        count: int,
        now: datetime,
    ) -> None:
        record.succeeded += 1
        record.last_succeeded_at = now
        record.last_execution_ms = execution.duration_ms
        record.result_size_sum += len(data)
        digest = hashlib.sha256(data + encode_value(execution.parameters)).digest()
        new_hash = base64.b64encode(digest).decode("ascii")
        if new_hash != record.last_hash:
            # Halo uploads a registered result only when it changed (REFERENCE §7).
            record.last_hash = new_hash
            record.result_data = data
            record.result_parameters = execution.parameters or None
            record.result_rows = count if execution.mode != "nonQuery" else 0
            self._emit(QueryEvent("registered", site.id, record.id, now))

    # ------------------------------------------------------------------ introspection

    def queries(self, site_id: str | None = None) -> list[QueryRecord]:
        """Every query the emulator remembers (of one site, when given)."""
        return [q for q in self._queries.values() if site_id is None or q.site_id == site_id]

    def records(self) -> list[QueryRecord]:
        """Every query received, in the order they were created."""
        return list(self._queries.values())

    def lookup(self, query_id: str) -> QueryRecord | None:
        """A query by id, whatever its site."""
        query = self._queries.get(query_id)
        if query is not None:
            self._expire_if_due(query)
        return query

    def queue_length(self, site_id: str) -> int:
        """Commands waiting for the site's execution slot."""
        return self._slots[site_id].waiting

    def statuses(self, query_ids: Collection[str]) -> dict[str, str]:
        """The current status of each known query id."""
        return {qid: q.status for qid in query_ids if (q := self.lookup(qid)) is not None}


def _encode(
    result: Any, mode: str, shape: Literal["data", "pages"], page_size: int, duration_ms: int
) -> _Execution:
    """A database result as the JSON Halo hands out: one value, or pages of rows."""
    parameters = [dict(p) for p in result.parameters]
    base = {"rows_affected": result.rows_affected, "scalar": result.scalar,
            "parameters": parameters, "mode": mode, "duration_ms": duration_ms}  # fmt: skip
    if mode == "nonQuery":
        empty = PageRecord(number=1, row_start=0, count=0, size=0, data=None)
        return _Execution(**base, row_count=0, pages=[empty])
    if mode == "scalar":
        body = encode_value(result.scalar)
        count = 0 if result.scalar is None else 1
        page = PageRecord(number=1, row_start=0, count=count, size=len(body), data=body)
        return _Execution(**base, row_count=count, data=body, pages=[page])
    rows = result.rows or []
    if shape == "pages":
        return _Execution(**base, row_count=len(rows), pages=paginate(rows, page_size))
    return _Execution(**base, row_count=len(rows), data=encode_value(rows))
