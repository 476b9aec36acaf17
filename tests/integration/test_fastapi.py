"""The FastAPI glue and the example service, end to end against the emulator.

The example app runs under uvicorn on 127.0.0.1 (a real socket, so that the emulator can
POST its webhooks to it and a client can hang up mid-stream); the webhook route's refusals
are also checked in process through httpx's ASGI transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib.util
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import httpx
import orjson
import pytest
import uvicorn
from fastapi import FastAPI
from starlette.requests import ClientDisconnect

from halo_async import HaloClient, PollPolicy, QueryJob
from halo_async.contrib.fastapi import (
    HaloClientDep,
    JobRegistryDep,
    halo_lifespan,
    rows_response,
    webhook_router,
)
from halo_async.emulator import Emulator, Latency, ManualClock, SiteSpec
from halo_async.emulator.webhooks import WebhookSender
from halo_async.webhooks import (
    JobRegistry,
    WebhookEvent,
    WebhookSource,
    WebhookVerifier,
    compute_signature,
)

SECRET = "whsec-integration"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastapi_app.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("halo_fastapi_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


example = load_example()


async def poll_sleep(seconds: float) -> None:
    """The jobs' poll sleep: real, and recognisable among the running tasks."""
    await asyncio.sleep(seconds)


FAST_POLL = PollPolicy(initial_interval=0.002, max_interval=0.01, sleep=poll_sleep)
# A job parked on a one-minute interval: only a webhook can make it finish quickly.
PARKED_POLL = PollPolicy(initial_interval=60, max_interval=60, jitter=False, sleep=poll_sleep)


