"""``halo demo``: a fan-out across an embedded emulator, on a fresh machine, without a key.

It starts the emulator in-process with a few dozen Best Practice and Zedmed practices,
resolves each practice's PMS site id to its authoritative Halo site (some practices also
have a backup site that must not be queried), and asks every practice for the coming
week's appointments per practitioner, in its own SQL dialect, through ``fan_out``. A live
bar follows the fan-out's progress events; a table then shows each site's rows, time and
outcome, with totals and throughput: the rows and bytes that came back from Halo (counted
on the client's session), apart from the appointments the sites' SQL summarised into them.
``--faults`` lets the emulator misbehave (5xx, 429, sites offline or dropping mid-query,
failed uploads) to show retries and failures handled.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
import attrs
import click
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape as _escape
from rich.table import Table

from halo_async import FanOutLimits, PollPolicy, errors, models
from halo_async import _constants as C
from halo_async._retry import RetryPolicy
from halo_async.cli._connection import configure_logging, emulator_missing
from halo_async.cli._errors import run_async, without_site
from halo_async.cli._output import print_wide
from halo_async.cli._progress import FanOutMonitor
from halo_async.client import HaloClient
from halo_async.fanout import SiteOutcome

if TYPE_CHECKING:
    from halo_async.emulator import Emulator, SiteSpec

__all__ = [
    "DemoReport",
    "DemoSettings",
    "SiteResult",
    "demo_command",
    "demo_console",
    "print_report",
    "run_demo",
]

PMS_NAMES = {"BestPractice": "Best Practice", "Zedmed": "Zedmed"}

# The same question in each practice's dialect: T-SQL with three-part names for Best
# Practice (SQL Server), Firebird for Zedmed. Best Practice pads names with spaces.
QUERIES = {
    "BestPractice": """\
SELECT RTRIM(u.FIRSTNAME) AS Firstname, RTRIM(u.SURNAME) AS Surname,
       COUNT(*) AS Appointments, SUM(a.APPOINTMENTLENGTH) / 60 AS BookedMinutes
FROM BPSPatients.dbo.APPOINTMENTS a
JOIN BPSPatients.dbo.USERS u ON u.USERID = a.USERID
WHERE a.APPOINTMENTDATE >= CAST(GETDATE() AS date)
  AND a.APPOINTMENTDATE < DATEADD(day, 7, CAST(GETDATE() AS date))
  AND a.RECORDSTATUS = 1
GROUP BY u.FIRSTNAME, u.SURNAME
ORDER BY Appointments DESC""",
    "Zedmed": """\
SELECT d.FIRST_NAME AS Firstname, d.SURNAME AS Surname,
       COUNT(*) AS Appointments, SUM(a.DURATION_MINUTES) AS BookedMinutes
