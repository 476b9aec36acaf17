"""Fan-out: one query across many sites, results as each site completes.

Limits (one :class:`FanOutLimits`): ``max_in_flight`` queries at once across the fan-out,
``per_site`` at once on one site (Halo Link runs one query at a time per site), and the
client's connection limit on HTTP requests in flight. One site's failure, timeout or
expiry becomes that site's :class:`SiteOutcome`; it never cancels the others. Status
checks of the queries in flight on one site are coalesced into the batch status endpoint.
:meth:`HaloClient.fan_out <halo_async.HaloClient.fan_out>` is the way in.

With a :class:`~halo_async.ledger.Ledger` and a run id, each entry's query id and delivery
are recorded as they happen, so that a restart with the same run id resumes every query
where delivery stood instead of creating it again (see :mod:`halo_async.ledger`).

Exactly once: every row an ``ok`` outcome counts was yielded before it (in ``rows``, or as
:class:`SitePage` items), in order, once. A deadline stops the queries still running, but
what was already fetched and queued is still delivered, and each site stopped short gets
a :class:`~halo_async.errors.FanOutDeadlineError` with a checkpoint at its first row not
delivered.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeAlias, TypeVar

import attrs

from halo_async import _constants as C
from halo_async import models
from halo_async._api import QueryApi
from halo_async._convert import slot_filler
from halo_async._retry import PollPolicy
from halo_async.errors import FanOutDeadlineError, NotFoundError, ValidationError
from halo_async.jobs import QueryJob, _PageSource
from halo_async.ledger import (
    FINAL_ERRORS,
    EntryKey,
    EntryState,
    Ledger,
    LedgerEntry,
    check_entry,
    check_open,
    create_recorded,
    describe,
    in_progress_error,
    unknown_error,
)
from halo_async.webhooks import JobRegistry

__all__ = [
    "FanOutDeadlineError",
    "FanOutEvent",
    "FanOutEventKind",
    "FanOutLimits",
    "FanOutProgress",
    "SiteFailure",
    "SiteOutcome",
    "SitePage",
    "SiteSuccess",
]


def _at_least_one(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(
            f"FanOutLimits.{attribute.name} must be an integer >= 1, got {value!r}",
            field=attribute.name,
            value=value,
        )


@attrs.frozen
class FanOutLimits:
    """How much of a fan-out runs at once.

    ``max_in_flight`` queries across the whole fan-out; ``per_site`` on any one site (Halo
    Link runs one query at a time per site: more only queue there); ``prefetch`` result
    pages fetched ahead per query; ``buffered_pages`` streamed pages fetched but not yet
    taken by the consumer (a slow consumer holds the queries back instead of buffering
    their rows). Memory in streaming mode is about ``max_in_flight * (prefetch + 1) +
    buffered_pages`` pages. The client's ``connection_limit`` bounds the HTTP requests in
    flight on top of these.
    """

    max_in_flight: int = attrs.field(default=C.FANOUT_MAX_IN_FLIGHT, validator=_at_least_one)
    per_site: int = attrs.field(default=C.FANOUT_PER_SITE, validator=_at_least_one)
    prefetch: int = attrs.field(default=C.FANOUT_PAGE_PREFETCH, validator=_at_least_one)
    buffered_pages: int = attrs.field(default=C.FANOUT_BUFFERED_PAGES, validator=_at_least_one)


DEFAULT_FANOUT_LIMITS = FanOutLimits()


Rows = list[dict[str, Any]]
R = TypeVar("R", bound=Rows | None)


@attrs.frozen
class SiteSuccess(Generic[R]):
    """A site whose query succeeded and all of whose rows were delivered.

    ``rows`` holds the site's rows; in streaming mode they came as :class:`SitePage` items
    before this outcome, and ``rows`` is None (``SiteSuccess[None]``). ``row_count`` and
    ``page_count`` are what was delivered. ``waited`` is the time spent waiting for a free
    slot, ``elapsed`` the time from submission to the end; ``index`` the position of this
    run in the ``site_ids`` given to ``fan_out``.
    """

    site_id: str
    query_id: str
    rows: R
    row_count: int
    page_count: int
    waited: float
    elapsed: float
    index: int = 0
    error: None = None
    """None: a success has no error (so that ``outcome.error`` reads on any outcome)."""

    @property
    def ok(self) -> Literal[True]:
        """True: after ``if outcome.ok:`` a type checker knows ``rows`` and ``query_id``."""
        return True


_new_success = slot_filler(
    SiteSuccess,
    ("site_id", "query_id", "rows", "row_count", "page_count", "waited", "elapsed", "index",
     "error"),
)  # fmt: skip


@attrs.frozen
class SiteFailure:
    """A site whose query failed, timed out or could not be delivered in full.

    ``error`` is its typed error (a :class:`~halo_async.errors.HaloError`, e.g.
    :class:`~halo_async.errors.FanOutDeadlineError` with a checkpoint). ``query_id`` is None
    when the query was never created. ``row_count`` and ``page_count`` count the rows
    delivered as :class:`SitePage` items before this outcome (streaming mode; 0 otherwise).
    """

    site_id: str
    query_id: str | None
    error: BaseException
    row_count: int
    page_count: int
    waited: float
    elapsed: float
    index: int = 0
    rows: None = None
    """None: a failure's rows, if any were delivered, came as SitePage items."""

    @property
    def ok(self) -> Literal[False]:
        """False: after ``if not outcome.ok:`` a type checker knows ``error``."""
        return False


