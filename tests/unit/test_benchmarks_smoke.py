"""Smoke tests of the benchmark harness: its logic at tiny sizes, never its timings.

No emulator process and no sockets: the decode harness runs the SDK over bytes held in
memory, the floor's status batcher over a fake API, the rest is pure logic.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
from typing import Any

import aiohttp
import orjson
import pytest
from multidict import CIMultiDict
from yarl import URL

from benchmarks import answers, decode, emulator_scale, fanout, instructions, scale, sink, stall
from benchmarks._emulator import EmulatorProcess
from benchmarks._report import (
    BenchmarkResult,
    Figure,
    Target,
    format_comparison,
    format_table,
    report_json,
)
from benchmarks._requests import RequestCounter, request_kind
from benchmarks.run import BENCHMARKS, OPT_IN, _parser
from halo_async import _constants as C
from halo_async import _convert, models

SITE = "3f91c577-20a8-467b-8991-b96dfb90e8c6"
QUERY = "9b2d1f0e-6c1a-4c39-8f00-5d7e0c2a1b11"


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("POST", f"/integrator/sites/{SITE}/queries/async", "create"),
        ("POST", f"/integrator/sites/{SITE}/queries/status", "batch_status"),
        ("GET", f"/integrator/sites/{SITE}/queries/{QUERY}", "get_query"),
        ("GET", f"/integrator/sites/{SITE}/queries/{QUERY}/results/12", "page"),
        ("POST", f"/integrator/sites/{SITE}/queries/immediate", "immediate"),
        ("GET", f"/integrator/sites/{SITE}", "other"),
    ],
)
def test_requests_are_counted_by_kind(method: str, path: str, kind: str) -> None:
    assert request_kind(method, path) == kind


async def test_the_trace_hook_counts_status_checks_of_both_kinds() -> None:
    counter = RequestCounter()
    base = f"http://127.0.0.1:1/integrator/sites/{SITE}/queries"
    for method, url in [("POST", f"{base}/status"), ("GET", f"{base}/{QUERY}"), ("GET", base)]:
        params = aiohttp.TraceRequestStartParams(method, URL(url), CIMultiDict())
        await counter._on_request_start(None, None, params)  # type: ignore[arg-type]
    assert counter.status_checks == 2
    assert counter.counts["other"] == 1


def test_a_figure_passes_or_fails_its_target_and_the_table_says_so() -> None:
    result = BenchmarkResult(
        name="demo",
        title="demo",
        figures=[
            Figure("fast enough", 1.1, target=Target("<=", 1.15)),
            Figure("too slow", 1.3, target=Target("<=", 1.15)),
            Figure("not measured", None, target=Target(">=", 3.0), note="it hung"),
            Figure("supporting", 2.5, unit="s"),
        ],
        summary=["a line under the table"],
    )
    assert [figure.passed for figure in result.figures] == [True, False, False, None]
    assert [figure.name for figure in result.failed] == ["too slow", "not measured"]
    table = format_table([result])
    assert "PASS" in table
    assert table.count("FAIL") == 2
    assert "it hung" in table
    assert "a line under the table" in table
    document = json.loads(json.dumps(report_json([result], {"quick": True})))
    assert document["passed"] is False
    figures = document["benchmarks"]["demo"]["figures"]
    assert figures[0] == {
        "name": "fast enough",
        "value": 1.1,
        "unit": "x",
        "target": "<= 1.15",
        "passed": True,
        "note": "",
    }


def test_the_command_line_offers_every_benchmark() -> None:
    assert list(BENCHMARKS) == [
        "fanout",
        "decode",
        "memory",
        "first_row",
        "stall",
        "emulator_scale",
        "scale",
        "sink",
        "answers",
        "instructions",
    ]
    assert sorted(OPT_IN) == ["instructions"]  # run only when named: minutes under valgrind
    args = _parser().parse_args(["--quick", "--only", "decode", "--only", "memory"])
    assert (args.quick, args.only, args.repeat) == (True, ["decode", "memory"], 3)
    assert args.compare is None
    assert str(_parser().parse_args(["--compare", "old.json"]).compare) == "old.json"
    with pytest.raises(SystemExit):
        _parser().parse_args(["--only", "nonsense"])


def test_a_comparison_shows_each_figures_change_and_what_only_one_side_has() -> None:
    old = report_json(
        [
            BenchmarkResult(
                name="decode",
                title="decode",
                figures=[
                    Figure("ratio", 1.0, target=Target(">=", 1.5)),
                    Figure("lag", 40.0, unit="ms", target=Target("<=", 10.0)),
                    Figure("retired figure", 3.0),
                ],
            ),
            BenchmarkResult(name="fanout", title="fanout", figures=[Figure("wall", 1.1)]),
        ],
        {},
    )
    new = BenchmarkResult(
        name="decode",
        title="decode",
        figures=[
            Figure("ratio", 1.6, target=Target(">=", 1.5)),
            Figure("lag", 50.0, unit="ms", target=Target("<=", 10.0)),
            Figure("new figure", 2.0),
        ],
    )
    lines = format_comparison([new], json.loads(json.dumps(old))).splitlines()

    def row(figure: str) -> str:
        return next(line for line in lines if line.startswith("decode") and f" {figure} " in line)

    assert "1.000x" in row("ratio")
    assert "1.600x" in row("ratio")
    assert "+60.0% better" in row("ratio")
    assert "+25.0% worse" in row("lag")
    assert "missing" in row("new figure")
    assert "missing" in row("retired figure")
    assert lines[-1] == "not run this time: fanout"


def test_the_emulator_process_runs_the_emulator_command_unless_it_needs_upload_latency() -> None:
    zero = EmulatorProcess(sites=3, seed=2, page_size=500).command()
    assert zero[1:3] == ["-m", "halo_async.emulator"]
    assert zero[zero.index("--port") + 1] == "0"
    assert zero[zero.index("--latency") + 1] == "zero"
    slow = EmulatorProcess(sites=1, page_upload=0.05).command()
    assert slow[1:3] == ["-m", "benchmarks._launcher"]
    assert slow[slow.index("--page-upload") + 1] == "0.05"


def _cached_result(pages: list[list[dict[str, Any]]]) -> decode.CachedPages:
    status = {
        "id": QUERY,
        "siteId": SITE,
        "mode": "async",
        "status": "successful",
        "result": {
            "rows": sum(len(rows) for rows in pages),
            "pages": [
                {"pageNumber": number, "status": "cached", "rows": {"count": len(rows)}}
                for number, rows in enumerate(pages, start=1)
            ],
        },
    }
    bodies = tuple(
        (
            {"Content-Type": "application/json", "Rows-Count": str(len(rows))},
            orjson.dumps({"data": base64.b64encode(orjson.dumps(rows)).decode(), "parameters": []}),
        )
        for rows in pages
    )
    return decode.CachedPages(SITE, QUERY, orjson.dumps(status), bodies)


async def test_the_decode_harness_runs_the_sdk_and_the_raw_loop_over_the_same_rows() -> None:
    cached = _cached_result([[{"ID": i, "NAME": f"n{i}"} for i in range(3)], [{"ID": 9}]])
    assert decode.raw_rows(cached) == 4
    assert await decode.sdk_rows(cached) == 4
    measured = await decode._timed_pass(cached, rows=4, rounds=1)
    assert measured.sdk > 0
    assert measured.raw > 0


class _FakeApi(fanout._Api):
    """Answers batch status requests after a turn of the loop, recording each request."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    async def post(self, path: str, body: Any) -> Any:
        self.batches.append(list(body["queryIds"]))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        results = [
            {"queryId": qid, "status": "found", "query": {"id": qid, "status": "successful"}}
            for qid in body["queryIds"]
        ]
        return {"results": results}


