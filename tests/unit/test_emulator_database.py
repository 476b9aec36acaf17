"""The emulator's practice databases: T-SQL as integrators write it, errors as SQL Server words
them."""

from __future__ import annotations

import base64
import datetime
import threading
from typing import Any

import pytest

from halo_async.emulator.database import (
    Catalogue,
    ParameterConversionError,
    PracticeDatabase,
    SqlError,
    UnknownCatalogueError,
    catalogues_for,
)
from tests.support import PRACTICE_PATIENTS as PATIENTS
from tests.support import practice_db as make
from tests.support import rows


def param(name: str, api_type: str, value: str | None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": api_type, "value": value, **extra}


def sql_error(db: PracticeDatabase, sql: str, **kwargs: Any) -> SqlError:
    with pytest.raises(SqlError) as caught:
        db.execute(sql, **kwargs)
    return caught.value


# -- catalogues and laziness -------------------------------------------------------------------


def test_catalogues_per_pms_type() -> None:
    assert catalogues_for("BestPractice") == [Catalogue("Patients", True)]
    zedmed = catalogues_for("Zedmed")
    assert len(zedmed) == 2
    assert [c.is_default for c in zedmed] == [True, False]
    assert catalogues_for("D4w")[0].is_default
    assert catalogues_for("Best Practice") == catalogues_for("BestPractice")


def test_constructing_many_sites_generates_nothing_until_queried() -> None:
    sites = [make(seed=seed) for seed in range(200)]
    try:
        assert not any(site.generated for site in sites)
        sites[7].execute("SELECT 1 AS One")
        assert sites[7].generated
        assert sum(site.generated for site in sites) == 1
    finally:
        for site in sites:
            site.close()


def test_unknown_catalogue_is_refused_and_names_are_case_insensitive(
    zedmed: PracticeDatabase,
) -> None:
    with pytest.raises(UnknownCatalogueError) as caught:
        zedmed.execute("SELECT 1", catalogue="BPSSamples")
    assert caught.value.catalogue == "BPSSamples"
    second = catalogues_for("Zedmed")[1].name
    assert rows(zedmed, "SELECT FIRST 1 ITEM_NO FROM MBS_ITEM", catalogue=second.lower())


def test_same_seed_same_rows_across_sites() -> None:
    first, second, other = make(seed=9), make(seed=9), make(seed=10)
    try:
        query = "SELECT TOP 20 * FROM PATIENTS ORDER BY INTERNALID"
        assert rows(first, query) == rows(second, query)
        assert rows(first, query) != rows(other, query)
    finally:
        first.close()
        second.close()
        other.close()


# -- T-SQL ------------------------------------------------------------------------------------


def test_top_and_three_two_and_one_part_names(bp: PracticeDatabase) -> None:
    for name in (
        "BPSPatients.dbo.PATIENTS",
        "BPSPATIENTS.dbo.PATIENTS",
        "dbo.PATIENTS",
        "PATIENTS",
    ):
        found = rows(bp, f"SELECT TOP (40) INTERNALID FROM {name} ORDER BY INTERNALID")
        assert [r["INTERNALID"] for r in found] == list(range(1, 41))
    assert len(rows(bp, "SELECT TOP 3 * FROM [dbo].[BPS_Patients]")) == 3


def test_column_names_as_written_and_values_json_ready(bp: PracticeDatabase) -> None:
    (row,) = rows(
        bp,
        "SELECT TOP 1 internalid, p.Surname AS Family, DOB, COUNT(*) OVER () "
        "FROM BPS_Patients p WHERE DOB IS NOT NULL ORDER BY InternalID",
    )
    assert list(row) == ["internalid", "Family", "DOB", "Column1"]
    assert isinstance(row["internalid"], int)
    assert isinstance(row["Family"], str)
    datetime.datetime.strptime(row["DOB"], "%Y-%m-%dT%H:%M:%S")
    (blob,) = rows(bp, "SELECT CAST('hi' AS BLOB) AS B, NULL AS N")
    assert blob == {"B": base64.b64encode(b"hi").decode(), "N": None}


def test_getdate_and_date_arithmetic_use_the_injected_clock(bp: PracticeDatabase) -> None:
    (row,) = rows(
        bp,
        "SELECT GETDATE() AS Now, CONVERT(date, GETDATE()) AS Today, "
        "DATEADD(day, -7, GETDATE()) AS WeekAgo, DATEADD(month, 1, '2024-01-31') AS EndFeb, "
        "DATEDIFF(year, '1980-12-31', GETDATE()) AS Years, DATEPART(dw, GETDATE()) AS Weekday, "
        "YEAR(GETDATE()) AS Y, CONVERT(varchar(10), GETDATE(), 103) AS Australian",
    )
    assert row == {
        "Now": "2025-05-27T10:30:15",
        "Today": "2025-05-27T00:00:00",
        "WeekAgo": "2025-05-20T10:30:15",
        "EndFeb": "2024-02-29T00:00:00",
        "Years": 45,
        "Weekday": 3,
        "Y": 2025,
        "Australian": "27/05/2025",
    }


def test_todays_appointments_are_found_with_getdate(bp: PracticeDatabase) -> None:
    today = rows(
        bp,
        "SELECT COUNT(*) AS N FROM BPS_Appointments "
        "WHERE AppointmentDate = CONVERT(date, GETDATE())",
    )
    week = rows(
        bp,
        "SELECT COUNT(*) AS N FROM dbo.APPOINTMENTS "
        "WHERE APPOINTMENTDATE >= DATEADD(day, -7, GETDATE()) AND APPOINTMENTDATE < GETDATE()",
    )
    assert today[0]["N"] > 0
    assert week[0]["N"] > today[0]["N"]


def test_t_sql_operators_behave_like_sql_server(bp: PracticeDatabase) -> None:
    (row,) = rows(
        bp,
        "SELECT 7 / 2 AS IntDiv, -7 / 2 AS NegDiv, 7.0 / 2 AS Real, 'Dr' + ' ' + 'Who' AS Name, "
        "ISNULL(NULL, 'x') AS Fallback, LEN('abc') AS Length",
    )
    assert row == {
        "IntDiv": 3,
        "NegDiv": -3,
        "Real": 3.5,
        "Name": "Dr Who",
        "Fallback": "x",
        "Length": 3,
    }


def test_date_literals_compare_with_stored_datetimes(bp: PracticeDatabase) -> None:
    (literal,) = rows(bp, "SELECT COUNT(*) AS N FROM PATIENTS WHERE DOB >= '1990-01-01'")
    (typed,) = rows(
        bp,
        "SELECT COUNT(*) AS N FROM PATIENTS WHERE DOB >= @since",
        parameters=[param("@since", "Date", "1990-01-01")],
    )
    assert 0 < literal["N"] == typed["N"] < PATIENTS


def test_parameters_are_bound_by_name_and_typed(bp: PracticeDatabase) -> None:
    (row,) = rows(
        bp,
        "SELECT @id + 1 AS NextId, @flag AS Flag, @amount * 2 AS Double, @when AS WhenText, "
        "@name AS Name, @nothing AS Nothing, @Id AS SameId",
        parameters=[
            param("@id", "Int", "41"),
            param("@flag", "Bit", "true"),
            param("@amount", "Decimal", "12.25"),
            param("@when", "DateTime", "2025-05-27 09:15:00"),
            param("@name", "NVarChar", "O'Brien"),
            param("@nothing", "Int", None),
        ],
    )
    assert row == {
        "NextId": 42,
        "Flag": 1,
        "Double": 24.5,
        "WhenText": "2025-05-27T09:15:00",
        "Name": "O'Brien",
        "Nothing": None,
        "SameId": 41,
    }
    found = rows(
        bp,
        "SELECT TOP 5 Surname FROM BPS_Patients WHERE Surname LIKE @pattern",
        parameters=[param("@pattern", "VarChar", "O'%")],
    )
    assert found
    assert all(r["Surname"].startswith("O'") for r in found)


@pytest.mark.parametrize(
    ("api_type", "value", "code"),
    [("Int", "12x", 245), ("Date", "not a date", 241), ("Decimal", "abc", 8114),
     ("TinyInt", "300", 8115), ("UniqueIdentifier", "nope", 8169)],
)  # fmt: skip
def test_a_parameter_that_does_not_convert_is_a_sql_error(
    bp: PracticeDatabase, api_type: str, value: str, code: int
) -> None:
    error = sql_error(bp, "SELECT @p AS P", parameters=[param("@p", api_type, value)])
    assert (error.error_type, error.error_code) == ("mssql", code)


def test_undeclared_variable(bp: PracticeDatabase) -> None:
    error = sql_error(bp, "SELECT * FROM PATIENTS WHERE INTERNALID = @missing")
    assert (error.error_code, error.message) == (
        137,
        'Must declare the scalar variable "@missing".',
    )


def test_declare_set_select_batch_and_output_parameter(bp: PracticeDatabase) -> None:
    assert rows(bp, "DECLARE @x INT = 40; SET @x = @x + '2'; SELECT @x AS X;") == [{"X": 42}]
    result = bp.execute(
        "SELECT @count = COUNT(*) FROM PATIENTS",
        parameters=[{"name": "@count", "direction": "output", "type": "Int", "size": 4}],
    )
    assert result.parameters == [
        {"name": "@count", "direction": "output", "type": "Int", "size": 4, "value": str(PATIENTS)}
    ]


# -- execution modes ----------------------------------------------------------------------------


def test_scalar_mode_returns_first_value_of_first_row(bp: PracticeDatabase) -> None:
    result = bp.execute("SELECT COUNT(*), 'ignored' FROM PATIENTS", execution_mode="scalar")
    assert (result.scalar, result.rows, result.rows_affected) == (PATIENTS, None, None)
    empty = bp.execute("SELECT INTERNALID FROM PATIENTS WHERE 1 = 0", execution_mode="scalar")
    assert empty.scalar is None


def test_reader_mode_with_no_rows_gives_an_empty_list(bp: PracticeDatabase) -> None:
    assert rows(bp, "SELECT * FROM PATIENTS WHERE INTERNALID = -1") == []


def test_non_query_changes_persist_on_that_site_only(fresh: PracticeDatabase) -> None:
    other = make()
    try:
        update = fresh.execute(
            "UPDATE dbo.PATIENTS SET FIRSTNAME = @name WHERE INTERNALID <= 3",
            execution_mode="nonQuery",
            parameters=[param("@name", "NVarChar", "Zed")],
        )
        assert (update.rows_affected, update.rows) == (3, None)
        query = "SELECT COUNT(*) FROM PATIENTS WHERE FIRSTNAME = 'zed'"
        assert fresh.execute(query, execution_mode="scalar").scalar == 3
        assert other.execute(query, execution_mode="scalar").scalar == 0
        select = fresh.execute("SELECT * FROM PATIENTS", execution_mode="nonQuery")
        assert select.rows_affected == -1
    finally:
        other.close()


def test_insert_returns_identity(fresh: PracticeDatabase) -> None:
    (row,) = rows(
        fresh,
        "INSERT INTO APPOINTMENTS (INTERNALID, USERID, APPOINTMENTDATE, APPOINTMENTTIME, "
        "APPOINTMENTLENGTH) VALUES (1, 2, '2025-06-02', 32400, 900); "
        "SELECT SCOPE_IDENTITY() AS NewId",
    )
    stored = fresh.execute(
        "SELECT APPOINTMENTTIME FROM APPOINTMENTS WHERE RECORDID = @id",
        execution_mode="scalar",
        parameters=[param("@id", "Int", str(row["NewId"]))],
    )
    assert stored.scalar == 32400


# -- stored procedures ----------------------------------------------------------------------


def book_users(db: PracticeDatabase) -> list[dict[str, Any]]:
    return rows(db, "BPSPATIENTS.dbo.BP_GetAppointmentBookUsers", command_type="storedProcedure")


def free_slots(db: PracticeDatabase, user_id: int, day: str) -> list[dict[str, Any]]:
    return rows(
        db,
        "BP_GetFreeAppointments",
        command_type="storedProcedure",
        parameters=[param("@userid", "Int", str(user_id)), param("@aptdate", "Date", day)],
    )


def test_appointment_book_users_and_patient_lookup(bp: PracticeDatabase) -> None:
    users = book_users(bp)
    assert users
    assert all(u["UserID"] > 0 for u in users)
    patient = rows(
        bp, "SELECT TOP 1 Firstname, Surname, DOB FROM BPS_Patients WHERE DOB IS NOT NULL"
    )
    found = rows(
        bp,
        "BP_GetPatientByNameDOB",
        command_type="storedProcedure",
        parameters=[
            param("@firstname", "VarChar", patient[0]["Firstname"].upper()),
            param("@surname", "VarChar", patient[0]["Surname"].lower()),
            param("@dob", "Date", patient[0]["DOB"][:10]),
        ],
    )
    assert found
    assert found[0]["Surname"] == patient[0]["Surname"]


def test_add_appointment_returns_new_id_and_cancel_removes_it(fresh: PracticeDatabase) -> None:
    doctor = next(u["UserID"] for u in book_users(fresh) if u["Title"] == "Dr")
    slot = free_slots(fresh, doctor, "2025-05-28")[0]
    booked = fresh.execute(
        "BP_AddAppointment",
        command_type="storedProcedure",
        execution_mode="nonQuery",
        parameters=[
            param("@aptdate", "Date", "2025-05-28"),
            param("@apttime", "Int", str(slot["AppointmentTime"])),
            param("@aptlen", "Int", "900"),
            param("@practitionerid", "Int", str(doctor)),
            param("@patientid", "Int", "12"),
            param("@locationid", "Int", "1"),
            {"name": "@RETURN_VALUE", "direction": "returnValue", "type": "Int"},
        ],
    )
    assert booked.rows_affected == 1
    new_id = booked.parameters[-1]["value"]
    assert new_id is not None
    assert new_id.isdigit()
    mine = rows(
        fresh,
        "BP_GetPatientAppointments",
        command_type="storedProcedure",
        parameters=[param("@patientid", "Int", "12")],
    )
    assert int(new_id) in [a["RecordID"] for a in mine]
    assert slot not in free_slots(fresh, doctor, "2025-05-28")

    cancel = fresh.execute(
        "BP_CancelAppointment",
        command_type="storedProcedure",
        execution_mode="nonQuery",
        parameters=[param("@aptid", "Int", new_id)],
    )
    assert cancel.rows_affected == 1
    assert slot in free_slots(fresh, doctor, "2025-05-28")
    again = sql_error(
        fresh,
        "BP_CancelAppointment",
        command_type="storedProcedure",
        parameters=[param("@aptid", "Int", new_id)],
    )
    assert again.error_code == 50000


def test_exec_batch_with_return_status_and_output_argument(fresh: PracticeDatabase) -> None:
    doctor = next(u["UserID"] for u in book_users(fresh) if u["Title"] == "Dr")
    first, second = free_slots(fresh, doctor, "2025-05-28")[:2]
    result = fresh.execute(
        "DECLARE @AppointmentId INT; "
        "EXEC @AppointmentId = BPSPATIENTS.dbo.BP_AddAppointment @aptdate=@aptdate, "
        "@apttime=@apttime, @aptlen=900, @practitionerid=@doctor, @patientid=13, @locationid=1; "
        "SELECT @AppointmentId AS AppointmentId;",
        parameters=[
            param("@aptdate", "Date", "2025-05-28"),
            param("@apttime", "Int", str(first["AppointmentTime"])),
            param("@doctor", "BigInt", str(doctor)),
        ],
    )
    assert result.rows is not None
    assert result.rows[0]["AppointmentId"] > 0
    positional = fresh.execute(
        f"EXEC BP_AddAppointment '2025-05-28', {second['AppointmentTime']}, 900, @doctor, 14, 1, "
        "@id OUTPUT",
        parameters=[
            param("@doctor", "BigInt", str(doctor)),
            {"name": "@id", "direction": "output", "type": "Int"},
        ],
    )
    assert int(positional.parameters[1]["value"]) == result.rows[0]["AppointmentId"] + 1


def test_free_appointments_raise_for_the_away_provider(bp: PracticeDatabase) -> None:
    (away,) = rows(bp, "SELECT UserID, StartDate FROM BPS_DaysAway")
    error = sql_error(
        bp,
        "BP_GetFreeAppointments",
        command_type="storedProcedure",
        parameters=[
            param("@userid", "Int", str(away["UserID"])),
            param("@aptdate", "Date", away["StartDate"][:10]),
        ],
    )
    assert error.error_type == "mssql"
    assert error.error_code == 50000
    assert "away" in error.message
    assert "that date" in error.message


def test_free_slots_are_in_seconds_from_midnight(bp: PracticeDatabase) -> None:
    doctor = book_users(bp)[0]["UserID"]
    slots = free_slots(bp, doctor, "2025-06-02")
    assert slots
    assert all(8 * 3600 <= s["AppointmentTime"] < 17 * 3600 for s in slots)
    assert all(s["AppointmentLength"] % 300 == 0 for s in slots)


@pytest.mark.parametrize(
    ("parameters", "code"),
    [([param("@nope", "Int", "1")], 8145), ([], 201), ([param("@aptid", "NVarChar", "x")], 8114)],
)
def test_procedure_argument_errors(
    bp: PracticeDatabase, parameters: list[dict[str, Any]], code: int
) -> None:
    error = sql_error(
        bp, "BP_CancelAppointment", command_type="storedProcedure", parameters=parameters
    )
    assert error.error_code == code


def test_unknown_procedure_is_2812(bp: PracticeDatabase) -> None:
    for kwargs in ({"command_type": "storedProcedure"}, {}):
        text = "GetPatientID" if kwargs else "EXEC dbo.GetPatientID"
        error = sql_error(bp, text, **kwargs)
        assert (error.error_type, error.error_code) == ("mssql", 2812)
        assert error.message == "Could not find stored procedure 'GetPatientID'."


@pytest.mark.parametrize(
    ("api_type", "length", "fails"),
    [("VarBinary", 8004, True), ("VarBinary", 8000, False), ("NVarChar", 4001, True),
     ("NVarChar", 4000, False)],
)  # fmt: skip
def test_known_issue_long_binary_or_unicode_stored_procedure_parameter(
    bp: PracticeDatabase, api_type: str, length: int, fails: bool
) -> None:
    value = "QUJD" * (length // 4) if api_type == "VarBinary" else "A" * length
    parameters = [param("@blob", api_type, value)]
    if fails:
        with pytest.raises(ParameterConversionError) as caught:
            bp.execute("BP_GetAllUsers", command_type="storedProcedure", parameters=parameters)
        assert caught.value.message == (
            "Failed to convert parameter value from a String to a Byte[]. --> Invalid cast from "
            "'System.String' to 'System.Byte[]'. Please correct your request and try again."
        )
        # The documented workaround: typed variables in text SQL are fine.
        assert bp.execute("SELECT LEN(@blob) AS N", parameters=parameters).rows
    else:
        error = sql_error(
            bp, "BP_GetAllUsers", command_type="storedProcedure", parameters=parameters
        )
        assert error.error_code == 8145  # past the known issue, to the procedure itself


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "code", "message"),
    [
        ("SELECT * FROM BPSPatients.dbo.NOPE", 208, "Invalid object name 'BPSPatients.dbo.NOPE'."),
        ("SELECT * FROM NOPE", 208, "Invalid object name 'NOPE'."),
        ("SELECT NOPE FROM PATIENTS", 207, "Invalid column name 'NOPE'."),
        ("SELECT p.NOPE FROM PATIENTS p", 207, "Invalid column name 'NOPE'."),
        ("SELECT * FROM PATIENTS WHERE", 102, "Incorrect syntax near 'WHERE'."),
        ("SELECT 'abc", 105, "Unclosed quotation mark after the character string 'abc'."),
        ("SELECT 1 / 0", 8134, "Divide by zero error encountered."),
        ("SELECT CAST('abc' AS INT)", 245,
         "Conversion failed when converting the varchar value 'abc' to data type int."),
    ],
)  # fmt: skip
def test_sql_server_error_numbers_and_messages(
    bp: PracticeDatabase, sql: str, code: int, message: str
) -> None:
    error = sql_error(bp, sql)
    assert (error.error_type, error.error_code, error.message) == ("mssql", code, message)


