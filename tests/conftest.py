"""Fixtures shared by every test layer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from halo_async.ledger import Ledger, SQLiteLedger
from tests.support import OPENAPI_PATH, RedisServer, load_openapi


@pytest.fixture(scope="session")
def openapi_document() -> dict[str, Any]:
    """The official OpenAPI document; the test is skipped where it is absent."""
    document = load_openapi()
    if document is None:
        pytest.skip(f"the OpenAPI document is not at {OPENAPI_PATH}")
    return document


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server for the session; the tests that need it skip, saying why,
    where it cannot be had (``.ci/run`` installs it)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        server.start()
    except (FileNotFoundError, RuntimeError) as exc:
        pytest.skip(f"no redis-server: {exc}")
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied for this test."""
    redis_server.flush()
    return redis_server.url


def open_test_ledger(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Ledger:
    if backend == "sqlite":
        return SQLiteLedger(tmp_path / "ledger.db")
    from halo_async.ledger import RedisLedger

    return RedisLedger(request.getfixturevalue("redis_url"))


@pytest.fixture(params=["sqlite", "redis"])
def ledger_backend(request: pytest.FixtureRequest) -> str:
    """Each ledger test runs against both backends."""
    return str(request.param)


@pytest.fixture
async def ledger(
    ledger_backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Ledger]:
    """A fresh ledger of the backend under test."""
    async with open_test_ledger(ledger_backend, tmp_path, request) as opened:
        yield opened
