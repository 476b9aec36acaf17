"""Time to first row: a 50-page result uploading page by page, against time to last row.

The emulator (through :mod:`benchmarks._launcher`) takes 50 ms to upload each page, so the
last page is cached ~2.5 s after the first. ``job.rows()`` should yield the first row as soon
as page 1 is cached (one poll later at most), not after the last page: the ratio of the two
times is then far below 1. Pages are small (16 KB) so that the query's execution, which
delays both times alike, stays short next to the upload; the job polls with the library's
default :class:`~halo_async.PollPolicy`, as users' jobs do.
"""

from __future__ import annotations

import dataclasses
import time

from benchmarks._emulator import EmulatorProcess, best_practice_sites
from benchmarks._measure import median
from benchmarks._report import BenchmarkResult, Figure, Target
from benchmarks._results import sql_for_pages
from halo_async import HaloClient, PollPolicy

__all__ = ["NAME", "Stream", "run", "run_first_row"]

NAME = "first_row"
SEED = 9
PAGES = 50
QUICK_PAGES = PAGES  # 2.5 s of upload: already quick, and the ratio needs the pages
PAGE_SIZE = 16_000
PAGE_UPLOAD_S = 0.05


@dataclasses.dataclass(frozen=True)
class Stream:
    """One submitted query streamed to its end; seconds since the submission began."""

    pages: int
    rows: int
    first_row: float
    last_row: float
    page_one_cached: float | None
    """When the server cached page 1 (upload start + one page's upload), where known."""

    @property
    def first_row_lag(self) -> float | None:
        """How long after page 1 was cached its first row reached the caller."""
        if self.page_one_cached is None:
            return None
        return self.first_row - self.page_one_cached


async def stream_once(halo: HaloClient, site: str, sql: str, page_upload: float) -> Stream:
    """Submit ``sql`` and time its first and last row through ``job.rows()``."""
    started, started_wall = time.perf_counter(), time.time()
    job = await halo.submit(site, sql, poll=PollPolicy())
    first: float | None = None
    rows = 0
    async for _ in job.rows():
        if first is None:
            first = time.perf_counter() - started
        rows += 1
    last = time.perf_counter() - started
    if first is None:
        raise RuntimeError("the query returned no rows")
    query = job.query
    timing = query.status_timing if query is not None else None
    upload = timing.uploading if timing is not None else None
    cached: float | None = None
    if upload is not None and upload.start_time is not None:
        # The emulator and this process read the same wall clock.
        cached = upload.start_time.timestamp() + page_upload - started_wall
    pages = len(query.pages) if query is not None else 0
    return Stream(pages, rows, first, last, cached)


async def run_first_row(
    base_url: str, api_key: str, site: str, pages: int, page_upload: float, repeat: int
) -> BenchmarkResult:
    """Stream a fresh ``pages``-page query ``repeat`` times; median first and last row."""
    async with HaloClient(api_key, base_url=base_url) as halo:
        sql = await sql_for_pages(halo, site, pages, PAGE_SIZE)  # also generates the site's data
        streams = [await stream_once(halo, site, sql, page_upload) for _ in range(repeat)]
    first = median([s.first_row for s in streams])
    last = median([s.last_row for s in streams])
    lag = median([s.first_row_lag for s in streams])
    assert first is not None
    assert last is not None
    got = streams[0]
    return BenchmarkResult(
        name=NAME,
        title=f"time to first row vs last row, {got.pages} pages uploading {page_upload:g} s each",
        figures=[
            Figure("first row / last row time", first / last, target=Target("<=", 0.25)),
            Figure("time to first row", first, unit="s"),
            Figure("time to last row", last, unit="s"),
            Figure("first row after page 1 was cached", lag, unit="s"),
        ],
        details={
            "page_size": PAGE_SIZE,
            "page_upload_s": page_upload,
            "sql": sql,
            "streams": [dataclasses.asdict(s) for s in streams],
        },
        summary=[
            f"{got.pages} pages of ~{PAGE_SIZE // 1000} KB ({got.rows} rows), each cached "
            f"{page_upload * 1000:.0f} ms after the previous; default PollPolicy(); median of "
            f"{repeat} fresh query(ies)",
            "the target (<= 0.25) stands for 'once page 1 is cached, not after the last page': "
            "waiting for the last page would make the ratio ~1",
        ],
    )


async def run(*, quick: bool, repeat: int) -> BenchmarkResult:
    """The time-to-first-row benchmark against a fresh emulator process."""
    count, sites = await best_practice_sites(1, SEED)
    async with EmulatorProcess(
        sites=count, seed=SEED, page_size=PAGE_SIZE, page_upload=PAGE_UPLOAD_S
    ) as emulator:
        return await run_first_row(
            emulator.base_url,
            emulator.api_key,
            sites[0],
            QUICK_PAGES if quick else PAGES,
            PAGE_UPLOAD_S,
            repeat,
        )
