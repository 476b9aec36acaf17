"""Memory: peak RSS streaming a 200-page result against a 20-page one with ``job.rows()``.

Each result streams in a fresh process (:mod:`benchmarks._memory_child`) that consumes and
discards the rows, and reports its peak RSS: ``VmHWM`` on Linux, where ``ru_maxrss`` would
carry the benchmark process's own peak into the child across fork + exec, and
``resource.getrusage(...).ru_maxrss`` elsewhere. Memory bounded by the
prefetch window, not by the result, shows as a peak that does not grow with the page count.
Pages are ~1 MB, as Halo makes them: the emulator manufactures the rows with a ``CROSS JOIN``
(:mod:`benchmarks._results`). Both queries finish before either child starts, so the children
measure streaming alone, never the emulator's work.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from pathlib import Path

import orjson

from benchmarks._emulator import EmulatorProcess, best_practice_sites
from benchmarks._measure import median
from benchmarks._report import BenchmarkResult, Figure, Target
from benchmarks._results import sql_for_pages
from halo_async import HaloClient, PollPolicy

__all__ = ["NAME", "ChildRun", "run", "run_memory", "stream_in_child"]

NAME = "memory"
SEED = 5
PAGE_SIZE = 1_000_000
FULL_PAGES = (20, 200)
QUICK_PAGES = (2, 20)
# Setting up: poll often, the emulator needs seconds to page a 200 MB result.
_SETUP_POLL = PollPolicy(initial_interval=0.1, max_interval=0.5)
_REPO = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class ChildRun:
    """What one child process reported."""

    rows: int
    pages: int
    rss_before_kb: int
    max_rss_kb: int
    source: str
    """``VmHWM`` (Linux) or ``ru_maxrss``: see :mod:`benchmarks._memory_child`."""
    ru_maxrss_kb: int


# glibc raises its mmap threshold each time a large mmap'd block is freed, after which the
# ~1.3 MB page buffers come from the heap and fragment it. A fixed threshold turns that off;
# the supporting figure measured with it tells allocator creep from memory the SDK keeps.
FIXED_MMAP_THRESHOLD = {"MALLOC_MMAP_THRESHOLD_": "262144"}


async def stream_in_child(
    base_url: str,
    api_key: str,
    site: str,
    query_id: str,
    extra_env: dict[str, str] | None = None,
) -> ChildRun:
    """Stream one finished query's rows in a fresh process; its report."""
    path = os.pathsep.join(filter(None, [str(_REPO), os.environ.get("PYTHONPATH")]))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks._memory_child",
        base_url,
        site,
        query_id,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=_REPO,
        env={**os.environ, **(extra_env or {}), "HALO_API_KEY": api_key, "PYTHONPATH": path},
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        tail = err.decode(errors="replace")[-2000:]
        raise RuntimeError(f"the memory child failed ({process.returncode}): {tail}")
    return ChildRun(**orjson.loads(out.splitlines()[-1]))


async def run_memory(
    base_url: str,
    api_key: str,
    site: str,
    page_counts: tuple[int, int],
    page_size: int,
    repeat: int,
) -> BenchmarkResult:
    """Make a small and a large result on ``site``, then stream each ``repeat`` times."""
    async with HaloClient(api_key, base_url=base_url) as halo:
        queries = []
        for pages in page_counts:
            job = await halo.submit(site, await sql_for_pages(halo, site, pages, page_size))
            job.poll = _SETUP_POLL
            await job.wait()
            queries.append(job.query_id)
    runs: tuple[list[ChildRun], list[ChildRun]] = ([], [])
    fixed: tuple[list[ChildRun], list[ChildRun]] = ([], [])
    for _ in range(repeat):
        for query_id, collected, collected_fixed in zip(queries, runs, fixed, strict=True):
            collected.append(await stream_in_child(base_url, api_key, site, query_id))
            collected_fixed.append(
                await stream_in_child(base_url, api_key, site, query_id, FIXED_MMAP_THRESHOLD)
            )
    small, large = runs
    fixed_small = median([float(run.max_rss_kb) for run in fixed[0]])
    fixed_large = median([float(run.max_rss_kb) for run in fixed[1]])
    small_peak = median([float(run.max_rss_kb) for run in small])
    large_peak = median([float(run.max_rss_kb) for run in large])
    baseline = median([float(run.rss_before_kb) for run in small + large])
    assert small_peak is not None
    assert large_peak is not None
    assert baseline is not None
    growth = (large_peak / small_peak - 1) * 100
    small_pages, large_pages = small[0].pages, large[0].pages
    return BenchmarkResult(
        name=NAME,
        title=f"memory: peak RSS streaming {large_pages} pages vs {small_pages} with job.rows()",
        figures=[
            Figure(
                f"peak RSS growth, {large_pages} vs {small_pages} pages",
                growth,
                unit="%",
                target=Target("<", 10.0),
            ),
            Figure(f"peak RSS, {small_pages} pages", small_peak / 1024, unit="MiB"),
            Figure(f"peak RSS, {large_pages} pages", large_peak / 1024, unit="MiB"),
            Figure("RSS before the first row", baseline / 1024, unit="MiB"),
            Figure(
                "peak RSS growth, fixed glibc mmap threshold",
                (fixed_large / fixed_small - 1) * 100 if fixed_large and fixed_small else None,
                unit="%",
            ),
        ],
        details={
            "page_size": page_size,
            "queries": queries,
            "small": [dataclasses.asdict(run) for run in small],
            "large": [dataclasses.asdict(run) for run in large],
            "fixed_mmap_threshold": {
                "env": FIXED_MMAP_THRESHOLD,
                "small": [dataclasses.asdict(run) for run in fixed[0]],
                "large": [dataclasses.asdict(run) for run in fixed[1]],
            },
        },
        summary=[
            f"{small_pages} pages ({small[0].rows} rows) and {large_pages} pages "
            f"({large[0].rows} rows) of ~{page_size / 1e6:g} MB, each streamed in a fresh "
            f"process with the default prefetch window; median of {repeat} run(s); peak "
            f"RSS read from {small[0].source}",
            f"peak above the client's own footprint: {(small_peak - baseline) / 1024:.1f} MiB "
            f"for {small_pages} pages, {(large_peak - baseline) / 1024:.1f} MiB for "
            f"{large_pages}",
            "the fixed-threshold figure streams the same results with "
            f"{next(iter(FIXED_MMAP_THRESHOLD))}={FIXED_MMAP_THRESHOLD['MALLOC_MMAP_THRESHOLD_']}"
            ": growth that vanishes there is the allocator's, not memory the SDK holds",
        ],
    )


async def run(*, quick: bool, repeat: int) -> BenchmarkResult:
    """The memory benchmark against a fresh emulator process."""
    count, sites = await best_practice_sites(1, SEED)
    async with EmulatorProcess(sites=count, seed=SEED, page_size=PAGE_SIZE) as emulator:
        return await run_memory(
            emulator.base_url,
            emulator.api_key,
            sites[0],
            QUICK_PAGES if quick else FULL_PAGES,
            PAGE_SIZE,
            repeat,
        )
