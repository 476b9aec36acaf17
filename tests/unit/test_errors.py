"""Error answers: every envelope Halo has used, mapped to the class that says what to do."""

from __future__ import annotations

import pickle
from typing import Any

import orjson
import pytest

from halo_async import _convert, errors, models
from halo_async._http import error_from_response, query_failure

SITE = "3f91c577-20a8-467b-8991-b96dfb90e8c6"
QUERY = "1366ef6e-d536-457c-8f1b-eaa4352059f9"
PATH = f"/integrator/sites/{SITE}/queries/immediate"

STATUS_CLASSES = {
    400: errors.BadRequestError,
    401: errors.AuthenticationError,
    403: errors.PermissionDeniedError,
    404: errors.NotFoundError,
    410: errors.ResultExpiredError,
    413: errors.ResultTooLargeError,
    429: errors.RateLimitedError,
    500: errors.ServerError,
    502: errors.BadGatewayError,
    503: errors.SiteUnavailableError,
    504: errors.GatewayTimeoutError,
}

# REFERENCE §4.2: an immediate query that failed, as the 400 body since 23.927.
EXECUTION_FAILED: dict[str, Any] = {
    "id": QUERY,
    "integratorId": "0b7e2c1a-0000-4000-8000-000000000001",
    "siteId": SITE,
    "mode": "immediate",
    "status": "executionFailed",
    "maxTimeInQueue": 30000,
    "commandSize": 40,
    "requestSize": 60,
    "createdAt": "2025-05-27T05:23:40.100Z",
    "updatedAt": "2025-05-27T05:23:41.100Z",
    "completedAt": "2025-05-27T05:23:41.100Z",
    "statusTiming": {
        "initialising": {"startTime": "2025-05-27T05:23:40.100Z"},
        "executing": {"startTime": "2025-05-27T05:23:40.500Z"},
    },
    "errorDetails": {
        "errorType": "mssql",
        "errorCode": 208,
        "errorMessage": "Invalid object name 'PATIENT'.",
    },
    "errorCode": 208,
    "errorMessage": "Invalid object name 'PATIENT'.",
}

TOO_LARGE = {
    "errorDetails": {
        "errorType": "http",
        "errorCode": 413,
        "errorMessage": "Query was executed successfully but an error occurred preparing it to be "
        "uploaded, results were too large. Immediate query results beyond message size "
        "limit (8mb)",
    }
}


def parse(
    status: int, body: bytes, headers: dict[str, str] | None = None, method: str = "POST"
) -> errors.APIError | errors.QueryFailedError:
    return error_from_response(status, body, headers or {}, method=method, path=PATH, site_id=SITE)


def parse_api(status: int, body: Any, headers: dict[str, str] | None = None) -> errors.APIError:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    error = parse(status, raw, headers)
    assert isinstance(error, errors.APIError)
    return error


@pytest.mark.parametrize("status", sorted(STATUS_CLASSES))
@pytest.mark.parametrize(
    "envelope",
    [
        pytest.param(
            lambda s: {"error": {"status": s, "statusText": "Reason", "message": "It broke"}},
            id="A-oas-error",
        ),
        pytest.param(
            lambda s: {"status": s, "statusText": "Reason", "message": "It broke"},
            id="B-bare",
        ),
        pytest.param(lambda s: {"statusCode": s, "message": "It broke"}, id="C-gateway"),
    ],
)
def test_every_envelope_maps_to_the_status_class(status: int, envelope: Any) -> None:
    body = envelope(status)

    error = parse_api(status, body)

    assert type(error) is STATUS_CLASSES[status]
    assert error.status == status
    assert error.message == "It broke"
    assert error.method == "POST"
    assert error.path == PATH
    assert error.envelope == body
    assert str(error) == f"POST {PATH} -> {status}: It broke"


def test_a_non_json_body_keeps_its_text_as_the_message() -> None:
    error = parse_api(502, b"<html><body>502 Bad Gateway</body></html>\n")

    assert type(error) is errors.BadGatewayError
    assert error.message == "<html><body>502 Bad Gateway</body></html>"
    assert error.envelope is None
    assert error.body.startswith("<html>")


def test_an_empty_body_gets_the_reason_phrase() -> None:
    error = parse_api(404, b"")

    assert type(error) is errors.NotFoundError
    assert error.message == "Not Found"
    assert error.envelope is None


def test_an_unknown_status_still_gives_an_api_error() -> None:
    teapot = parse_api(418, b"")
    odd_server = parse_api(599, {"message": "?"})

    assert type(teapot) is errors.APIError
    assert teapot.message == "I'm a Teapot"
    assert type(odd_server) is errors.ServerError


