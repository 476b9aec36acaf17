"""The in-process emulator: sites, state, faults and the aiohttp server on 127.0.0.1."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import date, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from halo_async.emulator._clock import Clock, SystemClock
from halo_async.emulator._executor import DEFAULT_SQL_WORKERS, SqlExecutor
from halo_async.emulator._latency import Latency
from halo_async.emulator._records import QueryRecord
from halo_async.emulator._sandbox import ExecutionLimits
from halo_async.emulator._sites import DatabaseFactory, Site, SiteDatabase, SiteSpec, build_sites
from halo_async.emulator._sites import generate_specs as _generate_specs
from halo_async.emulator._template import TemplateCache
from halo_async.emulator.app import EmulatorStats, create_app
from halo_async.emulator.faults import Faults
from halo_async.emulator.state import EmulatorState, Limits

if TYPE_CHECKING:
    from halo_async.emulator.webhooks import WebhookSender

__all__ = ["DEFAULT_API_KEY", "Emulator"]

DEFAULT_API_KEY = "halo-emulator-key"
"""The key the emulator accepts unless given another; it guards nothing real."""

try:
    # Practice databases live in Australian local time: GETDATE() is the practice's clock.
    _PRACTICE_TZ: Any = ZoneInfo("Australia/Sydney")
except ZoneInfoNotFoundError:  # pragma: no cover - systems without tz data
    from datetime import UTC as _PRACTICE_TZ


_SHUTDOWN_TIMEOUT = 5.0
DEFAULT_DATABASE_TEMPLATES = 8
"""Distinct generated datasets per PMS and size that an emulator's sites share."""


def _practice_databases(
    clock: Clock,
    *,
    seed: int,
    templates: TemplateCache,
    variants: int | None,
    limits: ExecutionLimits,
) -> DatabaseFactory:
    from halo_async.emulator.database import PracticeDatabase

    def practice_now() -> datetime:
        return clock.now().astimezone(_PRACTICE_TZ).replace(tzinfo=None)

    def data_seed(site_seed: int) -> int:
        if variants is None:
            return site_seed
        variant = site_seed % variants
        return random.Random(f"halo-emulator-dataset:{seed}:{variant}").getrandbits(32)

    def factory(*, pms_type: str, seed: int, patients: int) -> SiteDatabase:
        today: date = practice_now().date()
        return PracticeDatabase(
            pms_type=pms_type,
            seed=data_seed(seed),
            site_seed=seed if variants is not None else None,
            patients=patients,
            today=today,
            now=practice_now,
            # One dataset per site: nothing to share, so nothing worth keeping twice.
            templates=templates if variants is not None else None,
            limits=limits,
        )

    return factory


