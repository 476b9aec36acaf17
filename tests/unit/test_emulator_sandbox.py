"""A site's SQL stays inside its database, ends in bounded time and returns bounded results."""

from __future__ import annotations

import datetime
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from halo_async.emulator._sandbox import Sandbox
from halo_async.emulator.database import (
    ExecutionLimits,
    PracticeDatabase,
    ResultTooLargeError,
    SqlError,
)

NOW = datetime.datetime(2025, 5, 27, 10, 30, 15)
RUNAWAY_COUNT = (
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT COUNT(*) FROM r"
)
RUNAWAY_ROWS = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r"


def make(pms_type: str = "BestPractice", **limits: Any) -> PracticeDatabase:
    return PracticeDatabase(
        pms_type=pms_type,
        seed=3,
        patients=40,
        now=lambda: NOW,
        limits=ExecutionLimits(**limits) if limits else None,
    )


@pytest.fixture(scope="module")
def bp() -> Iterator[PracticeDatabase]:
    db = make()
    yield db
    db.close()


@pytest.fixture(scope="module")
def zedmed() -> Iterator[PracticeDatabase]:
    db = make("Zedmed")
    yield db
    db.close()


def sql_error(db: PracticeDatabase, sql: str) -> SqlError:
    with pytest.raises(SqlError) as caught:
        db.execute(sql)
    return caught.value


# -- SQLite's catalogue is invisible, as SQL Server's would be --------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM sqlite_master",
        "SELECT name FROM sqlite_schema",
        "SELECT * FROM sqlite_temp_master",
        "SELECT COUNT(*) FROM PATIENTS WHERE EXISTS (SELECT 1 FROM sqlite_master)",
        "SELECT * FROM pragma_table_info('PATIENTS')",
        "SELECT * INTO COPY_OF_CATALOGUE FROM sqlite_master",
    ],
)
def test_sqlite_catalogue_is_an_invalid_object(bp: PracticeDatabase, sql: str) -> None:
    error = sql_error(bp, sql)
    assert (error.error_type, error.error_code) == ("mssql", 208)
    assert error.message.startswith("Invalid object name '")


def test_zedmed_catalogue_is_a_firebird_unknown_table(zedmed: PracticeDatabase) -> None:
    error = sql_error(zedmed, "SELECT * FROM sqlite_master")
    assert (error.error_type, error.error_code) == ("fbsql", -204)
    assert "Table unknown" in error.message


def test_integrators_ddl_still_works_beside_the_hidden_catalogue() -> None:
    db = make()
    try:
        for sql in (
            "CREATE TABLE NOTES (ID INT, BODY VARCHAR(40))",
            "CREATE INDEX IX_NOTES ON NOTES (ID)",
            "ALTER TABLE NOTES ADD AUTHOR VARCHAR(20)",
            "CREATE VIEW NOTE_IDS AS SELECT ID FROM NOTES",
            "INSERT INTO NOTES (ID, BODY, AUTHOR) VALUES (1, 'hello', 'me')",
        ):
            db.execute(sql, execution_mode="nonQuery")
        assert db.execute("SELECT ID FROM NOTE_IDS").rows == [{"ID": 1}]
        db.execute("DROP VIEW NOTE_IDS", execution_mode="nonQuery")
        db.execute("DROP TABLE NOTES", execution_mode="nonQuery")
        assert sql_error(db, "SELECT * FROM NOTES").error_code == 208
    finally:
        db.close()


# -- nothing reaches outside the site's database ----------------------------------------------


def test_load_extension_is_not_a_function(bp: PracticeDatabase) -> None:
    error = sql_error(bp, "SELECT load_extension('/tmp/evil.so') AS x")
    assert (error.error_type, error.error_code) == ("mssql", 195)


@pytest.mark.parametrize(
    "sql",
    [
        "ATTACH DATABASE '{path}' AS other",
        "VACUUM INTO '{path}'",
        "PRAGMA writable_schema = 1",
        "PRAGMA journal_mode = WAL",
        "DETACH DATABASE main",
    ],
)
def test_file_and_state_statements_are_refused(
    bp: PracticeDatabase, tmp_path: Path, sql: str
) -> None:
    target = tmp_path / "escaped.db"
    error = sql_error(bp, sql.format(path=target))
    assert error.error_type == "mssql"
    assert error.error_code in (102, 208)
    assert not target.exists()


def test_writing_the_catalogue_is_an_invalid_object(bp: PracticeDatabase) -> None:
    error = sql_error(bp, "UPDATE sqlite_master SET sql = '' WHERE name = 'PATIENTS'")
    assert (error.error_type, error.error_code) == ("mssql", 208)


