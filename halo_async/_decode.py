"""Result data decoding: base64 -> orjson -> rows.

``data`` is base64 of UTF-8 JSON, an array of row objects keyed by column name
(REFERENCE §5). This is the hot path of streaming, so it does the two C-level steps and
nothing else: no per-row Python work unless the caller asks for typed rows.

A whole page body goes through :func:`decode_result_body`, which finds the ``data``
string in the raw bytes instead of building the envelope first, decodes base64 with
``pybase64`` (SIMD) when it is installed, and moves large bodies off the event loop.
"""

from __future__ import annotations

import asyncio
import binascii
import dataclasses
import datetime as dt
import functools
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from itertools import repeat
from typing import Any, NamedTuple

import attrs
import cattrs
import orjson

from halo_async import _constants as C
from halo_async.errors import DecodeError, RowTypeError, ValidationError

try:
    # libbase64's SIMD decoder: ~70x the standard library's on a 1 MB page here, which
    # made base64 (not JSON) the larger half of the decode. Optional: without it, the
    # standard library decodes the same bytes (see _b64decode).
    from pybase64 import b64decode as _pybase64_b64decode
except ImportError:  # pragma: no cover - the fallback is tested by forcing it
    _pybase64_b64decode = None  # type: ignore[assignment]

_fast_b64decode: Callable[..., bytes] | None = _pybase64_b64decode
"""pybase64's ``b64decode``, or None to decode with the standard library (tests force it)."""


def decode_data(data: str | bytes) -> Any:
    """Decode one ``data`` field to its JSON value."""
    return _loads(_b64decode(data))


def decode_rows(data: str | bytes) -> list[dict[str, Any]]:
    """Decode a ``data`` field that holds rows: a JSON array of objects.

    A bare object counts as one row, so that a scalar or single-row answer from a newer
    server still reads as rows.
    """
    return rows_from_value(decode_data(data))


def rows_from_value(value: Any) -> list[dict[str, Any]]:
    """Rows from a decoded JSON value: an array of objects, or one object."""
    if isinstance(value, list):
        # Every row, not the first only.
        if _not_all_dicts(value):
            index, bad = next((i, r) for i, r in enumerate(value) if not isinstance(r, dict))
            raise DecodeError(
                f"result rows must be JSON objects, row {index} is {type(bad).__name__}"
            )
        return value
    if isinstance(value, dict):
        return [value]
    raise DecodeError(f"result data holds {type(value).__name__}, not rows")


def _not_all_dicts(rows: list[Any]) -> bool:
    # At C speed, with no Python per row: a page's rows are looked at one by one here.
    # (isinstance takes a dict subclass too: a decoder's own dict is still a JSON object.)
    return not all(map(isinstance, rows, repeat(dict)))


# -- page bodies ------------------------------------------------------------------------


class DecodedBody(NamedTuple):
    """A result page body, decoded."""

    rows: list[dict[str, Any]]
    parameters: Any
    """The envelope's ``parameters`` as sent (None when there were none)."""


def decodes_off_loop(body: bytes) -> bool:
    """Whether :func:`decode_result_body` decodes ``body`` in a worker thread (it is large);
    a smaller one a caller may decode at once with :func:`decode_body`, with no coroutine."""
    return len(body) >= C.DECODE_OFF_LOOP_MIN_BYTES


async def decode_result_body(body: bytes, *, any_shape: bool = False) -> DecodedBody:
    """Decode a result page body: the ``{"data": ..., "parameters": [...]}`` envelope.

    ``any_shape`` also reads what the ``/stream`` endpoint may send instead (its format is
    unspecified): a JSON string holding the base64 data, or the rows themselves.

    A body of :data:`~halo_async._constants.DECODE_OFF_LOOP_MIN_BYTES` or more is decoded
    in a worker thread, in slices that each hold the GIL briefly, so that other tasks run
    meanwhile; a smaller one is decoded here, where a thread hop would cost more than it
    saves. Raises :class:`~halo_async.errors.DecodeError` naming what was wrong.
    """
    if not decodes_off_loop(body):
        return decode_body(body, any_shape=any_shape)
    work = functools.partial(decode_body, body, any_shape=any_shape, sliced=True)
    try:
        future = asyncio.get_running_loop().run_in_executor(_decode_pool(), work)
    except RuntimeError:
        # The pool is shut down (the interpreter is exiting): the body has arrived, so
        # decode it here rather than lose it.
        return work()
    return await future


