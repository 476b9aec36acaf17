"""QueryJob: one async query, from submission to rows.

A job polls its query's status under a :class:`PollPolicy`, fetches each result page as
soon as it can be fetched (while later pages still upload), and yields pages or rows in
order. Its delivery state (the page being delivered and the next row in it) lives on the
job, as trino's ``TrinoResult`` keeps its rows: breaking out of ``rows()``, an error
escaping it, or a cancelled consumer loses and repeats nothing, and calling ``rows()`` (or
``pages()``) again carries on at the first row not yet delivered. :meth:`QueryJob.checkpoint`
carries the same position to another process while Halo retains the result.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping, Set
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

import attrs

from halo_async import _constants as C
from halo_async import _decode, _validate, models
from halo_async._api import FetchedPage, QueryApi
from halo_async._http import Response
from halo_async._otel import JobRun
from halo_async._retry import PollPolicy
from halo_async.errors import (
    HaloError,
    IncompleteResultError,
    PollTimeoutError,
    RowTypeError,
    error_for_query,
)
from halo_async.models import Checkpoint

if TYPE_CHECKING:
    import pyarrow as pa

    from halo_async.ledger import JobRecorder

__all__ = ["Checkpoint", "PollPolicy", "PollTimeoutError", "QueryJob", "RowTypeError"]

T = TypeVar("T")


class _Runner(Protocol):
    """What runs a job inside a fan-out: its status asks, shared with the other jobs of
    the site (one batch request answers them), and its status changes, reported."""

    coalesces: bool
    """True when :meth:`status` answers the job's polls; False when the job polls itself."""

    def status(self, job: QueryJob, earliest: float, latest: float) -> Awaitable[models.AsyncQuery]:
        """The job's status, fetched between ``earliest`` and ``latest`` seconds from now
        (an awaitable, not a coroutine: no frame per ask of a thousand jobs waiting)."""
        ...

    def hurry(self, job: QueryJob) -> None:
        """Make the job's pending status ask due now (a webhook woke it)."""
        ...

    def status_changed(self, job: QueryJob, query: models.AsyncQuery) -> None:
        """The job saw a new status or newly fetchable pages."""
        ...


