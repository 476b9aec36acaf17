"""FastAPI glue: one HaloClient per app, NDJSON row streams, and Halo's webhooks.

::

    from fastapi import FastAPI
    from halo_async.contrib.fastapi import (
        HaloClientDep, JobRegistryDep, halo_lifespan, rows_response, webhook_router,
    )

    app = FastAPI(lifespan=halo_lifespan())          # HaloClient() opened once, closed at exit
    install_exception_handlers(app)                   # a Halo error -> 400/404/422/429/5xx JSON
    app.include_router(webhook_router(secret="..."))  # POST /halo/webhooks

    @app.get("/sites/{site_id}/patients")
    async def patients(site_id: str, halo: HaloClientDep, jobs: JobRegistryDep):
        job = await halo.submit(site_id, "SELECT * FROM BPS_Patients")
        return rows_response(job, jobs=jobs)  # rows as pages land; a webhook wakes the job

Needs the ``fastapi`` extra. When the HTTP client hangs up, the stream's source is closed at
once: a job stops polling and prefetching, a fan-out stops every site's job.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any, Final

import attrs
import orjson

from halo_async._extras import extra_needed

with extra_needed("halo_async.contrib.fastapi"):
    from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, Request
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from starlette.types import Receive, Scope, Send

from halo_async import errors
from halo_async.client import HaloClient
from halo_async.jobs import QueryJob
from halo_async.webhooks import (
    DEFAULT_MAX_BODY,
    JobRegistry,
    Secret,
    WebhookEvent,
    WebhookPayloadError,
    WebhookReplayError,
    WebhookSignatureError,
    WebhookTimestampError,
    WebhookVerifier,
)

__all__ = [
    "NDJSON_MEDIA_TYPE",
    "HaloClientDep",
    "JobRegistryDep",
    "NDJSONResponse",
    "exception_handlers",
    "halo_client",
    "halo_error_response",
    "halo_jobs",
    "halo_lifespan",
    "install_exception_handlers",
    "open_halo",
    "rows_response",
    "webhook_router",
]

_log = logging.getLogger("halo_async")

NDJSON_MEDIA_TYPE: Final = "application/x-ndjson"
QUERY_ID_HEADER: Final = "X-Halo-Query-Id"
SITE_ID_HEADER: Final = "X-Halo-Site-Id"

_CLIENT_ATTR: Final = "halo_client"
_JOBS_ATTR: Final = "halo_jobs"

Row = Mapping[str, Any]
RowSource = QueryJob | AsyncIterable[Any]
UserLifespan = Callable[[FastAPI], AbstractAsyncContextManager[Any]]


# -- lifespan and dependencies -------------------------------------------------------------------


@contextlib.asynccontextmanager
async def open_halo(
    app: FastAPI,
    client_factory: Callable[[], HaloClient] = HaloClient,
    *,
    jobs: JobRegistry | None = None,
) -> AsyncIterator[HaloClient]:
    """Open one client for ``app`` (and a :class:`JobRegistry`) for the ``async with`` block.

    For use inside your own lifespan; :func:`halo_lifespan` is this plus composition.
    ``client_factory`` builds the client (``HaloClient`` reads ``$HALO_API_KEY`` and
    ``$HALO_BASE_URL``); it is closed, and the app's references to it dropped, on exit.
    """
    client = client_factory()
    async with client:
        setattr(app.state, _CLIENT_ATTR, client)
        setattr(app.state, _JOBS_ATTR, jobs if jobs is not None else JobRegistry())
        try:
            yield client
        finally:
            for name in (_CLIENT_ATTR, _JOBS_ATTR):
                with contextlib.suppress(AttributeError):
                    delattr(app.state, name)


def halo_lifespan(
    client_factory: Callable[[], HaloClient] = HaloClient,
    *,
    lifespan: UserLifespan | None = None,
    jobs: JobRegistry | None = None,
) -> UserLifespan:
    """A FastAPI ``lifespan`` that opens one :class:`HaloClient` at startup and closes it at
    shutdown. Pass your own ``lifespan`` to run it inside (it can use the client from
    ``app.state``; whatever state it yields is passed on)::

        app = FastAPI(lifespan=halo_lifespan(lambda: HaloClient(key), lifespan=my_lifespan))
    """

    @contextlib.asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[Any]:
        async with open_halo(app, client_factory, jobs=jobs):
            if lifespan is None:
                yield None
            else:
                async with lifespan(app) as state:
                    yield state

    return run


def _from_app(request: Request, name: str, what: str) -> Any:
    try:
        return getattr(request.app.state, name)
    except AttributeError:
        raise RuntimeError(
            f"no {what} on this app: create it with FastAPI(lifespan=halo_lifespan(...)) "
            "or open_halo(app) in your lifespan"
        ) from None


def halo_client(request: Request) -> HaloClient:
    """Dependency: the app's :class:`HaloClient` (``Depends(halo_client)``)."""
    client: HaloClient = _from_app(request, _CLIENT_ATTR, "HaloClient")
    return client


