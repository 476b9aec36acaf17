"""Sinks: rows/s into Parquet against ``job.rows()`` alone, and peak RSS of a fan-out to Parquet.

* **Throughput**: the cached pages of :mod:`benchmarks.decode` (fetched from the emulator
  once, then answered from memory at the client's transport), consumed by ``job.rows()``
  alone, and by ``job.pages()`` into a :class:`~halo_async.arrow.ParquetSink`: the ratio is
  what the Arrow conversion, type inference and Parquet encoding cost on top of decoding.
  ``job.arrow_batches()`` alone is timed too, to tell the conversion from the file writing.
  Rows per CPU second (all threads: pyarrow's included), the best of alternating rounds.
* **Memory**: ``write_parquet(halo.fan_out(sql, [site], stream=True), dir)`` of a 200-page
  result against a 20-page one, each in a fresh process (:mod:`benchmarks._sink_child`):
  a peak that does not grow with the pages is memory bounded by the prefetch windows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import os
import sys
import tempfile
from pathlib import Path

import orjson

from benchmarks import decode
from benchmarks._emulator import EmulatorProcess, best_practice_sites
from benchmarks._measure import Stopwatch, median
from benchmarks._memory_child import max_rss_kb
from benchmarks._report import BenchmarkResult, Figure, Target
from benchmarks._results import sql_for_pages
from halo_async import Checkpoint, HaloClient
from halo_async.arrow import ParquetSink

__all__ = ["NAME", "arrow_rows", "parquet_rows", "run", "run_sink"]

NAME = "sink"
SEED = 4
PAGE_SIZE = 1_000_000
FULL_PAGES = (20, 200)
QUICK_PAGES = (2, 20)
_THROUGHPUT_PAGES = {False: 20, True: 2}
_ROUNDS = 3
_REPO = Path(__file__).resolve().parents[1]


async def parquet_rows(cached: decode.CachedPages, directory: Path) -> int:
    """Write every page of the cached result into a Parquet dataset; returns the rows."""
    async with decode._client_on(cached) as halo:
        job = halo.resume(Checkpoint(cached.site_id, cached.query_id))
        with ParquetSink(directory) as sink:
            async for page in job.pages():
                sink.write_page(job.site_id, job.query_id, page.page_number, page.rows)
    return sink.close().rows


async def arrow_rows(cached: decode.CachedPages) -> int:
    """Convert every page of the cached result to Arrow; returns the rows."""
    rows = 0
    async with decode._client_on(cached) as halo:
        job = halo.resume(Checkpoint(cached.site_id, cached.query_id))
        async for batch in job.arrow_batches():
            rows += batch.num_rows
    return rows


@dataclasses.dataclass(frozen=True)
class _Rates:
    rows: float
    arrow: float
    parquet: float


async def _timed(cached: decode.CachedPages, rows: int, scratch: Path) -> _Rates:
    """Each side's best CPU time over alternating rounds, as rows per CPU second."""
    best = {"rows": float("inf"), "arrow": float("inf"), "parquet": float("inf")}
    for round_number in range(_ROUNDS):
        for side in best:
            gc.collect()
            with Stopwatch() as watch:
                if side == "rows":
                    counted = await decode.sdk_rows(cached)
                elif side == "arrow":
                    counted = await arrow_rows(cached)
                else:
                    counted = await parquet_rows(cached, scratch / f"round-{round_number}")
            if counted != rows:
                raise RuntimeError(f"{side}: {counted} rows where the result has {rows}")
            best[side] = min(best[side], watch.cpu)
    return _Rates(rows / best["rows"], rows / best["arrow"], rows / best["parquet"])


async def _in_child(base_url: str, api_key: str, site: str, sql: str, directory: Path) -> dict:
    path = os.pathsep.join(filter(None, [str(_REPO), os.environ.get("PYTHONPATH")]))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks._sink_child", base_url, site, sql, str(directory),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=_REPO,
        env={**os.environ, "HALO_API_KEY": api_key, "PYTHONPATH": path},
    )  # fmt: skip
    out, err = await process.communicate()
    if process.returncode != 0:
        tail = err.decode(errors="replace")[-2000:]
        raise RuntimeError(f"the sink child failed ({process.returncode}): {tail}")
    report: dict = orjson.loads(out.splitlines()[-1])
    return report