async def test_the_floor_batches_one_tick_and_strands_no_ask_made_during_a_request() -> None:
    api = _FakeApi()
    batcher = fanout._SiteBatcher(api, SITE)
    first = [asyncio.ensure_future(batcher.status(qid, 0.0, 0.0)) for qid in ("a", "b")]
    for _ in range(3):  # the batch of a and b is in flight after these turns of the loop
        await asyncio.sleep(0)
    assert api.batches == [["a", "b"]]
    late = asyncio.ensure_future(batcher.status("c", 0.0, 0.0))
    answers = await asyncio.wait_for(asyncio.gather(*first, late), timeout=1)
    assert [answer["id"] for answer in answers] == ["a", "b", "c"]
    assert api.batches == [["a", "b"], ["c"]]
    await batcher.close()


async def test_the_stall_harness_times_each_mode_over_the_same_pages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cached = _cached_result([[{"ID": i, "NAME": f"n{i}"} for i in range(50)], [{"ID": 99}]])
    refs = [(SITE, QUERY, 1), (SITE, QUERY, 2)]
    monkeypatch.setattr(C, "DECODE_OFF_LOOP_MIN_BYTES", 1)  # these tiny pages count as large
    async with decode._client_on(cached) as halo:

        async def fetch() -> int:
            return await stall.fetch_all(halo, refs)

        floor = await stall.timed_round("fetch_only", lambda: stall.fetch_bodies(halo, refs))
        inline = await stall.timed_round("inline", fetch)
        assert C.DECODE_OFF_LOOP_MIN_BYTES == 1  # restored after the inline round
        threaded = await stall.timed_round("thread", fetch)
    assert (inline.rows, threaded.rows) == (51, 51)
    assert floor.rows == cached.size  # the bodies' bytes, read and not decoded
    assert (inline.mode, threaded.mode) == ("inline", "thread")
    assert inline.beats >= 0
    assert threaded.max_lag >= 0.0
    with pytest.raises(ValueError, match="no pool"), stall.decoding("process"):
        pass


