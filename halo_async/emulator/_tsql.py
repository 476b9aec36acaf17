"""Translation of integrators' T-SQL (and Zedmed's Firebird SQL) into SQLite.

Integrators write SQL for SQL Server (Best Practice, D4W) or Firebird (Zedmed). The emulator
parses it with sqlglot, rewrites what SQLite lacks, and splits a batch into steps the database
runs one by one:

* :class:`Query`: a statement SQLite runs, with its ``@name`` variables bound by name;
* :class:`Declare`, :class:`Assign`: ``DECLARE @x INT = 1``, ``SET @x = ...``,
  ``SELECT @x = COUNT(*) FROM ...``;
* :class:`Execute`: ``EXEC [@ret =] [db.dbo.]Procedure @a = @b, @c = 1 OUTPUT``.

SQL Server semantics that SQLite lacks become calls to functions the database registers
(names in :data:`FUNCTIONS`): ``GETDATE()`` reads an injectable clock, ``DATEADD``/``DATEDIFF``/
``DATEPART`` count like SQL Server, conversions fail loudly instead of yielding 0, and dividing
by zero is an error rather than NULL.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import sqlglot
from sqlglot import TokenType, exp
from sqlglot.dialects.sqlite import SQLite
from sqlglot.dialects.tsql import TSQL
from sqlglot.errors import ErrorLevel, ParseError, TokenError
from sqlglot.parsers.tsql import TSQLParser

__all__ = [
    "FUNCTIONS",
    "Argument",
    "Assign",
    "Batch",
    "Declare",
    "Execute",
    "Query",
    "SqlDialect",
    "Step",
    "TranslationError",
    "api_type_for_sql_type",
    "translate",
]

SqlDialect = Literal["tsql", "firebird"]

#: SQLite functions the translated SQL calls; the database must register every one.
FUNCTIONS = (
    "halo_getdate",
    "halo_getutcdate",
    "halo_today",
    "halo_dateadd",
    "halo_datediff",
    "halo_datepart",
    "halo_cast",
    "halo_try_cast",
    "halo_div",
    "halo_add",
)


class TranslationError(Exception):
    """The text is not SQL the emulator can run.

    ``kind`` is ``"syntax"`` (with ``near``, the offending token), ``"unterminated"`` (an
    unclosed string, ``near`` is its start) or ``"unsupported"`` (valid SQL the emulator does
    not implement, such as ``IF`` blocks; ``near`` is its first word).
    """

    def __init__(self, kind: Literal["syntax", "unterminated", "unsupported"], near: str) -> None:
        super().__init__(f"{kind} near {near!r}")
        self.kind = kind
        self.near = near


@dataclasses.dataclass(frozen=True)
class Query:
    """One SQLite statement; ``variables`` are the lowercase names its ``@name`` binds need."""

    sql: str
    variables: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Declare:
    """``DECLARE @a INT = 1, @b DATE``: (name, API type name or None, default) per variable."""

    variables: tuple[tuple[str, str | None, Query | None], ...]


@dataclasses.dataclass(frozen=True)
class Assign:
    """``SET @a = expr`` or ``SELECT @a = x, @b = y FROM ...``: the last row's values win."""

    targets: tuple[str, ...]
    query: Query


@dataclasses.dataclass(frozen=True)
class Argument:
    """One ``EXEC`` argument: named or positional, a variable or a value to evaluate."""

    name: str | None
    variable: str | None
    value: Query | None
    output: bool


@dataclasses.dataclass(frozen=True)
class Execute:
    """``EXEC [@ret =] procedure args``; ``procedure`` is the bare name as written."""

    procedure: str
    arguments: tuple[Argument, ...]
    return_variable: str | None


Step = Query | Declare | Assign | Execute


@dataclasses.dataclass(frozen=True)
class Batch:
    """A translated batch, plus the object names as written (for error messages)."""

    steps: tuple[Step, ...]
    #: lowercase bare table name -> the name as the integrator wrote it (e.g. ``dbo.FOO``).
    object_names: dict[str, str]


