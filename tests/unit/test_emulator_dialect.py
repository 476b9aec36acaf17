"""Dialect breadth of the emulated practice databases: the T-SQL and Firebird SQL integrators
really send, answered as SQL Server or Firebird would answer it, or refused as they would refuse
it."""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from typing import Any

import pytest

from halo_async.emulator.database import PracticeDatabase, SqlError

NOW = datetime.datetime(2025, 5, 27, 10, 30, 15)  # a Tuesday morning, practice local time
PATIENTS = 300


def pinned() -> datetime.datetime:
    return NOW


def make(pms_type: str = "BestPractice", seed: int = 5, **kwargs: Any) -> PracticeDatabase:
    kwargs.setdefault("now", pinned)
    return PracticeDatabase(pms_type=pms_type, seed=seed, patients=PATIENTS, **kwargs)


@pytest.fixture(scope="module")
def bp() -> Iterator[PracticeDatabase]:
    db = make()
    yield db
    db.close()


@pytest.fixture
def fresh() -> Iterator[PracticeDatabase]:
    db = make()
    yield db
    db.close()


@pytest.fixture(scope="module")
def zedmed() -> Iterator[PracticeDatabase]:
    db = make("Zedmed")
    yield db
    db.close()


def rows(db: PracticeDatabase, sql: str, **kwargs: Any) -> list[dict[str, Any]]:
    result = db.execute(sql, **kwargs)
    assert result.rows is not None
    return result.rows


def one(db: PracticeDatabase, sql: str, **kwargs: Any) -> dict[str, Any]:
    (row,) = rows(db, sql, **kwargs)
    return row


def sql_error(db: PracticeDatabase, sql: str, **kwargs: Any) -> SqlError:
    with pytest.raises(SqlError) as caught:
        db.execute(sql, **kwargs)
    return caught.value


# -- silent wrong answers ------------------------------------------------------------------------


def test_t_sql_datetime_minus_a_number_subtracts_days(bp: PracticeDatabase) -> None:
    row = one(
        bp,
        "SELECT GETDATE() - 7 AS WeekAgo, GETDATE() + 1 AS Tomorrow, "
        "CAST(GETDATE() AS date) - 1 AS Yesterday, GETDATE() + 0.5 AS Tonight",
    )
    assert row == {
        "WeekAgo": "2025-05-20T10:30:15",
        "Tomorrow": "2025-05-28T10:30:15",
        "Yesterday": "2025-05-26T00:00:00",
        "Tonight": "2025-05-27T22:30:15",
    }
    recent = one(
        bp,
        "SELECT COUNT(*) AS N FROM APPOINTMENTS WHERE APPOINTMENTDATE >= GETDATE() - 7 "
        "AND APPOINTMENTDATE < GETDATE()",
    )
    same = one(
        bp,
        "SELECT COUNT(*) AS N FROM APPOINTMENTS WHERE APPOINTMENTDATE >= DATEADD(day, -7, "
        "GETDATE()) AND APPOINTMENTDATE < GETDATE()",
    )
    assert recent == same
    assert recent["N"] > 0


def test_t_sql_column_datetime_arithmetic(bp: PracticeDatabase) -> None:
    (row,) = rows(
        bp,
        "SELECT TOP 1 DOB, DOB + 1 AS NextDay, DOB - 1 AS DayBefore FROM PATIENTS "
        "WHERE DOB IS NOT NULL ORDER BY INTERNALID",
    )
    dob = datetime.datetime.fromisoformat(row["DOB"])
    assert row["NextDay"] == (dob + datetime.timedelta(days=1)).isoformat()
    assert row["DayBefore"] == (dob - datetime.timedelta(days=1)).isoformat()


def test_firebird_date_plus_a_number_adds_days(zedmed: PracticeDatabase) -> None:
    row = one(
        zedmed,
        "SELECT FIRST 1 CURRENT_DATE + 7 AS NextWeek, CURRENT_DATE - 1 AS Yesterday, "
        "CURRENT_TIMESTAMP - 1 AS DayAgo FROM PATIENT",
    )
    assert row == {
        "NextWeek": "2025-06-03T00:00:00",
        "Yesterday": "2025-05-26T00:00:00",
        "DayAgo": "2025-05-26T10:30:15",
    }
    (born,) = rows(
        zedmed,
        "SELECT FIRST 1 DATE_OF_BIRTH, DATE_OF_BIRTH + 1 AS NextDay, "
        "CURRENT_DATE - DATE_OF_BIRTH AS AgeDays FROM PATIENT ORDER BY PATIENT_ID",
    )
    dob = datetime.datetime.fromisoformat(born["DATE_OF_BIRTH"])
    assert born["NextDay"] == (dob + datetime.timedelta(days=1)).isoformat()
    assert born["AgeDays"] == (NOW.date() - dob.date()).days