FROM APPOINTMENT a
JOIN DOCTOR d ON d.DOCTOR_ID = a.DOCTOR_ID
WHERE a.APPT_DATE >= CURRENT_DATE AND a.APPT_DATE < DATEADD(DAY, 7, CURRENT_DATE)
GROUP BY d.FIRST_NAME, d.SURNAME
ORDER BY 3 DESC""",
}

# Practice names: a suburb and a kind. The longest name fits the sites table at 120 columns.
_SUBURBS = (
    "Paddington", "Bondi", "Fitzroy", "Carlton", "New Farm", "Fremantle", "Glenelg",
    "Sandy Bay", "Parramatta", "Toowong", "Subiaco", "Unley", "Manly", "Brunswick", "Chermside",
    "Newtown", "Kingston", "Bulimba", "Norwood", "Hawthorn", "Coogee", "Ashgrove", "Belconnen",
    "Cronulla", "Kew", "Scarborough", "Prospect", "Balmain", "Northcote", "Geelong",
)  # fmt: skip
_KINDS = {
    "BestPractice": ("Family Medical", "Medical Centre", "General Practice", "Health Clinic"),
    "Zedmed": ("Medical Group", "Doctors", "Specialist Rooms", "Clinic"),
}
# A quarter of the practices run Zedmed, one in ten has a backup site on the same PMS id.
_ZEDMED_SHARE = 0.25
_BACKUP_SHARE = 0.1
# With --faults: the share of practices whose site is offline or unreachable all along, and
# the chances of each fault per request or query.
_DOWN_SHARE = 0.08
_SERVER_ERRORS = 0.03
_RATE_LIMITS = 0.05
_SITE_DROPS = 0.04
_UPLOAD_FAILURES = 0.04
# Patients per practice: enough for a realistic appointment book, little enough that a few
# dozen databases generate in seconds.
_PATIENTS = 1500
# Nothing in the demo should wait for minutes: queries give up queueing after 30 s, and
# the whole fan-out after 50 s.
_MAX_TIME_IN_QUEUE_MS = 30_000
_DEADLINE_S = 50.0
_RESOLVE_CONCURRENCY = 16
# Poll a little more eagerly than the library's default (which backs off to 5 s): a demo's
# bar should move as soon as a site finishes.
_DEMO_POLL = PollPolicy(initial_interval=0.2, max_interval=1.0)


@attrs.frozen
class DemoSettings:
    """What ``halo demo`` runs: ``sites`` practices, from ``seed``, at ``latency``."""

    sites: int = 40
    seed: int = 1
    latency: str = "realistic"
    faults: bool = False
    max_in_flight: int = 10


@attrs.frozen
class SiteResult:
    """One practice's answer: its site and the fan-out's outcome for it."""

    site: models.Site
    outcome: SiteOutcome

    @property
    def practice(self) -> str:
        """The practice's name."""
        meta = self.site.practice_metadata
        return (meta.practice_name if meta else None) or self.site.name or self.site.id

    @property
    def pms(self) -> str:
        """The practice management software, as people write it."""
        return PMS_NAMES.get(str(self.site.pms_type), str(self.site.pms_type))

    @property
    def appointments(self) -> int:
        """The appointments the practice has in the coming week."""
        return sum(int(_column(row, "appointments") or 0) for row in self.outcome.rows or ())


@attrs.define
class Traffic:
    """What the demo's client received from Halo: answers, and the bytes of their bodies."""

    requests: int = 0
    received_bytes: int = 0

    def trace_config(self) -> aiohttp.TraceConfig:
        """Counts them on an aiohttp session, as the bytes arrive."""
        config = aiohttp.TraceConfig()
        config.on_request_end.append(self._answered)
        config.on_response_chunk_received.append(self._received)
        return config

    async def _answered(self, *_: Any) -> None:
        self.requests += 1

    async def _received(
        self, _session: Any, _context: Any, params: aiohttp.TraceResponseChunkReceivedParams
    ) -> None:
        self.received_bytes += len(params.chunk)


@attrs.frozen
class DemoReport:
    """What the demo found: one result per practice queried, and how it went; ``traffic``
    is what the fan-out received from Halo."""

    settings: DemoSettings
    results: list[SiteResult]
    unresolved: list[tuple[str, BaseException]]
    fan_out_time: float
    traffic: Traffic = attrs.field(factory=Traffic)

    @property
    def ok(self) -> list[SiteResult]:
        """The practices that answered."""
        return [r for r in self.results if r.outcome.ok]

    @property
    def failed(self) -> list[SiteResult]:
        """The practices whose query failed."""
        return [r for r in self.results if not r.outcome.ok]


def demo_site_specs(settings: DemoSettings) -> list[SiteSpec]:
    """The emulated sites: ``settings.sites`` practices, some with a backup site.

    Deterministic for a seed. With faults, a few practices' sites are down from the start.
    """
    try:
        from halo_async.emulator import SiteSpec
    except ImportError as exc:
        raise emulator_missing(exc) from exc

    rng = random.Random(f"halo-demo:{settings.seed}")
    names = _PracticeNames(rng)
    specs: list[SiteSpec] = []
    for index in range(settings.sites):
        pms_type = "Zedmed" if rng.random() < _ZEDMED_SHARE else "BestPractice"
        pms_site_id = f"{rng.randrange(10, 99)}{index:04d}"
        availability = "online"
        if settings.faults and rng.random() < _DOWN_SHARE:
            availability = rng.choice(("offline", "unreachable"))
        spec = SiteSpec(
            pms_type=pms_type,
            pms_site_id=pms_site_id,
            availability=availability,
            patients=_PATIENTS,
            practice_name=names.next(pms_type),
        )
        if rng.random() < _BACKUP_SHARE:
            # A backup server on the same PMS id: listed by find-sites, refuses queries. It
            # is the same practice, so it carries the same name.
            backup = dataclasses.replace(spec, authoritative=False, availability="online")
            specs.extend([backup, spec] if rng.random() < 0.5 else [spec, backup])
        else:
            specs.append(spec)
    return specs