if TYPE_CHECKING:
    SiteOutcome: TypeAlias = SiteSuccess[Any] | SiteFailure
else:  # unsubscripted, so that isinstance(item, SiteOutcome) works
    SiteOutcome = SiteSuccess | SiteFailure
"""How one site's query ended: a :class:`SiteSuccess` or a :class:`SiteFailure` (usable in
``isinstance`` and in annotations; ``outcome.ok`` tells them apart, for type checkers too)."""


@attrs.frozen
class SitePage:
    """In streaming mode: one page of one site's rows, as it landed."""

    site_id: str
    query_id: str
    page_number: int
    rows: list[dict[str, Any]]
    index: int = 0
    first_row: int = 0
    """The offset of ``rows[0]`` within its page: 0, but for the rest of a page that an
    earlier run (of the same ledger run id) had begun to deliver. ``(site_id, page_number,
    first_row + i)`` names a row across runs."""


class FanOutEventKind(enum.StrEnum):
    """What happened: a query was submitted, changed status, fetched a page, or ended."""

    SUBMITTED = "submitted"
    RESUMED = "resumed"
    """A query an earlier run created (recorded in the ledger) is carried on, not created."""
    STATUS = "status"
    PAGE_FETCHED = "page_fetched"
    COMPLETED = "completed"
    FAILED = "failed"


@attrs.frozen
class FanOutProgress:
    """Counts across the whole fan-out at the moment of an event."""

    total: int
    submitted: int = 0
    resumed: int = 0
    completed: int = 0
    failed: int = 0
    pages: int = 0
    rows: int = 0

    @property
    def done(self) -> int:
        """Sites finished, successfully or not."""
        return self.completed + self.failed


@attrs.frozen
class FanOutEvent:
    """A progress event: its ``kind``, the site, and the counts so far.

    ``status`` is the query's new status for STATUS events (queued, executing, uploading...).
    """

    kind: FanOutEventKind
    site_id: str
    progress: FanOutProgress
    query_id: str | None = None
    status: str | None = None
    page_number: int | None = None


@attrs.define
class _Tally:
    """The fan-out's counts as it goes; a :class:`FanOutProgress` is made of them only for
    an event."""

    submitted: int = 0
    resumed: int = 0
    completed: int = 0
    failed: int = 0
    pages: int = 0
    rows: int = 0

    def progress(self, total: int) -> FanOutProgress:
        return FanOutProgress(
            total, self.submitted, self.resumed, self.completed, self.failed, self.pages, self.rows
        )


@attrs.define(eq=False)
class _Run:
    """One entry of ``site_ids``: its job, what it fetched, and what was delivered of it."""

    index: int
    site_id: str
    queued_at: float = 0.0
    started: float | None = None
    job: QueryJob | None = None
    rows: list[dict[str, Any]] | None = None
    """The rows fetched, unless streamed: made by the first page (no list per entry ahead)."""
    fetched_rows: int = 0
    fetched_pages: int = 0
    delivered_rows: int = 0
    delivered_pages: int = 0
    next_page: int = 1
    """The page after the last one delivered as a SitePage."""
    ended: bool = False
    key: EntryKey | None = None
    entry: LedgerEntry | None = None
    """What the ledger holds of this entry (with a ledger)."""