def test_a_fhir_operation_outcome_gives_its_details_text() -> None:
    # REFERENCE §8, the OAS OperationOutcome example without the spec's stray wrapper.
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "fatal",
                "code": "exception",
                "details": {
                    "coding": [
                        {
                            "system": "http://hl7.org/fhir/dotnet-api-operation-outcome",
                            "code": "5003",
                        }
                    ],
                    "text": "Details of error",
                },
            },
            {"severity": "error", "code": "invalid", "diagnostics": "birthdate is not a date"},
        ],
    }

    error = parse_api(400, outcome)

    assert type(error) is errors.BadRequestError
    assert error.message == "Details of error; birthdate is not a date"
    assert error.envelope == outcome


@pytest.mark.parametrize(
    ("message", "cls"),
    [
        ("Site is not authoritative for this practice", errors.NotAuthoritativeError),
        ("The Halo GUID has changed; look it up again", errors.SiteGuidChangedError),
        ("Caller Ip Not Allowed", errors.PermissionDeniedError),
    ],
)
def test_403_messages_refine_the_class(message: str, cls: type[errors.APIError]) -> None:
    error = parse_api(
        403, {"error": {"status": 403, "statusText": "Forbidden", "message": message}}
    )

    assert type(error) is cls
    assert isinstance(error, errors.PermissionDeniedError)


def test_429_and_5xx_carry_retry_after() -> None:
    limited = parse_api(
        429, {"statusCode": 429, "message": "Rate limit is exceeded."}, {"Retry-After": "12"}
    )
    unavailable = parse_api(503, b"", {"Retry-After": "4"})
    no_header = parse_api(429, b"")

    assert isinstance(limited, errors.RateLimitedError)
    assert limited.retry_after == 12
    assert limited.headers["Retry-After"] == "12"
    assert isinstance(unavailable, errors.SiteUnavailableError)
    assert unavailable.retry_after == 4
    assert isinstance(no_header, errors.RateLimitedError)
    assert no_header.retry_after is None


# -- Query failures -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 500])
def test_an_execution_failed_query_body_is_a_sql_execution_error(status: int) -> None:
    error = parse(status, orjson.dumps(EXECUTION_FAILED))

    assert type(error) is errors.SqlExecutionError
    assert error.site_id == SITE
    assert error.query_id == QUERY
    assert error.status == "executionFailed"
    assert error.http_status == status
    assert error.error_type == "mssql"
    assert error.error_code == 208
    assert error.details == models.ErrorDetails(
        models.ErrorType.MSSQL, 208, "Invalid object name 'PATIENT'."
    )
    assert isinstance(error.query, models.ImmediateQuery)
    assert "Invalid object name 'PATIENT'." in str(error)
    assert QUERY in str(error)
    assert SITE in str(error)


def test_a_failed_query_body_missing_its_ids_still_raises_the_failure() -> None:
    body = {"status": "executionFailed", "errorDetails": EXECUTION_FAILED["errorDetails"]}

    error = parse(400, orjson.dumps(body))

    assert type(error) is errors.SqlExecutionError
    assert error.site_id == SITE  # from the request
    assert error.error_code == 208


def test_a_bare_http_413_error_details_body_is_a_result_transfer_error() -> None:
    error = parse(413, orjson.dumps(TOO_LARGE))

    assert type(error) is errors.ResultTransferError
    assert error.error_type == "http"
    assert error.error_code == 413
    assert error.http_status == 413
    assert "8mb" in str(error)


@pytest.mark.parametrize(
    ("error_type", "cls"),
    [
        ("mssql", errors.SqlExecutionError),
        ("fbsql", errors.SqlExecutionError),
        ("http", errors.ResultTransferError),
        ("haloLink", errors.HaloLinkError),
        ("halolink", errors.HaloLinkError),  # the 23.927 spelling
        ("HALOLINK", errors.HaloLinkError),
        ("somethingNew", errors.QueryFailedError),
    ],
)
def test_error_types_map_to_classes(error_type: str, cls: type[errors.QueryFailedError]) -> None:
    body = {**EXECUTION_FAILED, "errorDetails": {"errorType": error_type, "errorCode": 1}}

    error = parse(400, orjson.dumps(body))

    assert type(error) is cls
    assert error.error_type == error_type


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        ("initialisationFailedCacheError", errors.InitialisationFailedError),
        ("initialisationFailedSiteOffline", errors.SiteOfflineError),
        ("initialisationFailedSiteUnreachable", errors.SiteOfflineError),
        ("expiredInQueue", errors.QueryExpiredInQueueError),
        ("executionFailed", errors.SqlExecutionError),
        ("uploadFailed", errors.UploadFailedError),
    ],
)
def test_every_async_failure_status_maps_to_its_class(
    status: str, cls: type[errors.QueryFailedError]
) -> None:
    query = _convert.structure(
        {
            "id": QUERY,
            "siteId": SITE,
            "mode": "async",
            "status": status,
            "completedAt": "2025-05-27T05:23:44.900Z",
            "errorCode": 0,
            "errorMessage": "Request body doesn't contain correct schema",
            "errorDetails": {"errorType": "mssql", "errorCode": 0, "errorMessage": "why"},
        },
        models.AsyncQuery,
    )
    assert query.is_failed

    error = errors.error_for_query(query)

    assert type(error) is cls
    assert error.query is query
    assert error.status == status
    assert (error.site_id, error.query_id) == (SITE, QUERY)
    assert error.http_status is None


