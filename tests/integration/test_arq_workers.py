"""A fan-out sharded across two arq workers (subprocesses) on a real redis-server, one of
them killed mid-run: every site finishes once, nothing is created twice, and the rows the
dead worker's shard had written are completed, not lost, by the other."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import arq
import pytest
from arq.connections import ArqRedis, RedisSettings

from halo_async import HaloClient
from halo_async.contrib.arq import ShardResult, enqueue_fan_out
from halo_async.emulator import Emulator
from halo_async.ledger import EntryState, RedisLedger
from tests.support import bp_sites

ROOT = Path(__file__).resolve().parents[2]
SQL = "SELECT INTERNALID, SURNAME FROM PATIENTS ORDER BY INTERNALID"
SITES = 200
TIMEOUT = 45.0  # for any one wait on the subprocesses; all of it takes a few seconds


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    # ~5 pages a site, so that a shard is cut mid-way through a site's pages.
    async with Emulator(sites=bp_sites(SITES, patients=30), seed=5, page_size=400) as emu:
        yield emu


@pytest.fixture
async def arq_redis(redis_url: str) -> AsyncIterator[ArqRedis]:
    pool = await arq.create_pool(RedisSettings.from_dsn(redis_url))
    yield pool
    await pool.aclose()


class Workers:
    """arq worker subprocesses on the emulator and the test's Redis."""

    def __init__(self, emulator: Emulator, redis_url: str, sink_dir: Path) -> None:
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "HALO_API_KEY": emulator.api_key,
            "HALO_BASE_URL": emulator.base_url,
            "HALO_TEST_REDIS": redis_url,
            "HALO_TEST_SINK_DIR": str(sink_dir),
        }
        self.sink_dir = sink_dir
        self.processes: list[asyncio.subprocess.Process] = []

    async def start(self, name: str, **env: str) -> asyncio.subprocess.Process:
        log = (self.sink_dir / f"{name}.log").open("wb")
        with log:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "arq", "tests.integration.arq_worker.WorkerSettings",
                cwd=ROOT, env={**self.env, **env}, stdout=log, stderr=log,
            )  # fmt: skip
        self.processes.append(process)
        return process

    async def stop(self) -> None:
        for process in self.processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                await asyncio.wait_for(process.wait(), TIMEOUT)
            except TimeoutError:
                process.kill()
                await process.wait()

    def logs(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in self.sink_dir.glob("*.log"))


@pytest.fixture
async def workers(emulator: Emulator, redis_url: str, tmp_path: Path) -> AsyncIterator[Workers]:
    started = Workers(emulator, redis_url, tmp_path)
    yield started
    await started.stop()


async def wait_until(check: Callable[[], Any], what: str, workers: Workers) -> Any:
    """Poll ``check`` (a coroutine function or plain one) until it gives a truthy value."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            value = check()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            if any(process.returncode is not None for process in workers.processes):
                pytest.fail(f"a worker exited while waiting for {what}:\n{workers.logs()}")
            await asyncio.sleep(0.02)  # waiting for the subprocesses, bounded above


async def test_a_killed_worker_s_shard_is_finished_by_the_other_without_creating_twice(
    emulator: Emulator, arq_redis: ArqRedis, redis_url: str, workers: Workers
) -> None:
    site_ids = [site.id for site in emulator.sites]
    stalled = workers.sink_dir / "stalled.json"
    victim = await workers.start("victim", HALO_TEST_STALL_AFTER="3")
    # The victim is polling the queue before there is anything in it, so it takes a shard
    # before the second worker (still importing) can take them all.
    await wait_until(lambda: arq_redis.exists("arq:queue:health-check"), "the victim", workers)

    jobs = await enqueue_fan_out(arq_redis, SQL, site_ids, run_id="night-1", shard_size=25)
    await workers.start("survivor")
    assert len(jobs) == 8

    # The victim has written pages of its shard and stopped in its sink: kill it once none
    # of its shard's creates is in flight (a create cut off is unknown, by design).
    cut = json.loads(
        await wait_until(lambda: stalled.exists() and stalled.read_text(), "a stall", workers)
    )
    victims_sites = set(cut["site_ids"])
    async with RedisLedger(redis_url) as ledger:

        async def nothing_in_flight() -> bool:
            entries = [e for e in await ledger.entries("night-1") if e.key.site_id in victims_sites]
            return bool(entries) and all(e.state is not EntryState.CREATING for e in entries)

        await wait_until(nothing_in_flight, "the victim's creates", workers)
        victim.kill()
        await victim.wait()
        states = Counter(
            e.state for e in await ledger.entries("night-1") if e.key.site_id in victims_sites
        )
        assert states[EntryState.SUCCEEDED] < len(victims_sites), "the victim's shard was done"

        results: list[ShardResult] = [
            await job.result(timeout=TIMEOUT, poll_delay=0.05) for job in jobs
        ]
        final = await ledger.entries("night-1")

    # Every site finished once: in exactly one shard's result, and succeeded in the ledger.
    assert all(not result.failed for result in results), [r.failed for r in results]
    finished = Counter(site for result in results for site in result.succeeded)
    assert sorted(finished) == sorted(site_ids)
    assert set(finished.values()) == {1}
    assert {entry.state for entry in final} == {EntryState.SUCCEEDED}
    assert results[cut["index"]].job_try == 2, "the victim's shard was not run again"
    # No duplicate creates: the emulator created one query per site.
    assert all(len(emulator.queries(site, mode="async")) == 1 for site in site_ids)

    # The sink: each (site, page) written once, but for the victim's last page written again.
    pages = read_pages(workers.sink_dir)
    repeated = [key for key, copies in pages.items() if len(copies) > 1]
    assert repeated, "the page the victim wrote but never recorded was not written again"
    assert all(len({json.dumps(c) for c in pages[key]}) == 1 for key in repeated)
    by_site: defaultdict[str, list[int]] = defaultdict(list)
    for (site, _), copies in sorted(pages.items()):
        by_site[site] += [row["INTERNALID"] for row in copies[0]]
    assert dict(by_site) == await patient_ids(emulator, site_ids)


async def patient_ids(emulator: Emulator, site_ids: list[str]) -> dict[str, list[int]]:
    """Each site's patients, asked with an immediate query."""
    async with HaloClient(emulator.api_key, base_url=emulator.base_url) as halo:
        return {
            site: [
                row["INTERNALID"] for row in (await halo.immediate_query(site, SQL)).decode_rows()
            ]
            for site in site_ids
        }


def read_pages(directory: Path) -> dict[tuple[str, int], list[list[dict[str, Any]]]]:
    """Every page the workers wrote, by (site, page number): one list of rows per write."""
    pages: defaultdict[tuple[str, int], list[list[dict[str, Any]]]] = defaultdict(list)
    for path in directory.glob("shard-*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            page = json.loads(line)
            pages[page["site_id"], page["page"]].append(page["rows"])
    return dict(pages)


async def test_enqueueing_a_run_again_adds_no_job(arq_redis: ArqRedis) -> None:
    site_ids = [str(uuid.UUID(int=n)) for n in range(1, 6)]

    first = await enqueue_fan_out(arq_redis, SQL, site_ids, run_id="night-2", shard_size=2)
    again = await enqueue_fan_out(arq_redis, SQL, site_ids, run_id="night-2", shard_size=2)

    assert [job.job_id for job in again] == [job.job_id for job in first]
    assert await arq_redis.zcard("arq:queue") == len(first) == 3