# --------------------------------------------------------------------------------------------
# Dialects


class _FirebirdParser(TSQLParser):
    """T-SQL's parser (``@name`` parameters, ``||``) taught Firebird's ``FIRST n SKIP m``."""

    def _parse_limit(
        self,
        this: exp.Expr | None = None,
        top: bool = False,
        skip_limit_token: bool = False,
    ) -> exp.Expr | None:
        if top and self._curr is not None:
            # FIRST 10 * FROM ...: the count is a primary, never the start of a product.
            first = self._match(TokenType.FIRST)
            count = self._parse_count() if first else None
            skip = self._parse_count() if self._match_text_seq("SKIP") else None
            if count is not None or skip is not None:
                limit = exp.Limit(expression=count if count is not None else exp.Literal.number(-1))
                if skip is not None:
                    limit.meta["skip"] = skip
                return limit
        limit_or_top: exp.Expr | None = super()._parse_limit(
            this, top=top, skip_limit_token=skip_limit_token
        )
        return limit_or_top

    def _parse_count(self) -> exp.Expr | None:
        count: exp.Expr | None = self._parse_placeholder() or self._parse_primary()
        return count


class _Firebird(TSQL):
    """Zedmed's dialect, as far as the emulator needs it."""

    Parser = _FirebirdParser


class _SQLiteOut(SQLite):
    """SQLite with backquoted identifiers: a misspelt "COLUMN" in double quotes would silently
    become a string literal in SQLite, where SQL Server says Invalid column name."""

    class Tokenizer(SQLite.Tokenizer):
        IDENTIFIERS: ClassVar[list[str | tuple[str, str]]] = ["`"]


_READERS: dict[str, type[sqlglot.Dialect]] = {"tsql": TSQL, "firebird": _Firebird}


# --------------------------------------------------------------------------------------------
# Type names

_API_TYPE_BY_SQL_TYPE = {
    "BIGINT": "BigInt", "INT": "Int", "SMALLINT": "SmallInt", "TINYINT": "TinyInt",
    "UTINYINT": "TinyInt", "BIT": "Bit", "BOOLEAN": "Bit", "DECIMAL": "Decimal",
    "MONEY": "Money", "SMALLMONEY": "SmallMoney", "FLOAT": "Float", "DOUBLE": "Float",
    "REAL": "Real", "DATE": "Date", "DATETIME": "DateTime", "DATETIME2": "DateTime2",
    "SMALLDATETIME": "SmallDateTime", "TIMESTAMPTZ": "DateTimeOffset", "TIME": "Time",
    "TIMESTAMP": "DateTime", "UUID": "UniqueIdentifier", "VARBINARY": "VarBinary",
    "BINARY": "Binary", "IMAGE": "Image", "CHAR": "Char", "NCHAR": "NChar", "VARCHAR": "VarChar",
    "NVARCHAR": "NVarChar", "TEXT": "Text", "NTEXT": "NText", "XML": "Xml",
}  # fmt: skip


def api_type_for_sql_type(sql_type: str) -> str | None:
    """The Halo parameter type name for a SQL type name (``INT`` -> ``Int``), if known."""
    return _API_TYPE_BY_SQL_TYPE.get(sql_type.upper())


def _cast_kind(data_type: exp.DataType) -> str | None:
    api = api_type_for_sql_type(data_type.this.name)
    if api in ("BigInt", "Int", "SmallInt", "TinyInt", "Bit"):
        return "int"
    if api in ("Decimal", "Money", "SmallMoney", "Float", "Real"):
        return "float"
    if api == "Date":
        return "date"
    if api in ("DateTime", "DateTime2", "SmallDateTime", "DateTimeOffset"):
        return "datetime"
    if api in ("Char", "NChar", "VarChar", "NVarChar", "Text", "NText"):
        return "text"
    return None


# --------------------------------------------------------------------------------------------
# Entry point


