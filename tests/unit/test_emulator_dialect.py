"""Dialect breadth of the emulated practice databases: the T-SQL and Firebird SQL integrators
really send, answered as SQL Server or Firebird would answer it, or refused as they would refuse
it."""

from __future__ import annotations

import datetime
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from halo_async.emulator.database import PracticeDatabase, SqlError
from tests.support import PRACTICE_NOW as NOW
from tests.support import PRACTICE_PATIENTS as PATIENTS
from tests.support import practice_db as make
from tests.support import rows


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


# -- T-SQL batches --------------------------------------------------------------------------------


def test_set_options_before_a_select_are_accepted(bp: PracticeDatabase) -> None:
    assert rows(bp, "SET NOCOUNT ON; SELECT COUNT(*) AS N FROM PATIENTS") == [{"N": PATIENTS}]
    assert rows(
        bp,
        "SET NOCOUNT ON; SET XACT_ABORT ON; SET ANSI_NULLS ON; "
        "SET TRANSACTION ISOLATION LEVEL READ UNCOMMITTED; SELECT 1 AS One",
    ) == [{"One": 1}]


@pytest.mark.parametrize(
    "option", ["SET DATEFIRST 1", "SET DATEFORMAT dmy", "SET ROWCOUNT 5", "SET ANSI_NULLS OFF"]
)
def test_set_options_that_change_answers_are_refused(bp: PracticeDatabase, option: str) -> None:
    error = sql_error(bp, f"{option}; SELECT 1")
    assert (error.error_type, error.error_code) == ("mssql", 102)


def test_declare_then_select(bp: PracticeDatabase) -> None:
    row = one(
        bp,
        "DECLARE @since DATE = '1990-01-01', @n INT; "
        "SELECT @n = COUNT(*) FROM PATIENTS WHERE DOB >= @since; SELECT @n AS N, @since AS Since",
    )
    count = one(bp, "SELECT COUNT(*) AS N FROM PATIENTS WHERE DOB >= '1990-01-01'")["N"]
    assert row == {"N": count, "Since": "1990-01-01T00:00:00"}


def test_if_exists_else(bp: PracticeDatabase) -> None:
    found = rows(
        bp,
        "IF EXISTS (SELECT 1 FROM PATIENTS WHERE INTERNALID = 1) "
        "SELECT SURNAME FROM PATIENTS WHERE INTERNALID = 1 ELSE SELECT 'none' AS SURNAME",
    )
    surname = one(bp, "SELECT SURNAME FROM PATIENTS WHERE INTERNALID = 1")["SURNAME"]
    assert found == [{"SURNAME": surname}]
    missing = rows(
        bp,
        "IF EXISTS (SELECT 1 FROM PATIENTS WHERE INTERNALID = -1) SELECT 1 AS Found "
        "ELSE BEGIN SELECT 0 AS Found SELECT 2 AS Ignored END",
    )
    assert missing == [{"Found": 0}]  # the first result set, as Halo returns it
    assert rows(bp, "IF (SELECT COUNT(*) FROM PATIENTS) > 10 SELECT 'many' AS Size") == [
        {"Size": "many"}
    ]
    assert rows(bp, "IF 1 = 0 SELECT 1 AS A") == []


def test_begin_tran_commit_around_a_non_query(fresh: PracticeDatabase) -> None:
    result = fresh.execute(
        "BEGIN TRAN; UPDATE PATIENTS SET FIRSTNAME = 'Zed' WHERE INTERNALID <= 2; COMMIT TRAN;",
        execution_mode="nonQuery",
    )
    assert result.rows_affected == 2
    assert one(fresh, "SELECT COUNT(*) AS N FROM PATIENTS WHERE FIRSTNAME = 'Zed'") == {"N": 2}


def test_rollback_and_an_unfinished_transaction_change_nothing(fresh: PracticeDatabase) -> None:
    count = "SELECT COUNT(*) AS N FROM PATIENTS WHERE FIRSTNAME = 'Zed'"
    fresh.execute(
        "BEGIN TRANSACTION; UPDATE PATIENTS SET FIRSTNAME = 'Zed' WHERE INTERNALID = 1; ROLLBACK",
        execution_mode="nonQuery",
    )
    fresh.execute(
        "BEGIN TRAN; UPDATE PATIENTS SET FIRSTNAME = 'Zed' WHERE INTERNALID = 1",
        execution_mode="nonQuery",
    )
    error = sql_error(
        fresh, "BEGIN TRAN; UPDATE PATIENTS SET FIRSTNAME = 'Zed' WHERE INTERNALID = 1; SELECT 1/0"
    )
    assert error.error_code == 8134
    assert one(fresh, count) == {"N": 0}
    assert sql_error(fresh, "COMMIT").error_code == 3902
    assert sql_error(fresh, "ROLLBACK").error_code == 3903


def test_statements_need_no_semicolons(fresh: PracticeDatabase) -> None:
    assert rows(fresh, "SET NOCOUNT ON\nSELECT COUNT(*) AS N FROM PATIENTS") == [{"N": PATIENTS}]
    assert rows(fresh, "DECLARE @x INT = 40\nSET @x = @x + 2\nSELECT @x AS X") == [{"X": 42}]
    assert rows(
        fresh,
        "IF EXISTS (SELECT 1 FROM PATIENTS) BEGIN\n  SELECT 1 AS A;\nEND\n"
        "ELSE BEGIN\n  SELECT 2 AS B;\nEND",
    ) == [{"A": 1}]
    changed = fresh.execute(
        "BEGIN TRAN\nUPDATE PATIENTS SET FIRSTNAME = 'Zed' WHERE INTERNALID = 1\nCOMMIT TRAN\n"
        "SELECT FIRSTNAME FROM PATIENTS WHERE INTERNALID = 1"
    )
    assert changed.rows == [{"FIRSTNAME": "Zed"}]