class QueryJob:
    """One async query: poll it, then stream its result pages and rows.

    Create one with :meth:`HaloClient.submit` (or :meth:`HaloClient.resume`)::

        job = await halo.submit(site_id, "SELECT * FROM BPS_Patients")
        async for row in job.rows():
            ...

    ``prefetch`` pages are fetched concurrently ahead of the consumer, in order, so memory
    is bounded by the window, not by the result. Breaking out of the loop, ``aclose()`` or
    cancelling the task stops polling and every prefetch at once; the next ``rows()`` call
    carries on at the next row.
    """

    def __init__(
        self,
        api: QueryApi,
        site_id: str,
        query_id: str,
        *,
        query: models.AsyncQuery | None = None,
        poll: PollPolicy | None = None,
        prefetch: int = C.PAGE_PREFETCH,
        next_page: int = 1,
        next_row: int = 0,
        _runner: _Runner | None = None,
        _recorder: JobRecorder | None = None,
        _delivered: bool = False,
    ) -> None:
        self._api = api
        self.site_id = site_id
        self.query_id = query_id
        self.poll = poll or PollPolicy()
        if type(prefetch) is not int or prefetch < 1:  # checked in full only when odd
            prefetch = _validate.int_in_range("prefetch", prefetch, 1, None, "pages")
        self.prefetch = prefetch
        self._query = query
        self._runner = _runner
        self._recorder = _recorder  # submit(ledger=): records delivery as pages are taken
        self._delivered = _delivered  # a ledger says every row was taken: nothing to fetch
        # notify(): a wake-up asked for, and the futures the polls asleep wait on (made by
        # the first sleep: a job may be polled by more than one caller at once).
        self._wake_pending = False
        self._sleepers: set[asyncio.Future[None]] | None = None
        self._poll_ends_at: float | None = None  # on the poll policy's clock, while polling
        self.status_polls = 0
        # Delivery state. ``_held`` is the fetched page being delivered (None between
        # pages) and ``_offset`` the next row in it; with no page held, ``_offset`` is the
        # rows of page ``_next_page`` delivered before (a checkpoint's ``next_row``).
        self._next_page = next_page
        self._held: models.ResultPage | None = None
        self._offset = next_row
        self._run: JobRun | None = None  # the span of the wait/pages/rows under way
        self._run_polls = 0  # status_polls when that span began
        self._timed = False  # whether the query's queue and execution times were recorded

    def __repr__(self) -> str:
        point = self.checkpoint()
        return (
            f"<QueryJob site={self.site_id} query={self.query_id} status={self.status} "
            f"next_page={point.next_page} next_row={point.next_row}>"
        )

    @property
    def query(self) -> models.AsyncQuery | None:
        """The last status seen (None before the first poll of a resumed job)."""
        return self._query

    @property
    def status(self) -> models.QueryStatus | str | None:
        """The last status seen."""
        return self._query.status if self._query is not None else None

    def checkpoint(self) -> Checkpoint:
        """Where delivery stands: the page and row of the first row not yet delivered.
        Pass it to :meth:`HaloClient.resume` to carry on, in this process or another."""
        held = self._held
        if held is not None and self._offset < len(held.rows):
            return Checkpoint(self.site_id, self.query_id, held.page_number, self._offset)
        if held is not None:  # its last row went out: the next page is next
            return Checkpoint(self.site_id, self.query_id, self._next_page)
        return Checkpoint(self.site_id, self.query_id, self._next_page, self._offset)

    def notify(self) -> None:
        """Wake the poller now (e.g. a webhook said the query finished)."""
        self._wake_pending = True
        for woken in self._sleepers or ():
            _resolve(woken)
        if self._runner is not None:
            self._runner.hurry(self)

    # -- status ----------------------------------------------------------------------

    async def refresh(self) -> models.AsyncQuery:
        """Fetch the query's status once."""
        self.status_polls += 1
        if self._runner is not None and self._runner.coalesces:
            query = await self._runner.status(self, 0.0, 0.0)
        else:
            with self._as_parent():
                fetched = await self._api._get_query(
                    self.site_id, self.query_id, timeout=self._poll_time_left()
                )
            if not isinstance(fetched, models.AsyncQuery):
                raise HaloError(f"query {self.query_id} is not an async query")
            query = fetched
        self._query = query
        return query

    def _poll_time_left(self) -> float | None:
        """What is left of the poll deadline: a status request may not outlast it."""
        if self._poll_ends_at is None:
            return None
        return max(self._poll_ends_at - self.poll.now(), 0.001)

    async def wait(self) -> models.AsyncQuery:
        """Poll until the query ends; return it if successful, raise its typed error if not."""
        with self._traced():
            poller = _Poller(self, _is_terminal)
            while await poller.next() is not None:
                pass
        assert self._query is not None
        return self._query

    async def _poll_itself(self, interval: float) -> models.AsyncQuery:
        """The status about ``interval`` seconds from now (at once, if notify() woke the
        job), asked by the job itself rather than by a fan-out's shared batch."""
        if self._wake_pending:
            self._wake_pending = False
        else:
            await self._sleep_or_wake(self.poll.wait_for(interval))
        return await self.refresh()

    async def _sleep_or_wake(self, seconds: float) -> None:
        """Sleep ``seconds`` on the poll policy's sleep, or until notify() wakes the job."""
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()
        if self._sleepers is None:
            self._sleepers = set()
        self._sleepers.add(woken)
        try:
            if self.poll.sleep is asyncio.sleep:
                # The common case, as asyncio.sleep does it (a future and a timer), the
                # future also resolved by notify(): no task, no event, no timeout per wait.
                timer = loop.call_later(seconds, _resolve, woken)
                try:
                    await woken
                finally:
                    timer.cancel()
            else:
                sleeper = asyncio.ensure_future(self.poll.sleep(seconds))
                try:
                    await asyncio.wait({sleeper, woken}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    sleeper.cancel()
                    await asyncio.gather(sleeper, return_exceptions=True)
        finally:
            self._sleepers.discard(woken)
            self._wake_pending = False

    # -- pages and rows ----------------------------------------------------------------

    async def pages(self) -> AsyncGenerator[models.ResultPage, None]:
        """Yield the result pages in order, each as soon as it can be fetched.

        A page that ``rows()`` had begun to deliver comes first with its remaining rows.
        """
        try:
            async with _PageSource(self) as source:
                while (page := await source.take()) is not None:
                    yield page
                    if self._recorder is not None:
                        await self._record(len(page.rows))
                    del page  # before the next page is decoded (see _PageSource)
        except HaloError as exc:
            await self._record_failure(exc)
            raise
        await self._record(0, done=True)

    @overload
    def rows(self) -> AsyncGenerator[dict[str, Any], None]: ...

    @overload
    def rows(
        self, as_type: type[T], *, rename: Mapping[str, str] | None = None
    ) -> AsyncGenerator[T, None]: ...

    async def rows(
        self, as_type: type[Any] | None = None, *, rename: Mapping[str, str] | None = None
    ) -> AsyncGenerator[Any, None]:
        """Yield the result rows in order, as dicts, or structured into ``as_type``.

        A row counts as delivered once yielded: after a ``break`` the next ``rows()`` call
        starts at the row after it. ``as_type`` is an attrs class or dataclass; columns map
        to fields by name, ignoring case and underscores (``FIRSTNAME`` fills ``firstname``
        and ``first_name``), or as ``rename`` (column -> field) says. A row that does not
        fit raises :class:`RowTypeError` naming the page, the row and the column, and stays
        undelivered.
        """
        structure = _decode.RowStructurer(as_type, rename) if as_type is not None else None
        try:
            async with _PageSource(self) as source:
                while (page := await source.hold()) is not None:
                    rows, first = page.rows, self._offset
                    while self._offset < len(rows):
                        index = self._offset
                        row: Any = rows[index]
                        if structure is not None:
                            row = structure(row, page.page_number, index)
                        # Counted before the yield: a consumer that breaks here has the row.
                        self._offset += 1
                        yield row
                    self._held, self._offset = None, 0
                    await self._record(len(rows) - first)
                    del page, rows  # before the next page is decoded (see _PageSource)
        except HaloError as exc:
            await self._record_failure(exc)
            raise
        await self._record(0, done=True)

    async def _record(self, rows: int, *, done: bool = False) -> None:
        """With a ledger: the consumer took a page's rows (it asked for what follows)."""
        if self._recorder is not None:
            await self._recorder.delivered(self, rows, done=done)

    async def _record_failure(self, error: HaloError) -> None:
        if self._recorder is not None:
            await self._recorder.failed(error)

    async def fetch_all(self) -> list[dict[str, Any]]:
        """Every remaining row, as a list (mind the memory on large results)."""

        async def collect() -> list[dict[str, Any]]:
            collected: list[dict[str, Any]] = []
            async for page in self.pages():
                collected.extend(page.rows)
            return collected

        return await self._recorded_at_return(collect, len)

    async def _recorded_at_return(
        self, collect: Callable[[], Awaitable[T]], rows_in: Callable[[T], int]
    ) -> T:
        """``collect()``'s result, recorded by a ledger as taken once it is returned (not
        page by page: the caller has none of the rows until then)."""
        recorder, self._recorder = self._recorder, None
        try:
            result = await collect()
        except HaloError as exc:
            if recorder is not None:
                await recorder.failed(exc)
            raise
        finally:
            self._recorder = recorder
        await self._record(rows_in(result), done=True)
        return result

    @contextlib.contextmanager
    def _traced(self) -> Iterator[None]:
        """The span of one run (a wait, pages or rows), ended however the run ends."""
        opened = self._begin_run()
        error: BaseException | None = None
        try:
            yield
        except BaseException as exc:
            error = exc
            raise
        finally:
            if opened:
                self._end_run(error)

    def _begin_run(self) -> bool:
        """Open the span of a run (a wait, pages or rows) where telemetry is on and no run
        is under way; True when this call opened it (and so must end it)."""
        if self._run is not None:
            return False
        otel = self._api._telemetry.instruments()
        if otel is None:
            return False
        self._run = otel.job_run(self.site_id, self.query_id)
        self._run_polls = self.status_polls
        return True

    def _end_run(self, error: BaseException | None) -> None:
        """End the run's span: at its last page, on an error (``error``), or when the
        consumer broke out or was cancelled (``GeneratorExit`` / ``CancelledError``)."""
        run, self._run = self._run, None
        assert run is not None
        polls = self.status_polls - self._run_polls
        self._timed = run.end(self._query, polls, error, timed=self._timed)

    def _as_parent(self) -> contextlib.AbstractContextManager[None]:
        """The run's span as the parent of a request sent (or a task created) under it."""
        return _NO_SPAN if self._run is None else self._run.current()

    def _incomplete(self, message: str, page_number: int | None) -> IncompleteResultError:
        return IncompleteResultError(
            f"query {self.query_id} on site {self.site_id}: {message}",
            site_id=self.site_id,
            query_id=self.query_id,
            page_number=page_number,
        )

    def _check_page(self, page: models.ResultPage, query: models.AsyncQuery) -> None:
        """The page holds the rows the server counts for it (the listing's count, which
        REFERENCE §11 #5 says to trust, else the page's ``Rows-Count``)."""
        counted = None
        for listed in query.pages:  # (a loop, not a generator: one page, the usual)
            if listed.page_number == page.page_number:
                counted = listed.rows.count if listed.rows is not None else None
                break
        expected = counted if counted is not None else page.rows_count
        if expected is not None and expected != len(page.rows):
            raise self._incomplete(
                f"page {page.page_number} holds {len(page.rows)} rows where the server counts "
                f"{expected}",
                page.page_number,
            )

    def _check_complete(self, query: models.AsyncQuery) -> None:
        """After the last page: no listed page was skipped, and the pages' counts make the
        result's total."""
        pages = query.pages
        last, counted, counts = 0, 0, 0  # (loops, not generators: one page, the usual)
        for page in pages:
            last = page.page_number if page.page_number > last else last
            if page.rows is not None and page.rows.count is not None:
                counted, counts = counted + 1, counts + page.rows.count
        if pages and self._next_page <= last:
            numbers = sorted(page.page_number for page in pages)
            raise self._incomplete(
                f"page {self._next_page} is missing from the listed pages {numbers}",
                self._next_page,
            )
        total = query.result.rows if query.result is not None else None
        if total is not None and counted == len(pages) and counts != total:
            raise self._incomplete(
                f"its pages hold {counts} rows where the result counts {total}", None
            )

    # -- Arrow and data frames (the arrow, polars and pandas extras) ------------------------

    async def arrow_batches(
        self, *, types: Mapping[str, Any] | None = None
    ) -> AsyncGenerator[pa.RecordBatch, None]:
        """Yield one ``pyarrow.RecordBatch`` per result page, as pages land.

        Column types are inferred from the values (ISO date strings become dates and
        timestamps) unless ``types`` (column -> pyarrow type) declares them; a column may
        widen from page to page where no value changes (NULL -> any, int -> float or
        decimal, date -> timestamp), so a later batch's schema may be wider than an
        earlier one's. Pages that disagree otherwise raise :class:`ColumnTypeError`, and
        that page stays undelivered. Like ``rows()``, a batch counts as delivered once
        yielded: the next call carries on after it.
        """
        from halo_async import _arrow

        builder = _arrow.BatchBuilder(types)
        try:
            async with _PageSource(self) as source:
                while (page := await source.hold()) is not None:
                    rows = page.rows[self._offset :] if self._offset else page.rows
                    batch = builder.batch(rows, page.page_number)
                    self._held, self._offset = None, 0
                    yield batch
                    await self._record(len(rows))
                    del page, rows, batch  # before the next page is decoded (see _PageSource)
        except HaloError as exc:
            await self._record_failure(exc)
            raise
        await self._record(0, done=True)

    async def to_arrow(self, *, types: Mapping[str, Any] | None = None) -> pa.Table:
        """Every remaining row as one ``pyarrow.Table`` (see :meth:`arrow_batches`)."""
        from halo_async import _arrow

        async def collect() -> list[pa.RecordBatch]:
            return [batch async for batch in self.arrow_batches(types=types)]

        batches = await self._recorded_at_return(
            collect, lambda taken: sum(batch.num_rows for batch in taken)
        )
        return _arrow.table_of(batches)

    async def to_polars(self, *, types: Mapping[str, Any] | None = None) -> Any:
        """Every remaining row as a ``polars.DataFrame`` (the polars extra)."""
        from halo_async import _arrow

        polars = _arrow.require("polars", "QueryJob.to_polars")
        return polars.from_arrow(await self.to_arrow(types=types))

    async def to_pandas(self, *, types: Mapping[str, Any] | None = None) -> Any:
        """Every remaining row as a ``pandas.DataFrame`` (the pandas extra)."""
        from halo_async import _arrow

        _arrow.require("pandas", "QueryJob.to_pandas")
        return (await self.to_arrow(types=types)).to_pandas()


_NO_SPAN = contextlib.nullcontext()
_EMPTY_WINDOW: Mapping[int, Any] = {}  # read only: a page source's window before its first
_NOTHING_AHEAD: list[int] = []  # read only: no page to prefetch
_NO_PAGES: frozenset[int] = frozenset()


def _rows_from(page: models.ResultPage, offset: int) -> models.ResultPage:
    """The page without its first ``offset`` rows (already delivered)."""
    return attrs.evolve(page, rows=page.rows[offset:])


async def _cancel_all(tasks: Mapping[int, asyncio.Future[Any]]) -> None:
    for task in tasks.values():
        task.cancel()
    if tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks.values(), return_exceptions=True)