class Emulator:
    """A local Halo Cloud for integrators, served over HTTP on ``host:port``.

    ``async with Emulator(sites=50, seed=1) as emu:`` starts it; ``emu.base_url`` and
    ``emu.api_key`` are what a client needs. ``sites`` is a count (a deterministic mix derived
    from ``seed``) or explicit :class:`SiteSpec` s. ``latency`` is a :class:`Latency` or the
    name of a preset (``"zero"``, ``"realistic"``); ``clock`` defaults to the wall clock, and a
    :class:`ManualClock` lets tests move time instead of sleeping. Databases are built cheaply
    at construction and get their data on first use: the sites share ``database_templates``
    generated datasets per PMS and size (each site a ~1 ms copy, with its own practice rows;
    ``None`` generates every site's own). SQL runs in ``sql_workers`` threads; a statement
    may run ``statement_timeout`` real seconds and return ``max_result_rows`` rows or
    ``max_result_bytes`` bytes of JSON before it fails; a request body may take
    ``body_timeout`` seconds to arrive (a shorter one than its Content-Length gets 408).
    ``webhooks`` (a :class:`~halo_async.emulator.webhooks.WebhookSender`) POSTs Halo's
    signed webhooks on each async success and changed registered result; it is closed with
    the emulator.
    """

    def __init__(
        self,
        sites: int | Sequence[SiteSpec] = 50,
        *,
        seed: int = 1,
        latency: Latency | str = "zero",
        clock: Clock | None = None,
        page_size: int = 1_000_000,
        api_key: str = DEFAULT_API_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        retention: float = 86_400.0,
        immediate_result_limit: int = 8 * 1024 * 1024,
        immediate_timeout: float = 30.0,
        async_execution_limit: float = 300.0,
        stream_rows: bool = False,
        faults: Faults | None = None,
        database_factory: DatabaseFactory | None = None,
        webhooks: WebhookSender | None = None,
        database_templates: int | None = DEFAULT_DATABASE_TEMPLATES,
        sql_workers: int = DEFAULT_SQL_WORKERS,
        statement_timeout: float = 30.0,
        max_result_rows: int = 1_000_000,
        max_result_bytes: int = 256 * 1024 * 1024,
        body_timeout: float = 30.0,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        self.seed, self.stats = seed, EmulatorStats()
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.faults = faults if faults is not None else Faults(seed)
        self.host, self.port, self._api_key = host, port, api_key
        self.templates = TemplateCache()
        execution = ExecutionLimits(statement_timeout, max_result_rows, max_result_bytes)
        self.sites: list[Site] = self._build_sites(
            sites, database_factory or self._practice_databases(database_templates, execution)
        )
        self.state = EmulatorState(
            sites=self.sites,
            clock=self.clock,
            latency=Latency.named(latency) if isinstance(latency, str) else latency,
            faults=self.faults,
            seed=seed,
            limits=Limits(
                page_size=page_size,
                retention=retention,
                immediate_result_limit=immediate_result_limit,
                immediate_timeout=immediate_timeout,
                async_execution_limit=async_execution_limit,
                body_timeout=body_timeout,
            ),
            executor=SqlExecutor(sql_workers),
        )
        self.app: web.Application = create_app(
            self.state, api_key=api_key, stats=self.stats, stream_rows=stream_rows
        )
        self._runner: web.AppRunner | None = None
        self.webhooks = webhooks
        if webhooks is not None:
            webhooks.attach(self.state)  # closed with the emulator

    def _practice_databases(
        self, templates: int | None, limits: ExecutionLimits
    ) -> DatabaseFactory:
        if templates is not None and templates < 1:
            raise ValueError("database_templates must be at least 1, or None")
        return _practice_databases(
            self.clock, seed=self.seed, templates=self.templates, variants=templates, limits=limits
        )

    def _build_sites(self, sites: int | Sequence[SiteSpec], factory: DatabaseFactory) -> list[Site]:
        specs = _generate_specs(sites, self.seed) if isinstance(sites, int) else list(sites)
        return build_sites(specs, seed=self.seed, now=self.clock.now(), database_factory=factory)

    @property
    def latency(self) -> Latency:
        """The simulated phase latencies; assign a new :class:`Latency` to change them live."""
        return self.state.latency

    @latency.setter
    def latency(self, value: Latency) -> None:
        self.state.latency = value

    @property
    def api_key(self) -> str:
        """The subscription key the emulator accepts."""
        return self._api_key

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server."""
        if self._runner is None:
            raise RuntimeError("the emulator is not running; use `async with Emulator(...)`")
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Bind and serve; with ``port=0`` the system picks a free port."""
        if self._runner is not None:
            return
        # No access log: a key sent as `subscription-key` would land in it. A short shutdown
        # timeout: close() must not wait a minute for a request still queued on a site.
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def close(self) -> None:
        """Stop serving, stop running queries and close every database; never hangs."""
        if self.webhooks is not None:
            await self.webhooks.close()
        # Interrupt running SQL first, so that the requests waiting on it answer and the
        # server's shutdown does not wait for a runaway statement.
        await self.state.executor.shutdown()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()  # the app's cleanup closes the state
        else:
            await self.state.close()
        self.templates.clear()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ helpers for tests

    def site(self, site_id: str) -> Site:
        """The site record with this Halo GUID."""
        for site in self.sites:
            if site.id == site_id:
                return site
        raise KeyError(site_id)

    def set_site_availability(self, site_id: str, availability: str) -> None:
        """Make a site ``online``, ``offline`` or ``unreachable`` from now on."""
        self.state.set_availability(site_id, availability)

    def set_site_offline(self, site_id: str) -> None:
        """The site closes its connection: immediates 503, async queries wait or fail."""
        self.set_site_availability(site_id, "offline")

    def query(self, query_id: str) -> QueryRecord | None:
        """The emulator's record of a query, whatever its site."""
        return self.state.lookup(query_id)

    def queries(self, site_id: str | None = None, mode: str | None = None) -> list[QueryRecord]:
        """The emulator's records of every query it created (of one site, of one mode:
        ``"async"`` or ``"immediate"``), in creation order: what Halo would bill."""
        return [
            query
            for query in self.state.records()
            if (site_id is None or query.site_id == site_id)
            and (mode is None or query.mode == mode)
        ]

    async def wait_for_query(
        self,
        query_id: str,
        *statuses: str,
        timeout: float = 5.0,  # noqa: ASYNC109 - a real-time guard for tests, not an API knob
    ) -> QueryRecord:
        """Wait (``timeout`` real seconds) until a query reaches one of ``statuses``.

        Without ``statuses``, until it reaches any terminal status.
        """

        def reached() -> bool:
            query = self.state.lookup(query_id)
            if query is None:
                return False
            return query.status in statuses if statuses else query.terminal

        await self.state.wait_until(reached, timeout, subject=query_id)
        record = self.state.lookup(query_id)
        assert record is not None
        return record

    def __repr__(self) -> str:
        where = f"{self.host}:{self.port}" if self._runner is not None else "not running"
        return f"Emulator(sites={len(self.sites)}, seed={self.seed}, {where})"