def test_temporary_tables_last_one_command(fresh: PracticeDatabase) -> None:
    batch = (
        "SELECT TOP 3 INTERNALID INTO #PATIENTS FROM PATIENTS ORDER BY INTERNALID;\n"
        "CREATE TABLE ##totals (N INT);\n"
        "INSERT INTO ##totals SELECT COUNT(*) FROM PATIENTS;\n"
        "SELECT (SELECT COUNT(*) FROM #PATIENTS) AS Temporary, (SELECT N FROM ##totals) AS Total"
    )
    for _ in range(2):  # the second run finds no table left over by the first
        assert rows(fresh, batch) == [{"Temporary": 3, "Total": PATIENTS}]
    for name in ("#PATIENTS", "##totals"):
        error = sql_error(fresh, f"SELECT * FROM {name}")
        assert (error.error_code, error.message) == (208, f"Invalid object name '{name}'.")


def test_object_id_finds_tables_views_procedures_and_temporary_tables(
    fresh: PracticeDatabase,
) -> None:
    batch = (
        "IF OBJECT_ID('tempdb..#recent') IS NOT NULL DROP TABLE #recent;\n"
        "SELECT TOP 2 INTERNALID INTO #recent FROM PATIENTS;\n"
        "SELECT OBJECT_ID('tempdb..#recent') AS Temporary, OBJECT_ID('dbo.PATIENTS') AS T, "
        "OBJECT_ID('[dbo].[BPS_Patients]', 'V') AS V, OBJECT_ID('PATIENTS', 'V') AS NotAView, "
        "OBJECT_ID('BP_AddPatient', 'P') AS P, OBJECT_ID('NOPE') AS Missing"
    )
    (row,) = rows(fresh, batch)
    table = one(fresh, "SELECT object_id FROM sys.tables WHERE name = 'PATIENTS'")["object_id"]
    view = one(fresh, "SELECT object_id FROM sys.views WHERE name = 'BPS_Patients'")["object_id"]
    assert row["Temporary"] is not None
    assert (row["T"], row["V"], row["NotAView"], row["Missing"]) == (table, view, None, None)
    assert row["P"] is not None
    assert one(fresh, "SELECT OBJECT_ID('tempdb..#recent') AS Gone") == {"Gone": None}


def test_table_samples_are_refused(bp: PracticeDatabase) -> None:
    error = sql_error(bp, "SELECT COUNT(*) FROM PATIENTS TABLESAMPLE (10 PERCENT)")
    assert (error.error_type, error.error_code) == ("mssql", 102)


def test_raiserror_and_throw(bp: PracticeDatabase) -> None:
    error = sql_error(
        bp,
        "IF NOT EXISTS (SELECT 1 FROM PATIENTS WHERE INTERNALID = -1) "
        "RAISERROR('Patient %d not found in %s', 16, 1, -1, 'BPSPatients')",
    )
    assert (error.error_code, error.message) == (50000, "Patient -1 not found in BPSPatients")
    thrown = sql_error(bp, "IF 1 = 1 THROW 51000, 'No appointments that day.', 1; SELECT 1")
    assert (thrown.error_code, thrown.message) == (51000, "No appointments that day.")
    # Severity 10 or less is a message, not an error.
    assert rows(bp, "RAISERROR('working...', 10, 1); SELECT 1 AS Done") == [{"Done": 1}]


@pytest.mark.parametrize(
    "sql", ["PRINT 'x'; SELECT 1", "WHILE 1 = 0 SELECT 1", "SAVE TRAN x", "GO"]
)
def test_statements_the_emulator_does_not_run_are_refused(bp: PracticeDatabase, sql: str) -> None:
    error = sql_error(bp, sql)
    assert (error.error_type, error.error_code) == ("mssql", 102)


# -- T-SQL syntax -------------------------------------------------------------------------------


def test_bracketed_identifiers_and_unicode_literals(bp: PracticeDatabase) -> None:
    row = one(
        bp,
        "SELECT [p].[SURNAME] AS [Family Name], N'Zoë' AS [Name] "
        "FROM [BPSPatients].[dbo].[PATIENTS] AS [p] WHERE [p].[INTERNALID] = N'3'",
    )
    surname = one(bp, "SELECT SURNAME FROM PATIENTS WHERE INTERNALID = 3")["SURNAME"]
    assert row == {"Family Name": surname, "Name": "Zoë"}


def test_like_character_classes(bp: PracticeDatabase) -> None:
    surnames = [r["SURNAME"] for r in rows(bp, "SELECT SURNAME FROM PATIENTS")]
    expected = sum(1 for s in surnames if s[:1].upper() in "ABC")
    assert one(bp, "SELECT COUNT(*) AS N FROM PATIENTS WHERE SURNAME LIKE '[A-C]%'") == {
        "N": expected
    }
    assert one(bp, "SELECT COUNT(*) AS N FROM PATIENTS WHERE SURNAME LIKE '[^A-C]%'") == {
        "N": len(surnames) - expected
    }
    assert one(
        bp,
        "SELECT CASE WHEN 'abc' LIKE 'a_c' THEN 1 ELSE 0 END AS A, "
        "CASE WHEN '50%' LIKE '50!%' ESCAPE '!' THEN 1 ELSE 0 END AS B, "
        "CASE WHEN 'x' LIKE '[xyz]' THEN 1 ELSE 0 END AS C",
    ) == {"A": 1, "B": 1, "C": 1}


