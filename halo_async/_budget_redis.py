"""The Redis backend of :class:`~halo_async.budget.RequestBudget` (the ``redis`` extra)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from halo_async import _constants as C
from halo_async import _validate
from halo_async._ledger_redis import connect
from halo_async.budget import RequestBudget
from halo_async.errors import ValidationError

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["RedisRequestBudget"]

logger = logging.getLogger(C.LOGGER_NAME)

# KEYS[1]: the key's bucket (a hash of tokens and the time they were counted); KEYS[2], if
# given: the site's pause (the time until which a 429 holds it). ARGV: now, rate, capacity,
# the bucket's expiry (ms). Returns the seconds to wait, as a string ("0": granted), since
# Redis turns a Lua number into an integer. One script, so one atomic step across processes.
_TAKE = """
local now = tonumber(ARGV[1])
if #KEYS == 2 then
  local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
  if paused > now then return tostring(paused - now) end
end
local rate, capacity = tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
if now > at then
  -- A clock behind the last one (another machine's) refills nothing, takes nothing back.
  tokens = math.min(capacity, tokens + (now - at) * rate)
  at = now
end
local wait = 0
-- Refills are sums of float products: a token short by rounding only is a token.
if tokens >= 1 - 1e-9 then tokens = math.max(0, tokens - 1) else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(at))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return tostring(wait)
"""

# KEYS[1]: the site's pause. ARGV: until, now. A later pause wins; an earlier one is kept.
_PAUSE = """
local untilv, now = tonumber(ARGV[1]), tonumber(ARGV[2])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if untilv > current and untilv > now then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', math.ceil((untilv - now) * 1000))
end
return 1
"""

# KEYS[1]: the key's query slots (a sorted set of holders scored by lease expiry). ARGV:
# now, the most slots, the holder, its lease's expiry, the set's expiry (ms). 1: taken.
# Holders whose lease passed (their process died) are dropped first: their slots are free.
_HOLD = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[5]) then redis.call('PEXPIRE', KEYS[1], ARGV[5]) end
return 1
"""

# KEYS[1]: the key's query slots. ARGV: now, the new expiry, the set's expiry (ms), then the
# holders. Returns the holders whose lease had already passed: theirs are not renewed (their
# slots may have been taken since), and they are dropped.
_RENEW = """
local now, lost = tonumber(ARGV[1]), {}
for i = 4, #ARGV do
  local expiry = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[i]) or '0')
  if expiry > now then
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[i])
  else
    redis.call('ZREM', KEYS[1], ARGV[i])
    lost[#lost + 1] = ARGV[i]
  end
end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return lost
"""

# A waiter polls for a free slot from this interval, doubling up to the cap. Polling, not a
# wake-up: a lease that lapses (a killed holder) sends no message, so a poll is needed
# anyway, and a blocking pop would hold a connection per waiter and time out by Redis'
# clock, not the injected one. Only one waiter per key and budget object polls at a time.
_FIRST_POLL_S = 0.01
_POLL_CAP_S = 0.25


