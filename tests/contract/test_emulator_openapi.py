"""The emulator against the official OpenAPI document, with schemathesis.

Every integrator operation except FHIR is fuzzed twice: once with generated site ids (almost
all unknown: routing, auth and validation paths) and once pinned to a real, paired,
authoritative Best Practice site (so the bodies reach validation, SQL execution and the query
lifecycle). Every response must conform to the document and no input may yield a 5xx.

The document is read from the ``shared`` folder beside the checkout, never copied. It has two
``oneOf`` slips that no implementation can satisfy, patched here in memory:

- the query-error responses are ``oneOf [Error, ExecutionFailedImmediateQuery]``, but
  ``Error`` has no required property, so an ExecutionFailedImmediateQuery body matches both;
- the result page is ``oneOf [{data required}, {nothing required}]``, so every page with
  ``data`` matches both.

Both become ``anyOf``. ``positive_data_acceptance`` is off: a body can be schema-valid and still
carry SQL that fails (400 with the ExecutionFailedImmediateQuery object, as the document says),
or frequencies below the documented minimum of 60 s (REFERENCE §7).
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest

schemathesis = pytest.importorskip("schemathesis")

from halo_async.emulator import Emulator, SiteSpec  # noqa: E402
from halo_async.emulator.app import EmulatorStats  # noqa: E402
from tests.support import OPENAPI_PATH, load_openapi  # noqa: E402

pytestmark = pytest.mark.contract

OFFICIAL = load_openapi()
if OFFICIAL is None:
    pytest.skip(f"the OpenAPI document is not at {OPENAPI_PATH}", allow_module_level=True)

KEY = "contract-key"
# The document's own example Halo GUID, so example-driven cases hit a real site.
SITE_ID = "3f91c577-20a8-467b-8991-b96dfb90e8c6"
SPECS = (
    SiteSpec(id=SITE_ID, pms_site_id="12345", pairing_code="ABC123", patients=60),
    SiteSpec(pms_site_id="12345", authoritative=False, patients=20),
    SiteSpec(pms_type="Zedmed", pms_site_id="22222", paired=False, patients=20),
)
MAX_EXAMPLES = 12


def _patched_document() -> dict[str, Any]:
    document = copy.deepcopy(OFFICIAL)
    responses = document["components"]["responses"]
    for name, response in responses.items():
        schema = response.get("content", {}).get("application/json", {}).get("schema", {})
        if name.endswith("ErrorForIntegratorQuery") and "oneOf" in schema:
            schema["anyOf"] = schema.pop("oneOf")
    page_schema = responses["200GetResultPage"]["content"]["application/json"]["schema"]
    page_schema["anyOf"] = page_schema.pop("oneOf")
    return document


def _config(**parameters: str) -> Any:
    lines = [
        "seed = 20260619",
        f"generation.max-examples = {MAX_EXAMPLES}",
        "checks.positive_data_acceptance.enabled = false",
        "phases.stateful.enabled = false",
    ]
    if parameters:
        pairs = ", ".join(f'"{key}" = "{value}"' for key, value in parameters.items())
        lines.append(f"parameters = {{ {pairs} }}")
    return schemathesis.Config.from_str("\n".join(lines))


def _load(**parameters: str) -> Any:
    schema = schemathesis.openapi.from_dict(_patched_document(), config=_config(**parameters))
    return schema.exclude(path_regex="/fhir/")


fuzzed_sites = _load()
real_site = _load(siteId=SITE_ID)


class _ServerThread:
    """The emulator on its own event loop in a thread; schemathesis calls it synchronously."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.base_url = ""
        self.stats: EmulatorStats | None = None
        self.failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="halo-emulator-contract")

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # surfaced to the test thread
            self.failure = exc
            self.ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with Emulator(SPECS, seed=1, api_key=KEY) as emulator:
            self.base_url = emulator.base_url
            self.stats = emulator.stats
            self.ready.set()
            await self._stop.wait()

    def __enter__(self) -> _ServerThread:
        self._thread.start()
        self.ready.wait(30)
        if self.failure is not None or not self.base_url:
            raise RuntimeError("the emulator did not start") from self.failure
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@pytest.fixture(scope="module")
def server() -> Iterator[_ServerThread]:
    with _ServerThread() as running:
        yield running


@pytest.fixture
def base_url(server: _ServerThread) -> str:
    return server.base_url


_SETTINGS = hypothesis.settings(
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    database=None,
)


@fuzzed_sites.parametrize()
@_SETTINGS
def test_generated_site_ids(case: Any, base_url: str) -> None:
    case.call_and_validate(base_url=base_url, headers={"Ocp-Apim-Subscription-Key": KEY})


@real_site.parametrize()
@_SETTINGS
def test_a_real_site(case: Any, base_url: str) -> None:
    case.call_and_validate(base_url=base_url, headers={"Ocp-Apim-Subscription-Key": KEY})


def test_the_pinned_run_reached_sql_and_the_lifecycle(server: _ServerThread) -> None:
    """Runs after the fuzzing above (file order): it must have gone past routing and auth."""
    assert server.stats is not None
    responses = server.stats.responses
    if not responses:
        pytest.skip("run on its own, without the fuzzing tests")
    assert not [key for key in responses if key[1] >= 500], "no input may yield a 5xx"
    immediate = responses[("createImmediateQuery", 200)] + responses[("createImmediateQuery", 400)]
    assert immediate > 0
    assert responses[("createAsyncQuery", 201)] > 0
    assert responses[("createRegisteredQuery", 202)] > 0