def test_like_ignores_trailing_spaces_of_the_value(bp: PracticeDatabase) -> None:
    # USERS.SURNAME is blank-padded; SQL Server's LIKE ignores the value's trailing spaces.
    (user,) = rows(bp, "SELECT TOP 1 SURNAME FROM USERS ORDER BY USERID")
    assert user["SURNAME"].endswith(" ")
    found = rows(
        bp,
        "SELECT TOP 1 SURNAME FROM USERS WHERE SURNAME LIKE @name ORDER BY USERID",
        parameters=[{"name": "@name", "type": "VarChar", "value": user["SURNAME"].rstrip()}],
    )
    assert found == [user]


def test_order_by_newid_shuffles_and_newid_is_a_guid(bp: PracticeDatabase) -> None:
    orders = {
        tuple(
            r["INTERNALID"]
            for r in rows(bp, "SELECT TOP 20 INTERNALID FROM PATIENTS ORDER BY NEWID()")
        )
        for _ in range(5)
    }
    assert len(orders) > 1
    assert all(len(order) == 20 for order in orders)
    guid = one(bp, "SELECT NEWID() AS G")["G"]
    assert str(uuid.UUID(guid)).upper() == guid


def test_outer_apply_top_1(bp: PracticeDatabase) -> None:
    found = rows(
        bp,
        "SELECT p.INTERNALID, last.AppointmentDate FROM PATIENTS p OUTER APPLY "
        "(SELECT TOP 1 a.APPOINTMENTDATE AS AppointmentDate FROM APPOINTMENTS a "
        "WHERE a.INTERNALID = p.INTERNALID ORDER BY a.APPOINTMENTDATE DESC) last "
        "WHERE p.INTERNALID <= 40 ORDER BY p.INTERNALID",
    )
    expected = rows(
        bp,
        "SELECT p.INTERNALID, (SELECT MAX(a.APPOINTMENTDATE) FROM APPOINTMENTS a "
        "WHERE a.INTERNALID = p.INTERNALID) AS AppointmentDate FROM PATIENTS p "
        "WHERE p.INTERNALID <= 40 ORDER BY p.INTERNALID",
    )
    assert found == expected
    assert any(r["AppointmentDate"] is None for r in found)  # OUTER keeps the unmatched
    crossed = rows(
        bp,
        "SELECT p.INTERNALID FROM PATIENTS p CROSS APPLY (SELECT TOP 1 a.RECORDID FROM "
        "APPOINTMENTS a WHERE a.INTERNALID = p.INTERNALID) x WHERE p.INTERNALID <= 40",
    )
    assert len(crossed) == sum(1 for r in found if r["AppointmentDate"] is not None)


def test_apply_returning_many_rows_is_refused(bp: PracticeDatabase) -> None:
    error = sql_error(
        bp,
        "SELECT p.INTERNALID, a.RECORDID FROM PATIENTS p CROSS APPLY (SELECT a.RECORDID FROM "
        "APPOINTMENTS a WHERE a.INTERNALID = p.INTERNALID) a",
    )
    assert (error.error_type, error.error_code) == ("mssql", 102)
    assert "APPLY" in error.message


def test_string_agg_within_group(bp: PracticeDatabase) -> None:
    surnames = [
        r["SURNAME"] for r in rows(bp, "SELECT SURNAME FROM PATIENTS WHERE INTERNALID <= 6")
    ]
    row = one(
        bp,
        "SELECT STRING_AGG(SURNAME, ', ') WITHIN GROUP (ORDER BY SURNAME DESC) AS Down, "
        "STRING_AGG(CAST(INTERNALID AS varchar), ';') WITHIN GROUP (ORDER BY INTERNALID) AS Ids "
        "FROM PATIENTS WHERE INTERNALID <= 6",
    )
    assert row == {
        "Down": ", ".join(sorted(surnames, key=str.casefold, reverse=True)),
        "Ids": "1;2;3;4;5;6",
    }


def test_for_xml_path_string_aggregation(bp: PracticeDatabase) -> None:
    surnames = [
        r["SURNAME"]
        for r in rows(bp, "SELECT SURNAME FROM PATIENTS WHERE INTERNALID <= 5 ORDER BY SURNAME")
    ]
    row = one(
        bp,
        "SELECT STUFF((SELECT ', ' + SURNAME FROM PATIENTS WHERE INTERNALID <= 5 "
        "ORDER BY SURNAME FOR XML PATH('')), 1, 2, '') AS Names, "
        "(SELECT '<' + 'a&b' + '>' FOR XML PATH('')) AS Escaped",
    )
    assert row == {"Names": ", ".join(surnames), "Escaped": "&lt;a&amp;b&gt;"}
    for sql in (
        "SELECT SURNAME FROM PATIENTS FOR XML PATH('')",  # elements per column: not emulated
        "SELECT SURNAME FROM PATIENTS FOR XML PATH('row'), ROOT('rows')",
        "SELECT SURNAME FROM PATIENTS FOR JSON AUTO",
    ):
        assert sql_error(bp, sql).error_code == 102


# -- T-SQL functions ----------------------------------------------------------------------------


