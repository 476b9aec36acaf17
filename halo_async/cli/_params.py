"""``--param name=Type:value``: a typed query parameter from the command line."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

import click

from halo_async import models
from halo_async._constants import PARAMETER_TYPES

__all__ = ["PARAM_HELP", "parameters_callback", "parse_parameter"]

PARAM_HELP = (
    "A query parameter, NAME=TYPE:VALUE, e.g. '@surname=NVarChar:Smi%' or 'id=Int:42' "
    "(TYPE is one of the API's parameter types; NAME=TYPE alone sends NULL; spaces around "
    "NAME, TYPE and VALUE are ignored). Repeatable."
)

_NAME = re.compile(r"@?[A-Za-z_][A-Za-z0-9_]*")
# Type names match case-insensitively ("int", "nvarchar") and are sent as the API spells them.
_TYPES = {name.lower(): name for name in PARAMETER_TYPES}
_INTEGER_TYPES = frozenset({"BigInt", "Int", "SmallInt", "TinyInt"})
_NUMBER_TYPES = frozenset({"Decimal", "Float", "Real", "Money", "SmallMoney"})
_DATETIME_TYPES = frozenset({"DateTime", "DateTime2", "DateTimeOffset", "SmallDateTime"})
_BIT_VALUES = {"1": "1", "0": "0", "true": "1", "false": "0"}


def _integer(value: str) -> str:
    return str(int(value))


def _number(value: str) -> str:
    try:
        Decimal(value)
    except InvalidOperation:
        raise ValueError(value) from None
    return value


def _bit(value: str) -> str:
    return _BIT_VALUES[value.lower()]


def _date(value: str) -> str:
    return dt.date.fromisoformat(value).isoformat()


def _datetime(value: str) -> str:
    return dt.datetime.fromisoformat(value).isoformat()


def _time(value: str) -> str:
    return dt.time.fromisoformat(value).isoformat()


def _uuid(value: str) -> str:
    return str(uuid.UUID(value))


_Check = tuple[Callable[[str], str], str]
# Each type's check of a value and what it expects; types not listed take free text.
_CHECKS: dict[str, _Check] = {
    **{name: (_integer, "a whole number") for name in _INTEGER_TYPES},
    **{name: (_number, "a number such as 12.5") for name in _NUMBER_TYPES},
    **{name: (_datetime, "a date and time YYYY-MM-DDTHH:MM:SS") for name in _DATETIME_TYPES},
    "Bit": (_bit, "0, 1, true or false"),
    "Date": (_date, "a date YYYY-MM-DD"),
    "Time": (_time, "a time HH:MM:SS"),
    "UniqueIdentifier": (_uuid, "a UUID"),
}


def _checker(type_name: str) -> _Check | None:
    """The check for a type's values and what it expects, or None for free text."""
    return _CHECKS.get(type_name)


def parse_parameter(text: str) -> models.Parameter:
    """``NAME=TYPE:VALUE`` -> an input :class:`~halo_async.models.Parameter`.

    The name gets its ``@`` when it has none. Values are checked against their type here, so
    that ``id=Int:abc`` fails before anything is sent. Raises ``ValueError`` saying what is
    wrong.
    """
    name, equals, typed = text.partition("=")
    name = name.strip()
    if not equals or not name:
        raise ValueError(f"{text!r} is not NAME=TYPE:VALUE (e.g. '@id=Int:42')")
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a parameter name: use letters, digits and _ (e.g. '@surname')"
        )
    if not name.startswith("@"):
        name = f"@{name}"
    type_text, colon, value = typed.partition(":")
    type_name = _TYPES.get(type_text.strip().lower())
    if type_name is None:
        raise ValueError(
            f"parameter {name}: {type_text.strip()!r} is not a parameter type; use one of "
            f"{', '.join(sorted(PARAMETER_TYPES))}"
        )
    if not colon:
        return models.Parameter(
            name=name, type=type_name, value=None, direction=models.Direction.INPUT
        )
    # Spaces around the value go, as around the name and the type: '@s = NVarChar : Smi%'
    # sends 'Smi%', whatever the type.
    value = value.strip()
    checker = _checker(type_name)
    if checker is not None:
        check, expected = checker
        try:
            value = check(value)
        except (ValueError, KeyError):
            raise ValueError(
                f"parameter {name}: {value!r} is not a valid {type_name} (expected {expected})"
            ) from None
    return models.Parameter(
        name=name, type=type_name, value=value, direction=models.Direction.INPUT
    )


def parameters_callback(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[models.Parameter, ...]:
    """The click callback of ``--param``: a usage error names what is wrong with a value."""
    try:
        return tuple(parse_parameter(value) for value in values)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
