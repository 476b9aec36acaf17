"""OpenTelemetry spans and metrics over the emulator, read from the SDK's in-memory exporters.

Each test hands its own providers to the client (as OpenTelemetry's instrumentations take
them), so that no test sets the process-wide ones, which OpenTelemetry allows only once.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from halo_async import HaloClient, PollPolicy, RetryPolicy
from halo_async.emulator import Emulator
from halo_async.errors import InvalidArgumentError, NotFoundError, SqlExecutionError
from tests.support import FAST_POLL, bp_sites, no_sleep

pytestmark = pytest.mark.halo_emulator(sites=bp_sites(2, patients=30), seed=5, page_size=2_000)

PAGE = "GET /integrator/sites/{siteId}/queries/{queryId}/results/{pageNumber}"
POLL = "GET /integrator/sites/{siteId}/queries/{queryId}"
CREATE = "POST /integrator/sites/{siteId}/queries/async"
SQL = "SELECT INTERNALID, SURNAME FROM PATIENTS ORDER BY INTERNALID"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.shutdown()


@pytest.fixture
def tracer_provider(spans: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    yield provider
    provider.shutdown()


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def meter_provider(reader: InMemoryMetricReader) -> Iterator[MeterProvider]:
    provider = MeterProvider(metric_readers=[reader])
    yield provider
    provider.shutdown()


@pytest.fixture
async def traced(
    halo_emulator: Emulator, tracer_provider: TracerProvider, meter_provider: MeterProvider
) -> AsyncIterator[HaloClient]:
    async with HaloClient(
        halo_emulator.api_key,
        base_url=halo_emulator.base_url,
        retry=RetryPolicy(sleep=no_sleep),
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
    ) as client:
        yield client


def named(spans: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in spans.get_finished_spans() if span.name == name]


def points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def unit_of(reader: InMemoryMetricReader, name: str) -> str | None:
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    return metric.unit
    return None


async def test_a_job_makes_a_span_per_request_under_its_job_span(
    halo_emulator: Emulator, traced: HaloClient, spans: InMemorySpanExporter
) -> None:
    site = halo_emulator.sites[0].id
    job = await traced.submit(site, SQL, poll=FAST_POLL)
    rows = [row async for row in job.rows()]

    [create] = named(spans, CREATE)
    [job_span] = named(spans, "halo.job")
    pages = named(spans, PAGE)
    assert len(rows) == 30
    assert pages
    assert create.kind is SpanKind.CLIENT
    assert job_span.kind is SpanKind.INTERNAL
    assert dict(job_span.attributes or {}) == {
        "halo.site_id": site,
        "halo.query_id": job.query_id,
        "halo.query.status": "successful",
        "halo.job.status_polls": job.status_polls,
        "halo.job.pages": len(pages),
        "halo.job.rows": 30,
        "halo.job.bytes": job_span.attributes["halo.job.bytes"],  # type: ignore[index]
    }
    assert job_span.attributes["halo.job.bytes"] > 0  # type: ignore[index,operator]
    path = f"/integrator/sites/{site}/queries/{job.query_id}/results/1"
    first = next(span for span in pages if span.attributes["halo.page_number"] == 1)  # type: ignore[index]
    assert dict(first.attributes or {}) == {
        "http.request.method": "GET",
        "server.address": "127.0.0.1",
        "server.port": int(halo_emulator.base_url.rsplit(":", 1)[1]),
        "url.full": halo_emulator.base_url + path,
        "url.template": "/integrator/sites/{siteId}/queries/{queryId}/results/{pageNumber}",
        "halo.site_id": site,
        "halo.query_id": job.query_id,
        "halo.page_number": 1,
        "http.response.status_code": 200,
    }
    # The job's own polls and page fetches (prefetch tasks included) are its children.
    children = pages + named(spans, POLL)
    assert all(span.parent is not None for span in children)
    assert {span.parent.span_id for span in children} == {job_span.context.span_id}  # type: ignore[union-attr]
    assert job_span.start_time <= min(span.start_time for span in children)  # type: ignore[operator]
    assert job_span.end_time >= max(span.end_time for span in children)  # type: ignore[operator]


async def test_each_retry_is_a_span_with_its_resend_count_and_is_counted(
    halo_emulator: Emulator,
    traced: HaloClient,
    spans: InMemorySpanExporter,
    reader: InMemoryMetricReader,
) -> None:
    site = halo_emulator.sites[0].id
    halo_emulator.faults.fail_next("getSite", 2, status=503)
    await traced.get_site(site)

    attempts = sorted(
        named(spans, "GET /integrator/sites/{siteId}"),
        key=lambda span: span.start_time or 0,
    )
    assert [span.attributes.get("http.request.resend_count") for span in attempts] == [
        None,
        1,
        2,
    ]
    assert [span.attributes["http.response.status_code"] for span in attempts] == [503, 503, 200]
    assert [span.attributes.get("error.type") for span in attempts] == ["503", "503", None]
    assert [span.status.status_code for span in attempts] == [
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]
    [retries] = points(reader, "halo.client.request.retries")
    assert retries.value == 2
    assert retries.attributes == {
        "http.request.method": "GET",
        "url.template": "/integrator/sites/{siteId}",
    }
    durations = {
        point.attributes.get("http.response.status_code"): point.count
        for point in points(reader, "http.client.request.duration")
    }
    assert durations == {503: 2, 200: 1}
    assert unit_of(reader, "http.client.request.duration") == "s"


async def test_a_request_with_no_answer_names_the_error_type(
    halo_emulator: Emulator, traced: HaloClient, spans: InMemorySpanExporter
) -> None:
    halo_emulator.faults.fail_next("getSite", 2, drop=True)
    once = traced.with_options(retry=RetryPolicy.none())
    with pytest.raises(Exception, match="no answer"):
        await once.get_site(halo_emulator.sites[0].id)

    [span] = named(spans, "GET /integrator/sites/{siteId}")
    assert span.status.status_code is StatusCode.ERROR
    assert "http.response.status_code" not in (span.attributes or {})
    assert str(span.attributes["error.type"]).startswith("aiohttp.")  # type: ignore[index]


async def test_error_answers_and_failed_queries_make_error_spans(
    halo_emulator: Emulator, traced: HaloClient, spans: InMemorySpanExporter
) -> None:
    with pytest.raises(NotFoundError):
        await traced.get_site("00000000-0000-4000-8000-000000000000")
    job = await traced.submit(
        halo_emulator.sites[0].id, "SELECT * FROM NO_SUCH_TABLE", poll=FAST_POLL
    )
    with pytest.raises(SqlExecutionError):
        await job.wait()

    [missing] = named(spans, "GET /integrator/sites/{siteId}")
    assert missing.attributes["error.type"] == "404"  # type: ignore[index]
    assert missing.status.status_code is StatusCode.ERROR
    [failed] = named(spans, "halo.job")
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["error.type"] == "halo_async.errors.SqlExecutionError"  # type: ignore[index]
    assert failed.attributes["halo.query.status"] == "executionFailed"  # type: ignore[index]


async def test_the_job_span_ends_when_the_consumer_breaks_out_and_is_never_current(
    halo_emulator: Emulator, traced: HaloClient, spans: InMemorySpanExporter
) -> None:
    job = await traced.submit(halo_emulator.sites[0].id, SQL, poll=FAST_POLL)
    currents = []
    async for _row in job.rows():
        currents.append(trace.get_current_span())
        break
    # The abandoned generator is closed by the loop's finalizer: a few turns of the loop.
    for _ in range(50):
        if named(spans, "halo.job"):
            break
        await asyncio.sleep(0)

    [span] = named(spans, "halo.job")
    assert span.attributes["halo.job.abandoned"] is True  # type: ignore[index]
    assert span.attributes["halo.job.rows"] > 0  # type: ignore[index,operator]
    assert span.status.status_code is StatusCode.UNSET
    # The consumer's code between rows never ran inside the job's span.
    assert currents == [trace.INVALID_SPAN]
    # The next run carries on at the next row, under a span of its own.
    rest = [row async for row in job.rows()]
    assert len(rest) == 29
    assert len(named(spans, "halo.job")) == 2


async def test_the_job_span_ends_when_the_consumer_is_cancelled(
    halo_emulator: Emulator, traced: HaloClient, spans: InMemorySpanExporter
) -> None:
    # A poll that never comes: the consumer waits on the job until it is cancelled.
    job = await traced.submit(
        halo_emulator.sites[0].id, SQL, poll=PollPolicy(initial_interval=3600, max_interval=3600)
    )
    consumer = asyncio.ensure_future(job.fetch_all())
    for _ in range(50):
        await asyncio.sleep(0)
    consumer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await consumer

    [span] = named(spans, "halo.job")
    assert span.attributes["halo.job.abandoned"] is True  # type: ignore[index]
    assert span.end_time is not None


async def test_metrics_of_a_job(
    halo_emulator: Emulator, traced: HaloClient, reader: InMemoryMetricReader
) -> None:
    job = await traced.submit(halo_emulator.sites[1].id, SQL, poll=FAST_POLL)
    rows = await job.fetch_all()

    [polls] = points(reader, "halo.client.query.status_polls")
    [decoded] = points(reader, "halo.client.result.rows")
    [size] = points(reader, "halo.client.result.bytes")
    [queued] = points(reader, "halo.client.query.queue_time")
    [executed] = points(reader, "halo.client.query.execution_time")
    assert polls.value == job.status_polls >= 1
    assert decoded.value == len(rows) == 30
    assert size.value > 0
    assert queued.count == executed.count == 1
    assert queued.attributes == {"halo.query.status": "successful"}
    assert {
        name: unit_of(reader, name)
        for name in (
            "halo.client.result.bytes",
            "halo.client.query.queue_time",
            "halo.client.result.rows",
        )
    } == {
        "halo.client.result.bytes": "By",
        "halo.client.query.queue_time": "s",
        "halo.client.result.rows": "{row}",
    }


async def test_the_api_key_and_pairing_code_are_in_no_attribute(
    halo_emulator: Emulator,
    traced: HaloClient,
    spans: InMemorySpanExporter,
    reader: InMemoryMetricReader,
) -> None:
    halo_emulator.faults.fail_next("getSite", status=429)
    await traced.get_site(halo_emulator.sites[0].id)
    await traced.find_sites(halo_emulator.sites[0].pms_site_id, "Best Practice")
    with contextlib.suppress(Exception):
        await traced.pair_site("99999", "Best Practice", "SECRET-CODE-1234")
    job = await traced.submit(halo_emulator.sites[0].id, SQL, poll=FAST_POLL)
    await job.fetch_all()

    values = [
        str(value)
        for span in spans.get_finished_spans()
        for value in [span.name, *(span.attributes or {}).values()]
    ] + [
        str(value)
        for name in ("http.client.request.duration", "halo.client.request.retries")
        for point in points(reader, name)
        for value in point.attributes.values()
    ]
    assert values
    assert not [value for value in values if halo_emulator.api_key in value]
    assert not [value for value in values if "SECRET-CODE-1234" in value]
    [pair] = named(spans, "POST /integrator/pair-site")
    assert "pairingCode=REDACTED" in str(pair.attributes["url.full"])  # type: ignore[index]


async def test_a_global_provider_set_after_the_client_is_used(
    halo_emulator: Emulator,
    halo_client: HaloClient,
    tracer_provider: TracerProvider,
    spans: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    site = halo_emulator.sites[0].id
    await halo_client.get_site(site)
    assert halo_client._telemetry.instruments() is None
    # What trace.set_tracer_provider does, undone after the test (it is once per process).
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", tracer_provider)
    await halo_client.get_site(site)

    assert [span.name for span in spans.get_finished_spans()] == ["GET /integrator/sites/{siteId}"]


def test_a_provider_of_the_wrong_kind_is_refused(halo_emulator: Emulator) -> None:
    with pytest.raises(InvalidArgumentError, match="tracer_provider must be a TracerProvider"):
        HaloClient(
            halo_emulator.api_key,
            base_url=halo_emulator.base_url,
            tracer_provider=MeterProvider(),  # type: ignore[arg-type]
        )


def test_a_provider_without_the_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'halo-async\[otel\]'"):
        HaloClient("key", tracer_provider=object())  # type: ignore[arg-type]


NO_OTEL_SCRIPT = """
import asyncio, sys
import halo_async
from halo_async.emulator import Emulator, SiteSpec

async def main():
    async with Emulator(sites=[SiteSpec(pms_type="BestPractice")], seed=1) as emu:
        async with halo_async.HaloClient(emu.api_key, base_url=emu.base_url) as halo:
            await halo.get_site(emu.sites[0].id)
    print(sorted(name for name in sys.modules if name.startswith("opentelemetry")))

asyncio.run(main())
"""


def test_without_a_provider_opentelemetry_is_never_imported() -> None:
    result = subprocess.run(
        [sys.executable, "-c", NO_OTEL_SCRIPT], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
