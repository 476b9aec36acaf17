"""Fixtures for the unit tests: the official OpenAPI document, read where it lies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

OPENAPI_PATH = Path(__file__).resolve().parents[2] / ".." / "shared" / "halo-api" / "openapi.json"


def load_openapi() -> dict[str, Any] | None:
    """The OpenAPI document beside the checkout, or None where it is absent."""
    if not OPENAPI_PATH.exists():
        return None
    document: dict[str, Any] = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
    return document


@pytest.fixture(scope="session")
def openapi() -> dict[str, Any]:
    """The official OpenAPI document; the test is skipped where it is absent."""
    document = load_openapi()
    if document is None:
        pytest.skip(f"the OpenAPI document is not at {OPENAPI_PATH}")
    return document
