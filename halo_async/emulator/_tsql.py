"""Translation of integrators' T-SQL (and Zedmed's Firebird SQL) into SQLite.

Integrators write SQL for SQL Server (Best Practice, D4W) or Firebird (Zedmed). The emulator
parses it with sqlglot, rewrites what SQLite lacks, and splits a batch into steps the database
runs one by one:

* :class:`Query`: a statement SQLite runs, with its ``@name`` variables bound by name;
* :class:`Declare`, :class:`Assign`: ``DECLARE @x INT = 1``, ``SET @x = ...``,
  ``SELECT @x = COUNT(*) FROM ...``;
* :class:`Execute`: ``EXEC [@ret =] [db.dbo.]Procedure @a = @b, @c = 1 OUTPUT``;
* :class:`If`: ``IF cond stmt [ELSE stmt]``, branches of steps;
* :class:`Raise`: ``RAISERROR(...)``, ``THROW ...``.

A T-SQL batch needs no semicolons; ``SET NOCOUNT ON`` and the like are dropped, ``BEGIN TRAN``
becomes a savepoint. SQL Server semantics that SQLite lacks become calls to functions the
database registers (names in :data:`FUNCTIONS`, :data:`AGGREGATES`): ``GETDATE()`` reads an
injectable clock, ``DATEADD``/``DATEDIFF``/``DATEPART`` count like SQL Server, ``+`` and ``-``
decide at run time between numbers, text and days, conversions fail loudly instead of yielding
0, dividing by zero is an error rather than NULL. Each dialect refuses the other's syntax as
that database would (``TOP`` on Firebird, ``FIRST``/``ROWS``/``||`` on SQL Server), and what
cannot be emulated (``WHILE``, ``PRINT``, most ``FOR XML``) is refused, never half-run.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable
from typing import Any, Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, TokenError

from halo_async.emulator._dialects import READERS, SQLiteOut, call, unit

__all__ = [
    "AGGREGATES",
    "FUNCTIONS",
    "Argument",
    "Assign",
    "Batch",
    "Declare",
    "Execute",
    "If",
    "Query",
    "Raise",
    "SqlDialect",
    "Step",
    "TranslationError",
    "api_type_for_sql_type",
    "translate",
]

SqlDialect = Literal["tsql", "firebird"]

#: Aggregates the translated SQL calls; the database must register every one.
AGGREGATES = ("halo_avg", "halo_string_agg")

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
    "halo_sub",
    "halo_fb_add",
    "halo_fb_sub",
    "halo_charindex",
    "halo_concat",
    "halo_concat_ws",
    "halo_datefromparts",
    "halo_datename",
    "halo_db_name",
    "halo_eomonth",
    "halo_left",
    "halo_len",
    "halo_newid",
    "halo_replicate",
    "halo_right",
    "halo_stuff",
    "halo_substring",
    "halo_like",
    "halo_fb_like",
    "halo_starting",
    "halo_containing",
    "halo_lpad",
    "halo_rpad",
    "halo_reverse",
    "halo_object_id",
)


class TranslationError(Exception):
    """The text is not SQL the emulator can run.

    ``kind`` is ``"syntax"`` (with ``near``, the offending token), ``"unterminated"`` (an
    unclosed string, ``near`` is its start) or ``"unsupported"`` (valid SQL the emulator does
    not implement, such as ``WHILE`` loops; ``near`` is its first word).
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


@dataclasses.dataclass(frozen=True)
class If:
    """``IF cond stmt [ELSE stmt]``: ``condition`` answers 1 (run ``then``) or 0."""

    condition: Query
    then: tuple[Step, ...]
    otherwise: tuple[Step, ...]


@dataclasses.dataclass(frozen=True)
class Raise:
    """``RAISERROR(message, severity, state, args...)`` or ``THROW number, message, state``:
    ``values`` answers (message, severity, state, args...) or (number, message, state)."""

    values: Query
    throw: bool


Step = Query | Declare | Assign | Execute | If | Raise


@dataclasses.dataclass(frozen=True)
class Batch:
    """A translated batch, plus the object names as written (for error messages)."""

    steps: tuple[Step, ...]
    #: lowercase bare table name -> the name as the integrator wrote it (e.g. ``dbo.FOO``).
    object_names: dict[str, str]


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
        statements = sqlglot.parse(text, read=READERS[dialect], error_level=ErrorLevel.RAISE)
    except TokenError as error:
        raise TranslationError("unterminated", _unterminated_string(text)) from error
    except ParseError as error:
        raise TranslationError("syntax", _near_token(error, text)) from error
    ctx = _Context(object_names={}, dialect=dialect)
    steps = _steps([statement for statement in statements if statement is not None], ctx)
    return Batch(steps=steps, object_names=ctx.object_names)


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


