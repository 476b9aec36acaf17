"""QueryJob over a mocked Halo: polling, page streaming, prefetch, failures, resume."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import re
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import pytest

from halo_async import Checkpoint, HaloClient, PollPolicy
from halo_async.errors import (
    DecodeError,
    IncompleteResultError,
    ResultExpiredError,
    SqlExecutionError,
    SubmissionOutcomeUnknownError,
    ValidationError,
)
from halo_async.jobs import PollTimeoutError, RowTypeError
from tests.support import CallbackResult, no_sleep

if TYPE_CHECKING:
    from conftest import HaloMock

BASE_URL = "https://api.haloconnect.io"

SITE = "3f91c577-20a8-467b-8991-b96dfb90e8c6"
QUERY = "1366ef6e-d536-457c-8f1b-eaa4352059f9"
SITE_URL = f"{BASE_URL}/integrator/sites/{SITE}"
STATUS_URL = f"{SITE_URL}/queries/{QUERY}"
PAGE_URL = re.compile(re.escape(f"{SITE_URL}/queries/{QUERY}/results/") + r"(\d+)$")


def query_body(status: str, pages: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": QUERY,
        "siteId": SITE,
        "mode": "async",
        "status": status,
        "maxTimeInQueue": 60000,
        **extra,
    }
    if pages is not None:
        body["result"] = {
            "rows": 3 * len(pages),
            "size": 100,
            "pages": [
                {"pageNumber": n, "status": s, "rows": {"count": 3}}
                for n, s in enumerate(pages, start=1)
            ],
        }
    return body


def page_rows(number: int) -> list[dict[str, Any]]:
    return [{"InternalID": number * 100 + i, "FIRSTNAME": f"P{number}-{i}"} for i in range(3)]


def page_body(number: int) -> dict[str, Any]:
    data = base64.b64encode(json.dumps(page_rows(number)).encode()).decode()
    return {"data": data, "parameters": []}


class Log:
    """The order in which requests reached the mock, across URLs."""

    def __init__(self) -> None:
        self.entries: list[str] = []

    def page_callback(self) -> Callable[..., CallbackResult]:
        def callback(url: Any, **_: Any) -> CallbackResult:
            number = int(str(url).rsplit("/", 1)[1])
            self.entries.append(f"page {number}")
            return CallbackResult(status=200, payload=page_body(number))

        return callback

    def status_callback(self, body: dict[str, Any]) -> Callable[..., CallbackResult]:
        def callback(url: Any, **_: Any) -> CallbackResult:
            self.entries.append(f"status {body['status']}")
            return CallbackResult(status=200, payload=body)

        return callback


POLL = PollPolicy(sleep=no_sleep, jitter=False)


def all_rows(*pages: int) -> list[dict[str, Any]]:
    return [row for number in pages for row in page_rows(number)]


async def test_rows_stream_in_order_and_pages_are_fetched_while_uploading(
    client: HaloClient, mocked: HaloMock
) -> None:
    log = Log()
    statuses = [
        query_body("queued"),
        query_body("executing"),
        query_body("uploading", ["cached", "uploading", "queued"]),
        query_body("uploading", ["cached", "cached", "uploading"]),
        query_body("successful", ["cached", "cached", "cached"]),
    ]
    for body in statuses:
        mocked.get(STATUS_URL, callback=log.status_callback(body))
    mocked.get(PAGE_URL, callback=log.page_callback(), repeat=True)
    mocked.post(f"{SITE_URL}/queries/async", status=201, payload=query_body("initialising"))

    job = await client.submit(SITE, "SELECT * FROM PATIENTS", poll=POLL)
    rows = [row async for row in job.rows()]

    assert rows == all_rows(1, 2, 3)
    # Page 1 was fetched while the query was still uploading, before page 3 was cached.
    assert log.entries.index("page 1") < log.entries.index("status successful")
    assert log.entries.count("page 1") == log.entries.count("page 2") == 1
    assert job.checkpoint() == Checkpoint(SITE, QUERY, next_page=4)


async def test_prefetch_window_bounds_the_pages_fetched_ahead(
    client: HaloClient, mocked: HaloMock
) -> None:
    log = Log()
    mocked.get(STATUS_URL, callback=log.status_callback(query_body("successful", ["cached"] * 10)))
    mocked.get(PAGE_URL, callback=log.page_callback(), repeat=True)

    job = client.resume(Checkpoint(SITE, QUERY), poll=POLL, prefetch=3)
    pages = job.pages()
    first = await anext(pages)
    await asyncio.sleep(0)  # let any runaway prefetch start
    fetched = [entry for entry in log.entries if entry.startswith("page")]
    await pages.aclose()

    assert first.page_number == 1
    assert fetched == ["page 1", "page 2", "page 3"]


async def test_breaking_out_leaves_no_task_running(client: HaloClient, mocked: HaloMock) -> None:
    log = Log()
    mocked.get(STATUS_URL, callback=log.status_callback(query_body("successful", ["cached"] * 6)))
    mocked.get(PAGE_URL, callback=log.page_callback(), repeat=True)
    before = asyncio.all_tasks()

    job = client.resume(Checkpoint(SITE, QUERY), poll=POLL, prefetch=4)
    rows = job.rows()
    async for _ in rows:
        break
    await rows.aclose()

    assert asyncio.all_tasks() == before


async def test_cancelling_the_consumer_stops_polling_and_propagates(
    client: HaloClient, mocked: HaloMock
) -> None:
    mocked.get(STATUS_URL, payload=query_body("executing"), repeat=True)
    stop_polling = asyncio.Event()

    async def parked_sleep(_: float) -> None:
        await stop_polling.wait()

    job = client.resume(Checkpoint(SITE, QUERY), poll=PollPolicy(sleep=parked_sleep))
    task = asyncio.ensure_future(job.fetch_all())
    for _ in range(5):
        await asyncio.sleep(0)
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert job.status_polls == 1


async def test_failed_query_raises_typed_error_with_details(
    client: HaloClient, mocked: HaloMock
) -> None:
    failed = query_body(
        "executionFailed",
        errorCode=208,
        errorMessage="Invalid object name 'PATIENT'.",
        errorDetails={
            "errorType": "mssql",
            "errorCode": 208,
            "errorMessage": "Invalid object name 'PATIENT'.",
        },
    )
    mocked.get(STATUS_URL, payload=query_body("executing"))
    mocked.get(STATUS_URL, payload=failed)

    job = client.resume(Checkpoint(SITE, QUERY), poll=POLL)
    with pytest.raises(SqlExecutionError) as caught:
        await job.wait()

    assert caught.value.error_code == 208
    assert caught.value.site_id == SITE
    assert caught.value.query_id == QUERY
    assert "Invalid object name 'PATIENT'." in str(caught.value)


async def test_expired_page_raises_and_the_checkpoint_stays_on_it(
    client: HaloClient, mocked: HaloMock
) -> None:
    mocked.get(STATUS_URL, payload=query_body("successful", ["cached"] * 3), repeat=True)
    mocked.get(f"{STATUS_URL}/results/1", payload=page_body(1))
    mocked.get(
        f"{STATUS_URL}/results/2",
        status=410,
        payload={"error": {"status": 410, "statusText": "Gone", "message": "gone"}},
        repeat=True,
    )
    mocked.get(f"{STATUS_URL}/results/3", payload=page_body(3), repeat=True)

    job = client.resume(Checkpoint(SITE, QUERY), poll=POLL, prefetch=1)
    received: list[dict[str, Any]] = []

    async def consume() -> None:
        async for row in job.rows():
            received.append(row)

    with pytest.raises(ResultExpiredError):
        await consume()

    assert received == page_rows(1)
    assert job.checkpoint().next_page == 2


async def test_transient_page_error_is_retried_without_losing_or_repeating_rows(
    client: HaloClient, mocked: HaloMock
) -> None:
    mocked.get(STATUS_URL, payload=query_body("successful", ["cached"] * 3), repeat=True)
    mocked.get(f"{STATUS_URL}/results/1", payload=page_body(1))
    mocked.get(f"{STATUS_URL}/results/2", status=503, payload={"error": {"message": "busy"}})
    mocked.get(f"{STATUS_URL}/results/2", payload=page_body(2))
    mocked.get(f"{STATUS_URL}/results/3", payload=page_body(3))

    job = client.resume(Checkpoint(SITE, QUERY), poll=POLL, prefetch=1)

    assert await job.fetch_all() == all_rows(1, 2, 3)


async def test_resume_from_a_checkpoint_streams_only_the_remaining_pages(
    client: HaloClient, mocked: HaloMock
) -> None:
    log = Log()
    mocked.get(STATUS_URL, payload=query_body("successful", ["cached"] * 4), repeat=True)
    mocked.get(PAGE_URL, callback=log.page_callback(), repeat=True)

    job = client.resume(Checkpoint(SITE, QUERY, next_page=3), poll=POLL)

    assert await job.fetch_all() == all_rows(3, 4)
    assert sorted(log.entries) == ["page 3", "page 4"]


@dataclasses.dataclass
class Patient:
    internal_id: int
    first_name: str


async def test_typed_rows_map_columns_and_name_the_row_that_does_not_fit(
    client: HaloClient, mocked: HaloMock
) -> None:
    mocked.get(STATUS_URL, payload=query_body("successful", ["cached"]), repeat=True)
    mocked.get(f"{STATUS_URL}/results/1", payload=page_body(1))

    job = client.resume(Checkpoint(SITE, QUERY), poll=POLL)
    patients = [p async for p in job.rows(Patient, rename={"InternalID": "internal_id"})]
    assert patients[0] == Patient(internal_id=100, first_name="P1-0")

    bad = [
        {"InternalID": 1, "FIRSTNAME": "A"},
        {"InternalID": "not a number", "FIRSTNAME": "B"},
        {"InternalID": 3, "FIRSTNAME": "C"},
    ]
    data = base64.b64encode(json.dumps(bad).encode()).decode()
    mocked.get(STATUS_URL, payload=query_body("successful", ["cached"]), repeat=True)
    mocked.get(f"{STATUS_URL}/results/1", payload={"data": data})
    job = client.resume(Checkpoint(SITE, QUERY), poll=POLL)
    with pytest.raises(RowTypeError) as caught:
        _ = [p async for p in job.rows(Patient, rename={"InternalID": "internal_id"})]

    assert (caught.value.page_number, caught.value.row_index) == (1, 1)
    assert caught.value.columns == ["InternalID"]


async def test_poll_deadline_raises_a_resumable_timeout(
    client: HaloClient, mocked: HaloMock
) -> None:
    mocked.get(STATUS_URL, payload=query_body("queued"), repeat=True)
    now = [0.0]

    async def advancing_sleep(seconds: float) -> None:
        now[0] += seconds

    poll = PollPolicy(sleep=advancing_sleep, clock=lambda: now[0], deadline=30, jitter=False)
    job = client.resume(Checkpoint(SITE, QUERY), poll=poll)
    with pytest.raises(PollTimeoutError) as caught:
        await job.wait()

    assert caught.value.query_id == QUERY
    assert 30 <= now[0] < 40
    # The waits grew while nothing changed: far fewer polls than 30 s / 0.25 s.
    assert job.status_polls < 20


async def test_notify_wakes_a_sleeping_poller(client: HaloClient, mocked: HaloMock) -> None:
    mocked.get(STATUS_URL, payload=query_body("executing"))
    mocked.get(STATUS_URL, payload=query_body("successful", []))
    forever = asyncio.Event()

    async def parked_sleep(_: float) -> None:
        await forever.wait()

    job = client.resume(Checkpoint(SITE, QUERY), poll=PollPolicy(sleep=parked_sleep))
    waiting = asyncio.ensure_future(job.wait())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not waiting.done()
    job.notify()

    finished = await asyncio.wait_for(waiting, timeout=5)
    assert finished.status == "successful"


async def test_notify_wakes_every_caller_polling_the_same_job(
    client: HaloClient, mocked: HaloMock
) -> None:
    # Two callers wait on one job (say a wait() beside a rows()): a webhook's notify() must
    # wake both, not only the one that went to sleep last (the other slept out its 100 s).
    mocked.get(STATUS_URL, payload=query_body("executing"))  # the second caller reuses it
    mocked.get(STATUS_URL, payload=query_body("successful", []), repeat=True)
    job = client.resume(
        Checkpoint(SITE, QUERY), poll=PollPolicy(initial_interval=100, jitter=False)
    )
    waiting = [asyncio.ensure_future(job.wait()) for _ in range(2)]
    for _ in range(20):
        await asyncio.sleep(0)
    assert not any(task.done() for task in waiting)
    job.notify()

    for _ in range(20):  # no timer: a woken caller needs only a few loop turns
        await asyncio.sleep(0)
    done = [task for task in waiting if task.done()]
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    pending = [task for task in waiting if task not in done]
    assert len(done) == 2, f"{len(pending)} of 2 callers still asleep after notify()"
    assert [task.result().status for task in done] == ["successful", "successful"]


async def test_query_falls_back_to_async_when_the_result_is_too_large(
    client: HaloClient, mocked: HaloMock
) -> None:
    too_large = {
        "errorDetails": {
            "errorType": "http",
            "errorCode": 413,
            "errorMessage": "Immediate query results beyond message size limit (8mb)",
        }
    }
    mocked.post(f"{SITE_URL}/queries/immediate", status=413, payload=too_large)
    mocked.post(f"{SITE_URL}/queries/async", status=201, payload=query_body("initialising"))
    mocked.get(STATUS_URL, payload=query_body("successful", ["cached", "cached"]))
    mocked.get(PAGE_URL, callback=Log().page_callback(), repeat=True)

    rows = [row async for row in client.query(SITE, "SELECT 1", fallback_to_async=True, poll=POLL)]

    assert rows == all_rows(1, 2)


async def test_query_falls_back_to_async_on_gateway_timeout(
    client: HaloClient, mocked: HaloMock
) -> None:
    mocked.post(
        f"{SITE_URL}/queries/immediate",
        status=504,
        payload={"error": {"status": 504, "message": "Query took more than 30 seconds"}},
    )
    mocked.post(f"{SITE_URL}/queries/async", status=201, payload=query_body("initialising"))
    mocked.get(STATUS_URL, payload=query_body("successful", ["cached"]))
    mocked.get(PAGE_URL, callback=Log().page_callback(), repeat=True)

    rows = [row async for row in client.query(SITE, "SELECT 1", fallback_to_async=True, poll=POLL)]

    assert rows == all_rows(1)


async def test_query_without_fallback_reports_the_unknown_outcome(
    client: HaloClient, mocked: HaloMock
) -> None:
    mocked.post(
        f"{SITE_URL}/queries/immediate",
        status=504,
        payload={"error": {"status": 504, "message": "Query took more than 30 seconds"}},
    )
    with pytest.raises(SubmissionOutcomeUnknownError):
        _ = [row async for row in client.query(SITE, "SELECT 1")]
    assert len(mocked.made()) == 1


async def test_fallback_is_refused_for_non_query_commands(
    client: HaloClient, mocked: HaloMock
) -> None:
    with pytest.raises(ValidationError, match="nonQuery"):
        _ = [
            row
            async for row in client.query(
                SITE, "DELETE FROM X", execution_mode="nonQuery", fallback_to_async=True
            )
        ]
    assert mocked.made() == []


async def test_a_new_job_waits_one_interval_before_its_first_poll(
    client: HaloClient, mocked: HaloMock
) -> None:
    log = Log()
    mocked.post(f"{SITE_URL}/queries/async", status=201, payload=query_body("initialising"))
    mocked.get(STATUS_URL, callback=log.status_callback(query_body("successful", [])))

    async def recording_sleep(seconds: float) -> None:
        log.entries.append(f"sleep {seconds}")

    poll = PollPolicy(sleep=recording_sleep, jitter=False, initial_interval=0.5)
    job = await client.submit(SITE, "SELECT 1", poll=poll)
    await job.wait()

    assert log.entries == ["sleep 0.5", "status successful"]


def successful_with_bare_pages(statuses: list[str | None]) -> dict[str, Any]:
    """A successful answer shaped as the official document shows it: ``result`` only at
    ``successful``, its pages' ``status`` absent (the schema defaults it to ``queued``) or
    stale."""
    body = query_body("successful", ["cached"] * len(statuses))
    for page, status in zip(body["result"]["pages"], statuses, strict=True):
        if status is None:
            del page["status"]
        else:
            page["status"] = status
    return body


@pytest.mark.parametrize(
    "page_statuses",
    [[None, None, None], ["queued", "uploading", None], ["cached", None, "cached"]],
    ids=["no-statuses", "stale-statuses", "mixed"],
)
async def test_a_successful_querys_listed_pages_are_fetched_whatever_their_status_says(
    client: HaloClient, mocked: HaloMock, page_statuses: list[str | None]
) -> None:
    log = Log()
    # Before success the answers list no result at all, as in the document's examples.
    for body in (query_body("queued"), query_body("executing")):
        mocked.get(STATUS_URL, callback=log.status_callback(body))
    mocked.get(
        STATUS_URL,
        callback=log.status_callback(successful_with_bare_pages(page_statuses)),
        repeat=True,
    )
    mocked.get(PAGE_URL, callback=log.page_callback(), repeat=True)
    now = [0.0]

    async def advancing_sleep(seconds: float) -> None:
        now[0] += seconds

    poll = PollPolicy(sleep=advancing_sleep, clock=lambda: now[0], jitter=False)
    job = client.resume(Checkpoint(SITE, QUERY), poll=poll)
    rows = [row async for row in job.rows()]

    assert rows == all_rows(1, 2, 3)
    # No polling after success: one status ask per answer shown, then the pages.
    assert log.entries.count("status successful") == 1


async def collect(rows: AsyncIterator[dict[str, Any]], into: list[dict[str, Any]]) -> None:
    async for row in rows:
        into.append(row)


def listing(pages: dict[int, int], total: int) -> dict[str, Any]:
    """A successful answer listing ``pages`` (number -> row count) and the total rows."""
    body = query_body("successful")
    body["result"] = {
        "rows": total,
        "pages": [
            {"pageNumber": n, "status": "cached", "rows": {"count": count}}
            for n, count in pages.items()
        ],
    }
    return body


@pytest.mark.parametrize(
    ("pages", "total", "bodies", "page_at_fault", "delivered"),
    [
        ({1: 3, 3: 3}, 6, {1: page_body(1), 3: page_body(3)}, 2, 3),
        ({1: 3, 2: 5}, 8, {1: page_body(1), 2: page_body(2)}, 2, 3),
        ({1: 3, 2: 3}, 6, {1: page_body(1), 2: {"parameters": []}}, 2, 3),
        ({1: 3, 2: 3}, 9, {1: page_body(1), 2: page_body(2)}, None, 6),
    ],
    ids=["a-gap-in-the-pages", "fewer-rows-than-counted", "a-page-without-data", "total-off"],
)
async def test_rows_are_never_lost_silently(
    client: HaloClient,
    mocked: HaloMock,
    pages: dict[int, int],
    total: int,
    bodies: dict[int, Any],
    page_at_fault: int | None,
    delivered: int,
) -> None:
    mocked.get(STATUS_URL, payload=listing(pages, total), repeat=True)
    for number, body in bodies.items():
        mocked.get(f"{STATUS_URL}/results/{number}", payload=body)

    job = client.resume(Checkpoint(SITE, QUERY), poll=POLL)
    rows: list[dict[str, Any]] = []
    with pytest.raises(IncompleteResultError) as caught:
        await collect(job.rows(), rows)

    assert caught.value.page_number == page_at_fault
    assert (caught.value.site_id, caught.value.query_id) == (SITE, QUERY)
    assert len(rows) == delivered  # what did add up was delivered before the error
    if page_at_fault is not None:
        assert f"page {page_at_fault}" in str(caught.value)


async def test_the_poll_deadline_bounds_each_status_request(
    client: HaloClient, mocked: HaloMock
) -> None:
    mocked.get(STATUS_URL, payload=query_body("queued"), repeat=True)
    now = [0.0]

    async def advancing_sleep(seconds: float) -> None:
        now[0] += seconds

    poll = PollPolicy(
        sleep=advancing_sleep, clock=lambda: now[0], deadline=2, initial_interval=0.5, jitter=False
    )
    with pytest.raises(PollTimeoutError):
        await client.resume(Checkpoint(SITE, QUERY), poll=poll).wait()

    timeouts = [kwargs["timeout"].total for _, _, kwargs in mocked.made()]
    # Asked at 0, 0.5, 1.25 and 2.375 s: none may outlast what is left of the 2 s.
    assert timeouts[:3] == [2, 1.5, 0.75]


async def test_a_page_whose_rows_are_not_all_objects_names_the_page(
    client: HaloClient, mocked: HaloMock
) -> None:
    rows: list[Any] = [{"InternalID": 1}, {"InternalID": 2}, ["not", "a", "row"]]
    data = base64.b64encode(json.dumps(rows).encode()).decode()
    mocked.get(STATUS_URL, payload=listing({1: 3, 2: 3}, 6), repeat=True)
    mocked.get(f"{STATUS_URL}/results/1", payload=page_body(1))
    mocked.get(f"{STATUS_URL}/results/2", payload={"data": data})

    delivered: list[dict[str, Any]] = []
    with pytest.raises(DecodeError, match="page 2 of query") as caught:
        await collect(client.resume(Checkpoint(SITE, QUERY), poll=POLL).rows(), delivered)

    assert "row 2 is list" in str(caught.value)
    assert delivered == all_rows(1)  # the page before it arrived whole
