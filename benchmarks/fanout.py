"""Fan-out: one query on every site, five times, by three clients side by side.

(a) **halo-async**: ``HaloClient.fan_out(sql, entries, limits=FanOutLimits(per_site=5))``,
    each site's five entries adjacent, so the five queries of a site are in flight together
    and their status checks can share batch requests;
(b) **the floor**: the same algorithm hand-written on bare aiohttp: the same creates, the
    same poll cadence (the PollPolicy arithmetic, first check one interval after the
    create, the interval reset by progress), asks due within a window (half the interval
    to all of it) answered by one batch status request per site when the first window
    closes, the same
    page GETs and base64 + orjson decoding. It is what halo-async does with none of its
    layers, so (a) / (b) is the price of those layers;
(c) **what users write**: create each query, ``GET .../queries/{id}`` it every 100 ms until
    it ends, then fetch its pages.

All three see the same emulator process, with every site's database generated beforehand,
and each starts from a fresh ``aiohttp.ClientSession`` with the connection limit halo-async
uses. The clients run every query at once (the connection limit caps the HTTP requests in
flight), so the run is bound by the client's CPU rather than by waits.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson

from benchmarks._emulator import EmulatorProcess, best_practice_sites
from benchmarks._measure import Stopwatch, median
from benchmarks._report import BenchmarkResult, Figure, Target
from benchmarks._requests import RequestCounter
from halo_async import HaloClient, PollPolicy
from halo_async import _constants as C
from halo_async.errors import FanOutDeadlineError
from halo_async.fanout import FanOutLimits, SiteOutcome

__all__ = ["NAME", "FanOutSize", "Workload", "run", "run_fanout"]

NAME = "fanout"

SQL = "SELECT TOP 20 INTERNALID, FIRSTNAME, SURNAME, DOB FROM PATIENTS ORDER BY INTERNALID"
"""One small page per query: the run measures the query lifecycle, not decoding."""

CREATE_BODY = {
    "command": {"text": SQL, "executionMode": "reader", "type": "text", "parameters": []}
}
"""What halo-async sends to create the query, byte for byte the same JSON."""

NAIVE_POLL_S = 0.1
SEED = 7
TERMINAL = frozenset(
    {
        "initialisationFailedCacheError",
        "initialisationFailedSiteOffline",
        "initialisationFailedSiteUnreachable",
        "expiredInQueue",
        "executionFailed",
        "uploadFailed",
        "successful",
    }
)
MIN_PAIRS = 11
"""Runs of halo-async and the floor, side by side, at the least (more than ``--repeat``'s
default of 3: on a shared 2-core machine one pair's CPU ratio moves by 0.1-0.5, so that the
median of five moved by as much as the gap it was to measure; eleven take ~90 s)."""
# A correct run takes seconds; one that has not ended after this many floor runs' time is
# stuck (a query whose status is never answered), and is reported as such.
_STALL_FACTOR = 5.0
_MIN_STALL_S = 10.0


class BenchmarkError(RuntimeError):
    """A client under test failed a query or met an unexpected answer."""


@dataclasses.dataclass(frozen=True)
class FanOutSize:
    """How many sites, and how many queries on each."""

    sites: int
    queries_per_site: int


FULL = FanOutSize(sites=200, queries_per_site=5)
QUICK = FanOutSize(sites=10, queries_per_site=5)


@dataclasses.dataclass(frozen=True)
class Workload:
    """What every client runs: ``entries`` lists each site once per query, adjacent."""

    base_url: str
    api_key: str = dataclasses.field(repr=False)
    entries: tuple[str, ...]
    queries_per_site: int
    poll: PollPolicy

    @property
    def sites(self) -> list[str]:
        """Each site once, in order."""
        return list(dict.fromkeys(self.entries))


@dataclasses.dataclass(frozen=True)
class ClientRun:
    """One timed run of one client."""

    client: str
    wall: float | None
    """Seconds from a fresh session to the last row; None when queries were left unfinished."""
    cpu: float
    requests: dict[str, int]
    rows: int
    unfinished: int
    server_cpu: float | None = None
    """CPU seconds the emulator process spent during the run, where it can be read."""

    @property
    def status_checks(self) -> int:
        """Status requests, batched or single."""
        return self.requests.get("batch_status", 0) + self.requests.get("get_query", 0)


Client = Callable[[Workload, aiohttp.ClientSession, float], Awaitable[tuple[int, int]]]
"""Runs the workload on a session within a stall deadline; returns (rows, unfinished)."""


# -- (a) halo-async ---------------------------------------------------------------------------


async def halo_async_client(
    work: Workload, session: aiohttp.ClientSession, stall_after: float
) -> tuple[int, int]:
    """``fan_out`` with every query in flight at once and ``per_site`` = queries per site."""
    rows = unfinished = 0
    async with HaloClient(work.api_key, base_url=work.base_url, session=session) as halo:
        async for item in halo.fan_out(
            SQL,
            work.entries,
            limits=FanOutLimits(max_in_flight=len(work.entries), per_site=work.queries_per_site),
            poll=work.poll,
            deadline=stall_after,
        ):
            assert isinstance(item, SiteOutcome)
            if isinstance(item.error, FanOutDeadlineError):
                unfinished += 1
            elif item.error is not None:
                raise BenchmarkError(f"halo-async: site {item.site_id} failed") from item.error
            else:
                rows += item.row_count
    return rows, unfinished


# -- the bare aiohttp clients -------------------------------------------------------------------


class _Api:
    """The least a client must do: the key header, the URL, orjson both ways."""

    def __init__(self, session: aiohttp.ClientSession, work: Workload) -> None:
        self._session = session
        self._base = work.base_url
        self._headers = {C.API_KEY_HEADER: work.api_key, "Accept": "application/json"}
        self._post_headers = {**self._headers, "Content-Type": "application/json"}

    def __repr__(self) -> str:
        return f"<_Api {self._base}>"

    async def post(self, path: str, body: Any) -> Any:
        async with self._session.post(
            self._base + path, data=orjson.dumps(body), headers=self._post_headers
        ) as response:
            payload = await response.read()
            status = response.status
        if status >= 400:
            raise BenchmarkError(f"POST {path} answered {status}")
        return orjson.loads(payload)

    async def get(self, path: str) -> Any:
        async with self._session.get(self._base + path, headers=self._headers) as response:
            payload = await response.read()
            status = response.status
        if status >= 400:
            raise BenchmarkError(f"GET {path} answered {status}")
        return orjson.loads(payload)

    async def create(self, site: str) -> dict[str, Any]:
        created: dict[str, Any] = await self.post(
            f"/integrator/sites/{site}/queries/async", CREATE_BODY
        )
        return created

    async def page_rows(self, site: str, query_id: str, number: int) -> list[dict[str, Any]]:
        page = await self.get(f"/integrator/sites/{site}/queries/{query_id}/results/{number}")
        rows: list[dict[str, Any]] = orjson.loads(base64.b64decode(page["data"]))
        return rows


def _cached_numbers(query: dict[str, Any]) -> set[int]:
    result = query.get("result") or {}
    return {page["pageNumber"] for page in result.get("pages", ()) if page["status"] == "cached"}


def _all_listed_cached(query: dict[str, Any]) -> bool:
    result = query.get("result") or {}
    pages = result.get("pages", ())
    return query["status"] == "successful" and all(page["status"] == "cached" for page in pages)


class _SiteBatcher:
    """One site's status asks, each due within a window: one batch request is sent when the
    first ask's window closes, with every ask whose window has opened (halo-async's rule)."""

    def __init__(self, api: _Api, site: str) -> None:
        self._api = api
        self._path = f"/integrator/sites/{site}/queries/status"
        self._asks: list[tuple[str, float, float, asyncio.Future[dict[str, Any]]]] = []
        self._arrived = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<_SiteBatcher {self._path} asks={len(self._asks)}>"

    async def status(self, query_id: str, earliest: float, latest: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        now = loop.time()
        self._asks.append((query_id, now + earliest, now + latest, future))
        self._arrived.set()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        return await future

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._asks:
            self._arrived.clear()
            delay = min(ask[2] for ask in self._asks) - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._arrived.wait()
                continue
            await asyncio.sleep(0)
            now = loop.time()
            due = [ask for ask in self._asks if ask[1] <= now]
            self._asks = [ask for ask in self._asks if ask[1] > now]
            batch = [ask[0] for ask in due]
            try:
                answer = await self._api.post(self._path, {"queryIds": batch})
            except Exception as exc:
                for ask in due:
                    if not ask[3].done():
                        ask[3].set_exception(exc)
                continue
            found = {item["queryId"]: item.get("query") for item in answer["results"]}
            for query_id, _, _, future in due:
                query = found.get(query_id)
                if future.done():
                    continue
                if query is None:
                    future.set_exception(BenchmarkError(f"query {query_id} not found"))
                else:
                    future.set_result(query)

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)


async def _floor_query(
    api: _Api, batcher: _SiteBatcher, site: str, poll: PollPolicy
) -> list[dict[str, Any]]:
    """One query as halo-async's QueryJob runs it, with nothing but the HTTP calls."""
    query = await api.create(site)  # "initialising": the first poll comes an interval later
    query_id = str(query["id"])
    rows: list[dict[str, Any]] = []
    next_page = 1
    interval = poll.initial_interval
    seen: tuple[str, int] | None = None
    while True:
        if query["status"] in TERMINAL and query["status"] != "successful":
            raise BenchmarkError(f"floor: query {query_id} ended {query['status']}")
        cached = _cached_numbers(query)
        progress = (query["status"], len(cached))
        if progress != seen:
            seen, interval = progress, poll.initial_interval
            while next_page in cached:
                rows += await api.page_rows(site, query_id, next_page)
                next_page += 1
        else:
            interval = min(poll.max_interval, max(interval, 1e-3) * poll.multiplier)
        if _all_listed_cached(query):
            return rows
        earliest = interval / 2 if poll.jitter else interval
        query = await batcher.status(query_id, earliest, interval)


