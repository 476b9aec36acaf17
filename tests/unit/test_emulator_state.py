"""The emulator's state machine without sockets: lifecycle, stamps, queues, expiry, faults."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import itertools
import threading
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import orjson
import pytest

from halo_async.emulator import Faults, Latency, ManualClock, SiteSpec
from halo_async.emulator._errors import ApiError
from halo_async.emulator._records import QueryRecord, paginate
from halo_async.emulator._requests import (
    CommandRequest,
    parse_command_request,
    parse_registered_request,
)
from halo_async.emulator._sites import build_sites, generate_specs
from halo_async.emulator._wire import query_json
from halo_async.emulator.database import ParameterConversionError, SqlError
from halo_async.emulator.state import EmulatorState, Limits, QueryEvent

# ---------------------------------------------------------------------------- fakes and helpers


@dataclasses.dataclass(frozen=True)
class FakeCatalogue:
    name: str
    is_default: bool


@dataclasses.dataclass(frozen=True)
class FakeResult:
    rows: list[dict[str, Any]] | None
    rows_affected: int | None
    scalar: Any
    parameters: list[dict[str, Any]]


class FakeDatabase:
    """Answers by SQL text; ``BLOCK`` waits for ``gate``; records what ran, in order."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = [
            {"InternalID": i, "Surname": f"CITIZEN{i}"} for i in range(10)
        ]
        self.executed: list[str] = []
        self.gate = threading.Event()
        self.errors: dict[str, Exception] = {}
        self.closed = False

    @property
    def catalogues(self) -> list[FakeCatalogue]:
        return [FakeCatalogue("Patients", True)]

    def execute(
        self,
        text: str,
        *,
        catalogue: str | None = None,
        execution_mode: str = "reader",
        command_type: str = "text",
        parameters: Any = (),
    ) -> FakeResult:
        self.executed.append(text)
        if text == "BLOCK":
            assert self.gate.wait(10), "test forgot to open the gate"
        if text in self.errors:
            raise self.errors[text]
        echoed = [dict(p) for p in parameters]
        if execution_mode == "nonQuery":
            return FakeResult(None, 3, None, echoed)
        if execution_mode == "scalar":
            return FakeResult(None, None, self.rows[0]["InternalID"] if self.rows else None, echoed)
        return FakeResult(list(self.rows), None, None, echoed)

    def close(self) -> None:
        self.closed = True


async def eventually(predicate: Callable[[], bool], what: str = "condition") -> None:
    """Let the loop (and SQL threads) run until ``predicate`` holds; fails after ~2 s."""
    for _ in range(2000):
        if predicate():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"timed out waiting for {what}")


def command(
    text: str = "SELECT * FROM PATIENTS", *, immediate: bool = False, **extra: Any
) -> CommandRequest:
    cmd = {
        "text": text,
        **{k: v for k, v in extra.items() if k in ("executionMode", "type", "parameters")},
    }
    body = {
        "command": cmd,
        **{k: v for k, v in extra.items() if k in ("maxTimeInQueue", "catalogue")},
    }
    return parse_command_request(orjson.dumps(body), immediate=immediate)


@dataclasses.dataclass
class Harness:
    state: EmulatorState
    clock: ManualClock
    dbs: list[FakeDatabase]
    faults: Faults

    @property
    def site(self) -> Any:
        return self.state.sites[next(iter(self.state.sites))]

    @property
    def db(self) -> FakeDatabase:
        return self.dbs[0]


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., Harness]]:
    """Builds states on a manual clock with fake databases; closes them after the test."""
    created: list[Harness] = []

    def build(
        *specs: SiteSpec, latency: Latency | None = None, limits: Limits | None = None
    ) -> Harness:
        clock = ManualClock()
        dbs: list[FakeDatabase] = []

        def factory(*, pms_type: str, seed: int, patients: int) -> FakeDatabase:
            dbs.append(FakeDatabase())
            return dbs[-1]

        sites = build_sites(
            specs or (SiteSpec(),), seed=1, now=clock.now(), database_factory=factory
        )
        faults = Faults(seed=1)
        state = EmulatorState(
            sites=sites, clock=clock, latency=latency or Latency(), faults=faults, limits=limits
        )
        created.append(Harness(state, clock, dbs, faults))
        return created[-1]

    yield build
    for harness in created:
        for db in harness.dbs:
            db.gate.set()  # no SQL thread may stay blocked past the test
        await harness.state.close()
        assert all(db.closed for db in harness.dbs)


