"""How the emulator reads T-SQL and Firebird SQL, and writes SQLite: sqlglot dialects.

* T-SQL (Best Practice, D4W): sqlglot's, with SQL Server's string and date functions routed
  to the database's implementations, IF/ELSE with BEGIN ... END branches, batches without
  semicolons, and no LIMIT.
* Firebird (Zedmed): T-SQL's parser taught ``FIRST``/``SKIP``, ``ROWS m TO n``,
  ``STARTING WITH``, ``CONTAINING``, ``LIST``, ``DATEADD(n DAY TO d)``, and untaught ``TOP``,
  ``[brackets]`` and SQL Server's functions, so that each fails there as on a real site.
* SQLite out, with backquoted identifiers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import sqlglot
from sqlglot import TokenType, exp
from sqlglot.dialects.sqlite import SQLite
from sqlglot.dialects.tsql import TSQL
from sqlglot.parsers.tsql import TSQLParser

__all__ = ["READERS", "SQLiteOut", "call", "unit"]


_UNITS = {
    "year": "year", "yy": "year", "yyyy": "year", "quarter": "quarter", "qq": "quarter",
    "q": "quarter", "month": "month", "mm": "month", "m": "month", "dayofyear": "dayofyear",
    "dy": "dayofyear", "y": "dayofyear", "day": "day", "dd": "day", "d": "day", "week": "week",
    "wk": "week", "ww": "week", "weekday": "weekday", "dw": "weekday", "dayofweek": "weekday",
    "hour": "hour", "hh": "hour", "minute": "minute", "mi": "minute", "n": "minute",
    "second": "second", "ss": "second", "s": "second", "millisecond": "millisecond",
    "ms": "millisecond", "yearday": "dayofyear",
}  # fmt: skip


def unit(node: exp.Expr | None) -> exp.Literal:
    """A date part as the database's functions name it (``dd`` -> ``'day'``)."""
    text = node.name.lower() if node is not None else "day"
    return exp.Literal.string(_UNITS.get(text, text))


def call(name: str, *args: exp.Expr) -> exp.Anonymous:
    """A call to the SQLite function ``name``."""
    return exp.Anonymous(this=name, expressions=list(args))


def _halo(name: str) -> Callable[[list[exp.Expr]], exp.Expr]:
    """A parser builder: the function becomes a call to the database's ``name``."""

    def build(args: list[exp.Expr]) -> exp.Expr:
        return call(name, *args)

    return build


def _unknown(name: str) -> Callable[[list[exp.Expr]], exp.Expr]:
    """A function the other dialect has: left for the database to report as unknown."""

    def build(args: list[exp.Expr]) -> exp.Expr:
        return exp.Anonymous(this=name, expressions=args)

    return build


def _datename(args: list[exp.Expr]) -> exp.Expr:
    return call("halo_datename", unit(args[0] if args else None), *args[1:])


#: Tokens that end a statement without a semicolon: the start of the next one, or the end
#: of an IF branch.
_STATEMENT_BOUNDARIES = {
    TokenType.SEMICOLON,
    TokenType.SELECT,
    TokenType.SET,
    TokenType.DECLARE,
    TokenType.ELSE,
    TokenType.BEGIN,
    TokenType.END,
    TokenType.INSERT,
    TokenType.UPDATE,
    TokenType.DELETE,
    TokenType.EXECUTE,
    TokenType.WITH,
    TokenType.COMMIT,
    TokenType.ROLLBACK,
    TokenType.USE,
    TokenType.MERGE,
    TokenType.COMMAND,
}


