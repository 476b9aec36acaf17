"""The FastAPI glue's exception handlers: a Halo error becomes an HTTP answer that says what
happened (and never a 500 with a traceback, nor the API key)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from halo_async import HaloClient, HaloError, RetryPolicy
from halo_async.contrib.fastapi import (
    HaloClientDep,
    JobRegistryDep,
    exception_handlers,
    install_exception_handlers,
    open_halo,
    rows_response,
)
from halo_async.emulator import Emulator
from tests.support import no_sleep

ONE_TRY = RetryPolicy(max_attempts=1, sleep=no_sleep)


def readme_app() -> FastAPI:
    """The README's FastAPI example route, on an app with the glue's exception handlers."""
    app = FastAPI()
    install_exception_handlers(app)

    @app.get("/sites/{site_id}/appointments")
    async def appointments(site_id: str, halo: HaloClientDep, jobs: JobRegistryDep) -> Any:
        job = await halo.submit(site_id, "SELECT * FROM BPS_Appointments")
        return rows_response(job, jobs=jobs)

    @app.get("/sites/{site_id}")
    async def site(site_id: str, halo: HaloClientDep) -> Any:
        return (await halo.get_site(site_id)).id

    @app.get("/sites/{site_id}/sql")
    async def sql(site_id: str, q: str, halo: HaloClientDep) -> Any:
        query = await halo.immediate_query(site_id, q)
        return query.decode_rows()

    return app


@pytest.fixture
async def app_client(halo_emulator: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    app = readme_app()

    def factory() -> HaloClient:
        return HaloClient(halo_emulator.api_key, base_url=halo_emulator.base_url, retry=ONE_TRY)

    transport = httpx.ASGITransport(app=app)
    async with (
        open_halo(app, factory),
        httpx.AsyncClient(transport=transport, base_url="http://app") as client,
    ):
        yield client


def assert_no_key(response: httpx.Response, key: str) -> None:
    assert key not in response.text
    assert all(key not in value for value in response.headers.values())


async def test_a_site_id_that_is_not_a_guid_is_a_400(
    app_client: httpx.AsyncClient, halo_emulator: Emulator
) -> None:
    response = await app_client.get("/sites/nope/appointments")

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "InvalidArgumentError"
    assert "nope" in body["detail"]
    assert_no_key(response, halo_emulator.api_key)


async def test_an_unknown_site_is_a_404(
    app_client: httpx.AsyncClient, halo_emulator: Emulator
) -> None:
    response = await app_client.get(f"/sites/{uuid.uuid4()}/sql", params={"q": "SELECT 1"})

    assert response.status_code == 404
    assert response.json()["error"] == "NotFoundError"
    assert_no_key(response, halo_emulator.api_key)


async def test_sql_the_database_rejects_is_a_422_with_its_type_and_code(
    app_client: httpx.AsyncClient, halo_emulator: Emulator
) -> None:
    site = halo_emulator.sites[0]
    response = await app_client.get(f"/sites/{site.id}/sql", params={"q": "SELECT * FROM NOPE"})

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "SqlExecutionError"
    assert (body["error_type"], body["error_code"], body["site_id"]) == ("mssql", 208, site.id)


async def test_rate_limited_is_a_429_with_retry_after(
    app_client: httpx.AsyncClient, halo_emulator: Emulator
) -> None:
    halo_emulator.faults.fail_next(None, status=429, retry_after=30)
    site = halo_emulator.sites[0]

    response = await app_client.get(f"/sites/{site.id}/sql", params={"q": "SELECT 1 AS one"})

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "30"
    assert response.json()["retry_after"] == 30


@pytest.mark.parametrize(
    ("upstream", "status", "error"),
    [
        (500, 502, "ServerError"),
        (502, 502, "BadGatewayError"),
        (503, 503, "SiteUnavailableError"),
        (504, 504, "GatewayTimeoutError"),
    ],
)
async def test_upstream_failures_are_502_503_504(
    app_client: httpx.AsyncClient, halo_emulator: Emulator, upstream: int, status: int, error: str
) -> None:
    halo_emulator.faults.fail_next("getSite", status=upstream)

    response = await app_client.get(f"/sites/{halo_emulator.sites[0].id}")

    assert (response.status_code, response.json()["error"]) == (status, error)
    assert response.json()["upstream_status"] == upstream
    assert_no_key(response, halo_emulator.api_key)


async def test_a_query_whose_creation_timed_out_upstream_is_a_504(
    app_client: httpx.AsyncClient, halo_emulator: Emulator
) -> None:
    halo_emulator.faults.fail_next(None, status=504)
    site = halo_emulator.sites[0]

    response = await app_client.get(f"/sites/{site.id}/sql", params={"q": "SELECT 1 AS one"})

    assert response.status_code == 504
    assert response.json()["error"] == "SubmissionOutcomeUnknownError"


async def test_no_answer_from_halo_is_a_502_and_the_key_stays_out() -> None:
    key = "sk-the-secret-key-0123456789"
    app = readme_app()
    transport = httpx.ASGITransport(app=app)
    site = str(uuid.uuid4())
    async with (
        open_halo(app, lambda: HaloClient(key, base_url="http://127.0.0.1:9", retry=ONE_TRY)),
        httpx.AsyncClient(transport=transport, base_url="http://app") as client,
    ):
        response = await client.get(f"/sites/{site}/sql", params={"q": "SELECT 1"})

    assert response.status_code == 502
    assert response.json()["error"] == "HaloConnectionError"
    assert_no_key(response, key)


async def test_the_handlers_also_come_as_a_mapping_for_the_constructor(
    halo_emulator: Emulator,
) -> None:
    app = FastAPI(exception_handlers=exception_handlers())

    @app.get("/sites/{site_id}")
    async def site(site_id: str, halo: HaloClientDep) -> Any:
        return (await halo.get_site(site_id)).id

    factory = lambda: HaloClient(halo_emulator.api_key, base_url=halo_emulator.base_url)  # noqa: E731
    transport = httpx.ASGITransport(app=app)
    async with (
        open_halo(app, factory),
        httpx.AsyncClient(transport=transport, base_url="http://app") as client,
    ):
        response = await client.get("/sites/nope")

    assert response.status_code == 400


async def test_an_error_message_echoing_the_key_is_scrubbed(halo_emulator: Emulator) -> None:
    app = FastAPI()
    install_exception_handlers(app)

    @app.get("/boom")
    async def boom(halo: HaloClientDep) -> Any:
        raise HaloError(f"Halo echoed the key {halo.api_key} back")

    factory = lambda: HaloClient(halo_emulator.api_key, base_url=halo_emulator.base_url)  # noqa: E731
    transport = httpx.ASGITransport(app=app)
    async with (
        open_halo(app, factory),
        httpx.AsyncClient(transport=transport, base_url="http://app") as client,
    ):
        response = await client.get("/boom")

    assert response.status_code == 502
    assert response.json()["detail"] == "Halo echoed the key *** back"
    assert_no_key(response, halo_emulator.api_key)