async def run_to_end(h: Harness, query: QueryRecord) -> QueryRecord:
    await h.state.wait_until(lambda: query.terminal, timeout=2)
    return query


# ---------------------------------------------------------------------------- async lifecycle


async def test_async_query_with_zero_latency_succeeds_within_a_few_iterations(make: Any) -> None:
    h = make()
    query = h.state.submit_async(h.site, command())
    assert query.status == "initialising"
    await run_to_end(h, query)
    assert query.status == "successful"
    body = query_json(query)
    assert set(body["statusTiming"]) == {"initialising", "queued", "executing", "uploading"}
    assert body["result"]["rows"] == 10
    assert body["result"]["pages"] == [
        {
            "pageNumber": 1,
            "status": "cached",
            "size": body["result"]["size"],
            "rows": {"count": 10, "rangeStart": 0, "rangeEnd": 9},
        }
    ]
    assert body["resultSize"] == body["result"]["size"]
    assert body["completedAt"] == body["statusTiming"]["uploading"]["endTime"]
    assert body["metrics"]["sqlExecutionDuration"] >= 0
    _, page = h.state.page(h.site, query.id, 1, "getResultPage")
    assert orjson.loads(page.data or b"") == h.db.rows


async def test_each_phase_is_stamped_on_the_clock_and_stamps_are_kept(make: Any) -> None:
    latency = Latency(initialising=1, queue_pickup=2, execution=3, page_upload=4)
    h = make(latency=latency)
    t0 = h.clock.now()
    query = h.state.submit_async(h.site, command())
    seen = [query.status]
    for step, status in (
        (1.0, "queued"),
        (2.0, "executing"),
        (3.0, "uploading"),
        (4.0, "successful"),
    ):
        await eventually(lambda s=step: s in h.clock.pending, f"a {step}s sleeper")
        h.clock.advance(step)
        await h.state.wait_until(lambda s=status: query.status == s, timeout=2)
        seen.append(query.status)
    assert seen == ["initialising", "queued", "executing", "uploading", "successful"]
    t = query.timing
    at = lambda seconds: t0 + timedelta(seconds=seconds)  # noqa: E731
    assert t["initialising"] == {"startTime": at(0), "endTime": at(1)}
    assert t["queued"] == {"startTime": at(1), "endTime": at(3)}
    assert t["executing"] == {"startTime": at(3), "endTime": at(6)}
    assert t["uploading"] == {"startTime": at(6), "endTime": at(10)}
    assert query.completed_at == at(10)
    assert query.execution_ms is not None
    assert query.execution_ms >= 3000


async def test_pages_turn_cached_one_by_one_while_uploading(make: Any) -> None:
    h = make(latency=Latency(page_upload=1), limits=Limits(page_size=80))
    query = h.state.submit_async(h.site, command())
    await h.state.wait_until(lambda: query.status == "uploading", timeout=2)
    assert len(query.pages) > 2
    assert [p.status for p in query.pages][:2] == ["uploading", "queued"]
    with pytest.raises(ApiError) as not_yet:
        h.state.page(h.site, query.id, 1, "getResultPage")
    assert not_yet.value.status == 404
    assert "not cached yet" in not_yet.value.message
    h.clock.advance(1)
    await h.state.wait_until(lambda: query.pages[1].status == "uploading", timeout=2)
    assert query.status == "uploading"
    assert query_json(query)["result"]["pages"][0]["status"] == "cached"
    _, first = h.state.page(h.site, query.id, 1, "getResultPage")  # early pages are fetchable
    rows = orjson.loads(first.data or b"")
    assert rows == h.db.rows[: first.count]
    for _ in range(len(query.pages) - 1):
        await eventually(lambda: 1.0 in h.clock.pending, "the next page upload")
        h.clock.advance(1)
    await run_to_end(h, query)
    assert query.status == "successful"
    fetched: list[Any] = []
    for number in range(1, len(query.pages) + 1):
        _, page = h.state.page(h.site, query.id, number, "getResultPage")
        fetched.extend(orjson.loads(page.data or b""))
    assert fetched == h.db.rows