# -- a #temp table lives for one request ------------------------------------------------------


def test_temp_table_is_gone_in_the_next_request() -> None:
    db = make()
    try:
        batch = "SELECT INTERNALID INTO #ids FROM PATIENTS; SELECT COUNT(*) AS n FROM #ids"
        assert db.execute(batch).rows == [{"n": 40}]
        error = sql_error(db, "SELECT COUNT(*) AS n FROM #ids")
        assert error.error_code == 208
        # ...and the name is free again: the same batch runs twice.
        assert db.execute(batch).rows == [{"n": 40}]
    finally:
        db.close()


def test_temp_table_of_a_failed_request_is_gone_too() -> None:
    db = make()
    try:
        sql_error(db, "CREATE TABLE #t (a INT); INSERT INTO #t VALUES (1); SELECT * FROM NOPE")
        assert sql_error(db, "SELECT * FROM #t").error_code == 208
    finally:
        db.close()


# -- runaway statements -----------------------------------------------------------------------


def test_a_statement_over_the_time_limit_fails_as_a_sql_server_timeout() -> None:
    db = make(statement_timeout=0.05)
    try:
        error = sql_error(db, RUNAWAY_COUNT)
        assert (error.error_type, error.error_code) == ("mssql", -2)
        assert error.message.startswith("Execution Timeout Expired.")
        # The connection is fine afterwards.
        assert db.execute("SELECT 1 AS n").rows == [{"n": 1}]
    finally:
        db.close()


def test_zedmed_timeout_is_firebirds() -> None:
    db = make("Zedmed", statement_timeout=0.05)
    try:
        error = sql_error(db, RUNAWAY_COUNT)
        assert (error.error_type, error.error_code) == ("fbsql", -901)
        assert "statement timeout" in error.message
    finally:
        db.close()


def test_interrupt_from_another_thread_stops_the_running_statement() -> None:
    db = make()  # the default 30 s limit: only the interruption can end it in this test
    db.execute("SELECT 1 AS n")  # generated up front
    started = threading.Event()
    outcome: list[BaseException] = []

    def runaway() -> None:
        started.set()
        try:
            db.execute(RUNAWAY_COUNT)
        except BaseException as error:  # reported below
            outcome.append(error)

    worker = threading.Thread(target=runaway)
    worker.start()
    started.wait()
    while worker.is_alive():
        db.interrupt()
        worker.join(0.01)
    try:
        assert len(outcome) == 1
        assert isinstance(outcome[0], SqlError)
        assert outcome[0].error_code == -2
        assert db.execute("SELECT 2 AS n").rows == [{"n": 2}]
    finally:
        db.close()


def test_a_result_over_the_row_limit_fails_without_fetching_it_all() -> None:
    db = make(max_result_rows=500, fetch_rows=100)
    try:
        with pytest.raises(ResultTooLargeError) as caught:
            db.execute(RUNAWAY_ROWS)
        assert "500 rows" in caught.value.message
        assert len(db.execute("SELECT TOP 500 * FROM BPS_Appointments").rows or []) <= 500
    finally:
        db.close()


def test_a_result_over_the_byte_limit_fails() -> None:
    db = make(max_result_bytes=2_000)
    try:
        with pytest.raises(ResultTooLargeError) as caught:
            db.execute("SELECT * FROM PATIENTS")
        assert "2,000 bytes" in caught.value.message
        top = db.execute("SELECT TOP 1 INTERNALID FROM PATIENTS ORDER BY INTERNALID")
        assert top.rows == [{"INTERNALID": 1}]
    finally:
        db.close()


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="statement_timeout"):
        ExecutionLimits(statement_timeout=0)
    with pytest.raises(ValueError, match="result limits"):
        ExecutionLimits(max_result_rows=0)


def test_every_temporary_object_goes_when_the_request_ends() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        conn.execute("CREATE TABLE P (A)")
        sandbox = Sandbox(conn, ExecutionLimits())
        with sandbox.request():
            conn.execute("CREATE TEMP TABLE LOG (A)")
            conn.execute(
                "CREATE TEMP TRIGGER AUDIT AFTER INSERT ON P BEGIN INSERT INTO LOG VALUES (1); END"
            )
            conn.execute("CREATE TEMP VIEW LOGGED AS SELECT * FROM LOG")
        assert conn.execute("SELECT COUNT(*) FROM temp.sqlite_master").fetchone() == (0,)
        conn.execute("INSERT INTO P VALUES (1)")  # no trigger left to fire
    finally:
        conn.close()
