"""Result data decoding: base64 -> orjson -> rows.

``data`` is base64 of UTF-8 JSON, an array of row objects keyed by column name
(REFERENCE §5). This is the hot path of streaming, so it does the two C-level steps and
nothing else: no per-row Python work unless the caller asks for typed rows.
"""

from __future__ import annotations

import binascii
from typing import Any

import orjson

from halo_async.errors import DecodeError


def decode_data(data: str | bytes) -> Any:
    """Decode one ``data`` field to its JSON value."""
    try:
        raw = binascii.a2b_base64(data, strict_mode=False)
    except (binascii.Error, ValueError) as exc:
        raise DecodeError(f"result data is not valid base64: {exc}") from exc
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"result data is not valid JSON: {exc}") from exc


def decode_rows(data: str | bytes) -> list[dict[str, Any]]:
    """Decode a ``data`` field that holds rows: a JSON array of objects.

    A bare object counts as one row, so that a scalar or single-row answer from a newer
    server still reads as rows.
    """
    return rows_from_value(decode_data(data))


def rows_from_value(value: Any) -> list[dict[str, Any]]:
    """Rows from a decoded JSON value: an array of objects, or one object."""
    if isinstance(value, list):
        if value and not isinstance(value[0], dict):
            raise DecodeError(f"result rows must be JSON objects, got {type(value[0]).__name__}")
        return value
    if isinstance(value, dict):
        return [value]
    raise DecodeError(f"result data holds {type(value).__name__}, not rows")


def first_value(value: Any) -> Any:
    """The first value of the first row, or a bare JSON value as it is (scalar mode)."""
    if isinstance(value, list):
        if not value:
            return None
        value = value[0]
    if isinstance(value, dict):
        return next(iter(value.values()), None)
    return value