async def test_sql_error_fails_the_async_query_with_error_details_and_deprecated_pair(
    make: Any,
) -> None:
    h = make()
    h.db.errors["SELECT nope"] = SqlError("mssql", 207, "Invalid column name 'nope'.")
    query = await run_to_end(h, h.state.submit_async(h.site, command("SELECT nope")))
    body = query_json(query)
    assert body["status"] == "executionFailed"
    assert body["errorDetails"] == {
        "errorType": "mssql",
        "errorCode": 207,
        "errorMessage": "Invalid column name 'nope'.",
    }
    assert (body["errorCode"], body["errorMessage"]) == (207, "Invalid column name 'nope'.")
    assert "endTime" in body["statusTiming"]["executing"]
    assert "completedAt" in body
    with pytest.raises(ApiError) as no_pages:
        h.state.page(h.site, query.id, 1, "getResultPage")
    assert no_pages.value.status == 404


async def test_non_query_and_scalar_results(make: Any) -> None:
    h = make()
    non_query = await run_to_end(
        h, h.state.submit_async(h.site, command("UPDATE x", executionMode="nonQuery"))
    )
    body = query_json(non_query)
    assert body["result"]["rowsAffected"] == 3
    assert "rows" not in body["result"]
    _, page = h.state.page(h.site, non_query.id, 1, "getResultPage")
    assert page.data is None
    scalar = await run_to_end(
        h, h.state.submit_async(h.site, command("SELECT 1", executionMode="scalar"))
    )
    _, page = h.state.page(h.site, scalar.id, 1, "getResultPage")
    assert orjson.loads(page.data or b"") == 0  # the first InternalID, as a bare JSON value


async def test_output_parameters_are_echoed_on_the_page(make: Any) -> None:
    h = make()
    params = [{"name": "@id", "direction": "output", "type": "Int", "value": None, "size": 4}]
    query = await run_to_end(h, h.state.submit_async(h.site, command(parameters=params)))
    assert query.parameters == params


# ---------------------------------------------------------------------------- queues and priority


async def test_one_execution_per_site_and_immediates_jump_the_async_queue(make: Any) -> None:
    h = make()
    blocker = h.state.submit_async(h.site, command("BLOCK"))
    await eventually(lambda: h.db.executed == ["BLOCK"], "the blocker to run")
    first = h.state.submit_async(h.site, command("ASYNC 1"))
    second = h.state.submit_async(h.site, command("ASYNC 2"))
    await eventually(lambda: h.state.queue_length(h.site.id) == 2, "two queued async queries")
    assert first.status == second.status == "queued"
    immediate = asyncio.ensure_future(
        h.state.run_immediate(h.site, command("IMMEDIATE", immediate=True))
    )
    await eventually(lambda: h.state.queue_length(h.site.id) == 3, "the immediate to queue")
    assert h.db.executed == ["BLOCK"]  # nothing overtakes the running command
    h.db.gate.set()
    body = await immediate
    assert body["status"] == "successful"
    for query in (blocker, first, second):
        await run_to_end(h, query)
    assert h.db.executed == ["BLOCK", "IMMEDIATE", "ASYNC 1", "ASYNC 2"]


async def test_queued_async_query_expires_after_max_time_in_queue(make: Any) -> None:
    h = make()
    h.state.submit_async(h.site, command("BLOCK"))
    await eventually(lambda: h.db.executed == ["BLOCK"], "the blocker to run")
    query = h.state.submit_async(h.site, command(maxTimeInQueue=1000))
    await h.state.wait_until(lambda: query.status == "queued", timeout=2)
    queued_at = query.timing["queued"]["startTime"]
    h.clock.advance(0.999)
    assert h.state.query(h.site, query.id).status == "queued"
    h.clock.advance(0.001)
    # The very next read sees the expiry, without waiting for any timer.
    assert h.state.query(h.site, query.id).status == "expiredInQueue"
    assert query.timing["queued"]["endTime"] == queued_at + timedelta(seconds=1)
    assert query.completed_at == queued_at + timedelta(seconds=1)
    h.db.gate.set()
    await eventually(lambda: h.state.queue_length(h.site.id) == 0, "the queue to drain")
    assert h.db.executed == ["BLOCK"]  # the expired query never ran