class _PracticeNames:
    """Practice names, each used once in a run: a suburb and a kind of practice, and a
    number after them once every pair of this PMS is taken."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._unused: dict[str, list[str]] = {}
        self._round: dict[str, int] = {}

    def next(self, pms_type: str) -> str:
        """A name not given before in this run."""
        unused = self._unused.get(pms_type)
        if not unused:
            unused = [f"{suburb} {kind}" for suburb in _SUBURBS for kind in _KINDS[pms_type]]
            self._rng.shuffle(unused)
            self._unused[pms_type] = unused
            self._round[pms_type] = self._round.get(pms_type, 0) + 1
        name = unused.pop()
        round_ = self._round[pms_type]
        return name if round_ == 1 else f"{name} {round_}"


def _column(row: dict[str, Any], name: str) -> Any:
    """A column by name, whatever its case (Firebird upper-cases unquoted aliases)."""
    for key, value in row.items():
        if key.lower() == name:
            return value
    return None


def _emulator(settings: DemoSettings, specs: Sequence[SiteSpec]) -> Emulator:
    try:
        from halo_async.emulator import Emulator, Faults
    except ImportError as exc:
        raise emulator_missing(exc) from exc
    faults = Faults(settings.seed)
    if settings.faults:
        faults.set(
            server_errors=_SERVER_ERRORS,
            rate_limits=_RATE_LIMITS,
            site_offline=_SITE_DROPS,
            upload_failures=_UPLOAD_FAILURES,
        )
    return Emulator(specs, seed=settings.seed, latency=settings.latency, faults=faults)


async def run_demo(
    settings: DemoSettings,
    console: Console,
    *,
    retry: RetryPolicy | None = None,
    poll: PollPolicy | None = None,
) -> DemoReport:
    """Run the demo, printing its progress on ``console``; return what it found.

    ``retry`` and ``poll`` replace the client's policies (tests pass ones that do not wait).
    """
    specs = demo_site_specs(settings)
    backups = sum(not spec.authoritative for spec in specs)
    practices = sorted(
        {
            (spec.pms_site_id or "", PMS_NAMES[spec.pms_type])
            for spec in specs
            if spec.authoritative
        },
        key=lambda practice: practice[0],
    )
    traffic = Traffic()
    async with (
        _emulator(settings, specs) as emu,
        _counted_session(traffic) as session,
        HaloClient(emu.api_key, base_url=emu.base_url, retry=retry, session=session) as halo,
    ):
        _print_intro(console, settings, specs, backups, emu.base_url)
        started = time.perf_counter()
        with console.status("Resolving PMS site ids to Halo sites..."):
            resolved, unresolved = await _resolve(halo, practices)
        resolve_time = time.perf_counter() - started
        console.print(
            f"[green]✓[/] Resolved {len(resolved)} practices to their authoritative Halo "
            f"sites in {resolve_time:.1f} s"
            + (f", {_count(backups, 'backup site')} passed over" if backups else "")
            + (f"; [red]{len(unresolved)} failed[/]" if unresolved else "")
        )
        console.print(
            "[bold]Query:[/] the coming week's appointments per practitioner "
            "(T-SQL for Best Practice, Firebird SQL for Zedmed)"
        )
        started = time.perf_counter()
        traffic.requests = traffic.received_bytes = 0  # the fan-out's, not the resolving's
        results = await _fan_out(halo, resolved, settings, console, poll or _DEMO_POLL)
        fan_out_time = time.perf_counter() - started
    return DemoReport(
        settings=settings,
        results=sorted(results, key=lambda r: (r.pms, r.practice)),
        unresolved=unresolved,
        fan_out_time=fan_out_time,
        traffic=traffic,
    )


def _counted_session(traffic: Traffic) -> aiohttp.ClientSession:
    """A session like the one HaloClient makes itself, whose answers ``traffic`` counts."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=C.CONNECTION_LIMIT, limit_per_host=0),
        headers={"User-Agent": C.USER_AGENT},
        trace_configs=[traffic.trace_config()],
    )


