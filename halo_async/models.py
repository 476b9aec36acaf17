"""The objects of the Halo Cloud API for Integrators, as frozen attrs classes.

Fields are the wire's camelCase names in Python spelling (``statusTiming`` is
``status_timing``). The one converter in ``_convert`` turns JSON into these classes;
nothing here does I/O or (de)serialisation, except that a query's ``status_timing`` and
``metrics`` may be kept as sent and parsed (by ``_convert``) when first read.

Forward compatibility: Halo adds fields and enum values without notice. Unknown fields are
ignored, and an enum field holds either the known member or, for a value this version does
not know, the plain string. Members are ``str`` enums, so ``status == "successful"`` works
either way.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import attrs

from halo_async import _decode

__all__ = [
    "AsyncQuery",
    "AsyncResult",
    "BatchStatus",
    "Catalogue",
    "Checkpoint",
    "Command",
    "CommandType",
    "Direction",
    "ErrorDetails",
    "ErrorType",
    "ExecutionMode",
    "ImmediateQuery",
    "ImmediateResult",
    "Page",
    "PageStatus",
    "Parameter",
    "PmsType",
    "PracticeMetadata",
    "QueryMetrics",
    "QueryMode",
    "QueryStatus",
    "QueryStatusResult",
    "RegisteredQuery",
    "RegisteredQueryMetrics",
    "RegisteredQueryResult",
    "RegisteredQueryStatus",
    "ResultPage",
    "RowRange",
    "Site",
    "SiteAvailability",
    "SiteStatus",
    "StatusPhase",
    "StatusTiming",
]


# -- Enums ------------------------------------------------------------------------------------


class QueryStatus(enum.StrEnum):
    """The status of a query: the 11 async statuses, of which immediates use two."""

    INITIALISING = "initialising"
    INITIALISATION_FAILED_CACHE_ERROR = "initialisationFailedCacheError"
    INITIALISATION_FAILED_SITE_OFFLINE = "initialisationFailedSiteOffline"
    INITIALISATION_FAILED_SITE_UNREACHABLE = "initialisationFailedSiteUnreachable"
    QUEUED = "queued"
    EXPIRED_IN_QUEUE = "expiredInQueue"
    EXECUTING = "executing"
    EXECUTION_FAILED = "executionFailed"
    UPLOADING = "uploading"
    UPLOAD_FAILED = "uploadFailed"
    SUCCESSFUL = "successful"

    @property
    def is_terminal(self) -> bool:
        """True when the query will not change status again."""
        return self in _TERMINAL_STATUSES

    @property
    def is_successful(self) -> bool:
        """True when every result page is stored (or the immediate result is in hand)."""
        return self is QueryStatus.SUCCESSFUL

    @property
    def is_failed(self) -> bool:
        """True for every terminal status other than ``successful``."""
        return self in _TERMINAL_STATUSES and self is not QueryStatus.SUCCESSFUL


_TERMINAL_STATUSES = frozenset(
    {
        QueryStatus.INITIALISATION_FAILED_CACHE_ERROR,
        QueryStatus.INITIALISATION_FAILED_SITE_OFFLINE,
        QueryStatus.INITIALISATION_FAILED_SITE_UNREACHABLE,
        QueryStatus.EXPIRED_IN_QUEUE,
        QueryStatus.EXECUTION_FAILED,
        QueryStatus.UPLOAD_FAILED,
        QueryStatus.SUCCESSFUL,
    }
)


class QueryMode(enum.StrEnum):
    """Whether a query answered in its POST (immediate) or was queued (async)."""

    IMMEDIATE = "immediate"
    ASYNC = "async"


class ExecutionMode(enum.StrEnum):
    """How Halo Link runs the command: rows, rows affected, or one value."""

    READER = "reader"
    NON_QUERY = "nonQuery"
    SCALAR = "scalar"


class CommandType(enum.StrEnum):
    """SQL text, or the name of a stored procedure (experimental in the API)."""

    TEXT = "text"
    STORED_PROCEDURE = "storedProcedure"


class Direction(enum.StrEnum):
    """The direction of a command parameter."""

    INPUT = "input"
    OUTPUT = "output"
    INPUT_OUTPUT = "inputOutput"
    RETURN_VALUE = "returnValue"


class PageStatus(enum.StrEnum):
    """A result page's upload state; only ``cached`` pages can be fetched."""

    QUEUED = "queued"
    UPLOADING = "uploading"
    CACHED = "cached"


