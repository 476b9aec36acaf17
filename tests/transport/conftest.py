"""Fixtures for the transport tests: a client whose retries never really sleep, and
``HaloMock`` (``tests/support.py``) standing in for Halo Cloud.

``HaloMock`` replaces only ``HttpTransport._round_trip``, the client's single network round
trip: the retry loop, redirect policy, timeouts, key scrubbing and error mapping above it
are the production code, on whichever aiohttp is installed (the tests do not depend on a
mocking library that tracks aiohttp's internals). What these tests assert is what reaches
aiohttp: method, URL and query, headers, body and timeout of every request.

The retry policy's ``sleep`` records each wait and advances a fake clock by it, so a test
sees exactly how long the client would have waited, and the total deadline is measured
on that clock, without a real second passing.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from halo_async import HaloClient, RetryPolicy
from tests.support import HaloMock

# Looks like a real subscription key, so that a leak of any part of it would be visible.
API_KEY = "4f1c9e2ab7d84c0e9a55c3b1d2e6f708"
BASE_URL = "https://api.haloconnect.io"


class FakeClock:
    """A monotonic clock that only moves when the fake sleep says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class RecordingSleep:
    """An ``asyncio.sleep`` stand-in: records each wait and advances the fake clock."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.clock.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    """The retry policy's clock."""
    return FakeClock()


@pytest.fixture
def sleeps(clock: FakeClock) -> RecordingSleep:
    """The retry policy's sleep: ``sleeps.calls`` lists every wait."""
    return RecordingSleep(clock)


@pytest.fixture
def policy(clock: FakeClock, sleeps: RecordingSleep) -> RetryPolicy:
    """The default retry policy, on the fake clock and sleep."""
    return RetryPolicy(sleep=sleeps, clock=clock, rng=random.Random(1234))


@pytest.fixture
def api_key() -> str:
    """The API key every test client uses."""
    return API_KEY


@pytest.fixture
def mocked() -> Iterator[HaloMock]:
    """Halo Cloud, scripted, answering every ``HttpTransport`` while the test runs."""
    with HaloMock() as m:
        yield m


@pytest.fixture
async def client(policy: RetryPolicy) -> AsyncIterator[HaloClient]:
    """An open client against production's base URL, retrying on the fake clock."""
    async with HaloClient(API_KEY, base_url=BASE_URL, retry=policy) as halo:
        yield halo


class OpenAPI:
    """The official OpenAPI document, with the look-ups the tests need."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def resolve(self, node: Any) -> Any:
        """Follow local ``$ref`` pointers (``#/components/...``) to the node they name."""
        while isinstance(node, dict) and "$ref" in node:
            target: Any = self.document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node

    def operation(self, operation_id: str) -> dict[str, Any]:
        """The operation object with this operationId."""
        for item in self.document["paths"].values():
            for operation in item.values():
                if isinstance(operation, dict) and operation.get("operationId") == operation_id:
                    return operation
        raise KeyError(operation_id)

    def example(self, operation_id: str, status: str, name: str | None = None) -> Any:
        """The example body of one response of one operation (a named one if given)."""
        response = self.resolve(self.operation(operation_id)["responses"][status])
        media = response["content"]["application/json"]
        return media["example"] if name is None else media["examples"][name]["value"]

    def header_examples(self, operation_id: str, status: str) -> dict[str, str]:
        """The documented response headers of one response, with their example values."""
        response = self.resolve(self.operation(operation_id)["responses"][status])
        return {name: str(header["example"]) for name, header in response["headers"].items()}


@pytest.fixture(scope="session")
def openapi(openapi_document: dict[str, Any]) -> OpenAPI:
    """The official OpenAPI document from the shared folder beside the checkout."""
    return OpenAPI(openapi_document)
