"""The Redis backend of :class:`~halo_async.budget.RequestBudget` (the ``redis`` extra)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from halo_async import _validate
from halo_async.budget import RequestBudget
from halo_async.errors import ValidationError

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["RedisRequestBudget"]

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


class RedisRequestBudget(RequestBudget):
    """A request budget in Redis, shared by every process on it: ``rate`` requests per
    second per API key, in bursts of up to ``burst`` (default: one second's worth), and a
    per-site pause after a 429 (``Retry-After``, or ``pause`` seconds without one).

    The bucket is refilled by the clients' clocks (``clock``, Unix seconds): keep the
    machines' clocks in step (NTP), as a clock behind refills nothing until it catches up.
    Redis keys: ``{prefix}:{key fingerprint}`` and ``{prefix}:{key fingerprint}:site:{id}``.
    An unreachable Redis fails the request with redis' error rather than sending unbudgeted.
    """

    def __init__(
        self,
        redis: str | redis.asyncio.Redis,
        *,
        rate: float,
        burst: int | None = None,
        pause: float = 1.0,
        prefix: str = "halo:budget",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        from halo_async._extras import require

        asyncio_redis = require("redis.asyncio", "RedisRequestBudget")
        self.rate = _positive("rate", rate, "requests per second")
        self.burst = (
            _validate.int_in_range("burst", burst, 1, None, "requests")
            if burst is not None
            else max(1, math.floor(self.rate))
        )
        self.pause = _validate.seconds("pause", pause)
        self.prefix = _validate.non_blank("prefix", prefix, "a non-blank Redis key prefix")
        if isinstance(redis, str):
            self._redis = asyncio_redis.from_url(redis)
            self._owned = True
        else:
            self._redis = redis
            self._owned = False
        self._clock = clock
        self._sleep = sleep
        self._take = self._redis.register_script(_TAKE)
        self._pause = self._redis.register_script(_PAUSE)
        # Long enough that a bucket left alone refills in full before it is forgotten.
        self._expiry_ms = max(1000, math.ceil(2000 * self.burst / self.rate))

    def __repr__(self) -> str:
        return f"<RedisRequestBudget rate={self.rate}/s burst={self.burst} prefix={self.prefix!r}>"

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

    async def close(self) -> None:
        """Close the Redis connection, if this budget opened it from a URL."""
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
