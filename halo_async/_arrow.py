"""Result rows into Arrow record batches: one batch per page, one schema across pages.

A result page carries no column types (REFERENCE §5: an array of JSON objects, dates as
ISO strings), so each page's columns are inferred from their values, as pyarrow infers a
list: ints, floats, bools, strings, NULLs; a string column whose every value is an ISO
date or date-time becomes ``date32`` or ``timestamp[us]`` (``timestamp[us, UTC]`` when the
values carry an offset). Types the caller declares (``types={column: pyarrow type}``)
win over inference, since only the caller knows that a float is a ``money`` column.

Pages must agree. A column's type may widen from one page to the next where no value can
change: NULL-only -> any type, int -> float (within 2**53, which Arrow's safe cast checks),
int -> decimal, decimal -> wider decimal, date -> timestamp. Any other disagreement raises
:class:`~halo_async.errors.ColumnTypeError` naming the page, the column and both types,
never a silent fallback to strings. A batch is cast to the schema known when it is made;
a later one may be wider, and :func:`table_of` casts them all to the last one's.
"""

from __future__ import annotations

import contextlib
import itertools
import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from halo_async._extras import extra_needed, require
from halo_async.errors import ColumnTypeError

with extra_needed("halo-async's Arrow support"):
    import pyarrow as pa
    import pyarrow.compute as pc

__all__ = ["BatchBuilder", "conform", "require", "table_of"]

# Each is tried on a column's first value in Python; only a match is then checked on
# every value, in Arrow's regex kernel.
_DATE = r"^\d{4}-\d{2}-\d{2}$"
_NAIVE = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$"
_AWARE = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$"
_TEMPORAL = (
    (re.compile(_NAIVE), _NAIVE, pa.timestamp("us")),
    (re.compile(_AWARE), _AWARE, pa.timestamp("us", tz="UTC")),
    (re.compile(_DATE), _DATE, pa.date32()),
)
# SQL Server's datetime2 carries 7 fraction digits; microseconds keep 6, and nanoseconds
# could not hold the year-9999 and year-1 sentinels practice databases are full of.
_EXTRA_DIGITS = r"(\.\d{6})\d+"
_MAX_DECIMAL_DIGITS = 38
_INT64_DIGITS = 19
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError)


class BatchBuilder:
    """Builds a record batch from each page's rows, keeping one schema across the pages.

    ``types`` declares columns' Arrow types; ``reserved`` names columns the caller adds
    itself (a sink's ``site_id``), which a result may not hold.
    """

    def __init__(
        self, types: Mapping[str, Any] | None = None, *, reserved: Sequence[str] = ()
    ) -> None:
        self._declared: dict[str, Any] = dict(types or {})
        self._reserved = frozenset(reserved)
        self._fields: dict[str, Any] = {}

    @property
    def schema(self) -> Any:
        """The schema of every column seen so far, at its widest."""
        return pa.schema(list(self._fields.items()))

    def batch(self, rows: Sequence[Mapping[str, Any]], page_number: int) -> Any:
        """The page's rows as a batch of :attr:`schema` (widened by this page if need be)."""
        names = list(dict.fromkeys(itertools.chain.from_iterable(rows)))
        arrays = {}
        for name, values in zip(names, _columns(rows, names), strict=True):
            if name in self._reserved:
                raise ColumnTypeError(
                    f"page {page_number}: the result has a column {name!r}, which the sink "
                    f"adds itself; rename it in the SQL (SELECT {name} AS ...)",
                    page_number=page_number,
                    column=name,
                    expected="no such column",
                    found="a result column",
                )
            arrays[name] = self._column(name, values, page_number)
        batch = pa.RecordBatch.from_arrays(list(arrays.values()), names=list(arrays))
        return conform(batch, self.schema, page_number)

    def _column(self, name: str, values: Sequence[Any], page_number: int) -> Any:
        declared = self._declared.get(name)
        if declared is not None:
            self._fields[name] = declared
            return _declared(name, values, declared, page_number)
        established = self._fields.get(name)
        array = _infer(name, values, page_number)
        if pa.types.is_string(array.type) and not _is_string(established):
            array = _temporal(array, values)
        wider = _wider(established, array.type)
        if wider is None:
            raise _mismatch(name, page_number, established, array.type, "the pages before")
        self._fields[name] = wider
        return array


def _columns(rows: Sequence[Mapping[str, Any]], names: list[str]) -> list[Sequence[Any]]:
    """Each column's values, in ``names`` order. Rows that all hold every column (as a
    query's rows do) are transposed at C speed, four times faster than a ``row.get`` per
    value, which is left for rows that lack a column (NULL there)."""
    if len(names) > 1:
        with contextlib.suppress(KeyError):
            return list(zip(*map(operator.itemgetter(*names), rows), strict=True))
    return [[row.get(name) for row in rows] for name in names]


