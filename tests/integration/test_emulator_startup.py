"""Starting the emulator: 200 lazy sites, concurrency across sites, the CLI, the pytest plugin."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from typing import Any

import aiohttp
import pytest

from halo_async.emulator import Emulator, SiteSpec
from halo_async.emulator.database import Catalogue, ExecutionResult


async def test_two_hundred_sites_start_without_generating_any_database() -> None:
    started = time.perf_counter()
    async with Emulator(sites=200, seed=11) as emu:
        elapsed = time.perf_counter() - started
        assert len(emu.sites) == 200
        assert len({site.id for site in emu.sites}) == 200
        assert not any(site.database.generated for site in emu.sites)  # type: ignore[attr-defined]
        types = {site.pms_type for site in emu.sites}
        assert types == {"BestPractice", "Zedmed", "D4w"}
        assert any(not site.authoritative for site in emu.sites)
    assert elapsed < 5  # generous: the point is that nothing is generated up front


async def test_same_seed_same_sites() -> None:
    async with Emulator(sites=20, seed=5) as a, Emulator(sites=20, seed=5) as b:
        assert [(s.id, s.pms_site_id, s.practice_name) for s in a.sites] == [
            (s.id, s.pms_site_id, s.practice_name) for s in b.sites
        ]
        assert a.base_url != b.base_url


class _ExpressionDatabase:
    """Real SQLite with no tables: free to build, so the test measures the HTTP side's queues.

    (Generating even an empty synthetic practice costs ~20 ms a site; 200 of them would
    dominate the test without telling it anything.)
    """

    catalogues = (Catalogue("Patients", True),)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self.executed = 0

    def execute(self, text: str, **options: Any) -> ExecutionResult:
        with self._lock:
            if self._conn is None:
                self._conn = sqlite3.connect(":memory:", check_same_thread=False)
            cursor = self._conn.execute(text)
            names = [column[0] for column in cursor.description]
            rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
            self.executed += 1
            return ExecutionResult(rows=rows, rows_affected=None, scalar=None, parameters=[])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()


async def test_two_hundred_sites_times_five_queries_all_complete() -> None:
    databases: list[_ExpressionDatabase] = []

    def factory(*, pms_type: str, seed: int, patients: int) -> _ExpressionDatabase:
        databases.append(_ExpressionDatabase())
        return databases[-1]

    async with (
        Emulator(
            [SiteSpec(pms_type=("BestPractice", "Zedmed", "D4w")[i % 3]) for i in range(200)],
            api_key="k",
            database_factory=factory,
        ) as emu,
        aiohttp.ClientSession(
            emu.base_url,
            headers={"Ocp-Apim-Subscription-Key": "k"},
            connector=aiohttp.TCPConnector(limit=100),
        ) as http,
    ):

        async def submit(site_id: str, n: int) -> str:
            async with http.post(
                f"/integrator/sites/{site_id}/queries/async",
                json={"command": {"text": f"SELECT {n} AS N"}},
            ) as response:
                assert response.status == 201
                return str((await response.json())["id"])

        ids = await asyncio.gather(*(submit(s.id, n) for s in emu.sites for n in range(5)))
        records = await asyncio.gather(*(emu.wait_for_query(i, timeout=30) for i in ids))
    assert len(records) == 1000
    assert {r.status for r in records} == {"successful"}
    assert sum(db.executed for db in databases) == len(records)


def test_python_dash_m_serves_until_interrupted(tmp_path: object) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "halo_async.emulator", "--sites", "3", "--port", "0", "--seed", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        second = proc.stdout.readline()
        assert first.startswith("Halo emulator serving 3 sites at http://127.0.0.1:"), first
        assert second.strip() == "API key: halo-emulator-key"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Halo emulator stopped." in out
    assert "Traceback" not in err


async def test_pytest_plugin_fixture(halo_emulator: Emulator) -> None:
    assert len(halo_emulator.sites) == 3
    async with (
        aiohttp.ClientSession(
            halo_emulator.base_url, headers={"Ocp-Apim-Subscription-Key": halo_emulator.api_key}
        ) as http,
        http.get(f"/integrator/sites/{halo_emulator.sites[0].id}") as response,
    ):
        assert response.status == 200


@pytest.mark.halo_emulator(sites=7, seed=9, page_size=2048)
async def test_pytest_plugin_marker_configures_the_fixture(halo_emulator: Emulator) -> None:
    assert len(halo_emulator.sites) == 7
    assert halo_emulator.seed == 9
    assert halo_emulator.state.limits.page_size == 2048