def test_the_scale_benchmark_reports_idle_memory_per_site_and_setup_costs() -> None:
    assert emulator_scale.idle_site_kib(60_000.0, 50_000.0, 2003, 3) == 5.0
    assert [emulator_scale.fan_out_target(n) for n in (60, 1000, 2000)] == [30.0, 30.0, 60.0]
    assert math.isnan(emulator_scale.idle_site_kib(None, 50_000.0, 2003, 3))
    generated, copied = emulator_scale.setup_costs(3, patients=20)
    assert generated > 0
    assert copied > 0
    run = {"sites": 10, "queried": 9, "ok": 9, "startup_s": 0.5, "fan_out_s": 0.2,
           "emulator_cpu_s": 0.1, "idle_rss_kib": 51_000.0, "after_rss_kib": 60_000.0}  # fmt: skip
    result = emulator_scale._result((10,), {10: [run]}, 50_000.0, 0.1, 0.001)
    values = {figure.name: figure.value for figure in result.figures}
    assert values["cold fan-out, 10 sites"] == 0.2
    assert values["RSS per idle site (10 vs 3 sites)"] == pytest.approx(1000 / 7)
    assert values["setup, generated / copied"] == pytest.approx(100)
    assert "9/9 queryable sites answered" in result.summary[0]


def test_the_scale_benchmark_reads_this_process_peak_rss() -> None:
    before = scale.peak_rss_mib()
    assert before is None or before > 1  # MiB: Linux reports it, elsewhere None

    result = scale._result(
        {
            "floor": [scale._Run(2.0, 1.0, 4000, 100.0)],
            "halo-async": [scale._Run(2.2, 1.1, 6000, 120.0)],
        },
        2000,
    )

    values = {figure.name: figure.value for figure in result.figures}
    assert values["scale: halo-async / floor wall time"] == pytest.approx(1.1)
    assert values["scale: halo-async requests per query"] == 3
    assert values["scale: halo-async peak RSS"] == 120.0
    assert result.figures[0].passed


async def test_the_sink_harness_writes_and_converts_the_same_rows_as_job_rows(
    tmp_path: Any,
) -> None:
    cached = _cached_result(
        [[{"ID": i, "NAME": f"n{i}"} for i in range(3)], [{"ID": 9, "NAME": None}]]
    )
    assert await sink.parquet_rows(cached, tmp_path / "out") == 4
    assert await sink.arrow_rows(cached) == 4
    rates = await sink._timed(cached, 4, tmp_path)
    assert rates.rows > 0
    assert rates.parquet > 0
    children = [[{"max_rss_kb": 100_000, "pages": 2, "source": "VmHWM"}],
                [{"max_rss_kb": 110_000, "pages": 20, "source": "VmHWM"}]]  # fmt: skip
    result = sink._result([rates], children, rows=4, pages=2, repeat=1)
    values = {figure.name: figure.value for figure in result.figures}
    assert values["peak RSS growth, fan-out to Parquet, 20 vs 2 pages"] == pytest.approx(10.0)
    assert values["Parquet sink / job.rows() rows/s"] == pytest.approx(rates.parquet / rates.rows)


async def test_the_answers_benchmark_times_both_ways_of_structuring_the_same_answers() -> None:
    result = await answers.run(quick=True, repeat=1)

    assert [figure.name for figure in result.figures] == [
        "created query: fast path / converter CPU per answer",
        "batch status: fast path / converter CPU per answer",
    ]
    assert all(figure.value is not None and figure.value > 0 for figure in result.figures)
    assert result.details["rounds"] == 3
    statuses = answers.status_answer()
    assert _convert.structure_query_statuses(statuses) == _convert.structure(
        statuses, list[models.QueryStatusResult]
    )


def test_gc_allocations_are_the_calls_to_gc_link_in_a_callgrind_file(tmp_path: Any) -> None:
    # Callgrind names a function once, then refers to it by its number alone.
    out = tmp_path / "callgrind.out"
    out.write_text(
        "fn=(1) _PyObject_GC_New\n"
        "cfn=(2) _PyObject_GC_Link\n"
        "calls=7 0\n"
        "1 70\n"
        "fn=(3) PyType_GenericAlloc\n"
        "cfn=(2)\n"
        "calls=5 0\n"
        "1 50\n"
        "cfn=(4) PyObject_Malloc\n"
        "calls=11 0\n"
        "1 11\n"
    )
    assert instructions.gc_allocations(out) == 12