@functools.lru_cache(maxsize=1024)
def translate(text: str, dialect: SqlDialect) -> Batch:
    """Parse ``text`` and translate each statement of the batch for SQLite.

    Cached: a fan-out sends the same SQL to every site, and parsing costs about a
    millisecond. The batch is immutable in use (its steps are frozen; ``object_names`` is
    only read), so sharing it between executions is safe.
    """
    try:
        statements = sqlglot.parse(text, read=_READERS[dialect], error_level=ErrorLevel.RAISE)
    except TokenError as error:
        raise TranslationError("unterminated", _unterminated_string(text)) from error
    except ParseError as error:
        raise TranslationError("syntax", _near_token(error, text)) from error
    object_names: dict[str, str] = {}
    steps = tuple(
        _step(statement, object_names) for statement in statements if statement is not None
    )
    return Batch(steps=tuple(s for s in steps if s is not None), object_names=object_names)


def _near_token(error: ParseError, text: str) -> str:
    for detail in error.errors:
        highlight = detail.get("highlight")
        if highlight:
            return str(highlight)
    words = text.split()
    return words[-1] if words else text


def _unterminated_string(text: str) -> str:
    quote = text.rfind("'")
    return text[quote + 1 :] if quote >= 0 else text


def _step(statement: exp.Expr, object_names: dict[str, str]) -> Step | None:
    if isinstance(statement, exp.Declare):
        return _declare(statement, object_names)
    if isinstance(statement, exp.Set):
        return _set(statement, object_names)
    if isinstance(statement, exp.Execute):
        return _execute(statement, object_names)
    if isinstance(statement, exp.Use):
        return None  # The command's catalogue already chose the database.
    if isinstance(statement, exp.Select) and _is_assignment_select(statement):
        return _assignment_select(statement, object_names)
    if isinstance(statement, _RUNNABLE):
        return _query(statement, object_names, name_columns=True)
    # Control flow (IF, WHILE, BEGIN...END), PRINT, transactions: valid T-SQL we do not run.
    words = statement.sql(dialect="tsql").split()
    first = statement.args.get("this") if isinstance(statement, exp.Command) else None
    raise TranslationError("unsupported", str(first or (words[0] if words else "?")))


_RUNNABLE = (exp.Query, exp.Insert, exp.Update, exp.Delete, exp.Create, exp.Drop, exp.Alter)


def _variable_name(node: exp.Expr) -> str:
    return node.name.lower()


def _declare(statement: exp.Declare, object_names: dict[str, str]) -> Declare:
    variables = []
    for item in statement.expressions:
        kind = item.args.get("kind")
        api_type = api_type_for_sql_type(kind.this.name) if isinstance(kind, exp.DataType) else None
        default = item.args.get("default")
        default_query = (
            _expression_query(default, object_names) if isinstance(default, exp.Expr) else None
        )
        targets = item.this if isinstance(item.this, list) else [item.this]
        for target in targets:
            variables.append((_variable_name(target), api_type, default_query))
    return Declare(variables=tuple(variables))


def _set(statement: exp.Set, object_names: dict[str, str]) -> Assign:
    targets = []
    values = []
    for item in statement.expressions:
        equality = item.this if isinstance(item, exp.SetItem) else item
        if not isinstance(equality, exp.EQ) or not isinstance(equality.this, exp.Parameter):
            raise TranslationError("unsupported", "SET")
        targets.append(_variable_name(equality.this))
        values.append(equality.expression)
    select = exp.Select(expressions=values)
    return Assign(targets=tuple(targets), query=_query(select, object_names, name_columns=False))


def _is_assignment_select(select: exp.Select) -> bool:
    return bool(select.expressions) and all(
        isinstance(p, exp.EQ) and isinstance(p.this, exp.Parameter) for p in select.expressions
    )


def _assignment_select(select: exp.Select, object_names: dict[str, str]) -> Assign:
    targets = tuple(_variable_name(p.this) for p in select.expressions)
    select = select.copy()
    select.set("expressions", [p.expression for p in select.expressions])
    return Assign(targets=targets, query=_query(select, object_names, name_columns=False))


