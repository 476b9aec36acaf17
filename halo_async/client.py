"""HaloClient: the session's lifecycle and one thin method per API operation."""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
import warnings
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar, Unpack, overload

import aiohttp

from halo_async import _constants as C
from halo_async import _convert, _decode, _validate, models
from halo_async._api import FetchedPage
from halo_async._http import HttpTransport, Response, Safety, is_query_failure, query_failure
from halo_async._otel import Telemetry, check_provider
from halo_async._retry import PollPolicy, RetryPolicy
from halo_async._validate import Parameters, QueryOptions, SqlOrCommand
from halo_async.budget import RequestBudget
from halo_async.errors import (
    ConfigurationError,
    DecodeError,
    GatewayTimeoutError,
    HaloError,
    ResultTooLargeError,
    ResultTransferError,
    SiteNotFoundError,
    SubmissionOutcomeUnknownError,
    ValidationError,
    error_for_query,
)
from halo_async.models import Checkpoint

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    # Jobs and fan-out depend on the operations they call (``_api.QueryApi``), not on this
    # module; it imports them when a job or fan-out is asked for.
    from halo_async.fanout import (
        FanOutEvent,
        FanOutLimits,
        SiteFailure,
        SiteOutcome,
        SitePage,
        SiteSuccess,
    )
    from halo_async.jobs import QueryJob
    from halo_async.ledger import Ledger
    from halo_async.webhooks import JobRegistry

__all__ = ["HaloClient"]

T = TypeVar("T")

_log = logging.getLogger(C.LOGGER_NAME)


