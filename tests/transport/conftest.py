"""Fixtures for the transport tests: a client whose retries never really sleep, and
aioresponses standing in for Halo Cloud.

The retry policy's ``sleep`` records each wait and advances a fake clock by it, so a test
sees exactly how long the client would have waited, and the total deadline is measured
on that clock, without a real second passing.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
import yarl
from aioresponses import aioresponses

from halo_async import HaloClient, RetryPolicy

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


class HaloMock(aioresponses):
    """aioresponses, plus readers for the requests it recorded."""

    def made(self) -> list[tuple[str, yarl.URL, dict[str, Any]]]:
        """Every request seen: (method, URL with its query string, keyword arguments)."""
        return [
            (method, url, call.kwargs)
            for (method, url), calls in self.requests.items()
            for call in calls
        ]

    def only(self) -> tuple[str, yarl.URL, dict[str, Any]]:
        """The one request made; fails the test if there were none or several."""
        made = self.made()
        assert len(made) == 1, f"expected one request, got {[(m, str(u)) for m, u, _ in made]}"
        return made[0]

    @staticmethod
    def body(kwargs: dict[str, Any]) -> Any:
        """The JSON a recorded request sent (None when it had no body)."""
        data = kwargs.get("data")
        return orjson.loads(data) if data is not None else None


@pytest.fixture
def mocked() -> Iterator[HaloMock]:
    """aioresponses intercepting every aiohttp request."""
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