@dataclasses.dataclass(frozen=True)
class _Context:
    """What translating one batch needs besides the statement: the dialect, and where to note
    object names as written."""

    object_names: dict[str, str]
    dialect: SqlDialect


def _steps(statements: list[exp.Expr], ctx: _Context) -> tuple[Step, ...]:
    steps = (_step(statement, ctx) for statement in statements)
    return tuple(step for step in steps if step is not None)


def _step(statement: exp.Expr, ctx: _Context) -> Step | None:
    if isinstance(statement, exp.Declare):
        return _declare(statement, ctx)
    if _is_session_option(statement, ctx):
        return None  # SET NOCOUNT ON and the like change nothing a result shows.
    if isinstance(statement, exp.Set):
        return _set(statement, ctx)
    if isinstance(statement, exp.Execute):
        return _execute(statement, ctx)
    if isinstance(statement, exp.Use):
        return None  # The command's catalogue already chose the database.
    if isinstance(statement, exp.Select) and _is_assignment_select(statement):
        return _assignment_select(statement, ctx)
    if isinstance(statement, _RUNNABLE):
        return _query(statement, ctx, name_columns=True)
    if ctx.dialect == "tsql":
        if isinstance(statement, exp.IfBlock):
            return _if(statement, ctx)
        if isinstance(statement, exp.Anonymous) and statement.name.upper() in _RAISES:
            return _raise(statement, ctx)
        transaction = _transaction(statement)
        if transaction is not None:
            return transaction
    # WHILE, PRINT, cursors, Firebird's PSQL: valid SQL we do not run, refused as such.
    words = statement.sql(dialect="tsql").split()
    first = statement.args.get("this") if isinstance(statement, exp.Command) else None
    raise TranslationError("unsupported", str(first or (words[0] if words else "?")))


#: The arguments RAISERROR and THROW need at least.
_RAISES = {"RAISERROR": 3, "THROW": 3}


def _raise(statement: exp.Anonymous, ctx: _Context) -> Raise:
    arguments = statement.expressions
    if len(arguments) < _RAISES[statement.name.upper()]:
        raise TranslationError("syntax", statement.name)
    values = exp.Select(expressions=[argument.copy() for argument in arguments])
    throw = statement.name.upper() == "THROW"
    return Raise(_query(values, ctx, name_columns=False), throw)


#: SET options that change nothing an integrator's result shows: accepted and ignored.
#: DATEFORMAT, DATEFIRST, LANGUAGE, ROWCOUNT and the like change answers, so are refused.
_SESSION_OPTIONS = {
    "NOCOUNT": ("ON", "OFF"), "XACT_ABORT": ("ON", "OFF"), "ANSI_NULLS": ("ON",),
    "ANSI_WARNINGS": ("ON",), "ANSI_PADDING": ("ON",), "ARITHABORT": ("ON", "OFF"),
    "QUOTED_IDENTIFIER": ("ON",), "CONCAT_NULL_YIELDS_NULL": ("ON",),
    "NUMERIC_ROUNDABORT": ("OFF",), "DEADLOCK_PRIORITY": ("LOW", "NORMAL", "HIGH"),
}  # fmt: skip


def _is_session_option(statement: exp.Expr, ctx: _Context) -> bool:
    if ctx.dialect != "tsql":
        return False
    if not isinstance(statement, exp.Set):
        return False
    items = statement.expressions
    for item in items:
        if isinstance(item, exp.SetItem) and item.args.get("kind") == "TRANSACTION":
            continue  # ISOLATION LEVEL: one connection at a time, nothing to isolate from.
        equality = item.this if isinstance(item, exp.SetItem) else item
        if not isinstance(equality, exp.EQ) or not isinstance(equality.this, exp.Column):
            return False
        allowed = _SESSION_OPTIONS.get(equality.this.name.upper(), ())
        if equality.expression.name.upper() not in allowed:
            return False
    return bool(items)


#: Transaction control as SQLite savepoints: they nest as T-SQL's BEGIN TRAN does, the
#: outermost RELEASE commits, and ROLLBACK undoes every level, as T-SQL's does.
_SAVEPOINT = "halo_transaction"


def _transaction(statement: exp.Expr) -> Query | None:
    if isinstance(statement, exp.Transaction):
        return Query(sql=f"SAVEPOINT {_SAVEPOINT}", variables=())
    if isinstance(statement, exp.Commit):
        return Query(sql=f"RELEASE {_SAVEPOINT}", variables=())
    if isinstance(statement, exp.Rollback):
        # A name can only be the transaction's (SAVE TRAN is refused): all of it is undone.
        return Query(sql="ROLLBACK", variables=())
    return None


