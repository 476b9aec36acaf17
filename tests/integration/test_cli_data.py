"""``halo query`` and ``halo fan-out`` into Parquet, Arrow IPC and DuckDB files."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from halo_async import HaloClient
from halo_async.emulator import Emulator
from tests.integration.test_cli import PATIENTS_SQL, SITES, run, run_against, site_id

ALL_PATIENTS = "SELECT InternalID, Surname, DOB FROM BPS_Patients ORDER BY InternalID"

# Small pages, so that the files are written page by page.
pytestmark = pytest.mark.halo_emulator(sites=SITES, seed=5, page_size=1_000)


async def patients(halo: HaloClient, site: str) -> int:
    query = await halo.immediate_query(site, "SELECT COUNT(*) AS N FROM BPS_Patients")
    return int(query.decode_rows()[0]["N"])


async def test_query_to_one_parquet_file(
    halo_emulator: Emulator, halo_client: HaloClient, tmp_path: Path
) -> None:
    output = tmp_path / "patients.parquet"

    result = await run_against(
        halo_emulator,
        ["query", site_id(halo_emulator, "4242"), ALL_PATIENTS, "--format", "parquet",
         "--output", str(output)],
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    table = pq.read_table(output)
    assert table.num_rows == await patients(halo_client, site_id(halo_emulator, "4242"))
    assert pq.ParquetFile(output).metadata.num_row_groups > 1  # a row group per page
    assert table.schema.field("DOB").type == pa.timestamp("us")
    assert table.column("InternalID").to_pylist() == sorted(table.column("InternalID").to_pylist())
    assert os.listdir(tmp_path) == ["patients.parquet"]


async def test_query_to_an_arrow_ipc_file(halo_emulator: Emulator, tmp_path: Path) -> None:
    output = tmp_path / "patients.arrow"

    result = await run_against(
        halo_emulator,
        ["query", site_id(halo_emulator, "4242"), PATIENTS_SQL, "--format", "arrow",
         "--output", str(output)],
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    with pa.memory_map(str(output)) as source:
        table = pa.ipc.open_file(source).read_all()
    assert table.schema.names == ["InternalID", "Firstname", "Surname"]
    assert table.num_rows == 5


async def test_query_to_a_duckdb_table(
    halo_emulator: Emulator, halo_client: HaloClient, tmp_path: Path
) -> None:
    output = tmp_path / "results.duckdb"
    site = site_id(halo_emulator, "5151")

    result = await run_against(
        halo_emulator,
        ["query", site, ALL_PATIENTS, "--format", "duckdb", "--output", str(output),
         "--table", "patients"],
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    with duckdb.connect(str(output)) as connection:
        rows = connection.execute("SELECT site_id, count(*) FROM patients GROUP BY 1").fetchall()
    assert rows == [(site, await patients(halo_client, site))]


async def test_a_failed_query_leaves_no_file(halo_emulator: Emulator, tmp_path: Path) -> None:
    output = tmp_path / "patients.parquet"

    result = await run_against(
        halo_emulator,
        ["query", site_id(halo_emulator, "7777"), PATIENTS_SQL, "--format", "parquet",
         "--output", str(output)],
    )  # fmt: skip

    assert result.exit_code == 1
    assert os.listdir(tmp_path) == []


async def test_fan_out_to_a_parquet_dataset_and_to_duckdb(
    halo_emulator: Emulator, halo_client: HaloClient, tmp_path: Path
) -> None:
    sites = [site_id(halo_emulator, "4242"), site_id(halo_emulator, "5151")]
    total = sum([await patients(halo_client, site) for site in sites])
    sites_file = tmp_path / "sites.txt"
    sites_file.write_text("\n".join(sites) + "\n")
    common = ["fan-out", ALL_PATIENTS, "--sites-file", str(sites_file)]

    parquet = await run_against(
        halo_emulator, [*common, "--format", "parquet", "--output", str(tmp_path / "out")]
    )
    database = await run_against(
        halo_emulator,
        [*common, "--format", "duckdb", "--output", str(tmp_path / "r.duckdb")],
    )

    assert parquet.exit_code == 0, parquet.stderr
    summary = parquet.stderr.splitlines()[-1]
    assert summary.startswith(f"halo: 2 sites: 2 ok, 0 failed; {total} rows")
    table = ds.dataset(tmp_path / "out", format="parquet").to_table()
    assert sorted(set(table.column("site_id").to_pylist())) == sorted(sites)
    assert table.num_rows == total
    assert database.exit_code == 0, database.stderr
    with duckdb.connect(str(tmp_path / "r.duckdb")) as connection:
        count = connection.execute("SELECT count(DISTINCT site_id), count(*) FROM halo_results")
        assert count.fetchone() == (2, total)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "parquet"], "--format parquet writes a file: add --output PATH"),
        (["--format", "jsonl", "--output", "x"], "--output is for --format parquet"),
        (["--format", "parquet", "--output", "x", "--table", "t"], "--table is for --format"),
    ],
)
def test_data_formats_need_an_output_and_say_so(args: list[str], message: str) -> None:
    site = "3f91c577-20a8-467b-8991-b96dfb90e8c6"
    for command in (["query", site, "SELECT 1"], ["fan-out", "SELECT 1", "--emulator"]):
        result = run([*command, *args])
        assert result.exit_code == 2
        assert message in result.stderr
