"""What an integrator's SQL may do to a site's SQLite database, and for how long.

A :class:`Sandbox` guards one connection while it runs integrators' commands:

* an **authorizer** refuses what SQL Server would not let a Halo Link user reach: other
  databases (``ATTACH``, ``DETACH``, which ``VACUUM`` and ``VACUUM INTO`` also use), every
  ``PRAGMA``, ``load_extension``, and SQLite's own catalogue (``sqlite_master``,
  ``sqlite_schema``, ``sqlite_sequence``, ``pragma_*``), which is invisible as on SQL Server;
* a **progress handler** ends a statement that runs longer than the statement timeout, or
  whose command another thread cancelled (the emulator closing, a query's deadline): through
  the handler rather than ``sqlite3_interrupt``, which would also hit the next command if it
  arrived between two and fail it with a bare "interrupted";
* **bounded fetching**: rows come in chunks, and a result over the row or byte limit fails
  before it can take the process's memory;
* **temporary objects** (``#temp`` tables become SQLite ``TEMP`` tables) are dropped when the
  request ends, as a SQL Server session's are when its connection goes back to the pool.

Refusals are recorded as a failure kind (``object``, ``function``, ``unsupported``) that
:mod:`.database` words as SQL Server or Firebird would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson

__all__ = [
    "ExecutionLimits",
    "Refusal",
    "ResultTooLargeError",
    "Sandbox",
    "timeout_error",
]

Refusal = tuple[str, tuple[str, ...]]
"""A failure kind of :mod:`.database` and its arguments, e.g. ``("object", ("sqlite_master",))``."""

# VM instructions between two checks of the deadline: ~1 ms of SQLite work, so a check costs
# next to nothing and an interrupted statement stops within a millisecond or two.
_PROGRESS_STEPS = 100_000
_HIDDEN_PREFIXES = ("sqlite_", "pragma_")
_REFUSED_FUNCTIONS = frozenset({"load_extension"})
# DDL whose statements read and write the catalogue themselves (CREATE writes a row and reads
# it back by ROWID; DROP looks its object up by name): those internal reads must pass.
_DROP_ACTIONS = frozenset(
    {
        sqlite3.SQLITE_DROP_INDEX, sqlite3.SQLITE_DROP_TABLE, sqlite3.SQLITE_DROP_TEMP_INDEX,
        sqlite3.SQLITE_DROP_TEMP_TABLE, sqlite3.SQLITE_DROP_TEMP_TRIGGER,
        sqlite3.SQLITE_DROP_TEMP_VIEW, sqlite3.SQLITE_DROP_TRIGGER, sqlite3.SQLITE_DROP_VIEW,
        sqlite3.SQLITE_ALTER_TABLE, sqlite3.SQLITE_DROP_VTABLE,
    }
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ExecutionLimits:
    """Bounds on one command, so that a runaway query cannot take the emulator down."""

    statement_timeout: float = 30.0
    """Real seconds one statement may run; then it fails as a SQL Server/Firebird timeout."""
    max_result_rows: int = 1_000_000
    """Rows one result set may have; more fail the command."""
    max_result_bytes: int = 256 * 1024 * 1024
    """Bytes of row JSON one result set may have; more fail the command."""
    fetch_rows: int = 2_000
    """Rows fetched from SQLite at a time while the limits are checked."""

    def __post_init__(self) -> None:
        if self.statement_timeout <= 0:
            raise ValueError("statement_timeout must be positive")
        if self.max_result_rows < 1 or self.max_result_bytes < 1 or self.fetch_rows < 1:
            raise ValueError("result limits must be positive")


class ResultTooLargeError(Exception):
    """A result set went over the emulator's row or byte limit (reported as HTTP 413)."""

    message: str

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def timeout_error(error_type: str, seconds: float) -> tuple[int, str]:
    """The error number and message of a statement timeout, as SQL Server or Firebird say it."""
    if error_type == "fbsql":
        # Firebird 4's statement timeout (isc_cfg_stmt_timeout).
        return -901, (
            "Attempt to execute a statement longer than "
            f"{seconds:g} s: statement timeout.\nOperation was cancelled"
        )
    return -2, (
        "Execution Timeout Expired. The timeout period elapsed prior to completion of the "
        "operation or the server is not responding."
    )


