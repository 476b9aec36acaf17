"""OpenTelemetry spans and metrics: a span per HTTP request and per job run, and the
client's metrics, all a no-op until a tracer or meter provider exists.

Nothing here imports OpenTelemetry until it could record something: with the ``otel``
extra absent, or installed but with no provider configured (OpenTelemetry's default), a
request costs one cached check (:meth:`Telemetry.instruments`), so that the SDK's users who
do not trace pay nothing. A provider is either passed to ``HaloClient`` (as OpenTelemetry's
own instrumentations take one) or set globally, at any time: until one is, each request
checks again.

Spans follow the HTTP client semantic conventions, one per attempt (a retry is another
span, its ``http.request.resend_count`` counting the resends). The API key travels in a
header and is never an attribute: ``url.full`` is built from the base URL, the path and the
query parameters, with a pairing code's value redacted.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

import yarl

from halo_async._extras import missing_extra

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

    from halo_async import models

T = TypeVar("T")

_NAME = "halo_async"

# Path segments followed by an identifier, and the name the route template gives it.
_PLACEHOLDERS = {
    "sites": "{siteId}",
    "queries": "{queryId}",
    "registered": "{queryId}",
    "results": "{pageNumber}",
}
# Literal segments that may follow "queries": the operations, not a query id.
_OPERATIONS = frozenset({"immediate", "async", "status", "registered"})
_ATTRIBUTE_OF = {
    "{siteId}": "halo.site_id",
    "{queryId}": "halo.query_id",
    "{pageNumber}": "halo.page_number",
}
# Query parameters whose value is a secret of its own (the practice's one-time code).
_REDACTED_PARAMS = frozenset({"pairingCode"})
# The HTTP semantic conventions' advised boundaries for request durations, in seconds.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
# Queue and execution times of async queries run from seconds to the 2-hour queue limit.
_QUERY_TIME_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)


def check_provider(field: str, value: Any, kind: str) -> None:
    """``value`` is None or an OpenTelemetry ``TracerProvider``/``MeterProvider`` (``kind``),
    or the error says so; a provider given without the ``otel`` extra says how to get it."""
    if value is None:
        return
    from halo_async._validate import instance_or_none

    try:
        from opentelemetry import metrics, trace
    except ModuleNotFoundError as exc:
        message = missing_extra(exc, f"HaloClient({field}=...)")
        if message is None:
            raise
        raise ModuleNotFoundError(message, name=exc.name) from exc
    cls: type[Any] = trace.TracerProvider if kind == "TracerProvider" else metrics.MeterProvider
    instance_or_none(field, value, cls)


class Telemetry:
    """The spans and metrics of one client (and of the copies that share its transport)."""

    def __init__(
        self,
        base_url: str,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self._base_url = base_url
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._explicit = tracer_provider is not None or meter_provider is not None
        self._instruments: Instruments | None = None

    def instruments(self) -> Instruments | None:
        """What records spans and metrics, or None while nothing would be recorded (asked
        on every request: the common answer, with no OpenTelemetry imported, is two
        dictionary lookups)."""
        if self._instruments is not None:
            return self._instruments
        if not self._explicit:
            modules = sys.modules  # (neither module imported: nothing can have been set)
            if _TRACE not in modules and _METRICS not in modules:
                return None
            if not _global_provider_set():
                return None
        self._instruments = Instruments(self._base_url, self._tracer_provider, self._meter_provider)
        return self._instruments


def _global_provider_set() -> bool:
    """Whether the application has set a global tracer or meter provider.

    Read from OpenTelemetry's module globals (as its own proxy tracer does), which costs a
    dictionary lookup or two; a module that has not been imported cannot have been set.
    OpenTelemetry does not let a global provider be unset, so a True is final.
    """
    trace = sys.modules.get(_TRACE)
    if trace is not None and _is_set(trace, "_TRACER_PROVIDER", "get_tracer_provider"):
        return True
    meters = sys.modules.get(_METRICS)
    return meters is not None and _is_set(meters, "_METER_PROVIDER", "get_meter_provider")


_TRACE, _METRICS = "opentelemetry.trace", "opentelemetry.metrics._internal"


def _is_set(module: Any, variable: str, getter: str) -> bool:
    value = getattr(module, variable, _MISSING)
    if value is _MISSING:
        # A version of OpenTelemetry that keeps the provider elsewhere: ask it (slower).
        return "Proxy" not in type(getattr(module, getter)()).__name__
    return value is not None


_MISSING = object()


class Instruments:
    """The tracer and the metric instruments, created once a provider exists."""

    def __init__(
        self,
        base_url: str,
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
    ) -> None:
        from opentelemetry import metrics, trace

        from halo_async import __version__

        self._trace = trace
        self.tracer = trace.get_tracer(_NAME, __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_NAME, __version__, meter_provider=meter_provider)
        url = yarl.URL(base_url)
        self._base_url = base_url
        self._server = {"server.address": url.host or "", "server.port": url.port or 443}
        self.duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.retries = meter.create_counter(
            "halo.client.request.retries", unit="{retry}", description="Requests sent again."
        )
        self.polls = meter.create_counter(
            "halo.client.query.status_polls",
            unit="{poll}",
            description="Status checks of async queries by their jobs.",
        )
        self.queue_time = meter.create_histogram(
            "halo.client.query.queue_time",
            unit="s",
            description="Time async queries spent queued at the site, by Halo's status timing.",
            explicit_bucket_boundaries_advisory=_QUERY_TIME_BUCKETS,
        )
        self.execution_time = meter.create_histogram(
            "halo.client.query.execution_time",
            unit="s",
            description="Time async queries spent executing, by Halo's status timing.",
            explicit_bucket_boundaries_advisory=_QUERY_TIME_BUCKETS,
        )
        self.rows = meter.create_counter(
            "halo.client.result.rows", unit="{row}", description="Result rows decoded by jobs."
        )
        self.bytes = meter.create_counter(
            "halo.client.result.bytes",
            unit="By",
            description="Bytes of result page answers decoded by jobs.",
        )

    # -- requests ----------------------------------------------------------------------

    async def traced(
        self,
        exchange: Awaitable[tuple[int, T, bytes]],
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        attempt: int,
    ) -> tuple[int, T, bytes]:
        """``exchange`` (one attempt of a request) under its span and duration metric."""
        template, ids = _route(path)
        attributes: dict[str, Any] = {
            "http.request.method": method,
            **self._server,
            "url.full": self._url(path, params),
            "url.template": template,
            **ids,
        }
        if attempt > 1:
            attributes["http.request.resend_count"] = attempt - 1
        metric: dict[str, Any] = {
            "http.request.method": method,
            "url.template": template,
            **self._server,
        }
        started = time.perf_counter()
        with self.tracer.start_as_current_span(
            f"{method} {template}",
            kind=self._trace.SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                answer = await exchange
            except BaseException as exc:
                error_type = metric["error.type"] = _error_type(exc)
                self._failed(span, error_type, str(exc) or type(exc).__name__)
                self.duration.record(time.perf_counter() - started, metric)
                raise
            status = metric["http.response.status_code"] = answer[0]
            span.set_attribute("http.response.status_code", status)
            if status >= 400:
                metric["error.type"] = str(status)
                self._failed(span, str(status), f"HTTP {status}")
            self.duration.record(time.perf_counter() - started, metric)
            return answer

    def retried(self, method: str, path: str) -> None:
        self.retries.add(1, {"http.request.method": method, "url.template": _route(path)[0]})

    def _failed(self, span: Span, error_type: str, description: str) -> None:
        span.set_attribute("error.type", error_type)
        span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, description))

    def _url(self, path: str, params: Mapping[str, str] | None) -> str:
        if not params:
            return self._base_url + path
        shown = {k: "REDACTED" if k in _REDACTED_PARAMS else v for k, v in params.items()}
        return f"{self._base_url}{path}?{urlencode(shown)}"

    # -- jobs --------------------------------------------------------------------------

    def job_run(self, site_id: str, query_id: str) -> JobRun:
        return JobRun(self, site_id, query_id)


class JobRun:
    """The span of one run of a job (one ``wait()``, ``pages()`` or ``rows()``), from its
    first status check to its last page delivered, and its metrics.

    The span is never made current across a ``yield`` (the consumer's code runs there, in
    the consumer's context): :meth:`current` makes it the parent of the job's own requests
    only around each of them.
    """

    def __init__(self, instruments: Instruments, site_id: str, query_id: str) -> None:
        self._instruments = instruments
        self._span = instruments.tracer.start_span(
            "halo.job",
            kind=instruments._trace.SpanKind.INTERNAL,
            attributes={"halo.site_id": site_id, "halo.query_id": query_id},
        )
        self._context = instruments._trace.set_span_in_context(self._span)
        self.pages = self.rows = self.bytes = 0

    @contextmanager
    def current(self) -> Iterator[None]:
        """The job's span as the current one, for a request (or a task) started here."""
        from opentelemetry import context

        token = context.attach(self._context)
        try:
            yield
        finally:
            context.detach(token)

    def page(self, rows: int, size: int) -> None:
        """A page of ``rows`` rows, decoded from ``size`` bytes, was fetched."""
        self.pages += 1
        self.rows += rows
        self.bytes += size
        self._instruments.rows.add(rows)
        self._instruments.bytes.add(size)

    def end(
        self,
        query: models.AsyncQuery | None,
        polls: int,
        error: BaseException | None,
        *,
        timed: bool,
    ) -> bool:
        """End the span with the run's figures; return whether the query's queue and
        execution times were recorded (once a query's are, ``timed`` is passed True)."""
        span, instruments = self._span, self._instruments
        instruments.polls.add(polls)
        span.set_attributes(
            {
                "halo.job.status_polls": polls,
                "halo.job.pages": self.pages,
                "halo.job.rows": self.rows,
                "halo.job.bytes": self.bytes,
            }
        )
        if query is not None:
            span.set_attribute("halo.query.status", str(query.status))
        if isinstance(error, GeneratorExit | asyncio.CancelledError):
            # The consumer stopped early (a break, a cancelled task): not a failure.
            span.set_attribute("halo.job.abandoned", True)
        elif error is not None:
            instruments._failed(span, _error_type(error), str(error) or type(error).__name__)
        span.end()
        if timed or query is None or not query.is_terminal or query.status_timing is None:
            return timed
        status = {"halo.query.status": str(query.status)}
        timing = query.status_timing
        for histogram, phase in (
            (instruments.queue_time, timing.queued),
            (instruments.execution_time, timing.executing),
        ):
            if phase is not None and phase.start_time is not None and phase.end_time is not None:
                histogram.record((phase.end_time - phase.start_time).total_seconds(), status)
        return True


def _route(path: str) -> tuple[str, dict[str, Any]]:
    """The route template of a request path, and the ids it holds as span attributes."""
    parts = path.split("/")
    ids: dict[str, Any] = {}
    for index in range(2, len(parts)):
        placeholder = _PLACEHOLDERS.get(parts[index - 1])
        if placeholder is None:
            continue
        if placeholder == "{queryId}" and parts[index] in _OPERATIONS:
            continue
        value = parts[index]
        ids[_ATTRIBUTE_OF[placeholder]] = int(value) if value.isdigit() else value
        parts[index] = placeholder
    return "/".join(parts), ids


def _error_type(exc: BaseException) -> str:
    """The semantic conventions' ``error.type``: the status of an HTTP error, else the
    exception's class."""
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status >= 400:
        return str(status)
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