def bp_site(pms_site_id: str, patients: int = 40) -> SiteSpec:
    return SiteSpec(pms_type="BestPractice", pms_site_id=pms_site_id, patients=patients)


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait (a millisecond at a time, 5 s at most) until ``condition()`` holds."""
    deadline = time.monotonic() + 5.0
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


@contextlib.asynccontextmanager
async def serve(app: FastAPI, sock: socket.socket) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on ``sock``; yields its base URL."""
    config = uvicorn.Config(
        app, lifespan="on", log_level="warning", access_log=False, timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        await eventually(lambda: server.started or task.done(), "uvicorn to start")
        if task.done():
            task.result()
        host, port = sock.getsockname()[:2]
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task


def poll_sleeping() -> bool:
    """Whether some job is waiting out its poll interval."""
    return any(
        task.get_coro().cr_code is poll_sleep.__code__  # type: ignore[union-attr]
        for task in asyncio.all_tasks()
    )


def job_tasks() -> list[asyncio.Task[Any]]:
    """Tasks working for a QueryJob: page prefetches, poll sleeps, webhook wakers."""
    found = []
    for task in asyncio.all_tasks():
        code = task.get_coro().cr_code  # type: ignore[union-attr]
        if (
            code.co_filename.endswith(("halo_async/jobs.py", "halo_async/fanout.py"))
            or code is poll_sleep.__code__
            or code.co_qualname == "Event.wait"
        ):
            found.append(task)
    return found


async def read_lines(response: aiohttp.ClientResponse) -> list[dict[str, Any]]:
    lines = []
    async for line in response.content:
        lines.append(orjson.loads(line))
    return lines


async def expected_rows(halo: HaloClient, site_id: str, surname: str = "%") -> list[Any]:
    query = await halo.immediate_query(
        site_id, example.PATIENTS_SQL, parameters={"@surname": surname}
    )
    return list(query.decode_rows())


@contextlib.asynccontextmanager
async def example_service(
    emu: Emulator, sock: socket.socket, **kwargs: Any
) -> AsyncIterator[tuple[str, FastAPI]]:
    app = example.create_app(
        client_factory=lambda: HaloClient(emu.api_key, base_url=emu.base_url),
        webhook_secret=SECRET,
        **kwargs,
    )
    async with serve(app, sock) as url:
        yield url, app


# ------------------------------------------------------------------------------ streaming rows


async def test_group_endpoint_fans_out_and_streams_every_practices_rows() -> None:
    sites = [bp_site("1001", 30), bp_site("1002", 45), bp_site("1003", 12)]
    groups = {"north": example.PracticeGroup(["1001", "1002", "1003", "9999"])}
    sock = listening_socket()
    async with (
        Emulator(sites=sites, seed=3, page_size=600) as emu,
        HaloClient(emu.api_key, base_url=emu.base_url) as halo,
        example_service(emu, sock, groups=groups, poll=FAST_POLL) as (url, _),
        aiohttp.ClientSession() as http,
    ):
        expected = {s.pms_site_id: await expected_rows(halo, s.id) for s in emu.sites}
        async with http.get(f"{url}/groups/north/patients") as response:
            assert response.status == 200
            assert response.content_type == "application/x-ndjson"
            lines = await read_lines(response)
        async with http.get(f"{url}/groups/south/patients") as missing:
            assert missing.status == 404

    rows: dict[str, list[Any]] = {"1001": [], "1002": [], "1003": []}
    errors = {}
    for line in lines:
        if "row" in line:
            rows[line["pmsSiteId"]].append(line["row"])
        else:
            errors[line["pmsSiteId"]] = line["error"]
    assert rows == expected  # every row of every practice, each practice's in order
    assert all(len(site_rows) > 1 for site_rows in rows.values())
    assert errors.keys() == {"9999"}
    assert errors["9999"].startswith("SiteNotFoundError")
    assert emu.stats.requests["getResultPage"] > 3  # several pages per site: streamed


async def test_site_endpoint_streams_rows_and_names_the_query() -> None:
    sock = listening_socket()
    async with (
        Emulator(sites=[bp_site("2001", 60)], seed=5, page_size=800) as emu,
        HaloClient(emu.api_key, base_url=emu.base_url) as halo,
        example_service(emu, sock, poll=FAST_POLL) as (url, app),
        aiohttp.ClientSession() as http,
    ):
        site = emu.sites[0]
        expected = await expected_rows(halo, site.id, "S%")
        async with http.get(f"{url}/sites/2001/patients", params={"surname": "S%"}) as response:
            assert response.status == 200
            query_id = response.headers["X-Halo-Query-Id"]
            assert response.headers["X-Halo-Site-Id"] == site.id
            lines = await read_lines(response)
        assert lines == expected
        assert expected, "the seed should give some S% surnames"
        record = emu.query(query_id)
        assert record is not None
        assert record.status == "successful"
        assert len(app.state.halo_jobs) == 0  # the job left the registry when it finished
        async with http.get(f"{url}/sites/404404/patients") as unknown:
            assert unknown.status == 404
            assert "404404" in (await unknown.json())["detail"]


# ------------------------------------------------------------------------------------ webhooks


async def advance_when_sleeping(clock: ManualClock, seconds: float, what: str) -> None:
    """Advance the emulator's manual clock by ``seconds`` once something sleeps that long.

    Waiting first matters: advancing before the emulator starts a sleep would not wake it,
    and advancing past its longer timers (the execution limit) would fire them.
    """
    await eventually(lambda: any(s <= seconds for s in clock.pending), what)
    clock.advance(seconds)


async def test_webhook_from_the_emulator_wakes_a_job_parked_on_a_one_minute_poll() -> None:
    clock = ManualClock()
    sock = listening_socket()
    host, port = sock.getsockname()[:2]
    sender = WebhookSender(f"http://{host}:{port}/halo/webhooks", SECRET, initial_delay=0, jitter=0)
    emulator = Emulator(
        sites=[bp_site("3001", 50)],
        seed=9,
        clock=clock,
        latency=Latency(execution=30.0),
        page_size=700,
        webhooks=sender,
    )
    async with (
        emulator as emu,
        example_service(emu, sock, poll=PARKED_POLL, webhook_clock=clock.now) as (url, app),
        aiohttp.ClientSession() as http,
    ):
        jobs: JobRegistry = app.state.halo_jobs
        started = time.monotonic()
        async with http.get(f"{url}/sites/3001/patients") as response:
            query_id = response.headers["X-Halo-Query-Id"]
            await eventually(lambda: query_id in jobs, "the job to register")
            [job] = jobs.jobs(query_id)
            assert isinstance(job, QueryJob)
            # Parked: it knows its query is initialising (the create said so), so it waits a
            # minute before its first poll.
            await eventually(poll_sleeping, "the job to park on its poll interval")
            assert job.status_polls == 0
            assert job.status == "initialising"
            await advance_when_sleeping(clock, 30, "the emulator's simulated execution")
            lines = await read_lines(response)
        elapsed = time.monotonic() - started

        assert elapsed < 10, "the job waited for its poll interval instead of the webhook"
        assert len(lines) == 50
        assert job.status_polls == 1  # the one poll the webhook triggered
        assert emu.stats.requests["getQuery"] == 1
        assert len(jobs) == 0
        [delivery] = sender.deliveries
        assert delivery.query_id == query_id
        assert delivery.outcome == "delivered"
        assert [a.status for a in delivery.attempts] == [200]

        # Halo delivering the same webhook again (re-signed, as a retry is): acknowledged,
        # not acted on.
        attempt = delivery.attempts[0]
        headers = {
            "Content-Type": "application/json",
            "X-Halo-Id": delivery.id,
            "X-Halo-Timestamp": attempt.timestamp,
            "X-Halo-Signature-256": sender.signature(delivery.body, attempt.timestamp),
        }
        async with http.post(f"{url}/halo/webhooks", data=delivery.body, headers=headers) as replay:
            assert replay.status == 200
            assert await replay.json() == {"status": "duplicate"}


async def test_registered_query_runs_reach_the_webhook_handler() -> None:
    received: list[WebhookEvent] = []
    handled = asyncio.Event()

    async def on_event(event: WebhookEvent) -> None:
        received.append(event)
        handled.set()

    app = FastAPI()
    app.include_router(webhook_router(SECRET, on_event=on_event))
    sock = listening_socket()
    host, port = sock.getsockname()[:2]
    sender = WebhookSender(
        f"http://{host}:{port}/halo/webhooks?source={{source}}", SECRET, initial_delay=0
    )
    async with (
        Emulator(sites=[bp_site("4001", 10)], seed=2, webhooks=sender) as emu,
        serve(app, sock),
        HaloClient(emu.api_key, base_url=emu.base_url) as halo,
    ):
        registered_id = await halo.create_registered_query(
            emu.sites[0].id,
            "SELECT COUNT(*) AS N FROM PATIENTS",
            name="patient count",
            frequency=300,
            duration=600,
        )
        await asyncio.wait_for(handled.wait(), 5)
        await sender.drain()
    [event] = received
    assert event.query_id == registered_id
    assert event.site_id == emu.sites[0].id
    assert event.webhook_source == WebhookSource.REGISTERED
    [delivery] = sender.deliveries
    assert delivery.url.endswith("?source=registered")
    assert delivery.outcome == "delivered"


class CountingJob:
    def __init__(self, query_id: str) -> None:
        self.query_id = query_id
        self.woken = 0

    def notify(self) -> None:
        self.woken += 1


QUERY_ID = "1366ef6e-d536-457c-8f1b-eaa4352059f9"
NOW = dt.datetime(2026, 3, 5, 14, 30, 1, tzinfo=dt.UTC)


def delivery(
    webhook_id: str = "a1b2c3d4-e5f6-7890-abcd-ef1234567890",
    *,
    sent_at: dt.datetime = NOW,
    secret: str = SECRET,
    body: bytes | None = None,
) -> tuple[bytes, dict[str, str]]:
    payload = {
        "id": webhook_id,
        "occurredAt": "2026-03-05T14:30:00.0000000+00:00",
        "siteId": "3f91c577-20a8-467b-8991-b96dfb90e8c6",
        "queryId": QUERY_ID,
        "webhookSource": "async",
    }
    raw = body if body is not None else orjson.dumps(payload)
    timestamp = sent_at.isoformat()
    return raw, {
        "Content-Type": "application/json",
        "X-Halo-Id": webhook_id,
        "X-Halo-Timestamp": timestamp,
        "X-Halo-Signature-256": compute_signature(secret, raw, timestamp),
    }


@pytest.fixture
async def webhook_app() -> AsyncIterator[tuple[httpx.AsyncClient, CountingJob]]:
    registry = JobRegistry()
    job = CountingJob(QUERY_ID)
    registry.register(job)
    verifier = WebhookVerifier(SECRET, clock=lambda: NOW + dt.timedelta(seconds=2))
    app = FastAPI()
    app.include_router(webhook_router(verifier, jobs=registry))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        yield client, job


async def post(client: httpx.AsyncClient, raw: bytes, headers: dict[str, str]) -> httpx.Response:
    return await client.post("/halo/webhooks", content=raw, headers=headers)


async def test_webhook_route_wakes_the_job_once_and_acknowledges_replays(
    webhook_app: tuple[httpx.AsyncClient, CountingJob],
) -> None:
    client, job = webhook_app
    raw, headers = delivery()
    first = await post(client, raw, headers)
    assert first.status_code == 200
    assert first.json() == {"status": "accepted", "woken": 1}
    replay = await post(client, raw, headers)
    assert replay.status_code == 200
    assert replay.json() == {"status": "duplicate"}
    assert job.woken == 1


@pytest.mark.parametrize(
    ("make", "status", "says"),
    [
        (lambda: delivery(secret="someone-else"), 401, "does not match"),
        (lambda: delivery(sent_at=NOW - dt.timedelta(minutes=6)), 401, "refused"),
        (lambda: delivery(sent_at=NOW + dt.timedelta(minutes=10)), 401, "in the future"),
        (lambda: delivery(body=b'{"id": "x"}'), 400, "does not fit"),
    ],
    ids=["bad-signature", "stale", "future", "not-a-payload"],
)
async def test_webhook_route_refuses_what_it_cannot_trust(
    webhook_app: tuple[httpx.AsyncClient, CountingJob],
    make: Callable[[], tuple[bytes, dict[str, str]]],
    status: int,
    says: str,
) -> None:
    client, job = webhook_app
    raw, headers = make()
    response = await post(client, raw, headers)
    assert response.status_code == status
    assert says in response.json()["detail"]
    assert job.woken == 0
    # A refused delivery is not remembered: the genuine one still gets through after it.
    genuine = await post(client, *delivery())
    assert genuine.json()["woken"] == 1


async def test_webhook_route_without_signature_headers_is_unauthorised(
    webhook_app: tuple[httpx.AsyncClient, CountingJob],
) -> None:
    client, job = webhook_app
    raw, headers = delivery()
    del headers["X-Halo-Signature-256"]
    response = await post(client, raw, headers)
    assert response.status_code == 401
    assert job.woken == 0


async def call_with_body(
    app: FastAPI, headers: dict[str, str], chunks: int, *, declare_length: bool
) -> tuple[int, int]:
    """POST ``chunks`` 64 KiB chunks of body to the webhook route as a server would hand them
    over; returns the status and how many chunks the route pulled."""
    pulled = 0
    chunk = b"x" * 65_536
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    if declare_length:
        raw_headers.append((b"content-length", str(chunks * len(chunk)).encode()))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/halo/webhooks", "raw_path": b"/halo/webhooks",
        "query_string": b"", "headers": raw_headers, "server": ("app", 80),
        "client": ("test", 1), "root_path": "",
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": chunk, "more_body": pulled < chunks}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], pulled


@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "chunked"])
async def test_an_unsigned_or_oversized_body_is_never_read_whole(declare_length: bool) -> None:
    verifier = WebhookVerifier(SECRET, clock=lambda: NOW + dt.timedelta(seconds=2))
    app = FastAPI()
    app.include_router(webhook_router(verifier, jobs=JobRegistry()))
    _, signed = delivery()
    unsigned = {"Content-Type": "application/json"}

    # 300 MB claimed: refused on its headers alone, or after 64 KiB of a signed one.
    status, pulled = await call_with_body(app, unsigned, 4_800, declare_length=declare_length)
    assert (status, pulled) == (401, 0)
    status, pulled = await call_with_body(app, signed, 4_800, declare_length=declare_length)
    assert status == 413
    assert pulled <= 2, f"{pulled} chunks of 64 KiB read for a body the route refuses"