def _if(statement: exp.IfBlock, ctx: _Context) -> If:
    """``IF cond stmt [ELSE stmt]``: the condition becomes a query answering 1 or 0."""
    condition = exp.Case(ifs=[exp.If(this=statement.this.copy(), true=exp.Literal.number(1))])
    condition.set("default", exp.Literal.number(0))
    branches = []
    for key in ("true", "false"):
        block = statement.args.get(key)
        body = block.expressions if isinstance(block, exp.Block) else []
        branches.append(_steps([s for s in body if s is not None], ctx))
    return If(_expression_query(condition, ctx), branches[0], branches[1])


_RUNNABLE = (exp.Query, exp.Insert, exp.Update, exp.Delete, exp.Create, exp.Drop, exp.Alter)


def _variable_name(node: exp.Expr) -> str:
    return node.name.lower()


def _declare(statement: exp.Declare, ctx: _Context) -> Declare:
    variables = []
    for item in statement.expressions:
        kind = item.args.get("kind")
        api_type = api_type_for_sql_type(kind.this.name) if isinstance(kind, exp.DataType) else None
        default = item.args.get("default")
        default_query = _expression_query(default, ctx) if isinstance(default, exp.Expr) else None
        targets = item.this if isinstance(item.this, list) else [item.this]
        for target in targets:
            variables.append((_variable_name(target), api_type, default_query))
    return Declare(variables=tuple(variables))


def _set(statement: exp.Set, ctx: _Context) -> Assign:
    targets = []
    values = []
    for item in statement.expressions:
        equality = item.this if isinstance(item, exp.SetItem) else item
        if not isinstance(equality, exp.EQ) or not isinstance(equality.this, exp.Parameter):
            raise TranslationError("unsupported", "SET")
        targets.append(_variable_name(equality.this))
        values.append(equality.expression)
    select = exp.Select(expressions=values)
    return Assign(targets=tuple(targets), query=_query(select, ctx, name_columns=False))


def _is_assignment_select(select: exp.Select) -> bool:
    return bool(select.expressions) and all(
        isinstance(p, exp.EQ) and isinstance(p.this, exp.Parameter) for p in select.expressions
    )


def _assignment_select(select: exp.Select, ctx: _Context) -> Assign:
    targets = tuple(_variable_name(p.this) for p in select.expressions)
    select = select.copy()
    select.set("expressions", [p.expression for p in select.expressions])
    return Assign(targets=targets, query=_query(select, ctx, name_columns=False))


def _expression_query(node: exp.Expr, ctx: _Context) -> Query:
    return _query(exp.Select(expressions=[node.copy()]), ctx, name_columns=False)


def _execute(statement: exp.Execute, ctx: _Context) -> Execute:
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
            arguments.append(Argument(name, None, _expression_query(node, ctx), output))
    status = statement.args.get("return_status")
    return Execute(
        procedure=procedure,
        arguments=tuple(arguments),
        return_variable=_variable_name(status) if isinstance(status, exp.Parameter) else None,
    )


# --------------------------------------------------------------------------------------------
# Rewriting one statement


def _query(statement: exp.Expr, ctx: _Context, *, name_columns: bool) -> Query:
    tree = statement.copy()
    _apply_firebird_skip(tree)
    _strip_qualifiers(tree, ctx)
    for select in list(tree.find_all(exp.Select)):
        _rewrite_apply(select)
        if select.args.get("for_") is not None:
            _rewrite_for_xml_path(select)
    variables: list[str] = []
    # Children before parents (reversed breadth-first order), so that rewrites compose.
    for node in reversed(list(tree.walk(bfs=True))):
        replacement = _rewrite(node, variables, ctx.dialect)
        if replacement is not None and replacement is not node:
            if node is tree:
                tree = replacement
            else:
                node.replace(replacement)
    if name_columns:
        _name_result_columns(tree)
    # Every identifier quoted: names such as Nothing or Action are keywords to SQLite.
    sql = tree.sql(dialect=SQLiteOut, identify=True, unsupported_level=ErrorLevel.IGNORE)
    return Query(sql=sql, variables=tuple(dict.fromkeys(variables)))


def _apply_firebird_skip(tree: exp.Expr) -> None:
    for select in tree.find_all(exp.Select):
        limit = select.args.get("limit")
        if isinstance(limit, exp.Limit) and "skip" in limit.meta:
            select.set("offset", exp.Offset(expression=limit.meta.pop("skip")))


