"""fan_out(): one query across many sites, results as each site completes.

Limits: ``max_in_flight`` queries at once across the fan-out, ``per_site`` at once on one
site (Halo Link runs one query at a time per site), and the client's connection limit on
HTTP requests in flight. One site's failure, timeout or expiry becomes that site's
:class:`SiteOutcome`; it never cancels the others. Status checks of the queries in flight
on one site are coalesced into the batch status endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections import defaultdict
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from halo_async import _constants as C
from halo_async import _validate, models
from halo_async.errors import HaloError, NotFoundError, ValidationError
from halo_async.jobs import PollPolicy, QueryJob
from halo_async.webhooks import JobRegistry

if TYPE_CHECKING:
    from halo_async.client import HaloClient

__all__ = [
    "FanOutDeadlineError",
    "FanOutEvent",
    "FanOutProgress",
    "SiteOutcome",
    "SitePage",
    "fan_out",
]


class FanOutDeadlineError(HaloError, TimeoutError):
    """The fan-out's overall deadline passed before this site finished."""


@attrs.frozen
class SiteOutcome:
    """How one site's query ended.

    ``rows`` holds the site's rows (None in streaming mode, where they came as
    :class:`SitePage` items, and on failure). ``error`` is the typed error of a failed site.
    ``waited`` is the time spent waiting for a free slot, ``elapsed`` the time from
    submission to the end.
    """

    site_id: str
    query_id: str | None
    rows: list[dict[str, Any]] | None
    error: BaseException | None
    row_count: int
    page_count: int
    waited: float
    elapsed: float
    index: int = 0
    """The position of this run in the ``site_ids`` given to ``fan_out``."""

    @property
    def ok(self) -> bool:
        """True when the site's query succeeded."""
        return self.error is None


@attrs.frozen
class SitePage:
    """In streaming mode: one page of one site's rows, as it landed."""

    site_id: str
    query_id: str
    page_number: int
    rows: list[dict[str, Any]]
    index: int = 0


class FanOutEventKind(enum.StrEnum):
    """What happened: a query was submitted, changed status, fetched a page, or ended."""

    SUBMITTED = "submitted"
    STATUS = "status"
    PAGE_FETCHED = "page_fetched"
    COMPLETED = "completed"
    FAILED = "failed"


@attrs.frozen
class FanOutProgress:
    """Counts across the whole fan-out at the moment of an event."""

    total: int
    submitted: int = 0
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


@attrs.define(eq=False)
class _Ask:
    """A job's status ask: answer it with a batch sent between ``earliest`` and ``latest``."""

    query_id: str
    earliest: float
    latest: float
    future: asyncio.Future[models.AsyncQuery]


