"""The Redis backend of :class:`~halo_async.ledger.Ledger` (the ``redis`` extra)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from halo_async.ledger import EntryKey, Ledger, LedgerEntry, _parse_field

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["RedisLedger", "connect"]


def connect(target: str | redis.asyncio.Redis, part: str) -> tuple[Any, bool]:
    """A Redis client from a URL (owned: closed with its user) or the one given (not)."""
    from halo_async._extras import require

    if not isinstance(target, str):
        return target, False
    return require("redis.asyncio", part).from_url(target), True


class RedisLedger(Ledger):
    """A ledger in Redis, for workers on several machines: one hash per run
    (``{prefix}:{run_id}``), one field per entry. A claim is ``HSETNX``, so of two workers'
    claims of one entry exactly one wins.

    Durability is Redis's: with the default snapshotting, a Redis crash can forget the last
    records (then an entry may read ``creating``, which a later run reports as unknown,
    never re-sends). Run Redis with ``appendonly yes`` to keep every record.
    """

    def __init__(
        self,
        redis: str | redis.asyncio.Redis,
        *,
        prefix: str = "halo:ledger",
    ) -> None:
        self._redis, self._owned = connect(redis, "RedisLedger")
        self.prefix = prefix

    def __repr__(self) -> str:
        pool: Any = getattr(self._redis, "connection_pool", None)
        where = pool.connection_kwargs.get("host", "?") if pool is not None else "?"
        return f"<RedisLedger {where} prefix={self.prefix!r}>"

    def _name(self, run_id: str) -> str:
        return f"{self.prefix}:{run_id}"

    async def entries(self, run_id: str) -> list[LedgerEntry]:
        stored: dict[bytes, bytes] = await self._redis.hgetall(self._name(run_id))
        return [
            LedgerEntry.from_json(_parse_field(run_id, field.decode()), body)
            for field, body in stored.items()
        ]

    async def get(self, key: EntryKey) -> LedgerEntry | None:
        body: bytes | None = await self._redis.hget(self._name(key.run_id), key.field)
        return LedgerEntry.from_json(key, body) if body is not None else None

    async def _insert_if_absent(self, entry: LedgerEntry) -> tuple[LedgerEntry, bool]:
        key = entry.key
        name = self._name(key.run_id)
        if await self._redis.hsetnx(name, key.field, entry.to_json()):
            return entry, True
        body: bytes | None = await self._redis.hget(name, key.field)
        if body is None:  # forgotten between the two calls: claim it again
            return await self._insert_if_absent(entry)
        return LedgerEntry.from_json(key, body), False

    async def _put(self, entry: LedgerEntry) -> None:
        key = entry.key
        await self._redis.hset(self._name(key.run_id), key.field, entry.to_json())

    async def forget(self, key: EntryKey) -> None:
        await self._redis.hdel(self._name(key.run_id), key.field)

    async def close(self) -> None:
        if self._owned:
            await self._redis.aclose()
