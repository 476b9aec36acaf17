"""The emulator at an integrator's scale: cold fan-outs over 1,000 and 2,000 sites.

For each size, a fresh emulator process (``python -m halo_async.emulator --sites N``) is
timed from spawn to its banner (startup), its RSS is read before any query (idle sites), and
then ``halo.fan_out("SELECT 1 AS n", every queryable site)`` (the default ``PollPolicy``)
runs once, end to end: every
site's database is set up by that first query (a copy of a shared template), so this is the
cold path an integrator's first sweep takes. The idle-site memory figure compares the RSS of
the big emulator with that of a 3-site one.

In this process, the per-site setup cost is measured directly: generating a Best Practice
site of 2,000 patients (what every site paid before templates) against copying one from the
template cache (what each site pays now).
"""

from __future__ import annotations

import asyncio
import datetime
import time
from pathlib import Path
from typing import Any

from benchmarks._emulator import EmulatorProcess, plan_sites
from benchmarks._measure import Stopwatch, median
from benchmarks._report import BenchmarkResult, Figure, Target
from halo_async import FanOutLimits, HaloClient, SiteOutcome
from halo_async.emulator._template import TemplateCache
from halo_async.emulator.database import PracticeDatabase

__all__ = ["NAME", "SETUP_PATIENTS", "fan_out_target", "idle_site_kib", "run", "setup_costs"]

NAME = "emulator_scale"
SEED = 1
SQL = "SELECT 1 AS n"
FULL_SIZES = (1000, 2000)
QUICK_SIZES = (60, 120)
# A cold fan-out on 2 cores: 30 s up to 1,000 sites, 60 s for 2,000 (the polling cadence and
# the few template builds set a floor that a per-site budget would miss at --quick sizes).
FAN_OUT_TARGET_S = 30.0
FAN_OUT_TARGET_SITES = 1000
STARTUP_TARGET_S = 2.0
IDLE_SITE_TARGET_KIB = 16.0
SETUP_PATIENTS = 2000
SMALL_EMULATOR = 3
# Every site's query in flight at once: the sweep is bounded by the emulator, not the client.
_LIMITS = FanOutLimits(max_in_flight=2000)


def _rss_kib(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1])
    return None


def fan_out_target(sites: int) -> float:
    """Seconds a cold fan-out over ``sites`` may take."""
    return FAN_OUT_TARGET_S * max(1.0, sites / FAN_OUT_TARGET_SITES)


def idle_site_kib(big_rss: float | None, small_rss: float | None, big: int, small: int) -> float:
    """RSS per never-queried site: the difference of two emulators over their site counts."""
    if big_rss is None or small_rss is None or big <= small:
        return float("nan")
    return (big_rss - small_rss) / (big - small)


