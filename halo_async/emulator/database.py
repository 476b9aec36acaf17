"""The emulated practice databases: one in-memory SQLite database per site and catalogue.

A :class:`PracticeDatabase` stands in for the SQL Server (Best Practice, D4W) or Firebird
(Zedmed) database behind one Halo Link. It runs integrators' commands as Halo would:

* ``text`` commands: T-SQL or Firebird SQL, translated to SQLite (:mod:`._tsql`), with
  ``@name`` parameters typed by their API type, in ``reader``, ``nonQuery`` or ``scalar`` mode;
* ``storedProcedure`` commands: a handful of Best Practice procedures implemented for real;
* failures as :class:`SqlError` with SQL Server (``mssql``) or Firebird (``fbsql``) numbers and
  messages, which the HTTP side reports as ``errorDetails``.

Nothing is generated until the first command: an emulator of hundreds of sites starts at once
and only builds the databases it is asked about. Given a :class:`~._template.TemplateCache`,
sites of the same dataset share one generated template and each gets a ~1 ms copy of it, with
its own site rows (:func:`.dataset.add_site_rows`). Every command runs in a
:class:`~._sandbox.Sandbox`: bounded in time and result size, and kept inside its database.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import functools
import re
import sqlite3
import threading
import uuid
import zlib
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NoReturn, cast

from halo_async.emulator import _sandbox, _template, _tsql, dataset
from halo_async.emulator._sandbox import ExecutionLimits, ResultTooLargeError, Sandbox
from halo_async.emulator._template import TemplateCache

__all__ = [
    "Catalogue",
    "ExecutionLimits",
    "ExecutionResult",
    "ParameterConversionError",
    "PracticeDatabase",
    "ResultTooLargeError",
    "SqlError",
    "UnknownCatalogueError",
    "catalogues_for",
]

ExecutionMode = Literal["reader", "nonQuery", "scalar"]
_EXECUTION_MODES = ("reader", "nonQuery", "scalar")
_COMMAND_TYPES = ("text", "storedProcedure")

#: The known issue of REFERENCE §3, word for word.
KNOWN_ISSUE_MESSAGE = (
    "Failed to convert parameter value from a String to a Byte[]. --> Invalid cast from "
    "'System.String' to 'System.Byte[]'. Please correct your request and try again."
)
_VARBINARY_LIMIT = 8000
_NVARCHAR_LIMIT = 4000


class SqlError(Exception):
    """A SQL failure, reported to integrators as errorDetails."""

    error_type: str
    error_code: int
    message: str

    def __init__(self, error_type: str, error_code: int, message: str) -> None:
        super().__init__(f"{error_type} {error_code}: {message}")
        self.error_type = error_type
        self.error_code = error_code
        self.message = message


class ParameterConversionError(Exception):
    """The storedProcedure VarBinary>8000 / NVarChar>4000 known issue: HTTP 400, this message."""

    message: str

    def __init__(self, message: str = KNOWN_ISSUE_MESSAGE) -> None:
        super().__init__(message)
        self.message = message


class UnknownCatalogueError(Exception):
    """The command named a catalogue the site does not have (HTTP 400)."""

    catalogue: str

    def __init__(self, catalogue: str) -> None:
        super().__init__(f"Unknown catalogue {catalogue!r}")
        self.catalogue = catalogue


@dataclasses.dataclass(frozen=True)
class Catalogue:
    """One database of a site, as listed in the site's ``catalogue`` array."""

    name: str
    is_default: bool


@dataclasses.dataclass(frozen=True)
class ExecutionResult:
    """What one command produced, with JSON-ready values."""

    #: reader mode: rows of the first result set (``[]`` if none); None otherwise.
    rows: list[dict[str, Any]] | None
    #: nonQuery mode: rows changed by INSERT/UPDATE/DELETE, -1 if none ran; None otherwise.
    rows_affected: int | None
    #: scalar mode: first value of the first row, or None.
    scalar: Any
    #: The command's parameters echoed, outputs and return values filled in as strings.
    parameters: list[dict[str, Any]]


_PMS_SQL_DIALECTS: dict[str, _tsql.SqlDialect] = {
    "BestPractice": "tsql",
    "D4w": "tsql",
    "Zedmed": "firebird",
}
_CATALOGUE_BUILDERS: dict[str, tuple[tuple[str, Callable[..., None]], ...]] = {
    "BestPractice": ((dataset.BEST_PRACTICE_CATALOGUE, dataset.build_best_practice),),
    "Zedmed": (
        (dataset.ZEDMED_CLINICAL_CATALOGUE, dataset.build_zedmed_clinical),
        (dataset.ZEDMED_ACCOUNTS_CATALOGUE, dataset.build_zedmed_accounts),
    ),
    "D4w": ((dataset.D4W_CATALOGUE, dataset.build_d4w),),
}


def _pms_key(pms_type: str) -> str:
    # The API spells Best Practice two ways (REFERENCE §11 #13); accept both and any case.
    folded = pms_type.replace(" ", "").casefold()
    for key in _CATALOGUE_BUILDERS:
        if key.casefold() == folded:
            return key
    raise ValueError(f"Unknown practice management system {pms_type!r}")


def catalogues_for(pms_type: str) -> list[Catalogue]:
    """The catalogues of a PMS type; the first is the default.

    pms_type is "BestPractice" | "Zedmed" | "D4w". BestPractice: [Catalogue("Patients", True)].
    """
    builders = _CATALOGUE_BUILDERS[_pms_key(pms_type)]
    return [Catalogue(name, index == 0) for index, (name, _build) in enumerate(builders)]


# --------------------------------------------------------------------------------------------
# Failures, whatever the dialect, and how each dialect words them

_FailureKind = Literal[
    "object", "column", "syntax", "unterminated", "unsupported", "procedure", "convert_int",
    "convert_numeric", "convert_date", "convert_uuid", "convert_binary", "overflow",
    "divide_by_zero", "undeclared", "ambiguous", "function", "unique", "not_null",
    "column_count", "view", "not_parameter", "missing_parameter", "raise", "other",
    "commit_without_begin", "rollback_without_begin", "invalid_length", "construct_date",
    "operand", "throw",
]  # fmt: skip


class _Failure(Exception):
    """A failure before it is worded for SQL Server or Firebird."""

    def __init__(self, kind: _FailureKind, args_: tuple[str, ...] = ()) -> None:
        super().__init__(kind, *args_)
        self.kind: _FailureKind = kind
        self.args_ = args_


_FB = "Dynamic SQL Error\nSQL error code = {code}\n"
_MESSAGES: dict[str, dict[str, tuple[int, str]]] = {
    "mssql": {
        "object": (208, "Invalid object name '{0}'."),
        "column": (207, "Invalid column name '{0}'."),
        "syntax": (102, "Incorrect syntax near '{0}'."),
        "unterminated": (105, "Unclosed quotation mark after the character string '{0}'."),
        "unsupported": (
            102,
            "Incorrect syntax near '{0}'. (The Halo emulator does not run this statement.)",
        ),
        "procedure": (2812, "Could not find stored procedure '{0}'."),
        "convert_int": (
            245,
            "Conversion failed when converting the {1} value '{0}' to data type {2}."
        ),
        "convert_numeric": (8114, "Error converting data type {1} to {2}."),
        "convert_date": (
            241,
            "Conversion failed when converting date and/or time from character string."
        ),
        "convert_uuid": (
            8169,
            "Conversion failed when converting from a character string to uniqueidentifier."
        ),
        "convert_binary": (8114, "Error converting data type nvarchar to varbinary."),
        "overflow": (8115, "Arithmetic overflow error converting expression to data type {1}."),
        "divide_by_zero": (8134, "Divide by zero error encountered."),
        "undeclared": (137, 'Must declare the scalar variable "@{0}".'),
        "ambiguous": (209, "Ambiguous column name '{0}'."),
        "function": (195, "'{0}' is not a recognized built-in function name."),
        "unique": (
            2627,
            "Violation of PRIMARY KEY constraint 'PK_{0}'. Cannot insert duplicate key in object "
            "'dbo.{0}'."
        ),
        "not_null": (
            515,
            "Cannot insert the value NULL into column '{1}', table 'dbo.{0}'; column does not "
            "allow nulls. INSERT fails."
        ),
        "column_count": (
            213,
            "Column name or number of supplied values does not match table definition."
        ),
        "view": (
            4405,
            "View or function '{0}' is not updatable because the modification affects multiple "
            "base tables."
        ),
        "not_parameter": (8145, "@{0} is not a parameter for procedure {1}."),
        "missing_parameter": (
            201,
            "Procedure or function '{1}' expects parameter '@{0}', which was not supplied."
        ),
        "raise": (50000, "{0}"),
        "throw": (50000, "{1}"),
        "other": (8180, "Statement(s) could not be prepared. {0}"),
        "commit_without_begin": (
            3902,
            "The COMMIT TRANSACTION request has no corresponding BEGIN TRANSACTION."
        ),
        "rollback_without_begin": (
            3903,
            "The ROLLBACK TRANSACTION request has no corresponding BEGIN TRANSACTION."
        ),
        "invalid_length": (537, "Invalid length parameter passed to the {0} function."),
        "construct_date": (
            289,
            "Cannot construct data type date, some of the arguments have values which are not "
            "valid."
        ),
        "operand": (8117, "Operand data type {0} is invalid for {1} operator."),
    },
    "fbsql": {
        "object": (-204, _FB.format(code=-204) + "Table unknown\n{0}"),
        "column": (-206, _FB.format(code=-206) + "Column unknown\n{0}"),
        "syntax": (-104, _FB.format(code=-104) + "Token unknown\n{0}"),
        "unterminated": (-104, _FB.format(code=-104) + "Unexpected end of command"),
        "unsupported": (-104, _FB.format(code=-104) + "Token unknown\n{0}"),
        "procedure": (-204, _FB.format(code=-204) + "Procedure unknown\n{0}"),
        "convert_int": (-413, 'conversion error from string "{0}"'),
        "convert_numeric": (-413, 'conversion error from string "{0}"'),
        "convert_date": (-413, 'conversion error from string "{0}"'),
        "convert_uuid": (-413, 'conversion error from string "{0}"'),
        "convert_binary": (-413, 'conversion error from string "{0}"'),
        "overflow": (
            -802,
            "arithmetic exception, numeric overflow, or string truncation\nnumeric value is out "
            "of range"
        ),
        "divide_by_zero": (
            -802,
            "arithmetic exception, numeric overflow, or string truncation\nInteger divide by "
            "zero.  The code attempted to divide an integer value by an integer divisor of zero."
        ),
        "undeclared": (-206, _FB.format(code=-206) + "Column unknown\n@{0}"),
        "ambiguous": (
            -204,
            _FB.format(code=-204)
            + "Ambiguous field name between a field and a field in the select list with name\n{0}"
        ),
        "function": (-804, _FB.format(code=-804) + "Function unknown\n{0}"),
        "unique": (-803, 'violation of PRIMARY or UNIQUE KEY constraint "PK_{0}" on table "{0}"'),
        "not_null": (-625, 'validation error for column "{0}"."{1}", value "*** null ***"'),
        "column_count": (
            -804,
            _FB.format(code=-804)
            + "Count of read-write columns does not equal count of values"
        ),
        "view": (-150, "attempted update of read-only table"),
        "not_parameter": (
            -170,
            _FB.format(code=-170)
            + "Input parameter mismatch for procedure {1}"
        ),
        "missing_parameter": (
            -170,
            _FB.format(code=-170)
            + "Input parameter mismatch for procedure {1}"
        ),
        "raise": (-836, "exception 1\n{0}"),
        "throw": (-836, "exception 1\n{1}"),
        "other": (-901, "{0}"),
        "commit_without_begin": (
            -901,
            "invalid transaction handle (expecting explicit transaction start)"
        ),
        "rollback_without_begin": (
            -901,
            "invalid transaction handle (expecting explicit transaction start)"
        ),
        "invalid_length": (
            -833,
            "expression evaluation not supported\nInvalid length parameter {0}"
        ),
        "construct_date": (-833, "expression evaluation not supported"),
        "operand": (-833, "expression evaluation not supported\nArithmetic on {0} with {1}"),
    },
}  # fmt: skip