def test_string_functions(bp: PracticeDatabase) -> None:
    row = one(
        bp,
        "SELECT LEFT('abcdef', 2) AS L, RIGHT('abcdef', 2) AS R, RIGHT('abc', 0) AS R0, "
        "LEN('ab  ') AS Len, LEN('  ab') AS LeadLen, LEN('') AS Empty, "
        "CHARINDEX('C', 'abcd') AS C, CHARINDEX('b', 'abcb', 3) AS C3, CHARINDEX('z', 'ab') AS C0, "
        "SUBSTRING('abcdef', 2, 3) AS S, SUBSTRING('abcdef', 0, 3) AS S0, "
        "UPPER('ab') AS U, LOWER('AB') AS Lo, LTRIM(RTRIM('  a  ')) AS T, "
        "REPLACE('abc', 'b', 'x') AS Rep, STUFF('abcdef', 2, 3, 'X') AS St, "
        "REPLICATE('ab', 3) AS Rpl, SPACE(2) + 'x' AS Sp, LEFT(12345, 2) AS LN",
    )
    assert row == {
        "L": "ab", "R": "ef", "R0": "", "Len": 2, "LeadLen": 4, "Empty": 0, "C": 3, "C3": 4,
        "C0": 0, "S": "bcd", "S0": "ab", "U": "AB", "Lo": "ab", "T": "a", "Rep": "axc",
        "St": "aXef", "Rpl": "ababab", "Sp": "  x", "LN": "12",
    }  # fmt: skip
    error = sql_error(bp, "SELECT SUBSTRING('abc', 1, -1)")
    assert error.error_code == 537


def test_len_of_padded_columns_ignores_trailing_spaces(bp: PracticeDatabase) -> None:
    (row,) = rows(bp, "SELECT TOP 1 SURNAME, LEN(SURNAME) AS N FROM USERS ORDER BY USERID")
    assert row["N"] == len(row["SURNAME"].rstrip()) < len(row["SURNAME"])


def test_concat_and_plus_null_semantics(bp: PracticeDatabase) -> None:
    row = one(
        bp,
        "SELECT CONCAT('a', NULL, 'b', 1) AS C, NULL + 'x' AS N, 'x' + NULL AS M, "
        "CONCAT_WS(', ', 'a', NULL, 'b') AS W, ISNULL(NULL + 'x', 'fallback') AS F",
    )
    assert row == {"C": "ab1", "N": None, "M": None, "W": "a, b", "F": "fallback"}


def test_zero_padding(bp: PracticeDatabase) -> None:
    row = one(
        bp,
        "SELECT RIGHT('0000' + CAST(7 AS varchar), 4) AS A, "
        "RIGHT('000000' + CONVERT(varchar(10), INTERNALID), 6) AS B, "
        "RIGHT(REPLICATE('0', 5) + CAST(INTERNALID AS varchar(5)), 5) AS C "
        "FROM PATIENTS WHERE INTERNALID = 42",
    )
    assert row == {"A": "0007", "B": "000042", "C": "00042"}


def test_date_construction_and_parts(bp: PracticeDatabase) -> None:
    row = one(
        bp,
        "SELECT DATEFROMPARTS(2024, 2, 29) AS D, EOMONTH('2024-02-10') AS E, "
        "EOMONTH(GETDATE(), 1) AS NextEnd, YEAR(GETDATE()) AS Y, MONTH(GETDATE()) AS M, "
        "DAY(GETDATE()) AS Dd, DATEPART(weekday, GETDATE()) AS W",
    )
    assert row == {
        "D": "2024-02-29T00:00:00", "E": "2024-02-29T00:00:00",
        "NextEnd": "2025-06-30T00:00:00", "Y": 2025, "M": 5, "Dd": 27, "W": 3,
    }  # fmt: skip
    error = sql_error(bp, "SELECT DATEFROMPARTS(2025, 2, 29)")
    assert error.error_code == 289


def test_datetime_as_text_in_sql_servers_styles(bp: PracticeDatabase) -> None:
    row = one(
        bp,
        "SELECT CAST(GETDATE() AS varchar) AS Style0, CONVERT(varchar(8), GETDATE(), 112) AS Ymd, "
        "CONVERT(varchar(10), GETDATE(), 103) AS Au, CONVERT(date, '27/05/2025', 103) AS Parsed, "
        "LEFT(GETDATE(), 11) AS Leftmost",
    )
    assert row == {
        "Style0": "May 27 2025 10:30AM",
        "Ymd": "20250527",
        "Au": "27/05/2025",
        "Parsed": "2025-05-27T00:00:00",
        "Leftmost": "May 27 2025",
    }


def test_health_check_functions(bp: PracticeDatabase) -> None:
    row = one(bp, "SELECT @@VERSION AS V, DB_NAME() AS D, @@SERVERNAME AS S, GETDATE() AS G")
    assert row["V"].startswith("Microsoft SQL Server 2019")
    assert row["D"] == "BPSPatients"
    assert row["S"] == "BPSSERVER\\BPSINSTANCE"
    assert row["G"] == "2025-05-27T10:30:15"
    assert bp.execute("SELECT @@VERSION", execution_mode="scalar").scalar == row["V"]


def test_firebird_only_functions_are_unknown_to_sql_server(bp: PracticeDatabase) -> None:
    for sql in ("SELECT LIST(SURNAME, ',') FROM PATIENTS", "SELECT CHAR_LENGTH('ab')"):
        error = sql_error(bp, sql)
        assert (error.error_type, error.error_code) == ("mssql", 195)


# -- schema discovery ---------------------------------------------------------------------------