def test_control_flow_is_reported_not_silently_skipped(bp: PracticeDatabase) -> None:
    error = sql_error(bp, "WHILE 1 = 0 SELECT 1")
    assert error.error_code == 102
    assert "WHILE" in error.message


def test_zedmed_speaks_firebird(zedmed: PracticeDatabase) -> None:
    first = rows(zedmed, "SELECT FIRST 3 SKIP 2 PATIENT_ID FROM PATIENT ORDER BY PATIENT_ID")
    assert [r["PATIENT_ID"] for r in first] == [3, 4, 5]
    (row,) = rows(
        zedmed,
        "SELECT FIRST 1 FIRST_NAME || ' ' || SURNAME AS NAME, CURRENT_DATE AS TODAY FROM PATIENT",
    )
    assert row["TODAY"] == "2025-05-27T00:00:00"
    assert rows(zedmed, "SELECT FIRST 1 * FROM APPOINTMENT WHERE APPT_DATE = CURRENT_DATE")


@pytest.mark.parametrize(
    ("sql", "code", "words"),
    [("SELECT * FROM NOPE", -204, "Table unknown"), ("SELECT NOPE FROM PATIENT", -206,
      "Column unknown"), ("SELEC 1", -104, "Token unknown")],
)  # fmt: skip
def test_zedmed_errors_are_fbsql(zedmed: PracticeDatabase, sql: str, code: int, words: str) -> None:
    error = sql_error(zedmed, sql)
    assert (error.error_type, error.error_code) == ("fbsql", code)
    assert words in error.message