class _FanOut:
    """One fan-out: runs each entry's query, builds its outcome, reports the unfinished.

    It is also the runner of its jobs (:class:`~halo_async.jobs._Runner`): their status
    asks go to the site's batcher, and their status changes become events.
    """

    def __init__(
        self,
        api: QueryApi,
        body: dict[str, Any],
        site_ids: Sequence[str],
        *,
        limits: FanOutLimits,
        deadline: float | None,
        poll: PollPolicy | None,
        stream: bool,
        coalesce_status: bool,
        on_event: Callable[[FanOutEvent], None] | None,
        jobs: JobRegistry | None,
        ledger: tuple[Ledger, str] | None = None,
    ) -> None:
        self._api = api
        self._body = body
        self._limits = limits
        self._deadline = deadline
        # One policy for every job (its own would seed a random generator per job).
        self._poll = poll if poll is not None else PollPolicy()
        self._stream = stream
        self._on_event = on_event
        self._jobs = jobs
        self._ledger = _RunLedger(*ledger, body) if ledger is not None else None
        # With one query at a time per site there is nothing to coalesce a site's status
        # asks with: each job then polls for itself, without a batcher's task and timers.
        self.coalesces = coalesce_status and limits.per_site > 1
        self._runs = [_Run(index, site) for index, site in enumerate(site_ids)]
        # Plain counters, made into a FanOutProgress only for an event (a fan-out without
        # on_event pays nothing for them beyond the additions).
        self._tally = _Tally()
        self._outbox = _Outbox()
        # The queue's pages are bounded: a slow consumer holds the producers back instead
        # of buffering rows. (Outcomes are small and one per entry.)
        self._page_room = asyncio.Semaphore(limits.buffered_pages)
        # Set while the consumer waits for an item. A query is created only then: a
        # consumer that broke out of the loop but still holds the generator (so it was
        # not closed) must not go on paying for queries nobody will read.
        self._asked = asyncio.Event()
        # A limit that no count of entries can reach holds nothing back: no semaphore (and
        # no acquire and release per query) for it.
        self._global_slots = _slots(limits.max_in_flight, len(site_ids))
        per_site = collections.Counter(site_ids)
        self._site_slots = {
            site: slots
            for site, count in per_site.items()
            if (slots := _slots(limits.per_site, count)) is not None
        }
        self._batchers: dict[str, _StatusBatcher] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # the producers still running
        self._expired = False

    # -- the consumer's side -------------------------------------------------------------

    async def results(self) -> AsyncGenerator[SiteOutcome | SitePage, None]:
        """Every SitePage and SiteOutcome, in the order they were queued."""
        loop = asyncio.get_running_loop()
        if self._ledger is not None:
            await self._ledger.load(self._runs)  # before anything is sent: it may refuse
            self._count_finished()
        pending = [run for run in self._runs if not run.ended]
        for run in pending:
            run.queued_at = time.perf_counter()
        discard = self._tasks.discard  # one bound method for every task, not one each
        for run in pending:
            # An entry with no limit to wait for runs as _start itself: one frame fewer.
            if self._global_slots is None and run.site_id not in self._site_slots:
                task = asyncio.ensure_future(self._start(run))
            else:
                task = asyncio.ensure_future(self._run_site(run))
            self._tasks.add(task)
            task.add_done_callback(discard)
        timer = None if self._deadline is None else loop.call_later(self._deadline, self._expire)
        ends_at = None if self._deadline is None else loop.time() + self._deadline
        try:
            left = len(pending)
            while left and (item := await self._next_item(ends_at)) is not None:
                run = self._runs[item.index]
                if isinstance(item, SiteOutcome):
                    left -= 1
                    run.ended = True
                else:
                    run.delivered_rows += len(item.rows)
                    run.delivered_pages += 1
                    run.next_page = item.page_number + 1
                yield item
                if self._ledger is not None:
                    # The consumer asked for the next item: it has this one.
                    await self._ledger.delivered(run, item)
                if run.ended:
                    # Let the site's job and its last status go now, not with the fan-out:
                    # a thousand finished jobs kept to the end are a thousand for the
                    # garbage collector to walk on every pass meanwhile.
                    run.job = None
            for run in self._runs:
                if not run.ended:
                    yield self._deadline_outcome(run)
        finally:
            if timer is not None:
                timer.cancel()
            if self._ledger is not None:
                self._ledger.stopping = True
            # (Producers that ended may still be listed: their done callbacks run only
            # once the consumer waits, and one that takes queued items never does.)
            await _cancel([task for task in self._tasks if not task.done()])
            if self._ledger is not None:
                await self._ledger.settle()
            for batcher in self._batchers.values():
                await batcher.close()

    async def _next_item(self, ends_at: float | None) -> SiteOutcome | SitePage | None:
        """The next queued item; None once the deadline passed and nothing is left queued.

        What was queued before the deadline is delivered after it too: those rows were
        fetched, and a site's outcome comes only after its pages.
        """
        self._asked.set()  # wakes every producer waiting to create its query
        try:
            if not self._outbox.empty():
                return self._taken(self._outbox.take())
            if self._expired:
                return None
            if ends_at is None:
                return self._taken(await self._outbox.get())
            try:
                async with asyncio.timeout_at(ends_at):
                    return self._taken(await self._outbox.get())
            except TimeoutError:
                self._expire()
                return self._taken(self._outbox.take()) if not self._outbox.empty() else None
        finally:
            self._asked.clear()

    def _count_finished(self) -> None:
        """Sites an earlier run of the ledger's run id finished count as done (they are not
        yielded again): the progress still ends at its total."""
        for run in self._runs:
            if run.ended and run.entry is not None:
                succeeded = run.entry.state is EntryState.SUCCEEDED
                if succeeded:
                    self._tally.completed += 1
                else:
                    self._tally.failed += 1

    def _taken(self, item: SiteOutcome | SitePage) -> SiteOutcome | SitePage:
        if isinstance(item, SitePage):
            self._page_room.release()
        return item

    def _expire(self) -> None:
        """The deadline: stop every query still running (their queued items stay)."""
        self._expired = True
        for task in self._tasks:
            task.cancel()

    def _deadline_outcome(self, run: _Run) -> SiteOutcome:
        self._tally.failed += 1
        job = run.job
        checkpoint = (
            models.Checkpoint(job.site_id, job.query_id, run.next_page) if job is not None else None
        )
        error = FanOutDeadlineError(
            f"site {run.site_id}: the fan-out deadline of {self._deadline} s passed first "
            f"({run.delivered_rows} rows delivered"
            + (f"; resume from {checkpoint}" if checkpoint is not None else "; never started")
            + ")",
            site_id=run.site_id,
            query_id=job.query_id if job is not None else None,
            checkpoint=checkpoint,
        )
        self._emit(FanOutEventKind.FAILED, run.site_id, query_id=error.query_id)
        return self._outcome_of(
            run, error, rows=None, row_count=run.delivered_rows, page_count=run.delivered_pages
        )

    # -- the producers' side -------------------------------------------------------------

    async def _run_site(self, run: _Run) -> None:
        """The producer of an entry with a limit to wait for (see :meth:`_start`)."""
        # The site's slot first: an entry waiting for its site (listed twice, say) must not
        # sit on a global slot that another site could use meanwhile.
        async with self._site_slots.get(run.site_id) or _FREE, self._global_slots or _FREE:
            await self._start(run)

    async def _start(self, run: _Run) -> None:
        """The producer of an entry (its task's coroutine where no limit applies): create
        (or resume) its query once the consumer asks, deliver it, queue its outcome.

        No ``with`` blocks (each makes objects of its own, for every entry of a fan-out):
        the budget's slot, the page source and a webhook registry's hold on the job are
        taken and let go of by hand, as ``async with`` would. No generator: the pages come
        from the job's page source, not its pages(). (Each is an object fewer for each of
        a thousand sites waiting on a status or a page, for the garbage collector.)"""
        error: Exception | None = None
        try:
            run.started = time.perf_counter()
            checkpoint = await self._resumable(run) if run.entry is not None else None
            if checkpoint is None and not self._asked.is_set():  # (wait() makes a coroutine)
                await self._asked.wait()
            # One of the key's slots for queries in flight (its budget's, if the client has
            # one, shared with other processes), from just before the create to the end.
            slot = self._api._query_slot(run.site_id)
            if slot is not None:
                await slot.__aenter__()
            source: _PageSource | None = None
            try:
                if checkpoint is None and self._ledger is None:
                    # _job_for's usual case inline: two frames fewer while creates queue.
                    answer = await self._api._create_answer(run.site_id, self._body)
                    job = run.job = self._created(run, self._api._created(answer))
                else:
                    job = run.job = await self._job_for(run, checkpoint)
                if self._jobs is not None:
                    self._jobs.register(job)
                source = _PageSource(job)
                # The first page's rows delivered before (resumed mid-way): the job's offset.
                query_id, first_row = job.query_id, job._offset
                while (page := await source.take()) is not None:
                    self._count_page(run, query_id, page)
                    if self._stream:
                        await self._page_room.acquire()
                        self._put(_site_page(run, query_id, page, first_row))
                        first_row = 0
                    else:
                        _keep_rows(run, page)
                    del page  # before the next page is decoded (see _PageSource)
            except BaseException as exc:
                await self._let_go(run, source, slot, exc)
                raise
            if slot is not None or source.prefetching:
                await self._let_go(run, source, slot, None)
            else:  # nothing to await: no coroutine for it
                source.close(None)
                if self._jobs is not None:
                    self._jobs.unregister(job)
        except Exception as exc:
            error = exc
        self._put(self._ended(run, error))

    def _ended(self, run: _Run, error: Exception | None) -> SiteOutcome:
        """The entry's outcome, counted (and reported, with a listener)."""
        if error is not None:
            self._tally.failed += 1
            if self._on_event is not None:
                self._emit(FanOutEventKind.FAILED, run.site_id, query_id=_query_id(run))
            return self._outcome(run, error, rows=None)
        self._tally.completed += 1
        if self._on_event is not None:
            self._emit(FanOutEventKind.COMPLETED, run.site_id, query_id=_query_id(run))
        rows = None if self._stream else run.rows if run.rows is not None else []
        return self._outcome(run, None, rows=rows)

    async def _let_go(
        self,
        run: _Run,
        source: _PageSource | None,
        slot: contextlib.AbstractAsyncContextManager[None] | None,
        exc: BaseException | None,
    ) -> None:
        """The end of _start's hold on its page source, the job, and the budget's slot."""
        try:
            if source is not None:
                await source.aclose(exc)
        finally:
            try:
                if self._jobs is not None and run.job is not None:
                    self._jobs.unregister(run.job)
            finally:
                if slot is not None:
                    tb = exc.__traceback__ if exc is not None else None
                    await slot.__aexit__(type(exc) if exc is not None else None, exc, tb)

    def _put(self, item: SiteOutcome | SitePage) -> None:
        self._outbox.put(item)
        # The waiting consumer has its item: no more queries until it asks again.
        self._asked.clear()

    def _count_page(self, run: _Run, query_id: str, page: models.ResultPage) -> None:
        run.fetched_pages += 1
        run.fetched_rows += len(page.rows)
        self._tally.pages += 1
        self._tally.rows += len(page.rows)
        if self._on_event is not None:
            self._emit(
                FanOutEventKind.PAGE_FETCHED,
                run.site_id,
                query_id=query_id,
                page_number=page.page_number,
            )

    async def _resumable(self, run: _Run) -> models.Checkpoint | None:
        """Where the ledger says an earlier run left the entry; None: it is to be created
        (once the consumer asks for an item)."""
        entry = run.entry
        if entry is None or self._ledger is None:
            return None
        checkpoint = await self._ledger.resumable(entry)
        if not self._stream:  # the outcome carries every row: all of them, from page 1
            checkpoint = attrs.evolve(checkpoint, next_page=1, next_row=0)
        return checkpoint

    async def _job_for(self, run: _Run, checkpoint: models.Checkpoint | None) -> QueryJob:
        """The entry's job: resumed from ``checkpoint``, else created."""
        if checkpoint is not None:
            self._tally.resumed += 1
            self._emit(FanOutEventKind.RESUMED, run.site_id, query_id=checkpoint.query_id)
            return self._job(checkpoint.site_id, checkpoint.query_id, None, checkpoint)
        if self._ledger is not None:
            query = await self._ledger.create(run, self._api, self._body)
        else:
            query = await self._api._create_async_query(run.site_id, self._body)
        return self._created(run, query)

    def _created(self, run: _Run, query: models.AsyncQuery) -> QueryJob:
        """The job of the query just created for ``run``."""
        self._tally.submitted += 1
        if self._on_event is not None:
            self._emit(FanOutEventKind.SUBMITTED, run.site_id, query_id=query.id)
        return self._job(query.site_id, query.id, query, None)

    def _job(
        self,
        site_id: str,
        query_id: str,
        query: models.AsyncQuery | None,
        checkpoint: models.Checkpoint | None,
    ) -> QueryJob:
        return QueryJob(
            self._api,
            site_id,
            query_id,
            query=query,
            poll=self._poll,
            prefetch=self._limits.prefetch,
            next_page=checkpoint.next_page if checkpoint is not None else 1,
            next_row=checkpoint.next_row if checkpoint is not None else 0,
            _runner=self,
        )

    def _outcome(self, run: _Run, error: BaseException | None, *, rows: Rows | None) -> SiteOutcome:
        """A producer's outcome. Its counts are what reaches the consumer with it or before
        it: in streaming mode every fetched page was queued ahead of it."""
        delivered = self._stream or rows is not None
        return self._outcome_of(
            run,
            error,
            rows=rows,
            row_count=run.fetched_rows if delivered else 0,
            page_count=run.fetched_pages if delivered else 0,
        )

    def _outcome_of(
        self,
        run: _Run,
        error: BaseException | None,
        *,
        rows: Rows | None,
        row_count: int,
        page_count: int,
    ) -> SiteOutcome:
        now = time.perf_counter()
        started = run.started if run.started is not None else now
        query_id = _query_id(run)
        waited, elapsed = started - run.queued_at, now - started
        if error is None:
            assert query_id is not None, "a site succeeded without its query"
            return _new_success(
                run.site_id, query_id, rows, row_count, page_count, waited, elapsed, run.index, None
            )
        return SiteFailure(
            run.site_id, query_id, error, row_count, page_count, waited, elapsed, run.index
        )

    # -- progress ------------------------------------------------------------------------

    def _emit(self, kind: FanOutEventKind, site_id: str, **fields: Any) -> None:
        if self._on_event is not None:
            progress = self._tally.progress(len(self._runs))
            self._on_event(FanOutEvent(kind, site_id, progress, **fields))

    # -- the jobs' runner ----------------------------------------------------------------

    def _batcher(self, site_id: str) -> _StatusBatcher:
        batcher = self._batchers.get(site_id)
        if batcher is None:
            batcher = self._batchers[site_id] = _StatusBatcher(self._api, site_id)
        return batcher

    def status(
        self, job: QueryJob, earliest: float, latest: float
    ) -> asyncio.Future[models.AsyncQuery]:
        return self._batcher(job.site_id).status(job.query_id, earliest, latest)

    def hurry(self, job: QueryJob) -> None:
        self._batcher(job.site_id).hurry(job.query_id)

    def status_changed(self, job: QueryJob, query: models.AsyncQuery) -> None:
        if self._on_event is not None:
            status = str(query.status)
            self._emit(FanOutEventKind.STATUS, job.site_id, query_id=job.query_id, status=status)


