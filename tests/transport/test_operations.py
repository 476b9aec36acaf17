"""Every API operation on the wire: the exact request sent and the result parsed.

Responses are the OpenAPI document's own examples where it has them, else the documented
examples of REFERENCE.md. HaloMock records each request at the transport's network round
trip; the tests read back the method, URL (path and query string), headers and JSON body
the client sent.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs
import orjson
import pytest
import yarl

from halo_async import HaloClient, errors, models
from halo_async.models import (
    BatchStatus,
    Command,
    CommandType,
    Direction,
    ExecutionMode,
    Parameter,
    PmsType,
    QueryStatus,
    RegisteredQueryStatus,
    SiteAvailability,
    SiteStatus,
)

if TYPE_CHECKING:
    from conftest import HaloMock, OpenAPI

BASE = "https://api.haloconnect.io"
SITE = "3f91c577-20a8-467b-8991-b96dfb90e8c6"
QUERY = "1366ef6e-d536-457c-8f1b-eaa4352059f9"
OTHER_QUERY = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
REGISTERED = "d8d667d9-1234-abcd-56ef-1234567890ab"
SITE_PATH = f"/integrator/sites/{SITE}"

ROWS = [
    {"InternalID": 101, "FIRSTNAME": "JANE", "SURNAME": "CITIZEN", "DOB": "1980-02-03T00:00:00"}
]
# REFERENCE §5's constructed page: base64 of the compact JSON of ROWS.
ROWS_B64 = (
    "W3siSW50ZXJuYWxJRCI6MTAxLCJGSVJTVE5BTUUiOiJKQU5FIiwiU1VSTkFNRSI6IkNJVElaRU4iLCJET0IiOiIx"
    "OTgwLTAyLTAzVDAwOjAwOjAwIn1d"
)
UTC = dt.UTC

# REFERENCE §4.2: the docs' successful immediate query (pre-26.x: sqlQuerySize, endTime).
IMMEDIATE_SUCCESS: dict[str, Any] = {
    "id": QUERY,
    "integratorId": "0b7e2c1a-0000-4000-8000-000000000001",
    "siteId": SITE,
    "mode": "immediate",
    "status": "successful",
    "maxTimeInQueue": 15000,
    "sqlQuerySize": 46,
    "commandSize": 98,
    "createdAt": "2022-08-24T14:15:22Z",
    "updatedAt": "2022-08-24T14:15:22Z",
    "statusTiming": {
        "initialising": {"startTime": "2022-08-24T14:15:22Z", "endTime": "2022-08-24T14:15:22Z"},
        "executing": {"startTime": "2022-08-24T14:15:22Z", "endTime": "2022-08-24T14:15:22Z"},
    },
    "metrics": {"sqlExecutionDuration": 1000},
    "result": {
        "rows": 1,
        "size": 25,
        "data": ROWS_B64,
        "parameters": [
            {
                "name": "@haloGUID",
                "direction": "output",
                "type": "BigInt",
                "value": "66",
                "size": 43,
            }
        ],
    },
}

# REFERENCE §4.3: the composed successful async status object.
ASYNC_SUCCESS: dict[str, Any] = {
    "id": QUERY,
    "integratorId": "0b7e2c1a-0000-4000-8000-000000000001",
    "siteId": SITE,
    "mode": "async",
    "status": "successful",
    "maxTimeInQueue": 3600000,
    "commandSize": 98,
    "requestSize": 98,
    "createdAt": "2025-05-27T05:23:40.100Z",
    "updatedAt": "2025-05-27T05:23:44.900Z",
    "statusTiming": {
        "initialising": {
            "startTime": "2025-05-27T05:23:40.100Z",
            "endTime": "2025-05-27T05:23:40.300Z",
        },
        "queued": {"startTime": "2025-05-27T05:23:40.300Z", "endTime": "2025-05-27T05:23:41.000Z"},
        "executing": {
            "startTime": "2025-05-27T05:23:41.000Z",
            "endTime": "2025-05-27T05:23:42.000Z",
        },
        "uploading": {
            "startTime": "2025-05-27T05:23:42.000Z",
            "endTime": "2025-05-27T05:23:44.900Z",
        },
    },
    "metrics": {"sqlExecutionDuration": 1000},
    "result": {
        "rows": 14,
        "size": 15344,
        "pages": [
            {
                "pageNumber": 1,
                "status": "cached",
                "size": 15467,
                "rows": {"count": 14, "rangeStart": 0, "rangeEnd": 13},
            },
            {"pageNumber": 2, "status": "uploading", "size": 0},
        ],
    },
    "resultSize": 15344,
    "completedAt": "2025-05-27T05:23:44.900Z",
}

ASYNC_INITIALISING: dict[str, Any] = {
    "id": QUERY,
    "integratorId": "0b7e2c1a-0000-4000-8000-000000000001",
    "siteId": SITE,
    "mode": "async",
    "status": "initialising",
    "maxTimeInQueue": 900000,
    "commandSize": 98,
    "requestSize": 131,
    "createdAt": "2019-08-24T14:15:22.847Z",
    "updatedAt": "2019-08-24T14:15:22.847Z",
    "statusTiming": {"initialising": {"startTime": "2019-08-24T14:15:22.847Z"}},
}

# REFERENCE §6: the 26.128.8251 reference's SiteForIntegrator example.
SITE_BODY: dict[str, Any] = {
    "id": SITE,
    "pmsType": "BestPractice",
    "availability": "online",
    "status": "active",
    "haloLinkVersion": "22.1207.209",
    "enrichedAt": "2019-08-24T14:15:22Z",
    "catalogue": [{"name": "Patients", "isDefault": True}],
    "practiceMetadata": {
        "pmsType": "BestPractice",
        "practiceName": "Halo Clinic South",
        "practiceManagementSiteId": "12345",
        "practiceManagementVersion": "3.4.1",
    },
    "name": "Halo Clinic",
    "practiceManagementSiteId": "12345",
    "practiceManagementName": "Best Practice",
    "practiceManagementVersion": "3.4.1",
    "createdAt": "2019-08-24T14:15:22Z",
    "authoritative": True,
    "clientTimestampUTC": "2022-12-25T12:25:01Z",
    "heartbeatTimestampUTC": "2022-12-25T12:25:01Z",
}

# The documented request body shape (REFERENCE §3, docs example 1).
SELECT_1 = {"text": "SELECT 1", "executionMode": "reader", "type": "text", "parameters": []}


def assert_headers(kwargs: dict[str, Any], api_key: str, *, has_body: bool) -> None:
    """The headers every request carries; Content-Type only when there is a body."""
    headers = kwargs["headers"]
    assert headers["Ocp-Apim-Subscription-Key"] == api_key
    assert headers["Accept"] == "application/json"
    if has_body:
        assert headers["Content-Type"] == "application/json"
    else:
        assert "Content-Type" not in headers
        assert kwargs.get("data") is None


# -- The wire contract of every operation -------------------------------------------------


@attrs.frozen
class Wire:
    """One operation: how to call it, and exactly what must go over the wire."""

    call: Callable[[HaloClient], Awaitable[Any]]
    method: str
    path: str
    query: dict[str, str] = attrs.field(factory=dict)
    body: Any = None
    status: int = 200
    answer: Any = None


WIRE: dict[str, Wire] = {
    "immediate_query": Wire(
        lambda c: c.immediate_query(SITE, "SELECT 1"),
        "POST",
        f"{SITE_PATH}/queries/immediate",
        body={"command": SELECT_1},
        answer=IMMEDIATE_SUCCESS,
    ),
    "create_async_query": Wire(
        lambda c: c.create_async_query(SITE, "SELECT 1"),
        "POST",
        f"{SITE_PATH}/queries/async",
        body={"command": SELECT_1},
        status=201,
        answer=ASYNC_INITIALISING,
    ),
    "get_query": Wire(
        lambda c: c.get_query(SITE, QUERY),
        "GET",
        f"{SITE_PATH}/queries/{QUERY}",
        answer=ASYNC_SUCCESS,
    ),
    "get_query_statuses": Wire(
        lambda c: c.get_query_statuses(SITE, [QUERY, OTHER_QUERY]),
        "POST",
        f"{SITE_PATH}/queries/status",
        body={"queryIds": [QUERY, OTHER_QUERY]},
        answer={"results": []},
    ),
    "get_result_page": Wire(
        lambda c: c.get_result_page(SITE, QUERY, 3),
        "GET",
        f"{SITE_PATH}/queries/{QUERY}/results/3",
        answer={"data": ROWS_B64},
    ),
    "stream_result_page": Wire(
        lambda c: c.stream_result_page(SITE, QUERY, 3),
        "GET",
        f"{SITE_PATH}/queries/{QUERY}/results/3/stream",
        answer={"data": ROWS_B64},
    ),
    "find_sites": Wire(
        lambda c: c.find_sites("12345", "Best Practice"),
        "GET",
        "/integrator/sites",
        query={"practiceManagementSiteId": "12345", "practiceManagementName": "Best Practice"},
        answer={"sites": [SITE_BODY]},
    ),
    "resolve_site": Wire(
        lambda c: c.resolve_site("777", "Zedmed"),
        "GET",
        "/integrator/sites",
        query={"practiceManagementSiteId": "777", "practiceManagementName": "Zedmed"},
        answer={"sites": [SITE_BODY]},
    ),
    "get_site": Wire(lambda c: c.get_site(SITE), "GET", SITE_PATH, answer=SITE_BODY),
    "pair_site": Wire(
        lambda c: c.pair_site("12345", "Best Practice", "ABC123"),
        "POST",
        "/integrator/pair-site",
        query={
            "practiceManagementSiteId": "12345",
            "practiceManagementName": "Best Practice",
            "pairingCode": "ABC123",
        },
        answer=SITE_BODY,
    ),
    "create_registered_query": Wire(
        lambda c: c.create_registered_query(
            SITE, "SELECT 1", name="Test", frequency=300, duration=43200
        ),
        "POST",
        f"{SITE_PATH}/queries/registered",
        body={
            "name": "Test",
            "registeredQueryType": "query",
            "frequency": 300,
            "duration": 43200,
            "registerCommand": {"command": SELECT_1},
        },
        status=202,
        answer={"id": REGISTERED},
    ),
    "list_registered_queries": Wire(
        lambda c: c.list_registered_queries(SITE),
        "GET",
        f"{SITE_PATH}/queries/registered",
        answer={"registeredQueries": []},
    ),
    "get_registered_query": Wire(
        lambda c: c.get_registered_query(SITE, REGISTERED),
        "GET",
        f"{SITE_PATH}/queries/registered/{REGISTERED}",
        answer={"id": REGISTERED, "status": "enabled"},
    ),
    "cancel_registered_query": Wire(
        lambda c: c.cancel_registered_query(SITE, REGISTERED),
        "DELETE",
        f"{SITE_PATH}/queries/registered/{REGISTERED}",
        status=204,
    ),
    "get_registered_query_result": Wire(
        lambda c: c.get_registered_query_result(SITE, REGISTERED),
        "GET",
        f"{SITE_PATH}/queries/registered/{REGISTERED}/results",
        answer={"data": ROWS_B64, "parameters": None, "rows": 1, "size": 25},
    ),
}


@pytest.mark.parametrize("operation", sorted(WIRE))
async def test_each_operation_sends_the_documented_request(
    operation: str, client: HaloClient, mocked: HaloMock, api_key: str
) -> None:
    wire = WIRE[operation]
    mocked.add(
        yarl.URL(f"{BASE}{wire.path}").with_query(wire.query),
        method=wire.method,
        status=wire.status,
        body=orjson.dumps(wire.answer) if wire.answer is not None else b"",
    )

    await wire.call(client)

    method, url, kwargs = mocked.only()
    assert method == wire.method
    assert url.scheme == "https"
    assert url.host == "api.haloconnect.io"
    assert url.path == wire.path
    assert dict(url.query) == wire.query
    assert_headers(kwargs, api_key, has_body=wire.body is not None)
    assert mocked.body(kwargs) == wire.body


# The OAS operation behind each client method; FHIR is outside the SDK core and the
# deprecated pairSite is replaced by pair-site (REFERENCE §2).
OPERATION_IDS = {
    "createImmediateQuery": "immediate_query",
    "createAsyncQuery": "create_async_query",
    "getQuery": "get_query",
    "getQueryStatusBatch": "get_query_statuses",
    "getResultPage": "get_result_page",
    "streamResultPage": "stream_result_page",
    "getSites": "find_sites",
    "getSite": "get_site",
    "Integrator_PairSite": "pair_site",
    "createRegisteredQuery": "create_registered_query",
    "getRegisteredQueries": "list_registered_queries",
    "getRegisteredQuery": "get_registered_query",
    "cancelRegisteredQuery": "cancel_registered_query",
    "getRegisteredQueryResult": "get_registered_query_result",
}
NOT_IN_THE_SDK = {"getFhirQuery", "postFhirSearch", "pairSite"}


def test_every_oas_operation_is_sent_as_the_document_says(openapi: OpenAPI) -> None:
    ids = {"siteId": SITE, "queryId": QUERY, "pageNumber": "3"}
    covered = set()
    for template, item in openapi.document["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "operationId" not in operation:
                continue
            operation_id = operation["operationId"]
            if operation_id in NOT_IN_THE_SDK:
                continue
            wire = WIRE[OPERATION_IDS[operation_id]]
            if "registered/{queryId}" in template:
                ids["queryId"] = REGISTERED
            expected = template.format(**ids)
            ids["queryId"] = QUERY
            assert (wire.method, wire.path) == (method.upper(), expected), operation_id
            query_params = [
                param
                for param in map(openapi.resolve, operation.get("parameters", []))
                if param.get("in") == "query"
            ]
            required = {param["name"] for param in query_params if param.get("required")}
            assert required <= set(wire.query) <= {param["name"] for param in query_params}
            covered.add(operation_id)
    assert covered == set(OPERATION_IDS)


# -- Immediate queries ---------------------------------------------------------------------


SQL = "SELECT * FROM PATIENTS WHERE INTERNALID = @id AND DOB > @dob AND ACTIVE = @active"


async def test_immediate_query_sends_every_option_and_parses_the_result(
    client: HaloClient, mocked: HaloMock
) -> None:
    mocked.post(f"{BASE}{SITE_PATH}/queries/immediate", payload=IMMEDIATE_SUCCESS)

    query = await client.immediate_query(
        uuid.UUID(SITE),
        SQL,
        parameters=[
            Parameter("@id", "Int", 101),
            Parameter("@dob", "Date", dt.date(1980, 1, 1)),
            Parameter("@active", "Bit", True),
            Parameter("@fee", "Money", Decimal("12.50")),
            Parameter.output("@haloGUID", "BigInt", size=43),
        ],
        execution_mode="reader",
        command_type=CommandType.TEXT,
        catalogue="Patients",
        max_time_in_queue=15000,
    )

    _, _, kwargs = mocked.only()
    assert mocked.body(kwargs) == {
        "command": {
            "text": SQL,
            "executionMode": "reader",
            "type": "text",
            "parameters": [
                {"name": "@id", "type": "Int", "value": "101"},
                {"name": "@dob", "type": "Date", "value": "1980-01-01"},
                {"name": "@active", "type": "Bit", "value": "1"},
                {"name": "@fee", "type": "Money", "value": "12.50"},
                {"name": "@haloGUID", "type": "BigInt", "direction": "output", "size": 43},
            ],
        },
        "maxTimeInQueue": 15000,
        "catalogue": "Patients",
    }
    assert isinstance(query, models.ImmediateQuery)
    assert query.status is QueryStatus.SUCCESSFUL
    assert query.is_successful
    assert query.is_terminal
    assert not query.is_failed
    assert query.decode_rows() == ROWS
    assert query.output_parameters == (
        Parameter("@haloGUID", "BigInt", "66", Direction.OUTPUT, 43),
    )
    assert query.metrics == models.QueryMetrics(sql_execution_duration=1000)
    assert query.created_at == dt.datetime(2022, 8, 24, 14, 15, 22, tzinfo=UTC)
    assert query.status_timing is not None
    assert query.status_timing.executing is not None
    assert query.status_timing.executing.end_time == dt.datetime(
        2022, 8, 24, 14, 15, 22, tzinfo=UTC
    )


async def test_immediate_query_takes_a_command_object_and_a_parameter_mapping(
    client: HaloClient, mocked: HaloMock
) -> None:
    answer = {**IMMEDIATE_SUCCESS, "result": {"rowsAffected": 3, "size": 0}}
    mocked.post(f"{BASE}{SITE_PATH}/queries/immediate", payload=answer, repeat=True)

    nonquery = await client.immediate_query(
        SITE,
        Command(
            "SomeStoredProcedure",
            execution_mode=ExecutionMode.NON_QUERY,
            type=CommandType.STORED_PROCEDURE,
            parameters=[Parameter("@haloGuid", "Int", "", Direction.OUTPUT, 1)],
        ),
    )
    await client.immediate_query(
        SITE, "UPDATE X SET Y = @y WHERE Z = @z", parameters={"@y": None, "@z": 7}
    )

    first, second = (kwargs for _, _, kwargs in mocked.made())
    # REFERENCE §3, docs example 2, exactly.
    assert mocked.body(first) == {
        "command": {
            "text": "SomeStoredProcedure",
            "executionMode": "nonQuery",
            "type": "storedProcedure",
            "parameters": [
                {"name": "@haloGuid", "value": "", "type": "Int", "direction": "output", "size": 1}
            ],
        }
    }
    assert mocked.body(second)["command"]["parameters"] == [
        {"name": "@y"},
        {"name": "@z", "value": "7"},
    ]
    assert nonquery.rows_affected == 3
    assert nonquery.decode_rows() == []


async def test_immediate_read_timeout_covers_the_queue_time(
    client: HaloClient, mocked: HaloMock
) -> None:
    mocked.post(f"{BASE}{SITE_PATH}/queries/immediate", payload=IMMEDIATE_SUCCESS, repeat=True)

    await client.immediate_query(SITE, "SELECT 1", max_time_in_queue=60000)
    await client.immediate_query(SITE, "SELECT 1")

    timeouts = [kwargs["timeout"].total for _, _, kwargs in mocked.made()]
    # REFERENCE §9: queue time plus 65 s, so a query that waits its full queue time and then
    # runs its 30 s is not cut off by the client.
    assert timeouts == [60 + 65, 30 + 65]


async def test_scalar_immediate_query_reads_the_first_value(
    client: HaloClient, mocked: HaloMock
) -> None:
    data = base64.b64encode(b'[{"": 42}]').decode()
    answer = {**IMMEDIATE_SUCCESS, "result": {"rows": 1, "size": 10, "data": data}}
    mocked.post(f"{BASE}{SITE_PATH}/queries/immediate", payload=answer)

    query = await client.immediate_query(
        SITE, "SELECT COUNT(*) FROM PATIENTS", execution_mode="scalar"
    )

    assert query.scalar() == 42


# -- Async queries and their status ---------------------------------------------------------


async def test_create_async_query_returns_the_initialising_query(
    client: HaloClient, mocked: HaloMock
) -> None:
    mocked.post(f"{BASE}{SITE_PATH}/queries/async", status=201, payload=ASYNC_INITIALISING)

    query = await client.create_async_query(
        SITE, "SELECT * FROM PATIENTS", catalogue="Patients", max_time_in_queue=900000
    )

    _, _, kwargs = mocked.only()
    assert mocked.body(kwargs) == {
        "command": {
            "text": "SELECT * FROM PATIENTS",
            "executionMode": "reader",
            "type": "text",
            "parameters": [],
        },
        "maxTimeInQueue": 900000,
        "catalogue": "Patients",
    }
    assert isinstance(query, models.AsyncQuery)
    assert query.id == QUERY
    assert query.site_id == SITE
    assert query.status is QueryStatus.INITIALISING
    assert not query.is_terminal
    assert query.max_time_in_queue == 900000
    assert query.pages == ()
    assert query.status_timing is not None
    assert query.status_timing.initialising is not None
    assert query.status_timing.initialising.start_time == dt.datetime(
        2019, 8, 24, 14, 15, 22, 847000, tzinfo=UTC
    )


async def test_get_query_in_async_mode_lists_pages(client: HaloClient, mocked: HaloMock) -> None:
    mocked.get(f"{BASE}{SITE_PATH}/queries/{QUERY}", payload=ASYNC_SUCCESS)

    query = await client.get_query(SITE, QUERY)

    assert isinstance(query, models.AsyncQuery)
    assert query.is_successful
    assert query.result_size == 15344
    assert query.completed_at == dt.datetime(2025, 5, 27, 5, 23, 44, 900000, tzinfo=UTC)
    assert [page.page_number for page in query.pages] == [1, 2]
    assert [page.page_number for page in query.cached_pages] == [1]
    assert query.pages[0].rows == models.RowRange(count=14, range_start=0, range_end=13)
    assert query.result is not None
    assert query.result.rows == 14


async def test_get_query_in_async_mode_reads_the_results_alias(
    client: HaloClient, mocked: HaloMock
) -> None:
    body = {key: value for key, value in ASYNC_SUCCESS.items() if key != "result"}
    body["results"] = ASYNC_SUCCESS["result"]
    mocked.get(f"{BASE}{SITE_PATH}/queries/{QUERY}", payload=body)

    query = await client.get_query(SITE, QUERY)

    assert isinstance(query, models.AsyncQuery)
    assert [page.page_number for page in query.cached_pages] == [1]


async def test_get_query_in_immediate_mode_gives_the_immediate_query(
    client: HaloClient, mocked: HaloMock
) -> None:
    mocked.get(f"{BASE}{SITE_PATH}/queries/{QUERY}", payload=IMMEDIATE_SUCCESS)

    query = await client.get_query(SITE, QUERY)

    assert isinstance(query, models.ImmediateQuery)
    assert query.decode_rows() == ROWS


async def test_get_query_returns_a_failed_query_rather_than_raising(
    client: HaloClient, mocked: HaloMock
) -> None:
    failed = {
        **ASYNC_INITIALISING,
        "status": "executionFailed",
        "completedAt": "2019-08-24T14:15:22.847Z",
        "errorCode": 0,
        "errorMessage": "Request body doesn't contain correct schema",
    }
    mocked.get(f"{BASE}{SITE_PATH}/queries/{QUERY}", payload=failed)

    query = await client.get_query(SITE, QUERY)

    assert query.is_failed
    assert query.failure == models.ErrorDetails(
        error_code=0, error_message="Request body doesn't contain correct schema"
    )


async def test_get_query_statuses_parses_the_oas_example(
    client: HaloClient, mocked: HaloMock, openapi: OpenAPI
) -> None:
    mocked.post(
        f"{BASE}{SITE_PATH}/queries/status",
        payload=openapi.example("getQueryStatusBatch", "200"),
    )

    results = await client.get_query_statuses(
        uuid.UUID(SITE), [QUERY.upper(), uuid.UUID(OTHER_QUERY)]
    )

    _, _, kwargs = mocked.only()
    # Ids travel in their canonical lower-case form, whatever the caller passed.
    assert mocked.body(kwargs) == {"queryIds": [QUERY, OTHER_QUERY]}
    found, missing = results
    assert found.query_id == QUERY
    assert found.status is BatchStatus.FOUND
    assert found.query is not None
    assert found.query.is_successful
    assert found.query.cached_pages[0].rows == models.RowRange(14, 0, 13)
    assert missing == models.QueryStatusResult(OTHER_QUERY, BatchStatus.NOT_FOUND, None)


# -- Result pages -----------------------------------------------------------------------------


async def test_get_result_page_decodes_rows_and_reads_the_page_headers(
    client: HaloClient, mocked: HaloMock, openapi: OpenAPI
) -> None:
    headers = openapi.header_examples("getResultPage", "200")
    assert set(headers) == {"Size", "Rows-Count", "Rows-Range-Start", "Rows-Range-End"}
    parameters = [{"name": "@n", "direction": "output", "type": "Int", "value": "0", "size": 1}]
    mocked.get(
        f"{BASE}{SITE_PATH}/queries/{QUERY}/results/1",
        payload={"data": ROWS_B64, "parameters": parameters},
        headers=headers,
    )

    page = await client.get_result_page(SITE, QUERY, 1)

    assert page == models.ResultPage(
        site_id=SITE,
        query_id=QUERY,
        page_number=1,
        rows=ROWS,
        parameters=(Parameter("@n", "Int", "0", Direction.OUTPUT, 1),),
        size=100,
        rows_count=10,
        range_start=1,
        range_end=50,
    )


async def test_get_result_page_of_a_non_query_has_no_rows(
    client: HaloClient, mocked: HaloMock
) -> None:
    mocked.get(f"{BASE}{SITE_PATH}/queries/{QUERY}/results/1", payload={"parameters": []})

    page = await client.get_result_page(SITE, QUERY, 1)

    assert page.rows == []
    assert page.size is None
    assert page.rows_count is None


async def test_get_result_page_of_an_expired_result_raises_result_expired(
    client: HaloClient, mocked: HaloMock, openapi: OpenAPI, sleeps: Any
) -> None:
    mocked.get(
        f"{BASE}{SITE_PATH}/queries/{QUERY}/results/1",
        status=410,
        payload=openapi.example("getResultPage", "410"),
    )

    with pytest.raises(errors.ResultExpiredError) as caught:
        await client.get_result_page(SITE, QUERY, 1)

    assert caught.value.status == 410
    assert caught.value.path == f"{SITE_PATH}/queries/{QUERY}/results/1"
    assert sleeps.calls == []


@pytest.mark.parametrize(
    ("body", "parameters"),
    [
        pytest.param(
            orjson.dumps(
                {"data": ROWS_B64, "parameters": [{"name": "@n", "type": "Int", "value": "1"}]}
            ),
            (Parameter("@n", "Int", "1"),),
            id="envelope",
        ),
        pytest.param(orjson.dumps(ROWS), (), id="bare-rows"),
        pytest.param(orjson.dumps(ROWS_B64), (), id="json-string-of-base64"),
    ],
)
async def test_stream_result_page_reads_every_body_format(
    body: bytes,
    parameters: tuple[Parameter, ...],
    client: HaloClient,
    mocked: HaloMock,
    openapi: OpenAPI,
) -> None:
    mocked.get(
        f"{BASE}{SITE_PATH}/queries/{QUERY}/results/2/stream",
        body=body,
        headers=openapi.header_examples("getResultPage", "200"),
    )

    page = await client.stream_result_page(SITE, QUERY, 2)

    assert page.rows == ROWS
    assert page.parameters == parameters
    assert page.page_number == 2
    assert (page.size, page.rows_count, page.range_start, page.range_end) == (100, 10, 1, 50)


async def test_result_page_with_data_that_is_not_rows_raises_decode_error(
    client: HaloClient, mocked: HaloMock
) -> None:
    mocked.get(f"{BASE}{SITE_PATH}/queries/{QUERY}/results/1", payload={"data": "e2lk..."})

    with pytest.raises(errors.DecodeError):
        await client.get_result_page(SITE, QUERY, 1)


# -- Sites ------------------------------------------------------------------------------------


async def test_find_sites_parses_sites(client: HaloClient, mocked: HaloMock) -> None:
    mocked.get(
        f"{BASE}/integrator/sites?practiceManagementSiteId=12345&practiceManagementName=Best+Practice",
        payload={"sites": [SITE_BODY, {**SITE_BODY, "availability": "unavailable"}]},
    )

    sites = await client.find_sites("12345", "bestpractice")

    _, url, _ = mocked.only()
    assert url.query["practiceManagementName"] == "Best Practice"
    site, odd = sites
    assert site.id == SITE
    assert site.pms_type is PmsType.BEST_PRACTICE
    assert site.availability is SiteAvailability.ONLINE
    assert site.status is SiteStatus.ACTIVE
    assert site.default_catalogue == "Patients"
    assert site.practice_metadata is not None
    assert site.practice_metadata.practice_name == "Halo Clinic South"
    assert site.practice_metadata.practice_management_site_id == "12345"
    assert site.heartbeat_timestamp_utc == dt.datetime(2022, 12, 25, 12, 25, 1, tzinfo=UTC)
    assert site.client_timestamp_utc == dt.datetime(2022, 12, 25, 12, 25, 1, tzinfo=UTC)
    assert site.authoritative is True
    # RN22 says "unavailable" where the OAS says "unreachable": kept as the plain string.
    assert odd.availability == "unavailable"


async def test_find_sites_with_no_match_is_an_empty_list(
    client: HaloClient, mocked: HaloMock
) -> None:
    mocked.get(
        f"{BASE}/integrator/sites?practiceManagementSiteId=1&practiceManagementName=D4w",
        payload={"sites": []},
    )

    assert await client.find_sites("1", "d4w") == []


async def test_resolve_site_prefers_authoritative_then_active_then_newest_heartbeat(
    client: HaloClient, mocked: HaloMock
) -> None:
    def site(n: int, **changes: Any) -> dict[str, Any]:
        return {**SITE_BODY, "id": f"00000000-0000-4000-8000-00000000000{n}", **changes}

    url = yarl.URL(f"{BASE}/integrator/sites").with_query(
        practiceManagementSiteId="12345", practiceManagementName="Best Practice"
    )
    old, new = "2024-01-01T00:00:00Z", "2024-06-01T00:00:00Z"
    mocked.get(
        url,
        payload={
            "sites": [
                site(1, authoritative=False, status="active", heartbeatTimestampUTC=new),
                site(2, authoritative=True, status="removed", heartbeatTimestampUTC=new),
                site(3, authoritative=True, status="active", heartbeatTimestampUTC=old),
                site(4, authoritative=True, status="active", heartbeatTimestampUTC=new),
            ]
        },
    )
    mocked.get(
        url,
        payload={
            "sites": [
                site(1, authoritative=None, status="active", heartbeatTimestampUTC=old),
                site(2, authoritative=None, status="initialising", heartbeatTimestampUTC=new),
            ]
        },
    )

    assert (await client.resolve_site("12345", "Best Practice")).id.endswith("4")
    assert (await client.resolve_site("12345", "Best Practice")).id.endswith("1")


async def test_resolve_site_without_sites_raises_site_not_found(
    client: HaloClient, mocked: HaloMock
) -> None:
    mocked.get(
        f"{BASE}/integrator/sites?practiceManagementSiteId=999&practiceManagementName=Zedmed",
        payload={"sites": []},
    )

    with pytest.raises(errors.SiteNotFoundError, match="'999'"):
        await client.resolve_site("999", "Zedmed")


async def test_get_site_parses_the_site(client: HaloClient, mocked: HaloMock) -> None:
    mocked.get(f"{BASE}{SITE_PATH}", payload=SITE_BODY)

    site = await client.get_site(SITE)

    assert site.id == SITE
    assert site.halo_link_version == "22.1207.209"
    assert site.catalogue == (models.Catalogue("Patients", True),)
    assert site.enriched_at == dt.datetime(2019, 8, 24, 14, 15, 22, tzinfo=UTC)


async def test_pair_site_for_zedmed_sends_no_pairing_code(
    client: HaloClient, mocked: HaloMock, api_key: str
) -> None:
    mocked.post(
        f"{BASE}/integrator/pair-site?practiceManagementSiteId=777&practiceManagementName=Zedmed",
        payload=SITE_BODY,
    )

    site = await client.pair_site(" 777 ", "zedmed")

    method, url, kwargs = mocked.only()
    assert method == "POST"
    assert dict(url.query) == {
        "practiceManagementSiteId": "777",
        "practiceManagementName": "Zedmed",
    }
    assert_headers(kwargs, api_key, has_body=False)
    assert site.id == SITE


# -- Registered queries ----------------------------------------------------------------------


async def test_create_registered_query_returns_the_oas_example_id(
    client: HaloClient, mocked: HaloMock, openapi: OpenAPI
) -> None:
    example = openapi.example("createRegisteredQuery", "202")
    mocked.post(f"{BASE}{SITE_PATH}/queries/registered", status=202, payload=example)

    created = await client.create_registered_query(
        SITE,
        "SELECT COUNT(*) AS N FROM APPOINTMENTS WHERE DATE = @d",
        name="Appointments today",
        frequency=60,
        duration=86400,
        parameters=[Parameter("@d", "Date", dt.date(2025, 5, 27))],
        execution_mode=ExecutionMode.SCALAR,
    )

    assert created == example["id"] == "785f1ae1-1234-abcd-56ef-8679258f4aee"
    _, _, kwargs = mocked.only()
    assert mocked.body(kwargs) == {
        "name": "Appointments today",
        "registeredQueryType": "query",
        "frequency": 60,
        "duration": 86400,
        "registerCommand": {
            "command": {
                "text": "SELECT COUNT(*) AS N FROM APPOINTMENTS WHERE DATE = @d",
                "executionMode": "scalar",
                "type": "text",
                "parameters": [{"name": "@d", "type": "Date", "value": "2025-05-27"}],
            }
        },
    }


async def test_create_registered_query_accepts_a_201(client: HaloClient, mocked: HaloMock) -> None:
    # The desktop spec says 201 where the OAS says 202 (REFERENCE §11 #14).
    mocked.post(f"{BASE}{SITE_PATH}/queries/registered", status=201, payload={"id": REGISTERED})

    created = await client.create_registered_query(
        SITE, "SELECT 1", name="x", frequency=60, duration=60
    )

    assert created == REGISTERED


async def test_create_registered_query_without_an_id_raises_decode_error(
    client: HaloClient, mocked: HaloMock
) -> None:
    mocked.post(f"{BASE}{SITE_PATH}/queries/registered", status=202, payload={})

    with pytest.raises(errors.DecodeError, match="no id"):
        await client.create_registered_query(SITE, "SELECT 1", name="x", frequency=60, duration=60)


async def test_list_registered_queries_parses_the_oas_example(
    client: HaloClient, mocked: HaloMock, openapi: OpenAPI
) -> None:
    mocked.get(
        f"{BASE}{SITE_PATH}/queries/registered",
        payload=openapi.example("getRegisteredQueries", "200"),
    )

    enabled, completed = await client.list_registered_queries(SITE)

    assert enabled.id == REGISTERED
    assert enabled.status is RegisteredQueryStatus.ENABLED
    assert (enabled.frequency, enabled.duration) == (60, 120)
    assert enabled.last_hash == "dOFA..."
    assert enabled.metrics is not None
    assert enabled.metrics.execution_succeeded_count == 1
    assert enabled.metrics.last_succeeded_at == dt.datetime(
        2025, 5, 27, 5, 23, 46, 836000, tzinfo=UTC
    )
    assert completed.status is RegisteredQueryStatus.COMPLETED
    assert completed.completed_at == dt.datetime(2025, 5, 27, 4, 59, 54, 226000, tzinfo=UTC)
    assert completed.last_error_details == models.ErrorDetails(
        models.ErrorType.MSSQL, 2812, "Could not find stored procedure 'selct'."
    )


@pytest.mark.parametrize(
    ("example", "status"),
    [
        ("Successful ongoing query", RegisteredQueryStatus.ENABLED),
        ("Failed completed query", RegisteredQueryStatus.COMPLETED),
    ],
)
async def test_get_registered_query_parses_the_oas_examples(
    example: str,
    status: RegisteredQueryStatus,
    client: HaloClient,
    mocked: HaloMock,
    openapi: OpenAPI,
) -> None:
    body = openapi.example("getRegisteredQuery", "200", example)
    mocked.get(f"{BASE}{SITE_PATH}/queries/registered/{body['id']}", payload=body)

    registered = await client.get_registered_query(SITE, body["id"])

    assert registered.id == body["id"]
    assert registered.status is status
    assert registered.name == "Test"
    assert registered.registered_query_type == "query"
    assert registered.created_at is not None
    assert registered.created_at.tzinfo is not None


async def test_cancel_registered_query_reads_the_empty_204(
    client: HaloClient, mocked: HaloMock
) -> None:
    mocked.delete(f"{BASE}{SITE_PATH}/queries/registered/{REGISTERED}", status=204, body=b"")

    assert await client.cancel_registered_query(SITE, REGISTERED) is None


async def test_get_registered_query_result_decodes_rows(
    client: HaloClient, mocked: HaloMock
) -> None:
    mocked.get(
        f"{BASE}{SITE_PATH}/queries/registered/{REGISTERED}/results",
        payload={"data": ROWS_B64, "parameters": None, "rows": 1, "size": 25},
    )

    result = await client.get_registered_query_result(SITE, REGISTERED)

    assert result.decode_rows() == ROWS
    assert result.parameters is None
    assert (result.rows, result.size) == (1, 25)


# -- Failures in 2xx and error answers ------------------------------------------------------

EXECUTION_FAILED: dict[str, Any] = {
    **{key: IMMEDIATE_SUCCESS[key] for key in ("id", "integratorId", "siteId", "mode")},
    "status": "executionFailed",
    "maxTimeInQueue": 30000,
    "commandSize": 40,
    "requestSize": 60,
    "createdAt": "2025-05-27T05:23:40.100Z",
    "updatedAt": "2025-05-27T05:23:41.100Z",
    "completedAt": "2025-05-27T05:23:41.100Z",
    "statusTiming": {"initialising": {"startTime": "2025-05-27T05:23:40.100Z"}},
    "errorDetails": {"errorType": "mssql", "errorCode": 208, "errorMessage": "Invalid object"},
    "errorCode": 208,
    "errorMessage": "Invalid object",
}
TOO_LARGE = {
    "errorDetails": {
        "errorType": "http",
        "errorCode": 413,
        "errorMessage": "Query was executed successfully but an error occurred preparing it to "
        "be uploaded, results were too large. Immediate query results beyond message size "
        "limit (8mb)",
    }
}


@pytest.mark.parametrize(
    "status",
    [
        pytest.param(400, id="400-since-23.927"),
        pytest.param(200, id="legacy-200"),
    ],
)
async def test_a_failed_immediate_query_raises_sql_execution_error(
    status: int, client: HaloClient, mocked: HaloMock
) -> None:
    mocked.post(f"{BASE}{SITE_PATH}/queries/immediate", status=status, payload=EXECUTION_FAILED)

    with pytest.raises(errors.SqlExecutionError) as caught:
        await client.immediate_query(SITE, "SELECT * FROM PATIENT")

    error = caught.value
    assert (error.site_id, error.query_id) == (SITE, QUERY)
    assert error.details == models.ErrorDetails(models.ErrorType.MSSQL, 208, "Invalid object")
    assert error.http_status == status
    assert isinstance(error.query, models.ImmediateQuery)
    assert len(mocked.made()) == 1


@pytest.mark.parametrize("status", [413, 200])
async def test_an_oversized_immediate_result_raises_result_transfer_error(
    status: int, client: HaloClient, mocked: HaloMock
) -> None:
    mocked.post(f"{BASE}{SITE_PATH}/queries/immediate", status=status, payload=TOO_LARGE)

    with pytest.raises(errors.ResultTransferError) as caught:
        await client.immediate_query(SITE, "SELECT * FROM DOCUMENTS")

    assert caught.value.error_code == 413
    assert caught.value.site_id == SITE
    assert "8mb" in str(caught.value)


async def test_a_413_error_envelope_raises_result_too_large(
    client: HaloClient, mocked: HaloMock
) -> None:
    body = {"error": {"status": 413, "statusText": "Payload Too Large", "message": "Too large"}}
    mocked.post(f"{BASE}{SITE_PATH}/queries/immediate", status=413, payload=body)

    with pytest.raises(errors.ResultTooLargeError, match="Too large"):
        await client.immediate_query(SITE, "SELECT * FROM DOCUMENTS")


@pytest.mark.parametrize(
    ("call", "path", "body"),
    [
        pytest.param(lambda c: c.get_site(SITE), SITE_PATH, {}, id="site-without-id"),
        pytest.param(
            lambda c: c.get_query(SITE, QUERY),
            f"{SITE_PATH}/queries/{QUERY}",
            {"id": QUERY},
            id="query-without-status",
        ),
        pytest.param(
            lambda c: c.get_query(SITE, QUERY),
            f"{SITE_PATH}/queries/{QUERY}",
            [1, 2],
            id="query-not-an-object",
        ),
        pytest.param(
            lambda c: c.list_registered_queries(SITE),
            f"{SITE_PATH}/queries/registered",
            {"registeredQueries": [{"name": "no id"}]},
            id="registered-without-id",
        ),
        pytest.param(
            lambda c: c.find_sites("1", "Zedmed"),
            "/integrator/sites?practiceManagementSiteId=1&practiceManagementName=Zedmed",
            {"sites": "none"},
            id="sites-not-a-list",
        ),
        pytest.param(
            lambda c: c.get_site(SITE),
            SITE_PATH,
            b"<html>maintenance</html>",
            id="not-json",
        ),
    ],
)
async def test_a_malformed_success_body_raises_decode_error(
    call: Callable[[HaloClient], Awaitable[Any]],
    path: str,
    body: Any,
    client: HaloClient,
    mocked: HaloMock,
) -> None:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    mocked.get(f"{BASE}{path}", body=raw)

    with pytest.raises(errors.DecodeError):
        await call(client)