async def run_sink(
    base_url: str, api_key: str, site: str, pages: tuple[int, int], throughput_pages: int,
    repeat: int,
) -> BenchmarkResult:  # fmt: skip
    """Time the sink against ``job.rows()``, then measure two fan-outs' peak RSS."""
    async with HaloClient(api_key, base_url=base_url) as halo:
        sql = await sql_for_pages(halo, site, throughput_pages, PAGE_SIZE)
        job = await halo.submit(site, sql)
        await job.wait()
        sizes = [await sql_for_pages(halo, site, count, PAGE_SIZE) for count in pages]
    cached = await decode.fetch_pages(base_url, api_key, site, job.query_id)
    rows = decode.raw_rows(cached)
    with tempfile.TemporaryDirectory(prefix="halo-sink-") as scratch:
        await parquet_rows(cached, Path(scratch) / "warm-up")
        rates = [await _timed(cached, rows, Path(scratch) / f"pass-{n}") for n in range(repeat)]
        children = [
            [await _in_child(base_url, api_key, site, text, Path(scratch) / f"rss-{i}-{n}")
             for n in range(repeat)]
            for i, text in enumerate(sizes)
        ]  # fmt: skip
    return _result(rates, children, rows, len(cached.pages), repeat)


def _result(
    rates: list[_Rates], children: list[list[dict]], rows: int, pages: int, repeat: int
) -> BenchmarkResult:
    rows_rate = median([r.rows for r in rates]) or 0.0
    arrow_rate = median([r.arrow for r in rates]) or 0.0
    parquet_rate = median([r.parquet for r in rates]) or 0.0
    small, large = ([float(run["max_rss_kb"]) for run in runs] for runs in children)
    small_peak, large_peak = median(small) or 0.0, median(large) or 0.0
    small_pages, large_pages = children[0][0]["pages"], children[1][0]["pages"]
    return BenchmarkResult(
        name=NAME,
        title="sinks: rows/s into Parquet vs job.rows(), and peak RSS of a fan-out to Parquet",
        figures=[
            Figure("Parquet sink / job.rows() rows/s", parquet_rate / rows_rate),
            Figure("arrow_batches() / job.rows() rows/s", arrow_rate / rows_rate),
            Figure("Parquet sink rows/s", parquet_rate, unit="rows/s"),
            Figure("job.rows() rows/s", rows_rate, unit="rows/s"),
            Figure(
                f"peak RSS growth, fan-out to Parquet, {large_pages} vs {small_pages} pages",
                (large_peak / small_peak - 1) * 100 if small_peak else None,
                unit="%",
                target=Target("<", 25.0),
            ),
            Figure(f"peak RSS, {small_pages} pages to Parquet", small_peak / 1024, unit="MiB"),
            Figure(f"peak RSS, {large_pages} pages to Parquet", large_peak / 1024, unit="MiB"),
        ],
        details={"rates": [dataclasses.asdict(r) for r in rates], "children": children},
        summary=[
            f"throughput: {pages} cached pages, {rows} rows of ~40 columns, answered from "
            f"memory; rows per CPU second, best of {_ROUNDS} alternating rounds, median of "
            f"{repeat} pass(es)",
            f"memory: each fan-out in a fresh process with the default limits; peak RSS from "
            f"{children[0][0]['source']}; the benchmark's own process peaked at "
            f"{max_rss_kb()[0] / 1024:.0f} MiB",
        ],
    )


async def run(*, quick: bool, repeat: int) -> BenchmarkResult:
    """The sink benchmark against a fresh emulator process."""
    count, sites = await best_practice_sites(1, SEED)
    async with EmulatorProcess(sites=count, seed=SEED, page_size=PAGE_SIZE) as emulator:
        return await run_sink(
            emulator.base_url,
            emulator.api_key,
            sites[0],
            QUICK_PAGES if quick else FULL_PAGES,
            _THROUGHPUT_PAGES[quick],
            repeat,
        )
