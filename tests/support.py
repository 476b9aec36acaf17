"""Helpers shared by the test layers (fixtures live in the conftest files beside them)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from halo_async import HaloClient, PollPolicy, RetryPolicy
from halo_async.emulator import SiteSpec

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
