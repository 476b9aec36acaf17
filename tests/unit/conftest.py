"""Fixtures for the unit tests: the official OpenAPI document as plain data."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def openapi(openapi_document: dict[str, Any]) -> dict[str, Any]:
    """The official OpenAPI document; the test is skipped where it is absent."""
    return openapi_document