def _strip_qualifiers(tree: exp.Expr, ctx: _Context) -> None:
    """``BPSPatients.dbo.PATIENTS`` and ``dbo.PATIENTS`` both mean ``PATIENTS`` here;
    ``INFORMATION_SCHEMA.TABLES`` and ``sys.tables`` are the tables of those (dotted) names
    the database holds."""
    for table in tree.find_all(exp.Table):
        if not table.name:
            continue
        _name_temporary_table(table)
        written = ".".join(part.name for part in table.parts)
        if ctx.dialect == "tsql" and table.db.upper() == "INFORMATION_SCHEMA":
            table.set("this", exp.to_identifier(f"INFORMATION_SCHEMA.{table.name.upper()}"))
        elif ctx.dialect == "tsql" and table.db.lower() == "sys":
            table.set("this", exp.to_identifier(f"sys.{table.name.lower()}"))
        ctx.object_names.setdefault(table.name.lower(), written)
        table.set("catalog", None)
        table.set("db", None)
    for column in tree.find_all(exp.Column):
        column.set("catalog", None)
        column.set("db", None)
        # OUTPUT INSERTED.ID becomes SQLite's RETURNING ID.
        if _inside(column, exp.Returning) and column.table.upper() in ("INSERTED", "DELETED"):
            column.set("table", None)


def _rewrite_apply(select: exp.Select) -> None:
    """``OUTER APPLY (SELECT TOP 1 a, b ...) x``, which SQLite lacks, as one correlated scalar
    subquery per column used (``x.a``); ``CROSS APPLY`` also keeps only rows where it has one.

    Only single-row applies (``TOP 1``, or aggregates without GROUP BY) mean the same thing
    this way; any other APPLY is refused rather than answered wrongly.
    """
    for join in list(select.args.get("joins") or []):
        lateral = join.this
        if not isinstance(lateral, exp.Lateral) or lateral.args.get("cross_apply") is None:
            continue
        inner = lateral.this.this if isinstance(lateral.this, exp.Subquery) else None
        if not isinstance(inner, exp.Select) or not lateral.alias or not _single_row(inner):
            raise TranslationError("unsupported", "APPLY")
        outputs: dict[str, tuple[str, exp.Expr]] = {}
        for projection in inner.expressions:
            if isinstance(projection, exp.Star) or not projection.alias_or_name:
                raise TranslationError("unsupported", "APPLY")
            name = projection.alias_or_name
            outputs[name.lower()] = (name, projection.unalias())
        join.pop()
        alias = lateral.alias.lower()
        _expand_apply_star(select, alias, outputs)
        for column in list(select.find_all(exp.Column)):
            name = column.name.lower()
            qualified = column.table.lower() == alias
            direct = not column.table and column.find_ancestor(exp.Select) is select
            if name in outputs and (qualified or direct):
                value = inner.copy()
                value.set("expressions", [outputs[name][1].copy()])
                replacement: exp.Expr = exp.Subquery(this=value)
                if column.parent is select:  # a result column keeps its name, as written
                    name_as_written = exp.to_identifier(column.name, quoted=True)
                    replacement = exp.Alias(this=replacement, alias=name_as_written)
                column.replace(replacement)
        if lateral.args.get("cross_apply"):
            exists = inner.copy()
            exists.set("expressions", [exp.Literal.number(1)])
            select.where(exp.Exists(this=exists), copy=False)


def _expand_apply_star(
    select: exp.Select, alias: str, outputs: dict[str, tuple[str, exp.Expr]]
) -> None:
    """``x.*`` of an APPLY: one result column per column the APPLY gives, by name."""
    projections: list[exp.Expr] = []
    for projection in select.expressions:
        if (
            isinstance(projection, exp.Column)
            and isinstance(projection.this, exp.Star)
            and projection.table.lower() == alias
        ):
            projections.extend(exp.column(name, table=alias) for name, _ in outputs.values())
        else:
            projections.append(projection)
    select.set("expressions", projections)


def _rewrite_for_xml_path(select: exp.Select) -> None:
    """``(SELECT ',' + x FROM ... FOR XML PATH(''))``, the classic string aggregation, as
    SQLite's group_concat over the same rows, in their order, XML-escaped as SQL Server's is.
    Any other FOR XML or FOR JSON is refused: SQLite would silently drop the clause."""
    clause = select.args["for_"]
    options = clause.expressions
    path = options[0].this if len(options) == 1 else None
    if not (
        str(clause.args.get("kind")).upper() == "XML"
        and isinstance(path, exp.XMLKeyValueOption)
        and path.this.name.upper() == "PATH"
        and isinstance(path.expression, exp.Literal)
        and path.expression.this == ""
        and len(select.expressions) == 1
        and not isinstance(select.expressions[0], exp.Alias | exp.Star | exp.Column)
    ):
        raise TranslationError("unsupported", "FOR")
    rows = select.copy()
    rows.set("for_", None)
    rows.set("expressions", [exp.alias_(select.expressions[0].copy(), "halo_xml_item")])
    item: exp.Expr = exp.column("halo_xml_item")
    for character, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;")):
        item = call("replace", item, exp.Literal.string(character), exp.Literal.string(entity))
    joined = exp.GroupConcat(this=item, separator=exp.Literal.string(""))
    select.replace(exp.Select(expressions=[joined]).from_(exp.Subquery(this=rows)))


