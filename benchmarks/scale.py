"""Scale: one query on each of 2,000 sites from one process, halo-async against the floor.

The emulator runs in its own process; every site's database is set up first (one immediate
query each, untimed), so the figures are the client's. Then ``fan_out`` with every query in
flight at once (halo-async) and the same calls hand-written on bare aiohttp (the floor of
:mod:`benchmarks.fanout`) run one after the other, each from a fresh session, alternating
``repeat`` times. Reported: the wall-time and CPU ratios, halo-async's requests per query,
and this process's peak RSS during each client's run (``VmHWM`` after resetting it through
``/proc/self/clear_refs``, where Linux allows that).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from benchmarks import fanout
from benchmarks._emulator import EmulatorProcess, best_practice_sites
from benchmarks._measure import median
from benchmarks._report import BenchmarkResult, Figure, Target
from halo_async import PollPolicy

__all__ = ["NAME", "peak_rss_mib", "run"]

NAME = "scale"
SEED = 1
FULL_SITES = 2000
QUICK_SITES = 40
WALL_TARGET = 1.2


def _reset_peak_rss() -> bool:
    # Writing 5 resets the process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0).
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mib() -> float | None:
    """This process's peak RSS since the last reset, in MiB (None where unreadable)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) / 1024
    return None


@dataclasses.dataclass
class _Run:
    wall: float | None
    cpu: float
    requests: int
    peak_rss_mib: float | None


async def _timed(name: str, work: fanout.Workload) -> _Run:
    resettable = _reset_peak_rss()
    run = await fanout.time_client(name, work, stall_after=300.0)
    return _Run(
        run.wall, run.cpu, sum(run.requests.values()), peak_rss_mib() if resettable else None
    )


async def run(*, quick: bool, repeat: int) -> BenchmarkResult:
    """The scale benchmark against a fresh emulator process."""
    wanted = QUICK_SITES if quick else FULL_SITES
    count, sites = await best_practice_sites(wanted, SEED)
    async with EmulatorProcess(sites=count, seed=SEED) as emulator:
        work = fanout.Workload(emulator.base_url, emulator.api_key, tuple(sites), 1, PollPolicy())
        await fanout.warm_up_databases(emulator.base_url, emulator.api_key, sites)
        runs: dict[str, list[_Run]] = {"floor": [], "halo-async": []}
        for _ in range(repeat):
            for name in runs:
                runs[name].append(await _timed(name, work))
    return _result(runs, len(sites))


def _result(runs: dict[str, list[_Run]], queries: int) -> BenchmarkResult:
    wall = {name: median([r.wall for r in rs]) for name, rs in runs.items()}
    cpu = {name: median([r.cpu for r in rs]) for name, rs in runs.items()}
    rss = {name: median([r.peak_rss_mib for r in rs]) for name, rs in runs.items()}
    requests = median([float(r.requests) for r in runs["halo-async"]])
    halo, floor = wall["halo-async"], wall["floor"]
    figures = [
        Figure(
            "scale: halo-async / floor wall time",
            halo / floor if halo and floor else None,
            target=Target("<=", WALL_TARGET),
        ),
        Figure(
            "scale: halo-async / floor CPU time",
            cpu["halo-async"] / cpu["floor"] if cpu["floor"] else None,
        ),
        Figure("scale: halo-async requests per query", (requests or 0) / queries, unit=""),
        Figure("scale: halo-async peak RSS", rss["halo-async"], unit="MiB"),
        Figure("scale: floor peak RSS", rss["floor"], unit="MiB"),
    ]
    summary = [
        f"{queries} sites x 1 query, all in flight, one process; median of "
        f"{len(runs['floor'])} run(s)",
        *(
            f"{name:>10}: wall {wall[name] or 0:.2f} s, CPU {cpu[name] or 0:.2f} s, peak RSS "
            f"{rss[name] or 0:.0f} MiB"
            for name in runs
        ),
    ]
    return BenchmarkResult(
        name=NAME,
        title="scale: one query on each of 2,000 sites, halo-async vs the floor",
        figures=figures,
        details={
            "queries": queries,
            "runs": {n: [dataclasses.asdict(r) for r in rs] for n, rs in runs.items()},
        },
        summary=summary,
    )
