"""Counting a session's HTTP requests by kind, from aiohttp's tracing hooks."""

from __future__ import annotations

import collections
import re
from types import SimpleNamespace

import aiohttp

__all__ = ["STATUS_KINDS", "RequestCounter", "request_kind"]

_QUERIES = r"/integrator/sites/[^/]+/queries"
_KINDS = (
    ("POST", re.compile(rf"{_QUERIES}/async"), "create"),
    ("POST", re.compile(rf"{_QUERIES}/status"), "batch_status"),
    ("POST", re.compile(rf"{_QUERIES}/immediate"), "immediate"),
    ("GET", re.compile(rf"{_QUERIES}/[^/]+/results/\d+(/stream)?"), "page"),
    ("GET", re.compile(rf"{_QUERIES}/[^/]+"), "get_query"),
)

STATUS_KINDS = ("batch_status", "get_query")
"""The kinds of request that check a query's status."""


def request_kind(method: str, path: str) -> str:
    """``create``, ``batch_status``, ``get_query``, ``page``, ``immediate`` or ``other``."""
    for kind_method, pattern, kind in _KINDS:
        if method == kind_method and pattern.fullmatch(path):
            return kind
    return "other"


class RequestCounter:
    """Counts the requests a session sends, by :func:`request_kind`.

    Pass :meth:`trace_config` to ``aiohttp.ClientSession(trace_configs=[...])``. Every
    attempt counts, retries included, since each is a request the server had to answer.
    """

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()

    def __repr__(self) -> str:
        return f"<RequestCounter {dict(self.counts)}>"

    def trace_config(self) -> aiohttp.TraceConfig:
        """A trace config that counts into this counter."""
        config = aiohttp.TraceConfig()
        config.on_request_start.append(self._on_request_start)
        return config

    async def _on_request_start(
        self,
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        self.counts[request_kind(params.method, params.url.path)] += 1

    @property
    def status_checks(self) -> int:
        """Requests that asked for a query's status, batched or not."""
        return sum(self.counts[kind] for kind in STATUS_KINDS)