# ---------------------------------------------------------------------------- disconnecting


async def test_client_disconnect_stops_the_jobs_polling_and_prefetching() -> None:
    clock = ManualClock()
    sock = listening_socket()
    emulator = Emulator(
        sites=[bp_site("5001", 200)],
        seed=4,
        clock=clock,
        latency=Latency(page_upload=1.0),
        page_size=500,
    )
    async with (
        emulator as emu,
        example_service(emu, sock, poll=FAST_POLL) as (url, app),
        aiohttp.ClientSession() as http,
    ):
        jobs: JobRegistry = app.state.halo_jobs
        assert job_tasks() == []
        response = await http.get(f"{url}/sites/5001/patients")
        query_id = response.headers["X-Halo-Query-Id"]
        await advance_when_sleeping(clock, 1, "the first page's upload")
        first = orjson.loads(await response.content.readline())
        assert "InternalID" in first
        record = emu.query(query_id)
        assert record is not None
        assert record.status == "uploading"
        assert len(record.pages) > 3, "the result should still have pages to upload"
        assert query_id in jobs
        assert job_tasks(), "the job should be polling while the client reads"

        response.close()  # the HTTP client hangs up mid-stream
        await eventually(lambda: query_id not in jobs, "the job to leave the registry")
        await eventually(lambda: not job_tasks(), "the job's tasks to end")
        await asyncio.sleep(0.02)  # a request already on the wire may still land
        polls = emu.stats.requests["getQuery"]
        pages = emu.stats.requests["getResultPage"]

        # Upload the rest: a job still alive would poll and fetch every few milliseconds.
        while record.status == "uploading":
            await advance_when_sleeping(clock, 1, "the next page's upload")
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)
        assert record.status == "successful"
        assert emu.stats.requests["getQuery"] == polls
        assert emu.stats.requests["getResultPage"] == pages
        assert job_tasks() == []