def _blob_text(value: Any) -> Any:
    if isinstance(value, bytes):
        return "x" * (len(value) * 4 // 3 + 3)  # the base64 text it will become
    return str(value)


class Sandbox:
    """The guard of one connection: install once, then wrap each command in :meth:`request`."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        limits: ExecutionLimits,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> None:
        self.conn = conn
        self.limits = limits
        self._cancelled = cancelled
        self._enforcing = False
        self._deadline: float | None = None
        self._timed_out = False
        self._dropping = False
        self._refusal: Refusal | None = None
        if hasattr(conn, "enable_load_extension"):
            conn.enable_load_extension(False)
        conn.set_authorizer(self._authorize)
        conn.set_progress_handler(self._progress, _PROGRESS_STEPS)

    # ------------------------------------------------------------------ one request

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        """Enforce the rules for one command; drop its temporary objects afterwards."""
        self._timed_out = False
        self._refusal = None
        self._enforcing = True
        self.statement()
        try:
            yield
        finally:
            # The cleanup is ours, not the command's: no rules, no deadline, no interruption.
            self._enforcing = False
            self._deadline = None
            self._drop_temporary_objects()

    def statement(self) -> None:
        """A new statement starts: its time limit starts now."""
        self._deadline = time.monotonic() + self.limits.statement_timeout
        self._dropping = False

    @property
    def timed_out(self) -> bool:
        """Whether the last failure was the statement timeout or an interruption."""
        return self._timed_out

    def take_refusal(self) -> Refusal | None:
        """The refusal behind the last failure, if the authorizer caused it."""
        refusal, self._refusal = self._refusal, None
        return refusal

    def classify(self, error: sqlite3.Error) -> Refusal | None:
        """A refusal for SQLite's own protection of its catalogue (checked before ours)."""
        message = str(error)
        if message.startswith("table ") and message.endswith(" may not be modified"):
            return "object", (message.split()[1],)
        return None

    # ------------------------------------------------------------------ fetching

    def fetch(self, cursor: sqlite3.Cursor, columns: Sequence[str]) -> list[tuple[Any, ...]]:
        """Every row of ``cursor``, in chunks, failing once over the row or byte limit."""
        limits = self.limits
        # Each row's JSON object repeats the column names: "name": per column, braces, comma.
        row_overhead = sum(len(name) + 3 for name in columns) + 1
        rows: list[tuple[Any, ...]] = []
        size = 0
        while chunk := cursor.fetchmany(limits.fetch_rows):
            rows.extend(chunk)
            size += len(orjson.dumps(chunk, default=_blob_text)) + row_overhead * len(chunk)
            if len(rows) > limits.max_result_rows:
                raise ResultTooLargeError(
                    f"The result has more than {limits.max_result_rows:,} rows, the emulator's "
                    "limit (Emulator(max_result_rows=...)). Narrow the query."
                )
            if size > limits.max_result_bytes:
                raise ResultTooLargeError(
                    f"The result is larger than {limits.max_result_bytes:,} bytes, the "
                    "emulator's limit (Emulator(max_result_bytes=...)). Narrow the query."
                )
        return rows

    # ------------------------------------------------------------------ SQLite callbacks

    def _progress(self) -> int:
        if not self._enforcing:
            return 0
        if self._cancelled():
            self._timed_out = True
            return 1
        if self._deadline is not None and time.monotonic() > self._deadline:
            self._timed_out = True
            return 1
        return 0

    def _authorize(
        self, action: int, arg1: str | None, arg2: str | None, _db: str | None, _by: str | None
    ) -> int:
        if not self._enforcing:
            return sqlite3.SQLITE_OK
        refusal = self._refusal_for(action, arg1, arg2)
        if refusal is None:
            return sqlite3.SQLITE_OK
        self._refusal = refusal
        return sqlite3.SQLITE_DENY

    def _refusal_for(self, action: int, arg1: str | None, arg2: str | None) -> Refusal | None:
        if action in _DROP_ACTIONS:
            self._dropping = True
        if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
            return "unsupported", ("ATTACH" if action == sqlite3.SQLITE_ATTACH else "DETACH",)
        if action == sqlite3.SQLITE_PRAGMA:
            return "unsupported", ("PRAGMA",)
        if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").casefold() in _REFUSED_FUNCTIONS:
            return "function", (arg2 or "",)
        if action == sqlite3.SQLITE_READ and _hidden(arg1) and not self._internal_read(arg2):
            return "object", (arg1 or "",)
        return None

    def _internal_read(self, column: str | None) -> bool:
        # CREATE reads back the catalogue row it wrote by ROWID; DROP and ALTER look their
        # object up. A user's SELECT of the catalogue is neither.
        return self._dropping or column == "ROWID"

    # ------------------------------------------------------------------ temporary objects

    def _drop_temporary_objects(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            # Temporary triggers too: one on a permanent table would outlive the request.
            objects = self.conn.execute(
                "SELECT type, name FROM temp.sqlite_master"
                " WHERE type IN ('table', 'view', 'trigger')"
            ).fetchall()
            for kind, name in objects:
                quoted = name.replace('"', '""')
                self.conn.execute(f'DROP {kind.upper()} IF EXISTS temp."{quoted}"')


def _hidden(table: str | None) -> bool:
    return table is not None and table.casefold().startswith(_HIDDEN_PREFIXES)