async def test_immediate_expired_in_queue_is_504(make: Any) -> None:
    h = make()
    h.state.submit_async(h.site, command("BLOCK"))
    await eventually(lambda: h.db.executed == ["BLOCK"], "the blocker to run")
    task = asyncio.ensure_future(
        h.state.run_immediate(h.site, command(immediate=True, maxTimeInQueue=500))
    )
    await eventually(lambda: 0.5 in h.clock.pending, "the queue timer")
    h.clock.advance(0.5)
    with pytest.raises(ApiError) as exc:
        await task
    assert (exc.value.status, exc.value.message) == (504, "Query expired in queue")


async def test_immediate_execution_over_the_limit_is_504_with_the_oas_text(make: Any) -> None:
    h = make(limits=Limits(immediate_timeout=5))
    task = asyncio.ensure_future(h.state.run_immediate(h.site, command("BLOCK", immediate=True)))
    await eventually(lambda: 5.0 in h.clock.pending, "the execution timer")
    h.clock.advance(5)
    with pytest.raises(ApiError) as exc:
        await task
    assert exc.value.status == 504
    assert exc.value.message == "Query took more than 30 seconds to return a result."


async def test_immediate_failures(make: Any) -> None:
    h = make(limits=Limits(immediate_result_limit=100))
    h.db.errors["bad"] = SqlError("mssql", 102, "Incorrect syntax near 'bad'.")
    h.db.errors["proc"] = ParameterConversionError(
        "Failed to convert parameter value from a String to a Byte[]."
    )
    with pytest.raises(ApiError) as sql:
        await h.state.run_immediate(h.site, command("bad", immediate=True))
    assert sql.value.status == 400
    assert sql.value.body["status"] == "executionFailed"
    assert sql.value.body["mode"] == "immediate"
    assert sql.value.body["errorDetails"]["errorCode"] == 102
    assert sql.value.body["errorCode"] == 102
    with pytest.raises(ApiError) as conversion:
        await h.state.run_immediate(h.site, command("proc", immediate=True))
    assert conversion.value.status == 400
    assert conversion.value.body["error"]["message"].startswith("Failed to convert parameter value")
    with pytest.raises(ApiError) as too_large:
        await h.state.run_immediate(h.site, command(immediate=True))
    assert too_large.value.status == 413
    assert too_large.value.body["errorDetails"]["errorType"] == "http"
    assert too_large.value.body["errorDetails"]["errorCode"] == 413
    with pytest.raises(ApiError) as catalogue:
        await h.state.run_immediate(h.site, command(immediate=True, catalogue="Nope"))
    assert catalogue.value.status == 400


async def test_immediate_success_body(make: Any) -> None:
    h = make()
    body = await h.state.run_immediate(h.site, command(immediate=True))
    assert body["mode"] == "immediate"
    assert body["status"] == "successful"
    assert orjson.loads(base64.b64decode(body["result"]["data"])) == h.db.rows
    assert body["result"]["rows"] == 10
    assert all(set(phase) == {"startTime"} for phase in body["statusTiming"].values())
    # getQuery serves immediate ids too, without re-sending the data
    again = query_json(h.state.query(h.site, body["id"]))
    assert again["status"] == "successful"
    assert "data" not in again["result"]


# ---------------------------------------------------------------------------- sites


async def test_offline_and_unreachable_sites(make: Any) -> None:
    h = make(SiteSpec(availability="offline"), SiteSpec(availability="unreachable"))
    offline, unreachable = h.state.sites.values()
    q1 = await run_to_end(h, h.state.submit_async(offline, command()))
    q2 = await run_to_end(h, h.state.submit_async(unreachable, command()))
    assert q1.status == "initialisationFailedSiteOffline"
    assert q2.status == "initialisationFailedSiteUnreachable"
    assert "endTime" in q1.timing["initialising"]
    with pytest.raises(ApiError) as exc:
        await h.state.run_immediate(offline, command(immediate=True))
    assert exc.value.status == 503
    assert exc.value.message.startswith("Site could not be contacted")