class ErrorType(enum.StrEnum):
    """Where a query failed: the database engine, the transfer, or Halo Link itself."""

    MSSQL = "mssql"
    FBSQL = "fbsql"
    HTTP = "http"
    HALO_LINK = "haloLink"


class BatchStatus(enum.StrEnum):
    """Whether the batch status endpoint knew a query id."""

    FOUND = "found"
    NOT_FOUND = "notFound"


class PmsType(enum.StrEnum):
    """The practice management software behind a site."""

    BEST_PRACTICE = "BestPractice"
    ZEDMED = "Zedmed"
    D4W = "D4w"


class SiteAvailability(enum.StrEnum):
    """Whether Halo has heard from the site's Halo Link recently."""

    ONLINE = "online"
    OFFLINE = "offline"
    UNREACHABLE = "unreachable"


class SiteStatus(enum.StrEnum):
    """The lifecycle state of a site's Halo Link install."""

    INITIALISING = "initialising"
    ACTIVE = "active"
    REMOVED = "removed"
    UNINSTALLED = "uninstalled"


class RegisteredQueryStatus(enum.StrEnum):
    """The lifecycle state of a registered (recurring) query."""

    INITIALISATION_FAILED_CACHE_ERROR = "initialisationFailedCacheError"
    ENABLED = "enabled"
    CANCELLED = "cancelled"
    COMPLETED = "completed"


# -- Commands ---------------------------------------------------------------------------------

ParameterValue = str | int | float | bool | Decimal | dt.date | dt.datetime | dt.time | None


@attrs.frozen
class Parameter:
    """A command parameter, e.g. ``Parameter("@id", "Int", 42)``.

    ``type`` is one of the API's 32 type names (``Int``, ``NVarChar``, ``Date``...), checked
    before a query is sent. ``value`` is kept as given and travels as a plain string: ints,
    decimals, dates and datetimes are converted on the wire (booleans become ``"1"``/
    ``"0"``). Output values come back as strings and are never base64-decoded.
    """

    name: str | None = None
    type: str | None = None
    value: ParameterValue = None
    direction: Direction | str | None = None
    size: int | None = None

    @classmethod
    def output(cls, name: str, type: str, *, size: int | None = None) -> Parameter:
        """An output parameter, filled in by the procedure or batch."""
        return cls(name=name, type=type, direction=Direction.OUTPUT, size=size)

    @classmethod
    def return_value(cls, name: str, type: str = "Int") -> Parameter:
        """The procedure's ``RETURN`` value."""
        return cls(name=name, type=type, direction=Direction.RETURN_VALUE)


def _parameter_tuple(parameters: Iterable[Parameter]) -> tuple[Parameter, ...]:
    return tuple(parameters)


@attrs.frozen
class Command:
    """The SQL (or procedure name) Halo Link runs, and how."""

    text: str
    execution_mode: ExecutionMode | str = ExecutionMode.READER
    type: CommandType | str = CommandType.TEXT
    parameters: tuple[Parameter, ...] = attrs.field(default=(), converter=_parameter_tuple)


# -- Queries ----------------------------------------------------------------------------------


@attrs.frozen
class StatusPhase:
    """When a query entered (``start_time``) and left (``end_time``) one status."""

    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None


@attrs.frozen
class StatusTiming:
    """The server's UTC stamps of each phase of a query."""

    initialising: StatusPhase | None = None
    queued: StatusPhase | None = None
    executing: StatusPhase | None = None
    uploading: StatusPhase | None = None
    downloading: StatusPhase | None = None


@attrs.frozen
class QueryMetrics:
    """``sql_execution_duration``: ms from Halo Link sending the SQL until the database answered."""

    sql_execution_duration: int | None = None


@attrs.frozen
class ErrorDetails:
    """Why a query failed: ``error_type`` mssql/fbsql (``error_code`` is the engine's number),
    http (a transfer error, e.g. 413) or haloLink."""

    error_type: ErrorType | str | None = None
    error_code: int | None = None
    error_message: str | None = None


@attrs.frozen
class RowRange:
    """The rows a page holds: ``count``, and the range as the server numbers it."""

    count: int | None = None
    range_start: int | None = None
    range_end: int | None = None