def test_information_schema_tables_and_columns(bp: PracticeDatabase) -> None:
    tables = rows(
        bp,
        "SELECT TABLE_CATALOG, TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE FROM INFORMATION_SCHEMA.TABLES "
        "WHERE TABLE_NAME IN ('PATIENTS', 'BPS_Patients') ORDER BY TABLE_NAME",
    )
    assert tables == [
        {"TABLE_CATALOG": "BPSPatients", "TABLE_SCHEMA": "dbo", "TABLE_NAME": "BPS_Patients",
         "TABLE_TYPE": "VIEW"},
        {"TABLE_CATALOG": "BPSPatients", "TABLE_SCHEMA": "dbo", "TABLE_NAME": "PATIENTS",
         "TABLE_TYPE": "BASE TABLE"},
    ]  # fmt: skip
    columns = {
        r["COLUMN_NAME"]: (r["DATA_TYPE"], r["CHARACTER_MAXIMUM_LENGTH"], r["IS_NULLABLE"])
        for r in rows(
            bp,
            "SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, IS_NULLABLE "
            "FROM BPSPatients.INFORMATION_SCHEMA.COLUMNS WHERE TABLE_NAME = 'patients'",
        )
    }
    assert columns["INTERNALID"] == ("int", None, "NO")
    assert columns["SURNAME"] == ("varchar", 40, "YES")
    assert columns["DOB"] == ("datetime", None, "YES")
    assert columns["MEDICARENO"] == ("varchar", 13, "YES")
    names = {r["TABLE_NAME"] for r in rows(bp, "SELECT TABLE_NAME FROM INFORMATION_SCHEMA.TABLES")}
    assert {"BPS_Visits", "BPS_CurrentRx", "BPS_Investigations", "PRACTICE"} <= names
    assert not any(n.startswith(("sqlite", "INFORMATION_SCHEMA")) for n in names)


def test_sys_catalog_views(bp: PracticeDatabase) -> None:
    columns = rows(
        bp,
        "SELECT c.name, c.column_id, c.system_type_id, c.max_length, c.is_nullable "
        "FROM sys.tables t JOIN sys.columns c ON c.object_id = t.object_id "
        "JOIN sys.schemas s ON s.schema_id = t.schema_id "
        "WHERE t.name = 'patients' AND s.name = 'dbo' AND c.column_id IN (1, 13, 14) "
        "ORDER BY c.column_id",
    )
    assert columns == [
        {"name": "INTERNALID", "column_id": 1, "system_type_id": 56, "max_length": 4,
         "is_nullable": 0},
        {"name": "FIRSTNAME", "column_id": 13, "system_type_id": 167, "max_length": 40,
         "is_nullable": 1},
        {"name": "SURNAME", "column_id": 14, "system_type_id": 167, "max_length": 40,
         "is_nullable": 1},
    ]  # fmt: skip
    counts = one(
        bp,
        "SELECT (SELECT COUNT(*) FROM sys.tables) AS T, (SELECT COUNT(*) FROM sys.views) AS V, "
        "(SELECT COUNT(*) FROM INFORMATION_SCHEMA.TABLES) AS I, "
        "(SELECT COUNT(*) FROM sys.objects WHERE type = 'U') AS U",
    )
    assert counts["T"] + counts["V"] == counts["I"]
    assert counts["T"] == counts["U"] > 20


def test_firebird_schema_discovery(zedmed: PracticeDatabase) -> None:
    tables = [
        r["NAME"]
        for r in rows(
            zedmed,
            "SELECT TRIM(RDB$RELATION_NAME) AS NAME FROM RDB$RELATIONS "
            "WHERE RDB$SYSTEM_FLAG = 0 ORDER BY RDB$RELATION_NAME",
        )
    ]
    assert tables == ["APPOINTMENT", "DOCTOR", "PATIENT"]
    fields = rows(
        zedmed,
        "SELECT TRIM(F.RDB$FIELD_NAME) AS NAME, T.RDB$FIELD_TYPE AS FIELD_TYPE, "
        "T.RDB$CHARACTER_LENGTH AS LENGTH FROM RDB$RELATION_FIELDS F "
        "JOIN RDB$FIELDS T ON T.RDB$FIELD_NAME = F.RDB$FIELD_SOURCE "
        "WHERE F.RDB$RELATION_NAME = 'PATIENT' ORDER BY F.RDB$FIELD_POSITION ROWS 3",
    )
    assert fields == [
        {"NAME": "PATIENT_ID", "FIELD_TYPE": 8, "LENGTH": None},
        {"NAME": "TITLE", "FIELD_TYPE": 37, "LENGTH": 10},
        {"NAME": "FIRST_NAME", "FIELD_TYPE": 37, "LENGTH": 40},
    ]
    error = sql_error(zedmed, "SELECT * FROM INFORMATION_SCHEMA.TABLES")
    assert (error.error_type, error.error_code) == ("fbsql", -204)


# -- Best Practice clinical objects ---------------------------------------------------------------


def test_visits_follow_attended_appointments(bp: PracticeDatabase) -> None:
    attended = one(
        bp,
        "SELECT COUNT(*) AS N FROM APPOINTMENTS WHERE RECORDSTATUS = 1 AND APPOINTMENTCODE >= 5",
    )
    visits = one(bp, "SELECT COUNT(*) AS N FROM BPS_Visits")
    assert visits == attended
    assert attended["N"] > 0
    (visit,) = rows(
        bp,
        "SELECT TOP 1 v.InternalID, v.VisitDate, v.VisitType, v.UserID, v.DrName, a.Provider "
        "FROM BPS_Visits v JOIN BPS_Appointments a ON a.InternalID = v.InternalID "
        "AND a.UserID = v.UserID AND a.AppointmentDate = CAST(v.VisitDate AS date) "
        "ORDER BY v.VisitDate DESC",
    )
    assert visit["VisitDate"][:10] <= NOW.date().isoformat()
    assert visit["DrName"] == visit["Provider"]
    kinds = {r["VisitType"] for r in rows(bp, "SELECT DISTINCT VisitType FROM BPS_Visits")}
    assert "Surgery" in kinds
    assert kinds <= {"Surgery", "Home", "Hospital", "RACF", "Telephone", "Telehealth"}