def test_datename_gives_weekday_and_month_names(bp: PracticeDatabase) -> None:
    row = one(
        bp,
        "SELECT DATENAME(weekday, GETDATE()) AS W, DATENAME(dw, '2025-06-01') AS Sunday, "
        "DATENAME(month, GETDATE()) AS M, DATENAME(year, GETDATE()) AS Y, "
        "DATENAME(day, GETDATE()) AS D",
    )
    assert row == {"W": "Tuesday", "Sunday": "Sunday", "M": "May", "Y": "2025", "D": "27"}


def test_plus_between_string_columns_concatenates(bp: PracticeDatabase) -> None:
    (row,) = rows(
        bp,
        "SELECT TOP 1 SURNAME, FIRSTNAME, MEDICARENO, MEDICARELINENO, "
        "SURNAME + FIRSTNAME AS Joined, SURNAME + ', ' + FIRSTNAME AS Display, "
        "MEDICARENO + MEDICARELINENO AS Medicare, RTRIM(Surname) + NULL AS Nothing "
        "FROM PATIENTS WHERE MEDICARENO <> '' ORDER BY INTERNALID",
    )
    assert row["Joined"] == row["SURNAME"] + row["FIRSTNAME"]
    assert row["Display"] == f"{row['SURNAME']}, {row['FIRSTNAME']}"
    assert row["Medicare"] == row["MEDICARENO"] + row["MEDICARELINENO"]
    assert len(row["Medicare"]) == 11
    assert row["Nothing"] is None


def test_number_plus_numeric_text_still_adds(bp: PracticeDatabase) -> None:
    row = one(bp, "SELECT 1 + '2' AS A, INTERNALID + 1 AS B FROM PATIENTS WHERE INTERNALID = 4")
    assert row == {"A": 3, "B": 5}
    error = sql_error(bp, "SELECT TOP 1 INTERNALID + SURNAME FROM PATIENTS")
    assert error.error_code == 245


def test_firebird_now_today_tomorrow_yesterday(zedmed: PracticeDatabase) -> None:
    row = one(
        zedmed,
        "SELECT CAST('TODAY' AS DATE) AS T, CAST('NOW' AS TIMESTAMP) AS N, "
        "CAST('tomorrow' AS DATE) AS M, CAST('YESTERDAY' AS DATE) AS Y, "
        "DATE 'TODAY' AS D FROM RDB$DATABASE",
    )
    assert row == {
        "T": "2025-05-27T00:00:00",
        "N": "2025-05-27T10:30:15",
        "M": "2025-05-28T00:00:00",
        "Y": "2025-05-26T00:00:00",
        "D": "2025-05-27T00:00:00",
    }


def test_t_sql_cast_now_is_a_conversion_error(bp: PracticeDatabase) -> None:
    for target in ("datetime", "date"):
        error = sql_error(bp, f"SELECT CAST('NOW' AS {target})")
        assert (error.error_type, error.error_code) == ("mssql", 241)


def test_firebird_weekday_counts_from_sunday_zero(zedmed: PracticeDatabase) -> None:
    row = one(
        zedmed,
        "SELECT EXTRACT(WEEKDAY FROM CURRENT_DATE) AS W, EXTRACT(YEARDAY FROM CURRENT_DATE) AS Y "
        "FROM RDB$DATABASE",
    )
    assert row == {"W": 2, "Y": 146}  # Tuesday; 27 May is day 147, YEARDAY counts from 0


# -- practice time zone ---------------------------------------------------------------------------


@pytest.fixture
def host_in_new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The host's zone is not the practice's: answers must not change with it."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("host_in_new_york")
def test_getutcdate_is_utc_whatever_the_host_zone() -> None:
    db = make()  # the clock reads naive practice-local time, as the emulator's does
    try:
        row = one(db, "SELECT GETDATE() AS L, GETUTCDATE() AS U, SYSUTCDATETIME() AS S")
    finally:
        db.close()
    # Sydney is UTC+10 in May (no daylight saving).
    assert row == {"L": "2025-05-27T10:30:15", "U": "2025-05-27T00:30:15",
                   "S": "2025-05-27T00:30:15"}  # fmt: skip


@pytest.mark.usefixtures("host_in_new_york")
def test_an_aware_clock_is_read_in_the_practice_zone() -> None:
    utc = datetime.datetime(2025, 1, 10, 22, 0, 0, tzinfo=datetime.UTC)
    sydney = make(now=lambda: utc)
    perth = make(now=lambda: utc, time_zone="Australia/Perth")
    try:
        # January: Sydney is on daylight time (UTC+11), Perth has none (UTC+8).
        assert one(sydney, "SELECT GETDATE() AS L, GETUTCDATE() AS U") == {
            "L": "2025-01-11T09:00:00",
            "U": "2025-01-10T22:00:00",
        }
        assert one(perth, "SELECT GETDATE() AS L") == {"L": "2025-01-11T06:00:00"}
        assert one(sydney, "SELECT CONVERT(date, GETDATE()) AS D") == {"D": "2025-01-11T00:00:00"}
    finally:
        sydney.close()
        perth.close()