@attrs.frozen
class Page:
    """One page of an async result, as listed in the query's status."""

    page_number: int
    status: PageStatus | str = PageStatus.QUEUED
    size: int | None = None
    rows: RowRange | None = None

    @property
    def is_cached(self) -> bool:
        """True when the page can be fetched."""
        return self.status == PageStatus.CACHED


@attrs.frozen
class ImmediateResult:
    """The inline result of an immediate query: rows as base64 JSON in ``data``, or
    ``rows_affected`` for a ``nonQuery``."""

    size: int | None = None
    rows: int | None = None
    rows_affected: int | None = None
    data: str | None = None
    parameters: tuple[Parameter, ...] = ()

    def decode_rows(self) -> list[dict[str, Any]]:
        """The result rows, decoded from ``data`` (empty for a ``nonQuery``)."""
        return _decode.decode_rows(self.data) if self.data is not None else []


@attrs.frozen
class AsyncResult:
    """The summary of an async query's result: totals and the list of pages."""

    size: int | None = None
    rows: int | None = None
    rows_affected: int | None = None
    pages: tuple[Page, ...] = ()


# An unknown status (a plain string) is not terminal: a poller keeps going until its
# deadline rather than mistaking a new intermediate state for an end. These read the status
# directly, not through QueryStatus' properties: a fan-out asks them of every answer.
_FAILED_STATUSES = _TERMINAL_STATUSES - {QueryStatus.SUCCESSFUL}


@attrs.frozen
class _QueryBase:
    id: str
    site_id: str
    status: QueryStatus | str
    mode: QueryMode | str
    integrator_id: str | None = None
    max_time_in_queue: int | None = None
    command_size: int | None = None
    request_size: int | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None
    status_timing: StatusTiming | None = None
    metrics: QueryMetrics | None = None
    error_details: ErrorDetails | None = None
    error_code: int | None = None
    """Deprecated since 23.927: read ``error_details.error_code``."""
    error_message: str | None = None
    """Deprecated since 23.927: read ``error_details.error_message``."""

    @property
    def is_terminal(self) -> bool:
        """True when the query will not change status again (False for unknown statuses)."""
        return isinstance(status := self.status, QueryStatus) and status in _TERMINAL_STATUSES

    @property
    def is_successful(self) -> bool:
        """True when the query succeeded."""
        return self.status is QueryStatus.SUCCESSFUL

    @property
    def is_failed(self) -> bool:
        """True when the query ended in a failure status."""
        return isinstance(status := self.status, QueryStatus) and status in _FAILED_STATUSES

    @property
    def failure(self) -> ErrorDetails | None:
        """The failure's details: ``error_details``, else the deprecated pair, else None."""
        if self.error_details is not None:
            return self.error_details
        if self.error_code is not None or self.error_message is not None:
            return ErrorDetails(error_code=self.error_code, error_message=self.error_message)
        return None


@attrs.frozen
class ImmediateQuery(_QueryBase):
    """An immediate query: its result arrives inline, in the POST's answer."""

    result: ImmediateResult | None = None

    def decode_rows(self) -> list[dict[str, Any]]:
        """The result rows (empty when there is no reader result)."""
        return self.result.decode_rows() if self.result is not None else []

    @property
    def rows_affected(self) -> int | None:
        """Rows changed by a ``nonQuery`` command."""
        return self.result.rows_affected if self.result is not None else None

    @property
    def output_parameters(self) -> tuple[Parameter, ...]:
        """The command's parameters with output values filled in."""
        return self.result.parameters if self.result is not None else ()

    def scalar(self) -> Any:
        """The first value of the first row: what a ``scalar`` command returns."""
        if self.result is None or self.result.data is None:
            return None
        return _decode.first_value(_decode.decode_data(self.result.data))


@attrs.frozen
class AsyncQuery(_QueryBase):
    """An async query in any of its 11 statuses; ``result`` once it is uploading/successful."""

    result: AsyncResult | None = None
    result_size: int | None = None

    @property
    def pages(self) -> tuple[Page, ...]:
        """The result pages listed so far (empty before upload starts)."""
        return self.result.pages if self.result is not None else ()

    @property
    def cached_pages(self) -> tuple[Page, ...]:
        """The pages whose status says ``cached``."""
        pages = self.pages
        if not pages:  # (before upload, every poll: no generator for nothing)
            return ()
        return tuple(page for page in pages if page.is_cached)

    @property
    def fetchable_pages(self) -> tuple[Page, ...]:
        """The pages that can be fetched now: every listed page once the query succeeded,
        the ``cached`` ones before.

        The official document lists a query's pages only at ``successful`` and defaults a
        page's absent ``status`` to ``queued``; a successful query's pages are all cached,
        whatever their status field says.
        """
        return self.pages if self.is_successful else self.cached_pages


