"""The exception hierarchy: the class tells the caller what to do.

::

    HaloError
    ├── InvalidArgumentError       bad input, caught before anything is sent (alias ValidationError)
    │   └── LedgerMismatchError    a ledger's run id reused for another query
    ├── ConfigurationError         no API key, a base URL we refuse
    ├── ClientClosedError          the client was used after close()
    ├── SiteNotFoundError          no site for a PMS site id
    ├── DecodeError                an answer not in the documented shape (body, rows)
    ├── HaloConnectionError        no answer after the retries (connection, timeout)
    ├── SubmissionOutcomeUnknownError  a query-creating POST whose fate is unknown
    ├── IncompleteResultError      a successful result's pages and counts do not add up
    ├── RowTypeError               a result row does not fit the type asked for
    ├── ColumnTypeError            a result column's values do not fit one Arrow type
    ├── PollTimeoutError           a job's poll deadline passed; resume it later
    ├── FanOutDeadlineError        the fan-out's deadline passed before this site finished
    ├── WebhookError               a webhook delivery not to act on: WebhookSignatureError,
    │                              WebhookTimestampError, WebhookPayloadError, WebhookReplayError
    ├── APIError                   an HTTP error answer (status, message, envelope)
    │   ├── BadRequestError 400, AuthenticationError 401, NotFoundError 404
    │   ├── PermissionDeniedError 403
    │   │   ├── NotAuthoritativeError     query the authoritative site instead
    │   │   └── SiteGuidChangedError      re-resolve the Halo GUID from the PMS id
    │   ├── ResultExpiredError 410        resubmit the query
    │   ├── ResultTooLargeError 413       narrow it, or run it async
    │   ├── RateLimitedError 429          retry_after seconds
    │   ├── RedirectRefusedError 3xx      a redirect off-origin, or of a create: not followed
    │   └── ServerError 5xx: BadGatewayError 502, SiteUnavailableError 503,
    │                        GatewayTimeoutError 504
    └── QueryFailedError           a query that ran (or was meant to) and failed
        ├── SqlExecutionError          mssql / fbsql: fix the SQL
        ├── ResultTransferError        http: e.g. an immediate result over 8 MB
        ├── HaloLinkError              haloLink: contact Halo support
        ├── UploadFailedError          uploadFailed: resubmit
        ├── QueryExpiredInQueueError   expiredInQueue: the site was busy; resubmit later
        └── InitialisationFailedError  initialisationFailed*: the query never started
            └── SiteOfflineError       the site is offline or unreachable

The tables at the bottom map an HTTP status and an ``errorType`` / query status to the
class; nothing else decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from halo_async.models import AsyncQuery, Checkpoint, ErrorDetails, ImmediateQuery
    from halo_async.webhooks import WebhookEvent

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadGatewayError",
    "BadRequestError",
    "ClientClosedError",
    "ColumnTypeError",
    "ConfigurationError",
    "DecodeError",
    "FanOutDeadlineError",
    "GatewayTimeoutError",
    "HaloConnectionError",
    "HaloError",
    "HaloLinkError",
    "IncompleteResultError",
    "InitialisationFailedError",
    "InvalidArgumentError",
    "LedgerMismatchError",
    "NotAuthoritativeError",
    "NotFoundError",
    "PermissionDeniedError",
    "PollTimeoutError",
    "QueryExpiredInQueueError",
    "QueryFailedError",
    "RateLimitedError",
    "RedirectRefusedError",
    "ResultExpiredError",
    "ResultTooLargeError",
    "ResultTransferError",
    "RowTypeError",
    "ServerError",
    "SiteGuidChangedError",
    "SiteNotFoundError",
    "SiteOfflineError",
    "SiteUnavailableError",
    "SqlExecutionError",
    "SubmissionOutcomeUnknownError",
    "UploadFailedError",
    "ValidationError",
    "WebhookError",
    "WebhookPayloadError",
    "WebhookReplayError",
    "WebhookSignatureError",
    "WebhookTimestampError",
]


class HaloError(Exception):
    """The base of every error halo-async raises.

    Every one pickles with its attributes (process pools, Celery and arq carry errors
    between processes), although most take keyword-only arguments that pickle's default
    ``cls(*args)`` could not pass.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.args, self.__dict__))


class InvalidArgumentError(HaloError, ValueError):
    """An argument is wrong; nothing was sent. ``field`` and ``value`` name it."""

    def __init__(self, message: str, *, field: str, value: Any) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


