"""The emulator over real sockets with a raw aiohttp client: every operation, auth, errors."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from halo_async.emulator import Emulator, ManualClock, SiteSpec

KEY = "test-key-123"
OAS_401 = (
    "Access denied due to missing subscription key. Make sure to include subscription key when "
    "making requests to an API."
)
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SPECS = (
    SiteSpec(pms_site_id="5001", pairing_code="PAIR01", patients=300),
    SiteSpec(pms_site_id="5001", authoritative=False, patients=50),
    SiteSpec(pms_type="Zedmed", pms_site_id="7001", paired=False, patients=50),
    SiteSpec(pms_type="D4w", pms_site_id="9001", availability="offline", patients=50),
    SiteSpec(pms_site_id="5002", paired=False, pairing_code="XYZ789", patients=50),
)


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(SPECS, seed=3, api_key=KEY, clock=ManualClock()) as emulator:
        yield emulator


@pytest.fixture
def bp(emu: Emulator) -> str:
    return emu.sites[0].id


async def call(
    http: aiohttp.ClientSession, method: str, path: str, **kwargs: Any
) -> tuple[int, Any, aiohttp.ClientResponse]:
    async with http.request(method, path, **kwargs) as response:
        raw = await response.read()
        body = orjson.loads(raw) if raw else None
        return response.status, body, response


def assert_envelope(body: Any, status: int) -> str:
    assert set(body) == {"error"}
    assert body["error"]["status"] == status
    assert isinstance(body["error"]["statusText"], str)
    message: str = body["error"]["message"]
    assert message
    return message


# ---------------------------------------------------------------------------- auth


async def test_missing_key_is_401_with_the_oas_text(emu: Emulator, bp: str) -> None:
    async with aiohttp.ClientSession(emu.base_url) as anonymous:
        status, body, response = await call(anonymous, "GET", f"/integrator/sites/{bp}")
    assert status == 401
    assert response.content_type == "application/json"
    assert body == {"error": {"status": 401, "statusText": "Unauthorized", "message": OAS_401}}


async def test_wrong_key_is_401_and_the_key_is_never_echoed(emu: Emulator, bp: str) -> None:
    headers = {"Ocp-Apim-Subscription-Key": "wrong-key-456"}
    async with aiohttp.ClientSession(emu.base_url, headers=headers) as wrong:
        status, body, _ = await call(wrong, "GET", f"/integrator/sites/{bp}")
    assert status == 401
    message = assert_envelope(body, 401)
    assert "invalid subscription key" in message
    assert "wrong-key-456" not in message
    assert KEY not in repr(emu)


async def test_key_in_query_parameter_is_accepted_when_the_header_is_absent(
    emu: Emulator, bp: str
) -> None:
    async with aiohttp.ClientSession(emu.base_url) as session:
        status, body, _ = await call(
            session, "GET", f"/integrator/sites/{bp}", params={"subscription-key": KEY}
        )
        assert status == 200
        assert body["id"] == bp
        status, _, _ = await call(
            session,
            "GET",
            f"/integrator/sites/{bp}",
            params={"subscription-key": KEY},
            headers={"Ocp-Apim-Subscription-Key": "wrong"},
        )
        assert status == 401  # the header wins over the query parameter


# ---------------------------------------------------------------------------- sites


async def test_get_site_shape(http: aiohttp.ClientSession, emu: Emulator, bp: str) -> None:
    status, site, _ = await call(http, "GET", f"/integrator/sites/{bp}")
    assert status == 200
    assert site["id"] == bp
    assert site["pmsType"] == "BestPractice"
    assert site["availability"] == "online"
    assert site["status"] == "active"
    assert site["catalogue"] == [{"name": "Patients", "isDefault": True}]
    meta = site["practiceMetadata"]
    assert meta["practiceManagementSiteId"] == "5001"
    assert meta["practiceName"] == emu.sites[0].practice_name
    assert site["practiceManagementName"] == "Best Practice"
    assert site["authoritative"] is True
    for key in ("enrichedAt", "createdAt", "clientTimestampUTC", "heartbeatTimestampUTC"):
        assert ISO_Z.match(site[key]), key


async def test_find_sites_returns_every_site_of_a_pms_id(
    http: aiohttp.ClientSession, emu: Emulator
) -> None:
    params = {"practiceManagementSiteId": "5001", "practiceManagementName": "Best Practice"}
    status, body, _ = await call(http, "GET", "/integrator/sites", params=params)
    assert status == 200
    assert [(s["id"], s["authoritative"]) for s in body["sites"]] == [
        (emu.sites[0].id, True),
        (emu.sites[1].id, False),
    ]
    params["practiceManagementName"] = "Zedmed"
    assert (await call(http, "GET", "/integrator/sites", params=params))[1] == {"sites": []}


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"practiceManagementName": "Best Practice"}, "practiceManagementSiteId"),
        ({"practiceManagementSiteId": "5001"}, "practiceManagementName"),
        ({"practiceManagementSiteId": "5001", "practiceManagementName": "Bp"}, "must be one of"),
    ],
)
async def test_find_sites_validates_its_query(
    http: aiohttp.ClientSession, params: dict[str, str], fragment: str
) -> None:
    status, body, _ = await call(http, "GET", "/integrator/sites", params=params)
    assert status == 400
    assert fragment in assert_envelope(body, 400)


@pytest.mark.parametrize("path", ["/integrator/pair-site", "/integrator/pairSite"])
async def test_pairing(http: aiohttp.ClientSession, emu: Emulator, path: str) -> None:
    zedmed, unpaired_bp = emu.sites[2], emu.sites[4]
    assert (await call(http, "GET", f"/integrator/sites/{zedmed.id}"))[0] == 403
    status, site, _ = await call(
        http,
        "POST",
        path,
        params={"practiceManagementSiteId": "7001", "practiceManagementName": "Zedmed"},
    )
    assert status == 200
    assert site["id"] == zedmed.id
    assert site["pmsType"] == "Zedmed"
    assert (await call(http, "GET", f"/integrator/sites/{zedmed.id}"))[0] == 200

    bp_params = {"practiceManagementSiteId": "5002", "practiceManagementName": "Best Practice"}
    status, body, _ = await call(http, "POST", path, params=bp_params)
    assert status == 400
    assert "pairing code" in assert_envelope(body, 400)
    status, body, _ = await call(http, "POST", path, params={**bp_params, "pairingCode": "NOPE00"})
    assert status == 400
    status, site, _ = await call(http, "POST", path, params={**bp_params, "pairingCode": "XYZ789"})
    assert status == 200
    assert site["id"] == unpaired_bp.id
    status, _, _ = await call(
        http,
        "POST",
        path,
        params={"practiceManagementSiteId": "404", "practiceManagementName": "D4w"},
    )
    assert status == 404


async def test_site_access_errors(http: aiohttp.ClientSession, emu: Emulator) -> None:
    backup, zedmed, offline = emu.sites[1], emu.sites[2], emu.sites[3]
    command = {"command": {"text": "SELECT 1 AS One"}}
    cases = [
        ("00000000-0000-4000-8000-000000000000", 404),
        ("not-a-guid", 400),  # "Invalid request path, parameter or body"
        (backup.id, 403),  # non-authoritative
        (zedmed.id, 403),  # not paired
        (offline.id, 503),  # immediate against an offline site
    ]
    for site_id, expected in cases:
        status, body, _ = await call(
            http, "POST", f"/integrator/sites/{site_id}/queries/immediate", json=command
        )
        assert status == expected, site_id
        message = assert_envelope(body, expected)
        if expected == 503:
            assert message == (
                "Site could not be contacted, please try again later or contact a system "
                "administrator."
            )


# ---------------------------------------------------------------------------- immediate


async def test_immediate_query_returns_rows_as_base64_json(
    http: aiohttp.ClientSession, bp: str
) -> None:
    command = {
        "command": {
            "text": "SELECT TOP (5) InternalID, Surname FROM BPS_Patients ORDER BY InternalID",
            "executionMode": "reader",
            "type": "text",
            "parameters": [],
        },
        "maxTimeInQueue": 15000,
    }
    status, body, response = await call(
        http, "POST", f"/integrator/sites/{bp}/queries/immediate", json=command
    )
    assert status == 200, body
    assert response.content_type == "application/json"
    assert body["mode"] == "immediate"
    assert body["status"] == "successful"
    assert body["siteId"] == bp
    assert body["maxTimeInQueue"] == 15000
    assert body["commandSize"] == len(orjson.dumps(command["command"]))
    assert body["requestSize"] > body["commandSize"]
    assert {"initialising", "executing"} <= set(body["statusTiming"])
    assert all(set(v) == {"startTime"} for v in body["statusTiming"].values())
    rows = orjson.loads(base64.b64decode(body["result"]["data"]))
    assert len(rows) == body["result"]["rows"] == 5
    assert list(rows[0]) == ["InternalID", "Surname"]
    assert body["result"]["size"] == len(base64.b64decode(body["result"]["data"]))
    assert isinstance(body["metrics"]["sqlExecutionDuration"], int)
    for key in ("createdAt", "updatedAt", "completedAt"):
        assert ISO_Z.match(body[key])
    # getQuery serves immediate ids too
    status, again, _ = await call(http, "GET", f"/integrator/sites/{bp}/queries/{body['id']}")
    assert status == 200
    assert (again["mode"], again["status"]) == ("immediate", "successful")


async def test_immediate_non_query_and_scalar(http: aiohttp.ClientSession, bp: str) -> None:
    path = f"/integrator/sites/{bp}/queries/immediate"
    update = {
        "command": {
            "text": "UPDATE PATIENTS SET MOBILEPHONE = '0400000000' WHERE INTERNALID = 1",
            "executionMode": "nonQuery",
        }
    }
    status, body, _ = await call(http, "POST", path, json=update)
    assert status == 200, body
    assert body["result"]["rowsAffected"] == 1
    assert "data" not in body["result"]
    scalar = {"command": {"text": "SELECT COUNT(*) FROM PATIENTS", "executionMode": "scalar"}}
    status, body, _ = await call(http, "POST", path, json=scalar)
    assert status == 200, body
    assert orjson.loads(base64.b64decode(body["result"]["data"])) == 300


async def test_sql_error_is_400_with_the_failed_query_object(
    http: aiohttp.ClientSession, bp: str
) -> None:
    command = {"command": {"text": "SELECT * FROM NO_SUCH_TABLE"}}
    status, body, _ = await call(
        http, "POST", f"/integrator/sites/{bp}/queries/immediate", json=command
    )
    assert status == 400
    assert body["status"] == "executionFailed"
    assert body["mode"] == "immediate"
    assert body["errorDetails"]["errorType"] == "mssql"
    assert body["errorDetails"]["errorCode"] == 208
    assert "NO_SUCH_TABLE" in body["errorDetails"]["errorMessage"]
    assert body["errorCode"] == 208  # the deprecated pair is still sent
    assert body["errorMessage"] == body["errorDetails"]["errorMessage"]
    assert ISO_Z.match(body["completedAt"])


async def test_immediate_result_over_the_size_limit_is_413() -> None:
    async with (
        Emulator([SiteSpec(patients=200)], api_key=KEY, immediate_result_limit=1000) as emu,
        aiohttp.ClientSession(emu.base_url, headers={"Ocp-Apim-Subscription-Key": KEY}) as http,
    ):
        command = {"command": {"text": "SELECT * FROM PATIENTS"}}
        status, body, _ = await call(
            http, "POST", f"/integrator/sites/{emu.sites[0].id}/queries/immediate", json=command
        )
    assert status == 413
    assert body["errorDetails"]["errorType"] == "http"
    assert body["errorDetails"]["errorCode"] == 413
    assert "message size limit (8mb)" in body["errorDetails"]["errorMessage"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "required"),
        (b"[]", "JSON object"),
        (b"{}", "command"),
        (b'{"command": {}}', "command.text"),
        (b'{"command": {"text": 42}}', "must be a string"),
        (b'{"command": {"text": "SELECT 1", "executionMode": "read"}}', "executionMode"),
        (b'{"command": {"text": "SELECT 1", "type": "proc"}}', "type"),
        (b'{"command": {"text": "SELECT 1", "parameters": {}}}', "parameters"),
        (b'{"command": {"text": "SELECT 1", "parameters": [{"type": "Integer"}]}}', "Integer"),
        (b'{"command": {"text": "SELECT 1", "parameters": [{"value": 5}]}}', "value"),
        (b'{"command": {"text": "SELECT 1"}, "maxTimeInQueue": 60001}', "maxTimeInQueue"),
        (b'{"command": {"text": "SELECT 1"}, "maxTimeInQueue": -1}', "maxTimeInQueue"),
        (b'{"command": {"text": "SELECT 1"}, "maxTimeInQueue": "10"}', "maxTimeInQueue"),
        (b'{"command": {"text": "SELECT 1"}, "maxTimeInQueue": true}', "maxTimeInQueue"),
        (b'{"command": {"text": "SELECT 1"}, "catalogue": "BPSDrugs"}', "BPSDrugs"),
        (b'{"command": {"text": "SELECT 1"}, "catalogue": 1}', "catalogue"),
    ],
)
async def test_immediate_validation(
    http: aiohttp.ClientSession, bp: str, body: bytes, fragment: str
) -> None:
    status, response, _ = await call(
        http,
        "POST",
        f"/integrator/sites/{bp}/queries/immediate",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    assert status == 400
    assert fragment in assert_envelope(response, 400)


async def test_async_max_time_in_queue_range(http: aiohttp.ClientSession, bp: str) -> None:
    path = f"/integrator/sites/{bp}/queries/async"
    ok = {"command": {"text": "SELECT 1 AS One"}, "maxTimeInQueue": 7_200_000}
    assert (await call(http, "POST", path, json=ok))[0] == 201
    too_long = {**ok, "maxTimeInQueue": 7_200_001}
    assert (await call(http, "POST", path, json=too_long))[0] == 400


# ---------------------------------------------------------------------------- async queries


async def test_async_query_end_to_end(http: aiohttp.ClientSession, emu: Emulator, bp: str) -> None:
    command = {"command": {"text": "SELECT INTERNALID, FIRSTNAME, DOB FROM PATIENTS"}}
    status, created, _ = await call(
        http, "POST", f"/integrator/sites/{bp}/queries/async", json=command
    )
    assert status == 201
    assert created["status"] == "initialising"
    assert created["mode"] == "async"
    assert created["maxTimeInQueue"] == 3_600_000
    assert set(created["statusTiming"]) == {"initialising"}
    await emu.wait_for_query(created["id"], "successful")
    status, query, _ = await call(http, "GET", f"/integrator/sites/{bp}/queries/{created['id']}")
    assert status == 200
    assert query["status"] == "successful"
    for phase in ("initialising", "queued", "executing", "uploading"):
        assert set(query["statusTiming"][phase]) == {"startTime", "endTime"}
    result = query["result"]
    assert result["rows"] == 300
    assert [p["status"] for p in result["pages"]] == ["cached"]
    assert query["resultSize"] == result["size"]
    status, page, response = await call(
        http, "GET", f"/integrator/sites/{bp}/queries/{created['id']}/results/1"
    )
    assert status == 200
    rows = orjson.loads(base64.b64decode(page["data"]))
    assert len(rows) == 300
    assert page["parameters"] == []
    assert response.headers["Size"] == str(len(base64.b64decode(page["data"])))
    assert response.headers["Rows-Count"] == "300"
    assert response.headers["Rows-Range-Start"] == "0"
    assert response.headers["Rows-Range-End"] == "299"
    dob = next(row["DOB"] for row in rows if row["DOB"] is not None)
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$", dob)


async def test_batch_status_keeps_request_order(
    http: aiohttp.ClientSession, emu: Emulator, bp: str
) -> None:
    ids = []
    for _ in range(2):
        _, created, _ = await call(
            http,
            "POST",
            f"/integrator/sites/{bp}/queries/async",
            json={"command": {"text": "SELECT 1 AS One"}},
        )
        ids.append(created["id"])
    for query_id in ids:
        await emu.wait_for_query(query_id)
    unknown = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
    status, body, _ = await call(
        http,
        "POST",
        f"/integrator/sites/{bp}/queries/status",
        json={"queryIds": [ids[1], unknown, ids[0]]},
    )
    assert status == 200
    assert [(r["queryId"], r["status"]) for r in body["results"]] == [
        (ids[1], "found"),
        (unknown, "notFound"),
        (ids[0], "found"),
    ]
    assert body["results"][0]["query"]["status"] == "successful"
    assert "query" not in body["results"][1]
    for bad in ({"queryIds": ["nope"]}, {"queryIds": "x"}, {}):
        status, response, _ = await call(
            http, "POST", f"/integrator/sites/{bp}/queries/status", json=bad
        )
        assert status == 400
        assert_envelope(response, 400)


async def test_queries_belong_to_their_site(
    http: aiohttp.ClientSession, emu: Emulator, bp: str
) -> None:
    zedmed = emu.sites[2]
    await call(
        http,
        "POST",
        "/integrator/pair-site",
        params={"practiceManagementSiteId": "7001", "practiceManagementName": "Zedmed"},
    )
    _, created, _ = await call(
        http,
        "POST",
        f"/integrator/sites/{bp}/queries/async",
        json={"command": {"text": "SELECT 1 AS One"}},
    )
    status, _, _ = await call(http, "GET", f"/integrator/sites/{zedmed.id}/queries/{created['id']}")
    assert status == 404


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        ("0", 400),
        ("-1", 400),
        ("one", 400),
        ("1.5", 400),
        ("2", 404),
        ("99999999999999999999", 404),
    ],
)
async def test_page_number_validation(
    http: aiohttp.ClientSession, emu: Emulator, bp: str, page: str, expected: int
) -> None:
    _, created, _ = await call(
        http,
        "POST",
        f"/integrator/sites/{bp}/queries/async",
        json={"command": {"text": "SELECT 1 AS One"}},
    )
    await emu.wait_for_query(created["id"], "successful")
    for suffix in ("", "/stream"):
        status, body, _ = await call(
            http, "GET", f"/integrator/sites/{bp}/queries/{created['id']}/results/{page}{suffix}"
        )
        assert status == expected
        assert_envelope(body, expected)


async def test_unknown_ids_and_routes(http: aiohttp.ClientSession, bp: str) -> None:
    for path in (
        f"/integrator/sites/{bp}/queries/aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee",
        f"/integrator/sites/{bp}/queries/aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee/results/1",
        f"/integrator/sites/{bp}/queries/registered/aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee",
        "/integrator/nowhere",
    ):
        status, body, _ = await call(http, "GET", path)
        assert status == 404, path
        assert_envelope(body, 404)
    status, body, response = await call(http, "PUT", f"/integrator/sites/{bp}")
    assert status == 405
    assert "GET" in response.headers["Allow"]
    assert_envelope(body, 405)


# ---------------------------------------------------------------------------- stream


async def test_stream_sends_the_envelope_by_default(
    http: aiohttp.ClientSession, emu: Emulator, bp: str
) -> None:
    _, created, _ = await call(
        http,
        "POST",
        f"/integrator/sites/{bp}/queries/async",
        json={"command": {"text": "SELECT InternalID FROM PATIENTS"}},
    )
    await emu.wait_for_query(created["id"], "successful")
    base = f"/integrator/sites/{bp}/queries/{created['id']}/results/1"
    _, page, _ = await call(http, "GET", base)
    status, streamed, response = await call(http, "GET", f"{base}/stream")
    assert status == 200
    assert response.content_type == "application/json"
    assert streamed == page


async def test_stream_rows_switch_sends_bare_rows() -> None:
    async with (
        Emulator([SiteSpec(patients=100)], api_key=KEY, stream_rows=True) as emu,
        aiohttp.ClientSession(emu.base_url, headers={"Ocp-Apim-Subscription-Key": KEY}) as http,
    ):
        site = emu.sites[0].id
        _, created, _ = await call(
            http,
            "POST",
            f"/integrator/sites/{site}/queries/async",
            json={"command": {"text": "SELECT InternalID FROM PATIENTS ORDER BY InternalID"}},
        )
        await emu.wait_for_query(created["id"], "successful")
        async with http.get(
            f"/integrator/sites/{site}/queries/{created['id']}/results/1/stream"
        ) as r:
            raw = await r.read()
    assert raw.startswith(b"[")
    assert len(orjson.loads(raw)) == 100


# ---------------------------------------------------------------------------- registered


async def test_registered_query_operations(
    http: aiohttp.ClientSession, emu: Emulator, bp: str
) -> None:
    base = f"/integrator/sites/{bp}/queries/registered"
    body = {
        "name": "Today's appointments",
        "registeredQueryType": "query",
        "frequency": 300,
        "duration": 43200,
        "registerCommand": {"command": {"text": "SELECT COUNT(*) AS N FROM APPOINTMENTS"}},
    }
    status, created, _ = await call(http, "POST", base, json=body)
    assert status == 202
    assert set(created) == {"id"}
    await emu.state.wait_until(
        lambda: emu.state.registered(emu.sites[0], created["id"]).succeeded == 1, timeout=5
    )
    status, listed, _ = await call(http, "GET", base)
    assert status == 200
    assert [q["id"] for q in listed["registeredQueries"]] == [created["id"]]
    status, one, _ = await call(http, "GET", f"{base}/{created['id']}")
    assert status == 200
    assert one["status"] == "enabled"
    assert one["frequency"] == 300
    assert one["metrics"]["executionSucceededCount"] == 1
    assert one["lastHash"]
    status, result, _ = await call(http, "GET", f"{base}/{created['id']}/results")
    assert status == 200
    assert set(result) == {"data", "parameters", "rows", "size"}
    assert orjson.loads(base64.b64decode(result["data"]))[0]["N"] > 0
    status, _, response = await call(http, "DELETE", f"{base}/{created['id']}")
    assert status == 204
    assert response.content_length in (0, None)
    status, one, _ = await call(http, "GET", f"{base}/{created['id']}")
    assert one["status"] == "cancelled"
    assert ISO_Z.match(one["completedAt"])


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"frequency": 59}, "frequency"),
        ({"duration": 86401}, "duration"),
        ({"registeredQueryType": "report"}, "registeredQueryType"),
        ({"registerCommand": {}}, "registerCommand.command"),
        ({"name": None}, "name"),
    ],
)
async def test_registered_validation(
    http: aiohttp.ClientSession, bp: str, change: dict[str, Any], fragment: str
) -> None:
    body = {
        "name": "x",
        "registeredQueryType": "query",
        "frequency": 60,
        "duration": 120,
        "registerCommand": {"command": {"text": "SELECT 1"}},
        **change,
    }
    status, response, _ = await call(
        http, "POST", f"/integrator/sites/{bp}/queries/registered", json=body
    )
    assert status == 400
    assert fragment in assert_envelope(response, 400)


async def test_path_ids_that_are_not_uuids_are_bad_requests(
    http: aiohttp.ClientSession, bp: str
) -> None:
    # The document's 400 is "Invalid request path, parameter or body"; 404 is for a well-formed
    # id that names nothing.
    for method, path in (
        ("GET", "/integrator/sites/not-a-guid"),
        ("GET", f"/integrator/sites/{bp}/queries/not-a-uuid"),
        ("GET", f"/integrator/sites/{bp}/queries/not-a-uuid/results/1"),
        ("GET", f"/integrator/sites/{bp}/queries/not-a-uuid/results/1/stream"),
        ("GET", f"/integrator/sites/{bp}/queries/registered/12345"),
        ("DELETE", f"/integrator/sites/{bp}/queries/registered/12345"),
        ("GET", f"/integrator/sites/{bp}/queries/registered/12345/results"),
        ("GET", "/integrator/sites/12345/queries/registered"),
    ):
        status, body, _ = await call(http, method, path)
        assert status == 400, (method, path)
        message = assert_envelope(body, 400)
        assert "Invalid request path" in message