def _single_row(select: exp.Select) -> bool:
    limit = select.args.get("limit")
    count = limit.expression if isinstance(limit, exp.Limit) else None
    if isinstance(count, exp.Paren):
        count = count.this
    if isinstance(count, exp.Literal) and count.this == "1" and not select.args.get("offset"):
        return True
    aggregate = all(p.find(exp.AggFunc) is not None for p in select.expressions)
    return aggregate and not select.args.get("group") and not select.args.get("having")


def _name_temporary_table(table: exp.Table) -> None:
    """``#t`` and ``##t`` are SQLite TEMP tables named so: without the hash, ``#PATIENTS``
    would hide the real PATIENTS. The database drops them when the command ends, as SQL
    Server does when Halo Link closes the connection (##global ones included)."""
    identifier = table.this
    if not isinstance(identifier, exp.Identifier) or identifier.name.startswith("#"):
        return
    if identifier.args.get("global_"):
        hashes = "##"
    elif identifier.args.get("temporary"):
        hashes = "#"
    else:
        return
    table.set("this", exp.Identifier(this=f"{hashes}{identifier.name}", quoted=True))
    if isinstance(table.parent, exp.Into):
        table.parent.set("temporary", True)
    create = table.find_ancestor(exp.Create)
    if create is not None and create.this in (table, table.parent):
        properties = create.args.get("properties") or exp.Properties(expressions=[])
        if not any(isinstance(p, exp.TemporaryProperty) for p in properties.expressions):
            properties.append("expressions", exp.TemporaryProperty())
        create.set("properties", properties)


def _inside(node: exp.Expr, kind: type[exp.Expr]) -> bool:
    return node.find_ancestor(kind) is not None


_DATE_LITERAL = re.compile(
    r"^(\d{4})-?(\d{2})-?(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2}))?(\.\d+)?)?$"
)
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between)


_TEXT_FUNCTIONS = ("halo_concat", "halo_concat_ws", "halo_left", "halo_right", "halo_substring",
                   "halo_replicate", "halo_stuff", "halo_datename")  # fmt: skip


def _is_text(node: exp.Expr) -> bool:
    if isinstance(node, exp.Literal):
        return bool(node.is_string)
    if isinstance(node, exp.DPipe | exp.Concat | exp.National):
        return True
    if isinstance(node, exp.Anonymous) and node.name in ("halo_add", "halo_fb_add"):
        return any(_is_text(arg) for arg in node.expressions)
    if isinstance(node, exp.Anonymous) and node.name in _TEXT_FUNCTIONS:
        return True
    if isinstance(node, exp.Anonymous) and node.name == "halo_cast":
        kind = node.expressions[1]
        return isinstance(kind, exp.Literal) and kind.this == "text"
    return False


def _is_number(node: exp.Expr) -> bool:
    """Certainly a number: then ``+`` and ``-`` are SQLite's own, with no call per row."""
    if isinstance(node, exp.Literal):
        return not node.is_string
    if isinstance(node, exp.Neg | exp.Paren):
        return _is_number(node.this)
    if isinstance(node, exp.Add | exp.Sub | exp.Mul | exp.Mod):
        return _is_number(node.this) and _is_number(node.expression)
    return isinstance(node, exp.Count | exp.Length)


def _unwrap(node: exp.Expr) -> exp.Expr:
    while isinstance(node, exp.TimeStrToTime | exp.TsOrDsToDate | exp.TsOrDsToTimestamp):
        node = node.this
    return node


_Rewriter = Callable[[Any, SqlDialect], exp.Expr | None]
_REWRITERS: dict[type[exp.Expr], _Rewriter] = {}


def _rewrites(kind: type[exp.Expr]) -> Callable[[_Rewriter], Any]:
    def register(function: _Rewriter) -> Any:
        _REWRITERS[kind] = function
        return function

    return register


def _rewrite(node: exp.Expr, variables: list[str], dialect: SqlDialect) -> exp.Expr | None:
    if isinstance(node, exp.Parameter):
        return _rewrite_parameter(node, variables)
    rewriter = _REWRITERS.get(type(node))
    if rewriter is not None:
        return rewriter(node, dialect)
    if isinstance(node, _COMPARISONS):
        _normalise_date_literals(node)
    if dialect == "tsql" and isinstance(node, (*_COMPARISONS, exp.In)):
        _compare_case_insensitively(node)
    return None


_ORDERINGS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)