# The name before 0.1: kept importable, but not at the top level, where it would shadow
# pydantic's ValidationError in FastAPI apps.
ValidationError = InvalidArgumentError


class LedgerMismatchError(InvalidArgumentError):
    """A ledger's run id was reused for another query (other SQL, parameters or catalogue):
    nothing was sent. Use a new run id for a new query."""


class ConfigurationError(HaloError, ValueError):
    """The client cannot be built as asked (no API key, a refused base URL)."""


class ClientClosedError(HaloError, RuntimeError):
    """The client was used after it was closed."""


class SiteNotFoundError(HaloError, LookupError):
    """No Halo site matches the PMS site id (not paired yet, or the wrong id)."""


class DecodeError(HaloError, ValueError):
    """An answer was not what the API documents: result data that is not base64 of JSON
    rows, or a body that is not JSON or lacks required fields."""


class HaloConnectionError(HaloError):
    """No answer from Halo after the retries: connection failures or timeouts.

    ``method`` and ``path`` name the request; the cause is chained.
    """

    def __init__(self, message: str, *, method: str, path: str) -> None:
        super().__init__(message)
        self.method = method
        self.path = path


class SubmissionOutcomeUnknownError(HaloError):
    """A query-creating POST was sent, but whether Halo created the query is unknown.

    It is never resubmitted automatically: running a query twice can book an appointment
    twice. ``body`` is exactly what was sent, so the caller can check the site (or the
    registered queries list) and decide. ``cause`` is the error that made it unknown.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str,
        path: str,
        body: Any,
        cause: BaseException,
    ) -> None:
        super().__init__(message)
        self.method = method
        self.path = path
        self.body = body
        self.cause = cause


class IncompleteResultError(HaloError):
    """A successful query's result does not add up: a listed page is missing (a gap in the
    page numbers), a page holds a different number of rows than the server counts, or the
    pages' counts miss the result's total. Rows are never dropped silently; ``page_number``
    names the page at fault (None for the total). Resubmit, or report it to Halo."""

    def __init__(
        self, message: str, *, site_id: str, query_id: str, page_number: int | None
    ) -> None:
        super().__init__(message)
        self.site_id = site_id
        self.query_id = query_id
        self.page_number = page_number


class RowTypeError(HaloError, ValueError):
    """A result row did not fit the requested type. Names the page, row and column."""

    def __init__(
        self, message: str, *, page_number: int, row_index: int, columns: list[str]
    ) -> None:
        super().__init__(message)
        self.page_number = page_number
        self.row_index = row_index
        self.columns = columns


class ColumnTypeError(HaloError, ValueError):
    """A result column's values do not fit one Arrow type (``halo_async.arrow``, the
    ``to_arrow`` family): two pages, or two rows of one page, disagree in a way no lossless
    widening reconciles. Names the page, the column and the two types; passing the column's
    type (``types={column: pyarrow type}``) settles it."""

    def __init__(
        self, message: str, *, page_number: int | None, column: str, expected: str, found: str
    ) -> None:
        super().__init__(message)
        self.page_number = page_number
        self.column = column
        self.expected = expected
        self.found = found


class PollTimeoutError(HaloError, TimeoutError):
    """The query did not finish within the poll deadline. It may still finish: the job
    can be resumed (``job.checkpoint()``) while Halo keeps its result."""

    def __init__(self, message: str, *, site_id: str, query_id: str) -> None:
        super().__init__(message)
        self.site_id = site_id
        self.query_id = query_id


class FanOutDeadlineError(HaloError, TimeoutError):
    """The fan-out's overall deadline passed before this site finished.

    ``query_id`` is the site's query when it was created (None when it never started), and
    ``checkpoint`` where its delivered rows end: ``client.resume(checkpoint)`` carries on
    from the first row not yet delivered, without creating the query again.
    """

    def __init__(
        self,
        message: str,
        *,
        site_id: str,
        query_id: str | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        super().__init__(message)
        self.site_id = site_id
        self.query_id = query_id
        self.checkpoint = checkpoint


class APIError(HaloError):
    """Halo answered with an HTTP error.

    ``status`` is the HTTP status, ``message`` the server's text, ``envelope`` the parsed
    JSON body (or None when it was not JSON), ``body`` the raw text, and ``method``/``path``
    the request (the API key is never part of either).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        method: str,
        path: str,
        envelope: Any = None,
        body: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{method} {path} -> {status}: {message}")
        self.message = message
        self.status = status
        self.method = method
        self.path = path
        self.envelope = envelope
        self.body = body
        self.headers: Mapping[str, str] = dict(headers or {})


