"""The ``halo`` command against the emulator (zero latency), as a user runs it.

Commands that talk to a Halo run through click's CliRunner in a worker thread, against an
emulator served by the test's own event loop over real sockets (``--base-url``), or against
the emulator they embed themselves (``--emulator``). Nothing sleeps for real seconds: the
emulator answers at once, and the polls in between are a fraction of a second.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import re
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from halo_async import PollPolicy, RetryPolicy
from halo_async.cli import cli
from halo_async.cli._demo import DemoSettings, demo_site_specs, print_report, run_demo
from halo_async.emulator import Emulator, SiteSpec
from tests.support import no_sleep

GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
PATIENTS_SQL = "SELECT TOP 5 InternalID, Firstname, Surname FROM BPS_Patients ORDER BY InternalID"

# Two Best Practice practices, one of them with a backup site on the same PMS id, and a
# Zedmed practice (whose schema has no BPS_Patients).
SITES = [
    SiteSpec(pms_type="BestPractice", pms_site_id="4242", authoritative=False, patients=50),
    SiteSpec(pms_type="BestPractice", pms_site_id="4242", patients=50),
    SiteSpec(pms_type="BestPractice", pms_site_id="5151", patients=50),
    SiteSpec(pms_type="Zedmed", pms_site_id="7777", patients=50),
]


@pytest.fixture(autouse=True)
def restore_halo_logger() -> Iterator[None]:
    """The CLI points the halo_async logger at its own stderr; put it back for other tests."""
    logger = logging.getLogger("halo_async")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


def run(args: Sequence[str], env: dict[str, str | None] | None = None) -> Result:
    """``halo ARGS`` in this thread; HALO_* variables unset unless ``env`` sets them."""
    environment: dict[str, str | None] = {"HALO_API_KEY": None, "HALO_BASE_URL": None}
    environment.update(env or {})
    return CliRunner().invoke(cli, list(args), env=environment, catch_exceptions=False)


async def run_against(emulator: Emulator, args: Sequence[str]) -> Result:
    """``halo ARGS`` against ``emulator``, key and URL from the environment as users set them.

    The command runs its own event loop, so it runs in a worker thread while this test's
    loop keeps serving the emulator.
    """
    env: dict[str, str | None] = {
        "HALO_API_KEY": emulator.api_key,
        "HALO_BASE_URL": emulator.base_url,
    }
    return await asyncio.to_thread(run, args, env)


def site_id(emulator: Emulator, pms_site_id: str) -> str:
    """The GUID of the authoritative site of a PMS id."""
    return next(s.id for s in emulator.sites if s.pms_site_id == pms_site_id and s.authoritative)


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


# -- halo demo --------------------------------------------------------------------------------


async def authoritative_demo_sites(settings: DemoSettings) -> list[tuple[str, str]]:
    """(GUID, practice name) of every practice the demo queries, from the same specs."""
    emulator = Emulator(demo_site_specs(settings), seed=settings.seed)
    try:
        return [(s.id, s.practice_name) for s in emulator.sites if s.authoritative]
    finally:
        await emulator.close()


def table_rows(output: str) -> list[list[str]]:
    """The body rows of the demo's site table: the lines that carry a Halo site GUID."""
    return [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in output.splitlines()
        if GUID.search(line) and "│" in line
    ]


def test_demo_names_every_site_with_its_rows_and_totals_and_exits_0() -> None:
    settings = DemoSettings(sites=8, seed=1)
    expected = asyncio.run(authoritative_demo_sites(settings))

    result = run(["demo", "--latency", "zero", "--sites", "8"])

    assert result.exit_code == 0, result.output
    rows = table_rows(result.stdout)
    assert sorted(row[2] for row in rows) == sorted(guid for guid, _ in expected)
    by_guid = {row[2]: row for row in rows}
    for guid, practice in expected:
        assert by_guid[guid][0] == practice
        assert by_guid[guid][-1] == "ok"
        assert int(by_guid[guid][3]) > 0, "every practice has practitioners with appointments"
    total_rows = sum(int(row[3]) for row in rows)
    footer = next(line for line in result.stdout.splitlines() if "│ 8 practices" in line)
    assert str(total_rows) in footer
    assert "8 ok" in footer
    assert "Totals: 8 sites in" in result.stdout
    assert "rows/s" in result.stdout
    assert "Busiest practitioners this week" in result.stdout
    # Off a terminal there is no live bar, one plain line per finished site instead.
    assert len(re.findall(r"\[\d/8\]", result.stdout)) == 8


