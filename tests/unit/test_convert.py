"""The converter against the official OpenAPI document, and its tolerance rules.

Every example object the document gives for a response is parsed with the model the
client uses for that operation (error examples with the error parser), and every field of
the example must come out on the model: a field the SDK silently dropped would fail here.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from halo_async import _convert, errors, models
from halo_async._http import error_from_response
from halo_async.errors import STATUS_ERRORS

SITE = "3f91c577-20a8-467b-8991-b96dfb90e8c6"
QUERY = "1366ef6e-d536-457c-8f1b-eaa4352059f9"

# How the client reads each operation's 2xx body (client.py does the same).
PARSERS: dict[str, Callable[[Any], Any]] = {
    "getRegisteredQueries": lambda body: _convert.structure(
        body["registeredQueries"], list[models.RegisteredQuery]
    ),
    "getRegisteredQuery": lambda body: _convert.structure(body, models.RegisteredQuery),
    "getQueryStatusBatch": lambda body: _convert.structure(
        body["results"], list[models.QueryStatusResult]
    ),
    "createAsyncQuery": lambda body: _convert.structure(body, models.AsyncQuery),
    "getQuery": lambda body: _convert.structure(body, models.AsyncQuery),
}
# The body of createRegisteredQuery's 202 is only an id, which the client returns as is.
ID_ONLY = {"createRegisteredQuery"}
# FHIR resources are passed through untouched; the SDK core has no FHIR models.
FHIR_OPERATIONS = {"getFhirQuery", "postFhirSearch"}


def resolve(document: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def operations(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for item in document["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict) and "operationId" in operation:
                yield operation["operationId"], operation


def response_examples(document: dict[str, Any]) -> Iterator[tuple[str, str, str, Any]]:
    """(operationId, status, label, body) for every example of every response."""
    for operation_id, operation in operations(document):
        for status, response in operation["responses"].items():
            for media in resolve(document, response).get("content", {}).values():
                if "example" in media:
                    yield operation_id, status, "example", media["example"]
                for name, example in media.get("examples", {}).items():
                    yield operation_id, status, name, resolve(document, example)["value"]


def schema_object_examples(
    document: dict[str, Any], schema: Any, status: str | None = None
) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
    """Object examples on a response schema and the schemas it is composed of.

    The async query states are reached through the discriminator mapping, so each example
    comes with the ``status`` it belongs to.
    """
    name = (
        schema["$ref"].rsplit("/", 1)[-1] if isinstance(schema, dict) and "$ref" in schema else ""
    )
    node = resolve(document, schema)
    if not isinstance(node, dict):
        return
    if isinstance(node.get("example"), dict):
        yield name, status, node["example"]
    for key in ("allOf", "oneOf", "anyOf"):
        for part in node.get(key, []):
            if status is None or resolve(document, part) is not node:
                yield from schema_object_examples(document, part, status)
    if status is None:
        for value, ref in node.get("discriminator", {}).get("mapping", {}).items():
            yield from schema_object_examples(document, {"$ref": ref}, value)


def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower().replace("_u_t_c", "_utc")


def assert_mirrors(value: Any, wire: Any, where: str) -> None:
    """Every field of the wire object is on the model, with the same value."""
    if isinstance(wire, dict):
        for key, item in wire.items():
            attribute = snake(key)
            assert hasattr(value, attribute), f"{where}: {key!r} is not read into {value!r}"
            assert_mirrors(getattr(value, attribute), item, f"{where}.{key}")
    elif isinstance(wire, list):
        assert len(value) == len(wire), where
        for index, (got, item) in enumerate(zip(value, wire, strict=True)):
            assert_mirrors(got, item, f"{where}[{index}]")
    elif isinstance(value, dt.datetime):
        assert value.tzinfo is not None, f"{where}: naive datetime"
        assert value == dt.datetime.fromisoformat(wire), where
    else:
        if isinstance(value, enum.Enum):
            value = value.value
        assert value == wire, f"{where}: {value!r} != {wire!r}"


def parse_error(status: str, body: Any) -> errors.APIError | errors.QueryFailedError:
    return error_from_response(int(status), orjson.dumps(body), {}, method="GET", path="/x")


def test_every_response_example_of_the_oas_parses(openapi: dict[str, Any]) -> None:
    seen = set()
    for operation_id, status, label, body in response_examples(openapi):
        where = f"{operation_id} {status} {label}"
        if status.startswith("2"):
            if operation_id in ID_ONLY:
                assert isinstance(body["id"], str), where
            else:
                parsed = PARSERS[operation_id](body)
                assert_mirrors(
                    parsed, next(iter(body.values())) if isinstance(parsed, list) else body, where
                )
        else:
            error = parse_error(status, body)
            assert type(error) is STATUS_ERRORS[int(status)], where
            assert isinstance(error, errors.APIError)
            assert error.status == int(status)
            assert error.message == body["error"]["message"], where
            assert error.envelope == body
        seen.add((operation_id, status))
    # The document's response examples: the registered queries, the batch status, and the
    # Error envelope of every documented error status.
    assert {status for _, status in seen if not status.startswith("2")} == {
        "400", "401", "403", "404", "410", "500", "502", "503", "504",
    }  # fmt: skip
    assert {operation for operation, status in seen if status.startswith("2")} == {
        "createRegisteredQuery", "getRegisteredQueries", "getRegisteredQuery",
        "getQueryStatusBatch",
    }  # fmt: skip


def test_every_object_example_inside_the_response_schemas_parses(
    openapi: dict[str, Any],
) -> None:
    checked: set[tuple[str, str | None]] = set()
    for operation_id, operation in operations(openapi):
        for status, response in operation["responses"].items():
            for media in resolve(openapi, response).get("content", {}).values():
                for name, query_status, example in schema_object_examples(openapi, media["schema"]):
                    where = f"{operation_id} {status} {name} ({query_status})"
                    if "application/json" in example:
                        # The spec wraps its FHIR examples in a stray media-type key.
                        example = example["application/json"]
                    if operation_id in FHIR_OPERATIONS and status.startswith("2"):
                        continue
                    if example.get("resourceType") == "OperationOutcome":
                        error = parse_error(status, example)
                        assert isinstance(error, errors.APIError)
                        assert error.message == "Details of error", where
                    else:
                        body = {
                            "id": QUERY,
                            "siteId": SITE,
                            "mode": "async",
                            "status": query_status or "initialising",
                            **example,
                        }
                        query = PARSERS[operation_id](body)
                        assert_mirrors(query, body, where)
                        assert query.status is models.QueryStatus(body["status"])
                    checked.add((name, query_status))
    # Every one of the 11 async states' examples was reached through the discriminator.
    assert {query_status for _, query_status in checked if query_status} == {
        status.value for status in models.QueryStatus
    }


# -- Tolerance ----------------------------------------------------------------------------


def test_unknown_keys_are_ignored_at_every_level() -> None:
    body = {
        "id": SITE,
        "brandNewField": {"nested": True},
        "practiceMetadata": {"practiceName": "Clinic", "someNewMetadata": 1},
        "catalogue": [{"name": "Patients", "isDefault": True, "sizeBytes": 10}],
    }

    site = _convert.structure(body, models.Site)

    assert site.practice_metadata == models.PracticeMetadata(practice_name="Clinic")
    assert site.catalogue == (models.Catalogue("Patients", True),)


@pytest.mark.parametrize(
    ("cls", "body", "field", "value"),
    [
        (models.AsyncQuery, {"status": "pausedByPractice"}, "status", "pausedByPractice"),
        (models.AsyncQuery, {"mode": "batch"}, "mode", "batch"),
        (models.Site, {"availability": "unavailable"}, "availability", "unavailable"),
        (models.Site, {"pmsType": "MedicalDirector"}, "pms_type", "MedicalDirector"),
        (models.Site, {"status": "suspended"}, "status", "suspended"),
        (models.Page, {"status": "expired"}, "status", "expired"),
        (models.ErrorDetails, {"errorType": "halolink"}, "error_type", "halolink"),
        (models.Parameter, {"direction": "both"}, "direction", "both"),
        (models.RegisteredQuery, {"status": "paused"}, "status", "paused"),
        (models.QueryStatusResult, {"status": "expired"}, "status", "expired"),
    ],
)
def test_unknown_enum_values_are_kept_as_plain_strings(
    cls: type[Any], body: dict[str, Any], field: str, value: str
) -> None:
    required = {
        models.AsyncQuery: {"id": QUERY, "siteId": SITE, "status": "queued", "mode": "async"},
        models.Site: {"id": SITE},
        models.Page: {"pageNumber": 1},
        models.RegisteredQuery: {"id": QUERY},
        models.QueryStatusResult: {"queryId": QUERY, "status": "found"},
    }.get(cls, {})

    parsed = _convert.structure({**required, **body}, cls)

    got = getattr(parsed, field)
    assert got == value
    assert type(got) is str


def test_known_enum_values_become_members() -> None:
    query = _convert.structure(
        {"id": QUERY, "siteId": SITE, "status": "uploadFailed", "mode": "async"}, models.AsyncQuery
    )

    assert query.status is models.QueryStatus.UPLOAD_FAILED
    assert query.mode is models.QueryMode.ASYNC


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ("2022-08-24T14:15:22Z", dt.datetime(2022, 8, 24, 14, 15, 22, tzinfo=dt.UTC)),
        ("2025-05-27T05:23:40.983Z", dt.datetime(2025, 5, 27, 5, 23, 40, 983000, tzinfo=dt.UTC)),
        # .NET writes 7 fractional digits (webhook occurredAt); the 7th is below microseconds.
        (
            "2026-03-05T14:30:00.1234567+00:00",
            dt.datetime(2026, 3, 5, 14, 30, 0, 123456, tzinfo=dt.UTC),
        ),
        # An Australian practice's offset: the same instant as 02:00 UTC.
        ("2024-01-01T12:00:00+10:00", dt.datetime(2024, 1, 1, 2, 0, tzinfo=dt.UTC)),
        # No offset: the API documents UTC stamps.
        ("2022-12-25T12:25:01", dt.datetime(2022, 12, 25, 12, 25, 1, tzinfo=dt.UTC)),
    ],
)
def test_datetimes_are_timezone_aware(wire: str, expected: dt.datetime) -> None:
    phase = _convert.structure({"startTime": wire, "endTime": wire}, models.StatusPhase)

    assert phase.start_time == expected
    assert phase.start_time is not None
    assert phase.start_time.tzinfo is not None
    # Aware datetimes compare and subtract safely against now().
    assert dt.datetime.now(dt.UTC) - phase.start_time > dt.timedelta(0)


def test_results_is_read_as_result_and_result_wins_when_both_are_sent() -> None:
    pages = {"rows": 14, "size": 1, "pages": [{"pageNumber": 1, "status": "cached"}]}
    base = {"id": QUERY, "siteId": SITE, "status": "successful", "mode": "async"}

    aliased = _convert.structure({**base, "results": pages}, models.AsyncQuery)
    both = _convert.structure(
        {**base, "result": {**pages, "rows": 3}, "results": pages}, models.AsyncQuery
    )

    assert aliased.result == models.AsyncResult(
        size=1, rows=14, pages=(models.Page(1, models.PageStatus.CACHED),)
    )
    assert both.result is not None
    assert both.result.rows == 3


def test_wire_names_are_camel_case_with_explicit_overrides() -> None:
    assert _convert.camel("status_timing") == "statusTiming"
    assert _convert.camel("id") == "id"
    site = _convert.structure(
        {
            "id": SITE,
            "clientTimestampUTC": "2022-12-25T12:25:01Z",
            "heartbeatTimestampUTC": "2022-12-25T12:26:01Z",
        },
        models.Site,
    )
    assert site.client_timestamp_utc == dt.datetime(2022, 12, 25, 12, 25, 1, tzinfo=dt.UTC)
    assert site.heartbeat_timestamp_utc == dt.datetime(2022, 12, 25, 12, 26, 1, tzinfo=dt.UTC)


def test_sequences_become_tuples_so_models_stay_hashable() -> None:
    query = _convert.structure(
        {
            "id": QUERY,
            "siteId": SITE,
            "status": "successful",
            "mode": "async",
            "result": {"pages": [{"pageNumber": 1}, {"pageNumber": 2}]},
        },
        models.AsyncQuery,
    )

    assert isinstance(query.pages, tuple)
    assert query.pages[0].status is models.PageStatus.QUEUED  # the OAS default
    assert hash(query) == hash(
        _convert.structure(_convert.converter.unstructure(query), models.AsyncQuery)
    )


def test_command_unstructures_to_the_wire_shape() -> None:
    command = models.Command(
        "EXEC BPSPATIENTS.dbo.BP_GetAppointmentBookUsers",
        execution_mode=models.ExecutionMode.READER,
        type=models.CommandType.STORED_PROCEDURE,
        parameters=[
            models.Parameter("@aptdate", "Date", dt.date(2025, 5, 27)),
            models.Parameter.return_value("@rc"),
            models.Parameter(name="@note", value=None),
        ],
    )

    wire = _convert.unstructure_command(command)

    assert wire == {
        "text": "EXEC BPSPATIENTS.dbo.BP_GetAppointmentBookUsers",
        "executionMode": "reader",
        "type": "storedProcedure",
        "parameters": [
            {"name": "@aptdate", "type": "Date", "value": "2025-05-27"},
            {"name": "@rc", "type": "Int", "direction": "returnValue"},
            {"name": "@note"},
        ],
    }
    # JSON-ready: plain strings, not enum members.
    assert orjson.loads(orjson.dumps(wire)) == wire
    assert all(type(value) is str for value in wire["parameters"][1].values())


@pytest.mark.parametrize(
    ("value", "cls", "names"),
    [
        ({}, models.Site, "<Site>.id"),
        ({"id": QUERY, "siteId": SITE, "mode": "async"}, models.AsyncQuery, "<AsyncQuery>.status"),
        ({"pageNumber": "first"}, models.Page, "<Page>.page_number"),
        ("sites", list[models.Site], "<list[Site]>[0]"),
    ],
)
def test_a_body_that_does_not_fit_raises_decode_error_naming_the_field(
    value: Any, cls: Any, names: str
) -> None:
    with pytest.raises(errors.DecodeError) as caught:
        _convert.structure(value, cls)

    assert names in str(caught.value)
    assert isinstance(caught.value, errors.HaloError)


@pytest.mark.parametrize("bad_id", [None, 12345, {"id": "x"}, ["x"], True])
def test_a_null_or_wrong_typed_id_is_a_decode_error_not_a_string_of_it(bad_id: Any) -> None:
    body = {"id": bad_id, "siteId": "3f91c577-20a8-467b-8991-b96dfb90e8c6", "status": "queued"}
    body["mode"] = "async"

    with pytest.raises(errors.DecodeError, match=r"expected str @ <AsyncQuery>\.id"):
        _convert.structure(body, models.AsyncQuery)
    with pytest.raises(errors.DecodeError):
        _convert.structure([{"queryId": bad_id, "status": "found"}], list[models.QueryStatusResult])
