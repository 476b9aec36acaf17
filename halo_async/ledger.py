"""Ledger: what a run submitted to Halo, so that a restart resumes and never pays twice.

Halo counts usage per query per practice, and a query-creating POST has no idempotency
key: a process that dies mid-fan-out and starts over would create every query again. A
:class:`Ledger` records, for each entry of a run (run id, site id, and which occurrence
of the site in the run), a key of the query (its SQL, parameters and catalogue), the Halo
query id once known, the last status, the next page and row to deliver, and the outcome.
``fan_out(..., ledger=..., run_id=...)`` and ``submit(..., ledger=..., run_id=...)``
consult it before creating anything:

- an entry whose query was created is resumed by its query id (polled, then streamed from
  the recorded page), never created again;
- an entry whose create was sent but not answered (the process died, or the answer was
  lost) is in state ``unknown``: it is reported as
  :class:`~halo_async.errors.SubmissionOutcomeUnknownError`, never re-sent blindly
  (:meth:`Ledger.resolve` settles it once someone has checked the site);
- an entry that finished is not run again.

Delivery is recorded after the consumer has taken a page (it asked for the next item), so
a crash can deliver the rows since the last record again, never lose them: a sink that
keeps ``(site_id, page_number, first_row + i)`` positions makes that exactly once.

Two backends: :class:`SQLiteLedger` (one file in WAL mode, safe for several processes on
one machine; the default) and :class:`RedisLedger` (when workers on several machines share
a run). :func:`open_ledger` opens either from a URL.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import enum
import hashlib
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import attrs
import orjson

from halo_async import _constants as C
from halo_async import _validate
from halo_async.errors import (
    APIError,
    ClientClosedError,
    HaloConnectionError,
    IncompleteResultError,
    LedgerMismatchError,
    QueryFailedError,
    RedirectRefusedError,
    ResultExpiredError,
    SubmissionOutcomeUnknownError,
    ValidationError,
)
from halo_async.models import Checkpoint

if TYPE_CHECKING:
    from halo_async import models
    from halo_async._api import QueryApi
    from halo_async._ledger_redis import RedisLedger
    from halo_async._retry import PollPolicy
    from halo_async.jobs import QueryJob

__all__ = [
    "EntryKey",
    "EntryState",
    "Ledger",
    "LedgerEntry",
    "RedisLedger",
    "SQLiteLedger",
    "open_ledger",
    "query_key",
]

T = TypeVar("T")

_log = logging.getLogger(C.LOGGER_NAME)


class EntryState(enum.StrEnum):
    """Where an entry of a run stands."""

    CREATING = "creating"
    """The create was about to be sent. Found by a later run, it means the process died
    around the POST: whether Halo created the query is unknown."""
    CREATED = "created"
    """Halo answered with the query id: a later run resumes it by that id."""
    UNKNOWN = "unknown"
    """The create was sent and its answer lost: never re-sent until :meth:`Ledger.resolve`."""
    SUCCEEDED = "succeeded"
    """Every row was delivered."""
    FAILED = "failed"
    """The query failed at Halo (or its result was gone); its error is recorded."""


@attrs.frozen
class EntryKey:
    """One entry of a run: a site, and which occurrence of it in the run's site list
    (a site listed twice runs the query twice)."""

    run_id: str
    site_id: str
    occurrence: int = 0

    @property
    def field(self) -> str:
        """The entry's name within its run, as the backends store it."""
        return f"{self.site_id}#{self.occurrence}"


