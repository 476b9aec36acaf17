"""``python -m benchmarks.run``: run the benchmarks, print the table, write the JSON.

Options: ``--quick`` (small sizes, a smoke run), ``--only NAME`` (repeatable; the only way
to run the opt-in ``instructions``), ``--repeat N``
(each figure is the median of N runs), ``--output PATH`` (default
``benchmarks/results/latest.json``), ``--compare OLD.json`` (print each figure's change against
an earlier run's JSON). The exit status is 0 when every target is met, 1 when one is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import (
    answers,
    decode,
    emulator_scale,
    fanout,
    first_row,
    instructions,
    memory,
    scale,
    sink,
    stall,
)
from benchmarks._report import (
    BenchmarkResult,
    format_comparison,
    format_table,
    report_json,
    write_json,
)

__all__ = ["BENCHMARKS", "main", "run_benchmarks"]

Benchmark = Callable[..., Awaitable[BenchmarkResult]]

BENCHMARKS: dict[str, Benchmark] = {
    fanout.NAME: fanout.run,
    decode.NAME: decode.run,
    memory.NAME: memory.run,
    first_row.NAME: first_row.run,
    stall.NAME: stall.run,
    emulator_scale.NAME: emulator_scale.run,
    scale.NAME: scale.run,
    sink.NAME: sink.run,
    answers.NAME: answers.run,
    instructions.NAME: instructions.run,
}
"""Every benchmark by name, in the order they run."""

OPT_IN = frozenset({instructions.NAME})
"""Benchmarks run only when named with ``--only`` (they take minutes, or need a tool)."""

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "latest.json"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="halo-async benchmarks: ratios against baselines measured in the same run.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(BENCHMARKS),
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per figure, the median is reported (3)"
    )
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help=f"JSON file ({DEFAULT_OUTPUT.name})"
    )
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="OLD.json",
        help="an earlier run's JSON: print each figure's change against it",
    )
    return parser


def _read_old(path: Path) -> dict[str, Any]:
    """The earlier run to compare with, read before anything runs so a typo fails fast."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"--compare {path}: cannot read it: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("benchmarks"), dict):
        raise SystemExit(f"--compare {path}: not a benchmarks.run results file")
    return document


async def run_benchmarks(
    names: Sequence[str], *, quick: bool, repeat: int
) -> list[BenchmarkResult]:
    """Run the named benchmarks one after the other; each prints a line when it ends."""
    results = []
    for name in names:
        started = time.perf_counter()
        result = await BENCHMARKS[name](quick=quick, repeat=repeat)
        elapsed = time.perf_counter() - started
        print(f"{name}: done in {elapsed:.1f} s", file=sys.stderr, flush=True)
        result.details["elapsed_s"] = round(elapsed, 2)
        results.append(result)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print, write; 0 when every target is met, 1 otherwise."""
    args = _parser().parse_args(argv)
    if args.repeat < 1:
        _parser().error("--repeat must be at least 1")
    old = _read_old(args.compare) if args.compare is not None else None
    only = args.only or []
    names = [name for name in BENCHMARKS if name in only or (not only and name not in OPT_IN)]
    results = asyncio.run(run_benchmarks(names, quick=args.quick, repeat=args.repeat))
    print(format_table(results))
    if old is not None:
        print("\n" + format_comparison(results, old))
    options = {"quick": args.quick, "repeat": args.repeat, "only": names}
    write_json(args.output, report_json(results, options))
    print(f"\nwritten: {args.output}")
    return 1 if any(result.failed for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