def test_demo_throughput_counts_what_was_moved_not_the_summaries() -> None:
    # The demo's SQL aggregates at the sites: a few summary rows per practice stand for
    # thousands of appointments. Its throughput is what came back from Halo (rows and
    # bytes), and the appointments are named as summarised, not as moved.
    result = run(["demo", "--latency", "zero", "--sites", "5"])

    assert result.exit_code == 0, result.output
    footer = next(line for line in result.stdout.splitlines() if "│ 5 practices" in line)
    returned, appointments = (int(cell) for cell in footer.split("│")[4:6])
    assert "5 ok" in footer
    moved = re.search(
        r"Moved: (\d+) result rows, ([\d.]+) (KB|MB) received from Halo in (\d+) requests "
        r"\((\d+) rows/s, ([\d.]+) (KB|MB)/s\)",
        result.stdout,
    )
    assert moved is not None, result.stdout
    assert int(moved[1]) == returned
    assert float(moved[2]) > 0
    assert int(moved[4]) >= 3 * 5, "at least a create, a poll and a page per site"
    assert f"summarise {appointments} appointments" in result.stdout
    totals = next(line for line in result.stdout.splitlines() if line.startswith("Totals:"))
    assert "rows/s" not in totals, "the totals line counts sites, the Moved line rows"


# The demo's in-process emulator runs on the test's loop: polls that never sleep (no_sleep)
# starve it, and a 40-site demo then took ~50 s of spinning (100,000 status requests) and
# ran into its own fan-out deadline on a loaded machine. Polls 10-50 ms apart let it work:
# the same demo takes ~3 s and some 700 requests.
DEMO_POLL = PollPolicy(initial_interval=0.01, max_interval=0.05, jitter=False)


async def test_demo_with_faults_shows_failed_sites_in_the_table() -> None:
    # Seed 8 puts two practices' sites offline from the start: those must fail, the rest
    # still answer; retries are not slept.
    settings = DemoSettings(sites=12, seed=8, latency="zero", faults=True)
    down = [s for s in demo_site_specs(settings) if s.availability != "online"]
    assert down, "the seed is chosen to take some sites down"
    console = Console(file=io.StringIO(), width=200)

    report = await run_demo(
        settings,
        console,
        retry=RetryPolicy(sleep=no_sleep, max_attempts=8),
        poll=DEMO_POLL,
    )
    print_report(console, report)

    assert len(report.results) + len(report.unresolved) == 12
    down_ids = {s.pms_site_id for s in down}
    for result in report.results:
        meta = result.site.practice_metadata
        if meta is not None and meta.practice_management_site_id in down_ids:
            assert not result.outcome.ok
            assert "SiteOfflineError" in type(result.outcome.error).__name__
    output = console.file.getvalue()  # type: ignore[attr-defined]
    assert f"{len(report.failed)} failed" in output
    assert "SiteOfflineError" in output
    assert len(report.ok) > 0


def test_demo_rejects_an_unknown_latency_preset() -> None:
    result = run(["demo", "--latency", "slow"])

    assert result.exit_code == 2
    assert "'slow' is not one of 'zero', 'realistic'" in result.stderr


# -- halo query -------------------------------------------------------------------------------


@pytest.mark.halo_emulator(sites=SITES, seed=5)
async def test_query_jsonl_streams_parseable_rows(halo_emulator: Emulator) -> None:
    site = site_id(halo_emulator, "5151")

    result = await run_against(halo_emulator, ["query", site, PATIENTS_SQL, "--format", "jsonl"])

    assert result.exit_code == 0, result.stderr
    rows = jsonl(result.stdout)
    assert [row["InternalID"] for row in rows] == [1, 2, 3, 4, 5]
    assert set(rows[0]) == {"InternalID", "Firstname", "Surname"}
    assert result.stderr == ""