class HaloClient:
    """An asyncio client for the Halo Cloud API for Integrators.

    Use it as an async context manager, one per application::

        async with HaloClient() as halo:          # key from HALO_API_KEY
            sites = await halo.find_sites("12345", "Best Practice")
            query = await halo.immediate_query(sites[0].id, "SELECT TOP 5 * FROM PATIENTS")
            rows = query.decode_rows()

    ``api_key`` defaults to ``$HALO_API_KEY`` and ``base_url`` to ``$HALO_BASE_URL``, then to
    production (:data:`PRODUCTION_BASE_URL`; :data:`STAGE_BASE_URL` for stage). Plain
    ``http://`` is refused except for loopback hosts (the emulator).

    The client owns one ``aiohttp.ClientSession`` (created on first use), or borrows
    ``session`` and then never closes it. ``retry`` sets how transient failures are
    retried; ``request_timeout`` bounds each attempt of a read (a wait for a free
    connection included), ``connect_timeout`` the making of each new connection, and
    ``connection_limit`` the HTTP requests in flight client-wide.
    ``budget`` (a :class:`~halo_async.budget.RequestBudget`, e.g.
    :class:`~halo_async.budget.RedisRequestBudget`) is awaited before every HTTP attempt and
    told of every 429, so that the processes sharing it keep within one key's budget.

    With the ``otel`` extra, requests and jobs make OpenTelemetry spans and metrics for the
    global providers, or for ``tracer_provider`` and ``meter_provider`` when given.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        session: aiohttp.ClientSession | None = None,
        retry: RetryPolicy | None = None,
        connect_timeout: float = C.CONNECT_TIMEOUT_S,
        request_timeout: float = C.REQUEST_TIMEOUT_S,
        connection_limit: int = C.CONNECTION_LIMIT,
        budget: RequestBudget | None = None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get(C.API_KEY_ENV)
        if not key:
            raise ConfigurationError(
                f"no API key: pass HaloClient(api_key=...) or set ${C.API_KEY_ENV} "
                "(keys are issued in the Halo Integrator Portal)"
            )
        url = base_url or os.environ.get(C.BASE_URL_ENV) or C.PRODUCTION_BASE_URL
        _validate.check_base_url(url)
        _validate.instance_or_none("retry", retry, RetryPolicy)
        _validate.instance_or_none("budget", budget, RequestBudget)
        check_provider("tracer_provider", tracer_provider, "TracerProvider")
        check_provider("meter_provider", meter_provider, "MeterProvider")
        self._http = HttpTransport(
            api_key=_validate.api_key(key),
            base_url=url,
            session=session,
            retry=retry or RetryPolicy(),
            connect_timeout=_validate.seconds("connect_timeout", connect_timeout),
            request_timeout=_validate.seconds("request_timeout", request_timeout),
            connection_limit=_validate.int_in_range(
                "connection_limit", connection_limit, 1, None, "connections"
            ),
            budget=budget,
            telemetry=Telemetry(url.rstrip("/"), tracer_provider, meter_provider),
        )
        # Set on the copies with_options() makes: they share _http with this client.
        self._timeout: float | None = None
        self._retry: RetryPolicy | None = None
        self._is_copy = False

    def with_options(
        self, *, timeout: float | None = None, retry: RetryPolicy | None = None
    ) -> HaloClient:
        """A copy of this client with other defaults, sharing its session and its key::

            fast = halo.with_options(timeout=5, retry=RetryPolicy.none())
            site = await fast.get_site(site_id)

        ``timeout`` bounds each attempt of every request the copy sends (a call's own
        ``timeout=`` still wins); ``retry`` replaces the retry policy. Options not given
        are this client's. Closing the copy leaves the shared session open: the original
        owns it, and closing the original closes it for both.
        """
        if timeout is not None:
            _validate.seconds("timeout", timeout)
        _validate.instance_or_none("retry", retry, RetryPolicy)
        copy = object.__new__(HaloClient)
        copy._http = self._http
        copy._timeout = timeout if timeout is not None else self._timeout
        copy._retry = retry if retry is not None else self._retry
        copy._is_copy = True
        return copy

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self._http.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the client (and its session, if it owns one). Safe to call twice.

        A :meth:`with_options` copy leaves the session it shares open."""
        if not self._is_copy:
            await self._http.close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._http.closed

    @property
    def base_url(self) -> str:
        """The API's base URL, without a trailing slash."""
        return self._http.base_url

    @property
    def api_key(self) -> str:
        """The API key in use. Assign a new one to rotate keys without a new client."""
        return self._http.api_key

    @api_key.setter
    def api_key(self, value: str) -> None:
        self._http.api_key = _validate.api_key(value)

    @property
    def _telemetry(self) -> Telemetry:
        return self._http.telemetry

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy of every request."""
        return self._retry or self._http.retry

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<HaloClient {self.base_url} api_key='***' {state}>"

    def __del__(self, _warn: Any = warnings.warn) -> None:
        http = getattr(self, "_http", None)
        if http is not None and http.owns_open_session and not getattr(self, "_is_copy", False):
            _warn(
                f"HaloClient for {http.base_url} was never closed: use 'async with "
                "HaloClient(...)' or 'await client.close()'",
                ResourceWarning,
                source=self,
                stacklevel=2,
            )

    # -- queries -----------------------------------------------------------------------

    async def immediate_query(
        self,
        site_id: str | uuid.UUID,
        command: SqlOrCommand,
        *,
        timeout: float | None = None,
        **options: Unpack[QueryOptions],
    ) -> models.ImmediateQuery:
        """Run a query and wait for its result in the same request (``createImmediateQuery``).

        ``command`` is SQL text or a :class:`~halo_async.models.Command`; the options are
        ``parameters``, ``execution_mode``, ``command_type``, ``catalogue`` and
        ``max_time_in_queue`` (milliseconds, 0..60000, default 30000). A failed query raises
        a :class:`~halo_async.errors.QueryFailedError` subclass with its errorDetails.
        The POST is never retried once it may have reached the site.
        """
        site = _validate.uuid_str("site_id", site_id)
        body = _validate.query_body(
            command, options, max_queue_ms=C.IMMEDIATE_MAX_TIME_IN_QUEUE_MS, mode="immediate"
        )
        queue_ms = body.get("maxTimeInQueue", C.IMMEDIATE_DEFAULT_TIME_IN_QUEUE_MS)
        response = await self._create(
            f"/integrator/sites/{site}/queries/immediate",
            site,
            body,
            # Halo answers an immediate query once it ran: wait the queue time and more.
            read_timeout=queue_ms / 1000 + C.IMMEDIATE_TIMEOUT_HEADROOM_S,
            timeout=timeout,
        )
        data = _json_object(response)
        # Before 23.927 failures came with a 200 (the failed query, or a bare errorDetails
        # body such as http 413); a proxy or old deployment may still answer so.
        if is_query_failure(data):
            raise query_failure(data, site_id=site, http_status=response.status)
        query = _convert.structure(data, models.ImmediateQuery)
        if query.is_failed:
            raise error_for_query(query, http_status=response.status)
        return query

    async def create_async_query(
        self,
        site_id: str | uuid.UUID,
        command: SqlOrCommand,
        *,
        timeout: float | None = None,
        **options: Unpack[QueryOptions],
    ) -> models.AsyncQuery:
        """Queue a query on the site and return it, ``initialising`` (``createAsyncQuery``).

        The options are those of :meth:`immediate_query`; ``max_time_in_queue`` is in
        milliseconds, 0..7200000 (default 3600000). Poll it with :meth:`get_query` or
        :meth:`get_query_statuses`, then fetch its pages. The POST is retried only where
        no query can have been created (connection refused, 429, 503); otherwise an unknown
        outcome raises :class:`~halo_async.errors.SubmissionOutcomeUnknownError`.
        """
        site = _validate.uuid_str("site_id", site_id)
        return await self._create_async_query(site, _async_body(command, options), timeout)

    def _query_slot(self, site_id: str) -> contextlib.AbstractAsyncContextManager[None] | None:
        return self._http.query_slot(site_id)

    async def _create_async_query(
        self, site_id: str, body: dict[str, Any], timeout: float | None = None
    ) -> models.AsyncQuery:
        return self._created(await self._create_answer(site_id, body, timeout))

    def _create_answer(
        self, site_id: str, body: dict[str, Any], timeout: float | None = None
    ) -> Awaitable[Response]:
        return self._create(
            f"/integrator/sites/{site_id}/queries/async", site_id, body, timeout=timeout
        )

    def _created(self, response: Response) -> models.AsyncQuery:
        return _convert.structure_async_query(_json_object(response))

    async def get_query(
        self, site_id: str | uuid.UUID, query_id: str | uuid.UUID, *, timeout: float | None = None
    ) -> models.AsyncQuery | models.ImmediateQuery:
        """A query's current state (``getQuery``): an async query, or an immediate one by id.

        A failed status is returned, not raised: inspect ``is_failed`` and ``failure``.
        """
        site, query = _validate.site_and_query(site_id, query_id)
        return await self._get_query(site, query, timeout=timeout)

    # The underscore operations below are what jobs and fan-out call (``_api.QueryApi``):
    # their ids come from Halo's answers or from checked arguments, so they are not checked
    # again on every poll and page (the hand-written floor of the fan-out benchmark would
    # not check them either).

    async def _get_query(
        self, site: str, query: str, *, timeout: float | None = None
    ) -> models.AsyncQuery | models.ImmediateQuery:
        response = await self._get(
            f"/integrator/sites/{site}/queries/{query}", site, timeout=timeout
        )
        data = _json_object(response)
        if data.get("mode") == "immediate":
            return _convert.structure(data, models.ImmediateQuery)
        return _convert.structure_async_query(data)

    async def get_query_statuses(
        self,
        site_id: str | uuid.UUID,
        query_ids: Sequence[str | uuid.UUID],
        *,
        timeout: float | None = None,
    ) -> list[models.QueryStatusResult]:
        """The status of several async queries of one site in one request (batch status)."""
        site = _validate.uuid_str("site_id", site_id)
        if isinstance(query_ids, str) or not query_ids:
            raise ValidationError(
                f"query_ids must be a non-empty sequence of query ids, got {query_ids!r}",
                field="query_ids",
                value=query_ids,
            )
        ids = [_validate.uuid_str("query_ids[]", query_id) for query_id in query_ids]
        return await self._get_query_statuses(site, ids, timeout=timeout)

    async def _get_query_statuses(
        self, site: str, query_ids: list[str], *, timeout: float | None = None
    ) -> list[models.QueryStatusResult]:
        response = await self._request(
            "POST",
            f"/integrator/sites/{site}/queries/status",
            safety=Safety.IDEMPOTENT,
            json={"queryIds": query_ids},
            site_id=site,
            timeout=timeout,
        )
        results = _json_object(response).get("results", [])
        return _convert.structure_query_statuses(results)

    async def get_result_page(
        self,
        site_id: str | uuid.UUID,
        query_id: str | uuid.UUID,
        page_number: int,
        *,
        timeout: float | None = None,
    ) -> models.ResultPage:
        """Fetch and decode one cached result page of a successful async query.

        Pages are numbered from 1. An expired result raises
        :class:`~halo_async.errors.ResultExpiredError` (resubmit the query).
        """
        site, query, page = self._page_args(site_id, query_id, page_number)
        return await self._decode_result_page(
            await self._fetch_result_page(site, query, page, timeout=timeout)
        )

    async def _fetch_result_page(
        self, site: str, query: str, page: int, *, timeout: float | None = None
    ) -> FetchedPage:
        """The first half of :meth:`get_result_page`: the answer, not yet decoded."""
        answer = await self._result_page_answer(site, query, page, timeout=timeout)
        return FetchedPage(site, query, page, answer)

    def _result_page_answer(
        self, site: str, query: str, page: int, *, timeout: float | None = None
    ) -> Awaitable[Response]:
        path = f"/integrator/sites/{site}/queries/{query}/results/{page}"
        return self._get(path, site, timeout=timeout)

    async def _decode_result_page(self, fetched: FetchedPage) -> models.ResultPage:
        """The second half of :meth:`get_result_page` (a large body decoded off the loop)."""
        if not _decode.decodes_off_loop(fetched.response.body):
            return self._page_of(fetched)
        site, query, page, response = fetched
        try:
            decoded = await _decode.decode_result_body(response.body)
        except DecodeError as exc:
            raise _page_error(fetched, exc) from exc
        return _result_page(site, query, page, decoded.rows, decoded.parameters, response)

    def _page_of(self, fetched: FetchedPage) -> models.ResultPage:
        """The page of a small answer, decoded where the caller runs."""
        site, query, page, response = fetched
        try:
            decoded = _decode.decode_body(response.body)
        except DecodeError as exc:
            raise _page_error(fetched, exc) from exc
        return _result_page(site, query, page, decoded.rows, decoded.parameters, response)

    async def stream_result_page(
        self,
        site_id: str | uuid.UUID,
        query_id: str | uuid.UUID,
        page_number: int,
        *,
        timeout: float | None = None,
    ) -> models.ResultPage:
        """Fetch one result page through the ``/stream`` endpoint (``streamResultPage``).

        Its body format is unspecified: it may be the usual ``{data, parameters}`` envelope or
        the decoded rows themselves; both are read.
        """
        site, query, page = self._page_args(site_id, query_id, page_number)
        path = f"/integrator/sites/{site}/queries/{query}/results/{page}/stream"
        response = await self._get(path, site, timeout=timeout)
        decoded = await _decode.decode_result_body(response.body, any_shape=True)
        return _result_page(site, query, page, decoded.rows, decoded.parameters, response)

    def _page_args(
        self, site_id: str | uuid.UUID, query_id: str | uuid.UUID, page_number: int
    ) -> tuple[str, str, int]:
        if isinstance(page_number, bool) or not isinstance(page_number, int) or page_number < 1:
            raise ValidationError(
                "page_number must be an integer >= 1 (pages are numbered from 1), "
                f"got {page_number!r}",
                field="page_number",
                value=page_number,
            )
        return (*_validate.site_and_query(site_id, query_id), page_number)

    # -- jobs ----------------------------------------------------------------------------

    async def submit(
        self,
        site_id: str | uuid.UUID,
        command: SqlOrCommand,
        *,
        poll: PollPolicy | None = None,
        prefetch: int = C.PAGE_PREFETCH,
        ledger: Ledger | None = None,
        run_id: str | None = None,
        **options: Unpack[QueryOptions],
    ) -> QueryJob:
        """Create an async query and return its :class:`~halo_async.jobs.QueryJob`.

        The options are those of :meth:`create_async_query`. ``async for row in
        job.rows()`` then streams the rows as pages land; ``prefetch`` pages are fetched
        ahead. Every argument is checked before the query is created.

        With a ``ledger`` and a ``run_id`` (:mod:`halo_async.ledger`), the query is
        recorded before and after it is created, and so is each page its consumer takes: a
        later ``submit`` with the same run id and site (after a crash, in another process)
        returns the same query's job, carrying on after the last page taken, instead of
        creating it again. A create whose outcome is unknown raises
        :class:`~halo_async.errors.SubmissionOutcomeUnknownError` then, and is not re-sent.
        """
        from halo_async.jobs import QueryJob
        from halo_async.ledger import EntryKey, recorded_job

        site = _validate.uuid_str("site_id", site_id)
        body = _async_body(command, options)
        _validate.int_in_range("prefetch", prefetch, 1, None, "pages")
        _validate.instance_or_none("poll", poll, PollPolicy)
        recorded = _ledger_and_run(ledger, run_id)
        if recorded is not None:
            key = EntryKey(recorded[1], site)
            return await recorded_job(self, recorded[0], key, body, poll=poll, prefetch=prefetch)
        query = await self._create_async_query(site, body)
        return QueryJob(self, query.site_id, query.id, query=query, poll=poll, prefetch=prefetch)

    def resume(
        self,
        checkpoint: Checkpoint,
        *,
        poll: PollPolicy | None = None,
        prefetch: int = C.PAGE_PREFETCH,
    ) -> QueryJob:
        """A job that carries on from a :meth:`QueryJob.checkpoint`, at its exact row."""
        from halo_async.jobs import QueryJob

        site, query = _validate.site_and_query(checkpoint.site_id, checkpoint.query_id)
        next_page = _validate.int_in_range("next_page", checkpoint.next_page, 1, None, "page")
        next_row = _validate.int_in_range("next_row", checkpoint.next_row, 0, None, "row")
        _validate.instance_or_none("poll", poll, PollPolicy)
        return QueryJob(
            self,
            site,
            query,
            poll=poll,
            prefetch=prefetch,
            next_page=next_page,
            next_row=next_row,
        )

    async def query(
        self,
        site_id: str | uuid.UUID,
        command: SqlOrCommand,
        *,
        fallback_to_async: bool = False,
        poll: PollPolicy | None = None,
        **options: Unpack[QueryOptions],
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Run a query immediately and yield its rows.

        With ``fallback_to_async=True``, a result too large for an immediate answer (413) or
        a query too slow for one (504) is run again as an async query, and its rows are
        yielded the same way. Only for reads: the query runs twice when it falls back, so
        ``nonQuery`` commands are refused with it.
        """
        command_obj = _validate.command_of(command, options)
        _validate.instance_or_none("poll", poll, PollPolicy)
        if fallback_to_async and command_obj.execution_mode == models.ExecutionMode.NON_QUERY:
            raise ValidationError(
                "fallback_to_async runs the command a second time; it is refused for "
                "nonQuery commands, which change data",
                field="fallback_to_async",
                value=True,
            )
        catalogue, queue_ms = options.get("catalogue"), options.get("max_time_in_queue")
        immediate_queue_ms = queue_ms
        if fallback_to_async and queue_ms is not None:
            # One queue time serves both tries: checked against the async range up front,
            # clipped to the immediate range for the first try.
            _validate.time_in_queue(queue_ms, C.ASYNC_MAX_TIME_IN_QUEUE_MS, "async")
            immediate_queue_ms = min(queue_ms, C.IMMEDIATE_MAX_TIME_IN_QUEUE_MS)
        try:
            result = await self.immediate_query(
                site_id, command_obj, catalogue=catalogue, max_time_in_queue=immediate_queue_ms
            )
        except HaloError as exc:
            if not (fallback_to_async and _immediate_limit_exceeded(exc)):
                raise
            _log.info("immediate query exceeded a limit (%s); running it async", exc)
        else:
            for row in result.decode_rows():
                yield row
            return
        job = await self.submit(
            site_id, command_obj, poll=poll, catalogue=catalogue, max_time_in_queue=queue_ms
        )
        async for row in job.rows():
            yield row

    @overload
    def fan_out(
        self,
        command: SqlOrCommand,
        site_ids: Sequence[str | uuid.UUID],
        *,
        limits: FanOutLimits | None = None,
        deadline: float | None = None,
        poll: PollPolicy | None = None,
        stream: Literal[False] = False,
        coalesce_status: bool = True,
        on_event: Callable[[FanOutEvent], None] | None = None,
        jobs: JobRegistry | None = None,
        ledger: Ledger | None = None,
        run_id: str | None = None,
        **options: Unpack[QueryOptions],
    ) -> AsyncGenerator[SiteSuccess[list[dict[str, Any]]] | SiteFailure, None]: ...

    @overload
    def fan_out(
        self,
        command: SqlOrCommand,
        site_ids: Sequence[str | uuid.UUID],
        *,
        limits: FanOutLimits | None = None,
        deadline: float | None = None,
        poll: PollPolicy | None = None,
        stream: Literal[True],
        coalesce_status: bool = True,
        on_event: Callable[[FanOutEvent], None] | None = None,
        jobs: JobRegistry | None = None,
        ledger: Ledger | None = None,
        run_id: str | None = None,
        **options: Unpack[QueryOptions],
    ) -> AsyncGenerator[SitePage | SiteSuccess[None] | SiteFailure, None]: ...

    @overload
    def fan_out(
        self,
        command: SqlOrCommand,
        site_ids: Sequence[str | uuid.UUID],
        *,
        limits: FanOutLimits | None = None,
        deadline: float | None = None,
        poll: PollPolicy | None = None,
        stream: bool,
        coalesce_status: bool = True,
        on_event: Callable[[FanOutEvent], None] | None = None,
        jobs: JobRegistry | None = None,
        ledger: Ledger | None = None,
        run_id: str | None = None,
        **options: Unpack[QueryOptions],
    ) -> AsyncGenerator[SitePage | SiteOutcome, None]: ...

    def fan_out(
        self,
        command: SqlOrCommand,
        site_ids: Sequence[str | uuid.UUID],
        *,
        limits: FanOutLimits | None = None,
        deadline: float | None = None,
        poll: PollPolicy | None = None,
        stream: bool = False,
        coalesce_status: bool = True,
        on_event: Callable[[FanOutEvent], None] | None = None,
        jobs: JobRegistry | None = None,
        ledger: Ledger | None = None,
        run_id: str | None = None,
        **options: Unpack[QueryOptions],
    ) -> AsyncGenerator[SitePage | SiteOutcome, None]:
        """Run one async query on every site; yield a :class:`~halo_async.SiteOutcome` per
        entry as each completes (in completion order)::

            async for outcome in halo.fan_out(sql, site_ids):
                if outcome.ok:
                    save(outcome.site_id, outcome.rows)
                else:
                    log.warning("site %s failed: %s", outcome.site_id, outcome.error)

        The options are those of :meth:`create_async_query`, checked once before anything
        is sent. ``limits`` (a :class:`~halo_async.FanOutLimits`) bounds the queries in
        flight overall and per site, and the pages prefetched per query; a site listed
        twice runs the query twice. With ``stream=True`` rows arrive as
        :class:`~halo_async.SitePage` items as pages land, and each site still ends with its
        outcome (``rows`` None). ``deadline`` (seconds) bounds the whole fan-out: queries
        still running then are stopped, rows already fetched are still delivered, and each
        unfinished site ends with :class:`~halo_async.errors.FanOutDeadlineError` (with a
        checkpoint to resume it). ``on_event`` receives a :class:`~halo_async.FanOutEvent`
        for every submission, status change, page and end. With ``jobs``, each query's job
        is registered while it runs, so that a verified Halo webhook
        (:mod:`halo_async.webhooks`) wakes it at once instead of at its next poll.
        ``coalesce_status=False`` polls each query on its own instead of through the batch
        status endpoint. With a ``ledger`` and a ``run_id``, a restart with the same run id
        resumes each query where delivery stood instead of creating it again
        (:mod:`halo_async.ledger`). Breaking out of the loop or cancelling it stops every
        query's polling at once (the queries themselves cannot be cancelled on Halo's side).
        """
        from halo_async.fanout import DEFAULT_FANOUT_LIMITS, _FanOut

        _check_fan_out(deadline, limits, poll)
        run = _FanOut(
            self,
            _async_body(command, options),
            _validate.site_ids(site_ids),
            limits=limits if limits is not None else DEFAULT_FANOUT_LIMITS,
            deadline=deadline,
            poll=poll,
            stream=stream,
            coalesce_status=coalesce_status,
            on_event=on_event,
            jobs=jobs,
            ledger=_ledger_and_run(ledger, run_id),
        )
        return run.results()

    # -- sites -------------------------------------------------------------------------

    async def find_sites(
        self, pms_site_id: str, pms_name: str, *, timeout: float | None = None
    ) -> list[models.Site]:
        """The sites (Halo GUIDs) of a practice, by its PMS site id ("Get Halo GUIDs").

        ``pms_name`` is ``"Best Practice"``, ``"Zedmed"`` or ``"D4w"``. One PMS id can map to
        several sites (backups, test installs); see :meth:`resolve_site`.
        """
        params = {
            "practiceManagementSiteId": _validate.pms_site_id(pms_site_id),
            "practiceManagementName": _validate.pms_name(pms_name),
        }
        response = await self._get("/integrator/sites", None, params=params, timeout=timeout)
        sites = _json_object(response).get("sites", [])
        return _convert.structure(sites, list[models.Site])

    async def resolve_site(
        self, pms_site_id: str, pms_name: str, *, timeout: float | None = None
    ) -> models.Site:
        """The one site to query for a practice: authoritative first, then active, then
        the most recent heartbeat. Raises :class:`~halo_async.errors.SiteNotFoundError`
        when the PMS id has no site."""
        sites = await self.find_sites(pms_site_id, pms_name, timeout=timeout)
        if not sites:
            raise SiteNotFoundError(
                f"no Halo site for {_validate.pms_name(pms_name)} site id {pms_site_id!r}: is the "
                "practice paired, and is the id its PMS site id?"
            )
        return max(sites, key=_site_preference)

    async def get_site(
        self, site_id: str | uuid.UUID, *, timeout: float | None = None
    ) -> models.Site:
        """A site's status and metadata ("Get site status")."""
        site = _validate.uuid_str("site_id", site_id)
        response = await self._get(f"/integrator/sites/{site}", site, timeout=timeout)
        return _structure(response, models.Site)

    async def pair_site(
        self,
        pms_site_id: str,
        pms_name: str,
        pairing_code: str | None = None,
        *,
        timeout: float | None = None,
    ) -> models.Site:
        """Pair with a practice's site; required before any query.

        Best Practice needs the practice's ``pairing_code``; Zedmed and D4W need none.
        """
        name = _validate.pms_name(pms_name)
        params = {
            "practiceManagementSiteId": _validate.pms_site_id(pms_site_id),
            "practiceManagementName": name,
        }
        if pairing_code is not None:
            params["pairingCode"] = _validate.non_blank(
                "pairing_code", pairing_code, "the practice's pairing code"
            )
        elif name == "Best Practice":
            raise ValidationError(
                "pairing_code is required for Best Practice "
                "(the practice generates it in Bp Premier), got None",
                field="pairing_code",
                value=None,
            )
        # Pairing the same site again yields the same site: safe to retry.
        response = await self._request(
            "POST",
            "/integrator/pair-site",
            safety=Safety.IDEMPOTENT,
            params=params,
            timeout=timeout,
        )
        return _structure(response, models.Site)

    # -- registered queries --------------------------------------------------------------

    async def create_registered_query(
        self,
        site_id: str | uuid.UUID,
        command: SqlOrCommand,
        *,
        name: str,
        frequency: int,
        duration: int,
        parameters: Parameters | None = None,
        execution_mode: models.ExecutionMode | str | None = None,
        command_type: models.CommandType | str | None = None,
        timeout: float | None = None,
    ) -> str:
        """Register a query that Halo Link re-runs every ``frequency`` seconds (>= 60) for
        ``duration`` seconds (<= 86400); returns its id. Never retried once it may have
        reached Halo (see :meth:`create_async_query`)."""
        site = _validate.uuid_str("site_id", site_id)
        _validate.non_blank("name", name, "a non-blank label")
        _validate.int_in_range(
            "frequency", frequency, C.REGISTERED_MIN_FREQUENCY_S, None, "seconds"
        )
        _validate.int_in_range("duration", duration, 1, C.REGISTERED_MAX_DURATION_S, "seconds")
        command_obj = _validate.command_from(command, parameters, execution_mode, command_type)
        body = {
            "name": name,
            "registeredQueryType": "query",
            "frequency": frequency,
            "duration": duration,
            "registerCommand": {"command": _convert.unstructure_command(command_obj)},
        }
        response = await self._create(
            f"/integrator/sites/{site}/queries/registered", site, body, timeout=timeout
        )
        created = _json_object(response)
        if not isinstance(created.get("id"), str):
            raise DecodeError(f"registered query created, but the answer has no id: {created!r}")
        return str(created["id"])

    async def list_registered_queries(
        self, site_id: str | uuid.UUID, *, timeout: float | None = None
    ) -> list[models.RegisteredQuery]:
        """The registered queries of a site."""
        site = _validate.uuid_str("site_id", site_id)
        response = await self._get(
            f"/integrator/sites/{site}/queries/registered", site, timeout=timeout
        )
        items = _json_object(response).get("registeredQueries", [])
        return _convert.structure(items, list[models.RegisteredQuery])

    async def get_registered_query(
        self, site_id: str | uuid.UUID, query_id: str | uuid.UUID, *, timeout: float | None = None
    ) -> models.RegisteredQuery:
        """One registered query, with its run metrics."""
        site, query = _validate.site_and_query(site_id, query_id)
        response = await self._get(
            f"/integrator/sites/{site}/queries/registered/{query}", site, timeout=timeout
        )
        return _structure(response, models.RegisteredQuery)

    async def cancel_registered_query(
        self, site_id: str | uuid.UUID, query_id: str | uuid.UUID, *, timeout: float | None = None
    ) -> None:
        """Stop a registered query's runs."""
        site, query = _validate.site_and_query(site_id, query_id)
        await self._request(
            "DELETE",
            f"/integrator/sites/{site}/queries/registered/{query}",
            safety=Safety.IDEMPOTENT,
            site_id=site,
            timeout=timeout,
        )

    async def get_registered_query_result(
        self, site_id: str | uuid.UUID, query_id: str | uuid.UUID, *, timeout: float | None = None
    ) -> models.RegisteredQueryResult:
        """The latest stored result of a registered query (``decode_rows()`` for its rows)."""
        site, query = _validate.site_and_query(site_id, query_id)
        path = f"/integrator/sites/{site}/queries/registered/{query}/results"
        response = await self._get(path, site, timeout=timeout)
        return _structure(response, models.RegisteredQueryResult)

    # -- plumbing ----------------------------------------------------------------------

    # The three below hand back the transport's coroutine instead of awaiting it: a frame
    # fewer for every resumption of every request (a fan-out resumes thousands).

    def _create(
        self,
        path: str,
        site_id: str,
        body: dict[str, Any],
        *,
        read_timeout: float | None = None,
        timeout: float | None,
    ) -> Awaitable[Response]:
        """A query-creating POST: never resent once the query may exist."""
        return self._request(
            "POST",
            path,
            safety=Safety.CREATES_QUERY,
            json=body,
            site_id=site_id,
            timeout=timeout,
            read_timeout=read_timeout,
        )

    def _get(
        self,
        path: str,
        site_id: str | None,
        *,
        params: Mapping[str, str] | None = None,
        timeout: float | None,
    ) -> Awaitable[Response]:
        return self._request(
            "GET", path, safety=Safety.IDEMPOTENT, params=params, site_id=site_id, timeout=timeout
        )

    def _request(
        self,
        method: str,
        path: str,
        *,
        safety: Safety,
        timeout: float | None,
        read_timeout: float | None = None,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        site_id: str | None = None,
    ) -> Awaitable[Response]:
        """A request under this client's options: a call's ``timeout`` first, then the
        ``with_options`` one, then the operation's own (``read_timeout``), then the
        client's ``request_timeout``."""
        if timeout is not None:
            _validate.seconds("timeout", timeout)
        return self._http.request(
            method,
            path,
            safety=safety,
            params=params,
            json=json,
            site_id=site_id,
            read_timeout=timeout or self._timeout or read_timeout,
            retry=self._retry,
        )


