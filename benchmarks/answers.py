"""Answers: the CPU a fan-out spends turning each status answer into models.

A fan-out structures an ``AsyncQuery`` for every create and every status it reads. This
times, on the same decoded answers and in alternating rounds, the hand-written fast path
(``_convert.structure_async_query`` / ``structure_query_statuses``) against the cattrs
converter it stands in for (``_convert.structure``), for a created query (``initialising``,
as the create answers it) and a batch status answer of a successful query with its page
list (what the last poll reads). CPU per answer, the best of the rounds; no socket, no
emulator. Both give equal models (``tests/unit/test_convert_fast.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from benchmarks._report import BenchmarkResult, Figure, Target
from halo_async import _convert, models

__all__ = ["NAME", "run"]

NAME = "answers"
TARGET = 0.8
_STAMP = "2026-12-02T14:20:35.959Z"


def created_answer() -> dict[str, Any]:
    """A query as createAsyncQuery answers it (the emulator's shape)."""
    return {
        "id": "5a572254-9513-4d0c-a9e2-ab1ff64b38a7",
        "integratorId": "b4c701c0-4340-4e0d-b191-3a1d691b8105",
        "siteId": "7907e4b8-3f80-4323-940f-1ed129c4af74",
        "mode": "async",
        "status": "initialising",
        "maxTimeInQueue": 3600000,
        "commandSize": 149,
        "requestSize": 169,
        "createdAt": _STAMP,
        "updatedAt": _STAMP,
        "statusTiming": {"initialising": {"startTime": _STAMP}},
    }


def status_answer() -> list[dict[str, Any]]:
    """A batch status answer's ``results`` for one successful query of one page."""
    phase = {"startTime": _STAMP, "endTime": _STAMP}
    query = {
        **created_answer(),
        "status": "successful",
        "statusTiming": {
            "initialising": phase,
            "queued": phase,
            "executing": phase,
            "uploading": phase,
        },
        "metrics": {"sqlExecutionDuration": 870},
        "result": {
            "rows": 20,
            "size": 1688,
            "pages": [
                {
                    "pageNumber": 1,
                    "status": "cached",
                    "size": 1688,
                    "rows": {"count": 20, "rangeStart": 0, "rangeEnd": 19},
                }
            ],
        },
        "resultSize": 1688,
        "completedAt": _STAMP,
    }
    return [{"queryId": query["id"], "status": "found", "query": query}]


def _cpu_per_call(work: Callable[[], object], calls: int) -> float:
    started = time.process_time()
    for _ in range(calls):
        work()
    return (time.process_time() - started) / calls


def _best_of(
    rounds: int, calls: int, fast: Callable[[], object], slow: Callable[[], object]
) -> dict[str, float]:
    best = {"fast": float("inf"), "converter": float("inf")}
    for _ in range(rounds):
        best["fast"] = min(best["fast"], _cpu_per_call(fast, calls))
        best["converter"] = min(best["converter"], _cpu_per_call(slow, calls))
    return best


async def run(*, quick: bool, repeat: int) -> BenchmarkResult:
    """Time both ways of structuring each answer, alternating, ``max(repeat, 3)`` rounds."""
    calls = 200 if quick else 5000
    rounds = max(repeat, 3)
    created, statuses = created_answer(), status_answer()
    times = {
        "created query": _best_of(
            rounds,
            calls,
            lambda: _convert.structure_async_query(created),
            lambda: _convert.structure(created, models.AsyncQuery),
        ),
        "batch status": _best_of(
            rounds,
            calls,
            lambda: _convert.structure_query_statuses(statuses),
            lambda: _convert.structure(statuses, list[models.QueryStatusResult]),
        ),
    }
    figures = [
        Figure(
            f"{kind}: fast path / converter CPU per answer",
            best["fast"] / best["converter"],
            target=Target("<=", TARGET),
        )
        for kind, best in times.items()
    ]
    summary = [
        f"{kind:>13}: fast path {best['fast'] * 1e6:.1f} us, converter "
        f"{best['converter'] * 1e6:.1f} us per answer (best of {rounds} rounds of {calls})"
        for kind, best in times.items()
    ]
    return BenchmarkResult(
        name=NAME,
        title="answers: AsyncQuery and batch status structuring, fast path vs converter",
        figures=figures,
        details={"calls": calls, "rounds": rounds, "seconds_per_answer": times},
        summary=summary,
    )