class _ParsedOnRead:
    """A model's slot that ``_convert`` may fill with the JSON object as sent (a dict, which
    the field's type never is), parsed and kept when first read.

    ``status_timing`` is five phases of ten timestamps in every status answer, and a
    fan-out's polls read none of them (nor ``metrics``): parsing them on each answer was a
    sixth of the client's own work per query, and five more objects per query in flight
    for the garbage collector to walk. Every read goes through here (attribute access,
    ``==``, ``repr``, ``attrs.asdict``, pickling), so an instance reads the same either way.
    """

    __slots__ = ("_get", "_parse", "_set", "_slot")

    def __init__(self, slot: Any, parse: Any) -> None:
        self._slot = slot  # the member descriptor attrs made for the field
        # Its methods bound once: ``slot.__get__`` would make a method object every time.
        self._get, self._set = slot.__get__, slot.__set__
        self._parse = parse

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        value = self._get(instance, owner)
        if type(value) is dict:
            value = self._parse(value)
            self._set(instance, value)
        return value

    def __set__(self, instance: object, value: Any) -> None:
        self._set(instance, value)  # attrs' __init__ (frozen: nothing else sets)

    def __delete__(self, instance: object) -> None:
        self._slot.__delete__(instance)


def _parse_status_timing(value: dict[str, Any]) -> StatusTiming | None:
    from halo_async import _convert

    return _convert.status_timing(value)


def _parse_metrics(value: dict[str, Any]) -> QueryMetrics | None:
    from halo_async import _convert

    return _convert.query_metrics(value)


_QueryBase.status_timing = _ParsedOnRead(  # type: ignore[assignment]
    vars(_QueryBase)["status_timing"], _parse_status_timing
)
_QueryBase.metrics = _ParsedOnRead(  # type: ignore[assignment]
    vars(_QueryBase)["metrics"], _parse_metrics
)


@attrs.frozen
class QueryStatusResult:
    """One row of a batch status answer: ``query`` is None when ``status`` is notFound."""

    query_id: str
    status: BatchStatus | str
    query: AsyncQuery | None = None


# -- Result pages -----------------------------------------------------------------------------


@attrs.frozen
class ResultPage:
    """One fetched, decoded result page of an async query.

    ``rows`` are the decoded row objects, keyed by column name as the database named them.
    ``size``, ``rows_count``, ``range_start`` and ``range_end`` come from the response's
    ``Size``, ``Rows-Count``, ``Rows-Range-Start`` and ``Rows-Range-End`` headers (None when
    absent). Rely on page order and ``len(rows)`` rather than the ranges: the spec numbers
    them inconsistently.
    """

    site_id: str
    query_id: str
    page_number: int
    rows: list[dict[str, Any]]
    parameters: tuple[Parameter, ...] = ()
    size: int | None = None
    rows_count: int | None = None
    range_start: int | None = None
    range_end: int | None = None


@attrs.frozen
class Checkpoint:
    """Where a job's row stream stands: enough for another process to resume it.

    ``next_page`` is the page holding the next row not yet delivered, and ``next_row`` that
    row's offset within the page (0: the page's first row). Store it with :meth:`as_dict`
    and load it with :meth:`from_dict`; a checkpoint saved before ``next_row`` existed
    (dict or pickle) loads as the start of its page.
    """

    site_id: str
    query_id: str
    next_page: int = 1
    next_row: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The checkpoint as plain JSON-ready data."""
        return {
            "site_id": self.site_id,
            "query_id": self.query_id,
            "next_page": self.next_page,
            "next_row": self.next_row,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Checkpoint:
        """A checkpoint from :meth:`as_dict`'s data (``next_page``/``next_row`` optional)."""
        return cls(
            site_id=data["site_id"],
            query_id=data["query_id"],
            next_page=data.get("next_page", 1),
            next_row=data.get("next_row", 0),
        )

    def __getstate__(self) -> dict[str, Any]:
        return self.as_dict()

    def __setstate__(self, state: Mapping[str, Any] | tuple[Any, ...]) -> None:
        # attrs pickled slotted classes as a tuple of field values before 22.2, and a
        # checkpoint pickled before next_row existed lacks it: both still load.
        if isinstance(state, tuple):
            state = dict(zip(("site_id", "query_id", "next_page", "next_row"), state, strict=False))
        for name, value in Checkpoint.from_dict(state).as_dict().items():
            object.__setattr__(self, name, value)


