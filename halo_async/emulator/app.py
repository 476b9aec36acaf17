"""The emulator's aiohttp application: the integrator routes, auth, faults and error envelopes.

Every route is named after its OAS ``operationId`` (used for request counters and fault
rules). Errors always leave as envelope A (``{"error": {status, statusText, message}}``),
except the two query-level bodies the OAS defines (ExecutionFailedImmediateQuery and the 413
errorDetails body). Bad input is a 4xx; a 500 only ever comes from an injected fault or an
emulator bug (which is logged).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import dataclasses
import hmac
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware

from halo_async.emulator import _errors
from halo_async.emulator._errors import ApiError, envelope
from halo_async.emulator._requests import (
    bad_request,
    parse_batch_ids,
    parse_command_request,
    parse_page_number,
    parse_registered_request,
)
from halo_async.emulator._sites import PMS_NAMES
from halo_async.emulator._wire import (
    page_headers,
    page_json,
    query_json,
    registered_json,
    registered_result_json,
    site_json,
)
from halo_async.emulator.state import EmulatorState

__all__ = ["EmulatorStats", "create_app"]

_log = logging.getLogger("halo_async.emulator")

KEY_HEADER = "Ocp-Apim-Subscription-Key"
# Azure API Management's default query parameter, read only when the header is absent.
KEY_QUERY = "subscription-key"
_STREAM_CHUNK = 64 * 1024 * 3  # a multiple of 3 keeps base64 chunks concatenable
_MAX_BODY = 64 * 1024 * 1024
# Marks a request whose connection a fault dropped, for the stats. aiohttp 3.14 warns
# (NotAppKeyWarning) on a string key in a request's storage and wants a web.RequestKey,
# which older aiohttp (>= 3.9 is supported) does not have: the string stays for those.
_RequestKey = getattr(web, "RequestKey", None)
_DROPPED: Any = _RequestKey("dropped", bool) if _RequestKey is not None else "dropped"
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclasses.dataclass
class EmulatorStats:
    """Request counters for tests and benchmarks, keyed by OAS operationId."""

    requests: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    """Requests received per operation (including rejected and faulted ones)."""
    responses: collections.Counter[tuple[str, int]] = dataclasses.field(
        default_factory=collections.Counter
    )
    """Responses per (operation, HTTP status)."""
    dropped: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    """Connections closed without a response, per operation."""

    def reset(self) -> None:
        """Zero every counter."""
        self.requests.clear()
        self.responses.clear()
        self.dropped.clear()


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )


def _operation(request: web.Request) -> str | None:
    route = request.match_info.route
    return route.name if route is not None else None


class _Routes:
    """The handlers, bound to one emulator state."""

    def __init__(self, state: EmulatorState, *, api_key: str, stream_rows: bool) -> None:
        self.state = state
        self._api_key = api_key.encode()
        self.stream_rows = stream_rows

    async def _body(self, request: web.Request) -> bytes:
        """The request body; a client that sends less than its Content-Length said (or
        stalls) gets 408 once the body timeout passes, instead of holding this handler."""
        try:
            async with asyncio.timeout(self.state.limits.body_timeout):
                return await request.read()
        except TimeoutError:
            raise ApiError(408, "The request body did not arrive in time.") from None

    # ------------------------------------------------------------------ middlewares

    @web.middleware
    async def errors(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return _json(exc.body, exc.status, exc.headers)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            message = _errors.NOT_FOUND if exc.status == 404 else (exc.text or exc.reason)
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            if exc.status == 413:
                message = "Request body is too large."
            return _json(envelope(exc.status, message), exc.status, headers)
        except Exception:
            _log.exception("emulator error on %s %s", request.method, request.path)
            return _json(envelope(500, _errors.INTERNAL), 500)

    def authenticate(self, request: web.Request) -> None:
        key = request.headers.get(KEY_HEADER)
        if key is None:
            key = request.query.get(KEY_QUERY)
        if key is None:
            raise ApiError(401, _errors.MISSING_KEY)
        if not hmac.compare_digest(key.encode(), self._api_key):
            raise ApiError(401, _errors.INVALID_KEY)

    @web.middleware
    async def gateway(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        """Auth, then injected faults, as the API gateway in front of Halo Cloud would."""
        self.authenticate(request)
        operation = _operation(request)
        if operation is None:
            return await handler(request)
        site = request.match_info.get("siteId")
        fault = self.state.faults.for_request(operation, site.lower() if site else None)
        if fault is None:
            return await handler(request)
        if fault.latency > 0:
            await self.state.clock.sleep(fault.latency)
        if fault.drop:
            # Reads are dropped before anything happens; writes after the server acted, so a
            # caller cannot tell whether its query exists.
            response = None if request.method == "GET" else await handler(request)
            request[_DROPPED] = True
            if request.transport is not None:
                # abort(), not close(): close() would still flush a response written after it.
                request.transport.abort()
            return response if response is not None else web.Response(status=499)
        if fault.status is not None:
            headers = {}
            message = _errors.SERVER_ERROR_TEXTS.get(fault.status, HTTPStatus(fault.status).phrase)
            if fault.status == 429:
                message = _errors.RATE_LIMITED.format(seconds=fault.retry_after or 1)
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
            raise ApiError(fault.status, message, headers=headers)
        return await handler(request)

    # ------------------------------------------------------------------ queries

    async def create_immediate(self, request: web.Request) -> web.StreamResponse:
        command = parse_command_request(await self._body(request), immediate=True)
        site = self.state.queryable_site(request.match_info["siteId"])
        return _json(await self.state.run_immediate(site, command))

    async def create_async(self, request: web.Request) -> web.StreamResponse:
        command = parse_command_request(await self._body(request), immediate=False)
        site = self.state.queryable_site(request.match_info["siteId"])
        return _json(query_json(self.state.submit_async(site, command)), 201)

    async def get_query(self, request: web.Request) -> web.StreamResponse:
        site = self.state.queryable_site(request.match_info["siteId"])
        return _json(query_json(self.state.query(site, request.match_info["queryId"])))

    async def batch_status(self, request: web.Request) -> web.StreamResponse:
        ids = parse_batch_ids(await self._body(request))
        site = self.state.queryable_site(request.match_info["siteId"])
        return _json({"results": self.state.batch_status(site, ids)})

    async def result_page(self, request: web.Request) -> web.StreamResponse:
        number = parse_page_number(request.match_info["pageNumber"])
        site = self.state.queryable_site(request.match_info["siteId"])
        query, page = self.state.page(site, request.match_info["queryId"], number, "getResultPage")
        return _json(page_json(query, page), headers=page_headers(page))

    async def stream_page(self, request: web.Request) -> web.StreamResponse:
        number = parse_page_number(request.match_info["pageNumber"])
        site = self.state.queryable_site(request.match_info["siteId"])
        query, page = self.state.page(
            site, request.match_info["queryId"], number, "streamResultPage"
        )
        data = page.data
        response = web.StreamResponse(headers=page_headers(page))
        response.content_type = "application/json"
        await response.prepare(request)
        if self.stream_rows:
            # The bare rows (REFERENCE §5 leaves the format open; the SDK sniffs `[` vs `{`).
            payload = data if data is not None else b"[]"
            for offset in range(0, len(payload), _STREAM_CHUNK):
                await response.write(payload[offset : offset + _STREAM_CHUNK])
        else:
            if data is not None:
                await response.write(b'{"data":"')
                for offset in range(0, len(data), _STREAM_CHUNK):
                    await response.write(base64.b64encode(data[offset : offset + _STREAM_CHUNK]))
                await response.write(b'",')
            else:
                await response.write(b"{")
            await response.write(b'"parameters":' + orjson.dumps(query.parameters or []) + b"}")
        await response.write_eof()
        return response

    # ------------------------------------------------------------------ registered queries

    async def create_registered(self, request: web.Request) -> web.StreamResponse:
        registered = parse_registered_request(await self._body(request))
        site = self.state.queryable_site(request.match_info["siteId"])
        return _json({"id": self.state.create_registered(site, registered).id}, 202)

    async def list_registered(self, request: web.Request) -> web.StreamResponse:
        site = self.state.queryable_site(request.match_info["siteId"])
        queries = self.state.registered_queries(site)
        return _json({"registeredQueries": [registered_json(q) for q in queries]})

    async def get_registered(self, request: web.Request) -> web.StreamResponse:
        site = self.state.queryable_site(request.match_info["siteId"])
        return _json(registered_json(self.state.registered(site, request.match_info["queryId"])))

    async def cancel_registered(self, request: web.Request) -> web.StreamResponse:
        site = self.state.queryable_site(request.match_info["siteId"])
        self.state.cancel_registered(site, request.match_info["queryId"])
        return web.Response(status=204)

    async def registered_result(self, request: web.Request) -> web.StreamResponse:
        site = self.state.queryable_site(request.match_info["siteId"])
        record = self.state.registered_result(site, request.match_info["queryId"])
        return _json(registered_result_json(record))

    # ------------------------------------------------------------------ sites

    @staticmethod
    def _pms_query(request: web.Request) -> tuple[str, str]:
        pms_site_id = request.query.get("practiceManagementSiteId")
        pms_name = request.query.get("practiceManagementName")
        if pms_site_id is None:
            raise bad_request("Required parameter 'practiceManagementSiteId' is missing.")
        if pms_name is None:
            raise bad_request("Required parameter 'practiceManagementName' is missing.")
        if pms_name not in PMS_NAMES.values():
            allowed = ", ".join(f"'{name}'" for name in PMS_NAMES.values())
            raise bad_request(f"'practiceManagementName' must be one of {allowed}.")
        return pms_site_id, pms_name

    async def pair_site(self, request: web.Request) -> web.StreamResponse:
        pms_site_id, pms_name = self._pms_query(request)
        site = self.state.pair(pms_site_id, pms_name, request.query.get("pairingCode"))
        return _json(site_json(site, self.state.clock.now()))

    async def find_sites(self, request: web.Request) -> web.StreamResponse:
        pms_site_id, pms_name = self._pms_query(request)
        now = self.state.clock.now()
        sites = self.state.find_sites(pms_site_id, pms_name)
        return _json({"sites": [site_json(site, now) for site in sites]})

    async def get_site(self, request: web.Request) -> web.StreamResponse:
        site = self.state.site(request.match_info["siteId"])
        if not site.paired:
            raise ApiError(403, "The site is not paired with this integrator. Pair it first.")
        return _json(site_json(site, self.state.clock.now()))


# The literal sibling paths are not query ids: without the lookahead `GET .../queries/async`
# would route to getQuery and 405 answers would advertise GET where the API has none.
_QUERY_ID = "{queryId:(?!(?:immediate|async|status|registered)$)[^{}/]+}"
_SITE = "/integrator/sites/{siteId}"
_QUERIES = f"{_SITE}/queries"

#: (method, path, handler name on _Routes, operationId), in the order aiohttp matches them.
_ROUTE_TABLE = (
    ("POST", f"{_QUERIES}/immediate", "create_immediate", "createImmediateQuery"),
    ("POST", f"{_QUERIES}/async", "create_async", "createAsyncQuery"),
    ("POST", f"{_QUERIES}/status", "batch_status", "getQueryStatusBatch"),
    ("POST", f"{_QUERIES}/registered", "create_registered", "createRegisteredQuery"),
    ("GET", f"{_QUERIES}/registered", "list_registered", "getRegisteredQueries"),
    ("GET", f"{_QUERIES}/registered/{{queryId}}", "get_registered", "getRegisteredQuery"),
    ("DELETE", f"{_QUERIES}/registered/{{queryId}}", "cancel_registered", "cancelRegisteredQuery"),
    ("GET", f"{_QUERIES}/registered/{{queryId}}/results", "registered_result",
     "getRegisteredQueryResult"),
    ("GET", f"{_QUERIES}/{_QUERY_ID}", "get_query", "getQuery"),
    ("GET", f"{_QUERIES}/{{queryId}}/results/{{pageNumber}}", "result_page", "getResultPage"),
    ("GET", f"{_QUERIES}/{{queryId}}/results/{{pageNumber}}/stream", "stream_page",
     "streamResultPage"),
    ("POST", "/integrator/pair-site", "pair_site", "Integrator_PairSite"),
    ("POST", "/integrator/pairSite", "pair_site", "pairSite"),
    ("GET", "/integrator/sites", "find_sites", "getSites"),
    ("GET", _SITE, "get_site", "getSite"),
)  # fmt: skip


def _counting(counters: EmulatorStats) -> Middleware:
    @web.middleware
    async def count(request: web.Request, handler: _Handler) -> web.StreamResponse:
        operation = _operation(request)
        if operation is not None:
            counters.requests[operation] += 1
        response = await handler(request)
        if operation is not None:
            if request.get(_DROPPED):
                counters.dropped[operation] += 1
            else:
                counters.responses[(operation, response.status)] += 1
        return response

    return count


def create_app(
    state: EmulatorState,
    *,
    api_key: str,
    stats: EmulatorStats | None = None,
    stream_rows: bool = False,
) -> web.Application:
    """The aiohttp application serving ``state`` under ``/integrator/``.

    ``stream_rows`` makes ``/stream`` send the page's bare JSON rows instead of the
    ``{data, parameters}`` envelope. Closing the app (its cleanup) closes the state.
    """
    routes = _Routes(state, api_key=api_key, stream_rows=stream_rows)
    counters = stats if stats is not None else EmulatorStats()
    app = web.Application(
        middlewares=[_counting(counters), routes.errors, routes.gateway],
        client_max_size=_MAX_BODY,
    )
    for method, path, handler, operation in _ROUTE_TABLE:
        # No HEAD: the API has none, and 405 answers must not advertise it.
        app.router.add_route(method, path, getattr(routes, handler), name=operation)

    async def close_state(_: web.Application) -> None:
        await state.close()

    app.on_cleanup.append(close_state)
    return app