def _async_body(command: SqlOrCommand, options: QueryOptions) -> dict[str, Any]:
    return _validate.query_body(
        command, options, max_queue_ms=C.ASYNC_MAX_TIME_IN_QUEUE_MS, mode="async"
    )


def _check_fan_out(
    deadline: float | None, limits: FanOutLimits | None, poll: PollPolicy | None
) -> None:
    from halo_async.fanout import FanOutLimits

    if deadline is not None:
        _validate.seconds("deadline", deadline)
    _validate.instance_or_none("limits", limits, FanOutLimits)
    _validate.instance_or_none("poll", poll, PollPolicy)


def _ledger_and_run(ledger: Ledger | None, run_id: str | None) -> tuple[Ledger, str] | None:
    """The ledger and its run id, both or neither."""
    from halo_async.ledger import Ledger

    _validate.instance_or_none("ledger", ledger, Ledger)
    if ledger is None:
        if run_id is not None:
            raise ValidationError(
                "run_id names a run in a ledger: pass ledger= too", field="run_id", value=run_id
            )
        return None
    if run_id is None:
        raise ValidationError(
            "a ledger records runs by their id: pass run_id= too (e.g. the night's date)",
            field="run_id",
            value=None,
        )
    return ledger, _validate.non_blank("run_id", run_id, "a non-blank string naming the run")