async def floor_client(
    work: Workload, session: aiohttp.ClientSession, stall_after: float
) -> tuple[int, int]:
    """(b): halo-async's algorithm on bare aiohttp."""
    api = _Api(session, work)
    batchers = {site: _SiteBatcher(api, site) for site in work.sites}
    try:
        async with asyncio.timeout(stall_after):
            results = await asyncio.gather(
                *(_floor_query(api, batchers[site], site, work.poll) for site in work.entries)
            )
    finally:
        for batcher in batchers.values():
            await batcher.close()
    return sum(len(rows) for rows in results), 0


async def _naive_query(api: _Api, site: str) -> list[dict[str, Any]]:
    query_id = (await api.create(site))["id"]
    while True:
        query = await api.get(f"/integrator/sites/{site}/queries/{query_id}")
        if query["status"] in TERMINAL:
            break
        await asyncio.sleep(NAIVE_POLL_S)
    if query["status"] != "successful":
        raise BenchmarkError(f"naive: query {query_id} ended {query['status']}")
    rows: list[dict[str, Any]] = []
    for page in query["result"]["pages"]:
        rows += await api.page_rows(site, query_id, page["pageNumber"])
    return rows


async def naive_client(
    work: Workload, session: aiohttp.ClientSession, stall_after: float
) -> tuple[int, int]:
    """(c): one GET per query every 100 ms until it ends, then its pages."""
    api = _Api(session, work)
    async with asyncio.timeout(stall_after):
        results = await asyncio.gather(*(_naive_query(api, site) for site in work.entries))
    return sum(len(rows) for rows in results), 0


