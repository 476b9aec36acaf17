"""What the emulator remembers about queries: plain records that only know how to stamp."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import orjson

__all__ = ["PageRecord", "QueryRecord", "RegisteredRecord", "encode_value", "paginate"]

TERMINAL_ASYNC = frozenset(
    {
        "initialisationFailedCacheError",
        "initialisationFailedSiteOffline",
        "initialisationFailedSiteUnreachable",
        "expiredInQueue",
        "executionFailed",
        "uploadFailed",
        "successful",
    }
)


def _default(value: Any) -> Any:
    # The database promises JSON-ready values; anything else (Decimal, date...) is sent as text
    # rather than failing the whole query.
    return str(value)


def encode_value(value: Any) -> bytes:
    """One JSON value, compact UTF-8."""
    return orjson.dumps(value, default=_default)


@dataclasses.dataclass(eq=False)
class PageRecord:
    """One result page: whole rows as a JSON array, ``data`` dropped once results expire."""

    number: int
    row_start: int
    count: int
    size: int
    data: bytes | None
    status: str = "queued"

    @property
    def row_end(self) -> int:
        """0-based inclusive index of the last row (``row_start - 1`` for an empty page)."""
        return self.row_start + self.count - 1


def paginate(rows: Iterable[Any], page_size: int) -> list[PageRecord]:
    """Split rows into pages of at most ``page_size`` bytes of JSON, never splitting a row.

    A row bigger than ``page_size`` gets a page of its own. An empty result is one empty page,
    so that ``data`` of ``[]`` can still be fetched.
    """
    pages: list[PageRecord] = []
    chunk: list[bytes] = []
    chunk_size = 2  # the brackets
    start = 0

    def flush() -> None:
        body = b"[" + b",".join(chunk) + b"]"
        pages.append(
            PageRecord(
                number=len(pages) + 1, row_start=start, count=len(chunk), size=len(body), data=body
            )
        )

    for row_index, row in enumerate(rows):
        encoded = encode_value(row)
        extra = len(encoded) + (1 if chunk else 0)
        if chunk and chunk_size + extra > page_size:
            flush()
            chunk, chunk_size, start = [], 2, row_index
            extra = len(encoded)
        chunk.append(encoded)
        chunk_size += extra
    if chunk or not pages:
        flush()
    return pages


@dataclasses.dataclass(eq=False)
class QueryRecord:
    """An immediate or async query and everything its status object reports."""

    id: str
    integrator_id: str
    site_id: str
    mode: str
    status: str
    max_time_in_queue: int
    command_size: int
    request_size: int
    created_at: datetime
    updated_at: datetime
    timing: dict[str, dict[str, datetime]] = dataclasses.field(default_factory=dict)
    execution_ms: int | None = None
    result_kind: str | None = None
    """``rows`` or ``rowsAffected`` once there is a result."""
    result_count: int = 0
    result_size: int = 0
    pages: list[PageRecord] = dataclasses.field(default_factory=list)
    parameters: list[dict[str, Any]] | None = None
    completed_at: datetime | None = None
    error: dict[str, Any] | None = None
    """errorDetails: errorType, errorCode, errorMessage."""
    results_gone: bool = False

    @property
    def terminal(self) -> bool:
        """True once the status can no longer change."""
        return self.status in TERMINAL_ASYNC

    @property
    def queue_deadline(self) -> datetime | None:
        """When a queued query expires; None until it is queued."""
        queued = self.timing.get("queued")
        if queued is None or "startTime" not in queued:
            return None
        return queued["startTime"] + timedelta(milliseconds=self.max_time_in_queue)

    def start(self, phase: str, now: datetime) -> None:
        """Stamp the start of ``phase`` (startTime) and make it the status."""
        self.timing.setdefault(phase, {})["startTime"] = now
        self.status = phase
        self.updated_at = now

    def end(self, phase: str, now: datetime) -> None:
        """Stamp the end of ``phase`` (endTime); stamps already set are kept."""
        self.timing.setdefault(phase, {})["endTime"] = now
        self.updated_at = now

    def finish(self, status: str, now: datetime, error: dict[str, Any] | None = None) -> None:
        """Move to the terminal ``status``."""
        self.status = status
        self.completed_at = now
        self.updated_at = now
        if error is not None:
            self.error = error


@dataclasses.dataclass(eq=False)
class RegisteredRecord:
    """A registered query, its schedule, metrics and latest changed result."""

    id: str
    site_id: str
    name: str
    frequency: int
    duration: int
    text: str
    execution_mode: str
    command_type: str
    parameters: list[dict[str, Any]]
    request_size: int
    created_at: datetime
    status: str = "enabled"
    completed_at: datetime | None = None
    last_hash: str | None = None
    last_error: dict[str, Any] | None = None
    last_succeeded_at: datetime | None = None
    last_failed_at: datetime | None = None
    last_execution_ms: int = 0
    succeeded: int = 0
    failed: int = 0
    result_size_sum: int = 0
    result_data: bytes | None = None
    result_parameters: list[dict[str, Any]] | None = None
    result_rows: int = 0
