"""The operations query jobs and fan-out call: a protocol, so that they depend on these
operations and not on the client module (which imports them lazily in turn). Their ids are
the SDK's own (from Halo's answers, or checked once where a caller gave them), so these
private operations do not check them again on every poll and page."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable
from typing import Any, NamedTuple, Protocol

from halo_async import models
from halo_async._http import Response
from halo_async._otel import Telemetry


class FetchedPage(NamedTuple):
    """A result page's answer, not yet decoded: what a job's prefetch window holds."""

    site_id: str
    query_id: str
    page_number: int
    response: Response


class QueryApi(Protocol):
    """What a :class:`~halo_async.jobs.QueryJob` and a fan-out need of a client."""

    @property
    def _telemetry(self) -> Telemetry:
        """Where jobs record their spans and metrics."""
        ...

    @property
    def closed(self) -> bool:
        """True once the client was closed: nothing more can be sent."""
        ...

    def _query_slot(self, site_id: str) -> contextlib.AbstractAsyncContextManager[None] | None:
        """Held by a fan-out from just before a site's query is created (or resumed) to its
        end: one of the budget's slots for the key's queries in flight (None without one)."""
        ...

    async def _create_async_query(
        self, site_id: str, body: dict[str, Any], timeout: float | None = None
    ) -> models.AsyncQuery:
        """Create an async query from a request body already validated (a fan-out checks
        its arguments once, not once per site)."""
        ...

    def _create_answer(
        self, site_id: str, body: dict[str, Any], timeout: float | None = None
    ) -> Awaitable[Response]:
        """:meth:`_create_async_query`'s answer, not yet read (an awaitable: a fan-out
        awaits it itself, a frame fewer while a thousand creates queue)."""
        ...

    def _created(self, response: Response) -> models.AsyncQuery:
        """The query a create's answer holds."""
        ...

    async def _get_query(
        self, site: str, query: str, *, timeout: float | None = None
    ) -> models.AsyncQuery | models.ImmediateQuery:
        """A query's current state."""
        ...

    async def _get_query_statuses(
        self, site: str, query_ids: list[str], *, timeout: float | None = None
    ) -> list[models.QueryStatusResult]:
        """The status of several queries of one site, in one request."""
        ...

    def _result_page_answer(
        self, site: str, query: str, page: int, *, timeout: float | None = None
    ) -> Awaitable[Response]:
        """One result page's answer, not yet decoded (an awaitable: a job awaits it, or
        prefetches it in a task of its own)."""
        ...

    def _page_of(self, fetched: FetchedPage) -> models.ResultPage:
        """The page of a fetched answer, decoded here (for a small body: see
        :func:`~halo_async._decode.decodes_off_loop`)."""
        ...

    async def _decode_result_page(self, fetched: FetchedPage) -> models.ResultPage:
        """The page of a fetched answer (decoded off the event loop when it is large)."""
        ...