def decode_body(body: bytes, *, any_shape: bool = False, sliced: bool = False) -> DecodedBody:
    """Decode a result page body where the caller runs (see :func:`decode_result_body`).

    ``sliced`` parses the rows in slices of
    :data:`~halo_async._constants.DECODE_SLICE_BYTES`, for a worker thread.
    """
    located = _locate_data(body) if len(body) >= _LOCATE_MIN_BYTES else None
    if located is not None:
        slice_, parameters = located
        return DecodedBody(_rows_of(slice_, sliced=sliced), parameters)
    value = _loads_body(body)
    if isinstance(value, dict) and (not any_shape or "data" in value or "parameters" in value):
        data = value.get("data")
        rows = [] if data is None else _rows_of(_data_string(data), sliced=sliced)
        return DecodedBody(rows, value.get("parameters"))
    if not any_shape:
        raise DecodeError(f"expected a JSON object, got {type(value).__name__}")
    if isinstance(value, str):
        # The OAS types the /stream body as a JSON string: the base64 data itself.
        return DecodedBody(_rows_of(value, sliced=sliced), None)
    return DecodedBody(rows_from_value(value), None)


# Below this, parsing the envelope whole (a copy of a few KiB) is cheaper than the search.
_LOCATE_MIN_BYTES = 16 * 1024
_DATA_KEY = b'"data"'
_COLON_QUOTE = re.compile(rb'[ \t\r\n]*:[ \t\r\n]*"')
# How many ``"data"`` strings to try as the key before parsing the envelope instead: the
# key comes first in every body Halo and the emulator send; a parameter named "data"
# before it is the only other place the text appears.
_KEY_CANDIDATES = 3


def _locate_data(body: bytes) -> tuple[memoryview, Any] | None:
    """The envelope's ``data`` string as a slice of ``body``, and its ``parameters``, without
    copying the megabyte of base64 into a str first; None when the body is not in that
    simple shape (then the caller parses it whole, with the same result).

    The slice is trusted only when the rest of the body, with the slice replaced by ``0``,
    parses as an object whose ``data`` is that ``0``: the slice was then the top-level
    ``data`` value, whatever else the body holds. A backslash in the slice (an escaped
    ``\\/`` or ``\\u002B``) means the raw bytes are not the string's value.
    """
    key = -1
    for _ in range(_KEY_CANDIDATES):
        key = body.find(_DATA_KEY, key + 1)
        if key < 0:
            return None
        match = _COLON_QUOTE.match(body, key + len(_DATA_KEY))
        if match is not None:
            break
    else:
        return None
    start = match.end()
    end = body.find(b'"', start)
    if end < 0 or body.find(b"\\", start, end) >= 0:
        return None
    view = memoryview(body)
    try:
        rest = orjson.loads(b"".join((view[: start - 1], b"0", view[end + 1 :])))
    except orjson.JSONDecodeError:
        return None
    if not isinstance(rest, dict):
        return None
    marker = rest.get("data")
    if type(marker) is not int or marker != 0:
        return None
    return view[start:end], rest.get("parameters")