@attrs.frozen
class LedgerEntry:
    """What the ledger knows of one entry of a run."""

    key: EntryKey
    query_key: str
    """:func:`query_key` of the request: a later run with other SQL is refused."""
    state: EntryState
    query_id: str | None = None
    status: str | None = None
    """The last Halo status seen (queued, executing, success...)."""
    next_page: int = 1
    next_row: int = 0
    rows_delivered: int = 0
    """Rows delivered across every run of this entry."""
    pages_delivered: int = 0
    error: str | None = None
    """The error's class and message, for a failed or unknown entry."""
    updated_at: float = 0.0
    """Unix time of the last record."""

    @property
    def checkpoint(self) -> Checkpoint | None:
        """Where delivery stands, once the query id is known."""
        if self.query_id is None:
            return None
        return Checkpoint(self.key.site_id, self.query_id, self.next_page, self.next_row)

    def to_json(self) -> bytes:
        """The entry as the backends store it."""
        fields = attrs.asdict(self, recurse=False, filter=lambda a, _: a.name != "key")
        return orjson.dumps(fields)

    @classmethod
    def from_json(cls, key: EntryKey, data: bytes | str) -> LedgerEntry:
        """An entry stored by :meth:`to_json` (unknown fields of a newer version ignored)."""
        fields = orjson.loads(data)
        known = {a.name for a in attrs.fields(cls)} - {"key"}
        values = {name: value for name, value in fields.items() if name in known}
        values["state"] = EntryState(values["state"])
        return cls(key=key, **values)