def conform(batch: Any, schema: Any, page_number: int | None = None) -> Any:
    """``batch`` with ``schema``'s columns in its order: missing ones NULL, others cast."""
    arrays = []
    for field in schema:
        index = batch.schema.get_field_index(field.name)
        column = batch.column(index) if index >= 0 else pa.nulls(batch.num_rows, field.type)
        if column.type != field.type:
            column = _cast(column, field.type, field.name, page_number)
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def table_of(batches: Iterable[Any]) -> Any:
    """One table of batches from one :class:`BatchBuilder`: the last has the widest schema."""
    collected = list(batches)
    if not collected:
        return pa.table({})
    schema = collected[-1].schema
    return pa.Table.from_batches([conform(batch, schema) for batch in collected], schema=schema)


def _infer(name: str, values: Sequence[Any], page_number: int) -> Any:
    try:
        # pyarrow makes [1, 2.5] a float column, but refuses an int a float cannot hold.
        array = pa.array(values)
    except _ARROW_ERRORS as exc:
        # The first value of each Python type, named as Arrow would type it alone.
        firsts = {type(v): v for v in reversed(values) if v is not None}
        kinds = list(dict.fromkeys(_type_name(v) for v in reversed(firsts.values())))
        found = " and ".join(kinds[:2]) if len(kinds) > 1 else f"{kinds[0]}: {exc}"
        raise ColumnTypeError(
            f"page {page_number}, column {name!r}: its values do not fit one Arrow type "
            f"({found}); declare it with types={{{name!r}: ...}}",
            page_number=page_number,
            column=name,
            expected=kinds[0],
            found=kinds[min(1, len(kinds) - 1)],
        ) from exc
    return array


def _type_name(value: Any) -> str:
    try:
        return str(pa.array([value]).type)
    except _ARROW_ERRORS:
        return type(value).__name__


def _declared(name: str, values: Sequence[Any], declared: Any, page_number: int) -> Any:
    """The values as the declared type: directly, as text where text was asked for (the
    caller's way out of a column of mixed values), else inferred and then cast."""
    try:
        return pa.array(values, type=declared)
    except _ARROW_ERRORS:
        if pa.types.is_string(declared) or pa.types.is_large_string(declared):
            return pa.array([None if v is None else str(v) for v in values], type=declared)
    array = _infer(name, values, page_number)
    if pa.types.is_string(array.type):
        array = _temporal(array, values)
    return _cast(array, declared, name, page_number)


def _temporal(array: Any, values: Sequence[Any]) -> Any:
    """A string column of ISO dates or date-times as dates or timestamps; else as it is."""
    first = next(value for value in values if value is not None)
    for pattern, text, arrow_type in _TEMPORAL:
        if pattern.match(first) is None:
            continue
        if not pc.all(pc.match_substring_regex(array, text)).as_py():
            return array
        if pa.types.is_timestamp(arrow_type):
            array = pc.replace_substring_regex(array, _EXTRA_DIGITS, r"\1")
        try:
            return array.cast(arrow_type)
        except _ARROW_ERRORS:  # "2024-02-30": shaped like a date, but not one
            return array
    return array


def _is_string(arrow_type: Any) -> bool:
    return arrow_type is not None and bool(pa.types.is_string(arrow_type))


def _wider(old: Any, new: Any) -> Any:
    """The type that holds both without changing a value, or None when there is none."""
    if old is None or old == new or pa.types.is_null(old):
        return new
    if pa.types.is_null(new):
        return old
    for first, second in ((old, new), (new, old)):
        if pa.types.is_integer(first) and pa.types.is_floating(second):
            return pa.float64()
        if pa.types.is_integer(first) and pa.types.is_decimal(second):
            return _decimal(max(second.precision, _INT64_DIGITS + second.scale), second.scale)
        if pa.types.is_date(first) and pa.types.is_timestamp(second) and second.tz is None:
            return second
    if pa.types.is_integer(old) and pa.types.is_integer(new):
        return pa.int64()
    if pa.types.is_decimal(old) and pa.types.is_decimal(new):
        scale = max(old.scale, new.scale)
        return _decimal(max(old.precision - old.scale, new.precision - new.scale) + scale, scale)
    return None


def _decimal(precision: int, scale: int) -> Any:
    return pa.decimal128(precision, scale) if precision <= _MAX_DECIMAL_DIGITS else None


def _cast(array: Any, arrow_type: Any, name: str, page_number: int | None) -> Any:
    try:
        if pa.types.is_string(array.type) and pa.types.is_timestamp(arrow_type):
            array = pc.replace_substring_regex(array, _EXTRA_DIGITS, r"\1")
        return array.cast(arrow_type)
    except _ARROW_ERRORS as exc:
        raise _mismatch(name, page_number, arrow_type, array.type, f"the column ({exc})") from exc


def _mismatch(
    name: str, page_number: int | None, expected: Any, found: Any, source: str
) -> ColumnTypeError:
    where = f"page {page_number}, " if page_number is not None else ""
    return ColumnTypeError(
        f"{where}column {name!r}: {found} does not fit {expected}, the type of {source}; "
        f"declare it with types={{{name!r}: ...}}",
        page_number=page_number,
        column=name,
        expected=str(expected),
        found=str(found),
    )