def _print_intro(
    console: Console,
    settings: DemoSettings,
    specs: Sequence[SiteSpec],
    backups: int,
    base_url: str,
) -> None:
    zedmed = sum(spec.pms_type == "Zedmed" and spec.authoritative for spec in specs)
    best_practice = len(specs) - backups - zedmed
    console.print(
        "[bold]halo demo[/]: one query fanned out across a local emulator of Halo Cloud "
        "(no key, no network)"
    )
    console.print(
        f"[green]✓[/] Emulator at {base_url}: {len(specs)} Halo sites for "
        f"{best_practice} Best Practice and {zedmed} Zedmed practices "
        f"({_count(backups, 'backup')}), {settings.latency} latency"
        + (", [yellow]faults on[/]" if settings.faults else "")
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


async def _resolve(
    halo: HaloClient, practices: Sequence[tuple[str, str]]
) -> tuple[list[models.Site], list[tuple[str, BaseException]]]:
    slots = asyncio.Semaphore(_RESOLVE_CONCURRENCY)

    async def resolve(pms_site_id: str, pms_name: str) -> models.Site | BaseException:
        async with slots:
            try:
                return await halo.resolve_site(pms_site_id, pms_name)
            except errors.HaloError as exc:
                return exc

    answers = await asyncio.gather(*(resolve(*practice) for practice in practices))
    resolved = [a for a in answers if isinstance(a, models.Site)]
    unresolved = [
        (practice[0], a)
        for practice, a in zip(practices, answers, strict=True)
        if isinstance(a, BaseException)
    ]
    return resolved, unresolved


async def _fan_out(
    halo: HaloClient,
    sites: Sequence[models.Site],
    settings: DemoSettings,
    console: Console,
    poll: PollPolicy,
) -> list[SiteResult]:
    groups: dict[str, list[models.Site]] = {}
    for site in sites:
        groups.setdefault(str(site.pms_type), []).append(site)
    results: list[SiteResult] = []
    with FanOutMonitor(console, len(sites), description="Fan-out") as monitor:
        report_line = _plain_reporter(console, len(sites)) if not monitor.live else None

        async def run(pms_type: str, group: list[models.Site]) -> None:
            share = max(1, round(settings.max_in_flight * len(group) / max(1, len(sites))))
            async for item in halo.fan_out(
                QUERIES[pms_type],
                [site.id for site in group],
                limits=FanOutLimits(max_in_flight=share),
                max_time_in_queue=_MAX_TIME_IN_QUEUE_MS,
                deadline=_DEADLINE_S,
                poll=poll,
                on_event=monitor.listener(pms_type),
            ):
                assert isinstance(item, SiteOutcome)
                result = SiteResult(group[item.index], item)
                results.append(result)
                if report_line is not None:
                    report_line(result)

        async with asyncio.TaskGroup() as tasks:
            for pms_type, group in groups.items():
                tasks.create_task(run(pms_type, group))
    return results


def _plain_reporter(console: Console, total: int) -> Callable[[SiteResult], None]:
    """Off a terminal: one line per site as it finishes, instead of a live bar."""
    done = 0

    def report(result: SiteResult) -> None:
        nonlocal done
        done += 1
        outcome = result.outcome
        what = (
            f"{outcome.row_count} rows in {outcome.elapsed:.1f} s"
            if outcome.ok
            else f"failed: {_short_error(outcome.error, result.site.id)}"
        )
        console.print(f"  [{done}/{total}] {result.practice}: {what}", markup=False)

    return report


def _short_error(error: BaseException | None, site_id: str | None = None) -> str:
    """The error's class and the server's words, without the ids the table already shows."""
    if error is None:
        return ""
    message: str | None = None
    if isinstance(error, errors.QueryFailedError):
        details = error.details
        message = (details.error_message if details else None) or error.status
    elif isinstance(error, errors.APIError):
        message = error.message
    elif isinstance(error, errors.SubmissionOutcomeUnknownError):
        message = "the POST's outcome is unknown, so it was not resubmitted"
    message = " ".join((message or str(error)).split())
    if site_id is not None:
        message = without_site(message, site_id)
    return f"{type(error).__name__}: {message}"


def print_report(console: Console, report: DemoReport) -> None:
    """The summary: a row per practice (rows, time, status), why each failure failed,
    totals, throughput, highlights."""
    console.print()
    print_wide(console, _fitting_sites_table(console, report))
    for result in report.failed:
        reason = _escape(_short_error(result.outcome.error, result.site.id))
        console.print(f"[red]✗[/] {_escape(result.practice)}: {reason}")
    for pms_site_id, error in report.unresolved:
        console.print(
            f"[red]Not resolved[/]: PMS site id {pms_site_id}: {_escape(_short_error(error))}"
        )
    _print_throughput(console, report)
    _print_busiest(console, report)


# The sites table's columns, the first that fits the terminal: every column, then without
# the ones a reader misses least. Off a terminal every column is printed, as wide as needed.
_COLUMN_SETS: tuple[tuple[str, ...], ...] = (
    ("Practice", "PMS", "Halo site", "Rows", "Appts", "Pages", "Time", "Status"),
    ("Practice", "PMS", "Halo site", "Rows", "Appts", "Time", "Status"),
    ("Practice", "PMS", "Halo site", "Appts", "Time", "Status"),
)


def _fitting_sites_table(console: Console, report: DemoReport) -> Table:
    table = _sites_table(report, _COLUMN_SETS[0])
    if not console.is_terminal:
        return table
    for columns in _COLUMN_SETS:
        table = _sites_table(report, columns)
        unbounded = console.options.update_width(10_000)
        if console.measure(table, options=unbounded).maximum <= console.width:
            break
    return table


def _sites_table(report: DemoReport, columns: Sequence[str]) -> Table:
    """One line per practice; a failure's reason is listed under the table, not in it."""
    ok = report.ok
    footers = {
        "Practice": f"{len(report.results)} practices",
        "Rows": str(sum(r.outcome.row_count for r in ok)),
        "Appts": str(sum(r.appointments for r in ok)),
        "Pages": str(sum(r.outcome.page_count for r in ok)),
        "Time": f"{report.fan_out_time:.1f} s",
        "Status": f"[green]{len(ok)} ok[/]",
    }
    table = Table(title="Sites", show_footer=True, highlight=False, title_justify="left")
    for name in columns:
        justify = "right" if name in ("Rows", "Appts", "Pages", "Time") else "left"
        # Nothing is cut or folded mid-word: a practice name wraps between its words.
        table.add_column(
            name,
            footer=footers.get(name, ""),
            justify=justify,  # type: ignore[arg-type]
            no_wrap=name != "Practice",
            min_width=_longest_word(report) if name == "Practice" else None,
        )
    for result in report.results:
        cells = _site_cells(result)
        table.add_row(*(cells[name] for name in columns))
    return table


def _site_cells(result: SiteResult) -> dict[str, str]:
    outcome = result.outcome
    return {
        "Practice": _escape(result.practice),
        "PMS": result.pms,
        "Halo site": result.site.id,
        "Rows": str(outcome.row_count),
        "Appts": str(result.appointments) if outcome.ok else "",
        "Pages": str(outcome.page_count),
        "Time": f"{outcome.elapsed:.1f} s",
        "Status": "[green]ok[/]" if outcome.ok else "[red]failed[/]",
    }


def _longest_word(report: DemoReport) -> int:
    return max((len(word) for r in report.results for word in r.practice.split()), default=8)


def _print_throughput(console: Console, report: DemoReport) -> None:
    seconds = max(report.fan_out_time, 1e-9)
    times = [r.outcome.elapsed for r in report.ok]
    line = (
        f"[bold]Totals[/]: {len(report.results)} sites in {report.fan_out_time:.1f} s "
        f"({len(report.results) / seconds:.1f} sites/s); "
        f"{len(report.ok)} ok, {len(report.failed)} failed"
    )
    if times:
        line += f"; per site median {statistics.median(times):.1f} s, slowest {max(times):.1f} s"
    console.print(line)
    console.print(_moved(report, seconds))


def _moved(report: DemoReport, seconds: float) -> str:
    """What came back from Halo, and how fast. The query aggregates at the sites, so its
    few summary rows stand for many more appointments: those are named, never counted as
    rows moved."""
    rows = sum(r.outcome.row_count for r in report.ok)
    received = report.traffic.received_bytes
    return (
        f"[bold]Moved[/]: {rows} result rows, {_size(received)} received from Halo in "
        f"{report.traffic.requests} requests ({rows / seconds:.0f} rows/s, "
        f"{_size(received / seconds)}/s); the rows summarise "
        f"{sum(r.appointments for r in report.ok)} appointments, counted at the sites"
    )


def _size(size: float) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.1f} KB"