CLIENTS: dict[str, Client] = {
    "halo-async": halo_async_client,
    "floor": floor_client,
    "naive": naive_client,
}


# -- running them -------------------------------------------------------------------------------


@asynccontextmanager
async def _fresh_session(counter: RequestCounter) -> AsyncIterator[aiohttp.ClientSession]:
    # The connector halo-async builds for itself, so that all three queue alike for sockets.
    connector = aiohttp.TCPConnector(limit=C.CONNECTION_LIMIT, limit_per_host=0)
    async with aiohttp.ClientSession(
        connector=connector, trace_configs=[counter.trace_config()]
    ) as session:
        yield session


ServerCpu = Callable[[], float | None]


def _no_server_cpu() -> float | None:
    return None


async def time_client(
    name: str, work: Workload, stall_after: float, server_cpu: ServerCpu = _no_server_cpu
) -> ClientRun:
    """One run of client ``name`` from a fresh session, timed and counted."""
    counter = RequestCounter()
    gc.collect()
    server_before = server_cpu()
    with Stopwatch() as watch:
        async with _fresh_session(counter) as session:
            rows, unfinished = await CLIENTS[name](work, session, stall_after)
    server_after = server_cpu()
    return ClientRun(
        client=name,
        wall=None if unfinished else watch.wall,
        cpu=watch.cpu,
        requests=dict(sorted(counter.counts.items())),
        rows=rows,
        unfinished=unfinished,
        server_cpu=(
            server_after - server_before
            if server_after is not None and server_before is not None
            else None
        ),
    )


async def warm_up_databases(base_url: str, api_key: str, sites: Sequence[str]) -> None:
    """Run the query once on every site: its first query generates the site's data."""
    slots = asyncio.Semaphore(8)
    async with HaloClient(api_key, base_url=base_url) as halo:

        async def warm(site: str) -> None:
            async with slots:
                await halo.immediate_query(site, SQL)

        await asyncio.gather(*(warm(site) for site in sites))