async def test_client_disconnect_stops_a_group_fan_out() -> None:
    clock = ManualClock()
    sock = listening_socket()
    sites = [bp_site(str(6001 + n), 150) for n in range(3)]
    groups = {"all": example.PracticeGroup([s.pms_site_id for s in sites])}
    emulator = Emulator(
        sites=sites, seed=6, clock=clock, latency=Latency(page_upload=1.0), page_size=500
    )
    async with (
        emulator as emu,
        example_service(emu, sock, groups=groups, poll=FAST_POLL) as (url, _),
        aiohttp.ClientSession() as http,
    ):
        response = await http.get(f"{url}/groups/all/patients")
        await advance_when_sleeping(clock, 1, "the first pages' uploads")
        assert "row" in orjson.loads(await response.content.readline())
        assert job_tasks()
        response.close()
        await eventually(lambda: not job_tasks(), "the fan-out's tasks to end")
        await asyncio.sleep(0.02)
        requests = dict(emu.stats.requests)
        for _ in range(5):
            clock.advance(10)
            await asyncio.sleep(0.01)
        assert dict(emu.stats.requests) == requests


async def test_the_source_is_closed_when_sending_fails_between_rows() -> None:
    # An ASGI 2.4 server reports a hang-up by failing send(); the source then sits
    # suspended between rows, and only an explicit close runs its cleanup.
    closed = asyncio.Event()

    async def source() -> AsyncIterator[Any]:
        try:
            for n in range(100):
                yield {"n": n}
        finally:
            closed.set()

    messages: list[Any] = []

    async def send(message: Any) -> None:
        messages.append(message)
        if len(messages) == 3:
            raise OSError("connection reset by peer")

    async def receive() -> Any:
        await asyncio.Event().wait()

    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}}
    with pytest.raises(ClientDisconnect):
        await rows_response(source())(scope, receive, send)
    assert closed.is_set()
    assert [m.get("body") for m in messages[1:]] == [b'{"n":0}\n', b'{"n":1}\n']


