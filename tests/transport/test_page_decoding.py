"""Result pages over the wire, decoded off the event loop: the same page as on it, and the
same typed errors."""

from __future__ import annotations

import base64
import threading
import weakref
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from halo_async import HaloClient, _decode, errors, models
from halo_async import _constants as C
from halo_async._api import FetchedPage
from halo_async.models import Checkpoint

if TYPE_CHECKING:
    from conftest import HaloMock

BASE = "https://api.haloconnect.io"
SITE = "3f91c577-20a8-467b-8991-b96dfb90e8c6"
QUERY = "1366ef6e-d536-457c-8f1b-eaa4352059f9"
PAGE_URL = f"{BASE}/integrator/sites/{SITE}/queries/{QUERY}/results/1"
ROWS = [
    {"InternalID": i, "SURNAME": f"CITIZEN {i}", "DOB": "1980-02-03T00:00:00"} for i in range(500)
]
DATA = base64.b64encode(orjson.dumps(ROWS)).decode()


@pytest.fixture
def decoding_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every page counts as large; returns the names of the threads that decoded them."""
    monkeypatch.setattr(C, "DECODE_OFF_LOOP_MIN_BYTES", 1)
    monkeypatch.setattr(C, "DECODE_SLICE_BYTES", 1024)  # many slices, even for this page
    threads: list[str] = []
    decode_body = _decode.decode_body

    def recording(*args: Any, **kwargs: Any) -> _decode.DecodedBody:
        threads.append(threading.current_thread().name)
        return decode_body(*args, **kwargs)

    monkeypatch.setattr(_decode, "decode_body", recording)
    return threads


async def test_a_large_page_is_decoded_off_the_loop_into_the_same_page(
    client: HaloClient, mocked: HaloMock, decoding_threads: list[str]
) -> None:
    parameters = [{"name": "@n", "type": "Int", "value": "500", "direction": "output"}]
    mocked.get(PAGE_URL, payload={"data": DATA, "parameters": parameters})

    page = await client.get_result_page(SITE, QUERY, 1)

    assert page.rows == ROWS
    assert page.parameters == (models.Parameter("@n", "Int", "500", models.Direction.OUTPUT),)
    assert [name.startswith("halo-async-decode") for name in decoding_threads] == [True]


async def test_a_large_stream_page_is_decoded_off_the_loop_in_every_body_format(
    client: HaloClient, mocked: HaloMock, decoding_threads: list[str]
) -> None:
    for body in (orjson.dumps({"data": DATA}), orjson.dumps(DATA), orjson.dumps(ROWS)):
        mocked.get(f"{PAGE_URL}/stream", body=body)
        page = await client.stream_result_page(SITE, QUERY, 1)
        assert page.rows == ROWS
    assert len(decoding_threads) == 3


@pytest.mark.usefixtures("decoding_threads")
async def test_a_large_page_that_is_not_rows_raises_decode_error(
    client: HaloClient, mocked: HaloMock
) -> None:
    mocked.get(PAGE_URL, payload={"data": DATA[: len(DATA) // 2]})

    with pytest.raises(errors.DecodeError, match="result data is not valid"):
        await client.get_result_page(SITE, QUERY, 1)


# -- a job's prefetch window ------------------------------------------------------------------


def _status(pages: int) -> dict[str, Any]:
    return {
        "id": QUERY,
        "siteId": SITE,
        "mode": "async",
        "status": "successful",
        "result": {
            "rows": 3 * pages,
            "pages": [
                {"pageNumber": n, "status": "cached", "rows": {"count": 3}}
                for n in range(1, pages + 1)
            ],
        },
    }


def _page(number: int) -> dict[str, Any]:
    rows = [{"InternalID": number * 100 + i} for i in range(3)]
    return {"data": base64.b64encode(orjson.dumps(rows)).decode(), "parameters": []}


async def test_a_job_decodes_each_prefetched_page_only_when_its_turn_comes(
    client: HaloClient, mocked: HaloMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    mocked.get(f"{BASE}/integrator/sites/{SITE}/queries/{QUERY}", payload=_status(4))
    for number in range(1, 5):
        mocked.get(f"{PAGE_URL[:-1]}{number}", payload=_page(number))
    events: list[str] = []
    pages: list[weakref.ref[models.ResultPage]] = []
    page_of = client._page_of  # where a small page is decoded

    def recording(fetched: FetchedPage) -> models.ResultPage:
        events.append(f"decode; earlier pages still held: {[p() is not None for p in pages]}")
        page = page_of(fetched)
        pages.append(weakref.ref(page))
        return page

    monkeypatch.setattr(client, "_page_of", recording)
    fetched = 0
    async for row in client.resume(Checkpoint(SITE, QUERY), prefetch=3).rows():
        if row["InternalID"] % 100 == 0:
            fetched = len(mocked.made()) - 1  # less the status request
            events.append(f"page {row['InternalID'] // 100}")

    # The window had fetched pages ahead, but each was decoded only once the consumer was
    # done with the one before, which nothing held any more.
    assert fetched == 4
    assert events == [
        "decode; earlier pages still held: []",
        "page 1",
        "decode; earlier pages still held: [False]",
        "page 2",
        "decode; earlier pages still held: [False, False]",
        "page 3",
        "decode; earlier pages still held: [False, False, False]",
        "page 4",
    ]