def _sql_error(error_type: str, failure: _Failure) -> SqlError:
    code, template = _MESSAGES[error_type][failure.kind]
    if failure.kind == "throw":
        code = int(failure.args_[0])  # THROW names its own error number
    return SqlError(error_type, code, template.format(*failure.args_, "", "", ""))


def _sqlite_failure(error: sqlite3.Error, object_names: Mapping[str, str]) -> _Failure:
    """Classify a SQLite error message into the failure SQL Server would have reported."""
    message = str(error)

    def after(prefix: str) -> str:
        return message[len(prefix) :].strip()

    if message.startswith("no such table:"):
        name = after("no such table:").split(".")[-1]
        return _Failure("object", (object_names.get(name.lower(), name),))
    if message.startswith("no such column:"):
        return _Failure("column", (after("no such column:").split(".")[-1],))
    if message.startswith("ambiguous column name:"):
        return _Failure("ambiguous", (after("ambiguous column name:").split(".")[-1],))
    if message.startswith("no such function:"):
        return _Failure("function", (after("no such function:"),))
    if message.startswith("near ") and message.endswith("syntax error"):
        return _Failure("syntax", (message[len("near ") :].split(":")[0].strip('"'),))
    if message == "incomplete input":
        return _Failure("syntax", ("end of batch",))
    if message.startswith(("UNIQUE constraint failed:", "PRIMARY KEY constraint failed:")):
        table = message.split(":", 1)[1].strip().split(".")[0]
        return _Failure("unique", (table,))
    if message.startswith("NOT NULL constraint failed:"):
        table, _, column = message.split(":", 1)[1].strip().partition(".")
        return _Failure("not_null", (table, column))
    if "values were supplied" in message or " values for " in message:
        return _Failure("column_count")
    if message.startswith("no such savepoint:"):
        return _Failure("commit_without_begin")
    if message.startswith("cannot rollback - no transaction is active"):
        return _Failure("rollback_without_begin")
    if message.startswith("cannot modify") and "view" in message:
        return _Failure("view", (message.split()[2],))
    return _Failure("other", (message,))


# --------------------------------------------------------------------------------------------
# Values: API strings in, SQLite values inside, JSON-ready values out

_INT_RANGES = {
    "TinyInt": (0, 255, "tinyint"),
    "SmallInt": (-(2**15), 2**15 - 1, "smallint"),
    "Int": (-(2**31), 2**31 - 1, "int"),
    "BigInt": (-(2**63), 2**63 - 1, "bigint"),
}
_FLOAT_TYPES = {"Decimal": "numeric", "Money": "money", "SmallMoney": "smallmoney",
                "Float": "float", "Real": "real"}  # fmt: skip
_DATE_TYPES = ("Date", "DateTime", "DateTime2", "SmallDateTime", "DateTimeOffset")
_BINARY_TYPES = ("Binary", "VarBinary", "Image", "Timestamp")
_API_TYPE_NAMES = (
    "BigInt", "Binary", "Bit", "Char", "String", "Date", "DateTime", "DateTime2",
    "DateTimeOffset", "Decimal", "Float", "Image", "Int", "Money", "NChar", "NText",
    "NVarChar", "Real", "SmallDateTime", "SmallInt", "SmallMoney", "Structured", "Text",
    "Time", "Timestamp", "TinyInt", "Udt", "UniqueIdentifier", "VarBinary", "VarChar",
    "Variant", "Xml",
)  # fmt: skip
_API_TYPES = {name.casefold(): name for name in _API_TYPE_NAMES}


def _canonical_type(api_type: Any) -> str | None:
    if not isinstance(api_type, str):
        return None
    return _API_TYPES.get(api_type.casefold())


def _parse_datetime(value: str) -> datetime.datetime | None:
    text = value.strip()
    if len(text) == 8 and text.isdigit():
        text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed


def _iso(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def _to_int(value: Any, sql_type: str = "int", source: str = "varchar") -> int:
    if value is None:
        raise TypeError("None has no integer value")
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)  # SQL Server truncates towards zero.
    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    stripped = text.strip()
    if sql_type == "bit" and stripped.casefold() in ("true", "false"):
        return int(stripped.casefold() == "true")
    try:
        number = int(stripped)
    except ValueError:
        raise _Failure("convert_int", (text, source, sql_type)) from None
    if sql_type == "bit":
        return 1 if number else 0
    return number


def _to_float(value: Any, sql_type: str = "numeric", source: str = "varchar") -> float:
    if isinstance(value, int | float):
        return float(value)
    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    try:
        return float(text.strip().lstrip("$"))
    except ValueError:
        raise _Failure("convert_numeric", (text, source, sql_type)) from None


def _to_datetime_text(value: Any, *, date_only: bool) -> str:
    if isinstance(value, int | float):
        # SQL Server counts numbers as days since 1900-01-01.
        moment = datetime.datetime(1900, 1, 1) + datetime.timedelta(days=value)
    else:
        parsed = _parse_datetime(str(value))
        if parsed is None:
            raise _Failure("convert_date", (str(value),))
        moment = parsed.replace(tzinfo=None)
    if date_only:
        moment = datetime.datetime.combine(moment.date(), datetime.time())
    return _iso(moment)


def _convert_parameter(api_type: str | None, value: Any) -> Any:
    """A parameter's wire value (a plain string) as the SQLite value of its API type."""
    if value is None:
        return None
    if not isinstance(value, str):
        value = str(value).lower() if isinstance(value, bool) else str(value)
    if api_type in _INT_RANGES:
        low, high, sql_type = _INT_RANGES[api_type]
        number = _to_int(value, sql_type, "nvarchar")
        if not low <= number <= high:
            raise _Failure("overflow", (value, sql_type))
        return number
    if api_type == "Bit":
        return _to_int(value, "bit", "nvarchar")
    if api_type in _FLOAT_TYPES:
        return _to_float(value, _FLOAT_TYPES[api_type], "nvarchar")
    if api_type in _DATE_TYPES:
        return _to_datetime_text(value, date_only=api_type == "Date")
    if api_type == "Time":
        try:
            return datetime.time.fromisoformat(value.strip()).strftime("%H:%M:%S")
        except ValueError:
            raise _Failure("convert_date", (value,)) from None
    if api_type == "UniqueIdentifier":
        try:
            return str(uuid.UUID(value.strip())).upper()
        except ValueError:
            raise _Failure("convert_uuid", (value,)) from None
    if api_type in _BINARY_TYPES:
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            raise _Failure("convert_binary", (value,)) from None
    return value


def _wire_value(value: Any) -> str | None:
    """An output parameter's value as Halo sends it: a plain string (REFERENCE §3)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else repr(value)
    return str(value)


def _json_rows(columns: Sequence[str], rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts. Datetimes are already ISO text; only BLOBs need encoding."""
    encoded = []
    for row in rows:
        if bytes in map(type, row):
            row = tuple(
                base64.b64encode(v).decode("ascii") if isinstance(v, bytes) else v for v in row
            )
        encoded.append(dict(zip(columns, row, strict=False)))
    return encoded


# --------------------------------------------------------------------------------------------
# SQL Server's date arithmetic, for the functions the translated SQL calls


def _moment(value: Any) -> datetime.datetime | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return datetime.datetime(1900, 1, 1) + datetime.timedelta(days=value)
    parsed = _parse_datetime(str(value))
    if parsed is None:
        raise _Failure("convert_date", (str(value),))
    return parsed.replace(tzinfo=None)


def _add_months(moment: datetime.datetime, months: int) -> datetime.datetime:
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    next_month = datetime.date(year + (month == 12), month % 12 + 1, 1)
    last_day = (next_month - datetime.timedelta(days=1)).day
    return moment.replace(year=year, month=month, day=min(moment.day, last_day))


