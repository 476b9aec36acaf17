"""The event loop's worst stall while large result pages are fetched and decoded.

Large pages (8 MB of rows, ~11 MB bodies) of several queries are fetched all at once with
``halo.get_result_page`` from the emulator in its own process, while a heartbeat task asks
the loop to wake it every millisecond and records how late each wake-up comes. The worst
lateness is how long the loop could not run anything else: no other request, no other
site, no web handler of the application embedding the client.

The same fetches run four ways, alternating round by round:

* **fetch only**: the same requests, bodies read and not decoded: the floor, the lag that
  reading ~130 MB over loopback (and the machine's other processes) cause by themselves;
* **inline**: every body decoded on the loop, as before large bodies moved off it (forced
  by raising the threshold, ``DECODE_OFF_LOOP_MIN_BYTES``, out of reach for the round);
* **thread**: as shipped: bodies over the threshold decoded in the decoding thread, rows
  parsed in slices so that the GIL changes hands between them;
* **process**: for comparison, the whole decode in a worker process
  (``ProcessPoolExecutor``), the rows pickled back: the loop's process then spends its GIL
  unpickling each page in one piece.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor

from benchmarks._emulator import EmulatorProcess, best_practice_sites
from benchmarks._measure import Stopwatch, median
from benchmarks._report import BenchmarkResult, Figure, Target
from benchmarks._results import sql_for_pages
from halo_async import HaloClient, _decode
from halo_async import _constants as C

__all__ = [
    "FULL",
    "MODES",
    "NAME",
    "QUICK",
    "Heartbeat",
    "Round",
    "StallSize",
    "decoding",
    "fetch_all",
    "fetch_bodies",
    "run",
    "run_stall",
    "timed_round",
]

NAME = "stall"
SEED = 5
HEARTBEAT_S = 0.001
MODES = ("fetch_only", "inline", "thread", "process")


@dataclasses.dataclass(frozen=True)
class StallSize:
    """How many queries, how many pages each, and how large the pages are."""

    sites: int
    pages: int
    page_size: int


FULL = StallSize(sites=4, pages=2, page_size=8_000_000)
# Bodies of ~4 MB: still over the off-loop threshold (2 MiB), so every path runs.
QUICK = StallSize(sites=2, pages=1, page_size=3_000_000)


class Heartbeat:
    """``async with Heartbeat() as beat:`` wakes every ``interval`` seconds until the block
    ends; ``beat.max_lag`` is the latest any wake-up came, in seconds."""

    def __init__(self, interval: float = HEARTBEAT_S) -> None:
        self.interval = interval
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None
        self._asked = 0.0

    @property
    def max_lag(self) -> float:
        return max(self.lags, default=0.0)

    async def _beat(self) -> None:
        while True:
            self._asked = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.lags.append(time.perf_counter() - self._asked - self.interval)

    async def __aenter__(self) -> Heartbeat:
        self._task = asyncio.create_task(self._beat())
        await asyncio.sleep(0)  # the first beat is asked for before the work starts
        return self

    async def __aexit__(self, *exc: object) -> None:
        # The beat pending now may be the latest of all (work that never yields delays only
        # this one): it counts as late as it already is.
        overdue = time.perf_counter() - self._asked - self.interval
        if overdue > 0:
            self.lags.append(overdue)
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def _decode_in_process(body: bytes, any_shape: bool) -> _decode.DecodedBody:
    return _decode.decode_body(body, any_shape=any_shape)


@contextlib.contextmanager
def decoding(mode: str, pool: ProcessPoolExecutor | None = None) -> Iterator[None]:
    """Within the block, the client decodes result bodies as ``mode`` says."""
    if mode in ("thread", "fetch_only"):
        yield
        return
    if mode == "inline":
        saved = C.DECODE_OFF_LOOP_MIN_BYTES
        C.DECODE_OFF_LOOP_MIN_BYTES = 1 << 62  # type: ignore[misc]
        try:
            yield
        finally:
            C.DECODE_OFF_LOOP_MIN_BYTES = saved  # type: ignore[misc]
        return
    if mode != "process" or pool is None:
        raise ValueError(f"unknown decoding mode {mode!r} (or no pool for 'process')")
    shipped = _decode.decode_result_body

    async def in_process(body: bytes, *, any_shape: bool = False) -> _decode.DecodedBody:
        if len(body) < C.DECODE_OFF_LOOP_MIN_BYTES:
            return _decode.decode_body(body, any_shape=any_shape)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, _decode_in_process, body, any_shape)

    _decode.decode_result_body = in_process  # type: ignore[assignment]
    try:
        yield
    finally:
        _decode.decode_result_body = shipped  # type: ignore[assignment]


PageRef = tuple[str, str, int]
"""(site id, query id, page number)."""


async def fetch_all(halo: HaloClient, pages: Sequence[PageRef]) -> int:
    """Fetch every page at once with ``get_result_page``; returns the row count.

    Each page is let go as soon as it is counted, as a consumer does once it has used the
    rows: freeing them costs the loop too, a page at a time, in every mode alike.
    """

    async def rows_of(page: PageRef) -> int:
        return len((await halo.get_result_page(*page)).rows)

    return sum(await asyncio.gather(*(rows_of(page) for page in pages)))


async def fetch_bodies(halo: HaloClient, pages: Sequence[PageRef]) -> int:
    """Fetch every page at once, reading the bodies without decoding them; returns the
    number of body bytes."""
    fetched = await asyncio.gather(*(halo._fetch_result_page(*page) for page in pages))
    return sum(len(answer.response.body) for answer in fetched)


@dataclasses.dataclass(frozen=True)
class Round:
    """One timed fetch of every page under one decoding mode."""

    mode: str
    max_lag: float
    beats: int
    wall: float
    cpu: float
    rows: int
    """Rows decoded (body bytes read, for ``fetch_only``)."""


async def timed_round(
    mode: str,
    fetch: Callable[[], Awaitable[int]],
    pool: ProcessPoolExecutor | None = None,
) -> Round:
    """Run ``fetch`` under the heartbeat, decoding as ``mode`` says."""
    gc.collect()
    with decoding(mode, pool):
        async with Heartbeat() as beat:
            with Stopwatch() as watch:
                rows = await fetch()
    return Round(mode, beat.max_lag, len(beat.lags), watch.wall, watch.cpu, rows)


async def _make_results(
    base_url: str, api_key: str, sites: Sequence[str], size: StallSize
) -> tuple[list[PageRef], str]:
    async with HaloClient(api_key, base_url=base_url) as halo:
        sql = await sql_for_pages(halo, sites[0], size.pages, size.page_size)
        jobs = [await halo.submit(site, sql) for site in sites]
        refs: list[PageRef] = []
        for job in jobs:
            query = await job.wait()
            refs += [(job.site_id, job.query_id, page.page_number) for page in query.pages]
    return refs, sql


async def run_stall(
    base_url: str, api_key: str, sites: Sequence[str], size: StallSize, repeat: int
) -> BenchmarkResult:
    """Make the large results, then fetch them all under each decoding mode in turn."""
    refs, sql = await _make_results(base_url, api_key, sites, size)
    rounds: list[Round] = []
    with ProcessPoolExecutor(max_workers=1) as pool:
        pool.submit(int).result()  # the worker is up before any round is timed
        async with HaloClient(api_key, base_url=base_url) as halo:

            async def fetch() -> int:
                return await fetch_all(halo, refs)

            async def fetch_only() -> int:
                return await fetch_bodies(halo, refs)

            expected = await fetch()  # untimed: warm connections and code paths
            size_bytes = await fetch_only()
            for _ in range(repeat):
                for mode in MODES:
                    done = await timed_round(
                        mode, fetch_only if mode == "fetch_only" else fetch, pool
                    )
                    want = size_bytes if mode == "fetch_only" else expected
                    if done.rows != want:
                        raise RuntimeError(f"{mode}: {done.rows} rows (bytes), expected {want}")
                    rounds.append(done)

    def lag(mode: str) -> float | None:
        return median([r.max_lag for r in rounds if r.mode == mode])

    def wall(mode: str) -> float | None:
        return median([r.wall for r in rounds if r.mode == mode])

    inline, thread, process = lag("inline"), lag("thread"), lag("process")
    figures = [
        Figure("off-loop / inline max loop lag", _ratio(thread, inline), target=Target("<=", 0.25)),
        Figure("max loop lag, fetch only (no decode)", _ms(lag("fetch_only")), unit="ms"),
        Figure("max loop lag, inline decode", _ms(inline), unit="ms"),
        Figure("max loop lag, off-loop decode (thread)", _ms(thread), unit="ms"),
        Figure("max loop lag, process pool decode", _ms(process), unit="ms"),
        Figure("off-loop / inline wall time", _ratio(wall("thread"), wall("inline"))),
        Figure("process pool / off-loop wall time", _ratio(wall("process"), wall("thread"))),
    ]
    return BenchmarkResult(
        name=NAME,
        title="the event loop's worst stall while large pages are fetched and decoded",
        figures=figures,
        details={
            "sites": size.sites,
            "pages": len(refs),
            "page_size": size.page_size,
            "rows": expected,
            "body_bytes": size_bytes,
            "sql": sql,
            "heartbeat_s": HEARTBEAT_S,
            "threshold_bytes": C.DECODE_OFF_LOOP_MIN_BYTES,
            "rounds": [dataclasses.asdict(r) for r in rounds],
        },
        summary=[
            f"{len(refs)} pages of ~{size.page_size / 1e6:.0f} MB of rows ({size.sites} "
            "queries), fetched all at once with get_result_page over loopback; a "
            f"heartbeat asks for a wake-up every {HEARTBEAT_S * 1e3:g} ms; median over "
            f"{repeat} round(s) of each round's worst lateness",
            "wall time per round: " + ", ".join(f"{mode} {_fmt_s(wall(mode))}" for mode in MODES),
        ],
    )


def _ratio(value: float | None, baseline: float | None) -> float | None:
    return value / baseline if value is not None and baseline else None


def _ms(value: float | None) -> float | None:
    return None if value is None else value * 1e3


def _fmt_s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


async def run(*, quick: bool, repeat: int) -> BenchmarkResult:
    """The stall benchmark against a fresh emulator process."""
    size = QUICK if quick else FULL
    count, sites = await best_practice_sites(size.sites, SEED)
    async with EmulatorProcess(sites=count, seed=SEED, page_size=size.page_size) as emulator:
        return await run_stall(emulator.base_url, emulator.api_key, sites, size, repeat)
