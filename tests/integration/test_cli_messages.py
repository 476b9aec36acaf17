"""What the ``halo`` command says when something is wrong: about what the user got wrong,
in the names the user typed, once, and with the URL that was really requested."""

from __future__ import annotations

import asyncio
import io
import re

import pytest
from click.testing import CliRunner

from halo_async import RetryPolicy
from halo_async.cli import cli
from halo_async.cli._demo import DemoSettings, demo_console, demo_site_specs, print_report, run_demo
from halo_async.emulator import Emulator
from tests.integration.test_cli import (  # the CLI tests' helpers and logger fixture
    DEMO_POLL,
    SITES,
    restore_halo_logger,  # noqa: F401
    run,
    run_against,
    site_id,
)
from tests.support import no_sleep

GUID = "7907e4b8-3f80-4323-940f-1ed129c4af74"


def one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("halo: error: ")
    assert not re.search(r"[.?!:];", lines[0]), f"a punctuation artefact in {lines[0]!r}"
    return lines[0]


# -- hints about what the user got wrong -------------------------------------------------------


def test_a_refused_http_url_does_not_suggest_the_flag_already_passed() -> None:
    result = run(["sites", "status", GUID, "--api-key", "k", "--base-url", "http://example.com"])

    assert result.exit_code == 1
    line = one_error_line(result.stderr)
    assert "refusing plain http:// for 'example.com'" in line
    assert "pass --api-key/--base-url" not in line
    assert "HALO_API_KEY" not in line


def test_a_bad_base_url_is_named_as_the_flag_or_variable_it_came_from() -> None:
    from_flag = run(["sites", "status", GUID, "--api-key", "k", "--base-url", "ftp://x"])
    from_env = run(["sites", "status", GUID, "--api-key", "k"], env={"HALO_BASE_URL": "ftp://x"})

    assert "--base-url must be an http(s) URL" in one_error_line(from_flag.stderr)
    assert "$HALO_BASE_URL must be an http(s) URL" in one_error_line(from_env.stderr)
    assert "base_url" not in from_flag.stderr + from_env.stderr


def test_an_unknown_pms_site_id_says_so_once() -> None:
    result = run(["query", "4242", "SELECT 1", "--pms", "Best Practice", "--emulator"])

    assert result.exit_code == 1
    line = one_error_line(result.stderr)
    assert "'4242'" in line
    assert line.count("paired") == 1, line


@pytest.mark.halo_emulator(sites=SITES, seed=5)
async def test_a_404_from_a_base_url_ending_in_integrator_names_the_full_url(
    halo_emulator: Emulator,
) -> None:
    site = site_id(halo_emulator, "4242")
    base = f"{halo_emulator.base_url}/integrator"
    env: dict[str, str | None] = {"HALO_API_KEY": halo_emulator.api_key, "HALO_BASE_URL": base}

    result = await asyncio.to_thread(run, ["sites", "status", site, "--debug"], env)

    assert result.exit_code == 1
    requested = f"{base}/integrator/sites/{site}"
    error = result.stderr.splitlines()[-1]
    assert error.startswith(f"halo: error: GET {requested} -> 404")
    assert f"$HALO_BASE_URL={halo_emulator.base_url}" in error, error
    assert "Halo GUID" not in error, "the GUID was right; the base URL was not"
    assert f"GET {requested} -> 404" in result.stderr.splitlines()[0], "--debug: the full URL"
    assert halo_emulator.api_key not in result.stderr + result.stdout


@pytest.mark.halo_emulator(sites=SITES, seed=5)
async def test_debug_and_errors_show_the_full_url(halo_emulator: Emulator) -> None:
    site = site_id(halo_emulator, "4242")

    result = await run_against(halo_emulator, ["sites", "status", site, "--debug"])

    assert result.exit_code == 0, result.stderr
    assert f"GET {halo_emulator.base_url}/integrator/sites/{site} -> 200" in result.stderr
    assert halo_emulator.api_key not in result.stderr


def test_query_help_shows_its_example_unwrapped() -> None:
    result = CliRunner().invoke(cli, ["query", "--help"], terminal_width=80)

    lines = [line.strip() for line in result.output.splitlines()]
    assert "halo query 3f91c577-20a8-467b-8991-b96dfb90e8c6 \\" in lines
    assert '"SELECT TOP 5 Firstname, Surname FROM BPS_Patients WHERE Surname LIKE @s" \\' in lines
    assert '--param "@s=NVarChar:Smi%" --format jsonl' in lines


