"""Helpers shared by the test layers (fixtures live in the conftest files beside them)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import inspect
import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import parse_qsl, urlencode

import aiohttp
import orjson
import yarl
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict

from halo_async import HaloClient, PollPolicy, RetryPolicy
from halo_async._http import HttpTransport
from halo_async.emulator import SiteSpec
from halo_async.emulator.database import PracticeDatabase

# The official document sits in the steering repo's shared/ folder, beside this checkout;
# the tests that need it skip where it is absent (it is never copied into the project).
OPENAPI_PATH = Path(__file__).resolve().parents[1] / ".." / "shared" / "halo-api" / "openapi.json"


def load_openapi() -> dict[str, Any] | None:
    """The official OpenAPI document, or None where it is not beside the checkout."""
    if not OPENAPI_PATH.exists():
        return None
    document: dict[str, Any] = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
    return document


async def no_sleep(_: float) -> None:
    """A sleep that only yields to the loop: retries and polls without waiting."""
    await asyncio.sleep(0)


# Real sockets, zero emulator latency: retry waits (Retry-After included) are skipped, and
# polls come milliseconds apart instead of a quarter second.
FAST_POLL = PollPolicy(initial_interval=0.005, max_interval=0.05)
FAST_RETRY = RetryPolicy(sleep=no_sleep, max_attempts=6)


def client_tasks() -> set[asyncio.Task[object]]:
    """Tasks of the client side (the in-process emulator's connection handlers excluded)."""
    return {task for task in asyncio.all_tasks() if not _emulator_side(task)}


def _emulator_side(task: asyncio.Task[object]) -> bool:
    code = getattr(task.get_coro(), "cr_code", None)
    if code is None:  # not a coroutine: e.g. an async generator's finalizer (aclose())
        return False
    return "/emulator/" in code.co_filename or "web_protocol" in code.co_filename


def bp_sites(count: int, patients: int = 60) -> list[SiteSpec]:
    """``count`` Best Practice sites of ``patients`` patients each."""
    return [SiteSpec(pms_type="BestPractice", patients=patients) for _ in range(count)]


async def expected_counts(halo: HaloClient, site_ids: list[str]) -> dict[str, int]:
    """Each site's patient count, asked with an immediate query."""
    counts = {}
    for site in site_ids:
        query = await halo.immediate_query(site, "SELECT COUNT(*) AS N FROM PATIENTS")
        counts[site] = int(query.decode_rows()[0]["N"])
    return counts


# -- HaloMock: Halo Cloud stood in for at the transport's one network round trip ------------


@dataclasses.dataclass(frozen=True)
class CallbackResult:
    """What a ``callback=`` returns: the answer to send back (aioresponses' shape)."""

    status: int = 200
    payload: Any = None
    body: bytes | str = b""
    headers: Mapping[str, str] | None = None
    content_type: str | None = "application/json"

    def wire(self) -> tuple[int, CIMultiDictProxy[str], bytes]:
        """The status, headers and body as ``HttpTransport._round_trip`` returns them."""
        headers: CIMultiDict[str] = CIMultiDict(self.headers or {})
        if self.content_type and "Content-Type" not in headers:
            headers["Content-Type"] = self.content_type
        raw = json.dumps(self.payload) if self.payload is not None else self.body
        body = raw.encode("utf-8") if isinstance(raw, str) else raw
        return self.status, CIMultiDictProxy(headers), body


@dataclasses.dataclass(frozen=True)
class RequestCall:
    """One request as it reached the seam: ``params``, ``data``, ``headers`` (the
    session's defaults merged in, as aiohttp sends them) and ``timeout``."""

    kwargs: dict[str, Any]


Callback = Callable[..., CallbackResult | Awaitable[CallbackResult | None] | None]


@dataclasses.dataclass
class _Route:
    method: str
    url: yarl.URL | re.Pattern[str]
    answer: CallbackResult
    callback: Callback | None
    exception: BaseException | None
    repeat: bool

    def matches(self, method: str, url: yarl.URL) -> bool:
        if method != self.method:
            return False
        if isinstance(self.url, re.Pattern):
            return self.url.match(str(url)) is not None
        return self.url == url


def _normalised(url: yarl.URL | str, params: Mapping[str, str] | None = None) -> yarl.URL:
    """The URL with ``params`` merged into its query string, sorted, so that a route
    registered with its query string matches however the request spelt it."""
    url = yarl.URL(url)
    if params:
        query: MultiDict[str] = MultiDict(url.query)
        query.extend(url.with_query(params).query)
        url = url.with_query(query)
    return url.with_query(urlencode(sorted(parse_qsl(url.query_string))))


class HaloMock:
    """Halo Cloud, scripted: stands in for ``HttpTransport._round_trip`` (the one network
    round trip of the client) on every transport while active, as httpx's MockTransport
    stands in for the network, so that the retry loop, redirects, timeouts, key scrubbing
    and error mapping above it run for real, on whichever aiohttp is installed.

    Routes answer in registration order; a route is used up by one request unless
    ``repeat=True`` (a repeating route then shadows later ones for the same URL). A request
    that matches no route raises ``aiohttp.ClientConnectionError``, and an ``exception=``
    is raised from the round trip, where aiohttp would raise it. ``requests`` maps
    (method, URL with its query string) to the calls made, matched or not.
    """

    def __init__(self) -> None:
        self.requests: dict[tuple[str, yarl.URL], list[RequestCall]] = {}
        self._routes: list[_Route] = []
        self._patch: Any = None

    def add(
        self,
        url: str | yarl.URL | re.Pattern[str],
        method: str = "GET",
        *,
        status: int = 200,
        payload: Any = None,
        body: bytes | str = b"",
        headers: Mapping[str, str] | None = None,
        content_type: str | None = "application/json",
        callback: Callback | None = None,
        exception: BaseException | None = None,
        repeat: bool = False,
    ) -> None:
        """Answer the next ``method`` request to ``url`` (a URL or a compiled pattern)."""
        answer = CallbackResult(status, payload, body, headers, content_type)
        target = url if isinstance(url, re.Pattern) else _normalised(url)
        self._routes.append(_Route(method.upper(), target, answer, callback, exception, repeat))

    def get(self, url: str | yarl.URL | re.Pattern[str], **kwargs: Any) -> None:
        self.add(url, "GET", **kwargs)

    def post(self, url: str | yarl.URL | re.Pattern[str], **kwargs: Any) -> None:
        self.add(url, "POST", **kwargs)

    def delete(self, url: str | yarl.URL | re.Pattern[str], **kwargs: Any) -> None:
        self.add(url, "DELETE", **kwargs)

    def __enter__(self) -> HaloMock:
        async def round_trip(
            _: HttpTransport, session: aiohttp.ClientSession, method: str, url: yarl.URL, **kw: Any
        ) -> tuple[int, CIMultiDictProxy[str], bytes]:
            return await self._answer(session, method, url, **kw)

        self._patch = mock.patch.object(HttpTransport, "_round_trip", round_trip)
        self._patch.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._patch.stop()

    async def _answer(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: yarl.URL,
        *,
        params: Mapping[str, str] | None,
        data: bytes | None,
        headers: Mapping[str, str],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - recorded, as the seam passes it to aiohttp
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        if session.closed:
            raise RuntimeError("Session is closed")  # what aiohttp raises
        sent: CIMultiDict[str] = CIMultiDict(session.headers)
        sent.update(headers)
        kwargs = {"params": params, "data": data, "headers": sent, "timeout": timeout}
        full = _normalised(url, params)
        self.requests.setdefault((method, full), []).append(RequestCall(kwargs))
        route = self._take(method, full)
        if route is None:
            raise aiohttp.ClientConnectionError(f"Connection refused: {method} {full}")
        answer = route.callback(full, **kwargs) if route.callback is not None else None
        if inspect.isawaitable(answer):
            answer = await answer
        if route.exception is not None:
            raise route.exception
        return (answer or route.answer).wire()

    def _take(self, method: str, url: yarl.URL) -> _Route | None:
        for index, route in enumerate(self._routes):
            if route.matches(method, url):
                if not route.repeat:
                    del self._routes[index]
                return route
        return None

    def made(self) -> list[tuple[str, yarl.URL, dict[str, Any]]]:
        """Every request seen: (method, URL with its query string, keyword arguments)."""
        return [
            (method, url, call.kwargs)
            for (method, url), calls in self.requests.items()
            for call in calls
        ]

    def only(self) -> tuple[str, yarl.URL, dict[str, Any]]:
        """The one request made; fails the test if there were none or several."""
        made = self.made()
        assert len(made) == 1, f"expected one request, got {[(m, str(u)) for m, u, _ in made]}"
        return made[0]

    @staticmethod
    def body(kwargs: dict[str, Any]) -> Any:
        """The JSON a recorded request sent (None when it had no body)."""
        data = kwargs.get("data")
        return orjson.loads(data) if data is not None else None


# -- Origin: a real web server on 127.0.0.1 with scripted answers ----------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclasses.dataclass(frozen=True)
class Received:
    """One request as the server got it."""

    method: str
    path_qs: str
    headers: dict[str, str]
    body: bytes


class Origin:
    """A web server on 127.0.0.1 that records every request it gets and answers each with
    ``handler`` (JSON ``{}`` until set). ``port`` 0 picks a free one; a given port lets a
    test refuse connections first (nothing listening) and :meth:`start` the server later."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[Received] = []
        self.port = port
        self.url = f"http://127.0.0.1:{port}" if port else ""
        self.handler: Handler = _empty_json
        self._runner: web.AppRunner | None = None
        self._released = asyncio.Event()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(Received(request.method, request.path_qs, dict(request.headers), body))
        return await self.handler(request)

    async def hang(self, _: web.Request) -> web.StreamResponse:
        """A handler that never answers (until the server closes): the client times out."""
        await self._released.wait()
        return web.Response(status=503)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{self.port}"

    async def close(self) -> None:
        self._released.set()  # hung handlers answer, so that the shutdown does not wait
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> Origin:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


async def _empty_json(_: web.Request) -> web.StreamResponse:
    return web.json_response({})


def status(code: int) -> Handler:
    """A handler answering ``code`` with an empty body."""

    async def handler(_: web.Request) -> web.StreamResponse:
        return web.Response(status=code)

    return handler


def in_turn(*handlers: Handler) -> Handler:
    """A handler that serves each request with the next of ``handlers``, the last repeating."""
    queue = list(handlers)

    async def handler(request: web.Request) -> web.StreamResponse:
        serve = queue.pop(0) if len(queue) > 1 else queue[0]
        return await serve(request)

    return handler


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connections to it are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# -- practice databases of the emulator's unit tests ---------------------------------------

PRACTICE_NOW = datetime.datetime(2025, 5, 27, 10, 30, 15)  # a Tuesday morning, practice time
PRACTICE_PATIENTS = 300


def pinned() -> datetime.datetime:
    """The practice clock of the unit tests: always PRACTICE_NOW."""
    return PRACTICE_NOW


def practice_db(pms_type: str = "BestPractice", seed: int = 5, **kwargs: Any) -> PracticeDatabase:
    """A practice database of PRACTICE_PATIENTS patients on the pinned clock."""
    kwargs.setdefault("now", pinned)
    return PracticeDatabase(pms_type=pms_type, seed=seed, patients=PRACTICE_PATIENTS, **kwargs)


def rows(db: PracticeDatabase, sql: str, **kwargs: Any) -> list[dict[str, Any]]:
    """The rows of one reader command."""
    result = db.execute(sql, **kwargs)
    assert result.rows is not None
    return list(result.rows)


# -- Redis -----------------------------------------------------------------------------------


class RedisServer:
    """A real ``redis-server`` on a unix socket in a scratch directory, no persistence:
    started by the tests themselves (``.ci/run`` installs it where it is absent)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = directory / "redis.sock"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 20.0) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise FileNotFoundError("redis-server is not installed")
        self._process = subprocess.Popen(
            [
                executable,
                "--port", "0",
                "--unixsocket", str(self.socket),
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        ends_at = time.monotonic() + timeout
        while not self._answers():
            if self._process.poll() is not None or time.monotonic() > ends_at:
                self.stop()
                raise RuntimeError(f"redis-server did not start in {timeout} s")
            time.sleep(0.01)  # the server's start-up, before any test runs

    def _answers(self) -> bool:
        if not self.socket.exists():
            return False
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as probe:
            probe.settimeout(1)
            probe.connect(str(self.socket))
            probe.sendall(b"PING\r\n")
            return probe.recv(16).startswith(b"+PONG")
        return False

    def flush(self) -> None:
        """Empty every database (between tests)."""
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(5)
            client.connect(str(self.socket))
            client.sendall(b"FLUSHALL\r\n")
            client.recv(16)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


class FakeTime:
    """A clock that only the waits of whoever holds it move (a request budget's, say)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds
