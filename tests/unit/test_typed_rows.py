"""Typed rows: result columns, as they travel, structured into a user's class."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import attrs
import pytest

from halo_async._decode import RowStructurer
from halo_async.errors import RowTypeError


@attrs.frozen
class Appointment:
    record_id: uuid.UUID
    when: dt.datetime
    dob: dt.date | None
    start: dt.time
    fee: Decimal
    paid: bool
    note: str | None = None


ROW: dict[str, Any] = {
    "RECORDID": "3f91c577-20a8-467b-8991-b96dfb90e8c6",
    "WHEN": "2025-05-27T09:30:00.1234567",
    "DOB": "1980-02-03T00:00:00",
    "START": 34_200,  # Best Practice: seconds from midnight
    "FEE": 85.5,
    "PAID": 1,
    "NOTE": None,
}


def test_a_row_of_sql_types_fills_datetimes_dates_times_decimals_uuids_and_bits() -> None:
    structure = RowStructurer(Appointment, None)

    appointment = structure(ROW, 1, 0)

    assert appointment == Appointment(
        record_id=uuid.UUID("3f91c577-20a8-467b-8991-b96dfb90e8c6"),
        when=dt.datetime(2025, 5, 27, 9, 30, 0, 123456),
        dob=dt.date(1980, 2, 3),
        start=dt.time(9, 30),
        fee=Decimal("85.5"),
        paid=True,
        note=None,
    )


@dataclasses.dataclass
class Visit:
    visit_date: dt.date
    visit_time: dt.time
    stamped: dt.datetime | None
    billed: bool


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (
            {
                "VISITDATE": "2026-01-05",
                "VISITTIME": "14:05:09",
                "STAMPED": None,
                "BILLED": "false",
            },
            Visit(dt.date(2026, 1, 5), dt.time(14, 5, 9), None, False),
        ),
        (
            {
                "VISITDATE": "2026-01-05T00:00:00",
                "VISITTIME": "14:05:09.5000000",
                "STAMPED": "2026-01-05T14:05:09+10:00",
                "BILLED": True,
            },
            Visit(
                dt.date(2026, 1, 5),
                dt.time(14, 5, 9, 500000),
                dt.datetime(2026, 1, 5, 14, 5, 9, tzinfo=dt.timezone(dt.timedelta(hours=10))),
                True,
            ),
        ),
    ],
)
def test_dataclasses_and_optionals_too(row: dict[str, Any], expected: Visit) -> None:
    assert RowStructurer(Visit, None)(row, 1, 0) == expected


@pytest.mark.parametrize(
    ("column", "value"),
    [("WHEN", "next tuesday"), ("FEE", "12,50"), ("PAID", "yes"), ("RECORDID", 7)],
)
def test_a_value_that_does_not_fit_names_its_column(column: str, value: Any) -> None:
    with pytest.raises(RowTypeError) as caught:
        RowStructurer(Appointment, None)({**ROW, column: value}, 4, 9)

    assert (caught.value.page_number, caught.value.row_index) == (4, 9)
    assert caught.value.columns == [column]