async def run_fanout(
    base_url: str,
    api_key: str,
    sites: Sequence[str],
    size: FanOutSize,
    repeat: int,
    server_cpu: ServerCpu = _no_server_cpu,
) -> BenchmarkResult:
    """Warm up, then time the three clients ``repeat`` times on ``sites``."""
    poll = PollPolicy()
    entries = tuple(site for site in sites for _ in range(size.queries_per_site))
    work = Workload(base_url, api_key, entries, size.queries_per_site, poll)
    await warm_up_databases(base_url, api_key, sites)
    # Untimed: the first use of each code path (imports, cattrs' generated structuring code).
    sample = dataclasses.replace(work, entries=entries[: 5 * size.queries_per_site])
    for name in ("floor", "halo-async", "naive"):
        await time_client(name, sample, stall_after=60.0)

    runs: dict[str, list[ClientRun]] = {name: [] for name in CLIENTS}
    stall_after = 120.0  # set by each floor run before halo-async's is timed against it
    for rep in range(max(repeat, MIN_PAIRS)):
        # halo-async and the floor side by side, each first in turn (the emulator slows as
        # it stores more queries, and the machine's other load comes and goes): each CPU
        # ratio is of one such pair, and the figure is their median.
        for name in ("floor", "halo-async") if rep % 2 == 0 else ("halo-async", "floor"):
            if name == "floor":
                floor = await time_client("floor", work, 120.0, server_cpu)
                assert floor.wall is not None
                stall_after = max(_MIN_STALL_S, _STALL_FACTOR * floor.wall)
                runs["floor"].append(floor)
            else:
                runs[name].append(await time_client(name, work, stall_after, server_cpu))
        runs["naive"].append(await time_client("naive", work, 120.0, server_cpu))
    return _result(runs, size, poll, len(entries))


def _result(
    runs: dict[str, list[ClientRun]], size: FanOutSize, poll: PollPolicy, queries: int
) -> BenchmarkResult:
    wall = {name: median([run.wall for run in client_runs]) for name, client_runs in runs.items()}
    cpu = {name: median([run.cpu for run in client_runs]) for name, client_runs in runs.items()}
    side_by_side = zip(runs["halo-async"], runs["floor"], strict=True)
    pairs = [halo.cpu / floor.cpu for halo, floor in side_by_side if floor.cpu]
    status = {
        name: median([float(run.status_checks) for run in client_runs])
        for name, client_runs in runs.items()
    }
    halo, floor, naive = wall["halo-async"], wall["floor"], wall["naive"]
    unfinished = max(run.unfinished for run in runs["halo-async"])
    stuck = (
        f"halo-async left {unfinished} of {queries} queries unfinished (its status never came)"
        if unfinished
        else ""
    )
    halo_status = status["halo-async"]
    figures = [
        Figure(
            "halo-async / floor wall time",
            halo / floor if halo and floor else None,
            target=Target("<=", 1.15),
            note=stuck,
        ),
        Figure(
            "halo-async / naive wall time",
            halo / naive if halo and naive else None,
            target=Target("<", 1.0),
            note=stuck,
        ),
        Figure(
            "naive / halo-async status requests",
            (status["naive"] or 0) / halo_status if halo_status and not unfinished else None,
            target=Target(">=", 3.0),
            note=stuck,
        ),
        Figure(
            "halo-async / floor CPU time",
            median(pairs),
            target=Target("<=", 1.15),
        ),
        *(Figure(f"{name} wall time", wall[name], unit="s") for name in CLIENTS),
    ]
    summary = [
        f"{size.sites} sites x {size.queries_per_site} queries = {queries} queries, one page "
        f"each, all in flight; connection limit {C.CONNECTION_LIMIT}; median of "
        f"{len(runs['floor'])} run(s)",
        f"poll cadence of halo-async and the floor: the library default {poll!r}; "
        f"naive: GET every {NAIVE_POLL_S * 1000:.0f} ms",
        "halo-async / floor CPU, pair by pair (each first in turn): "
        + ", ".join(f"{ratio:.3f}" for ratio in pairs),
    ]
    for name, client_runs in runs.items():
        last = client_runs[-1]
        counts = ", ".join(f"{kind} {count}" for kind, count in last.requests.items())
        server = median([run.server_cpu for run in client_runs])
        summary.append(
            f"{name:>10}: wall {_seconds(wall[name])}, CPU {_seconds(cpu[name])} (emulator "
            f"{_seconds(server)}), rows {last.rows}; requests (last run): {counts}"
        )
    return BenchmarkResult(
        name=NAME,
        title="fan-out: halo-async vs the same calls hand-written vs per-query polling",
        figures=figures,
        details={
            "size": dataclasses.asdict(size),
            "sql": SQL,
            "poll": repr(poll),
            "naive_poll_s": NAIVE_POLL_S,
            "runs": {
                name: [dataclasses.asdict(run) for run in client_runs]
                for name, client_runs in runs.items()
            },
        },
        summary=summary,
    )


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} s"


async def run(*, quick: bool, repeat: int) -> BenchmarkResult:
    """The fan-out benchmark against a fresh emulator process."""
    size = QUICK if quick else FULL
    count, sites = await best_practice_sites(size.sites, SEED)
    async with EmulatorProcess(sites=count, seed=SEED) as emulator:
        return await run_fanout(
            emulator.base_url, emulator.api_key, sites, size, repeat, emulator.cpu_seconds
        )