def halo_jobs(request: Request) -> JobRegistry:
    """Dependency: the app's :class:`JobRegistry` of jobs that webhooks can wake."""
    jobs: JobRegistry = _from_app(request, _JOBS_ATTR, "JobRegistry")
    return jobs


HaloClientDep = Annotated[HaloClient, Depends(halo_client)]
"""``halo: HaloClientDep`` in an endpoint's signature gets the app's client."""
JobRegistryDep = Annotated[JobRegistry, Depends(halo_jobs)]
"""``jobs: JobRegistryDep`` in an endpoint's signature gets the app's job registry."""


# -- NDJSON streaming ----------------------------------------------------------------------------


def _default(value: Any) -> Any:
    # Typed rows (job.rows(as_type=...)) may be attrs instances; orjson knows dataclasses.
    if attrs.has(type(value)):
        return attrs.asdict(value, recurse=True)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _line(row: Any) -> bytes:
    return orjson.dumps(row, default=_default, option=orjson.OPT_APPEND_NEWLINE)


class NDJSONResponse(StreamingResponse):
    """A stream of JSON lines that closes its source when it ends, however it ends.

    Starlette stops iterating when the client hangs up, but leaves the iterator open; this
    closes it at once, which stops a job's polling and prefetching (or a fan-out's jobs).
    """

    media_type = NDJSON_MEDIA_TYPE

    def __init__(
        self,
        chunks: AsyncGenerator[bytes, None],
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(chunks, status_code=status_code, headers=headers)
        self._chunks = chunks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Stream the body, then close the source."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._chunks.aclose()


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    # Async generators (job.pages(), fan_out()) run their cleanup only when closed.
    aclose: Callable[[], Awaitable[None]] | None = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


async def _job_chunks(job: QueryJob, jobs: JobRegistry | None) -> AsyncGenerator[bytes, None]:
    with jobs.tracking(job) if jobs is not None else contextlib.nullcontext():
        pages = job.pages()
        try:
            async for page in pages:
                if page.rows:
                    yield b"".join(_line(row) for row in page.rows)
        finally:
            await _aclose(pages)


async def _source_chunks(source: AsyncIterable[Any]) -> AsyncGenerator[bytes, None]:
    iterator = aiter(source)
    try:
        async for item in iterator:
            if isinstance(item, list | tuple):
                if item:
                    yield b"".join(_line(row) for row in item)
            else:
                yield _line(item)
    finally:
        await _aclose(iterator)


def rows_response(
    source: RowSource,
    *,
    jobs: JobRegistry | None = None,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> NDJSONResponse:
    """Stream rows to the HTTP client as NDJSON (one JSON object a line), as they arrive.

    ``source`` is a :class:`QueryJob` (its rows go out a page at a time, as each page is
    cached; the response carries ``X-Halo-Site-Id`` and ``X-Halo-Query-Id`` so a client can
    resume), or any async iterable of rows (mappings, dataclasses or attrs instances), or
    of lists of rows (each list written as one chunk). With ``jobs``, the job is registered
    there while it polls, so a webhook for its query wakes it.

    When the HTTP client disconnects the source is closed at once: the job stops polling
    and prefetching. An error after the first byte cannot change the status any more, so
    the server aborts the connection and the client sees a truncated stream, not a clean end.
    """
    extra: dict[str, str] = dict(headers or {})
    if isinstance(source, QueryJob):
        extra.setdefault(SITE_ID_HEADER, source.site_id)
        extra.setdefault(QUERY_ID_HEADER, source.query_id)
        chunks = _job_chunks(source, jobs)
    else:
        chunks = _source_chunks(source)
    return NDJSONResponse(chunks, status_code=status_code, headers=extra)


# -- exception handlers --------------------------------------------------------------------------

# The HTTP status a Halo error becomes, looked up along the exception's MRO (most specific
# class first). 4xx: the caller's request was wrong; 5xx: Halo, the practice, or this service.
_STATUS_BY_ERROR: Final[Mapping[type[errors.HaloError], int]] = {
    errors.InvalidArgumentError: 400,  # caught before anything was sent
    errors.BadRequestError: 400,  # Halo refused the request, SQL or a parameter
    errors.SiteNotFoundError: 404,  # no site for that PMS site id
    errors.NotFoundError: 404,  # unknown site or query
    errors.NotAuthoritativeError: 409,  # a backup or test site: ask for the authoritative one
    errors.SiteGuidChangedError: 409,  # the site's GUID changed: re-resolve it
    errors.ResultExpiredError: 410,  # the result is gone: resubmit
    errors.SqlExecutionError: 422,  # the database rejected the SQL
    errors.RateLimitedError: 429,
    errors.SiteUnavailableError: 503,  # the site could not be contacted
    errors.SiteOfflineError: 503,
    errors.QueryExpiredInQueueError: 503,  # the site was too busy
    errors.GatewayTimeoutError: 504,
    errors.PollTimeoutError: 504,
    errors.FanOutDeadlineError: 504,
    # This service's own misconfiguration or bug, not the caller's nor Halo's.
    errors.ConfigurationError: 500,
    errors.ClientClosedError: 500,
    errors.RowTypeError: 500,
    # Anything else Halo did (5xx, no answer, an answer not in the documented shape, its
    # 401/403 to this service's key) is a failure upstream of this service.
    errors.HaloError: 502,
}
# Retry-After for a 429 whose upstream answer gave none: come back in a second.
_DEFAULT_RETRY_AFTER: Final = 1


def _status_for(exc: errors.HaloError) -> int:
    if isinstance(exc, errors.SubmissionOutcomeUnknownError):
        # Whatever made the outcome unknown (a 500/502/504, no answer) says the status.
        cause = exc.cause
        return _status_for(cause) if isinstance(cause, errors.HaloError) else _no_answer(cause)
    if isinstance(exc, errors.HaloConnectionError):
        return _no_answer(exc.__cause__)
    for cls in type(exc).__mro__:
        status = _STATUS_BY_ERROR.get(cls)
        if status is not None:
            return status
    return 502  # pragma: no cover - HaloError is in the table


def _no_answer(cause: BaseException | None) -> int:
    # No answer at all: 504 when Halo was too slow, 502 when it could not be reached.
    timed_out = isinstance(cause, TimeoutError) or "timeout" in type(cause).__name__.lower()
    return 504 if timed_out else 502


def _error_body(exc: errors.HaloError, api_key: str | None) -> dict[str, Any]:
    detail = str(exc)
    if api_key:  # the library scrubs it already; an error answer must never carry it
        detail = detail.replace(api_key, "***")
    body: dict[str, Any] = {"detail": detail, "error": type(exc).__name__}
    if isinstance(exc, errors.APIError):
        body["upstream_status"] = exc.status
    if isinstance(exc, errors.QueryFailedError):
        body.update(error_type=exc.error_type, error_code=exc.error_code)
    for name in ("site_id", "query_id", "retry_after"):
        value = getattr(exc, name, None)
        if value is not None:
            body[name] = value
    return body


async def halo_error_response(request: Request, exc: Exception) -> JSONResponse:
    """An exception handler turning a :class:`~halo_async.errors.HaloError` into JSON.

    ``{"detail": message, "error": class name, ...}`` plus, where known, ``site_id``,
    ``query_id``, ``error_type``/``error_code`` (a failed query), ``upstream_status`` (Halo's
    HTTP status) and ``retry_after``. Statuses: 400 bad input, 404 unknown site or query,
    409 a site to re-resolve, 410 an expired result, 422 SQL the database rejected, 429 rate
    limited (with ``Retry-After``), 503 the site unreachable, 504 timeouts, 500 this
    service's own configuration, and 502 any other failure of Halo. The API key never
    appears in it.
    """
    if not isinstance(exc, errors.HaloError):  # pragma: no cover - registered for HaloError
        raise exc
    status = _status_for(exc)
    client = getattr(request.app.state, _CLIENT_ATTR, None)
    body = _error_body(exc, getattr(client, "api_key", None))
    headers: dict[str, str] = {}
    retry_after = getattr(exc, "retry_after", None)
    if status == 429 or (status == 503 and retry_after is not None):
        seconds = _DEFAULT_RETRY_AFTER if retry_after is None else math.ceil(retry_after)
        headers["Retry-After"] = str(max(seconds, 0))
    level = logging.WARNING if status >= 500 else logging.INFO
    _log.log(level, "%s %s -> %d: %s", request.method, request.url.path, status, body["detail"])
    return JSONResponse(body, status_code=status, headers=headers)


ExceptionHandler = Callable[[Request, Any], Coroutine[Any, Any, Response]]


def exception_handlers() -> dict[int | type[Exception], ExceptionHandler]:
    """The handlers as a mapping, for ``FastAPI(exception_handlers=exception_handlers())``."""
    return {errors.HaloError: halo_error_response}


def install_exception_handlers(app: FastAPI) -> None:
    """Answer every :class:`~halo_async.errors.HaloError` an endpoint raises with a JSON error
    (see :func:`halo_error_response`) instead of a 500 with a traceback.

    Only errors raised before a response starts can become a status: a stream that fails
    after its first row is cut short instead (see :func:`rows_response`).
    """
    for cls, handler in exception_handlers().items():
        app.add_exception_handler(cls, handler)


# -- webhooks ------------------------------------------------------------------------------------

WebhookHandler = Callable[[WebhookEvent], Awaitable[None] | None]


def webhook_router(
    secret: Secret | Sequence[Secret] | WebhookVerifier,
    *,
    path: str = "/halo/webhooks",
    jobs: JobRegistry | None = None,
    on_event: WebhookHandler | None = None,
    include_in_schema: bool = True,
    max_body: int = DEFAULT_MAX_BODY,
) -> APIRouter:
    """An :class:`APIRouter` with the route Halo POSTs its webhooks to.

    Each delivery is verified (:class:`~halo_async.webhooks.WebhookVerifier`: signature,
    5-minute freshness, replays), then the job polling the announced query is woken (from
    ``jobs``, or the app's registry set up by :func:`halo_lifespan`) and the answer goes
    back at once; ``on_event`` (sync or async) runs after the answer is sent. Answers:

    - 200 ``{"status": "accepted", "woken": n}``: verified and acted on;
    - 200 ``{"status": "duplicate"}``: a delivery id already handled (a retry or replay),
      acknowledged so Halo stops retrying, and not acted on again;
    - 401: a missing or wrong signature, or a timestamp more than 5 minutes off. Both mean
      the delivery does not prove it is a fresh one from Halo; Halo does not retry a 4xx;
    - 400: signed, but not a webhook payload (or ``X-Halo-Id`` disagrees with it);
    - 413: a body over ``max_body`` bytes (64 KiB; Halo's are a few hundred).

    The headers are checked before the body is read, and the body is read only up to
    ``max_body``: an unsigned or oversized request costs the service nothing.

    ``secret`` is the webhook secret (several during a rotation), or a configured
    :class:`WebhookVerifier` (to set the tolerance, the replay memory or the clock).
    """
    verifier = secret if isinstance(secret, WebhookVerifier) else WebhookVerifier(secret)
    router = APIRouter()
    receive_webhook = _webhook_endpoint(verifier, jobs, on_event, max_body)
    router.add_api_route(
        path,
        receive_webhook,
        methods=["POST"],
        response_class=JSONResponse,
        include_in_schema=include_in_schema,
        summary="Receive a Halo webhook",
    )
    return router


def _webhook_endpoint(
    verifier: WebhookVerifier,
    jobs: JobRegistry | None,
    on_event: WebhookHandler | None,
    max_body: int,
) -> Callable[[Request, BackgroundTasks], Awaitable[JSONResponse]]:
    """The webhook route's endpoint: headers first, then at most ``max_body`` bytes of body,
    then the verified event wakes its job."""

    async def receive_webhook(request: Request, background: BackgroundTasks) -> JSONResponse:
        try:
            verifier.check_headers(request.headers)
        except (WebhookSignatureError, WebhookTimestampError) as exc:
            _log.warning("webhook refused: %s", exc)
            return JSONResponse({"detail": str(exc)}, status_code=401)
        body = await _body_up_to(request, max_body)
        if body is None:
            _log.warning("webhook refused: a body over %d bytes", max_body)
            return JSONResponse({"detail": f"the body is over {max_body} bytes"}, status_code=413)
        try:
            event = verifier.verify(body, request.headers)
        except WebhookReplayError as exc:
            _log.info("webhook %s received again; acknowledged, not acted on", exc.event.id)
            return JSONResponse({"status": "duplicate"})
        except (WebhookSignatureError, WebhookTimestampError) as exc:
            _log.warning("webhook refused: %s", exc)
            return JSONResponse({"detail": str(exc)}, status_code=401)
        except WebhookPayloadError as exc:
            _log.warning("webhook refused: %s", exc)
            return JSONResponse({"detail": str(exc)}, status_code=400)
        registry = jobs if jobs is not None else getattr(request.app.state, _JOBS_ATTR, None)
        woken = registry.notify(event.query_id) if registry is not None else 0
        if on_event is not None:
            background.add_task(_run_handler, on_event, event)
        return JSONResponse({"status": "accepted", "woken": woken})

    return receive_webhook


async def _body_up_to(request: Request, limit: int) -> bytes | None:
    """The request's body, or None once it is known to pass ``limit`` bytes (from its
    Content-Length, or while it streams in): the rest is never read."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _run_handler(handler: WebhookHandler, event: WebhookEvent) -> None:
    # Called on the event loop (BackgroundTasks would push a sync handler to a thread).
    result = handler(event)
    if inspect.isawaitable(result):
        await result