def _site_preference(site: models.Site) -> tuple[bool, bool, float]:
    heartbeat = site.heartbeat_timestamp_utc
    return (
        site.authoritative is True,
        site.status == models.SiteStatus.ACTIVE,
        heartbeat.timestamp() if heartbeat is not None else float("-inf"),
    )


# -- response reading -----------------------------------------------------------------------


def _json(response: Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise DecodeError(f"the answer was not JSON: {response.body[:200]!r}") from exc


def _json_object(response: Response) -> dict[str, Any]:
    value = _json(response)
    if not isinstance(value, dict):
        raise DecodeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _structure(response: Response, cls: type[T]) -> T:
    return _convert.structure(_json_object(response), cls)


def _result_page(
    site: str,
    query: str,
    page: int,
    rows: list[dict[str, Any]],
    parameters: Any,
    response: Response,
) -> models.ResultPage:
    headers = response.headers
    return _new_result_page(
        site,
        query,
        page,
        rows,
        tuple(_convert.structure(parameters, list[models.Parameter])) if parameters else (),
        _int_header(headers.get("Size")),
        _int_header(headers.get("Rows-Count")),
        _int_header(headers.get("Rows-Range-Start")),
        _int_header(headers.get("Rows-Range-End")),
    )


_new_result_page = _convert.slot_filler(
    models.ResultPage,
    ("site_id", "query_id", "page_number", "rows", "parameters", "size", "rows_count",
     "range_start", "range_end"),
)  # fmt: skip


def _page_error(fetched: FetchedPage, exc: DecodeError) -> DecodeError:
    site, query, page, _ = fetched
    return DecodeError(f"page {page} of query {query} on site {site}: {exc}")


def _immediate_limit_exceeded(exc: BaseException) -> bool:
    """413 (result over 8 MB) or 504 (over 30 s): the limits an async query does not have."""
    if isinstance(exc, SubmissionOutcomeUnknownError):
        exc = exc.cause
    if isinstance(exc, ResultTooLargeError | GatewayTimeoutError):
        return True
    return isinstance(exc, ResultTransferError) and (
        exc.error_code == 413 or exc.http_status == 413
    )


def _int_header(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