class _StatusBatcher:
    """Coalesces the status checks of one site's queries into batch status requests.

    A job does not ask for its status at one instant but within a window (its poll interval
    stands for "no sooner than half of it, no later than all of it"), so one batch request
    can answer every ask of the site that is due: the batcher sends when the earliest
    ``latest`` comes, and takes along every ask whose ``earliest`` has passed. Asks that
    come while a batch request is in flight go in the next one.
    """

    def __init__(self, client: HaloClient, site_id: str) -> None:
        self._client = client
        self._site_id = site_id
        self._asks: list[_Ask] = []
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.requests = 0

    async def status(
        self, query_id: str, earliest: float = 0.0, latest: float = 0.0
    ) -> models.AsyncQuery:
        """The query's status, fetched between ``earliest`` and ``latest`` seconds from now."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        future: asyncio.Future[models.AsyncQuery] = loop.create_future()
        self._asks.append(_Ask(query_id, now + earliest, now + max(earliest, latest), future))
        self._arrived.set()
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        return await future

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
            send_at = min(ask.latest for ask in self._asks)
            delay = send_at - loop.time()
            if delay > 0:
                # Sleep until the first deadline, or until a new ask (maybe more urgent).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._arrived.wait()
                continue
            # Let the asks made in this very tick join, then take every ask that is due.
            await asyncio.sleep(0)
            now = loop.time()
            due = [ask for ask in self._asks if ask.earliest <= now and not ask.future.done()]
            self._asks = [ask for ask in self._asks if ask not in due]
            batch: dict[str, list[asyncio.Future[models.AsyncQuery]]] = {}
            for ask in due:
                batch.setdefault(ask.query_id, []).append(ask.future)
            if batch:
                await self._answer(batch)

    async def _answer(self, batch: dict[str, list[asyncio.Future[models.AsyncQuery]]]) -> None:
        try:
            self.requests += 1
            results = await self._client.get_query_statuses(self._site_id, list(batch))
        except asyncio.CancelledError:
            _settle(batch, cancel=True)
            raise
        except Exception as exc:
            _settle(batch, error=exc)
            return
        by_id = {result.query_id: result for result in results}
        for query_id, futures in batch.items():
            result = by_id.get(query_id)
            if result is not None and result.query is not None:
                _settle({query_id: futures}, value=result.query)
                continue
            try:
                # A batch answer without the query object (the spec's example has none):
                # ask for this one alone.
                if result is not None and result.status == models.BatchStatus.FOUND:
                    single = await self._client.get_query(self._site_id, query_id)
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


async def fan_out(
    client: HaloClient,
    command: str | models.Command,
    site_ids: Sequence[str],
    *,
    parameters: Any = None,
    execution_mode: models.ExecutionMode | str | None = None,
    command_type: models.CommandType | str | None = None,
    catalogue: str | None = None,
    max_time_in_queue: int | None = None,
    max_in_flight: int = C.FANOUT_MAX_IN_FLIGHT,
    per_site: int = C.FANOUT_PER_SITE,
    deadline: float | None = None,
    poll: PollPolicy | None = None,
    prefetch: int = C.FANOUT_PAGE_PREFETCH,
    stream: bool = False,
    coalesce_status: bool = True,
    on_event: Callable[[FanOutEvent], None] | None = None,
    jobs: JobRegistry | None = None,
) -> AsyncGenerator[SiteOutcome | SitePage, None]:
    """Run one query on every site in ``site_ids``; yield a :class:`SiteOutcome` per entry
    as each completes (in completion order).

    A site listed twice runs the query twice (``per_site`` at a time). With ``stream=True``
    the rows arrive as :class:`SitePage` items as pages land, and each site still ends with
    its :class:`SiteOutcome` (``rows`` None). ``deadline`` (seconds) bounds the whole
    fan-out: sites unfinished by then end with :class:`FanOutDeadlineError`. ``on_event``
    receives a :class:`FanOutEvent` for every submission, status change, page and end.
    With ``jobs``, each query's job is registered there while it runs, so that a verified
    Halo webhook (:mod:`halo_async.webhooks`) wakes it at once instead of at its next poll.
    Breaking out of the loop or cancelling it stops every query's polling at once (the
    queries themselves cannot be cancelled on Halo's side).
    """
    command_obj = _validate.command_from(command, parameters, execution_mode, command_type)
    sites = [_validate.uuid_str("site_ids[]", site) for site in site_ids]
    for name, value in (("max_in_flight", max_in_flight), ("per_site", per_site)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValidationError(
                f"{name} must be an integer >= 1, got {value!r}", field=name, value=value
            )
    if deadline is not None and deadline <= 0:
        raise ValidationError(
            f"deadline must be > 0 seconds, got {deadline!r}", field="deadline", value=deadline
        )

    progress = FanOutProgress(total=len(sites))

    def count(**increments: int) -> None:
        nonlocal progress
        progress = attrs.evolve(
            progress, **{name: getattr(progress, name) + n for name, n in increments.items()}
        )

    # Bounded, so that a slow consumer holds the producers back instead of buffering rows.
    queue: asyncio.Queue[SiteOutcome | SitePage] = asyncio.Queue(maxsize=max(16, 2 * max_in_flight))
    global_slots = asyncio.Semaphore(max_in_flight)
    site_slots: defaultdict[str, asyncio.Semaphore] = defaultdict(
        lambda: asyncio.Semaphore(per_site)
    )
    batchers: dict[str, _StatusBatcher] = {}
    finished: set[int] = set()

    def emit(kind: FanOutEventKind, site: str, **fields: Any) -> None:
        if on_event is not None:
            on_event(FanOutEvent(kind, site, progress, **fields))

    async def run(index: int, site: str) -> None:
        queued_at = time.perf_counter()
        started = queued_at
        job: QueryJob | None = None
        rows: list[dict[str, Any]] = []
        pages = row_count = 0
        try:
            async with global_slots, site_slots[site]:
                started = time.perf_counter()
                query = await client.create_async_query(
                    site, command_obj, catalogue=catalogue, max_time_in_queue=max_time_in_queue
                )
                count(submitted=1)
                emit(FanOutEventKind.SUBMITTED, site, query_id=query.id)
                job = _job_for(query)
                tracking = jobs.tracking(job) if jobs is not None else contextlib.nullcontext()
                with tracking:
                    async for page in job.pages():
                        pages += 1
                        row_count += len(page.rows)
                        count(pages=1, rows=len(page.rows))
                        emit(
                            FanOutEventKind.PAGE_FETCHED,
                            site,
                            query_id=query.id,
                            page_number=page.page_number,
                        )
                        if stream:
                            await queue.put(
                                SitePage(site, query.id, page.page_number, page.rows, index)
                            )
                        else:
                            rows.extend(page.rows)
        except Exception as exc:
            count(failed=1)
            outcome = SiteOutcome(
                site_id=site,
                query_id=job.query_id if job else None,
                rows=None,
                error=exc,
                row_count=row_count,
                page_count=pages,
                waited=started - queued_at,
                elapsed=time.perf_counter() - started,
                index=index,
            )
            emit(FanOutEventKind.FAILED, site, query_id=outcome.query_id)
        else:
            count(completed=1)
            assert job is not None
            outcome = SiteOutcome(
                site_id=site,
                query_id=job.query_id,
                rows=None if stream else rows,
                error=None,
                row_count=row_count,
                page_count=pages,
                waited=started - queued_at,
                elapsed=time.perf_counter() - started,
                index=index,
            )
            emit(FanOutEventKind.COMPLETED, site, query_id=job.query_id)
        await queue.put(outcome)

    def _job_for(query: models.AsyncQuery) -> QueryJob:
        status_source = None
        hurry = None
        if coalesce_status:
            batcher = batchers.get(query.site_id)
            if batcher is None:
                batcher = batchers[query.site_id] = _StatusBatcher(client, query.site_id)
            bound = batcher

            async def status_source(earliest: float, latest: float) -> models.AsyncQuery:
                return await bound.status(query.id, earliest, latest)

            def hurry() -> None:
                bound.hurry(query.id)

        return QueryJob(
            client,
            query.site_id,
            query.id,
            query=query,
            poll=poll,
            prefetch=prefetch,
            status_source=status_source,
            hurry=hurry,
            on_status=lambda q: emit(
                FanOutEventKind.STATUS, q.site_id, query_id=q.id, status=str(q.status)
            ),
        )

    tasks = [asyncio.ensure_future(run(index, site)) for index, site in enumerate(sites)]
    outcomes_left = len(tasks)
    loop = asyncio.get_running_loop()
    ends_at = None if deadline is None else loop.time() + deadline
    try:
        while outcomes_left:
            timeout = None if ends_at is None else max(0.0, ends_at - loop.time())
            try:
                item = await asyncio.wait_for(queue.get(), timeout)
            except TimeoutError:
                break
            if isinstance(item, SiteOutcome):
                outcomes_left -= 1
                finished.add(item.index)
            yield item
        else:
            return
        # The deadline passed: stop the rest, and report each unfinished site.
        await _cancel(tasks)
        while not queue.empty():
            item = queue.get_nowait()
            if isinstance(item, SiteOutcome):
                finished.add(item.index)
                yield item
        for index, site in enumerate(sites):
            if index not in finished:
                count(failed=1)
                error = FanOutDeadlineError(
                    f"site {site}: the fan-out deadline of {deadline} s passed first"
                )
                emit(FanOutEventKind.FAILED, site)
                yield SiteOutcome(site, None, None, error, 0, 0, 0.0, float(deadline or 0), index)
    finally:
        await _cancel(tasks)
        for batcher in batchers.values():
            await batcher.close()


async def _cancel(tasks: Sequence[asyncio.Future[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