def _numbers(pages: tuple[models.Page, ...]) -> set[int]:
    """The pages' numbers (a loop, not a comprehension: no function object per status)."""
    numbers = set()
    for page in pages:
        numbers.add(page.page_number)
    return numbers


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _is_terminal(query: models.AsyncQuery) -> bool:
    return query.is_terminal


def _is_successful(query: models.AsyncQuery) -> bool:
    return query.is_successful


class _Poller:
    """The status polling of one run of a job: each :meth:`next` is the next status with
    more (or fewer) fetchable pages than the one it returned before, or None once ``until``
    held for the last status seen; a failed query or the poll deadline raises. (Its callers
    want pages, or the end: a status that only moved on, "queued" to "executing", is
    reported to the fan-out's runner, not returned, which saves each query a round trip
    through two coroutines.)

    A status that made no progress (no new status, no more fetchable pages) lengthens the
    next wait; progress resets it. A job that knows its status (it was just created, or
    polled before) waits one interval before asking again: a query answered "initialising"
    a moment ago has not finished since.

    State on an object, not in an async generator: a fan-out keeps a thousand jobs
    suspended at once, and every generator layer (with its ``asend`` and ``aclosing``
    objects) is more to allocate and for the garbage collector to walk, each time.
    """

    __slots__ = (
        "_deadline", "_interval", "_job", "_last", "_returned_pages", "_seen_pages",
        "_seen_status", "_started", "_until", "fetchable",
    )  # fmt: skip

    def __init__(self, job: QueryJob, until: Callable[[models.AsyncQuery], bool]) -> None:
        policy = job.poll
        self._job = job
        self._until: Callable[[models.AsyncQuery], bool] | None = until
        self._started = policy.now()
        self._deadline = policy.deadline_for(
            job._query.max_time_in_queue if job._query is not None else None
        )
        job._poll_ends_at = self._started + self._deadline
        self._interval = policy.initial_interval
        # The progress of the last status seen: its status and fetchable pages.
        self._seen_status: models.QueryStatus | str | None = None
        self._seen_pages = -1
        self._last: models.AsyncQuery | None = None  # the last status seen
        self.fetchable: tuple[models.Page, ...] = ()  # the last status's, that next() returned
        self._returned_pages = 0  # how many, len(self.fetchable)

    def finished(self) -> bool:
        """Whether :meth:`next` would return None at once (asked here first, with no
        coroutine for it: after a job's last page, the usual case)."""
        if self._until is not None and self._last is not None and self._until(self._last):
            self.close()
        return self._until is None

    def close(self) -> None:
        """Polling is over (ended, failed, or its consumer stopped)."""
        if self._until is not None:
            self._until = None
            self._job._poll_ends_at = None

    async def next(self) -> models.AsyncQuery | None:
        """The next status with a new count of fetchable pages; None once polling is over."""
        until = self._until
        if until is None:
            return None
        job, policy = self._job, self._job.poll
        try:
            last = self._last
            known = last is None  # the status the job has (or fetches now) is the first
            if last is not None:
                query = last
            else:
                query = job._query if job._query is not None else await job.refresh()
            while True:
                if not known:  # the status one interval on (or at once, if woken)
                    if until(query):
                        self.close()
                        return None
                    self._check_deadline(query)
                    interval, runner = self._interval, job._runner
                    if job._wake_pending or runner is None or not runner.coalesces:
                        query = await job._poll_itself(interval)
                    else:
                        # The poll's own await, here rather than in a method of its own: a
                        # thousand jobs waiting on their status each hold a frame fewer. A
                        # shared source schedules the ask itself, anywhere in the jitter
                        # window, to answer it with other jobs' asks (notify() hurries it).
                        earliest = interval / 2 if policy.jitter else interval
                        job.status_polls += 1
                        query = job._query = await runner.status(job, earliest, interval)
                        job._wake_pending = False
                known = False
                if query.is_failed:
                    raise error_for_query(query)
                fetchable = query.fetchable_pages
                if query.status != self._seen_status or len(fetchable) != self._seen_pages:
                    self._seen_status, self._seen_pages = query.status, len(fetchable)
                    self._last = query
                    self._interval = policy.initial_interval
                    if job._runner is not None:
                        job._runner.status_changed(job, query)
                    if len(fetchable) != self._returned_pages:
                        self.fetchable, self._returned_pages = fetchable, len(fetchable)
                        return query
                    continue  # progress, but no page more: not the caller's news
                self._interval = policy.next_interval(self._interval)
        except BaseException:
            self.close()
            raise

    def _check_deadline(self, query: models.AsyncQuery) -> None:
        job = self._job
        if job.poll.now() - self._started > self._deadline:
            raise PollTimeoutError(
                f"query {job.query_id} on site {job.site_id} still {query.status} "
                f"after {self._deadline:.0f} s; resume it later with its checkpoint",
                site_id=job.site_id,
                query_id=job.query_id,
            )


