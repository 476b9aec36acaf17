"""Fixtures for the unit tests: the official OpenAPI document as plain data."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from halo_async.emulator.database import PracticeDatabase
from tests.support import practice_db


@pytest.fixture(scope="session")
def openapi(openapi_document: dict[str, Any]) -> dict[str, Any]:
    """The official OpenAPI document; the test is skipped where it is absent."""
    return openapi_document


@pytest.fixture(scope="module")
def bp() -> Iterator[PracticeDatabase]:
    """A read-only Best Practice site shared by a module's tests that change nothing."""
    db = practice_db()
    yield db
    db.close()


@pytest.fixture
def fresh() -> Iterator[PracticeDatabase]:
    """A Best Practice site of its own, for tests that write."""
    db = practice_db()
    yield db
    db.close()


@pytest.fixture(scope="module")
def zedmed() -> Iterator[PracticeDatabase]:
    """A read-only Zedmed site shared by a module's tests."""
    db = practice_db("Zedmed")
    yield db
    db.close()