# ------------------------------------------------------------------------------- lifespan


async def test_lifespan_opens_one_client_and_composes_with_the_apps_own() -> None:
    seen: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        seen["client at startup"] = app.state.halo_client
        seen["open at startup"] = not app.state.halo_client.closed
        yield {"greeting": "hello"}
        seen["open at shutdown"] = not app.state.halo_client.closed

    clients: list[HaloClient] = []

    def factory() -> HaloClient:
        clients.append(HaloClient("test-key", base_url="http://127.0.0.1:9"))
        return clients[-1]

    app = FastAPI(lifespan=halo_lifespan(factory, lifespan=own))

    @app.get("/which")
    async def which(halo: HaloClientDep, jobs: JobRegistryDep) -> dict[str, Any]:
        return {"same": halo is clients[0], "jobs": len(jobs)}

    @app.get("/rows")
    async def rows() -> Any:
        async def source() -> AsyncIterator[Any]:
            yield {"a": 1}
            yield [{"a": 2}, {"a": 3}]

        return rows_response(source())

    sock = listening_socket()
    async with serve(app, sock) as url, aiohttp.ClientSession() as http:
        async with http.get(f"{url}/which") as response:
            assert await response.json() == {"same": True, "jobs": 0}
        async with http.get(f"{url}/rows") as response:
            assert await read_lines(response) == [{"a": 1}, {"a": 2}, {"a": 3}]
    assert len(clients) == 1
    assert seen == {
        "client at startup": clients[0],
        "open at startup": True,
        "open at shutdown": True,
    }
    assert clients[0].closed
    assert not hasattr(app.state, "halo_client")


async def test_dependency_without_the_lifespan_says_how_to_fix_it() -> None:
    app = FastAPI()

    @app.get("/x")
    async def endpoint(halo: HaloClientDep) -> str:
        return repr(halo)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        with pytest.raises(RuntimeError, match="halo_lifespan"):
            await client.get("/x")


async def test_an_error_mid_stream_truncates_the_response() -> None:
    app = FastAPI()

    @app.get("/rows")
    async def rows() -> Any:
        async def source() -> AsyncIterator[Any]:
            yield {"a": 1}
            await asyncio.sleep(0)
            raise RuntimeError("the practice went offline")

        return rows_response(source())

    sock = listening_socket()
    async with (
        serve(app, sock) as url,
        aiohttp.ClientSession() as http,
        http.get(f"{url}/rows") as response,
    ):
        assert orjson.loads(await response.content.readline()) == {"a": 1}
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