class _TSQLParser(TSQLParser):
    """T-SQL's parser with SQL Server's string and date functions routed to the database's
    implementations (SQLite's namesakes count, trim and match differently)."""

    FUNCTIONS: ClassVar[dict[str, Callable[..., Any]]] = {
        **TSQLParser.FUNCTIONS,
        "CHARINDEX": _halo("halo_charindex"),
        "CONCAT": _halo("halo_concat"),
        "CONCAT_WS": _halo("halo_concat_ws"),
        "DATEFROMPARTS": _halo("halo_datefromparts"),
        "DATENAME": _datename,
        "DB_NAME": _halo("halo_db_name"),
        "EOMONTH": _halo("halo_eomonth"),
        "LEFT": _halo("halo_left"),
        "LEN": _halo("halo_len"),
        "NEWID": _halo("halo_newid"),
        "OBJECT_ID": _halo("halo_object_id"),
        "REPLICATE": _halo("halo_replicate"),
        "RIGHT": _halo("halo_right"),
        "SPACE": lambda args: call("halo_replicate", exp.Literal.string(" "), *args),
        "STUFF": _halo("halo_stuff"),
        # Firebird's and standard SQL's names SQL Server does not have.
        "CHAR_LENGTH": _unknown("CHAR_LENGTH"),
        "CHARACTER_LENGTH": _unknown("CHARACTER_LENGTH"),
        "LIST": _unknown("LIST"),
    }

    # SQL Server has TOP and OFFSET ... FETCH, never LIMIT.
    QUERY_MODIFIER_PARSERS: ClassVar[dict[TokenType, Callable[..., Any]]] = {
        k: v for k, v in TSQLParser.QUERY_MODIFIER_PARSERS.items() if k != TokenType.LIMIT
    }
    QUERY_MODIFIER_TOKENS: ClassVar[set[TokenType]] = set(QUERY_MODIFIER_PARSERS)

    # sqlglot spells it UNCOMITTED; READ UNCOMMITTED is what Bp reporting queries send.
    TRANSACTION_CHARACTERISTICS: ClassVar[dict[str, Any]] = {
        "ISOLATION": (
            ("LEVEL", "REPEATABLE", "READ"),
            ("LEVEL", "READ", "COMMITTED"),
            ("LEVEL", "READ", "UNCOMMITTED"),
            ("LEVEL", "SERIALIZABLE"),
            ("LEVEL", "SNAPSHOT"),
        ),
    }

    def _parse(
        self,
        parse_method: Callable[[Any], exp.Expr | None],
        raw_tokens: list[Any],
        sql: str | None = None,
    ) -> list[exp.Expr | None]:
        """A T-SQL batch needs no semicolons between statements (``SET NOCOUNT ON SELECT
        ...``), and an IF's ``BEGIN ... END`` may hold some: the whole text is one chunk and
        the statements are told apart as they are parsed."""
        self.reset()
        self.sql = sql or ""
        self._chunks = [list(raw_tokens)]
        self._advance_chunk()
        statements: list[exp.Expr | None] = []
        while self._index < self._tokens_size:  # (_curr is a sentinel token at the end)
            if self._match(TokenType.SEMICOLON):
                continue
            index = self._index
            statements.append(self._parse_windowed(parse_method))
            if self._index == index:
                self.raise_error("Invalid expression / Unexpected token")
                break
            self.check_errors()
        self.check_errors()
        return statements

    def _parse_windowed(self, parse_method: Callable[[Any], exp.Expr | None]) -> exp.Expr | None:
        """One statement, parsed seeing the tokens only up to its own semicolon: sqlglot's
        statement parsers (CREATE, SET...) take any token left over for an unknown command."""
        size = self._tokens_size
        self._tokens_size = self._statement_end()
        self._advance(0)
        try:
            if self._curr.text.upper() == "THROW" and self._next.token_type != TokenType.SEMICOLON:
                return self._parse_throw()
            return parse_method(self)
        finally:
            self._tokens_size = size
            self._advance(0)

    def _parse_throw(self) -> exp.Expr:
        """``THROW number, message, state``: a word to sqlglot, a statement to SQL Server."""
        self._advance()
        return exp.Anonymous(this="THROW", expressions=self._parse_csv(self._parse_bitwise))

    def _statement_end(self) -> int:
        """The index of the semicolon ending the statement at the cursor (outside brackets,
        BEGIN ... END blocks and CASE ... END), or of the END closing the block it is in."""
        depth = blocks = 0
        for index in range(self._index, self._tokens_size):
            kind = self._tokens[index].token_type
            following = (
                self._tokens[index + 1].text.upper() if index + 1 < self._tokens_size else ""
            )
            if kind == TokenType.L_PAREN:
                depth += 1
            elif kind == TokenType.R_PAREN:
                depth -= 1
            elif kind == TokenType.CASE or (
                kind == TokenType.BEGIN and following not in ("TRAN", "TRANSACTION")
            ):
                blocks += 1
            elif kind == TokenType.END:
                if blocks == 0:
                    return index
                blocks -= 1
            elif kind == TokenType.SEMICOLON and depth <= 0 and blocks == 0:
                return index
        return int(self._tokens_size)

    def _at_statement_end(self) -> bool:
        return (
            self._index >= self._tokens_size
            or self._curr.token_type in _STATEMENT_BOUNDARIES
            or self._curr.text.upper() in ("IF", "WHILE")  # words, not tokens, to sqlglot
        )

    def _parse_set(self, unset: bool = False, tag: bool = False) -> exp.Set | exp.Command:
        index = self._index
        items = self._parse_csv(self._parse_set_item)
        if not self._at_statement_end():
            self._retreat(index)
            return self._parse_as_command(self._prev)
        return self.expression(exp.Set(expressions=items, unset=unset, tag=tag))

    def _parse_declare(self) -> exp.Declare | exp.Command:
        start = self._prev
        expressions = self._try_parse(lambda: self._parse_csv(self._parse_declareitem))
        if not expressions or not self._at_statement_end():
            return self._parse_as_command(start)
        return self.expression(exp.Declare(expressions=expressions))

    def _parse_transaction(self) -> exp.Transaction | exp.Command:
        # BEGIN TRAN [name]: with no semicolon, the next statement is not the name.
        if not self._match_texts(("TRAN", "TRANSACTION")):
            return self._parse_as_command(self._prev)
        name = None if self._at_statement_end() else self._parse_id_var()
        return self.expression(exp.Transaction(this=name))

    def _parse_commit_or_rollback(self) -> exp.Commit | exp.Rollback:
        rollback = self._prev.token_type == TokenType.ROLLBACK
        self._match_texts(("TRAN", "TRANSACTION", "WORK"))
        name = None if self._at_statement_end() else self._parse_id_var()
        if rollback:
            return self.expression(exp.Rollback(this=name))
        return self.expression(exp.Commit(this=name))

    def _parse_if(self) -> exp.Expr | None:
        """``IF cond stmt [ELSE stmt]``, each branch one statement or ``BEGIN ... END``."""
        condition = self._parse_assignment()
        true = self._parse_if_branch()
        false = self._parse_if_branch() if self._match(TokenType.ELSE) else None
        return self.expression(exp.IfBlock(this=condition, true=true, false=false))

    def _parse_if_branch(self) -> exp.Block:
        after = self._next.text.upper()
        if self._curr.token_type != TokenType.BEGIN or after in (
            "TRAN", "TRANSACTION"
        ):  # fmt: skip
            return exp.Block(expressions=[self._parse_windowed(_TSQLParser._parse_statement)])
        self._advance()
        statements = []
        while not self._match(TokenType.END):
            index = self._index
            if self._match(TokenType.SEMICOLON):
                continue
            if self._index < self._tokens_size:
                statements.append(self._parse_windowed(_TSQLParser._parse_statement))
            if self._index == index:  # the end of the text, or a token no statement starts
                self.raise_error("Expected END")
                break
        return exp.Block(expressions=statements)