def _expression_query(node: exp.Expr, object_names: dict[str, str]) -> Query:
    return _query(exp.Select(expressions=[node.copy()]), object_names, name_columns=False)


def _execute(statement: exp.Execute, object_names: dict[str, str]) -> Execute:
    target = statement.this
    procedure = target.name if isinstance(target, exp.Table | exp.Column) else target.sql()
    arguments = []
    for raw in statement.expressions:
        output = isinstance(raw, exp.Alias) and raw.alias.upper() in ("OUTPUT", "OUT")
        node = raw.this if output else raw
        name = None
        if isinstance(node, exp.EQ) and isinstance(node.this, exp.Parameter):
            name = node.this.name
            node = node.expression
        if isinstance(node, exp.Parameter) and not isinstance(node.this, exp.Parameter):
            arguments.append(Argument(name, _variable_name(node), None, output))
        else:
            arguments.append(Argument(name, None, _expression_query(node, object_names), output))
    status = statement.args.get("return_status")
    return Execute(
        procedure=procedure,
        arguments=tuple(arguments),
        return_variable=_variable_name(status) if isinstance(status, exp.Parameter) else None,
    )


# --------------------------------------------------------------------------------------------
# Rewriting one statement


def _query(statement: exp.Expr, object_names: dict[str, str], *, name_columns: bool) -> Query:
    tree = statement.copy()
    _apply_firebird_skip(tree)
    _strip_qualifiers(tree, object_names)
    variables: list[str] = []
    # Children before parents (reversed breadth-first order), so that rewrites compose.
    for node in reversed(list(tree.walk(bfs=True))):
        replacement = _rewrite(node, variables)
        if replacement is not None and replacement is not node:
            if node is tree:
                tree = replacement
            else:
                node.replace(replacement)
    if name_columns:
        _name_result_columns(tree)
    # Every identifier quoted: names such as Nothing or Action are keywords to SQLite.
    sql = tree.sql(dialect=_SQLiteOut, identify=True, unsupported_level=ErrorLevel.IGNORE)
    return Query(sql=sql, variables=tuple(dict.fromkeys(variables)))


def _apply_firebird_skip(tree: exp.Expr) -> None:
    for select in tree.find_all(exp.Select):
        limit = select.args.get("limit")
        if isinstance(limit, exp.Limit) and "skip" in limit.meta:
            select.set("offset", exp.Offset(expression=limit.meta.pop("skip")))


def _strip_qualifiers(tree: exp.Expr, object_names: dict[str, str]) -> None:
    """``BPSPatients.dbo.PATIENTS`` and ``dbo.PATIENTS`` both mean ``PATIENTS`` here."""
    for table in tree.find_all(exp.Table):
        if not table.name:
            continue
        written = ".".join(part.name for part in table.parts)
        object_names.setdefault(table.name.lower(), written)
        table.set("catalog", None)
        table.set("db", None)
    for column in tree.find_all(exp.Column):
        column.set("catalog", None)
        column.set("db", None)
        # OUTPUT INSERTED.ID becomes SQLite's RETURNING ID.
        if _inside(column, exp.Returning) and column.table.upper() in ("INSERTED", "DELETED"):
            column.set("table", None)


def _inside(node: exp.Expr, kind: type[exp.Expr]) -> bool:
    return node.find_ancestor(kind) is not None


_DATE_LITERAL = re.compile(
    r"^(\d{4})-?(\d{2})-?(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2}))?(\.\d+)?)?$"
)
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between)
_UNITS = {
    "year": "year", "yy": "year", "yyyy": "year", "quarter": "quarter", "qq": "quarter",
    "q": "quarter", "month": "month", "mm": "month", "m": "month", "dayofyear": "dayofyear",
    "dy": "dayofyear", "y": "dayofyear", "day": "day", "dd": "day", "d": "day", "week": "week",
    "wk": "week", "ww": "week", "weekday": "weekday", "dw": "weekday", "dayofweek": "weekday",
    "hour": "hour", "hh": "hour", "minute": "minute", "mi": "minute", "n": "minute",
    "second": "second", "ss": "second", "s": "second", "millisecond": "millisecond",
    "ms": "millisecond",
}  # fmt: skip


def _unit(node: exp.Expr | None) -> exp.Literal:
    text = node.name.lower() if node is not None else "day"
    return exp.Literal.string(_UNITS.get(text, text))


def _call(name: str, *args: exp.Expr) -> exp.Anonymous:
    return exp.Anonymous(this=name, expressions=list(args))


def _is_text(node: exp.Expr) -> bool:
    if isinstance(node, exp.Literal):
        return bool(node.is_string)
    if isinstance(node, exp.DPipe | exp.Concat):
        return True
    if isinstance(node, exp.Anonymous) and node.name == "halo_add":
        return True
    if isinstance(node, exp.Anonymous) and node.name == "halo_cast":
        kind = node.expressions[1]
        return isinstance(kind, exp.Literal) and kind.this == "text"
    return False


def _unwrap(node: exp.Expr) -> exp.Expr:
    while isinstance(node, exp.TimeStrToTime | exp.TsOrDsToDate | exp.TsOrDsToTimestamp):
        node = node.this
    return node


_REWRITERS: dict[type[exp.Expr], Callable[[Any], exp.Expr | None]] = {}


def _rewrites(kind: type[exp.Expr]) -> Callable[[Callable[[Any], exp.Expr | None]], Any]:
    def register(function: Callable[[Any], exp.Expr | None]) -> Any:
        _REWRITERS[kind] = function
        return function

    return register


def _rewrite(node: exp.Expr, variables: list[str]) -> exp.Expr | None:
    if isinstance(node, exp.Parameter):
        return _rewrite_parameter(node, variables)
    rewriter = _REWRITERS.get(type(node))
    if rewriter is not None:
        return rewriter(node)
    if isinstance(node, _COMPARISONS):
        _normalise_date_literals(node)
    return None


def _rewrite_parameter(node: exp.Parameter, variables: list[str]) -> exp.Expr | None:
    if isinstance(node.this, exp.Parameter):
        system = node.this.name.upper()
        if system == "IDENTITY":
            return _call("last_insert_rowid")
        if system == "ROWCOUNT":
            return _call("changes")
        return None
    if isinstance(node.parent, exp.Parameter):
        return None
    name = node.name.lower()
    variables.append(name)
    return exp.Parameter(this=exp.Var(this=name))


def _normalise_date_literals(node: exp.Expr) -> None:
    """``DOB = '1980-02-03'``: SQL Server converts the literal to a datetime; so do we."""
    operands = [node.this, *(node.args.get(k) for k in ("expression", "low", "high"))]
    if not any(o is not None and not _is_text(o) for o in operands):
        return
    for operand in operands:
        if isinstance(operand, exp.Literal) and operand.is_string:
            match = _DATE_LITERAL.match(operand.this)
            if match:
                year, month, day, hour, minute, second, _ = match.groups()
                stamp = f"{year}-{month}-{day}T{hour or '00'}:{minute or '00'}:{second or '00'}"
                operand.replace(exp.Literal.string(stamp))


@_rewrites(exp.CurrentTimestamp)
def _current_timestamp(_node: exp.CurrentTimestamp) -> exp.Expr:
    return _call("halo_getdate")


@_rewrites(exp.CurrentDate)
def _current_date(_node: exp.CurrentDate) -> exp.Expr:
    return _call("halo_today")


@_rewrites(exp.Anonymous)
def _anonymous(node: exp.Anonymous) -> exp.Expr | None:
    name = node.name.upper()
    if name in ("GETUTCDATE", "SYSUTCDATETIME"):
        return _call("halo_getutcdate")
    if name in ("SYSDATETIME", "SYSDATETIMEOFFSET"):
        return _call("halo_getdate")
    if name in ("SCOPE_IDENTITY", "IDENT_CURRENT"):
        return _call("last_insert_rowid")
    return None


@_rewrites(exp.DateAdd)
def _date_add(node: exp.DateAdd) -> exp.Expr:
    return _call("halo_dateadd", _unit(node.args.get("unit")), node.expression, _unwrap(node.this))


@_rewrites(exp.DateDiff)
def _date_diff(node: exp.DateDiff) -> exp.Expr:
    start, end = _unwrap(node.expression), _unwrap(node.this)
    return _call("halo_datediff", _unit(node.args.get("unit")), start, end)


def _date_part(unit: str) -> Callable[[exp.Func], exp.Expr]:
    def rewrite(node: exp.Func) -> exp.Expr:
        return _call("halo_datepart", exp.Literal.string(unit), _unwrap(node.this))

    return rewrite


_rewrites(exp.Year)(_date_part("year"))
_rewrites(exp.Month)(_date_part("month"))
_rewrites(exp.Day)(_date_part("day"))


@_rewrites(exp.Extract)
def _extract(node: exp.Extract) -> exp.Expr:
    return _call("halo_datepart", _unit(node.this), _unwrap(node.expression))


@_rewrites(exp.TsOrDsToDate)
def _to_date(node: exp.TsOrDsToDate) -> exp.Expr:
    return _call("halo_cast", node.this, exp.Literal.string("date"))


def _cast_call(value: exp.Expr, to: exp.DataType, style: exp.Expr | None, safe: bool) -> exp.Expr:
    kind = _cast_kind(to)
    if kind is None:
        return exp.Cast(this=value, to=to)
    args: list[exp.Expr] = [_unwrap(value), exp.Literal.string(kind)]
    if kind == "text":
        size = to.expressions[0].this if to.expressions else None
        length = int(size.this) if isinstance(size, exp.Literal) and size.is_int else 0
        args.append(exp.Literal.number(length))
        args.append(style if style is not None else exp.Null())
    return _call("halo_try_cast" if safe else "halo_cast", *args)


@_rewrites(exp.Cast)
def _cast(node: exp.Cast) -> exp.Expr:
    return _cast_call(node.this, node.to, None, safe=False)


@_rewrites(exp.TryCast)
def _try_cast(node: exp.TryCast) -> exp.Expr:
    return _cast_call(node.this, node.to, None, safe=True)


@_rewrites(exp.Convert)
def _convert(node: exp.Convert) -> exp.Expr:
    target = node.this
    if not isinstance(target, exp.DataType):
        return node
    return _cast_call(
        node.expression, target, node.args.get("style"), safe=bool(node.args.get("safe"))
    )


@_rewrites(exp.Div)
def _div(node: exp.Div) -> exp.Expr:
    return _call("halo_div", node.this, node.expression)


@_rewrites(exp.Add)
def _add(node: exp.Add) -> exp.Expr | None:
    # T-SQL's + concatenates text but adds a number to text that looks numeric; SQLite's +
    # would give 0 for 'Dr' + ' ' + 'Who'. Only the types at run time can tell which.
    if _is_text(node.this) or _is_text(node.expression):
        return _call("halo_add", node.this, node.expression)
    return None


def _name_result_columns(tree: exp.Expr) -> None:
    """Result column names as SQL Server gives them: as written, ``Column1``.. if unnamed."""
    selects = [tree] if isinstance(tree, exp.Select) else []
    if isinstance(tree, exp.SetOperation):
        leftmost: exp.Expr = tree
        while isinstance(leftmost, exp.SetOperation):
            leftmost = leftmost.this
        selects = [leftmost] if isinstance(leftmost, exp.Select) else []
    unnamed = 0
    for select in selects:
        projections: list[exp.Expr] = []
        for projection in select.expressions:
            if isinstance(projection, exp.Alias | exp.Star) or (
                isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star)
            ):
                projections.append(projection)
            elif isinstance(projection, exp.Column):
                projections.append(exp.alias_(projection, projection.name, quoted=True))
            else:
                unnamed += 1
                projections.append(exp.alias_(projection, f"Column{unnamed}", quoted=True))
        select.set("expressions", projections)
