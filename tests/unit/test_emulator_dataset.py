"""The emulator's synthetic practice data: deterministic, and plausible where integrators look."""

from __future__ import annotations

import datetime
import re
import sqlite3
from collections.abc import Callable, Iterator

import pytest

from halo_async.emulator import dataset

TODAY = datetime.date(2025, 5, 27)  # a Tuesday
Builder = Callable[[sqlite3.Connection, dataset.DatasetSpec], None]
BUILDERS: dict[str, Builder] = {
    "bp": dataset.build_best_practice,
    "zedmed-clinical": dataset.build_zedmed_clinical,
    "zedmed-accounts": dataset.build_zedmed_accounts,
    "d4w": dataset.build_d4w,
}


def build(builder: Builder, seed: int = 11, patients: int = 300) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    builder(conn, dataset.DatasetSpec(seed=seed, patients=patients, today=TODAY))
    return conn


def dump(conn: sqlite3.Connection) -> dict[str, list[tuple[object, ...]]]:
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {t: conn.execute(f"SELECT * FROM `{t}` ORDER BY rowid").fetchall() for t in tables}


@pytest.fixture(scope="module")
def bp() -> Iterator[sqlite3.Connection]:
    conn = build(dataset.build_best_practice)
    yield conn
    conn.close()


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_same_seed_gives_identical_databases(name: str) -> None:
    first, second = build(BUILDERS[name]), build(BUILDERS[name])
    try:
        assert dump(first) == dump(second)
        assert any(rows for rows in dump(first).values())
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_different_seeds_give_different_data(name: str) -> None:
    first, second = build(BUILDERS[name], seed=1), build(BUILDERS[name], seed=2)
    try:
        assert dump(first) != dump(second)
    finally:
        first.close()
        second.close()


def test_patient_count_is_a_parameter() -> None:
    conn = build(dataset.build_best_practice, patients=57)
    try:
        assert conn.execute("SELECT COUNT(*) FROM PATIENTS").fetchone()[0] == 57
    finally:
        conn.close()


def test_check_digit_functions_accept_known_good_numbers() -> None:
    # 2123 45670 1 is the Medicare number Services Australia uses in its examples.
    assert dataset.medicare_check_digit("21234567") == 0
    assert dataset.is_valid_medicare_number("2123 45670 1")
    assert not dataset.is_valid_medicare_number("2123 45671 1")
    assert not dataset.is_valid_medicare_number("7123 45670 1")
    assert dataset.luhn_check_digit("7992739871") == 3
    assert not dataset.is_valid_ihi("8003600000000000")


def test_medicare_ihi_and_provider_numbers_carry_valid_check_digits(
    bp: sqlite3.Connection,
) -> None:
    medicare = [r[0] for r in bp.execute("SELECT MEDICARENO FROM PATIENTS WHERE MEDICARENO <> ''")]
    assert len(medicare) > 200
    assert all(dataset.is_valid_medicare_number(n) for n in medicare)
    ihis = [r[0] for r in bp.execute("SELECT IHI FROM PATIENTS WHERE IHI <> ''")]
    assert ihis
    assert all(dataset.is_valid_ihi(n) for n in ihis)
    providers = [r[0] for r in bp.execute("SELECT PROVIDERNO FROM USERS WHERE PROVIDERNO <> ''")]
    assert providers
    assert all(dataset.is_valid_provider_number(n) for n in providers)


def test_addresses_phones_and_names_look_australian(bp: sqlite3.Connection) -> None:
    suburbs = {(s.upper(), p) for s, _state, p in dataset._SUBURBS}
    rows = bp.execute("SELECT CITY, POSTCODE, MOBILEPHONE, FIRSTNAME, SURNAME FROM PATIENTS")
    for city, postcode, mobile, first, surname in rows:
        assert re.fullmatch(r"\d{4}", postcode)
        assert (city, postcode) in suburbs
        assert mobile == "" or re.fullmatch(r"04\d\d \d{3} \d{3}", mobile)
        assert first
        assert surname
    assert bp.execute("SELECT COUNT(*) FROM PATIENTS WHERE SURNAME = 'O''Brien'").fetchone()[0]


