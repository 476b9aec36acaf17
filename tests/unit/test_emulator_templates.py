"""Generate once, copy many: sites share generated templates and keep their own rows."""

from __future__ import annotations

import datetime
import sqlite3
import threading
from typing import Any

import pytest

from halo_async.emulator import Emulator, SiteSpec
from halo_async.emulator._template import TemplateCache
from halo_async.emulator.database import PracticeDatabase

TODAY = datetime.date(2025, 5, 27)
NOW = datetime.datetime(2025, 5, 27, 10, 30, 15)
LOCATIONS = "SELECT LOCATIONID, LOCATIONNAME FROM LOCATIONS ORDER BY LOCATIONID"
PATIENTS = "SELECT TOP 20 * FROM PATIENTS ORDER BY INTERNALID"


def site(cache: TemplateCache | None, seed: int, site_seed: int | None, **kw: Any) -> Any:
    return PracticeDatabase(
        pms_type=kw.pop("pms_type", "BestPractice"),
        seed=seed,
        site_seed=site_seed,
        patients=kw.pop("patients", 60),
        today=TODAY,
        now=lambda: NOW,
        templates=cache,
    )


def rows(db: PracticeDatabase, sql: str) -> list[dict[str, Any]]:
    result = db.execute(sql)
    assert result.rows is not None
    return result.rows


def test_sites_of_one_dataset_share_one_generation_and_keep_their_own_practice_rows() -> None:
    cache = TemplateCache()
    first, second, again = site(cache, 7, 1), site(cache, 7, 2), site(cache, 7, 1)
    try:
        assert rows(first, PATIENTS) == rows(second, PATIENTS)
        assert rows(first, LOCATIONS) != rows(second, LOCATIONS)
        assert rows(first, LOCATIONS) == rows(again, LOCATIONS)  # determinism by seed
        assert cache.builds == 1
        for db in (first, second):
            # The practice's own details follow its main location, site by site.
            (location,) = rows(db, "SELECT LOCATIONNAME FROM LOCATIONS WHERE LOCATIONID = 1")
            (practice,) = rows(db, "SELECT PRACTICENAME FROM PRACTICE")
            assert practice["PRACTICENAME"] == location["LOCATIONNAME"]
    finally:
        for db in (first, second, again):
            db.close()


def test_a_copy_is_private_to_its_site() -> None:
    cache = TemplateCache()
    first, second = site(cache, 7, 1), site(cache, 7, 2)
    try:
        first.execute("DELETE FROM PATIENTS WHERE INTERNALID = 1", execution_mode="nonQuery")
        count = "SELECT COUNT(*) FROM PATIENTS"
        assert first.execute(count, execution_mode="scalar").scalar == 59
        assert second.execute(count, execution_mode="scalar").scalar == 60
        third = site(cache, 7, 3)
        assert third.execute(count, execution_mode="scalar").scalar == 60
        third.close()
    finally:
        first.close()
        second.close()


def test_a_copy_is_the_generated_database_exactly() -> None:
    cache = TemplateCache()
    copied, generated = site(cache, 11, None), site(None, 11, None)
    try:
        for table in ("PATIENTS", "APPOINTMENTS", "USERS", "BPS_Patients", "LOCATIONS"):
            sql = f"SELECT * FROM {table}"
            assert rows(copied, sql) == rows(generated, sql), table
        # The collation of the copied schema still works: case-insensitive, as SQL Server.
        found = rows(copied, "SELECT TOP 1 TITLE FROM TITLES WHERE TITLE = 'MR'")
        assert found == [{"TITLE": "Mr"}]
    finally:
        copied.close()
        generated.close()


def test_templates_copy_whatever_the_builder_made() -> None:
    cache = TemplateCache()

    def build(conn: sqlite3.Connection) -> None:
        conn.executescript(
            "CREATE TABLE ADDED_LATER (ID INTEGER PRIMARY KEY, NOTE TEXT);"
            "INSERT INTO ADDED_LATER VALUES (1, 'copied');"
            "CREATE VIEW ADDED_VIEW AS SELECT NOTE FROM ADDED_LATER;"
        )

    copies = [cache.copy("key", build) for _ in range(3)]
    try:
        assert cache.builds == 1
        for conn in copies:
            assert conn.execute("SELECT NOTE FROM ADDED_VIEW").fetchall() == [("copied",)]
    finally:
        for conn in copies:
            conn.close()


def test_concurrent_first_queries_generate_a_template_once() -> None:
    cache = TemplateCache()
    sites = [site(cache, 5, n) for n in range(8)]
    barrier = threading.Barrier(len(sites))
    failures: list[BaseException] = []

    def first_query(db: PracticeDatabase) -> None:
        barrier.wait()
        try:
            db.execute("SELECT TOP 1 INTERNALID FROM PATIENTS")
        except BaseException as error:  # reported below
            failures.append(error)

    threads = [threading.Thread(target=first_query, args=(db,)) for db in sites]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert failures == []
        assert cache.builds == 1
    finally:
        for db in sites:
            db.close()


async def test_an_emulator_generates_a_few_templates_for_many_sites() -> None:
    specs = [SiteSpec(pms_type=("BestPractice", "Zedmed", "D4w")[i % 3], patients=30)
             for i in range(60)]  # fmt: skip
    async with Emulator(specs, seed=4, database_templates=2) as emu:
        for each in emu.sites:
            each.database.execute("SELECT 1 AS n")
        # Two datasets per PMS: Best Practice and D4W one catalogue each, Zedmed's default.
        assert emu.templates.builds <= 2 * 3
        bp = [s for s in emu.sites if s.pms_type == "BestPractice"]
        names = {tuple(map(str, s.database.execute(LOCATIONS).rows or [])) for s in bp}
        assert len(names) > 2, "each site names its own practice"


async def test_same_emulator_seed_same_site_data() -> None:
    specs = [SiteSpec(patients=30) for _ in range(4)]
    async with Emulator(specs, seed=9) as a, Emulator(specs, seed=9) as b:
        for left, right in zip(a.sites, b.sites, strict=True):
            for sql in (PATIENTS, LOCATIONS):
                assert left.database.execute(sql).rows == right.database.execute(sql).rows


async def test_database_templates_none_generates_every_site_its_own() -> None:
    specs = [SiteSpec(patients=30) for _ in range(3)]
    async with Emulator(specs, seed=9, database_templates=None) as emu:
        patients = [str(s.database.execute(PATIENTS).rows) for s in emu.sites]
        assert len(set(patients)) == 3
        assert emu.templates.builds == 0  # generated in place, not kept as templates


def test_database_templates_must_be_positive() -> None:
    with pytest.raises(ValueError, match="database_templates"):
        Emulator(sites=1, database_templates=0)