async def test_queued_queries_wait_for_a_site_to_come_back(make: Any) -> None:
    h = make()
    h.state.submit_async(h.site, command("BLOCK"))
    await eventually(lambda: h.db.executed == ["BLOCK"], "the blocker to run")
    query = h.state.submit_async(h.site, command())
    await h.state.wait_until(lambda: query.status == "queued", timeout=2)
    h.state.set_availability(h.site.id, "offline")
    h.db.gate.set()
    for _ in range(50):
        await asyncio.sleep(0)
    assert query.status == "queued"
    h.state.set_availability(h.site.id, "online")
    assert (await run_to_end(h, query)).status == "successful"


async def test_access_rules(make: Any) -> None:
    h = make(
        SiteSpec(pms_site_id="111", pairing_code="ABC123", paired=False),
        SiteSpec(pms_site_id="111", authoritative=False, paired=False),
        SiteSpec(pms_type="Zedmed", pms_site_id="222", paired=False),
    )
    bp, backup, zedmed = h.state.sites.values()
    for site_id, status in (
        (bp.id, 403),
        (backup.id, 403),
        ("nope", 400),  # not a UUID: a bad request, not an unknown site
        (zedmed.id.upper(), 403),
    ):
        with pytest.raises(ApiError) as exc:
            h.state.queryable_site(site_id)
        assert exc.value.status == status
    with pytest.raises(ApiError) as no_code:
        h.state.pair("111", "Best Practice", None)
    assert no_code.value.status == 400
    with pytest.raises(ApiError) as wrong:
        h.state.pair("111", "Best Practice", "WRONG1")
    assert wrong.value.status == 400
    assert h.state.pair("111", "Best Practice", "abc123") is bp
    assert h.state.queryable_site(bp.id) is bp
    with pytest.raises(ApiError) as still:
        h.state.queryable_site(backup.id)  # paired, but not authoritative
    assert still.value.status == 403
    assert h.state.pair("222", "Zedmed", None) is zedmed
    with pytest.raises(ApiError) as unknown:
        h.state.pair("999", "D4w", None)
    assert unknown.value.status == 404
    assert h.state.find_sites("111", "Best Practice") == [bp, backup]
    assert h.state.find_sites("111", "Zedmed") == []


def test_generated_sites_are_deterministic_and_mostly_best_practice() -> None:
    specs = generate_specs(200, seed=7)
    assert specs == generate_specs(200, seed=7)
    assert specs != generate_specs(200, seed=8)
    types = [s.pms_type for s in specs]
    assert types.count("BestPractice") > 120
    assert {"Zedmed", "D4w"} <= set(types)
    backups = [s for s in specs if not s.authoritative]
    assert backups
    for backup in backups:
        twins = [
            s
            for s in specs
            if s.pms_site_id == backup.pms_site_id and s.pms_type == backup.pms_type
        ]
        assert [t.authoritative for t in twins].count(True) == 1

    built = []
    for _ in range(2):
        sites = build_sites(
            specs, seed=7, now=ManualClock().now(), database_factory=lambda **_: FakeDatabase()
        )
        built.append([(s.id, s.practice_name, s.pms_site_id, s.pairing_code) for s in sites])
    assert built[0] == built[1]
    assert len({site_id for site_id, *_ in built[0]}) == 200


# ---------------------------------------------------------------------------- retention


async def test_results_expire_after_retention(make: Any) -> None:
    h = make(limits=Limits(retention=3600))
    query = await run_to_end(h, h.state.submit_async(h.site, command()))
    h.clock.advance(3599)
    h.state.page(h.site, query.id, 1, "getResultPage")
    h.clock.advance(1)
    with pytest.raises(ApiError) as gone:
        h.state.page(h.site, query.id, 1, "getResultPage")
    assert gone.value.status == 410
    assert gone.value.message.startswith("Access to the target resource is permanently")
    assert query.pages[0].data is None  # memory is released
    assert h.state.query(h.site, query.id).status == "successful"  # the record stays


async def test_page_numbers_beyond_the_last_and_immediate_ids_have_no_pages(make: Any) -> None:
    h = make()
    query = await run_to_end(h, h.state.submit_async(h.site, command()))
    with pytest.raises(ApiError) as beyond:
        h.state.page(h.site, query.id, 2, "getResultPage")
    assert beyond.value.status == 404
    body = await h.state.run_immediate(h.site, command(immediate=True))
    with pytest.raises(ApiError) as immediate:
        h.state.page(h.site, body["id"], 1, "getResultPage")
    assert immediate.value.status == 404


