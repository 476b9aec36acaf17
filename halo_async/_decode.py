"""Result data decoding: base64 -> orjson -> rows.

``data`` is base64 of UTF-8 JSON, an array of row objects keyed by column name
(REFERENCE §5). This is the hot path of streaming, so it does the two C-level steps and
nothing else: no per-row Python work unless the caller asks for typed rows.
"""

from __future__ import annotations

import binascii
import dataclasses
from collections.abc import Mapping
from typing import Any

import attrs
import cattrs
import orjson

from halo_async.errors import DecodeError, RowTypeError, ValidationError


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


# -- typed rows: row dicts structured into a user's attrs class or dataclass ------------------

_row_converter = cattrs.Converter(forbid_extra_keys=False)


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