# -- the ledger ------------------------------------------------------------------------------


class _RunLedger:
    """A fan-out's use of its ledger: which entries to resume or skip, what to record."""

    def __init__(self, ledger: Ledger, run_id: str, body: dict[str, Any]) -> None:
        from halo_async.ledger import query_key

        self.ledger = ledger
        self.run_id = run_id
        self.query_key = query_key(body)
        self.stopping = False
        """Set when the fan-out closes: a create not yet sent is then not sent."""
        self._creating: set[asyncio.Task[models.AsyncQuery]] = set()

    async def load(self, runs: Sequence[_Run]) -> None:
        """Give each run its key and recorded entry; end the runs an earlier run finished.
        A run id recorded for another query is refused here, before anything is sent."""
        recorded = {entry.key: entry for entry in await self.ledger.entries(self.run_id)}
        occurrences: collections.Counter[str] = collections.Counter()
        for run in runs:
            run.key = EntryKey(self.run_id, run.site_id, occurrences[run.site_id])
            occurrences[run.site_id] += 1
            entry = recorded.get(run.key)
            if entry is not None:
                run.entry = check_entry(entry, self.query_key)
                run.ended = entry.state in (EntryState.SUCCEEDED, EntryState.FAILED)

    async def resumable(self, entry: LedgerEntry) -> models.Checkpoint:
        """Where to resume an entry an earlier run created; an entry whose create may or
        may not have happened raises, and is never re-sent."""
        if entry.state is EntryState.CREATING:
            # Read again: the entry loaded a while ago may have been created since.
            entry = await self.ledger.get(entry.key) or entry
        checkpoint = entry.checkpoint
        if entry.state is EntryState.CREATED and checkpoint is not None:
            return checkpoint
        if entry.state is EntryState.CREATING:  # the process died around the POST
            await self.ledger.record(entry, state=EntryState.UNKNOWN)
        raise unknown_error(entry)

    async def create(self, run: _Run, api: QueryApi, body: dict[str, Any]) -> models.AsyncQuery:
        """Create the run's query, recorded before (claimed) and after (its id). Once
        begun, a create runs to its recorded end even if the fan-out stops meanwhile (a
        consumer's break, the deadline): cut short, its outcome would be unknown."""
        check_open(api)
        task = asyncio.ensure_future(self._create(run, api, body))
        self._creating.add(task)
        task.add_done_callback(self._creating.discard)
        return await asyncio.shield(task)

    async def _create(self, run: _Run, api: QueryApi, body: dict[str, Any]) -> models.AsyncQuery:
        assert run.key is not None
        entry, mine = await self.ledger.claim(run.key, self.query_key)
        if not mine:  # claimed by another process since load(): not ours to send
            raise in_progress_error(entry)
        if self.stopping:  # the fan-out closed while the claim was written: send nothing
            await self.ledger.forget(run.key)
            raise asyncio.CancelledError
        query, run.entry = await create_recorded(self.ledger, entry, api, body)
        return query

    async def settle(self) -> None:
        """Wait for the creates begun to be answered and recorded."""
        if self._creating:
            await asyncio.gather(*self._creating, return_exceptions=True)

    async def delivered(self, run: _Run, item: SiteOutcome | SitePage) -> None:
        """Record what the consumer has taken of ``run``."""
        entry = run.entry
        if entry is None or entry.state is not EntryState.CREATED:
            return  # never created, or its create is unknown: nothing to carry on
        status = str(run.job.status) if run.job is not None and run.job.status else entry.status
        if isinstance(item, SitePage):
            run.entry = await self.ledger.record(
                entry,
                status=status,
                next_page=item.page_number + 1,
                next_row=0,
                rows_delivered=entry.rows_delivered + len(item.rows),
                pages_delivered=entry.pages_delivered + 1,
            )
        elif item.ok:
            job = run.job
            rows, pages = entry.rows_delivered, entry.pages_delivered
            if item.rows is not None:  # every row came with the outcome, from page 1
                rows, pages = item.row_count, item.page_count
            run.entry = await self.ledger.record(
                entry,
                state=EntryState.SUCCEEDED,
                status=status,
                next_page=job.checkpoint().next_page if job is not None else entry.next_page,
                next_row=0,
                rows_delivered=rows,
                pages_delivered=pages,
            )
        elif isinstance(item.error, FINAL_ERRORS):
            run.entry = await self.ledger.record(
                entry, state=EntryState.FAILED, status=status, error=describe(item.error)
            )