@pytest.mark.halo_emulator(sites=SITES, seed=5)
async def test_query_csv_has_a_header_then_the_rows(halo_emulator: Emulator) -> None:
    site = site_id(halo_emulator, "5151")

    result = await run_against(halo_emulator, ["query", site, PATIENTS_SQL, "--format", "csv"])

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "InternalID,Firstname,Surname"
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [row["InternalID"] for row in rows] == ["1", "2", "3", "4", "5"]
    assert all(row["Surname"] for row in rows)


@pytest.mark.halo_emulator(sites=SITES, seed=5)
async def test_query_table_shows_columns_rows_and_count(halo_emulator: Emulator) -> None:
    site = site_id(halo_emulator, "5151")
    expected = await run_against(halo_emulator, ["query", site, PATIENTS_SQL, "--format", "jsonl"])
    surnames = [row["Surname"] for row in jsonl(expected.stdout)]

    result = await run_against(halo_emulator, ["query", site, PATIENTS_SQL])

    assert result.exit_code == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if "InternalID" in line)
    assert "Firstname" in header
    assert "Surname" in header
    for surname in surnames:
        assert surname in result.stdout
    assert result.stdout.rstrip().endswith("5 rows")


@pytest.mark.halo_emulator(sites=SITES, seed=5)
async def test_immediate_query_with_a_typed_parameter(halo_emulator: Emulator) -> None:
    site = site_id(halo_emulator, "5151")
    sql = "SELECT Surname FROM BPS_Patients WHERE Surname LIKE @s ORDER BY InternalID"

    result = await run_against(
        halo_emulator,
        ["query", site, sql, "--immediate", "--param", "s=NVarChar:%A%", "--format", "jsonl"],
    )

    assert result.exit_code == 0, result.stderr
    surnames = [row["Surname"] for row in jsonl(result.stdout)]
    assert surnames, "some patients' surnames have an A"  # any 50 patients do
    assert all("A" in surname.upper() for surname in surnames)


@pytest.mark.halo_emulator(sites=SITES, seed=5)
async def test_query_by_pms_site_id_uses_the_authoritative_site(halo_emulator: Emulator) -> None:
    result = await run_against(
        halo_emulator,
        ["query", "4242", "SELECT COUNT(*) AS N FROM PATIENTS", "--pms", "bp", "--format", "jsonl"],
    )

    assert result.exit_code == 0, result.stderr
    assert jsonl(result.stdout) == [{"N": 50}]


@pytest.mark.halo_emulator(sites=SITES, seed=5)
@pytest.mark.parametrize("mode", [[], ["--immediate"]], ids=["async", "immediate"])
async def test_bad_sql_is_one_error_line_naming_the_site(
    halo_emulator: Emulator, mode: list[str]
) -> None:
    site = site_id(halo_emulator, "5151")

    result = await run_against(halo_emulator, ["query", site, "SELECT * FROM NO_SUCH_TABLE", *mode])

    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("halo: error: query failed: Invalid object name 'NO_SUCH_TABLE'")
    assert "mssql 208" in lines[0]
    assert site in lines[0]
    assert lines[0].endswith("fix the SQL and run it again")


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("id=Int:abc", "parameter @id: 'abc' is not a valid Int (expected a whole number)"),
        ("id=Integer:5", "parameter @id: 'Integer' is not a parameter type; use one of BigInt"),
        ("id", "'id' is not NAME=TYPE:VALUE"),
        ("1d=Int:5", "'1d' is not a parameter name"),
        (
            "@when=Date:31/12/2024",
            "parameter @when: '31/12/2024' is not a valid Date (expected a date YYYY-MM-DD)",
        ),
    ],
)
def test_param_errors_say_what_is_wrong_before_anything_is_sent(param: str, message: str) -> None:
    # No key and no emulator: parsing fails first, so nothing can have been sent.
    result = run(["query", "7907e4b8-3f80-4323-940f-1ed129c4af74", "SELECT 1", "--param", param])

    assert result.exit_code == 2
    assert f"Invalid value for '--param': {message}" in result.stderr