def _loads_body(body: bytes) -> Any:
    if not body:
        raise DecodeError("the result page body is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"the result page body is not JSON ({exc}): {body[:200]!r}") from exc


def _data_string(data: Any) -> str:
    if not isinstance(data, str):
        raise DecodeError(f"result data must be a base64 string, got {type(data).__name__}")
    return data


def _rows_of(data: str | bytes | memoryview, *, sliced: bool) -> list[dict[str, Any]]:
    raw = _b64decode(data)
    return rows_from_value(_loads_sliced(raw) if sliced else _loads(raw))


def _b64decode(data: str | bytes | memoryview) -> bytes:
    """Base64 to bytes, ignoring characters outside the alphabet as the standard library
    does; ``binascii.Error`` or ``ValueError`` become :class:`DecodeError`."""
    try:
        fast = _fast_b64decode
        if fast is None:
            return binascii.a2b_base64(data, strict_mode=False)
        try:
            # Strict decoding is libbase64's SIMD path straight through (the lenient one
            # first copies the input to drop stray characters); Halo's data is canonical.
            return fast(data, validate=True)
        except binascii.Error:
            # Line breaks or other stray characters: drop them, as the standard library does.
            return fast(data, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise DecodeError(f"result data is not valid base64: {exc}") from exc


def _loads(raw: bytes | str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"result data is not valid JSON: {exc}") from exc


# Where one row object ends and the next begins in compact JSON: ``},{"``. Inside a JSON
# string the text can only occur if the string ends in ``},{``; a cut there makes the slice
# fail to parse, and the next occurrence is tried.
_ROW_BOUNDARY = b'},{"'
# Cuts that failed to parse before the rest is parsed in one call: data full of ``},{``
# strings must not make the slicing cost more than the parse.
_MISCUTS = 4


def _loads_sliced(raw: bytes) -> Any:
    """``orjson.loads(raw)`` of a JSON array of rows, one slice of rows per call.

    orjson (like msgspec and the standard library's base64) holds the GIL for a whole
    call: ~40 ms for an 8 MB page, during which the event loop's thread cannot run at all,
    thread or no thread. Between slices the GIL is offered to the loop's thread, which
    waits at most about one slice. The rows are the same as from
    one call: each slice starts where a row starts, and a slice that parses as
    ``[rows]`` ends where a row ends (a cut inside a string or a nested value leaves it
    unbalanced or unterminated, and orjson refuses it).
    """
    size = C.DECODE_SLICE_BYTES
    if len(raw) <= size or not raw.startswith(b"[{"):
        return _loads(raw)
    view = memoryview(raw)
    rows: list[Any] = []
    start = 1  # after the "["
    miscuts = 0
    cut = raw.find(_ROW_BOUNDARY, start + size)
    while cut >= 0 and miscuts < _MISCUTS:
        try:
            part = orjson.loads(b"".join((b"[", view[start : cut + 1], b"]")))
        except orjson.JSONDecodeError:
            miscuts += 1
            cut = raw.find(_ROW_BOUNDARY, cut + 1)
            continue
        rows.extend(part)
        # Hand the GIL over now if the loop's thread waits for it, rather than at the end
        # of its switch interval: this cut the worst loop lag by a third (benchmarks/stall).
        time.sleep(0)
        start = cut + 2  # after the "},": the next row's "{"
        cut = raw.find(_ROW_BOUNDARY, start + size)
    rows.extend(_loads(b"".join((b"[", view[start:]))))
    return rows


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _decode_pool() -> ThreadPoolExecutor:
    """The decoding thread, shared by every client and event loop of the process.

    One thread: the JSON decoder holds the GIL, so a second thread would add no
    throughput, only a second GIL holder for the loop's thread to queue behind. Its own
    pool, not the loop's default executor, so that decoding does not wait behind a
    user's blocking calls (or aiohttp's DNS lookups) there, nor they behind it.
    """
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="halo-async-decode")
        return _pool


def _forget_pool() -> None:
    # A forked child inherits the pool but not its thread: work sent there would never run.
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_forget_pool)


def first_value(value: Any) -> Any:
    """The first value of the first row, or a bare JSON value as it is (scalar mode)."""
    if isinstance(value, list):
        if not value:
            return None
        value = value[0]
    if isinstance(value, dict):
        return next(iter(value.values()), None)
    return value


# -- typed rows: row dicts structured into a user's attrs class or dataclass ------------------


def _to_datetime(value: Any, _: type) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    # Practice databases store naive local times (the practice's zone): kept naive, as the
    # database had them; an offset, where the server sends one, is kept too.
    return dt.datetime.fromisoformat(_six_digit_fraction(_text(value, "date-time")))


def _to_date(value: Any, _: type) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = _text(value, "date")
    # A SQL Server date often travels as a datetime at midnight.
    return dt.date.fromisoformat(text[:10]) if len(text) > 10 else dt.date.fromisoformat(text)


