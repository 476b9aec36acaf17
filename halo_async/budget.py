"""A request budget: what one integrator key may send, shared by every process that uses it.

Halo rate-limits per API key. Workers that each keep to a fair rate can together exceed
it, and a 429 one worker got says nothing to the others. A :class:`RequestBudget` given to
:class:`~halo_async.HaloClient` (``budget=``) is awaited before every HTTP attempt and told
of every 429, so that all clients sharing it keep within one budget and hold off a site
that said "slow down" together. A fan-out also holds one of the budget's query slots
(:meth:`RequestBudget.query_slot`) per site query, so that the budget can bound the
queries in flight too. :class:`RedisRequestBudget` (the ``redis`` extra) is one in Redis:
a token bucket per key, taken atomically by a Lua script, and optionally a semaphore of
leased query slots per key.

Budgets are keyed by a fingerprint of the API key (:func:`key_fingerprint`), never by the
key itself.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from halo_async._budget_redis import RedisRequestBudget

__all__ = ["RedisRequestBudget", "RequestBudget", "key_fingerprint"]


def key_fingerprint(api_key: str) -> str:
    """A stable name for ``api_key`` that does not reveal it (a truncated SHA-256)."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:24]


class RequestBudget(abc.ABC):
    """What a client consults before each HTTP attempt. ``key`` is the
    :func:`key_fingerprint` of the client's API key; ``site_id`` the site the request is
    for (None for requests about no one site, such as finding sites)."""

    @abc.abstractmethod
    async def acquire(self, key: str, site_id: str | None) -> None:
        """Wait until one more request may be sent."""

    @abc.abstractmethod
    async def rate_limited(self, key: str, site_id: str | None, retry_after: float | None) -> None:
        """A request was answered 429 (``retry_after`` seconds, if Halo said): hold the
        site's requests of every client sharing the budget for that long."""

    def query_slot(self, key: str, site_id: str) -> contextlib.AbstractAsyncContextManager[None]:
        """One of the key's slots for a query in flight, held by a fan-out from just before
        it creates (or resumes) a site's query to the end of that query. The default bounds
        nothing: budgets that limit queries in flight override it."""
        return _NO_SLOT


# Reusable and reentrant: one for every slot of a budget that bounds nothing.
_NO_SLOT: contextlib.nullcontext[None] = contextlib.nullcontext()


def __getattr__(name: str) -> Any:
    # RedisRequestBudget needs the redis extra: imported only when asked for.
    if name == "RedisRequestBudget":
        from halo_async._budget_redis import RedisRequestBudget

        return RedisRequestBudget
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