def test_query_without_a_key_says_how_to_give_one() -> None:
    result = run(["query", "7907e4b8-3f80-4323-940f-1ed129c4af74", "SELECT 1"])

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "halo: error: no API key: pass --api-key or set $HALO_API_KEY (keys come from the "
        "Halo Integrator Portal), or try it locally with --emulator"
    ]


def test_query_site_must_be_a_guid_unless_pms_is_given() -> None:
    result = run(["query", "4242", "SELECT 1", "--emulator"])

    assert result.exit_code == 2
    assert "'4242' is not a Halo GUID; for a PMS site id add --pms NAME" in result.stderr


@pytest.mark.halo_emulator(sites=SITES, seed=5)
async def test_debug_logs_requests_without_the_key(halo_emulator: Emulator) -> None:
    site = site_id(halo_emulator, "5151")

    result = await run_against(
        halo_emulator, ["query", site, PATIENTS_SQL, "--format", "jsonl", "--debug"]
    )

    assert result.exit_code == 0
    assert f"POST {halo_emulator.base_url}/integrator/sites/{site}/queries/async -> 201" in (
        result.stderr
    )
    assert halo_emulator.api_key not in result.stderr
    assert halo_emulator.api_key not in result.stdout


def test_query_on_an_embedded_emulator() -> None:
    ids = run(["emulator", "sites", "--sites", "3", "--seed", "2", "--ids"]).stdout.split()
    assert len(ids) >= 1

    result = run(
        [
            "query", ids[0], "SELECT 1 AS one", "--format", "jsonl",
            "--emulator", "--emulator-sites", "3", "--emulator-seed", "2",
        ]
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert jsonl(result.stdout) == [{"one": 1}]


# -- halo sites ------------------------------------------------------------------------------


@pytest.mark.halo_emulator(sites=SITES, seed=5)
async def test_sites_find_lists_every_site_and_marks_the_authoritative_one(
    halo_emulator: Emulator,
) -> None:
    result = await run_against(
        halo_emulator, ["sites", "find", "4242", "--pms", "Best Practice", "--format", "jsonl"]
    )

    assert result.exit_code == 0, result.stderr
    rows = jsonl(result.stdout)
    assert {row["id"] for row in rows} == {
        s.id for s in halo_emulator.sites if s.pms_site_id == "4242"
    }
    chosen = [row for row in rows if row["use"] == "*"]
    assert [row["id"] for row in chosen] == [site_id(halo_emulator, "4242")]
    assert chosen[0]["authoritative"] is True
    assert all(row["pms_site_id"] == "4242" for row in rows)


@pytest.mark.halo_emulator(sites=SITES, seed=5)
async def test_sites_find_table_and_unknown_id(halo_emulator: Emulator) -> None:
    table = await run_against(halo_emulator, ["sites", "find", "7777", "--pms", "zedmed"])
    missing = await run_against(halo_emulator, ["sites", "find", "0000", "--pms", "zedmed"])

    assert table.exit_code == 0
    assert site_id(halo_emulator, "7777") in table.stdout
    assert "Zedmed" in table.stdout
    assert missing.exit_code == 1
    assert missing.stderr.splitlines() == [
        "halo: error: no Halo site for zedmed site id '0000' (is the practice paired with your "
        "integration, and is that its PMS site id?)"
    ]


@pytest.mark.halo_emulator(sites=SITES, seed=5)
async def test_sites_status(halo_emulator: Emulator) -> None:
    site = site_id(halo_emulator, "5151")
    halo_emulator.set_site_offline(site)

    result = await run_against(halo_emulator, ["sites", "status", site, "--format", "jsonl"])

    assert result.exit_code == 0, result.stderr
    [row] = jsonl(result.stdout)
    assert row["id"] == site
    assert row["availability"] == "offline"
    assert row["catalogues"] == "Patients (default)"


# -- halo fan-out -----------------------------------------------------------------------------


@pytest.mark.halo_emulator(sites=SITES, seed=5)
async def test_fan_out_streams_rows_per_site_and_reports_each_failure(
    halo_emulator: Emulator, tmp_path: Any
) -> None:
    bp = [site_id(halo_emulator, "4242"), site_id(halo_emulator, "5151")]
    zedmed = site_id(halo_emulator, "7777")
    sites_file = tmp_path / "sites.txt"
    sites_file.write_text(f"# practices\n{bp[0]}\n\n{bp[1]}  # second\n{zedmed}\n")

    result = await run_against(
        halo_emulator,
        ["fan-out", PATIENTS_SQL, "--sites-file", str(sites_file), "--format", "jsonl"],
    )

    assert result.exit_code == 1
    rows = jsonl(result.stdout)
    assert sorted({row["halo_site_id"] for row in rows}) == sorted(bp)
    assert len(rows) == 10
    lines = result.stderr.splitlines()
    assert len(lines) == 3, result.stderr
    assert lines[0].startswith("halo: querying 3 sites")
    assert lines[1].startswith(f"halo: site {zedmed} failed: query failed:")
    assert "fbsql -104" in lines[1]  # Firebird stops at TOP, before the table
    assert lines[2].startswith("halo: error: 3 sites: 2 ok, 1 failed; 10 rows in")


@pytest.mark.halo_emulator(sites=SITES, seed=5)
async def test_fan_out_csv_all_ok(halo_emulator: Emulator, tmp_path: Any) -> None:
    sites_file = tmp_path / "sites.txt"
    sites_file.write_text(f"{site_id(halo_emulator, '4242')}\n{site_id(halo_emulator, '5151')}\n")

    result = await run_against(
        halo_emulator,
        ["fan-out", "SELECT COUNT(*) AS N FROM PATIENTS", "--sites-file", str(sites_file),
         "--format", "csv"],
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == "halo_site_id,N"
    assert len(result.stdout.splitlines()) == 3
    assert result.stderr.splitlines()[-1].startswith("halo: 2 sites: 2 ok, 0 failed; 2 rows in")


def test_fan_out_sites_file_errors_name_the_line(tmp_path: Any) -> None:
    sites_file = tmp_path / "sites.txt"
    sites_file.write_text("# header\n7907e4b8-3f80-4323-940f-1ed129c4af74\nnot-a-guid\n")

    result = run(["fan-out", "SELECT 1", "--sites-file", str(sites_file), "--emulator"])

    assert result.exit_code == 2
    assert "line 3: 'not-a-guid' is not a Halo GUID" in result.stderr


# -- halo emulator, python -m halo_async, the lean core ------------------------------------------


async def test_emulator_sites_lists_what_the_emulator_serves() -> None:
    result = await asyncio.to_thread(
        run, ["emulator", "sites", "--sites", "6", "--seed", "4", "--format", "jsonl"]
    )
    emulator = Emulator(sites=6, seed=4)
    try:
        expected = [(s.id, s.pms_site_id, s.authoritative) for s in emulator.sites]
    finally:
        await emulator.close()

    rows = jsonl(result.stdout)
    assert [(r["id"], r["pms_site_id"], r["authoritative"]) for r in rows] == expected


def test_emulator_serve_prints_where_and_stops_on_ctrl_c() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "halo_async", "emulator", "serve", "--port", "0", "--sites", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert re.match(r"Halo emulator serving 2 sites at http://127\.0\.0\.1:\d+$", first)
        while "Ctrl-C" not in process.stdout.readline():
            pass
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_python_dash_m_runs_the_same_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "halo_async", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )

    for command in ("demo", "query", "fan-out", "sites", "emulator"):
        assert re.search(rf"^\s+{command}\s", result.stdout, re.MULTILINE)


def test_importing_the_sdk_loads_neither_click_nor_rich() -> None:
    code = (
        "import sys, halo_async, halo_async.client, halo_async.jobs, halo_async.fanout\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('click', 'rich')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )

    assert result.stdout.strip() == "[]"