def _compare_case_insensitively(node: exp.Expr) -> None:
    """``LTRIM(SURNAME) = 'smith'`` is true in SQL Server (its default collation ignores case
    and trailing spaces); SQLite compares two non-columns byte for byte. Columns carry the
    schema's collation already, so only comparisons between other things get it."""
    if isinstance(node, exp.In):
        # x IN (...) compares with x's collation: only a non-column x needs one.
        this = node.this
        if not (isinstance(this, exp.Column) or _is_number(this) or node.args.get("query")):
            node.set("this", exp.Collate(this=this, expression=exp.var(_CI_COLLATION)))
        return
    if not isinstance(node, _ORDERINGS):
        return
    left, right = node.this, node.expression
    if any(isinstance(o, exp.Column | exp.Null) or _is_number(o) for o in (left, right)):
        return
    node.set("expression", exp.Collate(this=right, expression=exp.var(_CI_COLLATION)))


#: The collation the SQL Server-like catalogues register (dataset.CASE_INSENSITIVE_COLLATION).
_CI_COLLATION = "HALO_CI"


#: What SQL Server answers for the global variables integrators' health checks read.
_GLOBALS = {
    "VERSION": (
        "Microsoft SQL Server 2019 (RTM-CU22) (KB5027702) - 15.0.4322.2 (X64) \n"
        "\tJul 27 2023 18:11:00 \n\tCopyright (C) 2019 Microsoft Corporation\n"
        "\tExpress Edition (64-bit) on Windows Server 2019 Standard 10.0 <X64> "
        "(Build 17763: ) (Hypervisor)\n"
    ),
    "SERVERNAME": "BPSSERVER\\BPSINSTANCE",
    "SERVICENAME": "BPSINSTANCE",
    "LANGUAGE": "us_english",
    "DATEFIRST": 7,
    "MAX_PRECISION": 38,
}


def _rewrite_parameter(node: exp.Parameter, variables: list[str]) -> exp.Expr | None:
    if isinstance(node.this, exp.Parameter):
        system = node.this.name.upper()
        if system == "IDENTITY":
            return call("last_insert_rowid")
        if system == "ROWCOUNT":
            return call("changes")
        value = _GLOBALS.get(system)
        if isinstance(value, str):
            return exp.Literal.string(value)
        if isinstance(value, int):
            return exp.Literal.number(value)
        return None
    if isinstance(node.parent, exp.Parameter):
        return None
    name = node.name.lower()
    variables.append(name)
    return exp.Parameter(this=exp.Var(this=name))


#: 03/02/1980: 2 March or 3 February, as the login's language has it. Never guessed.
_AMBIGUOUS_DATE = re.compile(r"^\s*\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}\s*$")


def _normalise_date_literals(node: exp.Expr) -> None:
    """``DOB = '1980-02-03'``: SQL Server converts the literal to a datetime; so do we."""
    operands = [node.this, *(node.args.get(k) for k in ("expression", "low", "high"))]
    if not any(o is not None and not _is_text(o) for o in operands):
        return
    for operand in operands:
        if isinstance(operand, exp.Literal) and operand.is_string:
            if _AMBIGUOUS_DATE.match(operand.this):
                raise TranslationError("unsupported", operand.this)
            match = _DATE_LITERAL.match(operand.this)
            if match:
                year, month, day, hour, minute, second, _ = match.groups()
                stamp = f"{year}-{month}-{day}T{hour or '00'}:{minute or '00'}:{second or '00'}"
                operand.replace(exp.Literal.string(stamp))


@_rewrites(exp.CurrentTimestamp)
def _current_timestamp(_node: exp.CurrentTimestamp, _dialect: SqlDialect) -> exp.Expr:
    return call("halo_getdate")


@_rewrites(exp.CurrentTime)
def _current_time(_node: exp.CurrentTime, _dialect: SqlDialect) -> exp.Expr:
    # The practice's local time of day, 'HH:MM:SS' (SQLite's CURRENT_TIME is the host's UTC).
    return call("substr", call("halo_getdate"), exp.Literal.number(12))


@_rewrites(exp.CurrentDate)
def _current_date(_node: exp.CurrentDate, _dialect: SqlDialect) -> exp.Expr:
    return call("halo_today")


@_rewrites(exp.Anonymous)
def _anonymous(node: exp.Anonymous, dialect: SqlDialect) -> exp.Expr | None:
    if dialect != "tsql":
        return None
    name = node.name.upper()
    if name in ("GETUTCDATE", "SYSUTCDATETIME"):
        return call("halo_getutcdate")
    if name in ("SYSDATETIME", "SYSDATETIMEOFFSET"):
        return call("halo_getdate")
    if name in ("SCOPE_IDENTITY", "IDENT_CURRENT"):
        return call("last_insert_rowid")
    return None


