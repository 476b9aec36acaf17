"""Models: status predicates, parameter values, failures, and result decoding."""

from __future__ import annotations

import base64
import datetime as dt
import pickle
from decimal import Decimal
from typing import Any

import attrs
import orjson
import pytest

from halo_async import _convert, _decode, errors, models
from halo_async.models import Direction, Parameter, QueryStatus

SITE = "3f91c577-20a8-467b-8991-b96dfb90e8c6"
QUERY = "1366ef6e-d536-457c-8f1b-eaa4352059f9"

# REFERENCE §4.3: (terminal, successful, failed) for each of the 11 statuses.
STATUS_TABLE = {
    "initialising": (False, False, False),
    "initialisationFailedCacheError": (True, False, True),
    "initialisationFailedSiteOffline": (True, False, True),
    "initialisationFailedSiteUnreachable": (True, False, True),
    "queued": (False, False, False),
    "expiredInQueue": (True, False, True),
    "executing": (False, False, False),
    "executionFailed": (True, False, True),
    "uploading": (False, False, False),
    "uploadFailed": (True, False, True),
    "successful": (True, True, False),
}


def b64(value: Any) -> str:
    return base64.b64encode(orjson.dumps(value)).decode()


def async_query(status: str, **fields: Any) -> models.AsyncQuery:
    body = {"id": QUERY, "siteId": SITE, "mode": "async", "status": status, **fields}
    return _convert.structure(body, models.AsyncQuery)


def test_the_status_table_covers_every_status() -> None:
    assert set(STATUS_TABLE) == {status.value for status in QueryStatus}


@pytest.mark.parametrize("status", sorted(STATUS_TABLE))
def test_status_predicates_for_every_status(status: str) -> None:
    terminal, successful, failed = STATUS_TABLE[status]
    member = QueryStatus(status)
    query = async_query(status)

    assert (member.is_terminal, member.is_successful, member.is_failed) == STATUS_TABLE[status]
    assert (query.is_terminal, query.is_successful, query.is_failed) == (
        terminal,
        successful,
        failed,
    )


def test_an_unknown_status_is_neither_terminal_nor_failed() -> None:
    # A poller must keep polling through a status it does not know, not stop or raise.
    query = async_query("pausedByPractice")

    assert query.status == "pausedByPractice"
    assert not query.is_terminal
    assert not query.is_successful
    assert not query.is_failed


def test_statuses_compare_equal_to_their_wire_strings() -> None:
    assert async_query("queued").status == "queued"
    assert QueryStatus.EXECUTION_FAILED == "executionFailed"


def test_failure_prefers_error_details_over_the_deprecated_pair() -> None:
    both = async_query(
        "executionFailed",
        errorDetails={"errorType": "mssql", "errorCode": 208, "errorMessage": "Invalid object"},
        errorCode=0,
        errorMessage="Request body doesn't contain correct schema",
    )
    deprecated_only = async_query("uploadFailed", errorCode=0, errorMessage="upload failed")

    assert both.failure == models.ErrorDetails(models.ErrorType.MSSQL, 208, "Invalid object")
    assert deprecated_only.failure == models.ErrorDetails(None, 0, "upload failed")
    assert async_query("successful").failure is None


def test_pages_and_cached_pages() -> None:
    query = async_query(
        "uploading",
        result={
            "rows": 30,
            "size": 3,
            "pages": [
                {"pageNumber": 1, "status": "cached"},
                {"pageNumber": 2, "status": "uploading"},
                {"pageNumber": 3},
            ],
        },
    )

    assert [page.page_number for page in query.pages] == [1, 2, 3]
    assert [page.page_number for page in query.cached_pages] == [1]
    assert async_query("queued").pages == ()


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (42, "42"),
        (-7, "-7"),
        (Decimal("12.50"), "12.50"),
        (1.5, "1.5"),
        (dt.date(1980, 2, 3), "1980-02-03"),
        (dt.datetime(2025, 5, 27, 9, 30), "2025-05-27T09:30:00"),
        (dt.datetime(2025, 5, 27, 9, 30, tzinfo=dt.UTC), "2025-05-27T09:30:00+00:00"),
        (dt.time(9, 30), "09:30:00"),
        (True, "1"),
        (False, "0"),
        ("%Jo%", "%Jo%"),
        ("", ""),
        (None, None),
    ],
)
def test_parameter_values_travel_as_plain_strings(value: Any, wire: str | None) -> None:
    parameter = Parameter("@p", value=value)

    assert parameter.value == value  # the model holds what was given; the wire a string
    assert _convert.converter.unstructure(parameter).get("value") == wire