def test_current_rx_and_practice(bp: PracticeDatabase) -> None:
    (rx,) = rows(
        bp,
        "SELECT TOP 1 InternalID, DrugName, Dose, Frequency, PRN, Route, Quantity, ProductUnit, "
        "Repeats, Indication, LastDate, ProductID FROM BPS_CurrentRx ORDER BY InternalID",
    )
    assert rx["DrugName"]
    assert rx["LastDate"] <= NOW.isoformat()
    patients_on_rx = one(bp, "SELECT COUNT(DISTINCT InternalID) AS N FROM BPS_CurrentRx")["N"]
    assert 0.15 * PATIENTS < patients_on_rx < 0.45 * PATIENTS
    (practice,) = rows(bp, "SELECT PRACTICENAME, POSTCODE FROM PRACTICE")
    location = one(bp, "SELECT LOCATIONNAME FROM LOCATIONS WHERE LOCATIONID = 1")
    assert practice["PRACTICENAME"] == location["LOCATIONNAME"]
    assert len(practice["POSTCODE"]) == 4


def test_clinical_records_are_deterministic_by_seed() -> None:
    first, second, other = make(seed=21), make(seed=21), make(seed=22)
    try:
        for sql in (
            "SELECT * FROM BPS_CurrentRx ORDER BY RecordID",
            "SELECT * FROM BPS_Investigations ORDER BY ReportID",
            "SELECT * FROM PRACTICE",
        ):
            assert rows(first, sql) == rows(second, sql)
            assert rows(first, sql) != rows(other, sql)
    finally:
        for db in (first, second, other):
            db.close()


def test_investigation_summary_procedure(bp: PracticeDatabase) -> None:
    (patient,) = rows(
        bp,
        "SELECT TOP 1 InternalID FROM BPS_Investigations GROUP BY InternalID "
        "HAVING COUNT(*) > 1 ORDER BY InternalID",
    )
    summary = rows(
        bp,
        "BP_GetInvestigationSummary",
        command_type="storedProcedure",
        parameters=[{"name": "@InternalID", "type": "Int", "value": str(patient["InternalID"])}],
    )
    direct = rows(
        bp,
        "SELECT ReportID FROM BPS_Investigations WHERE InternalID = @id",
        parameters=[{"name": "@id", "type": "Int", "value": str(patient["InternalID"])}],
    )
    assert sorted(r["ReportID"] for r in summary) == sorted(r["ReportID"] for r in direct)
    reported = [r["Reported"] for r in summary if r["Reported"] is not None]
    assert reported == sorted(reported, reverse=True)
    assert {"TestName", "Collected", "Reported", "Checked", "Notation", "Action"} <= set(summary[0])


def test_add_message_procedure(fresh: PracticeDatabase) -> None:
    (user,) = rows(fresh, "SELECT TOP 1 UserID FROM BPS_Users ORDER BY UserID")
    result = fresh.execute(
        "DECLARE @id INT; EXEC @id = BP_AddMessage @userid = @user, @subject = N'Results', "
        "@message = N'Please call the patient'; SELECT @id AS MessageID",
        parameters=[{"name": "@user", "type": "Int", "value": str(user["UserID"])}],
    )
    assert result.rows is not None
    (message,) = rows(fresh, "SELECT * FROM MESSAGES")
    assert result.rows == [{"MessageID": message["MESSAGEID"]}]
    assert (message["USERID"], message["SUBJECT"], message["CREATED"]) == (
        user["UserID"], "Results", NOW.isoformat(),
    )  # fmt: skip
    error = sql_error(fresh, "EXEC BP_AddMessage @userid = 1, @subject = 'x', @message = 'y'")
    assert (error.error_code, error.message) == (50000, "User 1 does not exist.")


# -- Firebird -------------------------------------------------------------------------------------


def test_starting_with_and_containing(zedmed: PracticeDatabase) -> None:
    surnames = [r["SURNAME"] for r in rows(zedmed, "SELECT SURNAME FROM PATIENT")]
    starting = one(zedmed, "SELECT COUNT(*) AS N FROM PATIENT WHERE SURNAME STARTING WITH 'S'")
    assert starting == {"N": sum(1 for s in surnames if s.startswith("S"))}
    assert one(zedmed, "SELECT COUNT(*) AS N FROM PATIENT WHERE SURNAME STARTING WITH 's'") == {
        "N": sum(1 for s in surnames if s.startswith("s"))
    }  # case-sensitive
    containing = one(zedmed, "SELECT COUNT(*) AS N FROM PATIENT WHERE SURNAME CONTAINING 'SON'")
    assert containing == {"N": sum(1 for s in surnames if "son" in s.lower())}
    assert containing["N"] > 0
    assert one(zedmed, "SELECT COUNT(*) AS N FROM PATIENT WHERE SURNAME NOT CONTAINING 'son'") == {
        "N": len(surnames) - containing["N"]
    }


def test_firebird_like_is_case_sensitive(zedmed: PracticeDatabase) -> None:
    surnames = [r["SURNAME"] for r in rows(zedmed, "SELECT SURNAME FROM PATIENT")]
    assert one(zedmed, "SELECT COUNT(*) AS N FROM PATIENT WHERE SURNAME LIKE 's%'") == {
        "N": sum(1 for s in surnames if s.startswith("s"))
    }
    assert one(zedmed, "SELECT COUNT(*) AS N FROM PATIENT WHERE SURNAME LIKE 'S%'") == {
        "N": sum(1 for s in surnames if s.startswith("S"))
    }


def test_select_from_rdb_database(zedmed: PracticeDatabase) -> None:
    assert rows(zedmed, "SELECT CURRENT_DATE AS D, 1 + 1 AS Two FROM RDB$DATABASE") == [
        {"D": "2025-05-27T00:00:00", "Two": 2}
    ]


