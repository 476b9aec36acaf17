"""Results into Arrow, Parquet, DuckDB, polars and pandas, against the emulator."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from halo_async import ColumnTypeError, FanOutLimits, HaloClient, SitePage
from halo_async.arrow import DuckDBSink, ParquetSink, write_duckdb, write_parquet
from halo_async.emulator import Emulator
from halo_async.errors import InvalidArgumentError
from tests.support import FAST_POLL, bp_sites, expected_counts

ORDERED = "SELECT INTERNALID, SURNAME, DOB, PENSIONEXPIRY FROM PATIENTS ORDER BY INTERNALID"

# Small pages: every result spans several, so pages meet pages.
pytestmark = pytest.mark.halo_emulator(sites=bp_sites(3, patients=60), seed=5, page_size=1_500)


async def test_arrow_batches_yield_one_typed_batch_per_page(
    halo_emulator: Emulator, halo_client: HaloClient
) -> None:
    site = halo_emulator.sites[0].id
    job = await halo_client.submit(site, ORDERED, poll=FAST_POLL)

    batches = [batch async for batch in job.arrow_batches()]

    assert len(batches) > 2
    assert job.checkpoint().next_page == len(batches) + 1
    schema = batches[-1].schema
    assert schema.field("INTERNALID").type == pa.int64()
    assert schema.field("SURNAME").type == pa.string()
    assert schema.field("DOB").type == pa.timestamp("us")
    ids = [i for batch in batches for i in batch.column("INTERNALID").to_pylist()]
    assert ids == sorted(set(ids))
    assert len(ids) == 60


async def test_arrow_batches_break_and_carry_on_without_loss_or_repeat(
    halo_emulator: Emulator, halo_client: HaloClient
) -> None:
    site = halo_emulator.sites[0].id
    job = await halo_client.submit(site, ORDERED, poll=FAST_POLL, prefetch=2)
    async for row in job.rows():  # a row of the first page delivered, the rest not yet
        first = [row["INTERNALID"]]
        break
    async for batch in job.arrow_batches():
        first += batch.column("INTERNALID").to_pylist()
        break

    rest = await job.to_arrow()

    ids = first + rest.column("INTERNALID").to_pylist()
    assert ids == sorted(set(ids))
    assert len(ids) == 60


async def test_to_arrow_to_polars_and_to_pandas_hold_every_row_with_its_types(
    halo_emulator: Emulator, halo_client: HaloClient
) -> None:
    site = halo_emulator.sites[1].id
    table = await (await halo_client.submit(site, ORDERED, poll=FAST_POLL)).to_arrow()
    frame = await (await halo_client.submit(site, ORDERED, poll=FAST_POLL)).to_polars()
    pandas_frame = await (await halo_client.submit(site, ORDERED, poll=FAST_POLL)).to_pandas()

    assert table.num_rows == frame.height == len(pandas_frame) == 60
    assert isinstance(table.column("DOB")[0].as_py(), dt.datetime)
    assert str(frame.schema["DOB"]) == "Datetime(time_unit='us', time_zone=None)"
    assert str(pandas_frame["DOB"].dtype).startswith("datetime64")
    assert frame["INTERNALID"].to_list() == table.column("INTERNALID").to_pylist()


async def test_a_page_that_does_not_fit_stays_undelivered_until_its_type_is_declared(
    halo_emulator: Emulator, halo_client: HaloClient
) -> None:
    site = halo_emulator.sites[0].id
    sql = (
        "SELECT INTERNALID, SURNAME, DOB, CASE WHEN INTERNALID > 55 THEN 'late' "
        "ELSE INTERNALID END AS V FROM PATIENTS ORDER BY INTERNALID"
    )
    job = await halo_client.submit(site, sql, poll=FAST_POLL)

    with pytest.raises(ColumnTypeError) as caught:
        await job.to_arrow()
    error = caught.value
    assert (error.column, error.expected, error.found) == ("V", "int64", "string")
    assert error.page_number is not None
    assert error.page_number > 1
    assert job.checkpoint().next_page == error.page_number

    rest = await job.to_arrow(types={"V": pa.string()})

    assert rest.column("V").to_pylist()[-1] == "late"
    assert rest.column("INTERNALID").to_pylist()[-1] == 60


async def fan_out_stream(halo: HaloClient, site_ids: list[str]) -> Any:
    return halo.fan_out(ORDERED, site_ids, stream=True, poll=FAST_POLL)


async def test_write_parquet_writes_one_dataset_with_site_columns(
    halo_emulator: Emulator, halo_client: HaloClient, tmp_path: Path
) -> None:
    site_ids = [site.id for site in halo_emulator.sites]
    names = {site_ids[0]: "Main St Clinic"}
    expected = await expected_counts(halo_client, site_ids)

    summary = await write_parquet(
        await fan_out_stream(halo_client, site_ids), tmp_path / "out", site_names=names
    )

    assert summary.rows_by_site == expected
    assert [outcome.ok for outcome in summary.outcomes] == [True] * 3
    table = ds.dataset(tmp_path / "out", format="parquet").to_table()
    assert table.num_rows == sum(expected.values())
    assert table.schema.names[:2] == ["site_id", "practice_name"]
    assert table.schema.field("DOB").type == pa.timestamp("us")
    by_site = table.group_by("site_id").aggregate([("INTERNALID", "count")]).to_pylist()
    assert {row["site_id"]: row["INTERNALID_count"] for row in by_site} == expected
    named = table.filter(ds.field("practice_name") == "Main St Clinic")
    assert set(named.column("site_id").to_pylist()) == {site_ids[0]}


async def test_write_parquet_partitions_by_site(
    halo_emulator: Emulator, halo_client: HaloClient, tmp_path: Path
) -> None:
    site_ids = [site.id for site in halo_emulator.sites]
    limits = FanOutLimits(max_in_flight=3, buffered_pages=2)
    stream = halo_client.fan_out(ORDERED, site_ids, stream=True, poll=FAST_POLL, limits=limits)

    summary = await write_parquet(stream, tmp_path / "out", partition_by_site=True)

    folders = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert folders == sorted(f"site_id={site}" for site in site_ids)
    dataset = ds.dataset(tmp_path / "out", format="parquet", partitioning="hive")
    table = dataset.to_table()
    assert table.num_rows == summary.rows
    one = dataset.to_table(filter=ds.field("site_id") == site_ids[2])
    assert one.num_rows == summary.rows_by_site[site_ids[2]]
    # Every file has the dataset's schema: a reader of any one file sees it whole.
    schemas = {pq.read_schema(path) for path in (tmp_path / "out").rglob("*.parquet")}
    assert len(schemas) == 1


def test_a_parquet_sink_aligns_files_whose_columns_widened_later(tmp_path: Path) -> None:
    with ParquetSink(tmp_path / "out", partition_by_site=True) as sink:
        sink.write_page("a", "q1", 1, [{"N": 1, "NOTE": None}])
        sink.write_page("b", "q2", 1, [{"N": 2.5, "NOTE": "x"}])
        sink.write_page("a", "q1", 2, [{"N": 3, "NOTE": "y", "NEW": True}])
    summary = sink.close()

    dataset = ds.dataset(tmp_path / "out", format="parquet", partitioning="hive")
    assert summary.rows == 3
    assert dataset.schema.field("N").type == pa.float64()
    for path in (tmp_path / "out").rglob("*.parquet"):
        assert pq.read_schema(path).names == ["N", "NOTE", "NEW"]
    rows = dataset.to_table().sort_by("N").to_pylist()
    assert [(row["N"], row["NOTE"], row["NEW"]) for row in rows] == [
        (1.0, None, None),
        (2.5, "x", None),
        (3.0, "y", True),
    ]
    assert sorted(row["site_id"] for row in rows) == ["a", "a", "b"]


def test_a_parquet_sink_refuses_a_directory_with_a_dataset_already(tmp_path: Path) -> None:
    with ParquetSink(tmp_path / "out") as sink:
        sink.write_page("a", "q", 1, [{"N": 1}])
    with pytest.raises(InvalidArgumentError, match="new or empty directory"):
        ParquetSink(tmp_path / "out")
    with pytest.raises(InvalidArgumentError, match="closed"):
        sink.write_page("a", "q", 2, [{"N": 2}])


async def test_write_parquet_closes_its_files_and_the_stream_when_a_page_does_not_fit(
    tmp_path: Path,
) -> None:
    closed: list[bool] = []

    async def stream() -> Any:
        try:
            yield SitePage("a", "q", 1, [{"N": 1}])
            yield SitePage("a", "q", 2, [{"N": "one"}])
            yield SitePage("a", "q", 3, [{"N": 3}])
        finally:
            closed.append(True)

    with pytest.raises(ColumnTypeError, match="site a, query q: page 2, column 'N'"):
        await write_parquet(stream(), tmp_path / "out")

    assert closed == [True]
    assert pq.read_table(tmp_path / "out").column("N").to_pylist() == [1]


async def test_write_parquet_cancelled_leaves_readable_files(tmp_path: Path) -> None:
    started = asyncio.Event()

    async def stream() -> Any:
        yield SitePage("a", "q", 1, [{"N": 1}])
        started.set()
        await asyncio.Event().wait()
        yield SitePage("a", "q", 2, [{"N": 2}])  # never reached

    task = asyncio.ensure_future(write_parquet(stream(), tmp_path / "out"))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pq.read_table(tmp_path / "out").num_rows == 1


async def test_write_duckdb_appends_every_site_and_widens_columns(
    halo_emulator: Emulator, halo_client: HaloClient, tmp_path: Path
) -> None:
    site_ids = [site.id for site in halo_emulator.sites]
    expected = await expected_counts(halo_client, site_ids)
    path = tmp_path / "results.duckdb"

    summary = await write_duckdb(await fan_out_stream(halo_client, site_ids), path, "patients")

    assert summary.rows_by_site == expected
    with duckdb.connect(str(path)) as connection:
        counts = connection.execute(
            "SELECT site_id, count(*) FROM patients GROUP BY site_id"
        ).fetchall()
        types = dict(connection.execute("SELECT column_name, data_type FROM "
                                        "information_schema.columns WHERE table_name = "
                                        "'patients'").fetchall())  # fmt: skip
    assert dict(counts) == expected
    assert types["DOB"] == "TIMESTAMP"
    assert types["PENSIONEXPIRY"] == "TIMESTAMP"  # NULL-only in some pages: altered
    assert types["INTERNALID"] == "BIGINT"


def test_a_duckdb_sink_on_a_callers_connection_adds_and_widens_columns() -> None:
    connection = duckdb.connect()
    with DuckDBSink(connection, "t", site_names={"a": "Clinic A"}) as sink:
        sink.write_page("a", "q", 1, [{"N": 1, "NOTE": None}])
        sink.write_page("b", "q", 1, [{"N": 2.5, "NOTE": "x", "NEW": "2024-05-01"}])
    rows = connection.execute(
        "SELECT site_id, practice_name, N, NOTE, NEW FROM t ORDER BY N"
    ).fetchall()
    assert rows == [("a", "Clinic A", 1.0, None, None), ("b", None, 2.5, "x", dt.date(2024, 5, 1))]
    connection.close()
    with pytest.raises(InvalidArgumentError, match="plain SQL name"):
        DuckDBSink(":memory:", "drop table; --")