def test_parameter_constructors() -> None:
    assert Parameter.output("@id", "BigInt", size=8) == Parameter(
        "@id", "BigInt", None, Direction.OUTPUT, 8
    )
    assert Parameter.return_value("@rc") == Parameter(
        "@rc", "Int", None, Direction.RETURN_VALUE, None
    )
    assert models.parameters_from_mapping({"@a": 1, "@b": Parameter("@b", "Bit", True)}) == [
        Parameter("@a", value=1),
        Parameter("@b", "Bit", True),
    ]


def test_output_parameter_values_are_never_base64_decoded() -> None:
    # "NjY=" is base64 of "66": it must come back exactly as the server sent it.
    parameter = _convert.structure({"name": "@x", "value": "NjY=", "type": "Int"}, Parameter)

    assert parameter.value == "NjY="


def test_models_are_frozen() -> None:
    query = async_query("queued")

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        query.status = QueryStatus.SUCCESSFUL  # type: ignore[misc]


def test_immediate_query_decodes_rows_scalar_and_rows_affected() -> None:
    rows = [{"InternalID": 1, "FIRSTNAME": "JANE"}, {"InternalID": 2, "FIRSTNAME": "JOHN"}]
    base = {"id": QUERY, "siteId": SITE, "mode": "immediate", "status": "successful"}
    reader = _convert.structure(
        {**base, "result": {"rows": 2, "size": 10, "data": b64(rows)}}, models.ImmediateQuery
    )
    nonquery = _convert.structure(
        {**base, "result": {"rowsAffected": 4, "size": 0}}, models.ImmediateQuery
    )
    scalar = _convert.structure(
        {**base, "result": {"rows": 1, "size": 2, "data": b64(7)}}, models.ImmediateQuery
    )

    assert reader.decode_rows() == rows
    assert reader.scalar() == 1
    assert nonquery.decode_rows() == []
    assert nonquery.rows_affected == 4
    assert nonquery.scalar() is None
    assert scalar.scalar() == 7


def test_site_default_catalogue() -> None:
    site = _convert.structure(
        {
            "id": SITE,
            "catalogue": [{"name": "Archive"}, {"name": "Patients", "isDefault": True}],
        },
        models.Site,
    )

    assert site.default_catalogue == "Patients"
    assert _convert.structure({"id": SITE}, models.Site).default_catalogue is None


# -- Decoding ---------------------------------------------------------------------------------


def test_decode_rows_reads_the_documented_page() -> None:
    # REFERENCE §5's constructed page.
    data = (
        "W3siSW50ZXJuYWxJRCI6MTAxLCJGSVJTVE5BTUUiOiJKQU5FIiwiU1VSTkFNRSI6IkNJVElaRU4iLCJET0Ii"
        "OiIxOTgwLTAyLTAzVDAwOjAwOjAwIn1d"
    )

    assert _decode.decode_rows(data) == [
        {"InternalID": 101, "FIRSTNAME": "JANE", "SURNAME": "CITIZEN", "DOB": "1980-02-03T00:00:00"}
    ]
    assert _decode.decode_rows(data.encode()) == _decode.decode_rows(data)


def test_decode_rows_reads_empty_results_and_single_objects() -> None:
    assert _decode.decode_rows(b64([])) == []
    assert _decode.decode_rows(b64({"N": 3})) == [{"N": 3}]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("e2lk...", "not valid"),  # the OAS example: truncated
        ("!!!not base64!!!", "not valid"),
        (b64([1, 2, 3]), "must be JSON objects"),
        (b64("text"), "not rows"),
    ],
)
def test_decode_rows_raises_decode_error_for_anything_but_rows(data: str, reason: str) -> None:
    with pytest.raises(errors.DecodeError, match=reason):
        _decode.decode_rows(data)


def test_first_value_of_each_scalar_shape() -> None:
    assert _decode.first_value([{"N": 5, "M": 6}]) == 5
    assert _decode.first_value({"N": 5}) == 5
    assert _decode.first_value(5) == 5
    assert _decode.first_value([]) is None
    assert _decode.first_value([{}]) is None


def test_a_checkpoint_round_trips_as_plain_data_and_as_a_pickle() -> None:
    point = models.Checkpoint(SITE, QUERY, next_page=3, next_row=17)

    assert models.Checkpoint.from_dict(orjson.loads(orjson.dumps(point.as_dict()))) == point
    assert pickle.loads(pickle.dumps(point)) == point


def test_a_checkpoint_saved_before_next_row_existed_still_loads() -> None:
    old = {"site_id": SITE, "query_id": QUERY, "next_page": 4}
    assert models.Checkpoint.from_dict(old) == models.Checkpoint(SITE, QUERY, 4, 0)

    # Pickled state as older versions stored it: a dict without next_row, and attrs' tuple.
    for state in (old, (SITE, QUERY, 4)):
        point = models.Checkpoint.__new__(models.Checkpoint)
        point.__setstate__(state)
        assert point == models.Checkpoint(SITE, QUERY, 4, 0)