def test_an_async_failure_with_only_the_deprecated_pair_keeps_it() -> None:
    query = _convert.structure(
        {
            "id": QUERY,
            "siteId": SITE,
            "mode": "async",
            "status": "executionFailed",
            "errorCode": 0,
            "errorMessage": "Request body doesn't contain correct schema",
        },
        models.AsyncQuery,
    )

    error = errors.error_for_query(query)

    assert type(error) is errors.QueryFailedError
    assert error.error_code == 0
    assert "Request body doesn't contain correct schema" in str(error)


def test_query_failure_of_a_failed_async_body() -> None:
    body = {
        "id": QUERY,
        "siteId": SITE,
        "mode": "async",
        "status": "uploadFailed",
        "errorDetails": {"errorType": "http", "errorCode": 500, "errorMessage": "blob"},
    }

    error = query_failure(body, site_id=None)

    assert type(error) is errors.UploadFailedError
    assert isinstance(error.query, models.AsyncQuery)


def test_every_error_is_a_halo_error() -> None:
    classes = [getattr(errors, name) for name in errors.__all__]

    assert all(issubclass(cls, errors.HaloError) for cls in classes)
    assert issubclass(errors.ValidationError, ValueError)


def _sample_errors() -> list[errors.HaloError]:
    """One of every error the client raises, built as the client builds them."""
    details = models.ErrorDetails(error_type="mssql", error_code=208, error_message="Invalid")
    query = _convert.structure(
        {"id": QUERY, "siteId": SITE, "status": "executionFailed", "mode": "async"},
        models.AsyncQuery,
    )
    made: list[errors.HaloError] = [
        error_from_response(
            status, b'{"error": {"message": "no"}}', {"Retry-After": "3"}, method="GET", path="/x"
        )
        for status in (400, 401, 403, 404, 410, 413, 429, 500, 502, 503, 504)
    ]
    made += [
        errors.ValidationError("bad", field="site_id", value="x"),
        errors.ConfigurationError("no key"),
        errors.ClientClosedError("closed"),
        errors.SiteNotFoundError("none"),
        errors.DecodeError("not json"),
        errors.HaloConnectionError("no answer", method="GET", path="/x"),
        errors.SubmissionOutcomeUnknownError(
            "unknown", method="POST", path="/q", body={"command": {}}, cause=TimeoutError("t")
        ),
        errors.RowTypeError("row", page_number=2, row_index=3, columns=["DOB"]),
        errors.PollTimeoutError("slow", site_id=SITE, query_id=QUERY),
        errors.FanOutDeadlineError(
            "late",
            site_id=SITE,
            query_id=QUERY,
            checkpoint=models.Checkpoint(SITE, QUERY, 2, 5),
        ),
        errors.WebhookSignatureError("sig"),
        errors.error_for_query(query),
        errors.error_for_details(details, status="executionFailed", site_id=SITE, query_id=QUERY),
    ]
    return made


def test_every_error_pickles_with_its_attributes() -> None:
    samples = _sample_errors()
    classes = {type(error) for error in samples}
    assert len(classes) >= 20

    for error in samples:
        restored = pickle.loads(pickle.dumps(error))

        assert type(restored) is type(error)
        assert str(restored) == str(error)
        for name, value in vars(error).items():
            if isinstance(value, BaseException):
                assert repr(getattr(restored, name)) == repr(value)
            else:
                assert getattr(restored, name) == value, (type(error).__name__, name)


def test_a_huge_error_body_is_capped_in_the_message() -> None:
    html = b"<html>" + b"x" * 2_000_000 + b"</html>"

    error = error_from_response(502, html, {}, method="GET", path="/integrator/sites")

    assert len(str(error)) < 2_000
    assert "2000013 bytes" in str(error)
    assert len(error.body) <= 65_536