class _TSQLDialect(TSQL):
    """SQL Server, as Best Practice and D4W run it."""

    class Tokenizer(TSQL.Tokenizer):
        # END closes an IF's BEGIN block here, rather than swallowing the rest as a command.
        COMMANDS: ClassVar[set[TokenType]] = TSQL.Tokenizer.COMMANDS - {TokenType.END}

    Parser = _TSQLParser


#: Firebird's date units, as DATEADD(n unit TO d) and DATEDIFF(unit FROM a TO b) write them.
_FIREBIRD_UNITS = ("YEAR", "MONTH", "WEEK", "DAY", "HOUR", "MINUTE", "SECOND", "MILLISECOND")
#: SQL Server functions Firebird does not have: "Function unknown" there, as on a real site.
_NOT_FIREBIRD = (
    "GETDATE", "GETUTCDATE", "SYSDATETIME", "SYSUTCDATETIME", "ISNULL", "LEN", "CHARINDEX",
    "DATENAME", "NEWID", "EOMONTH", "DATEFROMPARTS", "DB_NAME", "REPLICATE", "STUFF", "FORMAT",
    "CONCAT", "STRING_AGG", "SPACE", "SCOPE_IDENTITY", "OBJECT_ID",
)  # fmt: skip


def _firebird_list(args: list[exp.Expr]) -> exp.Expr:
    separator = args[1] if len(args) > 1 else exp.Literal.string(",")
    if isinstance(args[0], exp.Distinct):
        # SQLite's group_concat(DISTINCT x) takes no separator; Firebird's default is ','.
        return exp.GroupConcat(this=args[0])
    return exp.GroupConcat(this=args[0], separator=separator)