def test_zedmed_and_d4w_have_no_best_practice_procedures(zedmed: PracticeDatabase) -> None:
    error = sql_error(zedmed, "BP_GetAllUsers", command_type="storedProcedure")
    assert (error.error_type, error.error_code) == ("fbsql", -204)
    dental = make("D4w")
    try:
        assert rows(dental, "SELECT TOP 2 * FROM APPOINTMENTS ORDER BY APPT_START")
        error = sql_error(dental, "EXEC BP_GetAllUsers")
        assert (error.error_type, error.error_code) == ("mssql", 2812)
    finally:
        dental.close()


# -- threads and lifecycle --------------------------------------------------------------------


def test_concurrent_execute_from_threads_is_safe() -> None:
    sites = [make(seed=seed) for seed in range(3)]
    failures: list[BaseException] = []

    def work(site: PracticeDatabase, worker: int) -> None:
        try:
            for i in range(15):
                site.execute(
                    "INSERT INTO CANCELLEDAPPOINTMENTS (APPOINTMENTID, REASON) VALUES (@id, 'x')",
                    execution_mode="nonQuery",
                    parameters=[param("@id", "Int", str(worker * 100 + i))],
                )
                site.execute("SELECT TOP 5 * FROM BPS_Appointments")
        except BaseException as error:  # reported by the assertion below
            failures.append(error)

    count = "SELECT COUNT(*) FROM CANCELLEDAPPOINTMENTS"
    before = [s.execute(count, execution_mode="scalar").scalar for s in sites]
    threads = [threading.Thread(target=work, args=(s, w)) for s in sites for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert failures == []
        for site, previous in zip(sites, before, strict=True):
            after = site.execute(count, execution_mode="scalar")
            assert after.scalar == previous + 4 * 15
    finally:
        for site in sites:
            site.close()


def test_closed_database_refuses_commands() -> None:
    db = make()
    db.execute("SELECT 1 AS One")
    db.close()
    with pytest.raises(RuntimeError):
        db.execute("SELECT 1 AS One")
