"""Result rows into Arrow: the types inferred per page, widened across pages, or refused."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from halo_async import ColumnTypeError
from halo_async._arrow import BatchBuilder, table_of


def types_of(batch: Any) -> dict[str, Any]:
    return {field.name: field.type for field in batch.schema}


def test_a_page_of_every_kind_of_value_gets_its_arrow_types() -> None:
    rows = [
        {
            "ID": 1,
            "FEE": 12.5,
            "PAID": True,
            "NAME": "JANE",
            "DOB": "1980-02-03T00:00:00",
            "SEEN": "2024-05-01T09:30:00.1234567",
            "SENT": "2024-05-01T09:30:00+10:00",
            "DAY": "2024-05-01",
            "EMAIL": None,
            "AMOUNT": Decimal("10.25"),
        },
        {"ID": 2, "FEE": None, "PAID": False, "NAME": None, "DOB": None, "SEEN": None},
    ]
    batch = BatchBuilder().batch(rows, 1)

    assert types_of(batch) == {
        "ID": pa.int64(),
        "FEE": pa.float64(),
        "PAID": pa.bool_(),
        "NAME": pa.string(),
        "DOB": pa.timestamp("us"),
        "SEEN": pa.timestamp("us"),
        "SENT": pa.timestamp("us", tz="UTC"),
        "DAY": pa.date32(),
        "EMAIL": pa.null(),
        "AMOUNT": pa.decimal128(4, 2),
    }
    first = batch.to_pylist()[0]
    assert first["SEEN"] == dt.datetime(2024, 5, 1, 9, 30, 0, 123456)  # 7th digit dropped
    assert first["SENT"] == dt.datetime(2024, 4, 30, 23, 30, tzinfo=dt.UTC)
    assert batch.to_pylist()[1]["AMOUNT"] is None  # a key missing from a row is NULL


def test_strings_that_only_look_like_dates_stay_strings() -> None:
    rows = [{"CODE": "2024-05-01"}, {"CODE": "not a date"}, {"CODE": "2024-02-30"}]
    assert types_of(BatchBuilder().batch(rows, 1)) == {"CODE": pa.string()}
    assert types_of(BatchBuilder().batch([{"CODE": "2024-02-30"}], 1)) == {"CODE": pa.string()}


@pytest.mark.parametrize(
    ("first", "second", "widened", "values"),
    [
        (None, "x", pa.string(), [None, "x"]),
        (1, 2.5, pa.float64(), [1.0, 2.5]),
        (2.5, 1, pa.float64(), [2.5, 1.0]),
        (1, Decimal("0.25"), pa.decimal128(21, 2), [Decimal("1.00"), Decimal("0.25")]),
        (
            "2024-05-01",
            "2024-05-02T10:00:00",
            pa.timestamp("us"),
            [dt.datetime(2024, 5, 1), dt.datetime(2024, 5, 2, 10)],
        ),
        ("x", None, pa.string(), ["x", None]),
    ],
)
def test_a_column_widens_across_pages_where_no_value_changes(
    first: Any, second: Any, widened: Any, values: list[Any]
) -> None:
    builder = BatchBuilder()
    batches = [builder.batch([{"C": first}], 1), builder.batch([{"C": second}], 2)]

    assert builder.schema.field("C").type == widened
    table = table_of(batches)
    assert table.schema.field("C").type == widened
    assert table.column("C").to_pylist() == values


@pytest.mark.parametrize(
    ("first", "second", "expected", "found"),
    [
        (1, "x", "int64", "string"),
        ("x", 1, "string", "int64"),
        (True, 1, "bool", "int64"),
        ("2024-05-01T10:00:00", "soon", "timestamp[us]", "string"),
        ("2024-05-01T10:00:00", "2024-05-01T10:00:00Z", "timestamp[us]", "timestamp[us, tz=UTC]"),
        (2.5, Decimal("1.5"), "double", "decimal128(2, 1)"),
    ],
)
def test_pages_that_disagree_raise_naming_the_page_column_and_both_types(
    first: Any, second: Any, expected: str, found: str
) -> None:
    builder = BatchBuilder()
    builder.batch([{"C": first}], 1)

    with pytest.raises(ColumnTypeError) as caught:
        builder.batch([{"C": second}], 2)

    error = caught.value
    assert (error.page_number, error.column, error.expected, error.found) == (
        2,
        "C",
        expected,
        found,
    )
    assert str(error).startswith(f"page 2, column 'C': {found} does not fit {expected}")
    assert "types={'C': ...}" in str(error)


def test_mixed_values_in_one_page_raise_naming_both_python_types() -> None:
    with pytest.raises(ColumnTypeError, match=r"page 4, column 'C'.*\(int64 and string\)"):
        BatchBuilder().batch([{"C": 1}, {"C": "one"}], 4)


def test_ints_too_large_for_a_float_are_not_mixed_with_floats_silently() -> None:
    with pytest.raises(ColumnTypeError, match=r"\(int64 and double\)"):
        BatchBuilder().batch([{"C": 2**53 + 1}, {"C": 0.5}], 1)
    builder = BatchBuilder()
    builder.batch([{"C": 2**53 + 1}], 1)
    later = builder.batch([{"C": 0.5}], 2)
    assert later.schema.field("C").type == pa.float64()
    with pytest.raises(ColumnTypeError, match="column 'C'"):
        table_of([BatchBuilder().batch([{"C": 2**53 + 1}], 1), later])


def test_declared_types_win_over_inference() -> None:
    declared = {"FEE": pa.decimal128(10, 2), "CODE": pa.string(), "ID": pa.int32()}
    builder = BatchBuilder(declared)
    batch = builder.batch([{"FEE": 12.1, "CODE": "2024-05-01", "ID": 7}], 1)

    assert types_of(batch) == declared
    assert batch.to_pylist() == [{"FEE": Decimal("12.10"), "CODE": "2024-05-01", "ID": 7}]
    with pytest.raises(ColumnTypeError, match="page 2, column 'ID'"):
        builder.batch([{"ID": "seven"}], 2)


def test_a_reserved_column_is_refused_with_the_rename_to_make() -> None:
    with pytest.raises(ColumnTypeError, match=r"SELECT site_id AS"):
        BatchBuilder(reserved=["site_id"]).batch([{"site_id": 1}], 3)


def test_every_batch_has_every_column_seen_so_far_in_order() -> None:
    builder = BatchBuilder()
    builder.batch([{"A": 1}], 1)
    second = builder.batch([{"B": "x"}, {"A": 2, "B": "y"}], 2)
    assert second.schema.names == ["A", "B"]
    assert second.to_pylist() == [{"A": None, "B": "x"}, {"A": 2, "B": "y"}]
    assert BatchBuilder().batch([], 1).num_rows == 0


def test_importing_halo_async_does_not_import_pyarrow() -> None:
    code = "import sys, halo_async, halo_async.jobs; print('pyarrow' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("code", "extra"),
    [
        ("sys.modules['pyarrow'] = None\nimport halo_async.arrow", "arrow"),
        ("sys.modules['duckdb'] = None\nfrom halo_async.arrow import DuckDBSink\n"
         "DuckDBSink(':memory:')", "duckdb"),
        ("sys.modules['polars'] = None\nfrom halo_async import _arrow\n"
         "_arrow.require('polars', 'QueryJob.to_polars')", "polars"),
    ],
)  # fmt: skip
def test_a_missing_extra_says_what_to_install_in_one_line(code: str, extra: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", f"import sys\n{code}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].endswith(f"pip install 'halo-async[{extra}]'")