_FREE = contextlib.nullcontext()


def _slots(limit: int, entries: int) -> asyncio.Semaphore | None:
    """A semaphore of ``limit`` slots for ``entries`` entries; None where all fit."""
    return asyncio.Semaphore(limit) if entries > limit else None


def _site_page(run: _Run, query_id: str, page: models.ResultPage, first_row: int) -> SitePage:
    return SitePage(run.site_id, query_id, page.page_number, page.rows, run.index, first_row)


def _keep_rows(run: _Run, page: models.ResultPage) -> None:
    """The page's rows, kept for the entry's outcome (no stream)."""
    if run.rows is None:
        run.rows = page.rows  # the first page's own list: nothing else holds the page
    else:
        run.rows.extend(page.rows)


def _query_id(run: _Run) -> str | None:
    return run.job.query_id if run.job is not None else None


async def _cancel(tasks: Sequence[asyncio.Future[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# -- status coalescing ----------------------------------------------------------------------


@attrs.define(eq=False)
class _Ask:
    """A job's status ask: answer it with a batch sent between ``earliest`` and ``latest``."""

    query_id: str
    earliest: float
    latest: float
    future: asyncio.Future[models.AsyncQuery]


class _Outbox:
    """The items the producers queue for the consumer, in order: a deque, and the future
    the one consumer waits on while it is empty. (asyncio.Queue's own bookkeeping is for
    many getters and a bound; this one has a single getter and no bound, and each item
    costs it an append and a pop.)"""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: collections.deque[SiteOutcome | SitePage] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None

    def put(self, item: SiteOutcome | SitePage) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    def take(self) -> SiteOutcome | SitePage:
        """The first item (there is one: see ``empty``)."""
        return self._items.popleft()

    async def get(self) -> SiteOutcome | SitePage:
        """The first item, once there is one. (Cancelled, it takes nothing.)"""
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()


class _StatusBatcher:
    """Coalesces the status checks of one site's queries into batch status requests.

    A job does not ask for its status at one instant but within a window (its poll interval
    stands for "no sooner than half of it, no later than all of it"), so one batch request
    can answer every ask of the site that is due: the batcher sends when the earliest
    ``latest`` comes, and takes along every ask whose ``earliest`` has passed. Asks that
    come while a batch request is in flight go in the next one.
    """

    def __init__(self, api: QueryApi, site_id: str) -> None:
        self._api = api
        self._site_id = site_id
        self._asks: list[_Ask] = []
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # While the task sleeps towards the next send: when it will wake (loop time). An
        # ask due no sooner leaves it asleep (waking it would only send it back to sleep).
        self._wakes_at: float | None = None
        self.requests = 0

    def status(
        self, query_id: str, earliest: float = 0.0, latest: float = 0.0
    ) -> asyncio.Future[models.AsyncQuery]:
        """The query's status, fetched between ``earliest`` and ``latest`` seconds from now:
        a future to await."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        future: asyncio.Future[models.AsyncQuery] = loop.create_future()
        latest = now + (latest if latest > earliest else earliest)
        self._asks.append(_Ask(query_id, now + earliest, latest, future))
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        elif self._wakes_at is None or latest < self._wakes_at:
            self._arrived.set()
        return future

    def hurry(self, query_id: str) -> None:
        """Make ``query_id``'s pending asks due now (its job was woken by a webhook)."""
        now = asyncio.get_running_loop().time()
        for ask in self._asks:
            if ask.query_id == query_id:
                ask.earliest = ask.latest = now
        self._arrived.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._asks = [ask for ask in self._asks if not ask.future.done()]
            if not self._asks:
                return
            self._arrived.clear()
            send_at = min([ask.latest for ask in self._asks])
            delay = send_at - loop.time()
            if delay > 0:
                # Sleep until the first deadline, or until a more urgent ask (or a hurry).
                self._wakes_at = send_at
                try:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._arrived.wait()
                finally:
                    self._wakes_at = None
                continue
            # Let the asks made in this very tick join, then take every ask that is due.
            await asyncio.sleep(0)
            now = loop.time()
            due, waiting = [], []
            for ask in self._asks:
                if ask.earliest > now:
                    waiting.append(ask)
                elif not ask.future.done():
                    due.append(ask)
            self._asks = waiting
            if due:
                await self._answer(due)

    async def _answer(self, due: list[_Ask]) -> None:
        # (Each query once, in the order asked: a query asked for twice is sent once.)
        ids = list(dict.fromkeys([ask.query_id for ask in due]))
        try:
            self.requests += 1
            results = await self._api._get_query_statuses(self._site_id, ids)
        except asyncio.CancelledError:
            _settle(_by_query(due), cancel=True)
            raise
        except Exception as exc:
            _settle(_by_query(due), error=exc)
            return
        by_id = {result.query_id: result for result in results}
        missing: list[_Ask] = []
        for ask in due:
            result = by_id.get(ask.query_id)
            if result is not None and result.query is not None:
                if not ask.future.done():
                    ask.future.set_result(result.query)
            else:
                missing.append(ask)
        if missing:
            await self._answer_missing(_by_query(missing), by_id)

    async def _answer_missing(
        self,
        batch: dict[str, list[asyncio.Future[models.AsyncQuery]]],
        by_id: dict[str, models.QueryStatusResult],
    ) -> None:
        """The asks a batch answer had no query object for."""
        for query_id, futures in batch.items():
            result = by_id.get(query_id)
            try:
                # A batch answer without the query object (the spec's example has none):
                # ask for this one alone.
                if result is not None and result.status == models.BatchStatus.FOUND:
                    single = await self._api._get_query(self._site_id, query_id)
                    if isinstance(single, models.AsyncQuery):
                        _settle({query_id: futures}, value=single)
                        continue
                raise NotFoundError(
                    f"query {query_id} not found by the batch status endpoint",
                    status=404,
                    method="POST",
                    path=f"/integrator/sites/{self._site_id}/queries/status",
                )
            except asyncio.CancelledError:
                _settle({query_id: futures}, cancel=True)
                raise
            except Exception as exc:
                _settle({query_id: futures}, error=exc)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _by_query(asks: list[_Ask]) -> dict[str, list[asyncio.Future[models.AsyncQuery]]]:
    batch: dict[str, list[asyncio.Future[models.AsyncQuery]]] = {}
    for ask in asks:
        batch.setdefault(ask.query_id, []).append(ask.future)
    return batch


def _settle(
    batch: dict[str, list[asyncio.Future[models.AsyncQuery]]],
    *,
    value: models.AsyncQuery | None = None,
    error: BaseException | None = None,
    cancel: bool = False,
) -> None:
    for futures in batch.values():
        for future in futures:
            if future.done():
                continue
            if cancel:
                future.cancel()
            elif error is not None:
                future.set_exception(error)
            else:
                assert value is not None
                future.set_result(value)