# ---------------------------------------------------------------------------- faults


async def test_faults_site_drop_upload_failure_and_early_expiry(make: Any) -> None:
    h = make()
    h.faults.set(site_offline=1.0)
    dropped = await run_to_end(h, h.state.submit_async(h.site, command()))
    assert dropped.status in {"initialisationFailedSiteOffline", "executionFailed"}
    if dropped.status == "executionFailed":
        assert dropped.error is not None
        assert dropped.error["errorType"] == "haloLink"
    h.faults.clear()
    h.faults.set(upload_failures=1.0)
    failed = await run_to_end(h, h.state.submit_async(h.site, command()))
    body = query_json(failed)
    assert body["status"] == "uploadFailed"
    assert body["errorDetails"]["errorType"] == "haloLink"
    assert isinstance(body["errorCode"], int)
    assert body["errorMessage"]
    h.faults.clear()
    ok = await run_to_end(h, h.state.submit_async(h.site, command()))
    h.faults.set(operation="getResultPage", page_expiry=1.0)
    with pytest.raises(ApiError) as gone:
        h.state.page(h.site, ok.id, 1, "getResultPage")
    assert gone.value.status == 410
    h.faults.clear()
    with pytest.raises(ApiError):  # expired early means expired for good
        h.state.page(h.site, ok.id, 1, "getResultPage")


def test_fault_decisions_are_seeded_and_scripted_failures_come_first() -> None:
    def decisions(seed: int) -> list[Any]:
        faults = Faults(seed)
        faults.set("getQuery", server_errors=0.3, rate_limits=0.2, retry_after=7)
        return [faults.for_request("getQuery", None) for _ in range(50)]

    assert decisions(3) == decisions(3)
    kinds = {(d.status if d else None) for d in decisions(3)}
    assert None in kinds
    assert 429 in kinds
    assert kinds & {500, 502, 503, 504}
    assert all(d.retry_after == 7 for d in decisions(3) if d and d.status == 429)

    faults = Faults(1)
    faults.fail_next("createAsyncQuery", 2, status=429, retry_after=3)
    faults.fail_next("getQuery", drop=True)
    assert faults.for_request("getSite", "x") is None
    first = faults.for_request("createAsyncQuery", "x")
    assert first is not None
    assert (first.status, first.retry_after) == (429, 3)
    assert faults.for_request("createAsyncQuery", "x") == first
    assert faults.for_request("createAsyncQuery", "x") is None
    dropped = faults.for_request("getQuery", "x")
    assert dropped is not None
    assert dropped.drop
    assert not faults.enabled
    faults.set(site="s1", latency=0.5)
    assert faults.for_request("getQuery", "s2") is None
    assert faults.for_request("getQuery", "s1") == type(first)(latency=0.5)
    with pytest.raises(ValueError, match="probability"):
        faults.set(server_errors=2)


# ---------------------------------------------------------------------------- registered queries


async def test_registered_query_runs_on_schedule_and_hashes_only_changes(make: Any) -> None:
    h = make()
    events: list[QueryEvent] = []
    h.state.add_listener(events.append)
    body = {
        "name": "today",
        "registeredQueryType": "query",
        "frequency": 60,
        "duration": 120,
        "registerCommand": {"command": {"text": "SELECT * FROM APPOINTMENTS"}},
    }
    record = h.state.create_registered(h.site, parse_registered_request(orjson.dumps(body)))
    await h.state.wait_until(lambda: record.succeeded == 1, timeout=2)
    first_hash = record.last_hash
    assert first_hash
    assert record.result_rows == 10
    assert len(events) == 1
    assert events[0].source == "registered"
    h.clock.advance(60)
    await h.state.wait_until(lambda: record.succeeded == 2, timeout=2)
    assert record.last_hash == first_hash  # same result: no new hash, no event
    assert len(events) == 1
    h.db.rows.append({"InternalID": 99, "Surname": "NEW"})
    h.clock.advance(60)
    await h.state.wait_until(lambda: record.status == "completed", timeout=2)
    assert record.succeeded == 3
    assert record.last_hash != first_hash
    assert len(events) == 2
    assert record.completed_at == record.created_at + timedelta(seconds=120)
    assert record.result_size_sum > 0