class RedirectRefusedError(APIError):
    """Halo (or something in front of it) answered with a redirect that was not followed:
    to another origin (the API key never leaves for one), for a query-creating POST (it is
    never redirected), or one too many. ``location`` is where it pointed."""

    @property
    def location(self) -> str | None:
        """The redirect's ``Location`` header."""
        return self.headers.get("Location")


class BadRequestError(APIError):
    """400: the request, SQL or a parameter is wrong. Fix it; retrying will not help."""


class AuthenticationError(APIError):
    """401: the API key is missing, wrong, or for the other environment (stage/production)."""


class PermissionDeniedError(APIError):
    """403: not allowed: caller IP, quota, an unpaired site, or a site you should not query."""


class NotAuthoritativeError(PermissionDeniedError):
    """403 for a non-authoritative (backup or test) site: query the authoritative one."""


class SiteGuidChangedError(PermissionDeniedError):
    """403 because the site's Halo GUID changed: resolve it again from the PMS site id."""


class NotFoundError(APIError):
    """404: unknown route, site or query."""


class ResultExpiredError(APIError):
    """410: the result is no longer kept (24-48 h). Resubmit the query."""


class ResultTooLargeError(APIError):
    """413: an immediate result over 8 MB. Narrow the query or run it async."""


class RateLimitedError(APIError):
    """429: slow down. ``retry_after`` is the server's wait in seconds, when it gave one."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx: Halo or the site failed. Reads are retried; query creation is not."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class BadGatewayError(ServerError):
    """502: the practice management software misbehaved (during pairing)."""


class SiteUnavailableError(ServerError):
    """503: the site could not be contacted; nothing ran. Safe to retry, even writes."""


class GatewayTimeoutError(ServerError):
    """504: over 30 s, or the site went away mid-query. Reads can switch to async."""


class QueryFailedError(HaloError):
    """A query failed. ``details`` carries errorType/errorCode/errorMessage.

    ``site_id``, ``query_id`` and ``status`` say which query and how it ended; ``query`` is
    the query object when the server sent one; ``http_status`` is set when the failure came
    as an HTTP error answer (immediate queries since 23.927).
    """

    def __init__(
        self,
        message: str,
        *,
        site_id: str | None,
        query_id: str | None,
        status: str | None,
        details: ErrorDetails | None,
        query: ImmediateQuery | AsyncQuery | None = None,
        http_status: int | None = None,
    ) -> None:
        where = f"site {site_id}" if site_id else "site ?"
        if query_id:
            where += f", query {query_id}"
        super().__init__(f"{message} ({where})")
        self.site_id = site_id
        self.query_id = query_id
        self.status = status
        self.details = details
        self.query = query
        self.http_status = http_status

    @property
    def error_type(self) -> str | None:
        """``mssql``, ``fbsql``, ``http`` or ``haloLink`` (None when not reported)."""
        return None if self.details is None else _str_or_none(self.details.error_type)

    @property
    def error_code(self) -> int | None:
        """The engine's error number (e.g. SQL Server 208), or the HTTP code for ``http``."""
        return None if self.details is None else self.details.error_code


class SqlExecutionError(QueryFailedError):
    """The database rejected the SQL (mssql / fbsql). Fix the query."""


class ResultTransferError(QueryFailedError):
    """The query ran but its result could not be transferred (errorType http, e.g. 413)."""


class HaloLinkError(QueryFailedError):
    """An unexpected failure inside Halo Link (errorType haloLink): contact Halo support."""


class UploadFailedError(QueryFailedError):
    """The query ran but its pages failed to upload. Resubmit it."""


class QueryExpiredInQueueError(QueryFailedError):
    """The query waited in the site's queue longer than ``maxTimeInQueue``. Resubmit later."""


class InitialisationFailedError(QueryFailedError):
    """The query never started (a Halo cache error, or the site was not there)."""


class SiteOfflineError(InitialisationFailedError):
    """The site was offline or unreachable when the query was created."""


class WebhookError(HaloError):
    """A webhook delivery that must not be acted on; the subclass says why."""


class WebhookSignatureError(WebhookError):
    """The signature or timestamp header is missing, or the signature does not match the
    body and timestamp under any configured secret: the delivery is not from Halo (or the
    secret is wrong). Answer 401."""