def setup_costs(sites: int, patients: int = SETUP_PATIENTS) -> tuple[float, float]:
    """Seconds per site to set up a Best Practice database: generated, and copied."""
    today = datetime.date(2025, 5, 27)

    def first_query(db: PracticeDatabase) -> float:
        started = time.perf_counter()
        db.execute("SELECT 1 AS n")
        elapsed = time.perf_counter() - started
        db.close()
        return elapsed

    def database(seed: int, **options: Any) -> PracticeDatabase:
        return PracticeDatabase(
            pms_type="BestPractice", seed=seed, patients=patients, today=today, **options
        )

    generated = [first_query(database(n)) for n in range(max(2, sites // 10))]
    cache = TemplateCache()
    first_query(database(0, templates=cache, site_seed=0))  # the template, made once
    copied = [first_query(database(0, templates=cache, site_seed=n)) for n in range(1, sites + 1)]
    cache.clear()
    return sum(generated) / len(generated), sum(copied) / len(copied)


async def _fan_out(emulator: EmulatorProcess, site_ids: list[str]) -> tuple[float, int]:
    async with HaloClient(emulator.api_key, base_url=emulator.base_url) as halo:
        with Stopwatch() as watch:
            ok = 0
            async for item in halo.fan_out(SQL, site_ids, limits=_LIMITS):
                if isinstance(item, SiteOutcome) and item.ok:
                    ok += 1
    return watch.wall, ok


async def _one_size(size: int) -> dict[str, Any]:
    sites = [s.id for s in await plan_sites(size, SEED) if s.queryable]
    emulator = EmulatorProcess(sites=size, seed=SEED)
    with Stopwatch() as startup:
        await emulator.start()
    try:
        idle_rss = _rss_kib(emulator.pid)
        wall, ok = await _fan_out(emulator, sites)
        busy_rss = _rss_kib(emulator.pid)
        cpu = emulator.cpu_seconds()
    finally:
        await emulator.stop()
    return {
        "sites": size,
        "queried": len(sites),
        "ok": ok,
        "startup_s": startup.wall,
        "fan_out_s": wall,
        "emulator_cpu_s": cpu,
        "idle_rss_kib": idle_rss,
        "after_rss_kib": busy_rss,
    }


async def _small_rss() -> float | None:
    async with EmulatorProcess(sites=SMALL_EMULATOR, seed=SEED) as emulator:
        await asyncio.sleep(0)
        return _rss_kib(emulator.pid)


async def run(*, quick: bool, repeat: int) -> BenchmarkResult:
    """Cold fan-outs, startup and idle memory, each size in a fresh emulator process."""
    sizes = QUICK_SIZES if quick else FULL_SIZES
    runs: dict[int, list[dict[str, Any]]] = {size: [] for size in sizes}
    for _ in range(max(1, min(repeat, 2))):  # each run generates every template afresh
        for size in sizes:
            runs[size].append(await _one_size(size))
    small_rss = median([await _small_rss() for _ in range(repeat)])
    generated_s, copied_s = await asyncio.to_thread(setup_costs, 20 if quick else 100)
    return _result(sizes, runs, small_rss, generated_s, copied_s)


def _result(
    sizes: tuple[int, ...],
    runs: dict[int, list[dict[str, Any]]],
    small_rss: float | None,
    generated_s: float,
    copied_s: float,
) -> BenchmarkResult:
    figures = []
    summary = []
    for size in sizes:
        wall = median([r["fan_out_s"] for r in runs[size]])
        startup = median([r["startup_s"] for r in runs[size]])
        idle = median([r["idle_rss_kib"] for r in runs[size]])
        figures += [
            Figure(f"cold fan-out, {size} sites", wall, unit="s",
                   target=Target("<=", fan_out_target(size))),
            Figure(f"startup, --sites {size}", startup, unit="s",
                   target=Target("<=", STARTUP_TARGET_S)),
        ]  # fmt: skip
        last = runs[size][-1]
        summary.append(
            f"{size} sites: {last['ok']}/{last['queried']} queryable sites answered; emulator "
            f"CPU {last['emulator_cpu_s'] or 0:.1f} s; RSS {last['idle_rss_kib'] / 1024:.0f} MiB "
            f"idle, {last['after_rss_kib'] / 1024:.0f} MiB after every site was queried"
        )
        per_idle = idle_site_kib(idle, small_rss, size, SMALL_EMULATOR)
    figures.append(
        Figure(f"RSS per idle site ({sizes[-1]} vs {SMALL_EMULATOR} sites)", per_idle,
               unit="KiB", target=Target("<=", IDLE_SITE_TARGET_KIB))
    )  # fmt: skip
    figures += [
        Figure("per-site setup, generated (before)", generated_s * 1000, unit="ms"),
        Figure("per-site setup, template copy (now)", copied_s * 1000, unit="ms"),
        Figure("setup, generated / copied", generated_s / copied_s, target=Target(">=", 10)),
    ]
    summary.append(
        f"per-site setup of a {SETUP_PATIENTS}-patient Best Practice site: "
        f"{generated_s * 1000:.1f} ms generated, {copied_s * 1000:.2f} ms as a template copy"
    )
    return BenchmarkResult(
        name=NAME,
        title=f"the emulator at scale: cold fan-out of {SQL!r} over {', '.join(map(str, sizes))}"
        " sites",
        figures=figures,
        details={"runs": {str(size): runs[size] for size in sizes}, "small_rss_kib": small_rss},
        summary=summary,
    )