def _date_add(unit: str, amount: Any, value: Any) -> str | None:
    moment = _moment(value)
    if moment is None or amount is None:
        return None
    n = _to_int(amount)
    if unit in ("year", "quarter", "month"):
        moment = _add_months(moment, n * {"year": 12, "quarter": 3, "month": 1}[unit])
    else:
        seconds = {"dayofyear": 86400, "day": 86400, "weekday": 86400, "week": 604800,
                   "hour": 3600, "minute": 60, "second": 1, "millisecond": 0.001}  # fmt: skip
        if unit not in seconds:
            raise _Failure("other", (f"'{unit}' is not a recognized dateadd option.",))
        moment += datetime.timedelta(seconds=n * seconds[unit])
    return _iso(moment)


def _week_start(day: datetime.date) -> datetime.date:
    # SQL Server's weeks start on Sunday (DATEFIRST 7).
    return day - datetime.timedelta(days=day.isoweekday() % 7)


def _week_of_year(day: datetime.date) -> int:
    return (_week_start(day) - _week_start(day.replace(month=1, day=1))).days // 7 + 1


def _date_diff(unit: str, start_value: Any, end_value: Any) -> int | None:
    """Boundaries crossed between two moments, as SQL Server's DATEDIFF counts them."""
    start, end = _moment(start_value), _moment(end_value)
    if start is None or end is None:
        return None
    if unit == "year":
        return end.year - start.year
    if unit == "quarter":
        return (end.year * 4 + (end.month - 1) // 3) - (start.year * 4 + (start.month - 1) // 3)
    if unit == "month":
        return (end.year * 12 + end.month) - (start.year * 12 + start.month)
    if unit in ("day", "dayofyear", "weekday"):
        return (end.date() - start.date()).days
    if unit == "week":
        return (_week_start(end.date()) - _week_start(start.date())).days // 7
    sizes = {"hour": 3600, "minute": 60, "second": 1}
    if unit in sizes:
        size = sizes[unit]
        epoch = datetime.datetime(1900, 1, 1)
        return int((end - epoch).total_seconds() // size - (start - epoch).total_seconds() // size)
    if unit == "millisecond":
        return int((end - start).total_seconds() * 1000)
    raise _Failure("other", (f"'{unit}' is not a recognized datediff option.",))


def _date_part(unit: str, value: Any) -> int | None:
    moment = _moment(value)
    if moment is None:
        return None
    parts: dict[str, Callable[[datetime.datetime], int]] = {
        "year": lambda m: m.year,
        "quarter": lambda m: (m.month - 1) // 3 + 1,
        "month": lambda m: m.month,
        "dayofyear": lambda m: m.timetuple().tm_yday,
        "day": lambda m: m.day,
        "week": lambda m: _week_of_year(m.date()),
        "weekday": lambda m: m.isoweekday() % 7 + 1,
        "hour": lambda m: m.hour,
        "minute": lambda m: m.minute,
        "second": lambda m: m.second,
        "millisecond": lambda m: m.microsecond // 1000,
    }  # fmt: skip
    if unit not in parts:
        raise _Failure("other", (f"'{unit}' is not a recognized datepart option.",))
    return parts[unit](moment)


_STYLES = {
    1: "%m/%d/%y", 101: "%m/%d/%Y", 3: "%d/%m/%y", 103: "%d/%m/%Y", 4: "%d.%m.%y",
    104: "%d.%m.%Y", 5: "%d-%m-%y", 105: "%d-%m-%Y", 11: "%y/%m/%d", 111: "%Y/%m/%d",
    12: "%y%m%d", 112: "%Y%m%d", 23: "%Y-%m-%d", 108: "%H:%M:%S", 8: "%H:%M:%S",
    20: "%Y-%m-%d %H:%M:%S", 120: "%Y-%m-%d %H:%M:%S", 126: "%Y-%m-%dT%H:%M:%S",
    127: "%Y-%m-%dT%H:%M:%S",
}  # fmt: skip


def _to_text(value: Any, length: int, style: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        text = value.decode(errors="replace")
    elif isinstance(value, float):
        text = _wire_value(value) or ""
    else:
        text = str(value)
    if style is not None and isinstance(value, str) and style in _STYLES:
        moment = _parse_datetime(value)
        if moment is not None:
            text = moment.strftime(_STYLES[style])
    elif style == 0 and _is_moment(value):
        text = _text(value)  # T-SQL's CAST(datetime AS varchar): 'May 27 2025 10:30AM'
    elif style == "firebird" and _is_moment(value):
        # Firebird's DATE as text is '2025-05-27', a TIMESTAMP '2025-05-27 10:30:15.0000'.
        # Stored alike, a midnight reads as a date: the emulator cannot tell them apart.
        text = value[:10] if value.endswith("T00:00:00") else f"{value[:10]} {value[11:]}.0000"
    return text[:length] if length > 0 else text


def _from_styled_text(value: Any, style: Any, date_only: bool) -> str:
    """CONVERT(date, '27/05/2025', 103): text read in the given style."""
    if isinstance(value, str) and style in _STYLES:
        try:
            moment = datetime.datetime.strptime(value.strip(), _STYLES[style])
        except ValueError:
            pass
        else:
            return _to_datetime_text(_iso(moment), date_only=date_only)
    return _to_datetime_text(value, date_only=date_only)


def _cast(value: Any, kind: str, length: Any = 0, style: Any = None) -> Any:
    if value is None:
        return None
    if style == _SQL_SERVER_NUMBER and _is_moment(value) and kind in ("int", "float"):
        # SQL Server's datetime as a number: days since 1900-01-01, the time as a fraction
        # (CAST(FLOOR(CAST(GETDATE() AS float)) AS datetime) is an old way to drop the time).
        days = (datetime.datetime.fromisoformat(value) - _DAY_ZERO).total_seconds() / 86400
        return int(days + 0.5) if kind == "int" else days
    if kind == "int":
        return _to_int(value)
    if kind == "float":
        return _to_float(value)
    if kind in ("date", "datetime"):
        return _from_styled_text(value, style, date_only=kind == "date")
    if kind == "text":
        return _to_text(value, int(length or 0), style)
    return value


#: The style argument T-SQL's numeric casts pass: datetimes convert to day numbers there
#: (in Firebird they do not convert at all).
_SQL_SERVER_NUMBER = "tsql"


def _is_moment(value: Any) -> bool:
    """A stored datetime: ISO text ``YYYY-MM-DDTHH:MM:SS``, the one shape the databases give
    datetimes (dates are midnight), and one no other text column holds."""
    return (
        isinstance(value, str)
        and len(value) == 19
        and value[10] == "T"
        and value[4] == "-"
        and value[7] == "-"
    )


def _number(value: Any, like: Any = 0.0) -> int | float:
    """Text converted for arithmetic with ``like``, as SQL Server converts it: int with int."""
    if isinstance(value, int | float):
        return value
    return _to_int(value) if isinstance(like, int) else _to_float(value)


_DAY_ZERO = datetime.datetime(1900, 1, 1)


def _shift_days(moment: str, days: Any) -> str:
    """A datetime plus a number of days, as ``GETDATE() - 7`` and Firebird's ``d + 1`` mean."""
    try:
        shifted = datetime.datetime.fromisoformat(moment) + datetime.timedelta(days=_number(days))
    except OverflowError:
        raise _Failure("overflow", (moment, "datetime")) from None
    return _iso(shifted)


def _add(left: Any, right: Any) -> Any:
    """T-SQL's ``+``: text + text concatenates, datetime + n adds days, number + text converts
    the text to a number (and fails if it is not one)."""
    if left is None or right is None:
        return None
    if isinstance(left, str) and isinstance(right, str):
        return left + right
    if _is_moment(left):
        return _shift_days(left, right)
    if _is_moment(right):
        return _shift_days(right, left)
    return _number(left, right) + _number(right, left)


def _sub(left: Any, right: Any) -> Any:
    """T-SQL's ``-``: datetime - n subtracts days; datetime - datetime is a datetime counted
    from 1900-01-01, as SQL Server gives it."""
    if left is None or right is None:
        return None
    if _is_moment(left) and _is_moment(right):
        difference = datetime.datetime.fromisoformat(left) - datetime.datetime.fromisoformat(right)
        return _iso(_DAY_ZERO + difference)
    if _is_moment(left):
        return _shift_days(left, -_number(right))
    if isinstance(left, str) and isinstance(right, str):
        raise _Failure("operand", ("varchar", "subtract"))
    return _number(left, right) - _number(right, left)


def _fb_number(value: Any) -> int | float:
    if isinstance(value, int | float):
        return value
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise _Failure("convert_numeric", (str(value),)) from None


def _fb_add(left: Any, right: Any) -> Any:
    """Firebird's ``+``: a date or timestamp plus n adds days; text is converted to a number
    (Firebird concatenates only with ``||``)."""
    if left is None or right is None:
        return None
    if _is_moment(left) and not _is_moment(right):
        return _shift_days(left, _fb_number(right))
    if _is_moment(right) and not _is_moment(left):
        return _shift_days(right, _fb_number(left))
    if _is_moment(left):
        raise _Failure("operand", ("TIMESTAMP", "TIMESTAMP"))
    return _fb_number(left) + _fb_number(right)


def _fb_sub(left: Any, right: Any) -> Any:
    """Firebird's ``-``: date - n subtracts days; date - date is the days between them."""
    if left is None or right is None:
        return None
    if _is_moment(left) and _is_moment(right):
        days = (
            datetime.datetime.fromisoformat(left) - datetime.datetime.fromisoformat(right)
        ).total_seconds() / 86400
        return int(days) if days.is_integer() else days
    if _is_moment(left):
        return _shift_days(left, -_fb_number(right))
    if _is_moment(right):
        raise _Failure("operand", ("a number", "TIMESTAMP"))
    return _fb_number(left) - _fb_number(right)


def _divide(dividend: Any, divisor: Any) -> Any:
    if dividend is None or divisor is None:
        return None
    a = dividend if isinstance(dividend, int | float) else _to_float(dividend)
    b = divisor if isinstance(divisor, int | float) else _to_float(divisor)
    if b == 0:
        raise _Failure("divide_by_zero")
    if isinstance(a, int) and isinstance(b, int):
        quotient = abs(a) // abs(b)  # SQL Server truncates integer division towards zero.
        return quotient if (a >= 0) == (b >= 0) else -quotient
    return a / b


# --------------------------------------------------------------------------------------------
# SQL Server's and Firebird's string and date functions, where SQLite's namesakes differ


def _style_zero(moment: datetime.datetime) -> str:
    """SQL Server's default datetime-to-text conversion (style 0): ``May 27 2025 10:30AM``."""
    hour = moment.hour % 12 or 12
    half = "AM" if moment.hour < 12 else "PM"
    return f"{moment:%b} {moment.day:>2} {moment.year} {hour:>2}:{moment:%M}{half}"


def _text(value: Any) -> str:
    """A value as T-SQL's implicit conversion to varchar spells it."""
    if isinstance(value, str):
        return _style_zero(datetime.datetime.fromisoformat(value)) if _is_moment(value) else value
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, float):
        return _wire_value(value) or ""
    return str(value)


def _left(value: Any, count: Any) -> str | None:
    if value is None or count is None:
        return None
    n = _to_int(count)
    if n < 0:
        raise _Failure("invalid_length", ("left",))
    return _text(value)[:n]


def _right(value: Any, count: Any) -> str | None:
    if value is None or count is None:
        return None
    n = _to_int(count)
    if n < 0:
        raise _Failure("invalid_length", ("right",))
    text = _text(value)
    return text[len(text) - n :] if n else ""


def _len(value: Any) -> int | None:
    # LEN ignores trailing spaces (and counts the spaces before them).
    return None if value is None else len(_text(value).rstrip(" "))


def _charindex(needle: Any, haystack: Any, start: Any = None) -> int | None:
    if needle is None or haystack is None:
        return None
    wanted = _text(needle).lower()  # the default collation is case-insensitive
    if not wanted:
        return 0
    begin = max(_to_int(start) - 1, 0) if start is not None else 0
    return _text(haystack).lower().find(wanted, begin) + 1


def _substring(value: Any, start: Any, length: Any) -> str | None:
    if value is None or start is None or length is None:
        return None
    first, count = _to_int(start), _to_int(length)
    if count < 0:
        raise _Failure("invalid_length", ("substring",))
    # Positions before 1 count towards the length, as SQL Server counts them.
    return _text(value)[max(first - 1, 0) : max(first - 1 + count, 0)]


def _concat(*values: Any) -> str:
    return "".join(_text(v) for v in values if v is not None)  # CONCAT treats NULL as ''


def _concat_ws(separator: Any, *values: Any) -> str | None:
    if separator is None:
        return None
    return _text(separator).join(_text(v) for v in values if v is not None)


def _replicate(value: Any, count: Any) -> str | None:
    if value is None or count is None:
        return None
    n = _to_int(count)
    return _text(value) * n if n >= 0 else None


def _stuff(value: Any, start: Any, length: Any, replacement: Any) -> str | None:
    if value is None or start is None or length is None:
        return None
    text, first, count = _text(value), _to_int(start), _to_int(length)
    if first < 1 or first > len(text) or count < 0:
        return None
    insert = _text(replacement) if replacement is not None else ""
    return text[: first - 1] + insert + text[first - 1 + count :]


def _date_from_parts(year: Any, month: Any, day: Any) -> str | None:
    if year is None or month is None or day is None:
        return None
    try:
        made = datetime.date(_to_int(year), _to_int(month), _to_int(day))
    except ValueError:
        raise _Failure("construct_date") from None
    return _midnight_text(made)


def _midnight_text(day: datetime.date) -> str:
    return f"{day.isoformat()}T00:00:00"


def _end_of_month(value: Any, months: Any = None) -> str | None:
    moment = _moment(value)
    if moment is None:
        return None
    if months is not None:
        moment = _add_months(moment, _to_int(months))
    following = datetime.date(moment.year + (moment.month == 12), moment.month % 12 + 1, 1)
    return _midnight_text(following - datetime.timedelta(days=1))


_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July", "August",
                "September", "October", "November", "December")  # fmt: skip


def _date_name(unit: str, value: Any) -> str | None:
    moment = _moment(value)
    if moment is None:
        return None
    if unit == "weekday":
        return _DAY_NAMES[moment.weekday()]
    if unit == "month":
        return _MONTH_NAMES[moment.month - 1]
    return str(_date_part(unit, value))


def _new_id() -> str:
    return str(uuid.uuid4()).upper()


@functools.lru_cache(maxsize=256)
def _like_pattern(pattern: str, escape: str | None, classes: bool, fold: bool) -> re.Pattern[str]:
    """A LIKE pattern as a regular expression: % and _, T-SQL's [a-c] and [^a] classes."""
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if escape and char == escape and i + 1 < len(pattern):
            parts.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        elif char == "[" and classes and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            escaped = "".join("\\" + c if c in "\\]^[" else c for c in body)
            parts.append(f"[{'^' if negate else ''}{escaped}]")
            i = end
        else:
            parts.append(re.escape(char))
        i += 1
    flags = re.DOTALL | (re.IGNORECASE if fold else 0)
    return re.compile("".join(parts), flags)


def _like(value: Any, pattern: Any, escape: Any = None) -> int | None:
    """T-SQL's LIKE: case-insensitive, with classes; trailing spaces of the value ignored."""
    if value is None or pattern is None:
        return None
    regex = _like_pattern(_text(pattern), escape, True, True)
    return int(regex.fullmatch(_text(value).rstrip(" ")) is not None)


def _fb_like(value: Any, pattern: Any, escape: Any = None) -> int | None:
    """Firebird's LIKE: case-sensitive, only % and _."""
    if value is None or pattern is None:
        return None
    regex = _like_pattern(str(pattern), escape, False, False)
    return int(regex.fullmatch(str(value)) is not None)


def _pad(value: Any, length: Any, padding: Any, left: bool) -> str | None:
    """Firebird's LPAD and RPAD: padded, or cut, to exactly ``length`` characters."""
    if value is None or length is None:
        return None
    text, n = str(value), _to_int(length)
    fill = " " if padding is None else str(padding)
    if len(text) >= n or not fill:
        return text[:n]
    extra = (fill * (n // len(fill) + 1))[: n - len(text)]
    return extra + text if left else text + extra


def _lpad(value: Any, length: Any, padding: Any = None) -> str | None:
    return _pad(value, length, padding, left=True)


def _rpad(value: Any, length: Any, padding: Any = None) -> str | None:
    return _pad(value, length, padding, left=False)


def _reverse(value: Any) -> str | None:
    return None if value is None else str(value)[::-1]


def _starting(value: Any, prefix: Any) -> int | None:
    """Firebird's STARTING WITH: case-sensitive, as the default collation compares."""
    if value is None or prefix is None:
        return None
    return int(str(value).startswith(str(prefix)))


def _containing(value: Any, part: Any) -> int | None:
    """Firebird's CONTAINING: case-insensitive, whatever the collation."""
    if value is None or part is None:
        return None
    return int(str(part).lower() in str(value).lower())


class _Average:
    """AVG as SQL Server and Firebird compute it: of integers an integer, truncated towards
    zero; of anything else a float. Text is not averaged."""

    def __init__(self) -> None:
        self.total: int | float = 0
        self.count = 0
        self.exact = True

    def step(self, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, str | bytes):
            raise _Failure("operand", ("varchar", "avg"))
        self.total += value
        self.count += 1
        self.exact = self.exact and isinstance(value, int)

    def finalize(self) -> int | float | None:
        if not self.count:
            return None
        if not self.exact:
            return self.total / self.count
        quotient = abs(int(self.total)) // self.count
        return quotient if self.total >= 0 else -quotient


class _OrderedStringAggregate:
    """STRING_AGG(value, separator) WITHIN GROUP (ORDER BY ...): called with the value, the
    separator, then each sort key and its direction ('asc' or 'desc')."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, tuple[Any, ...], tuple[str, ...]]] = []
        self.separator = ","

    def step(self, value: Any, separator: Any, *keys: Any) -> None:
        self.separator = "" if separator is None else str(separator)
        if value is not None:  # STRING_AGG skips NULLs
            self.rows.append((_text(value), keys[0::2], tuple(map(str, keys[1::2]))))

    def finalize(self) -> str | None:
        if not self.rows:
            return None
        rows = list(self.rows)
        # Stable sorts, last key first; NULLs sort first ascending, as in SQL Server.
        for position in reversed(range(len(rows[0][1]))):
            descending = rows[0][2][position] == "desc"
            rows.sort(key=lambda row: _sort_key(row[1][position]), reverse=descending)
        return self.separator.join(row[0] for row in rows)


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    if isinstance(value, str):
        return (2, value.rstrip(" ").casefold())  # the default collation's order
    return (1, value)


def _try_cast(value: Any, kind: str, length: Any = 0, style: Any = None) -> Any:
    try:
        return _cast(value, kind, length, style)
    except _Failure:
        return None


#: The translated SQL's functions that need no clock or connection: name -> (arity, function).
_VALUE_FUNCTIONS: dict[str, tuple[int, Callable[..., Any]]] = {
    "halo_dateadd": (3, _date_add),
    "halo_datediff": (3, _date_diff),
    "halo_datepart": (2, _date_part),
    "halo_cast": (-1, _cast),
    "halo_try_cast": (-1, _try_cast),
    "halo_div": (2, _divide),
    "halo_add": (2, _add),
    "halo_sub": (2, _sub),
    "halo_fb_add": (2, _fb_add),
    "halo_fb_sub": (2, _fb_sub),
    "halo_charindex": (-1, _charindex),
    "halo_concat": (-1, _concat),
    "halo_concat_ws": (-1, _concat_ws),
    "halo_datefromparts": (3, _date_from_parts),
    "halo_datename": (2, _date_name),
    "halo_eomonth": (-1, _end_of_month),
    "halo_left": (2, _left),
    "halo_len": (1, _len),
    "halo_newid": (0, _new_id),
    "halo_replicate": (2, _replicate),
    "halo_right": (2, _right),
    "halo_stuff": (4, _stuff),
    "halo_substring": (3, _substring),
    "halo_like": (3, _like),
    "halo_fb_like": (3, _fb_like),
    "halo_starting": (2, _starting),
    "halo_containing": (2, _containing),
    "halo_lpad": (-1, _lpad),
    "halo_rpad": (-1, _rpad),
    "halo_reverse": (1, _reverse),
}


# --------------------------------------------------------------------------------------------
# Best Practice stored procedures


@dataclasses.dataclass(frozen=True)
class _ProcParam:
    name: str
    kind: Literal["int", "date", "text"]
    required: bool = True
    output: bool = False


@dataclasses.dataclass
class _ProcOutcome:
    columns: list[str] | None = None
    rows: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    rows_affected: int = -1
    return_value: int = 0
    outputs: dict[str, Any] = dataclasses.field(default_factory=dict)


class _ProcContext:
    """What a procedure body may use: the connection and the site's clock."""

    def __init__(self, conn: sqlite3.Connection, now: Callable[[], datetime.datetime]) -> None:
        self.conn = conn
        self.now = now

    def query(self, sql: str, params: Sequence[Any] = ()) -> _ProcOutcome:
        cursor = self.conn.execute(sql, params)
        columns = [d[0] for d in cursor.description]
        return _ProcOutcome(columns=columns, rows=cursor.fetchall())

    def value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def provider_name(self, user_id: int) -> str:
        name = self.value(
            "SELECT TRIM(COALESCE(T.TITLE || ' ', '') || TRIM(U.FIRSTNAME) || ' ' ||"
            " TRIM(U.SURNAME)) FROM USERS U LEFT JOIN TITLES T ON T.TITLECODE = U.TITLECODE"
            " WHERE U.USERID = ?",
            (user_id,),
        )
        return str(name) if name is not None else f"User {user_id}"


def _raise(message: str) -> NoReturn:
    raise _Failure("raise", (message,))


_Body = Callable[[_ProcContext, dict[str, Any]], _ProcOutcome]


@dataclasses.dataclass(frozen=True)
class _Procedure:
    name: str
    params: tuple[_ProcParam, ...]
    body: _Body


_PROCEDURES: dict[str, _Procedure] = {}


def _procedure(name: str, *params: _ProcParam) -> Callable[[_Body], _Body]:
    def register(body: _Body) -> _Body:
        _PROCEDURES[name.casefold()] = _Procedure(name, params, body)
        return body

    return register


def _p(name: str, kind: Literal["int", "date", "text"] = "int", **flags: bool) -> _ProcParam:
    return _ProcParam(name, kind, **flags)


_PATIENT_COLUMNS = (
    "InternalID, Title, Firstname, Middlename, Surname, Preferredname, DOB, Sex, Address1,"
    " Address2, City, Postcode, HomePhone, MobilePhone, Email, MedicareNo, MedicareLineNo,"
    " MedicareExpiry, StatusText, UsualDoctor"
)


@_procedure("BP_GetPatientByNameDOB", _p("firstname", "text"), _p("surname", "text"),
            _p("dob", "date"))  # fmt: skip
def _get_patient_by_name_dob(ctx: _ProcContext, args: dict[str, Any]) -> _ProcOutcome:
    return ctx.query(
        f"SELECT {_PATIENT_COLUMNS} FROM BPS_Patients"
        " WHERE Firstname = ? AND Surname = ? AND DOB = ? ORDER BY InternalID",
        (args["firstname"], args["surname"], args["dob"]),
    )


@_procedure("BP_GetAppointmentBookUsers")
def _get_appointment_book_users(ctx: _ProcContext, _args: dict[str, Any]) -> _ProcOutcome:
    return ctx.query(
        "SELECT UserID, Title, Firstname, Surname, ProviderNo, GroupName, LocationName"
        " FROM BPS_Users WHERE Appointments = 1 ORDER BY Surname, Firstname"
    )


@_procedure("BP_GetAllUsers")
def _get_all_users(ctx: _ProcContext, _args: dict[str, Any]) -> _ProcOutcome:
    return ctx.query(
        "SELECT UserID, Title, Firstname, Surname, ProviderNo, PrescriberNo, GroupName,"
        " LocationName, Email FROM BPS_Users ORDER BY Surname, Firstname"
    )


@_procedure("BP_GetPatientAppointments", _p("patientid"))
def _get_patient_appointments(ctx: _ProcContext, args: dict[str, Any]) -> _ProcOutcome:
    return ctx.query(
        "SELECT RecordID, AppointmentDate, AppointmentTime, AppointmentLength, UserID, Provider,"
        " LocationID, AppointmentType, Status, Reason FROM BPS_Appointments"
        " WHERE InternalID = ? ORDER BY AppointmentDate, AppointmentTime",
        (args["patientid"],),
    )


def _check_provider(ctx: _ProcContext, user_id: int, day: str) -> None:
    if ctx.value("SELECT APPOINTMENTS FROM USERS WHERE USERID = ?", (user_id,)) != 1:
        _raise(f"Practitioner {user_id} does not take appointments.")
    away = ctx.value(
        "SELECT COUNT(*) FROM DAYSAWAY WHERE USERID = ? AND RECORDSTATUS = 1"
        " AND ? BETWEEN STARTDATE AND FINISHDATE",
        (user_id, day),
    )
    if away:
        _raise(f"{ctx.provider_name(user_id)} is away on that date.")


def _check_free(
    ctx: _ProcContext, user_id: int, day: str, start: int, length: int, moving: int | None
) -> None:
    if not 0 <= start < 86400 or length <= 0 or start + length > 86400:
        _raise("The appointment time or length is not valid.")
    clash = ctx.value(
        "SELECT COUNT(*) FROM APPOINTMENTS WHERE USERID = ? AND APPOINTMENTDATE = ?"
        " AND RECORDSTATUS = 1 AND RECORDID <> ? AND APPOINTMENTTIME < ?"
        " AND APPOINTMENTTIME + APPOINTMENTLENGTH > ?",
        (user_id, day, moving or 0, start + length, start),
    )
    if clash:
        _raise("The practitioner already has an appointment at that time.")


@_procedure("BP_GetFreeAppointments", _p("userid"), _p("aptdate", "date"))
def _get_free_appointments(ctx: _ProcContext, args: dict[str, Any]) -> _ProcOutcome:
    user_id, day = args["userid"], args["aptdate"]
    _check_provider(ctx, user_id, day)
    weekday = datetime.date.fromisoformat(day[:10]).isoweekday() % 7 + 1
    sessions = ctx.conn.execute(
        "SELECT STARTTIME, ENDTIME, LENGTH, LOCATIONID FROM SESSIONS"
        " WHERE USERID = ? AND DAYOFWEEK = ? ORDER BY STARTTIME",
        (user_id, weekday),
    ).fetchall()
    booked = ctx.conn.execute(
        "SELECT APPOINTMENTTIME, APPOINTMENTTIME + APPOINTMENTLENGTH FROM APPOINTMENTS"
        " WHERE USERID = ? AND APPOINTMENTDATE = ? AND RECORDSTATUS = 1",
        (user_id, day),
    ).fetchall()
    now = ctx.now()
    earliest = now.hour * 3600 + now.minute * 60 if day[:10] == now.date().isoformat() else 0
    rows = []
    for start, end, length, location in sessions:
        for slot in range(start, end - length + 1, length):
            free = all(slot + length <= b_start or slot >= b_end for b_start, b_end in booked)
            if free and slot >= earliest:
                rows.append((day, slot, length, user_id, location))
    return _ProcOutcome(
        columns=["AppointmentDate", "AppointmentTime", "AppointmentLength", "UserID", "LocationID"],
        rows=rows,
    )


def _add_appointment(ctx: _ProcContext, args: dict[str, Any]) -> _ProcOutcome:
    user_id, patient_id, day = args["practitionerid"], args["patientid"], args["aptdate"]
    if not ctx.value(
        "SELECT COUNT(*) FROM PATIENTS WHERE INTERNALID = ? AND RECORDSTATUS = 1", (patient_id,)
    ):
        _raise(f"Patient {patient_id} does not exist.")
    _check_provider(ctx, user_id, day)
    _check_free(ctx, user_id, day, args["apttime"], args["aptlen"], None)
    appointment_type = args.get("appointmenttype") or 1
    cursor = ctx.conn.execute(
        "INSERT INTO APPOINTMENTS (INTERNALID, USERID, LOCATIONID, RECORDSTATUS, APPOINTMENTDATE,"
        " APPOINTMENTTIME, APPOINTMENTLENGTH, APPOINTMENTCODE, APPOINTMENTTYPE, URGENT,"
        " ARRIVALTIME, CONSULTATIONTIME, BOOKEDBY, REASON, COMMENT, VIDEOURL, CREATED)"
        " VALUES (?, ?, ?, 1, ?, ?, ?, 1, ?, 0, 0, 0, ?, ?, '', ?, ?)",
        (patient_id, user_id, args["locationid"], day, args["apttime"], args["aptlen"],
         appointment_type, args.get("loginid") or 0, args.get("reason") or "",
         args.get("videourl") or "", _iso(ctx.now())),
    )  # fmt: skip
    new_id = int(cursor.lastrowid or 0)
    return _ProcOutcome(rows_affected=1, return_value=new_id, outputs={"appointmentid": new_id})


_ADD_APPOINTMENT_PARAMS = (
    _p("aptdate", "date"), _p("apttime"), _p("aptlen"), _p("practitionerid"), _p("patientid"),
    _p("locationid"), _p("appointmentid", required=False, output=True),
)  # fmt: skip
_procedure("BP_AddAppointment", *_ADD_APPOINTMENT_PARAMS)(_add_appointment)
_procedure(
    "BP_AddAppointmentEx",
    *_ADD_APPOINTMENT_PARAMS,
    _p("appointmenttype", required=False),
    _p("reason", "text", required=False),
    _p("loginid", required=False),
    _p("videourl", "text", required=False),
)(_add_appointment)


def _appointment(ctx: _ProcContext, appointment_id: int) -> tuple[Any, ...]:
    row = ctx.conn.execute(
        "SELECT USERID, APPOINTMENTDATE, APPOINTMENTTIME, APPOINTMENTLENGTH FROM APPOINTMENTS"
        " WHERE RECORDID = ? AND RECORDSTATUS = 1",
        (appointment_id,),
    ).fetchone()
    if row is None:
        _raise(f"Appointment {appointment_id} does not exist.")
    return tuple(row)


@_procedure("BP_CancelAppointment", _p("aptid"))
def _cancel_appointment(ctx: _ProcContext, args: dict[str, Any]) -> _ProcOutcome:
    _appointment(ctx, args["aptid"])
    # Cancelled bookings stay in APPOINTMENTS, inactive (RECORDSTATUS 2): emulator choice.
    ctx.conn.execute(
        "UPDATE APPOINTMENTS SET RECORDSTATUS = 2 WHERE RECORDID = ?", (args["aptid"],)
    )
    ctx.conn.execute(
        "INSERT INTO CANCELLEDAPPOINTMENTS (APPOINTMENTID, CANCELLEDDATE, REASON) VALUES (?, ?, ?)",
        (args["aptid"], _iso(ctx.now()), "Cancelled via Halo"),
    )
    return _ProcOutcome(rows_affected=1)


@_procedure("BP_ArriveAppointment", _p("aptid"))
def _arrive_appointment(ctx: _ProcContext, args: dict[str, Any]) -> _ProcOutcome:
    _appointment(ctx, args["aptid"])
    now = ctx.now()
    ctx.conn.execute(
        "UPDATE APPOINTMENTS SET APPOINTMENTCODE = 2, ARRIVALTIME = ? WHERE RECORDID = ?",
        (now.hour * 3600 + now.minute * 60 + now.second, args["aptid"]),
    )
    return _ProcOutcome(rows_affected=1)


@_procedure("BP_MoveAppointment", _p("aptid"), _p("aptdate", "date"), _p("apttime"),
            _p("practitionerid"), _p("locationid"))  # fmt: skip
def _move_appointment(ctx: _ProcContext, args: dict[str, Any]) -> _ProcOutcome:
    _user, _day, _time, length = _appointment(ctx, args["aptid"])
    user_id, day = args["practitionerid"], args["aptdate"]
    _check_provider(ctx, user_id, day)
    _check_free(ctx, user_id, day, args["apttime"], length, args["aptid"])
    ctx.conn.execute(
        "UPDATE APPOINTMENTS SET USERID = ?, APPOINTMENTDATE = ?, APPOINTMENTTIME = ?,"
        " LOCATIONID = ? WHERE RECORDID = ?",
        (user_id, day, args["apttime"], args["locationid"], args["aptid"]),
    )
    return _ProcOutcome(rows_affected=1)


@_procedure("BP_UpdateAppointment", _p("aptid"), _p("apttype"), _p("aptlen"),
            _p("reason", "text", required=False))  # fmt: skip
def _update_appointment(ctx: _ProcContext, args: dict[str, Any]) -> _ProcOutcome:
    user_id, day, start, _length = _appointment(ctx, args["aptid"])
    _check_free(ctx, user_id, day, start, args["aptlen"], args["aptid"])
    ctx.conn.execute(
        "UPDATE APPOINTMENTS SET APPOINTMENTTYPE = ?, APPOINTMENTLENGTH = ?,"
        " REASON = COALESCE(?, REASON) WHERE RECORDID = ?",
        (args["apttype"], args["aptlen"], args.get("reason"), args["aptid"]),
    )
    return _ProcOutcome(rows_affected=1)


@_procedure("BP_GetInvestigationSummary", _p("internalid"))
def _get_investigation_summary(ctx: _ProcContext, args: dict[str, Any]) -> _ProcOutcome:
    # Newest first; results still with the laboratory (no Reported date) come first of all.
    return ctx.query(
        "SELECT ReportID, InternalID, TestName, Laboratory, Requested, Collected, Reported,"
        " Checked, CheckedBy, Notation, Action, Comment FROM BPS_Investigations"
        " WHERE InternalID = ? ORDER BY Reported IS NOT NULL, Reported DESC, ReportID DESC",
        (args["internalid"],),
    )


@_procedure("BP_AddMessage", _p("userid"), _p("subject", "text"), _p("message", "text"))
def _add_message(ctx: _ProcContext, args: dict[str, Any]) -> _ProcOutcome:
    """A message to a user's Bp inbox; the user must be an active user of the practice."""
    user_id = args["userid"]
    if not ctx.value("SELECT COUNT(*) FROM BPS_Users WHERE UserID = ?", (user_id,)):
        _raise(f"User {user_id} does not exist.")
    cursor = ctx.conn.execute(
        "INSERT INTO MESSAGES (USERID, SUBJECT, MESSAGE, CREATED) VALUES (?, ?, ?, ?)",
        (user_id, args["subject"], args["message"], _iso(ctx.now())),
    )
    return _ProcOutcome(rows_affected=1, return_value=int(cursor.lastrowid or 0))


_ADD_PATIENT_TEXT = (
    "middlename", "preferredname", "address1", "address2", "city", "postcode", "postaladdress",
    "postalcity", "postalpostcode", "homephone", "workphone", "mobilephone", "medicareno",
    "medicarelineno", "medicareexpiry", "pensionno", "dvano", "recordno", "externalid", "email",
)  # fmt: skip
_ADD_PATIENT_INT = ("titlecode", "sexcode", "pensioncode", "dvacode")


@_procedure(
    "BP_AddPatient",
    _p("firstname", "text"),
    _p("surname", "text"),
    _p("dob", "date"),
    *(_p(name, "text", required=False) for name in _ADD_PATIENT_TEXT),
    *(_p(name, required=False) for name in _ADD_PATIENT_INT),
    _p("pensionexpiry", "date", required=False),
)
def _add_patient(ctx: _ProcContext, args: dict[str, Any]) -> _ProcOutcome:
    columns = ["FIRSTNAME", "SURNAME", "DOB", "CREATED", "RECORDSTATUS", "PATIENTSTATUS"]
    values: list[Any] = [args["firstname"], args["surname"], args["dob"], _iso(ctx.now()), 1, 1]
    for name in (*_ADD_PATIENT_TEXT, *_ADD_PATIENT_INT, "pensionexpiry"):
        if args.get(name) is not None:
            columns.append(name.upper())
            values.append(args[name])
    cursor = ctx.conn.execute(
        f"INSERT INTO PATIENTS ({', '.join(columns)}) VALUES ({', '.join('?' * len(values))})",
        values,
    )
    return _ProcOutcome(rows_affected=1, return_value=int(cursor.lastrowid or 0))


def _coerce_argument(param: _ProcParam, value: Any) -> Any:
    if value is None:
        return None
    if param.kind == "int":
        try:
            return _to_int(value, "int", "nvarchar")
        except _Failure:
            raise _Failure("convert_numeric", (str(value), "nvarchar", "int")) from None
    if param.kind == "date":
        return _to_datetime_text(value, date_only=True)
    return value if isinstance(value, str) else _wire_value(value)


# --------------------------------------------------------------------------------------------
# Running a command


@dataclasses.dataclass(frozen=True)
class _Parameter:
    """One command parameter, as sent and as bound."""

    wire: Mapping[str, Any]
    name: str  # lowercase, no @
    direction: str
    api_type: str | None
    value: Any

    @property
    def is_input(self) -> bool:
        return self.direction in ("input", "inputOutput")


def _bare_name(name: Any) -> str:
    return str(name or "").strip().lstrip("@").casefold()


@dataclasses.dataclass
class _ResultSet:
    columns: list[str]
    rows: list[tuple[Any, ...]]


class _Run:
    """The state of one command: variables, the first result set, rows affected."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        now: Callable[[], datetime.datetime],
        procedures: Mapping[str, _Procedure],
        sandbox: Sandbox,
    ) -> None:
        self.conn = conn
        self.sandbox = sandbox
        self.now = now
        self.procedures = procedures
        self.variables: dict[str, Any] = {}
        self.types: dict[str, str | None] = {}
        self.result: _ResultSet | None = None
        self.rows_affected = 0
        self.changed_rows = False
        self.return_value: Any = None
        self.object_names: dict[str, str] = {}

    def bind(self, parameters: Sequence[_Parameter]) -> None:
        for parameter in parameters:
            if parameter.direction == "returnValue":
                continue
            self.types[parameter.name] = parameter.api_type
            self.variables[parameter.name] = parameter.value if parameter.is_input else None

    def run_batch(self, text: str, dialect: _tsql.SqlDialect) -> None:
        batch = _tsql.translate(text, dialect)
        self.object_names = batch.object_names
        try:
            self._run_steps(batch.steps)
        finally:
            self._end_session()

    def _end_session(self) -> None:
        """What closing the connection does to SQL Server: a BEGIN TRAN left open (by the
        batch or by an error in it) is rolled back, and the #temporary tables the batch
        named are dropped (by name: SQLite's catalogue is not the batch's to read)."""
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        for name in self.object_names:
            if name.startswith("#"):
                quoted = name.replace('"', '""')
                self.conn.execute(f'DROP TABLE IF EXISTS temp."{quoted}"')

    def _run_steps(self, steps: Sequence[_tsql.Step]) -> None:
        for step in steps:
            if isinstance(step, _tsql.If):
                self._run_steps(step.then if self._evaluate(step.condition) else step.otherwise)
            elif isinstance(step, _tsql.Raise):
                _raise_error(self._cursor(step.values).fetchone(), throw=step.throw)
            elif isinstance(step, _tsql.Query):
                self._run_query(step)
            elif isinstance(step, _tsql.Declare):
                for name, api_type, default in step.variables:
                    self.types[name] = api_type
                    value = self._evaluate(default) if default is not None else None
                    self.variables[name] = self._typed(name, value)
            elif isinstance(step, _tsql.Assign):
                self._assign(step)
            else:
                self._execute(step)

    def run_procedure(self, name: str, parameters: Sequence[_Parameter]) -> None:
        arguments = [
            (p.name, p.value if p.is_input else None, p.direction in ("output", "inputOutput"))
            for p in parameters
            if p.direction != "returnValue"
        ]
        outcome, _resolved = self._call(name, arguments)
        for parameter_name, _value, is_output in arguments:
            if is_output:
                self.variables[parameter_name] = outcome.outputs.get(parameter_name)
        self.return_value = outcome.return_value

    def _bindings(self, query: _tsql.Query) -> dict[str, Any]:
        bindings = {}
        for name in query.variables:
            if name not in self.variables:
                raise _Failure("undeclared", (name,))
            bindings[name] = self.variables[name]
        return bindings

    def _cursor(self, query: _tsql.Query) -> sqlite3.Cursor:
        self.sandbox.statement()
        return self.conn.execute(query.sql, self._bindings(query))

    def _run_query(self, query: _tsql.Query) -> None:
        cursor = self._cursor(query)
        if cursor.description is not None:
            columns = [d[0] for d in cursor.description]
            # Later result sets are run and dropped (Halo returns the first), within limits.
            rows = self.sandbox.fetch(cursor, columns)
            if self.result is None:
                self.result = _ResultSet(columns, rows)
        elif cursor.rowcount >= 0:
            self.rows_affected += cursor.rowcount
            self.changed_rows = True

    def _evaluate(self, query: _tsql.Query) -> Any:
        row = self._cursor(query).fetchone()
        return None if row is None else row[0]

    def _typed(self, name: str, value: Any) -> Any:
        api_type = self.types.get(name)
        if value is None or api_type is None:
            return value
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return _convert_parameter(api_type, value if isinstance(value, str) else str(value))
        return value

    def _assign(self, step: _tsql.Assign) -> None:
        rows = self._cursor(step.query).fetchall()
        if not rows:
            return  # SELECT @x = ... over no rows leaves @x alone, as in SQL Server.
        for name, value in zip(step.targets, rows[-1], strict=True):
            if name not in self.variables:
                raise _Failure("undeclared", (name,))
            self.variables[name] = self._typed(name, value)

    def _execute(self, step: _tsql.Execute) -> None:
        arguments = []
        for argument in step.arguments:
            if argument.variable is not None:
                if argument.variable not in self.variables:
                    raise _Failure("undeclared", (argument.variable,))
                value = self.variables[argument.variable]
            else:
                value = self._evaluate(argument.value) if argument.value is not None else None
            arguments.append((_bare_name(argument.name) or None, value, argument.output))
        outcome, resolved = self._call(step.procedure, arguments)
        for argument, param_name in zip(step.arguments, resolved, strict=True):
            if argument.output and argument.variable is not None:
                self.variables[argument.variable] = self._typed(
                    argument.variable, outcome.outputs.get(param_name)
                )
        if step.return_variable is not None:
            if step.return_variable not in self.variables:
                raise _Failure("undeclared", (step.return_variable,))
            self.variables[step.return_variable] = outcome.return_value

    def _call(
        self, name: str, arguments: Sequence[tuple[str | None, Any, bool]]
    ) -> tuple[_ProcOutcome, list[str]]:
        """Run a procedure; also say which of its parameters each argument went to."""
        bare = name.split(".")[-1].strip('[]"` ')
        procedure = self.procedures.get(bare.casefold())
        if procedure is None:
            raise _Failure("procedure", (bare,))
        params = {p.name: p for p in procedure.params}
        values: dict[str, Any] = {}
        resolved: list[str] = []
        positional = iter(procedure.params)
        for arg_name, value, _is_output in arguments:
            if arg_name is None:
                param = next(positional, None)
                if param is None:
                    raise _Failure("not_parameter", ("", procedure.name))
            else:
                param = params.get(arg_name)
                if param is None:
                    raise _Failure("not_parameter", (arg_name, procedure.name))
            values[param.name] = _coerce_argument(param, value)
            resolved.append(param.name)
        for param in procedure.params:
            if param.required and values.get(param.name) is None:
                raise _Failure("missing_parameter", (param.name, procedure.name))
        outcome = procedure.body(_ProcContext(self.conn, self.now), values)
        if outcome.columns is not None and self.result is None:
            self.result = _ResultSet(outcome.columns, outcome.rows)
        if outcome.rows_affected >= 0:
            self.rows_affected += outcome.rows_affected
            self.changed_rows = True
        return outcome, resolved


def _default_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


_PRACTICE_TIME_ZONE = "Australia/Sydney"
#: The database name SQL Server reports (DB_NAME()) for a catalogue, where they differ.
_DATABASE_NAMES = {dataset.BEST_PRACTICE_CATALOGUE: "BPSPatients"}


def _zone(name: str) -> datetime.tzinfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except zoneinfo.ZoneInfoNotFoundError:  # pragma: no cover - systems without tz data
        if name != _PRACTICE_TIME_ZONE:
            raise
        return datetime.UTC


class PracticeDatabase:
    """The practice database(s) of one emulated site: SQLite in memory, generated on first use.

    ``execute`` is synchronous and thread-safe: callers run it in worker threads, and one
    site runs one command at a time. ``now`` returns an aware instant, or a naive time
    already in the practice's local ``time_zone`` (an IANA name; Best Practice and Zedmed
    keep local time).
    """

    def __init__(
        self,
        *,
        pms_type: str,
        seed: int,
        time_zone: str = _PRACTICE_TIME_ZONE,
        patients: int = 2000,
        today: datetime.date | None = None,
        now: Callable[[], datetime.datetime] | None = None,
        site_seed: int | None = None,
        templates: TemplateCache | None = None,
        limits: ExecutionLimits | None = None,
    ) -> None:
        """Cheap: generates nothing until first execute().

        ``seed`` chooses the generated data; ``site_seed`` (if given) the site's own rows on
        top of it. With ``templates``, databases of the same seed, size and day are generated
        once and copied. ``limits`` bound each command's time and result size.
        """
        self._pms = _pms_key(pms_type)
        self._dialect = _PMS_SQL_DIALECTS[self._pms]
        self._error_type = "fbsql" if self._dialect == "firebird" else "mssql"
        self._seed = seed
        self._patients = patients
        self._today = today
        self._now = now or _default_now
        self._zone = _zone(time_zone)
        self._catalogues = catalogues_for(self._pms)
        # Only Best Practice's procedures are public; the other systems get none.
        self._procedures = _PROCEDURES if self._pms == "BestPractice" else {}
        self._site_seed = site_seed
        self._templates = templates
        self._limits = limits or ExecutionLimits()
        self._connections: dict[str, sqlite3.Connection] = {}
        self._sandboxes: dict[str, Sandbox] = {}
        # Set by interrupt() from another thread; the running command's statements see it.
        self._cancel_requested = False
        self._lock = threading.Lock()
        self._pending: _Failure | None = None
        self._closed = False

    @property
    def catalogues(self) -> list[Catalogue]:
        """The site's databases; the first is the default."""
        return list(self._catalogues)

    @property
    def pms_type(self) -> str:
        """``BestPractice``, ``Zedmed`` or ``D4w``."""
        return self._pms

    @property
    def error_type(self) -> str:
        """``mssql`` or ``fbsql``: the ``errorType`` of this site's SQL failures."""
        return self._error_type

    @property
    def generated(self) -> bool:
        """Whether any catalogue has been generated yet (it happens on first execute)."""
        return bool(self._connections)

    def execute(
        self,
        text: str,
        *,
        catalogue: str | None = None,
        execution_mode: str = "reader",
        command_type: str = "text",
        parameters: Sequence[Mapping[str, Any]] = (),
    ) -> ExecutionResult:
        """Raises SqlError, ParameterConversionError, UnknownCatalogueError."""
        if execution_mode not in _EXECUTION_MODES:
            raise ValueError(f"Unknown execution mode {execution_mode!r}")
        if command_type not in _COMMAND_TYPES:
            raise ValueError(f"Unknown command type {command_type!r}")
        name = self._catalogue_name(catalogue)
        if command_type == "storedProcedure":
            _check_known_issue(parameters)
        with self._lock:
            if self._closed:
                raise RuntimeError("The practice database is closed")
            conn = self._connection(name)
            sandbox = self._sandboxes[name]
            run = _Run(conn, self._clock, self._procedures, sandbox)
            try:
                with sandbox.request():
                    bound = [self._parameter(p) for p in parameters]
                    run.bind(bound)
                    if command_type == "storedProcedure":
                        run.run_procedure(text, bound)
                    else:
                        run.run_batch(text, self._dialect)
            except _tsql.TranslationError as error:
                raise _sql_error(self._error_type, _Failure(error.kind, (error.near,))) from None
            except _Failure as failure:
                raise _sql_error(self._error_type, failure) from None
            except sqlite3.Error as error:
                raise self._sqlite_error(error, sandbox, run) from None
            finally:
                self._pending = None
                self._cancel_requested = False
            return self._result(run, execution_mode, bound)

    def interrupt(self) -> None:
        """Stop the running command, from any thread: it fails as a statement timeout.

        Only a command already running may be interrupted (the emulator's SQL threads
        call this only then); one interrupted while its database is still being set up
        stops at its first statement.
        """
        self._cancel_requested = True

    def close(self) -> None:
        """Close every SQLite connection; later calls to ``execute`` fail."""
        with self._lock:
            self._closed = True
            for conn in self._connections.values():
                conn.close()
            self._connections.clear()
            self._sandboxes.clear()

    # ----------------------------------------------------------------------------------------

    def _catalogue_name(self, catalogue: str | None) -> str:
        if catalogue is None or catalogue == "":
            return self._catalogues[0].name
        for candidate in self._catalogues:
            if candidate.name.casefold() == catalogue.casefold():
                return candidate.name
        raise UnknownCatalogueError(catalogue)

    def _clock(self) -> datetime.datetime:
        """The practice's local time, naive, as its SQL Server or Firebird reads it."""
        moment = self._now()
        if moment.tzinfo is None:
            return moment  # already the practice's local time
        return moment.astimezone(self._zone).replace(tzinfo=None)

    def _spec(self) -> dataset.DatasetSpec:
        today = self._today or self._clock().date()
        return dataset.DatasetSpec(seed=self._seed, patients=self._patients, today=today)

    def _connection(self, name: str) -> sqlite3.Connection:
        conn = self._connections.get(name)
        if conn is None:
            conn = self._open(name)
            try:
                if self._site_seed is not None:
                    site = dataclasses.replace(self._spec(), seed=self._site_seed)
                    dataset.add_site_rows(conn, name, site)
                self._register_functions(conn)
                self._sandboxes[name] = Sandbox(conn, self._limits, self._cancelled)
            except BaseException:
                conn.close()
                raise
            self._connections[name] = conn
        return conn

    def _open(self, name: str) -> sqlite3.Connection:
        """The catalogue's generated data: a copy of the shared template, or built here."""
        builder = dict(_CATALOGUE_BUILDERS[self._pms])[name]
        spec = self._spec()

        def build(conn: sqlite3.Connection) -> None:
            builder(conn, spec)

        if self._templates is None:
            return _template.generate(build)
        return self._templates.copy((self._pms, name, spec), build)

    def _cancelled(self) -> bool:
        return self._cancel_requested

    def _sqlite_error(self, error: sqlite3.Error, sandbox: Sandbox, run: _Run) -> SqlError:
        if sandbox.timed_out:
            seconds = self._limits.statement_timeout
            return SqlError(self._error_type, *_sandbox.timeout_error(self._error_type, seconds))
        refusal = sandbox.take_refusal() or sandbox.classify(error)
        if refusal is not None:
            kind, args = refusal
            if kind == "object":
                args = (run.object_names.get(args[0].lower(), args[0]),)
            return _sql_error(self._error_type, _Failure(cast(_FailureKind, kind), args))
        cause = self._pending or _sqlite_failure(error, run.object_names)
        return _sql_error(self._error_type, cause)

    def _parameter(self, wire: Mapping[str, Any]) -> _Parameter:
        api_type = _canonical_type(wire.get("type"))
        direction = str(wire.get("direction") or "input")
        value = wire.get("value")
        converted = (
            _convert_parameter(api_type, value) if direction in ("input", "inputOutput") else None
        )
        return _Parameter(wire, _bare_name(wire.get("name")), direction, api_type, converted)

    def _result(self, run: _Run, mode: str, parameters: Sequence[_Parameter]) -> ExecutionResult:
        echoed = []
        for parameter in parameters:
            item = {
                key: parameter.wire[key]
                for key in ("name", "direction", "type", "value", "size")
                if key in parameter.wire
            }
            if parameter.direction in ("output", "inputOutput"):
                item["value"] = _wire_value(run.variables.get(parameter.name))
            elif parameter.direction == "returnValue":
                item["value"] = _wire_value(run.return_value)
            echoed.append(item)
        result = run.result
        if mode == "reader":
            rows = _json_rows(result.columns, result.rows) if result is not None else []
            return ExecutionResult(rows=rows, rows_affected=None, scalar=None, parameters=echoed)
        if mode == "nonQuery":
            affected = run.rows_affected if run.changed_rows else -1
            return ExecutionResult(
                rows=None, rows_affected=affected, scalar=None, parameters=echoed
            )
        scalar = None
        if result is not None and result.rows:
            scalar = _json_rows(result.columns[:1], [result.rows[0][:1]])[0][result.columns[0]]
        return ExecutionResult(rows=None, rows_affected=None, scalar=scalar, parameters=echoed)

    def _register_functions(self, conn: sqlite3.Connection) -> None:
        """SQL Server's semantics for the functions the translated SQL calls (see _tsql)."""

        def guarded(function: Callable[..., Any]) -> Callable[..., Any]:
            def call(*args: Any) -> Any:
                try:
                    return function(*args)
                except _Failure as failure:
                    # SQLite only says "user-defined function raised exception": keep the why.
                    self._pending = failure
                    raise

            return call

        def utc_now() -> str:
            moment = self._now()
            # A naive clock reads the practice's local time, whatever the host's zone.
            aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=self._zone)
            return _iso(aware.astimezone(datetime.UTC).replace(tzinfo=None))

        default = self._catalogues[0].name
        functions: dict[str, tuple[int, Callable[..., Any]]] = {
            **_VALUE_FUNCTIONS,
            "halo_getdate": (0, lambda: _iso(self._clock())),
            "halo_getutcdate": (0, utc_now),
            "halo_today": (0, lambda: _to_datetime_text(_iso(self._clock()), date_only=True)),
            # Temporary tables come and go within a command: OBJECT_ID looks every time.
            "halo_object_id": (-1, lambda *args: _object_id(conn, self._procedures, *args)),
            # The SQL Server-like systems have one catalogue each: DB_NAME() names it.
            "halo_db_name": (0, lambda: _DATABASE_NAMES.get(default, default)),
        }
        if set(functions) != set(_tsql.FUNCTIONS) or _tsql.AGGREGATES != (
            "halo_avg",
            "halo_string_agg",
        ):
            raise RuntimeError("the translator and the database disagree on functions")
        database = self

        class Average(_Average):
            def step(self, value: Any) -> None:
                try:
                    super().step(value)
                except _Failure as failure:
                    database._pending = failure  # as guarded() keeps it, below
                    raise

        # (typeshed's aggregate protocol wants int-only values; SQLite passes any value.)
        conn.create_aggregate("halo_avg", 1, cast(Any, Average))
        conn.create_aggregate("halo_string_agg", -1, cast(Any, _OrderedStringAggregate))
        for name, (arity, function) in functions.items():
            # GETDATE() must not be folded into a constant across a statement's rows, nor
            # NEWID() (ORDER BY NEWID() shuffles).
            deterministic = not name.startswith(
                ("halo_get", "halo_today", "halo_newid", "halo_object_id")
            )
            conn.create_function(name, arity, guarded(function), deterministic=deterministic)


#: Object ids the procedures get in OBJECT_ID(); tables' are in sys.objects.
_PROCEDURE_IDS_FROM = 1_237_579_447


def _object_id(
    conn: sqlite3.Connection,
    procedures: Mapping[str, _Procedure],
    name: Any,
    kind: Any = None,
) -> int | None:
    """SQL Server's OBJECT_ID: ``'tempdb..#t'``, ``'dbo.PATIENTS'``, ``'BP_AddPatient'``, with
    an optional type (``'U'`` table, ``'V'`` view, ``'P'`` procedure); NULL if there is none."""
    if name is None:
        return None
    bare = str(name).split(".")[-1].strip().strip("[]")
    wanted = str(kind).strip().upper() if kind is not None else None
    if bare.startswith("#"):
        if wanted not in (None, "U"):
            return None
        # Tried rather than looked up: SQLite's catalogue stays hidden from integrators' SQL.
        try:
            conn.execute(f'SELECT 1 FROM temp."{bare.replace(chr(34), "")}" LIMIT 0')
        except sqlite3.Error:
            return None
        # SQL Server's temporary objects have negative ids.
        return -(1_000_000 + zlib.crc32(bare.casefold().encode()) % 1_000_000_000)
    if bare.casefold() in procedures:
        index = sorted(procedures).index(bare.casefold())
        return _PROCEDURE_IDS_FROM + index if wanted in (None, "P") else None
    row = conn.execute(
        "SELECT object_id, type FROM `sys.objects` WHERE name = ?", (bare,)
    ).fetchone()
    if row is None or (wanted is not None and str(row[1]).strip() != wanted):
        return None
    return int(row[0])


#: RAISERROR's printf-style conversions that Python's % spells otherwise.
_RAISERROR_CONVERSIONS = re.compile(r"%([-+ 0#]*\d*(?:\.\d+)?)(?:I64|h|l)?([diuoxXs])")


def _raise_error(values: Sequence[Any] | None, *, throw: bool) -> None:
    """RAISERROR (error 50000, its message formatted printf-style) and THROW (its own number).
    A RAISERROR of severity 10 or less is a message, not an error: the batch goes on."""
    if values is None:
        return
    if throw:
        number, message = values[0], values[1]
        raise _Failure("throw", (str(_to_int(number)), "" if message is None else str(message)))
    message, severity, arguments = values[0], values[1], tuple(values[3:])
    if severity is not None and _to_int(severity) <= 10:
        return
    text = "" if message is None else str(message)
    python = _RAISERROR_CONVERSIONS.sub(
        lambda m: f"%{m.group(1)}{'d' if m.group(2) in 'iu' else m.group(2)}", text
    )
    # SQL Server prints what it can; if the arguments do not fit, the message as written.
    with contextlib.suppress(TypeError, ValueError):
        text = python % arguments if arguments else text.replace("%%", "%")
    raise _Failure("raise", (text,))


def _check_known_issue(parameters: Sequence[Mapping[str, Any]]) -> None:
    """Halo's storedProcedure path fails on long binary and Unicode strings (REFERENCE §3)."""
    for parameter in parameters:
        value = parameter.get("value")
        if not isinstance(value, str):
            continue
        api_type = _canonical_type(parameter.get("type"))
        if (api_type == "VarBinary" and len(value) > _VARBINARY_LIMIT) or (
            api_type == "NVarChar" and len(value) > _NVARCHAR_LIMIT
        ):
            raise ParameterConversionError()