def _to_time(value: Any, _: type) -> dt.time:
    if isinstance(value, dt.time):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 86_400:
        # Best Practice keeps appointment times as seconds from midnight.
        return dt.time(value // 3600, value // 60 % 60, value % 60)
    text = _six_digit_fraction(_text(value, "time"))
    return dt.datetime.fromisoformat(text).time() if "T" in text else dt.time.fromisoformat(text)


def _to_decimal(value: Any, _: type) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise TypeError(f"expected a number, got {value!r}")
    # Through str, so that 12.1 becomes Decimal("12.1"), not its binary float.
    return Decimal(str(value))


def _to_bool(value: Any, _: type) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1):  # SQL Server bit columns arrive as 0/1
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _BOOL_TEXT:
        return _BOOL_TEXT[value.strip().lower()]
    raise TypeError(f"expected a bit (true/false, 1/0), got {value!r}")


_BOOL_TEXT = {"1": True, "0": False, "true": True, "false": False}


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO {what} string, got {value!r}")
    return value.strip()


def _six_digit_fraction(text: str) -> str:
    """SQL Server's datetime2/time carry 7 fraction digits; Python takes at most 6."""
    head, dot, rest = text.partition(".")
    if not dot:
        return text
    digits = len(rest) - len(rest.lstrip("0123456789"))
    return f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}" if digits > 6 else text


def _row_converter_with_sql_types() -> cattrs.Converter:
    """Typed rows: what result columns carry (ISO strings, numbers, 0/1 bits) into the
    Python types a user's class declares."""
    converter = cattrs.Converter(forbid_extra_keys=False)
    converter.register_structure_hook(dt.datetime, _to_datetime)
    converter.register_structure_hook(dt.date, _to_date)
    converter.register_structure_hook(dt.time, _to_time)
    converter.register_structure_hook(Decimal, _to_decimal)
    converter.register_structure_hook(bool, _to_bool)
    converter.register_structure_hook(uuid.UUID, lambda value, _: uuid.UUID(_text(value, "UUID")))
    return converter


_row_converter = _row_converter_with_sql_types()


def _fold(name: str) -> str:
    return name.replace("_", "").lower()


class RowStructurer:
    """Structures row dicts into a user's class; builds the column map on the first row."""

    def __init__(self, cls: type[Any], rename: Mapping[str, str] | None) -> None:
        if not (attrs.has(cls) or _is_dataclass(cls)):
            raise ValidationError(
                f"as_type must be an attrs class or a dataclass, got {cls!r}",
                field="as_type",
                value=cls,
            )
        self._cls = cls
        self._rename = dict(rename or {})
        self._fields = {_fold(name): name for name in _field_names(cls)}
        self._column_map: dict[str, str] | None = None

    def _map_for(self, row: Mapping[str, Any]) -> dict[str, str]:
        mapping: dict[str, str] = {}
        for column in row:
            field = self._rename.get(column) or self._fields.get(_fold(column))
            if field is not None:
                mapping[column] = field
        return mapping

    def __call__(self, row: Mapping[str, Any], page_number: int, row_index: int) -> Any:
        if self._column_map is None:
            self._column_map = self._map_for(row)
        mapping = self._column_map
        data = {mapping[column]: value for column, value in row.items() if column in mapping}
        try:
            return _row_converter.structure(data, self._cls)
        except Exception as exc:
            messages = (
                cattrs.transform_error(exc) if isinstance(exc, cattrs.BaseValidationError) else []
            )
            detail = "; ".join(messages) or str(exc)
            reverse = {field: column for column, field in mapping.items()}
            columns = sorted(
                reverse.get(message.rsplit("$.", 1)[-1], message.rsplit("$.", 1)[-1])
                for message in messages
                if "$." in message
            )
            raise RowTypeError(
                f"page {page_number}, row {row_index}: the row does not fit "
                f"{self._cls.__name__} ({detail}; columns {columns or list(row)})",
                page_number=page_number,
                row_index=row_index,
                columns=columns,
            ) from exc


def _is_dataclass(cls: type[Any]) -> bool:
    return dataclasses.is_dataclass(cls)


def _field_names(cls: type[Any]) -> list[str]:
    if attrs.has(cls):
        return [field.name for field in attrs.fields(cls)]
    return [field.name for field in dataclasses.fields(cls)]