class WebhookTimestampError(WebhookError):
    """The signed ``X-Halo-Timestamp`` is unreadable or further than the tolerance from now:
    a replayed capture, or a clock gone wrong. Answer 401 (the signature no longer proves
    the delivery is fresh)."""


class WebhookPayloadError(WebhookError):
    """The delivery is signed but its body is not a webhook payload, or ``X-Halo-Id`` does
    not match the payload's id. Answer 400."""


class WebhookReplayError(WebhookError):
    """A delivery id already handled: a retry or a replay. Acknowledge it (2xx) without
    acting on it again; ``event`` is the repeated event."""

    def __init__(self, message: str, *, event: WebhookEvent) -> None:
        super().__init__(message)
        self.event = event


def _rebuild(cls: type[HaloError], args: tuple[Any, ...], state: dict[str, Any]) -> HaloError:
    """An unpickled error: its message arguments and attributes, without ``__init__``."""
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


# -- The tables -------------------------------------------------------------------------------

STATUS_ERRORS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    410: ResultExpiredError,
    413: ResultTooLargeError,
    429: RateLimitedError,
    500: ServerError,
    502: BadGatewayError,
    503: SiteUnavailableError,
    504: GatewayTimeoutError,
}

# A terminal query status decides the class first; only executionFailed looks further, at
# errorType. Keys are compared lower-cased: 23.927 spelled haloLink "halolink".
QUERY_STATUS_ERRORS: dict[str, type[QueryFailedError]] = {
    "initialisationfailedcacheerror": InitialisationFailedError,
    "initialisationfailedsiteoffline": SiteOfflineError,
    "initialisationfailedsiteunreachable": SiteOfflineError,
    "expiredinqueue": QueryExpiredInQueueError,
    "uploadfailed": UploadFailedError,
}

ERROR_TYPE_ERRORS: dict[str, type[QueryFailedError]] = {
    "mssql": SqlExecutionError,
    "fbsql": SqlExecutionError,
    "http": ResultTransferError,
    "halolink": HaloLinkError,
}

# 403 texts are not published (REFERENCE §12); these refine the class when a message says
# which 403 it is. The HTTP status alone still decides that it is a PermissionDeniedError.
_FORBIDDEN_REFINEMENTS: tuple[tuple[str, type[PermissionDeniedError]], ...] = (
    ("authoritative", NotAuthoritativeError),
    ("guid", SiteGuidChangedError),
)


def api_error_class(status: int, message: str) -> type[APIError]:
    """The class for an HTTP error status (and, for 403, its message)."""
    if status == 403:
        lowered = message.lower()
        for needle, cls in _FORBIDDEN_REFINEMENTS:
            if needle in lowered:
                return cls
        return PermissionDeniedError
    if status in STATUS_ERRORS:
        return STATUS_ERRORS[status]
    if status >= 500:
        return ServerError
    return APIError


def query_error_class(status: str | None, error_type: str | None) -> type[QueryFailedError]:
    """The class for a failed query, by its status first and its errorType second."""
    if status is not None and status.lower() in QUERY_STATUS_ERRORS:
        return QUERY_STATUS_ERRORS[status.lower()]
    if error_type is not None and error_type.lower() in ERROR_TYPE_ERRORS:
        return ERROR_TYPE_ERRORS[error_type.lower()]
    return QueryFailedError


def error_for_details(
    details: ErrorDetails | None,
    *,
    status: str | None,
    site_id: str | None,
    query_id: str | None,
    query: ImmediateQuery | AsyncQuery | None = None,
    http_status: int | None = None,
) -> QueryFailedError:
    """The typed error for a query failure, from its status and errorDetails."""
    error_type = None if details is None or details.error_type is None else str(details.error_type)
    cls = query_error_class(status, error_type)
    reason = (details.error_message if details else None) or status or "query failed"
    if details is not None and details.error_code is not None:
        reason = f"{reason} [{error_type or 'error'} {details.error_code}]"
    return cls(
        f"query failed: {reason}",
        site_id=site_id,
        query_id=query_id,
        status=status,
        details=details,
        query=query,
        http_status=http_status,
    )


def error_for_query(
    query: ImmediateQuery | AsyncQuery, *, http_status: int | None = None
) -> QueryFailedError:
    """The typed error for a query object that ended in failure."""
    return error_for_details(
        query.failure,
        status=str(query.status),
        site_id=query.site_id,
        query_id=query.id,
        query=query,
        http_status=http_status,
    )