def test_most_patients_are_active(bp: sqlite3.Connection) -> None:
    total, active = bp.execute(
        "SELECT COUNT(*), SUM(RECORDSTATUS = 1 AND PATIENTSTATUS = 1) FROM PATIENTS"
    ).fetchone()
    assert 0.85 < active / total < 1


def test_appointments_use_seconds_and_sit_around_today(bp: sqlite3.Connection) -> None:
    rows = bp.execute(
        "SELECT APPOINTMENTDATE, APPOINTMENTTIME, APPOINTMENTLENGTH FROM APPOINTMENTS"
    ).fetchall()
    assert rows
    for day, start, length in rows:
        assert 8 * 3600 <= start < 17 * 3600
        assert start % 300 == 0
        assert length > 0
        assert length % 300 == 0
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT00:00:00", day)
    days = {datetime.date.fromisoformat(day[:10]) for day, _start, _length in rows}
    assert TODAY in days
    assert min(days) < TODAY < max(days)


def test_provider_ids_are_large_and_text_keeps_trailing_spaces(bp: sqlite3.Connection) -> None:
    ids = [r[0] for r in bp.execute("SELECT USERID FROM USERS WHERE APPOINTMENTS = 1")]
    assert min(ids) > 2_000_000_000
    surnames = [r[0] for r in bp.execute("SELECT SURNAME FROM USERS")]
    assert all(s != s.rstrip() for s in surnames)


def test_text_comparison_ignores_case_and_trailing_spaces_like_sql_server(
    bp: sqlite3.Connection,
) -> None:
    surname = bp.execute("SELECT SURNAME FROM USERS LIMIT 1").fetchone()[0]
    matches = bp.execute(
        "SELECT COUNT(*) FROM USERS WHERE SURNAME = ?", (surname.strip().upper(),)
    ).fetchone()[0]
    assert matches >= 1


def test_one_provider_is_away_and_has_no_bookings_then(bp: sqlite3.Connection) -> None:
    away = bp.execute("SELECT UserID, StartDate, FinishDate FROM BPS_DaysAway").fetchall()
    assert len(away) == 1
    user_id, start, finish = away[0]
    booked = bp.execute(
        "SELECT COUNT(*) FROM APPOINTMENTS WHERE USERID = ? AND APPOINTMENTDATE BETWEEN ? AND ?",
        (user_id, start, finish),
    ).fetchone()[0]
    assert booked == 0


def test_views_turn_codes_into_text(bp: sqlite3.Connection) -> None:
    statuses = {r[0] for r in bp.execute("SELECT DISTINCT Status FROM BPS_Appointments")}
    assert statuses <= {text for _code, text in dataset._APPOINTMENT_STATUSES}
    assert "Booked" in statuses
    sexes = {r[0] for r in bp.execute("SELECT DISTINCT Sex FROM BPS_Patients")}
    assert {"Male", "Female"} <= sexes
    users = bp.execute("SELECT COUNT(*) FROM BPS_Users").fetchone()[0]
    all_users = bp.execute("SELECT COUNT(*) FROM USERS").fetchone()[0]
    assert 0 < users < all_users  # the inactive doctor is left out


def test_zedmed_and_d4w_schemas_are_populated() -> None:
    clinical = build(dataset.build_zedmed_clinical)
    accounts = build(dataset.build_zedmed_accounts)
    dental = build(dataset.build_d4w)
    try:
        assert clinical.execute("SELECT COUNT(*) FROM PATIENT").fetchone()[0] == 300
        assert clinical.execute("SELECT COUNT(*) FROM APPOINTMENT").fetchone()[0] > 0
        assert accounts.execute("SELECT COUNT(*) FROM INVOICE").fetchone()[0] > 0
        assert dental.execute("SELECT COUNT(*) FROM TREATMENTS").fetchone()[0] > 0
        medicare = [r[0] for r in clinical.execute("SELECT MEDICARE_NO FROM PATIENT")]
        assert all(dataset.is_valid_medicare_number(n) for n in medicare)
    finally:
        clinical.close()
        accounts.close()
        dental.close()