class _FirebirdParser(TSQLParser):
    """T-SQL's parser (``@name`` parameters, ``||``) taught Firebird: ``FIRST n SKIP m``,
    ``ROWS m TO n``, ``STARTING WITH``, ``CONTAINING``, ``LIST``, ``DATEADD(n DAY TO d)``;
    and untaught ``TOP`` and SQL Server's functions."""

    FUNCTIONS: ClassVar[dict[str, Callable[..., Any]]] = {
        **TSQLParser.FUNCTIONS,
        **{name: _unknown(name) for name in _NOT_FIREBIRD},
        "LIST": _firebird_list,
        "LEFT": _halo("halo_left"),
        "RIGHT": _halo("halo_right"),
        "LPAD": _halo("halo_lpad"),
        "RPAD": _halo("halo_rpad"),
        "REVERSE": _halo("halo_reverse"),
    }
    FUNCTION_PARSERS: ClassVar[dict[str, Callable[..., Any]]] = {
        **TSQLParser.FUNCTION_PARSERS,
        "DATEADD": lambda self: self._parse_firebird_dateadd(),
        "DATEDIFF": lambda self: self._parse_firebird_datediff(),
    }
    RANGE_PARSERS: ClassVar[dict[TokenType, Callable[..., Any]]] = {
        **TSQLParser.RANGE_PARSERS,
        # The tokenizer spells STARTING [WITH] and CONTAINING with these otherwise unused types.
        TokenType.GLOB: lambda self, this: call("halo_starting", this, self._parse_bitwise()),
        TokenType.IRLIKE: lambda self, this: call("halo_containing", this, self._parse_bitwise()),
    }
    QUERY_MODIFIER_PARSERS: ClassVar[dict[TokenType, Callable[..., Any]]] = {
        **{k: v for k, v in TSQLParser.QUERY_MODIFIER_PARSERS.items() if k != TokenType.LIMIT},
        TokenType.ROWS: lambda self: ("limit", self._parse_firebird_rows()),
    }
    QUERY_MODIFIER_TOKENS: ClassVar[set[TokenType]] = set(QUERY_MODIFIER_PARSERS)
    TABLE_ALIAS_TOKENS = TSQLParser.TABLE_ALIAS_TOKENS - {TokenType.ROWS}

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
            return None  # Firebird has no TOP: the word is left to fail as a token.
        limit_or_top: exp.Expr | None = super()._parse_limit(
            this, top=top, skip_limit_token=skip_limit_token
        )
        return limit_or_top

    def _parse_count(self) -> exp.Expr | None:
        count: exp.Expr | None = self._parse_placeholder() or self._parse_primary()
        return count

    def _parse_firebird_rows(self) -> exp.Expr | None:
        """``ROWS n``: the first n rows; ``ROWS m TO n``: rows m..n, counted from 1."""
        self._match(TokenType.ROWS)
        start = self._parse_term()
        if start is None:
            self.raise_error("Expected a row count after ROWS")
            return None
        if not self._match_text_seq("TO"):
            return exp.Limit(expression=start)
        end = self._parse_term()
        if end is None:
            self.raise_error("Expected a row number after TO")
            return None
        one = exp.Literal.number(1)
        count = exp.Add(this=exp.Sub(this=end, expression=start.copy()), expression=one)
        skip = exp.Paren(this=exp.Sub(this=start, expression=one.copy()))
        return exp.Limit(expression=exp.Paren(this=count), offset=skip)

    def _parse_firebird_dateadd(self) -> exp.Expr:
        """``DATEADD(7 DAY TO d)``, or the comma form ``DATEADD(DAY, 7, d)``."""
        index = self._index
        amount = self._parse_bitwise()
        if amount is not None and self._curr is not None and self._curr.text.upper() in (
            _FIREBIRD_UNITS
        ) and self._next is not None and self._next.text.upper() == "TO":  # fmt: skip
            unit = self._curr.text
            self._advance(2)
            target = self._parse_bitwise()
            return exp.DateAdd(this=target, expression=amount, unit=exp.var(unit))
        self._retreat(index)
        unit_node, amount, target = [*self._parse_csv(self._parse_bitwise), None, None][:3]
        return exp.DateAdd(this=target, expression=amount, unit=_asunit(unit_node))

    def _parse_firebird_datediff(self) -> exp.Expr:
        """``DATEDIFF(DAY FROM a TO b)``, or the comma form ``DATEDIFF(DAY, a, b)``."""
        if self._curr is not None and self._curr.text.upper() in _FIREBIRD_UNITS and (
            self._next is not None and self._next.token_type == TokenType.FROM
        ):  # fmt: skip
            unit = self._curr.text
            self._advance(2)
            start = self._parse_bitwise()
            if not self._match_text_seq("TO"):
                self.raise_error("Expected TO")
            end = self._parse_bitwise()
            return exp.DateDiff(this=end, expression=start, unit=exp.var(unit))
        unit_node, start, end = [*self._parse_csv(self._parse_bitwise), None, None][:3]
        return exp.DateDiff(this=end, expression=start, unit=_asunit(unit_node))


