"""Workers on arq: one fan-out sharded across processes, resumed from a shared Redis ledger.

The process that starts a run enqueues its shards; any number of ``arq`` workers run them::

    # app side (a FastAPI route, a cron job...)
    redis = await arq.create_pool(RedisSettings.from_dsn(REDIS_URL))
    jobs = await enqueue_fan_out(redis, "SELECT * FROM PATIENTS", site_ids, run_id="2024-06-01")
    results = [await job.result() for job in jobs]

    # worker side: `arq myapp.worker.WorkerSettings`
    WorkerSettings = worker_settings(
        redis_settings=RedisSettings.from_dsn(REDIS_URL),
        client=HaloClient,                             # built once per worker process
        sink=lambda shard: ParquetSink(f"out/{shard.run_id}/{shard.index}-{shard.job_try}"),
    )

Every occurrence of a site is in one shard, so a shard's ledger entries (run id, site id,
occurrence) are the same whichever worker runs it. Each shard runs ``fan_out(...,
stream=True, ledger=RedisLedger(...), run_id=...)`` and hands every page to its sink. A
worker that dies stops renewing its shard's lease (arq's in-progress key, ``lease``
seconds); once that lapses another worker runs the shard again, and the ledger resumes each
created query by its id: nothing is created twice. The page a dead worker had written but
not recorded is written again, whole: a sink keeps the last write of each ``(site_id,
page_number)``, or drops repeats of it.

Needs the ``arq`` extra. A worker's client, ledger and sink are in arq's ``ctx`` under
:data:`CLIENT_KEY` and :data:`LEDGER_KEY`, for the application's own arq functions too.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeAlias, Unpack

import attrs

from halo_async._extras import extra_needed

with extra_needed("halo_async.contrib.arq"):
    from arq.connections import ArqRedis
    from arq.constants import in_progress_key_prefix
    from arq.jobs import Job
    from arq.worker import func

from halo_async import _constants as C
from halo_async import _validate
from halo_async._ledger_redis import RedisLedger
from halo_async._retry import PollPolicy
from halo_async._validate import QueryOptions, SqlOrCommand
from halo_async.client import HaloClient
from halo_async.errors import HaloError, ValidationError
from halo_async.fanout import FanOutLimits, SitePage

__all__ = [
    "CLIENT_KEY",
    "LEDGER_KEY",
    "SHARD_FUNCTION",
    "PageSink",
    "Shard",
    "ShardLeaseLostError",
    "ShardResult",
    "enqueue_fan_out",
    "shard_site_ids",
    "worker_settings",
]

_log = logging.getLogger(f"{C.LOGGER_NAME}.arq")

SHARD_FUNCTION = "halo_fan_out_shard"
"""The name the shard function is registered under in arq."""
CLIENT_KEY = "halo_client"
"""``ctx[CLIENT_KEY]``: the worker's :class:`~halo_async.HaloClient`."""
LEDGER_KEY = "halo_ledger"
"""``ctx[LEDGER_KEY]``: the worker's :class:`~halo_async.ledger.RedisLedger`."""


class PageSink(Protocol):
    """Where a shard's rows go: ``write_page`` for each page as it lands (sync or async),
    ``close`` once the shard ends. A page may be written twice after a worker died (the
    same ``(site_id, page_number)``, the same rows)."""

    def write_page(
        self, site_id: str, query_id: str, page_number: int, rows: list[dict[str, Any]]
    ) -> Awaitable[None] | None: ...

    def close(self) -> Awaitable[None] | None: ...


PageCallback: TypeAlias = Callable[[str, str, int, list[dict[str, Any]]], Awaitable[None] | None]
"""A plain ``(site_id, query_id, page_number, rows)`` callback, as a sink without close."""


@attrs.frozen
class Shard:
    """One shard of a run, as enqueued: its sites (every occurrence of each) and the query.
    ``index`` is its position in the run; ``job_try`` counts arq's runs of it (2 after a
    worker died), set when a worker runs it."""

    run_id: str
    index: int
    site_ids: tuple[str, ...]
    command: SqlOrCommand
    options: dict[str, Any]
    job_try: int = 1


@attrs.frozen
class ShardResult:
    """What a shard's job returns: the sites that succeeded, those that failed (each with its
    error's class and message), and the rows and pages written to the sink by this run."""

    run_id: str
    index: int
    succeeded: tuple[str, ...]
    failed: dict[str, str]
    rows: int
    pages: int
    job_try: int


class ShardLeaseLostError(HaloError):
    """The shard's lease lapsed while it ran (the worker stalled longer than ``lease``), so
    another worker may be running it: this one stops."""