@_rewrites(exp.DateAdd)
def _date_add(node: exp.DateAdd, _dialect: SqlDialect) -> exp.Expr:
    return call("halo_dateadd", unit(node.args.get("unit")), node.expression, _unwrap(node.this))


@_rewrites(exp.DateDiff)
def _date_diff(node: exp.DateDiff, _dialect: SqlDialect) -> exp.Expr:
    start, end = _unwrap(node.expression), _unwrap(node.this)
    return call("halo_datediff", unit(node.args.get("unit")), start, end)


def _date_part(unit: str) -> _Rewriter:
    def rewrite(node: exp.Func, _dialect: SqlDialect) -> exp.Expr:
        return call("halo_datepart", exp.Literal.string(unit), _unwrap(node.this))

    return rewrite


_rewrites(exp.Year)(_date_part("year"))
_rewrites(exp.Month)(_date_part("month"))
_rewrites(exp.Day)(_date_part("day"))


@_rewrites(exp.Extract)
def _extract(node: exp.Extract, dialect: SqlDialect) -> exp.Expr:
    part_unit = unit(node.this)
    part = call("halo_datepart", part_unit, _unwrap(node.expression))
    if dialect == "firebird" and part_unit.this in ("weekday", "dayofyear"):
        # Firebird counts WEEKDAY from Sunday = 0 and YEARDAY from 1 January = 0.
        return exp.Sub(this=part, expression=exp.Literal.number(1))
    return part


@_rewrites(exp.TsOrDsToDate)
def _to_date(node: exp.TsOrDsToDate, _dialect: SqlDialect) -> exp.Expr:
    return call("halo_cast", node.this, exp.Literal.string("date"))


#: Firebird's date words: CAST('TODAY' AS DATE), TIMESTAMP 'NOW'. (SQL Server knows none.)
_FIREBIRD_MOMENTS = {"NOW": 0, "TODAY": 0, "TOMORROW": 1, "YESTERDAY": -1}


def _firebird_moment(value: exp.Expr, kind: str | None) -> exp.Expr | None:
    if not (isinstance(value, exp.Literal) and value.is_string) or kind not in ("date", "datetime"):
        return None
    word = value.this.strip().upper()
    if word not in _FIREBIRD_MOMENTS:
        return None
    if word == "NOW":
        now = call("halo_getdate")
        return call("halo_cast", now, exp.Literal.string("date")) if kind == "date" else now
    days = exp.Literal.number(_FIREBIRD_MOMENTS[word])
    return call("halo_dateadd", exp.Literal.string("day"), days, call("halo_today"))


def _cast_call(
    value: exp.Expr, to: exp.DataType, style: exp.Expr | None, safe: bool, dialect: SqlDialect
) -> exp.Expr:
    kind = _cast_kind(to)
    moment = _firebird_moment(value, kind) if dialect == "firebird" else None
    if moment is not None:
        return moment
    if kind is None:
        if to.this == exp.DType.ROWVERSION:
            raise TranslationError("unsupported", "timestamp")  # T-SQL's rowversion, binary
        return exp.Cast(this=value, to=to)
    args: list[exp.Expr] = [_unwrap(value), exp.Literal.string(kind)]
    if kind == "text":
        size = to.expressions[0].this if to.expressions else None
        length = int(size.this) if isinstance(size, exp.Literal) and size.is_int else 0
        args.append(exp.Literal.number(length))
        # Style 0 ('May 27 2025 10:30AM') is SQL Server's default for datetimes as text;
        # Firebird writes '2025-05-27 10:30:15.0000'.
        default = exp.Literal.number(0) if dialect == "tsql" else exp.Literal.string("firebird")
        args.append(style if style is not None else default)
    elif style is not None:
        args.extend((exp.Literal.number(0), style))
    elif kind in ("int", "float") and dialect == "tsql":
        # SQL Server converts a datetime to its day number; the database needs telling.
        args.extend((exp.Literal.number(0), exp.Literal.string("tsql")))
    return call("halo_try_cast" if safe else "halo_cast", *args)


@_rewrites(exp.Cast)
def _cast(node: exp.Cast, dialect: SqlDialect) -> exp.Expr:
    return _cast_call(node.this, node.to, None, safe=False, dialect=dialect)


@_rewrites(exp.TryCast)
def _try_cast(node: exp.TryCast, dialect: SqlDialect) -> exp.Expr:
    return _cast_call(node.this, node.to, None, safe=True, dialect=dialect)


@_rewrites(exp.Convert)
def _convert(node: exp.Convert, dialect: SqlDialect) -> exp.Expr:
    target = node.this
    if not isinstance(target, exp.DataType):
        return node
    safe = bool(node.args.get("safe"))
    return _cast_call(node.expression, target, node.args.get("style"), safe, dialect)


