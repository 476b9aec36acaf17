"""The emulator's SQL threads: off the event loop, bounded, interruptible, never hanging."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import pytest

from halo_async.emulator import Emulator, ManualClock, SiteSpec
from halo_async.emulator._executor import SqlExecutor
from halo_async.emulator.database import Catalogue, ExecutionResult

RUNAWAY = (
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT COUNT(*) AS n FROM r"
)


class _Blocking:
    """A database whose command runs until interrupted: a runaway statement, minus SQLite."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.stop = threading.Event()
        self.interrupted = 0

    def run(self) -> str:
        self.started.set()
        if not self.stop.wait(30):
            raise AssertionError("never interrupted")
        return "stopped"

    def interrupt(self) -> None:
        self.interrupted += 1
        self.stop.set()


async def test_cancelling_a_running_call_interrupts_its_database() -> None:
    executor = SqlExecutor(workers=1)
    database = _Blocking()
    task = asyncio.ensure_future(executor.run(database, database.run))
    await asyncio.to_thread(database.started.wait)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert database.interrupted == 1
    # The thread is free again for the next call.
    assert await executor.run(None, lambda: 42) == 42
    await executor.shutdown()


async def test_shutdown_interrupts_running_calls_and_refuses_new_ones() -> None:
    executor = SqlExecutor(workers=2)
    database = _Blocking()
    task = asyncio.ensure_future(executor.run(database, database.run))
    await asyncio.to_thread(database.started.wait)
    await executor.shutdown()
    assert database.interrupted == 1
    assert await task == "stopped"
    with pytest.raises(RuntimeError, match="shut down"):
        await executor.run(None, lambda: 1)


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="sql_workers"):
        SqlExecutor(workers=0)


class _WhereDidItRun:
    catalogues = (Catalogue("Patients", True),)

    def __init__(self) -> None:
        self.threads: list[str] = []

    def execute(
        self, text: str, *, parameters: Sequence[Mapping[str, Any]] = (), **_: Any
    ) -> ExecutionResult:
        self.threads.append(threading.current_thread().name)
        return ExecutionResult(rows=[{"n": 1}], rows_affected=None, scalar=None, parameters=[])

    def close(self) -> None:
        pass


async def test_every_command_runs_in_the_emulators_sql_threads() -> None:
    databases: list[_WhereDidItRun] = []

    def factory(**_: Any) -> _WhereDidItRun:
        databases.append(_WhereDidItRun())
        return databases[-1]

    async with (
        Emulator([SiteSpec(), SiteSpec()], api_key="k", database_factory=factory) as emu,
        aiohttp.ClientSession(emu.base_url, headers={"Ocp-Apim-Subscription-Key": "k"}) as http,
    ):
        for site in emu.sites:
            path = f"/integrator/sites/{site.id}/queries/immediate"
            async with http.post(path, json={"command": {"text": "SELECT 1 AS n"}}) as response:
                assert response.status == 200
    threads = [name for db in databases for name in db.threads]
    assert len(threads) == 2
    assert all(name.startswith("halo-emulator-sql") for name in threads)


async def test_an_immediate_past_its_deadline_frees_the_site_for_the_next_query() -> None:
    clock = ManualClock()
    async with (
        # The statement timeout is far away: only the immediate deadline can end the runaway.
        Emulator([SiteSpec(patients=10)], api_key="k", clock=clock, statement_timeout=600) as emu,
        aiohttp.ClientSession(emu.base_url, headers={"Ocp-Apim-Subscription-Key": "k"}) as http,
    ):
        path = f"/integrator/sites/{emu.sites[0].id}/queries/immediate"

        async def immediate(sql: str) -> int:
            async with http.post(path, json={"command": {"text": sql}}) as response:
                return response.status

        runaway = asyncio.ensure_future(immediate(RUNAWAY))
        interrupted_while_running = False
        while not runaway.done():
            if emu.state.executor.running:  # the runaway is in a SQL thread: pass the deadline
                interrupted_while_running = True
                clock.advance(31)  # past the 30 s immediate limit
            await asyncio.sleep(0.001)
        assert interrupted_while_running
        assert runaway.result() == 504
        assert await immediate("SELECT 1 AS n") == 200