def test_list_aggregates_with_a_separator(zedmed: PracticeDatabase) -> None:
    row = one(
        zedmed,
        "SELECT LIST(PATIENT_ID, ';') AS IDS, LIST(PATIENT_ID) AS PLAIN FROM "
        "(SELECT FIRST 3 PATIENT_ID FROM PATIENT ORDER BY PATIENT_ID)",
    )
    assert row == {"IDS": "1;2;3", "PLAIN": "1,2,3"}


def test_rows_m_to_n(zedmed: PracticeDatabase) -> None:
    found = rows(zedmed, "SELECT PATIENT_ID FROM PATIENT ORDER BY PATIENT_ID ROWS 3 TO 5")
    assert [r["PATIENT_ID"] for r in found] == [3, 4, 5]
    first = rows(zedmed, "SELECT PATIENT_ID FROM PATIENT ORDER BY PATIENT_ID ROWS 2")
    assert [r["PATIENT_ID"] for r in first] == [1, 2]


def test_firebird_dateadd_and_datediff(zedmed: PracticeDatabase) -> None:
    row = one(
        zedmed,
        "SELECT DATEADD(7 DAY TO CURRENT_DATE) AS A, DATEADD(-1 MONTH TO CURRENT_DATE) AS B, "
        "DATEADD(DAY, 1, CURRENT_DATE) AS C, "
        "DATEDIFF(DAY FROM CAST('2025-05-01' AS DATE) TO CURRENT_DATE) AS D FROM RDB$DATABASE",
    )
    assert row == {
        "A": "2025-06-03T00:00:00",
        "B": "2025-04-27T00:00:00",
        "C": "2025-05-28T00:00:00",
        "D": 26,
    }


def test_appointments_next_week_in_firebird(zedmed: PracticeDatabase) -> None:
    plus = one(
        zedmed,
        "SELECT COUNT(*) AS N FROM APPOINTMENT WHERE APPT_DATE BETWEEN CURRENT_DATE "
        "AND CURRENT_DATE + 7",
    )
    dateadd = one(
        zedmed,
        "SELECT COUNT(*) AS N FROM APPOINTMENT WHERE APPT_DATE BETWEEN CAST('TODAY' AS DATE) "
        "AND DATEADD(7 DAY TO CURRENT_DATE)",
    )
    assert plus == dateadd
    assert plus["N"] > 0


# -- dialect realism ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT TOP 3 PATIENT_ID FROM PATIENT",
        "SELECT [SURNAME] FROM PATIENT",
        "SELECT PATIENT_ID FROM PATIENT LIMIT 3",
        "IF 1 = 1 SELECT 1 FROM RDB$DATABASE",
    ],
)
def test_t_sql_on_a_firebird_site_fails_as_firebird_would(
    zedmed: PracticeDatabase, sql: str
) -> None:
    error = sql_error(zedmed, sql)
    assert (error.error_type, error.error_code) == ("fbsql", -104)
    assert "Token unknown" in error.message


@pytest.mark.parametrize(
    "sql", ["SELECT GETDATE() FROM RDB$DATABASE", "SELECT FIRST 1 LEN(SURNAME) FROM PATIENT"]
)
def test_sql_server_functions_are_unknown_to_firebird(zedmed: PracticeDatabase, sql: str) -> None:
    error = sql_error(zedmed, sql)
    assert (error.error_type, error.error_code) == ("fbsql", -804)
    assert "Function unknown" in error.message


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT FIRST 3 INTERNALID FROM PATIENTS",
        "SELECT FIRST 3 SKIP 2 INTERNALID FROM PATIENTS",
        "SELECT INTERNALID FROM PATIENTS ROWS 3",
        "SELECT INTERNALID FROM PATIENTS ORDER BY INTERNALID ROWS 1 TO 3",
        "SELECT INTERNALID FROM PATIENTS LIMIT 3",
        "SELECT FIRSTNAME || SURNAME FROM PATIENTS",
        "SELECT SURNAME FROM PATIENTS WHERE SURNAME STARTING WITH 'S'",
    ],
)
def test_firebird_syntax_on_a_best_practice_site_fails_as_sql_server_would(
    bp: PracticeDatabase, sql: str
) -> None:
    error = sql_error(bp, sql)
    assert (error.error_type, error.error_code) == ("mssql", 102)
    assert error.message.startswith("Incorrect syntax near")


def test_outer_apply_star_and_aggregates(bp: PracticeDatabase) -> None:
    (row,) = rows(
        bp,
        "SELECT p.INTERNALID, x.*, n.Visits FROM PATIENTS p "
        "OUTER APPLY (SELECT TOP 1 a.RECORDID, a.APPOINTMENTDATE AS Latest FROM APPOINTMENTS a "
        "WHERE a.INTERNALID = p.INTERNALID ORDER BY a.APPOINTMENTDATE DESC, a.RECORDID DESC) x "
        "OUTER APPLY (SELECT COUNT(*) AS Visits FROM BPS_Visits v "
        "WHERE v.InternalID = p.INTERNALID) n WHERE p.INTERNALID = 7",
    )
    latest = rows(
        bp,
        "SELECT TOP 1 RECORDID, APPOINTMENTDATE FROM APPOINTMENTS WHERE INTERNALID = 7 "
        "ORDER BY APPOINTMENTDATE DESC, RECORDID DESC",
    )
    visits = one(bp, "SELECT COUNT(*) AS N FROM BPS_Visits WHERE InternalID = 7")["N"]
    assert row == {
        "INTERNALID": 7,
        "RECORDID": latest[0]["RECORDID"] if latest else None,
        "Latest": latest[0]["APPOINTMENTDATE"] if latest else None,
        "Visits": visits,
    }