class RedisRequestBudget(RequestBudget):
    """A request budget in Redis, shared by every process on it: ``rate`` requests per
    second per API key, in bursts of up to ``burst`` (default: one second's worth), and a
    per-site pause after a 429 (``Retry-After``, or ``pause`` seconds without one).

    The bucket is refilled by the clients' clocks (``clock``, Unix seconds): keep the
    machines' clocks in step (NTP), as a clock behind refills nothing until it catches up.
    Redis keys: ``{prefix}:{key fingerprint}`` and ``{prefix}:{key fingerprint}:site:{id}``.
    An unreachable Redis fails the request with redis' error rather than sending unbudgeted.

    With ``max_in_flight_queries``, at most that many of the key's queries run at once
    across every process: a fan-out holds one slot per site query, from just before its
    create to its last page (:meth:`query_slot`). A slot is a lease of ``lease`` seconds,
    renewed by one task per budget object while it holds any, so that the slots of a
    process that died free themselves once their lease passes. Redis key:
    ``{prefix}:{key fingerprint}:in-flight``.
    """

    def __init__(
        self,
        redis: str | redis.asyncio.Redis,
        *,
        rate: float,
        burst: int | None = None,
        pause: float = 1.0,
        max_in_flight_queries: int | None = None,
        lease: float = 30.0,
        prefix: str = "halo:budget",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.rate = _positive("rate", rate, "requests per second")
        self.burst = (
            _validate.int_in_range("burst", burst, 1, None, "requests")
            if burst is not None
            else max(1, math.floor(self.rate))
        )
        self.pause = _validate.seconds("pause", pause)
        self.max_in_flight_queries = (
            _validate.int_in_range(
                "max_in_flight_queries", max_in_flight_queries, 1, None, "queries"
            )
            if max_in_flight_queries is not None
            else None
        )
        self.lease = _positive("lease", lease, "seconds a query slot is held without renewal")
        self.prefix = _validate.non_blank("prefix", prefix, "a non-blank Redis key prefix")
        self._redis, self._owned = connect(redis, "RedisRequestBudget")
        self._clock = clock
        self._sleep = sleep
        self._take = self._redis.register_script(_TAKE)
        self._pause = self._redis.register_script(_PAUSE)
        self._slots = _QuerySlots(self) if self.max_in_flight_queries is not None else None
        # Long enough that a bucket left alone refills in full before it is forgotten.
        self._expiry_ms = max(1000, math.ceil(2000 * self.burst / self.rate))

    def __repr__(self) -> str:
        in_flight = (
            f" max_in_flight_queries={self.max_in_flight_queries}"
            if self._slots is not None
            else ""
        )
        return (
            f"<RedisRequestBudget rate={self.rate}/s burst={self.burst}{in_flight} "
            f"prefix={self.prefix!r}>"
        )

    async def try_acquire(self, key: str, site_id: str | None) -> float:
        """Take a request from the budget if it has one: 0.0, else the seconds to wait."""
        keys = [f"{self.prefix}:{key}"]
        if site_id is not None:
            keys.append(f"{self.prefix}:{key}:site:{site_id}")
        now = repr(self._clock())
        wait = await self._take(keys=keys, args=[now, repr(self.rate), self.burst, self._expiry_ms])
        return float(wait)

    async def acquire(self, key: str, site_id: str | None) -> None:
        while (wait := await self.try_acquire(key, site_id)) > 0:
            await self._sleep(wait)

    async def rate_limited(self, key: str, site_id: str | None, retry_after: float | None) -> None:
        if site_id is None:
            return  # the key's own bucket already paces requests about no one site
        now = self._clock()
        until = now + (retry_after if retry_after is not None else self.pause)
        await self._pause(
            keys=[f"{self.prefix}:{key}:site:{site_id}"], args=[repr(until), repr(now)]
        )

    def query_slot(self, key: str, site_id: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold one of the key's ``max_in_flight_queries`` slots while the block runs
        (waiting for one first); without ``max_in_flight_queries``, bound nothing."""
        if self._slots is None:
            return super().query_slot(key, site_id)
        return self._slots.hold(f"{self.prefix}:{key}:in-flight", site_id)

    async def close(self) -> None:
        """Stop renewing the slots still held (their leases then lapse) and close the Redis
        connection, if this budget opened it from a URL."""
        if self._slots is not None:
            await self._slots.close()
        if self._owned:
            await self._redis.aclose()

    async def __aenter__(self) -> RedisRequestBudget:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _positive(field: str, value: Any, unit: str) -> float:
    real = isinstance(value, int | float) and not isinstance(value, bool)
    if real and math.isfinite(value) and value > 0:
        return float(value)
    raise ValidationError(
        f"{field} must be a finite number > 0 ({unit}), got {value!r}", field=field, value=value
    )


class _QuerySlots:
    """A budget's query slots: a semaphore per key in Redis, of leases renewed while held."""

    def __init__(self, budget: RedisRequestBudget) -> None:
        assert budget.max_in_flight_queries is not None
        self._limit = budget.max_in_flight_queries
        self._lease = budget.lease
        self._clock = budget._clock
        self._sleep = budget._sleep
        self._hold = budget._redis.register_script(_HOLD)
        self._renew = budget._redis.register_script(_RENEW)
        self._redis = budget._redis
        # Kept well past a lease, so that a holder's entry outlives the holder's last renewal.
        self._expiry_ms = math.ceil(self._lease * 3000)
        self._name = uuid.uuid4().hex[:12]
        self._numbers = itertools.count()
        self._held: dict[str, str] = {}  # holder -> its Redis key
        self._turns: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._renewer: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def hold(self, slots: str, site_id: str) -> AsyncIterator[None]:
        holder = f"{self._name}:{next(self._numbers)}:{site_id}"
        await self._acquire(slots, holder)
        self._held[holder] = slots
        if self._renewer is None:
            self._renewer = asyncio.create_task(self._renew_while_held())
        try:
            yield
        finally:
            # Forgotten first: a release that fails or is cancelled leaves a lease that is no
            # longer renewed, so the slot frees itself once it passes.
            self._held.pop(holder, None)  # gone already if its lease lapsed while held
            if not self._held and self._renewer is not None:
                self._renewer.cancel()
                self._renewer = None
            await self._give_back(slots, holder)

    async def _give_back(self, slots: str, holder: str) -> None:
        """Release a slot before returning, even when the task is cancelled again meanwhile
        (a fan-out cancels its producers at a deadline and once more at its end): a slot
        given back only later would look held to the code that runs next."""
        release = asyncio.ensure_future(self._release(slots, holder))
        cancelled = False
        while not release.done():
            try:
                await asyncio.shield(release)
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError

    async def _release(self, slots: str, holder: str) -> None:
        try:
            await self._redis.zrem(slots, holder)
        except Exception as exc:
            logger.warning("a query slot was not released (its lease will lapse): %s", exc)

    async def _acquire(self, slots: str, holder: str) -> None:
        # One waiter per key polls, in arrival order; the others wait their turn here.
        async with self._turns[slots]:
            delay = _FIRST_POLL_S
            while not await self._try(slots, holder):
                await self._sleep(delay)
                delay = min(delay * 2, _POLL_CAP_S)

    async def _try(self, slots: str, holder: str) -> bool:
        now = self._clock()
        args = [repr(now), self._limit, holder, repr(now + self._lease), self._expiry_ms]
        try:
            return bool(await self._hold(keys=[slots], args=args))
        except asyncio.CancelledError:
            # The script may have run before the cancel: give back what it may have taken.
            await self._give_back(slots, holder)
            raise

    async def _renew_while_held(self) -> None:
        while True:
            await self._sleep(self._lease / 3)
            by_key: defaultdict[str, list[str]] = defaultdict(list)
            for holder, slots in self._held.items():
                by_key[slots].append(holder)
            for slots, holders in by_key.items():
                try:
                    await self._renew_holders(slots, holders)
                except Exception as exc:
                    logger.warning(
                        "query slots not renewed (retried in %s s): %s", self._lease / 3, exc
                    )

    async def _renew_holders(self, slots: str, holders: list[str]) -> None:
        now = self._clock()
        args = [repr(now), repr(now + self._lease), self._expiry_ms, *holders]
        lost = await self._renew(keys=[slots], args=args)
        for holder in lost:
            # Its lease passed before it was renewed (the loop was blocked that long): the
            # slot may be someone else's now, so the query runs on beyond the bound.
            self._held.pop(holder.decode() if isinstance(holder, bytes) else holder, None)
            logger.warning("a query slot's lease lapsed while held: the key may exceed its bound")

    async def close(self) -> None:
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
