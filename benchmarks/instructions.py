"""Instructions: the fan-out's client work counted by callgrind, halo-async against the floor.

The CPU-time figure of :mod:`benchmarks.fanout` moves by a tenth or more from one pair of
runs to the next on a shared 2-core machine (the emulator's load, other tenants). This one
does not: each client runs the fan-out workload (``SITES`` sites x 5 queries, the emulator in
its own process, every site's database set up first) in a child process under
``valgrind --tool=callgrind``, which counts the instructions it executes whatever else the
machine does; the workload's own are a full run's less those of a run that stops after the
warm-up. Reported: the instruction ratio, and the GC-tracked objects each client allocates
per query (callgrind's count of calls to CPython's ``_PyObject_GC_Link``), which drive how
often the garbage collector runs.

Under valgrind the client runs ~50x slower, so every query is done by its first poll: the
path measured is the shortest one, the same for both clients. Opt-in
(``--only instructions``): it takes minutes, and needs ``valgrind`` on the PATH (without it
the figures are n/a, and say why).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks import fanout
from benchmarks._emulator import EmulatorProcess, best_practice_sites
from benchmarks._report import BenchmarkResult, Figure

__all__ = ["NAME", "gc_allocations", "run"]

NAME = "instructions"
SITES, QUICK_SITES, QUERIES = 100, 5, 5
_REPO = Path(__file__).resolve().parents[1]
_COLLECTED = re.compile(rb"Collected : (\d+)")
_CALLS = re.compile(r"calls=(\d+)")
_CFN = re.compile(r"cfn=\((\d+)\)(?: (.*))?")
_FN = re.compile(r"c?fn=\((\d+)\) (.*)")


def gc_allocations(callgrind_out: Path) -> int:
    """How many times the profiled process called ``_PyObject_GC_Link`` (every allocation of
    an object the garbage collector tracks), from a callgrind output file."""
    names: dict[str, str] = {}
    callee: str | None = None
    total = 0
    with callgrind_out.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if line.startswith(("fn=", "cfn=")):
                named = _FN.match(line.rstrip("\n"))
                if named is not None:
                    names[named.group(1)] = named.group(2)
                if line.startswith("cfn="):
                    match = _CFN.match(line.rstrip("\n"))
                    callee = names.get(match.group(1)) if match is not None else None
            elif line.startswith("calls=") and callee == "_PyObject_GC_Link":
                counted = _CALLS.match(line)
                total += int(counted.group(1)) if counted is not None else 0
    return total


async def _counted(
    base_url: str, api_key: str, client: str, sites: list[str], mode: str, out: Path
) -> tuple[int, int, dict[str, object]]:
    """(instructions, GC-tracked allocations, the child's JSON line) of one child run."""
    process = await asyncio.create_subprocess_exec(
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
        sys.executable, "-m", "benchmarks._instructions_child",
        base_url, client, json.dumps(sites), str(QUERIES), mode,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HALO_API_KEY": api_key},
        cwd=_REPO,
    )  # fmt: skip
    stdout, stderr = await process.communicate()
    collected = _COLLECTED.search(stderr)
    if process.returncode != 0 or collected is None:
        tail = stderr.decode(errors="replace")[-2000:]
        raise RuntimeError(f"{client} under callgrind failed ({process.returncode}): {tail}")
    lines = stdout.decode().strip().splitlines()
    return int(collected.group(1)), gc_allocations(out), json.loads(lines[-1]) if lines else {}


async def _measure(base_url: str, api_key: str, sites: list[str]) -> dict[str, dict[str, float]]:
    counts: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="halo-callgrind-") as folder:
        for client in ("floor", "halo-async"):
            full, full_gc, ran = await _counted(
                base_url, api_key, client, sites, "run", Path(folder) / f"{client}.run"
            )
            warm, warm_gc, _ = await _counted(
                base_url, api_key, client, sites, "sample", Path(folder) / f"{client}.sample"
            )
            queries = len(sites) * QUERIES
            counts[client] = {
                "instructions": full - warm,
                "gc_allocations_per_query": (full_gc - warm_gc) / queries,
                "rows": float(ran.get("rows", 0)),  # type: ignore[arg-type]
            }
    return counts


async def run(*, quick: bool, repeat: int) -> BenchmarkResult:
    """Count both clients' instructions once (a count, not a timing: ``repeat`` is moot)."""
    title = "instructions: the fan-out's client work under callgrind, halo-async vs the floor"
    size = QUICK_SITES if quick else SITES
    if shutil.which("valgrind") is None:
        missing = "valgrind is not on the PATH (apt-get install valgrind)"
        figure = Figure("halo-async / floor instructions", None, note=missing)
        return BenchmarkResult(name=NAME, title=title, figures=[figure], summary=[missing])
    count, sites = await best_practice_sites(size, fanout.SEED)
    async with EmulatorProcess(sites=count, seed=fanout.SEED) as emulator:
        await fanout.warm_up_databases(emulator.base_url, emulator.api_key, sites)
        counts = await _measure(emulator.base_url, emulator.api_key, sites)
    halo, floor = counts["halo-async"], counts["floor"]
    figures = [
        Figure("halo-async / floor instructions", halo["instructions"] / floor["instructions"]),
        Figure(
            "halo-async / floor GC-tracked allocations",
            halo["gc_allocations_per_query"] / floor["gc_allocations_per_query"],
        ),
        *(
            Figure(f"{name} instructions per query", c["instructions"] / (size * QUERIES), "")
            for name, c in counts.items()
        ),
        *(
            Figure(f"{name} GC-tracked allocations per query", c["gc_allocations_per_query"], "")
            for name, c in counts.items()
        ),
    ]
    summary = [
        f"{size} sites x {QUERIES} queries, one page each, all in flight, each client in a "
        "child process under callgrind (the emulator in its own, not counted); a full run "
        "less a run of the warm-up alone",
        *(
            f"{name:>10}: {c['instructions'] / 1e6:,.0f}M instructions, "
            f"{c['gc_allocations_per_query']:.0f} GC-tracked allocations per query, "
            f"{c['rows']:.0f} rows"
            for name, c in counts.items()
        ),
    ]
    return BenchmarkResult(
        name=NAME, title=title, figures=figures, details={"counts": counts}, summary=summary
    )
