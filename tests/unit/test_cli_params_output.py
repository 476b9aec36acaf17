"""The CLI's pure parts: ``--param`` parsing, the row writers, and error lines."""

from __future__ import annotations

import io
import json
import re

import pytest

from halo_async import errors, models
from halo_async.cli._errors import describe
from halo_async.cli._output import CsvWriter, JsonLinesWriter, TableWriter, plain_console
from halo_async.cli._params import parse_parameter


@pytest.mark.parametrize(
    ("text", "name", "type_name", "value"),
    [
        ("id=Int:42", "@id", "Int", "42"),
        ("@id=int: 42 ", "@id", "Int", "42"),
        ("@s=NVarChar:Smi%", "@s", "NVarChar", "Smi%"),
        ("@s=nvarchar:a:b=c", "@s", "NVarChar", "a:b=c"),
        ("@empty=VarChar:", "@empty", "VarChar", ""),
        ("@mid=NVarChar", "@mid", "NVarChar", None),
        ("@on=Bit:true", "@on", "Bit", "1"),
        ("@fee=Money:12.50", "@fee", "Money", "12.50"),
        ("@d=Date:2024-02-29", "@d", "Date", "2024-02-29"),
        ("@t=DateTime:2024-02-29T08:15:00", "@t", "DateTime", "2024-02-29T08:15:00"),
        ("@at=Time:08:15:00", "@at", "Time", "08:15:00"),
    ],
)
def test_parse_parameter(text: str, name: str, type_name: str, value: str | None) -> None:
    assert parse_parameter(text) == models.Parameter(
        name=name, type=type_name, value=value, direction=models.Direction.INPUT
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("=Int:1", "is not NAME=TYPE:VALUE"),
        ("@a b=Int:1", "'@a b' is not a parameter name"),
        ("@x=Number:1", "'Number' is not a parameter type"),
        ("@x=BigInt:1.5", "'1.5' is not a valid BigInt (expected a whole number)"),
        ("@x=Bit:yes", "'yes' is not a valid Bit (expected 0, 1, true or false)"),
        ("@x=Decimal:ten", "'ten' is not a valid Decimal"),
        ("@x=Date:2024-02-30", "'2024-02-30' is not a valid Date"),
        ("@x=UniqueIdentifier:abc", "'abc' is not a valid UniqueIdentifier (expected a UUID)"),
    ],
)
def test_parse_parameter_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_parameter(text)


def test_jsonl_writes_one_object_per_line() -> None:
    stream = io.StringIO()
    writer = JsonLinesWriter(stream)

    writer.write([{"a": 1, "b": None}, {"a": 2, "b": "x"}])
    writer.close()

    assert [json.loads(line) for line in stream.getvalue().splitlines()] == [
        {"a": 1, "b": None},
        {"a": 2, "b": "x"},
    ]


def test_csv_header_from_the_first_row_and_extra_columns_warned_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stream = io.StringIO()
    writer = CsvWriter(stream)

    writer.write([{"id": 1, "name": "Ann"}])
    writer.write([{"id": 2, "name": None, "extra": 5}, {"id": 3, "name": "Bo", "extra": 6}])

    assert stream.getvalue().splitlines() == ["id,name", "1,Ann", "2,", "3,Bo"]
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 1
    assert "columns ['extra'] of later rows are left out" in warnings[0]


def test_table_shows_nulls_and_counts_rows() -> None:
    stream = io.StringIO()
    writer = TableWriter(plain_console(stream))

    writer.write([{"id": 1, "dob": None}])
    writer.close()

    output = stream.getvalue()
    assert "NULL" in output
    assert output.rstrip().endswith("1 row")


def test_error_lines_are_one_line_with_advice() -> None:
    error = errors.RateLimitedError(
        "Rate Limit Exceeded\n", status=429, method="GET", path="/integrator/sites"
    )

    line = describe(error)

    assert "\n" not in line
    assert line == (
        "GET /integrator/sites -> 429: Rate Limit Exceeded; slow down and try again in a minute"
    )