SinkFactory: TypeAlias = Callable[[Shard], PageSink | PageCallback]


def shard_site_ids(site_ids: Sequence[str], shard_size: int) -> list[list[str]]:
    """``site_ids`` in shards of about ``shard_size`` entries, in order, with every
    occurrence of a site in the shard of its first (a site listed more than ``shard_size``
    times is a shard of its own)."""
    counts = collections.Counter(site_ids)
    shards: list[list[str]] = []
    current: list[str] = []
    for site in counts:  # first appearances, in order
        if current and len(current) + counts[site] > shard_size:
            shards.append(current)
            current = []
        current.extend([site] * counts[site])
    if current:
        shards.append(current)
    return shards


async def enqueue_fan_out(
    redis: ArqRedis,
    command: SqlOrCommand,
    site_ids: Sequence[str],
    *,
    run_id: str,
    shard_size: int = C.ARQ_SHARD_SIZE,
    queue_name: str | None = None,
    **options: Unpack[QueryOptions],
) -> list[Job]:
    """Enqueue one fan-out as arq jobs of ``shard_size`` entries each; return the jobs (await
    ``job.result()`` for each :class:`ShardResult`).

    The options are those of :meth:`HaloClient.create_async_query
    <halo_async.HaloClient.create_async_query>`, checked here before anything is enqueued.
    Job ids follow the run id and the shard's index, so enqueueing a run again adds nothing
    while its jobs (or their results) are in Redis: the same jobs are returned.
    """
    _validate.query_body(command, options, max_queue_ms=C.ASYNC_MAX_TIME_IN_QUEUE_MS, mode="async")
    sites = _validate.site_ids(site_ids)
    run = _validate.non_blank("run_id", run_id, "a non-blank string naming the run")
    size = _validate.int_in_range("shard_size", shard_size, 1, None, "entries per shard")
    jobs = []
    for index, shard_sites in enumerate(shard_site_ids(sites, size)):
        shard = Shard(run, index, tuple(shard_sites), command, dict(options))
        job_id = f"halo:{run}:{index}"
        job = await redis.enqueue_job(
            SHARD_FUNCTION,
            attrs.asdict(shard, recurse=False),
            _job_id=job_id,
            _queue_name=queue_name,
        )
        jobs.append(
            job if job is not None else Job(job_id, redis, _queue_name=_queue(redis, queue_name))
        )
    return jobs


def _queue(redis: ArqRedis, queue_name: str | None) -> str:
    return queue_name if queue_name is not None else redis.default_queue_name


def worker_settings(
    *,
    client: Callable[[], HaloClient] = HaloClient,
    sink: SinkFactory,
    limits: FanOutLimits | None = None,
    poll: PollPolicy | None = None,
    lease: float = C.ARQ_LEASE_S,
    ledger_prefix: str = "halo:ledger",
    **arq_settings: Any,
) -> dict[str, Any]:
    """The settings of an arq worker that runs fan-out shards: assign the result to
    ``WorkerSettings`` in a module and start ``arq module.WorkerSettings``.

    ``client`` builds the worker's :class:`~halo_async.HaloClient` once at start-up (closed
    at shutdown): give it a :class:`~halo_async.budget.RedisRequestBudget` so that every
    worker keeps within one key's budget. ``sink`` builds each shard's :class:`PageSink`
    (or a plain callback) from its :class:`Shard`. ``limits`` and ``poll`` are each shard's
    fan-out's. ``lease`` is how long a dead worker's shard waits before another worker runs
    it: the shard renews it every third of it while it runs. The rest go to arq's ``Worker``
    (``redis_settings``, ``max_jobs``, ``queue_name``...; ``job_timeout`` bounds one shard,
    default :data:`~halo_async._constants.ARQ_SHARD_TIMEOUT_S`); ``on_startup`` and
    ``on_shutdown`` of the application's own run after and before ours.
    """
    _check_worker_settings(client, sink, limits, poll, lease)
    own_startup = arq_settings.pop("on_startup", None)
    own_shutdown = arq_settings.pop("on_shutdown", None)

    async def on_startup(ctx: dict[str, Any]) -> None:
        halo = client()
        _validate.instance_or_none("client()", halo, HaloClient)
        ctx[CLIENT_KEY] = await halo.__aenter__()
        ctx[LEDGER_KEY] = RedisLedger(ctx["redis"], prefix=ledger_prefix)
        if own_startup is not None:
            await own_startup(ctx)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        if own_shutdown is not None:
            await own_shutdown(ctx)
        with contextlib.suppress(KeyError):
            await ctx.pop(CLIENT_KEY).close()

    async def run_shard(ctx: dict[str, Any], shard: dict[str, Any]) -> ShardResult:
        run = Shard(**{**shard, "site_ids": tuple(shard["site_ids"]), "job_try": ctx["job_try"]})
        return await _leased(ctx, lease, _run_shard(ctx, run, sink(run), limits, poll))

    arq_settings.setdefault("job_timeout", C.ARQ_SHARD_TIMEOUT_S)
    functions = [func(run_shard, name=SHARD_FUNCTION), *arq_settings.pop("functions", ())]
    return {
        "functions": functions,
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        **arq_settings,
    }