def _asunit(node: exp.Expr | None) -> exp.Expr | None:
    return exp.var(node.name) if node is not None else None


class _Firebird(TSQL):
    """Zedmed's dialect, as far as the emulator needs it: double-quoted identifiers only (no
    brackets), ``TIMESTAMP`` a date type (not SQL Server's rowversion), Firebird's keywords."""

    class Tokenizer(TSQL.Tokenizer):
        IDENTIFIERS: ClassVar[list[str | tuple[str, str]]] = ['"']
        QUOTES: ClassVar[list[str | tuple[str, str]]] = ["'"]
        KEYWORDS: ClassVar[dict[str, TokenType]] = {
            **{k: v for k, v in TSQL.Tokenizer.KEYWORDS.items() if k != "TOP"},
            "TIMESTAMP": TokenType.TIMESTAMP,
            "STARTING WITH": TokenType.GLOB,
            "STARTING": TokenType.GLOB,
            "CONTAINING": TokenType.IRLIKE,
        }

    Parser = _FirebirdParser


class SQLiteOut(SQLite):
    """SQLite with backquoted identifiers: a misspelt "COLUMN" in double quotes would silently
    become a string literal in SQLite, where SQL Server says Invalid column name."""

    class Tokenizer(SQLite.Tokenizer):
        IDENTIFIERS: ClassVar[list[str | tuple[str, str]]] = ["`"]


READERS: dict[str, type[sqlglot.Dialect]] = {"tsql": _TSQLDialect, "firebird": _Firebird}