def test_t_sql_timestamp_is_rowversion_and_refused(bp: PracticeDatabase) -> None:
    error = sql_error(bp, "SELECT CAST('NOW' AS TIMESTAMP)")
    assert (error.error_type, error.error_code) == ("mssql", 102)


def test_avg_of_integers_is_an_integer(bp: PracticeDatabase) -> None:
    lengths = [
        r["APPOINTMENTLENGTH"] for r in rows(bp, "SELECT APPOINTMENTLENGTH FROM APPOINTMENTS")
    ]
    row = one(
        bp,
        "SELECT AVG(APPOINTMENTLENGTH) AS A, AVG(CAST(APPOINTMENTLENGTH AS float)) AS F, "
        "AVG(1.0 * APPOINTMENTLENGTH) AS D FROM APPOINTMENTS",
    )
    assert row["A"] == sum(lengths) // len(lengths)  # SQL Server truncates an int average
    assert row["F"] == pytest.approx(sum(lengths) / len(lengths))
    assert row["D"] == pytest.approx(sum(lengths) / len(lengths))
    assert one(bp, "SELECT AVG(x) AS A FROM (SELECT 1 AS x UNION ALL SELECT 2) t") == {"A": 1}
    assert one(bp, "SELECT AVG(x) AS A FROM (SELECT -1 AS x UNION ALL SELECT -2) t") == {"A": -1}


def test_text_comparisons_are_case_insensitive_beyond_columns(bp: PracticeDatabase) -> None:
    surname = one(bp, "SELECT SURNAME FROM PATIENTS WHERE INTERNALID = 1")["SURNAME"]
    row = one(
        bp,
        "SELECT CASE WHEN 'abc' = 'ABC' THEN 1 ELSE 0 END AS Same, "
        "CASE WHEN 'abc' = 'abc   ' THEN 1 ELSE 0 END AS Padded, "
        "(SELECT COUNT(*) FROM PATIENTS WHERE LTRIM(RTRIM(SURNAME)) = @lower "
        " AND INTERNALID = 1) AS Trimmed, "
        "(SELECT COUNT(*) FROM PATIENTS WHERE LTRIM(SURNAME) IN (@lower, 'x') "
        " AND INTERNALID = 1) AS Listed",
        parameters=[{"name": "@lower", "type": "VarChar", "value": surname.lower()}],
    )
    assert row == {"Same": 1, "Padded": 1, "Trimmed": 1, "Listed": 1}


def test_ambiguous_day_month_literals_are_refused(bp: PracticeDatabase) -> None:
    # 03/02/1980 is 2 March or 3 February by the login's language: never guessed.
    error = sql_error(bp, "SELECT COUNT(*) FROM PATIENTS WHERE DOB = '03/02/1980'")
    assert (error.error_type, error.error_code) == ("mssql", 102)


def test_datetime_to_number_casts(bp: PracticeDatabase) -> None:
    row = one(
        bp,
        "SELECT CAST(FLOOR(CAST(GETDATE() AS float)) AS datetime) AS Midnight, "
        "CAST(GETDATE() AS int) AS DayNumber, CAST('12' AS int) AS Twelve",
    )
    assert row == {"Midnight": "2025-05-27T00:00:00", "DayNumber": 45802, "Twelve": 12}


def test_computed_view_columns_compare_case_insensitively(bp: PracticeDatabase) -> None:
    (appointment,) = rows(bp, "SELECT TOP 1 Provider, Patient FROM BPS_Appointments")
    (visit,) = rows(bp, "SELECT TOP 1 DrName FROM BPS_Visits")
    checks = [
        ("BPS_Appointments", "Provider", appointment["Provider"]),
        ("BPS_Appointments", "Patient", appointment["Patient"]),
        ("BPS_Visits", "DrName", visit["DrName"]),
    ]
    for view, column, value in checks:
        sql = f"SELECT COUNT(*) AS N FROM {view} WHERE {column} = @v"
        exact = one(bp, sql, parameters=[{"name": "@v", "type": "VarChar", "value": value}])
        for variant in (value.upper(), value.lower() + "  "):
            found = one(bp, sql, parameters=[{"name": "@v", "type": "VarChar", "value": variant}])
            assert found == exact, (view, column, variant)
        assert exact["N"] > 0


def test_firebird_string_functions_and_text_casts(zedmed: PracticeDatabase) -> None:
    row = one(
        zedmed,
        "SELECT LEFT('abcdef', 2) AS L, RIGHT('abcdef', 2) AS R, LPAD(42, 6, '0') AS P, "
        "RPAD('a', 3, '-') AS Q, LPAD('abcdef', 3) AS C, REVERSE('abc') AS V, "
        "SUBSTRING('abcdef' FROM 2 FOR 3) AS S, CHAR_LENGTH('ab  ') AS N, "
        "POSITION('c' IN 'abcd') AS I, UPPER('ab') || LOWER('CD') AS U, "
        "CAST(CURRENT_DATE AS VARCHAR(30)) AS D, CAST(CURRENT_TIMESTAMP AS VARCHAR(30)) AS T, "
        "CURRENT_TIME AS Now FROM RDB$DATABASE",
    )
    assert row == {
        "L": "ab", "R": "ef", "P": "000042", "Q": "a--", "C": "abc", "V": "cba", "S": "bcd",
        "N": 4, "I": 3, "U": "ABcd", "D": "2025-05-27", "T": "2025-05-27 10:30:15.0000",
        "Now": "10:30:15",
    }  # fmt: skip