def query_key(body: dict[str, Any]) -> str:
    """The key of a query-creating request: a hash of its command (SQL, parameters, mode)
    and catalogue. The time allowed in the queue is left out: changing it does not make
    another query."""
    identity = {"command": body.get("command"), "catalogue": body.get("catalogue")}
    return hashlib.sha256(orjson.dumps(identity, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


class Ledger(abc.ABC):
    """A durable record of a run's entries. Use one as an async context manager, or call
    :meth:`close`. Backends store entries; the transitions are the same for all."""

    # -- what a backend provides ----------------------------------------------------------

    @abc.abstractmethod
    async def entries(self, run_id: str) -> list[LedgerEntry]:
        """Every entry recorded for ``run_id``."""

    @abc.abstractmethod
    async def get(self, key: EntryKey) -> LedgerEntry | None:
        """The entry, if recorded."""

    @abc.abstractmethod
    async def _insert_if_absent(self, entry: LedgerEntry) -> tuple[LedgerEntry, bool]:
        """Store ``entry`` unless one with its key exists; return the stored one and whether
        this call stored it. Atomic across processes: of two claims of one key, one wins."""

    @abc.abstractmethod
    async def _put(self, entry: LedgerEntry) -> None:
        """Store ``entry``, replacing the one with its key."""

    @abc.abstractmethod
    async def forget(self, key: EntryKey) -> None:
        """Remove the entry: a later run creates its query anew. For an ``unknown`` entry
        once someone has checked that Halo did not create it (or accepts paying twice)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the backend's connection."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # -- the transitions (what the SDK records) -------------------------------------------

    async def claim(self, key: EntryKey, query_key: str) -> tuple[LedgerEntry, bool]:
        """Record that ``key``'s query is about to be created. Returns the stored entry and
        whether this call made it (False: it existed, maybe from an earlier run)."""
        mine = LedgerEntry(key, query_key, EntryState.CREATING, updated_at=time.time())
        return await self._insert_if_absent(mine)

    async def resolve(self, key: EntryKey, query_id: str | None) -> LedgerEntry | None:
        """Settle an entry whose create's outcome is unknown, once someone has checked the
        site (Halo offers no way to list a site's queries): with the id of the query Halo
        did create, a later run resumes it; with None (Halo created nothing), the entry is
        forgotten and a later run creates the query. Returns the entry recorded, if any."""
        entry = await self.get(key)
        if entry is None or entry.state not in (EntryState.UNKNOWN, EntryState.CREATING):
            state = entry.state.value if entry is not None else "no entry"
            raise ValidationError(
                f"only an entry whose create is unknown can be resolved; {key.site_id} of run "
                f"{key.run_id!r} is {state}",
                field="key",
                value=key,
            )
        if query_id is None:
            await self.forget(key)
            return None
        query_id = _validate.uuid_str("query_id", query_id)
        return await self.record(entry, state=EntryState.CREATED, query_id=query_id, error=None)

    async def record(self, entry: LedgerEntry, **changes: Any) -> LedgerEntry:
        """Store ``entry`` with ``changes`` (fields of :class:`LedgerEntry`)."""
        updated = attrs.evolve(entry, updated_at=time.time(), **changes)
        await self._put(updated)
        return updated


def check_entry(entry: LedgerEntry, query_key: str) -> LedgerEntry:
    """``entry`` if it records the same query; a run id reused for other SQL is refused."""
    if entry.query_key != query_key:
        key = entry.key
        raise LedgerMismatchError(
            f"run {key.run_id!r} recorded another query for site {key.site_id} "
            f"(query key {entry.query_key}, this request's is {query_key}): use a new run_id "
            "for a new query",
            field="run_id",
            value=key.run_id,
        )
    return entry


def unknown_error(entry: LedgerEntry) -> SubmissionOutcomeUnknownError:
    """The error of an entry whose create may or may not have happened."""
    key = entry.key
    cause = entry.error or "the process stopped between sending the create and its answer"
    return SubmissionOutcomeUnknownError(
        f"run {key.run_id!r}, site {key.site_id}: an earlier create's outcome is unknown "
        f"({cause}); not re-sent. Check the site, then settle it with Ledger.resolve()",
        method="POST",
        path=f"/integrator/sites/{key.site_id}/queries",
        body=None,
        cause=RuntimeError(cause),
    )


# Errors after which the query has no more to give: its entry is recorded as failed, and a
# later run does not resume it. After any other (a deadline, a poll timeout, no answer) the
# query may still be running at Halo: the entry stays resumable.
# (Not a 404: a wrong base URL answers it too, and the query it is about may be retained.)
FINAL_ERRORS = (QueryFailedError, ResultExpiredError, IncompleteResultError)

# A create that raised one of these was answered with an error, or never reached Halo (see
# HttpTransport._final_error): no query exists, and a later run may create it.
_NOT_CREATED_ERRORS = (APIError, HaloConnectionError)


def describe(exc: BaseException) -> str:
    """An error as a ledger records it: its class and message."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def create_recorded(
    ledger: Ledger, claimed: LedgerEntry, api: QueryApi, body: dict[str, Any]
) -> tuple[models.AsyncQuery, LedgerEntry]:
    """Create the claimed entry's query; record its id, or that its outcome is unknown,
    or forget the claim when no query can exist."""
    try:
        query = await api._create_async_query(claimed.key.site_id, body)
    except RedirectRefusedError as exc:
        # A redirect is an answer, but "303 See Other" is how a server says it created
        # something elsewhere: not proof that nothing was created.
        await ledger.record(claimed, state=EntryState.UNKNOWN, error=describe(exc))
        raise
    except _NOT_CREATED_ERRORS:
        await ledger.forget(claimed.key)
        raise
    except BaseException as exc:
        # Sent, perhaps: a lost answer, a client closed mid-request, a cancelled task.
        await ledger.record(claimed, state=EntryState.UNKNOWN, error=describe(exc))
        raise
    try:
        entry = await ledger.record(
            claimed, state=EntryState.CREATED, query_id=query.id, status=str(query.status)
        )
    except BaseException:
        # The one place the id lives now is this log line: say it loud.
        _log.error(
            "query %s was created on site %s (run %r) but the ledger could not record it",
            query.id,
            claimed.key.site_id,
            claimed.key.run_id,
        )
        raise
    return query, entry


def check_open(api: QueryApi) -> None:
    """A closed client sends nothing: raise before anything is claimed (an entry claimed
    then would read as a create whose outcome is unknown)."""
    if api.closed:
        raise ClientClosedError("the HaloClient is closed: no query was created")


def in_progress_error(entry: LedgerEntry) -> SubmissionOutcomeUnknownError:
    """The error of an entry another process claimed while this one was getting ready."""
    key = entry.key
    return SubmissionOutcomeUnknownError(
        f"run {key.run_id!r}, site {key.site_id}: another process claimed this entry "
        f"(it is {entry.state.value} since {time.ctime(entry.updated_at)}); not sent here",
        method="POST",
        path=f"/integrator/sites/{key.site_id}/queries",
        body=None,
        cause=RuntimeError("claimed elsewhere"),
    )


async def recorded_job(
    api: QueryApi,
    ledger: Ledger,
    key: EntryKey,
    body: dict[str, Any],
    *,
    poll: PollPolicy | None,
    prefetch: int,
) -> QueryJob:
    """``submit(..., ledger=, run_id=)``: the entry's job, resumed by its query id where an
    earlier run created it, else created and recorded."""
    from halo_async.jobs import QueryJob

    wanted = query_key(body)
    entry = await ledger.get(key)
    query = None
    if entry is None:
        check_open(api)
        entry, mine = await ledger.claim(key, wanted)
        if mine:
            query, entry = await create_recorded(ledger, entry, api, body)
    check_entry(entry, wanted)
    checkpoint = entry.checkpoint
    if checkpoint is None or entry.state in (EntryState.CREATING, EntryState.UNKNOWN):
        if entry.state is EntryState.CREATING:  # the process died around the POST
            await ledger.record(entry, state=EntryState.UNKNOWN)
        raise unknown_error(entry)
    return QueryJob(
        api,
        key.site_id,
        checkpoint.query_id,
        query=query,
        poll=poll,
        prefetch=prefetch,
        next_page=checkpoint.next_page,
        next_row=checkpoint.next_row,
        _recorder=JobRecorder(ledger, entry),
        # Every row was taken: the job asks Halo nothing and yields nothing.
        _delivered=entry.state is EntryState.SUCCEEDED,
    )


class JobRecorder:
    """What a job submitted with a ledger records as its consumer takes its rows."""

    def __init__(self, ledger: Ledger, entry: LedgerEntry) -> None:
        self.ledger = ledger
        self.entry = entry

    async def delivered(self, job: QueryJob, rows: int, *, done: bool = False) -> None:
        """``rows`` more rows were taken (a whole page, or the rest of one)."""
        point = job.checkpoint()
        entry = self.entry
        self.entry = await self.ledger.record(
            entry,
            state=EntryState.SUCCEEDED if done else entry.state,
            status=str(job.status) if job.status is not None else entry.status,
            next_page=point.next_page,
            next_row=point.next_row,
            rows_delivered=entry.rows_delivered + rows,
            pages_delivered=entry.pages_delivered + (rows > 0),
        )

    async def failed(self, error: BaseException) -> None:
        """The job raised: recorded as failed if the query has nothing more to give."""
        if isinstance(error, FINAL_ERRORS) and self.entry.state is not EntryState.SUCCEEDED:
            self.entry = await self.ledger.record(
                self.entry, state=EntryState.FAILED, error=describe(error)
            )


# -- SQLite ----------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS halo_ledger (
    run_id TEXT NOT NULL,
    entry TEXT NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (run_id, entry)
) WITHOUT ROWID
"""


class SQLiteLedger(Ledger):
    """A ledger in one SQLite file, in WAL mode: several processes on one machine can
    share it (a writer waits up to ``busy_timeout`` seconds for another's write).

    Each record is its own committed transaction with ``synchronous=NORMAL``: it survives
    the process being killed (the write is in the OS's hands), though not a power cut
    between WAL checkpoints. SQLite runs on a thread of its own, never on the event loop.
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self._busy_timeout = _validate.seconds("busy_timeout", busy_timeout)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="halo-ledger"
        )
        self._db: sqlite3.Connection | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<SQLiteLedger {str(self.path)!r}>"

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            if self._closed:  # work queued before close() runs; none reopens the file
                raise RuntimeError(f"{self!r} is closed")
            db = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout,
                isolation_level=None,  # autocommit: every statement is its own transaction
                check_same_thread=False,  # used only from the one executor thread
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
            self._db = db
        return self._db

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: work(self._connect()))

    async def entries(self, run_id: str) -> list[LedgerEntry]:
        rows = await self._run(
            lambda db: db.execute(
                "SELECT entry, body FROM halo_ledger WHERE run_id = ?", (run_id,)
            ).fetchall()
        )
        return [LedgerEntry.from_json(_parse_field(run_id, name), body) for name, body in rows]

    async def get(self, key: EntryKey) -> LedgerEntry | None:
        row = await self._run(
            lambda db: db.execute(
                "SELECT body FROM halo_ledger WHERE run_id = ? AND entry = ?",
                (key.run_id, key.field),
            ).fetchone()
        )
        return LedgerEntry.from_json(key, row[0]) if row is not None else None

    async def _insert_if_absent(self, entry: LedgerEntry) -> tuple[LedgerEntry, bool]:
        key = entry.key

        def insert(db: sqlite3.Connection) -> tuple[bytes, bool]:
            # One write transaction: of two processes' claims one inserts, and the entry
            # read back is the one stored (no forget() can come in between).
            db.execute("BEGIN IMMEDIATE")
            try:
                inserted = db.execute(
                    "INSERT INTO halo_ledger (run_id, entry, body) VALUES (?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    (key.run_id, key.field, entry.to_json()),
                ).rowcount
                row = db.execute(
                    "SELECT body FROM halo_ledger WHERE run_id = ? AND entry = ?",
                    (key.run_id, key.field),
                ).fetchone()
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return bytes(row[0]), inserted == 1

        body, inserted = await self._run(insert)
        return LedgerEntry.from_json(key, body), inserted

    async def _put(self, entry: LedgerEntry) -> None:
        key = entry.key
        await self._run(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO halo_ledger (run_id, entry, body) VALUES (?, ?, ?)",
                (key.run_id, key.field, entry.to_json()),
            )
        )

    async def forget(self, key: EntryKey) -> None:
        await self._run(
            lambda db: db.execute(
                "DELETE FROM halo_ledger WHERE run_id = ? AND entry = ?",
                (key.run_id, key.field),
            )
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True  # no new work; what is queued runs first, on the connection

        def disconnect() -> None:
            db, self._db = self._db, None
            if db is not None:
                db.close()

        await asyncio.get_running_loop().run_in_executor(self._executor, disconnect)
        self._executor.shutdown(wait=False)  # its queue is empty: nothing to wait for


def _parse_field(run_id: str, name: str) -> EntryKey:
    site_id, _, occurrence = name.rpartition("#")
    return EntryKey(run_id, site_id, int(occurrence))


def open_ledger(url: str | Path) -> Ledger:
    """A ledger from a URL: ``sqlite:///path/to/file.db`` (or a plain path) or
    ``redis://host:port/db`` (the ``redis`` extra)."""
    text = str(url)
    if text.startswith(("redis://", "rediss://", "unix://")):
        from halo_async._ledger_redis import RedisLedger

        return RedisLedger(text)
    if text.startswith("sqlite://"):
        # As SQLAlchemy spells them: sqlite:///relative.db, sqlite:////absolute.db.
        text = text.removeprefix("sqlite://").removeprefix("/")
    if not text:
        raise ValidationError(
            f"a ledger URL must be sqlite:///PATH, a path, or redis://HOST, got {str(url)!r}",
            field="ledger",
            value=str(url),
        )
    return SQLiteLedger(text)


def __getattr__(name: str) -> Any:
    # RedisLedger needs the redis extra: imported only when asked for.
    if name == "RedisLedger":
        from halo_async._ledger_redis import RedisLedger

        return RedisLedger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