def _check_worker_settings(client: Any, sink: Any, limits: Any, poll: Any, lease: Any) -> None:
    if not callable(client):
        raise ValidationError(
            f"client must be a callable that returns a HaloClient, got {client!r}",
            field="client",
            value=client,
        )
    if not callable(sink):
        raise ValidationError(
            f"sink must be a callable that takes a Shard and returns a sink, got {sink!r}",
            field="sink",
            value=sink,
        )
    _validate.instance_or_none("limits", limits, FanOutLimits)
    _validate.instance_or_none("poll", poll, PollPolicy)
    _validate.seconds("lease", lease)


async def _run_shard(
    ctx: dict[str, Any],
    shard: Shard,
    sink: PageSink | PageCallback,
    limits: FanOutLimits | None,
    poll: PollPolicy | None,
) -> ShardResult:
    halo: HaloClient = ctx[CLIENT_KEY]
    write, close = _sink_methods(sink)
    succeeded: list[str] = []
    failed: dict[str, str] = {}
    rows = pages = 0
    try:
        async for item in halo.fan_out(
            shard.command,
            shard.site_ids,
            stream=True,
            limits=limits,
            poll=poll,
            ledger=ctx[LEDGER_KEY],
            run_id=shard.run_id,
            **shard.options,
        ):
            if isinstance(item, SitePage):
                await _maybe_await(write(item.site_id, item.query_id, item.page_number, item.rows))
                rows += len(item.rows)
                pages += 1
            elif item.ok:
                succeeded.append(item.site_id)
            else:
                failed[item.site_id] = f"{type(item.error).__name__}: {item.error}"
    finally:
        if close is not None:
            await _maybe_await(close())
    _log.info(
        "run %s shard %d (try %d): %d site(s) ok, %d failed, %d row(s) in %d page(s) written",
        shard.run_id, shard.index, shard.job_try, len(succeeded), len(failed), rows, pages,
    )  # fmt: skip
    return ShardResult(
        shard.run_id, shard.index, tuple(succeeded), failed, rows, pages, shard.job_try
    )


def _sink_methods(
    sink: PageSink | PageCallback,
) -> tuple[PageCallback, Callable[[], Awaitable[None] | None] | None]:
    write = getattr(sink, "write_page", None)
    if callable(write):
        return write, getattr(sink, "close", None)
    if callable(sink):
        return sink, None
    raise ValidationError(
        f"a shard's sink must have write_page(site_id, query_id, page_number, rows) or be "
        f"such a callable, got {sink!r}",
        field="sink",
        value=sink,
    )


async def _maybe_await(result: Awaitable[None] | None) -> None:
    if inspect.isawaitable(result):
        await result


async def _leased(ctx: dict[str, Any], lease: float, work: Awaitable[ShardResult]) -> ShardResult:
    """``work``, while this worker renews the job's in-progress key to ``lease`` seconds.

    arq sets that key for the longest job timeout plus 10 s, so a killed worker's job would
    wait that long for another worker; renewed at a third of a short lease, it lapses soon
    after a worker dies and never while it lives.
    """
    redis: ArqRedis = ctx["redis"]
    key = in_progress_key_prefix + ctx["job_id"]
    working = asyncio.ensure_future(work)
    renewing = asyncio.ensure_future(_renew(redis, key, lease))
    try:
        await asyncio.wait({working, renewing}, return_when=asyncio.FIRST_COMPLETED)
        if not working.done():
            working.cancel()
            renewing.result()  # raises ShardLeaseLostError
        return await working
    finally:
        for task in (working, renewing):
            task.cancel()
        await asyncio.gather(working, renewing, return_exceptions=True)


async def _renew(redis: ArqRedis, key: str, lease: float) -> None:
    while True:
        if not await redis.pexpire(key, int(lease * 1000)):
            break
        await asyncio.sleep(lease / 3)
    raise ShardLeaseLostError(f"the lease {key} lapsed: another worker may run this shard")