class _PageSource:
    """A job's pages from its ``_next_page`` on, in order, each as soon as it can be
    fetched: what ``pages()``, ``rows()`` and ``arrow_batches()`` take their pages from,
    entered once per call of theirs. Closing it stops the polling, cancels the prefetches
    and ends the run's span.

    ``prefetch`` answers are fetched ahead; each is decoded only when its page is next,
    after the consumer has let go of the page before (hence the ``del`` after each yield in
    the callers): the new rows then reuse the memory the old ones just freed, still in the
    CPU's caches, which made ``job.rows()`` ~20 % cheaper (``benchmarks/decode.py``), and
    the window holds bodies, not rows four times their size. A page with nothing to fetch
    beside it is fetched without a task of its own.
    """

    __slots__ = ("_failed", "_fetchable", "_job", "_opened", "_poller", "_query", "_window")

    def __init__(self, job: QueryJob) -> None:
        self._job = job
        # The pages fetched ahead, by number (made by the first prefetch).
        self._window: dict[int, asyncio.Future[Response]] | None = None
        self._poller: _Poller | None = None
        self._query: models.AsyncQuery | None = None  # the status whose pages are fetched
        self._fetchable: Set[int] = _NO_PAGES
        self._failed: BaseException | None = None  # what next() raised, for the span
        self._opened = not job._delivered and job._begin_run()

    def _ahead(self, number: int) -> list[int]:
        """The pages to prefetch beside page ``number``: fetchable, in the window, and not
        fetched yet. (Page ``number`` is fetchable: a status that lists one page has none.)"""
        fetchable, window = self._fetchable, self._window or _EMPTY_WINDOW
        if len(fetchable) <= 1:
            return _NOTHING_AHEAD
        stop = number + self._job.prefetch
        return [n for n in range(number + 1, stop) if n in fetchable and n not in window]

    async def __aenter__(self) -> _PageSource:
        return self

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        await self.aclose(exc)

    async def aclose(self, exc: BaseException | None) -> None:
        """Stop polling, cancel the prefetches, end the run's span; ``exc`` is what ended
        the caller's use of the source, if anything did."""
        try:
            if self._window:
                await _cancel_all(self._window)
        finally:
            self.close(exc)

    @property
    def prefetching(self) -> bool:
        """Whether pages are being fetched ahead (closing then awaits their cancelling)."""
        return bool(self._window)

    def close(self, exc: BaseException | None) -> None:
        """:meth:`aclose` for a source with nothing :attr:`prefetching`."""
        if self._poller is not None:
            self._poller.close()
        if self._opened:
            self._opened = False
            # An error of the caller's own (a row that does not fit, a break) leaves the
            # query as it was: the run was abandoned, not failed.
            abandoned = GeneratorExit() if exc is not None else None
            self._job._end_run(self._failed if self._failed is not None else abandoned)

    def take(self) -> Awaitable[models.ResultPage | None]:
        """The next page to deliver whole, taken: the held page's rows not yet delivered
        (delivery began in ``rows()``), else the next page's from the job's offset; None at
        the end. The job's delivery state moves past the page before it is returned."""
        job = self._job
        if job._held is None and not job._offset:
            # Nothing held, nothing of the next page delivered: that page whole, as next()
            # gives it, with no coroutine of this method's (a frame fewer for each of a
            # fan-out's thousand sites waiting on a status or a page).
            return self.next()
        return self._take_rest()

    async def _take_rest(self) -> models.ResultPage | None:
        job = self._job
        page = job._held if job._held is not None else await self.next()
        if page is None:
            return None
        if job._offset:
            page = _rows_from(page, job._offset)
        job._held, job._offset = None, 0
        return page

    async def hold(self) -> models.ResultPage | None:
        """The page held (delivery began), else the next one, now held; None at the end.
        The caller moves the job's offset along and lets go of the page when it is done."""
        job = self._job
        if job._held is None:
            page = await self.next()
            if page is None:
                return None
            job._held = page
        return job._held

    async def next(self) -> models.ResultPage | None:
        """The next page; None after the last one.

        The page is fetched and decoded here, not in a coroutine of its own: a frame fewer
        for each of a fan-out's thousand sites waiting on a page."""
        job = self._job
        if job._delivered:
            return None
        try:
            while job._next_page not in self._fetchable:
                if self._poller is None:
                    self._poller = _Poller(job, _is_successful)
                poller = self._poller
                query = None if poller.finished() else await poller.next()
                if query is None:
                    assert job._query is not None
                    job._check_complete(job._query)
                    self._fetchable = _NO_PAGES
                    return None
                self._query = query
                self._fetchable = _numbers(self._poller.fetchable)
            number = job._next_page
            if job._run is None:
                response = await self._answer(number)
            else:
                with job._run.current():  # the request's parent span
                    response = await self._answer(number)
            fetched = FetchedPage(job.site_id, job.query_id, number, response)
            if _decode.decodes_off_loop(response.body):
                page = await job._api._decode_result_page(fetched)
            else:  # small: decoded here, with no coroutine for it (see decode_result_body)
                page = job._api._page_of(fetched)
            return self._fetched(page, len(response.body))
        except BaseException as exc:
            self._failed = exc
            raise

    def _answer(self, number: int) -> Awaitable[Response]:
        """Page ``number``'s answer: requested here when there is nothing to fetch beside
        it (no task for it), else by its prefetch task, started now with those ahead."""
        job, api = self._job, self._job._api
        ahead = self._ahead(number)
        if not ahead and (self._window is None or number not in self._window):
            return api._result_page_answer(job.site_id, job.query_id, number)
        with job._as_parent():  # the prefetches' tasks start under the run's span
            tasks = self._window if self._window is not None else {}
            self._window = tasks
            for n in (number, *ahead):
                if n not in tasks:
                    answer = api._result_page_answer(job.site_id, job.query_id, n)
                    tasks[n] = asyncio.ensure_future(answer)
        return tasks[number]

    def _fetched(self, page: models.ResultPage, size: int) -> models.ResultPage:
        """The page just decoded, checked and counted; its answer let go (see above)."""
        job = self._job
        if self._window is not None:
            self._window.pop(page.page_number, None)
        if job._run is not None:
            job._run.page(len(page.rows), size)
        assert self._query is not None
        job._check_page(page, self._query)
        job._next_page += 1
        return page
