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
import dataclasses
import datetime
import sqlite3
import threading
import uuid
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
        "other": (8180, "Statement(s) could not be prepared. {0}"),
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
        "other": (-901, "{0}"),
    },
}  # fmt: skip


def _sql_error(error_type: str, failure: _Failure) -> SqlError:
    code, template = _MESSAGES[error_type][failure.kind]
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
    return text[:length] if length > 0 else text


def _cast(value: Any, kind: str, length: Any = 0, style: Any = None) -> Any:
    if value is None:
        return None
    if kind == "int":
        return _to_int(value)
    if kind == "float":
        return _to_float(value)
    if kind in ("date", "datetime"):
        return _to_datetime_text(value, date_only=kind == "date")
    if kind == "text":
        return _to_text(value, int(length or 0), style)
    return value


def _add(left: Any, right: Any) -> Any:
    """T-SQL's ``+``: text + text concatenates; a number + text converts the text."""
    if left is None or right is None:
        return None
    if isinstance(left, str) and isinstance(right, str):
        return left + right
    if isinstance(left, str):
        left = _to_int(left) if isinstance(right, int) else _to_float(left)
    if isinstance(right, str):
        right = _to_int(right) if isinstance(left, int) else _to_float(right)
    return left + right


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
        for step in batch.steps:
            if isinstance(step, _tsql.Query):
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
    return datetime.datetime.now()


class PracticeDatabase:
    """The practice database(s) of one emulated site: SQLite in memory, generated on first use.

    ``execute`` is synchronous and thread-safe: callers run it in worker threads, and one
    site runs one command at a time.
    """

    def __init__(
        self,
        *,
        pms_type: str,
        seed: int,
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
        moment = self._now()
        return moment.replace(tzinfo=None) if moment.tzinfo is not None else moment

    def _spec(self) -> dataset.DatasetSpec:
        today = self._today or self._clock().date()
        return dataset.DatasetSpec(seed=self._seed, patients=self._patients, today=today)

    def _connection(self, name: str) -> sqlite3.Connection:
        conn = self._connections.get(name)
        if conn is None:
            conn = self._open(name)
            try:
                if self._site_seed is not None:
                    dataset.add_site_rows(conn, name, self._site_seed)
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
            aware = moment if moment.tzinfo is not None else moment.astimezone()
            return _iso(aware.astimezone(datetime.UTC).replace(tzinfo=None))

        def try_cast(value: Any, kind: str, length: Any = 0, style: Any = None) -> Any:
            try:
                return _cast(value, kind, length, style)
            except _Failure:
                return None

        functions: dict[str, tuple[int, Callable[..., Any]]] = {
            "halo_getdate": (0, lambda: _iso(self._clock())),
            "halo_getutcdate": (0, utc_now),
            "halo_today": (0, lambda: _to_datetime_text(_iso(self._clock()), date_only=True)),
            "halo_dateadd": (3, _date_add),
            "halo_datediff": (3, _date_diff),
            "halo_datepart": (2, _date_part),
            "halo_cast": (-1, _cast),
            "halo_try_cast": (-1, try_cast),
            "halo_div": (2, _divide),
            "halo_add": (2, _add),
        }
        if set(functions) != set(_tsql.FUNCTIONS):
            raise RuntimeError("the translator and the database disagree on functions")
        for name, (arity, function) in functions.items():
            # GETDATE() must not be folded into a constant across a statement's rows.
            deterministic = not name.startswith(("halo_get", "halo_today"))
            conn.create_function(name, arity, guarded(function), deterministic=deterministic)


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