# -- the names the user typed -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says", "not_says"),
    [
        (["sites", "find", "12345", "--pms", "Best Practies"], "--pms must be one of", "pms_name"),
        (["sites", "status", "nope"], "SITE must be a UUID", "site_id"),
        (["sites", "status", "4242", "--pms", "Nope"], "--pms must be one of", "pms_name"),
        (["query", "4242", "SELECT 1", "--pms", "Nope"], "--pms must be one of", "pms_name"),
        (["sites", "find", " ", "--pms", "Zedmed"], "PMS_SITE_ID must", "pms_site_id"),
    ],
)
def test_argument_errors_name_the_flag_or_argument_typed(
    args: list[str], says: str, not_says: str
) -> None:
    result = run([*args, "--emulator"])

    assert result.exit_code == 1
    line = one_error_line(result.stderr)
    assert says in line
    assert not_says not in line


@pytest.mark.halo_emulator(sites=SITES, seed=5)
async def test_param_values_are_stripped_like_names_and_types(halo_emulator: Emulator) -> None:
    site = site_id(halo_emulator, "4242")
    sql = "SELECT @s AS s, @n AS n"

    result = await run_against(
        halo_emulator,
        ["query", site, sql, "--immediate", "--format", "jsonl",
         "--param", "@s = NVarChar : Smi% ", "--param", "@n = Int : 5 "],
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == '{"s":"Smi%","n":5}'


def test_a_fan_out_deadline_failure_names_the_site_once() -> None:
    result = run(["fan-out", "SELECT 1 AS one", "--emulator", "--deadline", "0.001"])

    failures = [line for line in result.stderr.splitlines() if " failed: " in line]
    assert failures, result.stderr
    for line in failures:
        (site,) = set(re.findall(r"[0-9a-f]{8}-[0-9a-f-]{27}", line))
        assert line.count(site) == 1, line


def test_a_fan_out_says_on_stderr_that_it_started() -> None:
    result = run(["fan-out", "SELECT 1 AS one", "--emulator", "--emulator-sites", "3"])

    assert result.exit_code == 0, result.stderr
    first = result.stderr.splitlines()[0]
    assert re.match(r"halo: querying \d sites \(up to 64 at once\)", first), first


def test_emulator_serve_says_the_first_queries_generate_databases(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served: list[list[str]] = []
    monkeypatch.setattr("halo_async.emulator.__main__.main", lambda argv: served.append(argv))

    result = run(["emulator", "serve", "--port", "0", "--sites", "2"])

    assert served, "the emulator was served"
    assert "generated on the first query" in result.stderr


# -- halo demo at 120 columns ------------------------------------------------------------------


def test_demo_practice_names_are_unique_and_a_backup_carries_its_primarys() -> None:
    for seed in range(1, 6):
        specs = demo_site_specs(DemoSettings(sites=200, seed=seed))
        primaries = {s.pms_site_id: s.practice_name for s in specs if s.authoritative}
        assert all(primaries.values())
        assert len(set(primaries.values())) == len(primaries), "a practice name twice"
        backups = [s for s in specs if not s.authoritative]
        assert backups
        for backup in backups:
            assert backup.practice_name == primaries[backup.pms_site_id]


async def test_the_demo_at_120_columns_wraps_no_word_and_keeps_each_table_row_on_a_line() -> None:
    settings = DemoSettings(sites=40, seed=8, latency="zero", faults=True)
    buffer = io.StringIO()
    console = demo_console(file=buffer, width=120, force_terminal=True, color_system=None)

    report = await run_demo(
        settings,
        console,
        retry=RetryPolicy(sleep=no_sleep, max_attempts=8),
        poll=DEMO_POLL,
    )
    print_report(console, report)

    # The live bar's cursor controls are not text a terminal wraps.
    output = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buffer.getvalue())
    assert report.failed, "the seed is chosen so that some sites fail"
    lines = output.splitlines()
    too_long = [line for line in lines if len(line) > 120]
    assert not too_long, "a line the terminal would wrap"
    assert "…" not in output, "a cell was cut mid-word"
    table = [line for line in lines if re.search(r"[0-9a-f]{8}-[0-9a-f-]{27}", line)]
    assert len(table) == len(report.results), "a table row took more than one line"
    for result in report.results:
        assert result.practice in output
        assert result.site.id in output
    for result in report.failed:
        assert type(result.outcome.error).__name__ in output