def _print_busiest(console: Console, report: DemoReport) -> None:
    practitioners = [
        (int(_column(row, "appointments") or 0), row, result)
        for result in report.ok
        for row in result.outcome.rows or ()
    ]
    if not practitioners:
        return
    practitioners.sort(key=lambda item: item[0], reverse=True)
    table = Table(title="Busiest practitioners this week", highlight=False, title_justify="left")
    for name, justify in (
        ("Practitioner", "left"),
        ("Practice", "left"),
        ("Appointments", "right"),
        ("Booked hours", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for count, row, result in practitioners[:5]:
        name = f"{_column(row, 'firstname') or ''} {_column(row, 'surname') or ''}".strip()
        minutes = int(_column(row, "bookedminutes") or 0)
        table.add_row(_escape(name), _escape(result.practice), str(count), f"{minutes / 60:.1f}")
    console.print()
    print_wide(console, table)


def _configure_demo_logging(console: Console, *, faults: bool, debug: bool) -> None:
    """Retries are part of the show with faults on: log them above the progress bar."""
    handler: logging.Handler
    if console.is_terminal:
        handler = RichHandler(console=console, show_time=debug, show_path=False, markup=False)
    else:
        handler = logging.StreamHandler(console.file)
        handler.setFormatter(logging.Formatter("  %(levelname)s %(message)s"))
    configure_logging(
        debug=debug, level=logging.INFO if faults else logging.WARNING, handler=handler
    )


_DEFAULTS = DemoSettings()


def demo_console(**options: Any) -> Console:
    """The demo's console. On a terminal, lines wrap between words at its width (left to
    the terminal, they would break inside one); in a pipe or a log they are not wrapped."""
    console = Console(**{"highlight": False, **options})
    console.soft_wrap = not console.is_terminal
    return console


@click.command("demo")
@click.option(
    "--sites",
    type=click.IntRange(1, 500),
    default=_DEFAULTS.sites,
    show_default=True,
    help="Practices to emulate and query (about one in ten also gets a backup site).",
)
@click.option(
    "--seed", type=int, default=_DEFAULTS.seed, show_default=True, help="Seed of the practices."
)
@click.option(
    "--latency",
    type=click.Choice(("zero", "realistic")),
    default=_DEFAULTS.latency,
    show_default=True,
    help="Simulated latency of each query phase (queueing, execution, page uploads).",
)
@click.option(
    "--faults",
    is_flag=True,
    help="Let the emulator misbehave: 5xx and 429 answers, sites offline or dropping "
    "mid-query, failed uploads. Watch the retries; failures show in the table.",
)
@click.option(
    "--max-in-flight",
    type=click.IntRange(1, 1000),
    default=_DEFAULTS.max_in_flight,
    show_default=True,
    help="Queries running at once across all sites.",
)
@click.option("--debug", is_flag=True, help="Log every request (the key is redacted).")
def demo_command(
    sites: int, seed: int, latency: str, faults: bool, max_in_flight: int, debug: bool
) -> None:
    """Fan a query out across an embedded emulator of Best Practice and Zedmed practices.

    Needs no key and no network: the emulator runs in this process. Exits 0 when the demo
    ran, even when some sites failed (with --faults they are meant to).
    """
    settings = DemoSettings(sites, seed, latency, faults, max_in_flight)
    console = demo_console()
    _configure_demo_logging(console, faults=faults, debug=debug)
    report = run_async(run_demo(settings, console))
    print_report(console, report)
