"""Fixtures shared by every test layer."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import OPENAPI_PATH, load_openapi


@pytest.fixture(scope="session")
def openapi_document() -> dict[str, Any]:
    """The official OpenAPI document; the test is skipped where it is absent."""
    document = load_openapi()
    if document is None:
        pytest.skip(f"the OpenAPI document is not at {OPENAPI_PATH}")
    return document
