"""The JSON the emulator sends: records rendered in the OAS 26.619.10213 shapes."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

from halo_async.emulator._records import PageRecord, QueryRecord, RegisteredRecord
from halo_async.emulator._sites import Site

__all__ = [
    "format_time",
    "immediate_json",
    "page_headers",
    "page_json",
    "query_json",
    "registered_json",
    "registered_result_json",
    "site_json",
]

_PHASES = ("initialising", "queued", "executing", "uploading")


def format_time(value: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and ``Z``: ``2025-05-27T05:23:40.100Z``."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _error_fields(query: QueryRecord) -> dict[str, Any]:
    if query.error is None:
        return {}
    # errorDetails is current; the top-level pair is deprecated but still required on async
    # failures (REFERENCE §11 #9), so both are sent.
    return {
        "errorCode": query.error["errorCode"],
        "errorMessage": query.error["errorMessage"],
        "errorDetails": dict(query.error),
    }


def _common(query: QueryRecord) -> dict[str, Any]:
    return {
        "id": query.id,
        "integratorId": query.integrator_id,
        "siteId": query.site_id,
        "mode": query.mode,
        "status": query.status,
        "maxTimeInQueue": query.max_time_in_queue,
        "commandSize": query.command_size,
        "requestSize": query.request_size,
        "createdAt": format_time(query.created_at),
        "updatedAt": format_time(query.updated_at),
    }


def _async_timing(query: QueryRecord) -> dict[str, Any]:
    return {
        phase: {key: format_time(stamp) for key, stamp in query.timing[phase].items()}
        for phase in _PHASES
        if phase in query.timing
    }


def _immediate_timing(query: QueryRecord) -> dict[str, Any]:
    # Immediate statusTiming carries startTime only (REFERENCE §11 #7).
    return {
        phase: {"startTime": format_time(stamps["startTime"])}
        for phase, stamps in query.timing.items()
        if "startTime" in stamps
    }


def _page_summary(page: PageRecord) -> dict[str, Any]:
    return {
        "pageNumber": page.number,
        "status": page.status,
        "size": page.size,
        "rows": {"count": page.count, "rangeStart": page.row_start, "rangeEnd": page.row_end},
    }


def query_json(query: QueryRecord) -> dict[str, Any]:
    """The status object of an async (or, for getQuery, immediate) query."""
    body = _common(query)
    if query.mode == "immediate":
        body["statusTiming"] = _immediate_timing(query)
    else:
        body["statusTiming"] = _async_timing(query)
    if query.execution_ms is not None:
        body["metrics"] = {"sqlExecutionDuration": query.execution_ms}
    if query.result_kind is not None:
        result: dict[str, Any] = {query.result_kind: query.result_count, "size": query.result_size}
        if query.mode == "async":
            result["pages"] = [_page_summary(page) for page in query.pages]
        body["result"] = result
        if query.status == "successful":
            body["resultSize"] = query.result_size
    if query.completed_at is not None:
        body["completedAt"] = format_time(query.completed_at)
    body.update(_error_fields(query))
    return body


def immediate_json(query: QueryRecord, data: bytes | None) -> dict[str, Any]:
    """SuccessfulImmediateQuery (with the result data) or ExecutionFailedImmediateQuery."""
    body = query_json(query)
    if query.status == "successful" and query.result_kind is not None:
        result = body["result"]
        if data is not None:
            result["data"] = _b64(data)
        result["parameters"] = query.parameters or []
    return body


def page_json(query: QueryRecord, page: PageRecord) -> dict[str, Any]:
    """A result page body: ``{data, parameters}``, or ``{parameters}`` for a non-query."""
    body: dict[str, Any] = {}
    if page.data is not None:
        body["data"] = _b64(page.data)
    body["parameters"] = query.parameters or []
    return body


def page_headers(page: PageRecord) -> dict[str, str]:
    """The page headers: sizes in bytes of the page's JSON, 0-based inclusive row range."""
    return {
        "Size": str(page.size),
        "Rows-Count": str(page.count),
        "Rows-Range-Start": str(page.row_start),
        "Rows-Range-End": str(page.row_end),
    }


def site_json(site: Site, now: datetime) -> dict[str, Any]:
    """SiteForIntegrator, current and deprecated fields."""
    heartbeat = site.last_heartbeat(now)
    # The practice server's clock runs a few seconds off Halo's, as real ones do.
    client_time = heartbeat - timedelta(seconds=site.database_seed % 7)
    return {
        "id": site.id,
        "pmsType": site.pms_type,
        "availability": site.availability,
        "status": site.status,
        "haloLinkVersion": site.halo_link_version,
        "enrichedAt": format_time(site.enriched_at),
        "catalogue": [
            {"name": catalogue.name, "isDefault": bool(catalogue.is_default)}
            for catalogue in site.database.catalogues
        ],
        "practiceMetadata": {
            "pmsType": site.pms_type,
            "practiceName": site.practice_name,
            "practiceManagementSiteId": site.pms_site_id,
            "practiceManagementVersion": site.practice_management_version,
        },
        "name": site.practice_name,
        "practiceManagementSiteId": site.pms_site_id,
        "practiceManagementName": site.pms_name,
        "practiceManagementVersion": site.practice_management_version,
        "createdAt": format_time(site.created_at),
        "authoritative": site.authoritative,
        "clientTimestampUTC": format_time(client_time),
        "heartbeatTimestampUTC": format_time(heartbeat),
    }


def registered_json(query: RegisteredRecord) -> dict[str, Any]:
    """RegisteredQuery."""
    metrics: dict[str, Any] = {
        "lastExecutionDuration": query.last_execution_ms,
        "executionSucceededCount": query.succeeded,
        "executionFailedCount": query.failed,
        "resultSizeSum": query.result_size_sum,
        "requestSize": query.request_size,
    }
    if query.last_succeeded_at is not None:
        metrics["lastSucceededAt"] = format_time(query.last_succeeded_at)
    if query.last_failed_at is not None:
        metrics["lastFailedAt"] = format_time(query.last_failed_at)
    body: dict[str, Any] = {
        "id": query.id,
        "name": query.name,
        "registeredQueryType": "query",
        "status": query.status,
        "frequency": query.frequency,
        "duration": query.duration,
        "createdAt": format_time(query.created_at),
        "metrics": metrics,
    }
    if query.last_hash is not None:
        body["lastHash"] = query.last_hash
    if query.last_error is not None:
        body["lastErrorDetails"] = dict(query.last_error)
    if query.completed_at is not None:
        body["completedAt"] = format_time(query.completed_at)
    return body


def registered_result_json(query: RegisteredRecord) -> dict[str, Any]:
    """RegisteredQueryResult: the latest changed result."""
    data = query.result_data if query.result_data is not None else b"[]"
    return {
        "data": _b64(data),
        "parameters": query.result_parameters,
        "rows": query.result_rows,
        "size": len(data),
    }