async def test_registered_query_failures_and_cancel(make: Any) -> None:
    h = make()
    h.db.errors["selct"] = SqlError("mssql", 2812, "Could not find stored procedure 'selct'.")
    body = {
        "name": "broken",
        "registeredQueryType": "query",
        "frequency": 60,
        "duration": 3600,
        "registerCommand": {"command": {"text": "selct"}},
    }
    record = h.state.create_registered(h.site, parse_registered_request(orjson.dumps(body)))
    await h.state.wait_until(lambda: record.failed == 1, timeout=2)
    assert record.last_error == {
        "errorType": "mssql",
        "errorCode": 2812,
        "errorMessage": "Could not find stored procedure 'selct'.",
    }
    assert record.last_failed_at == record.created_at
    with pytest.raises(ApiError) as no_result:
        h.state.registered_result(h.site, record.id)
    assert no_result.value.status == 404
    h.state.cancel_registered(h.site, record.id)
    assert record.status == "cancelled"
    h.clock.advance(600)
    for _ in range(20):
        await asyncio.sleep(0)
    assert record.failed == 1  # no more runs after cancel


# ---------------------------------------------------------------------------- building blocks


def test_paginate_keeps_whole_rows_within_the_page_size() -> None:
    rows = [{"id": i, "text": "x" * (i % 7)} for i in range(100)]
    pages = paginate(rows, 120)
    assert [p.number for p in pages] == list(range(1, len(pages) + 1))
    assert all(p.size <= 120 for p in pages)
    assert all(p.size == len(p.data or b"") for p in pages)
    joined = [row for p in pages for row in orjson.loads(p.data or b"")]
    assert joined == rows
    starts = [p.row_start for p in pages]
    assert starts[0] == 0
    assert all(a.row_end + 1 == b.row_start for a, b in itertools.pairwise(pages))
    assert pages[-1].row_end == 99
    empty = paginate([], 120)
    assert len(empty) == 1
    assert empty[0].data == b"[]"
    assert empty[0].count == 0
    huge = paginate([{"blob": "y" * 500}, {"a": 1}], 120)
    assert [p.count for p in huge] == [1, 1]


async def test_manual_clock_wakes_sleepers_in_deadline_order() -> None:
    clock = ManualClock()
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    tasks = [asyncio.ensure_future(sleeper(n, s)) for n, s in (("late", 10), ("early", 1))]
    await eventually(lambda: len(clock.pending) == 2, "two sleepers")
    assert clock.pending == [1.0, 10.0]
    clock.advance(5)
    await eventually(lambda: woke == ["early"], "the early sleeper")
    clock.advance(5)
    await asyncio.gather(*tasks)
    assert woke == ["early", "late"]
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)


def test_latency_presets_and_seeded_jitter() -> None:
    import random

    assert Latency.named("zero") == Latency()
    realistic = Latency.named("realistic")
    assert realistic.execution > 0
    a = [realistic.sample("execution", random.Random(1)) for _ in range(3)]
    b = [realistic.sample("execution", random.Random(1)) for _ in range(3)]
    assert a == b
    low, high = realistic.execution * 0.7, realistic.execution * 1.3
    assert all(low <= x <= high for x in a)
    assert Latency().sample("execution", random.Random(1)) == 0
    with pytest.raises(ValueError, match="unknown latency preset"):
        Latency.named("slow")


async def test_an_emulator_bug_fails_the_query_instead_of_leaving_it_running(make: Any) -> None:
    h = make()
    h.db.errors["boom"] = RuntimeError("emulator bug")
    with pytest.raises(RuntimeError):  # the app turns it into a logged 500
        await h.state.run_immediate(h.site, command("boom", immediate=True))
    (immediate,) = h.state.queries(h.site.id)
    assert immediate.status == "executionFailed"
    failed = await run_to_end(h, h.state.submit_async(h.site, command("boom")))
    assert failed.status == "executionFailed"
    assert failed.error is not None
    assert failed.error["errorType"] == "haloLink"
    assert (await h.state.run_immediate(h.site, command(immediate=True)))["status"] == "successful"