# -- Sites ------------------------------------------------------------------------------------


@attrs.frozen
class Catalogue:
    """A database a site offers; pass its ``name`` as a query's ``catalogue``."""

    name: str
    is_default: bool = False


@attrs.frozen
class PracticeMetadata:
    """What Halo last learned about the practice from its site."""

    pms_type: PmsType | str | None = None
    practice_name: str | None = None
    practice_management_site_id: str | None = None
    practice_management_version: str | None = None


@attrs.frozen
class Site:
    """A Halo site (one Halo Link connection to one practice database), by its Halo GUID ``id``."""

    id: str
    pms_type: PmsType | str | None = None
    availability: SiteAvailability | str | None = None
    status: SiteStatus | str | None = None
    halo_link_version: str | None = None
    enriched_at: dt.datetime | None = None
    catalogue: tuple[Catalogue, ...] = ()
    practice_metadata: PracticeMetadata | None = None
    authoritative: bool | None = None
    """Deprecated in the API, yet the only way to tell a backup site from the live one."""
    name: str | None = None
    """Deprecated: read ``practice_metadata.practice_name``."""
    practice_management_site_id: str | None = None
    """Deprecated: read ``practice_metadata.practice_management_site_id``."""
    practice_management_name: str | None = None
    """Deprecated: read ``pms_type``."""
    practice_management_version: str | None = None
    """Deprecated: the version at install time, never updated."""
    created_at: dt.datetime | None = None
    """Deprecated."""
    client_timestamp_utc: dt.datetime | None = attrs.field(
        default=None, metadata={"wire": "clientTimestampUTC"}
    )
    """Deprecated: the practice server's clock at its last heartbeat."""
    heartbeat_timestamp_utc: dt.datetime | None = attrs.field(
        default=None, metadata={"wire": "heartbeatTimestampUTC"}
    )
    """Deprecated: when Halo last heard the site's heartbeat."""

    @property
    def default_catalogue(self) -> str | None:
        """The name of the catalogue queries use when they name none."""
        return next((c.name for c in self.catalogue if c.is_default), None)


# -- Registered queries -----------------------------------------------------------------------


@attrs.frozen
class RegisteredQueryMetrics:
    """Run counters and stamps of a registered query."""

    last_succeeded_at: dt.datetime | None = None
    last_failed_at: dt.datetime | None = None
    last_execution_duration: int | None = None
    execution_succeeded_count: int | None = None
    execution_failed_count: int | None = None
    result_size_sum: int | None = None
    request_size: int | None = None


@attrs.frozen
class RegisteredQuery:
    """A query Halo Link re-runs every ``frequency`` seconds for ``duration`` seconds."""

    id: str
    name: str | None = None
    registered_query_type: str | None = None
    status: RegisteredQueryStatus | str | None = None
    frequency: int | None = None
    duration: int | None = None
    created_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None
    last_hash: str | None = None
    last_error_details: ErrorDetails | None = None
    metrics: RegisteredQueryMetrics | None = None


@attrs.frozen
class RegisteredQueryResult:
    """The latest stored result of a registered query."""

    data: str | None = None
    parameters: tuple[Parameter, ...] | None = None
    rows: int | None = None
    size: int | None = None

    def decode_rows(self) -> list[dict[str, Any]]:
        """The result rows, decoded from ``data``."""
        return _decode.decode_rows(self.data) if self.data is not None else []


def parameters_from_mapping(values: Mapping[str, Parameter | ParameterValue]) -> list[Parameter]:
    """``{"@id": 5}`` -> input parameters with no declared type (Halo converts implicitly)."""
    return [
        value if isinstance(value, Parameter) else Parameter(name=name, value=value)
        for name, value in values.items()
    ]