@_rewrites(exp.Avg)
def _avg(node: exp.Avg, _dialect: SqlDialect) -> exp.Expr | None:
    # An average of integers is an integer in SQL Server and Firebird; SQLite's is a float.
    if isinstance(node.parent, exp.Window):
        return None  # (a window's AVG stays SQLite's: a known difference)
    return call("halo_avg", node.this)


@_rewrites(exp.Div)
def _div(node: exp.Div, _dialect: SqlDialect) -> exp.Expr:
    return call("halo_div", node.this, node.expression)


@_rewrites(exp.Add)
def _add(node: exp.Add, dialect: SqlDialect) -> exp.Expr | None:
    # T-SQL's + concatenates text, adds days to a datetime, and adds a number to text that
    # looks numeric; SQLite's + would give 0 for 'Dr' + 'Who' and 2032 for a date + 7. Only
    # the values at run time can tell which, so every + not between two numbers is a call.
    if _is_number(node.this) and _is_number(node.expression):
        return None
    name = "halo_add" if dialect == "tsql" else "halo_fb_add"
    return call(name, node.this, node.expression)


@_rewrites(exp.Sub)
def _sub(node: exp.Sub, dialect: SqlDialect) -> exp.Expr | None:
    # GETDATE() - 7 is a week ago in both dialects; SQLite would subtract 7 from the year.
    if _is_number(node.this) and _is_number(node.expression):
        return None
    name = "halo_sub" if dialect == "tsql" else "halo_fb_sub"
    return call(name, node.this, node.expression)


@_rewrites(exp.National)
def _national(node: exp.National, _dialect: SqlDialect) -> exp.Expr:
    return exp.Literal.string(node.this)  # N'...': every SQLite string is Unicode already.


@_rewrites(exp.Substring)
def _substring(node: exp.Substring, dialect: SqlDialect) -> exp.Expr | None:
    if dialect != "tsql":
        return None  # Firebird's SUBSTRING(s FROM i FOR n) is SQLite's substr.
    length = node.args.get("length")
    if length is None:
        raise TranslationError("syntax", ")")  # T-SQL's SUBSTRING takes three arguments.
    return call("halo_substring", node.this, node.args["start"], length)


@_rewrites(exp.DPipe)
def _dpipe(node: exp.DPipe, dialect: SqlDialect) -> exp.Expr | None:
    if dialect == "tsql":
        raise TranslationError("syntax", "|")  # SQL Server (before 2025) has no ||.
    return None


@_rewrites(exp.Array)
def _array(_node: exp.Array, dialect: SqlDialect) -> exp.Expr | None:
    if dialect == "firebird":
        raise TranslationError("syntax", "[")  # Firebird quotes names "so", never [so].
    return None


@_rewrites(exp.Like)
def _like(node: exp.Like, dialect: SqlDialect) -> exp.Expr | None:
    # SQLite's LIKE knows neither T-SQL's [A-C] classes nor Firebird's case sensitivity.
    pattern = node.expression
    escape = node.parent.expression if isinstance(node.parent, exp.Escape) else exp.Null()
    if dialect == "firebird":
        return call("halo_fb_like", node.this, pattern, escape)
    if isinstance(pattern, exp.Literal) and pattern.is_string and "[" not in pattern.this:
        return None  # SQLite's own LIKE is exact here, and can use an index.
    return call("halo_like", node.this, pattern, escape)


@_rewrites(exp.GroupConcat)
def _group_concat(node: exp.GroupConcat, _dialect: SqlDialect) -> exp.Expr | None:
    """``STRING_AGG(x, ',') WITHIN GROUP (ORDER BY y DESC)``: SQLite (before 3.44) cannot
    order inside an aggregate, so the database's aggregate sorts on the keys it is given."""
    order = node.this
    if not isinstance(order, exp.Order):
        return None
    keys: list[exp.Expr] = []
    for ordered in order.expressions:
        direction = "desc" if ordered.args.get("desc") else "asc"
        keys.extend((ordered.this, exp.Literal.string(direction)))
    separator = node.args.get("separator") or exp.Literal.string(",")
    return call("halo_string_agg", order.this, separator, *keys)


@_rewrites(exp.TableSample)
def _table_sample(_node: exp.TableSample, _dialect: SqlDialect) -> exp.Expr:
    raise TranslationError("unsupported", "TABLESAMPLE")  # SQLite would read every row


@_rewrites(exp.Escape)
def _escape(node: exp.Escape, _dialect: SqlDialect) -> exp.Expr | None:
    # The LIKE below was rewritten with this escape character already, if it had to be.
    return node.this if isinstance(node.this, exp.Anonymous) else None


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
