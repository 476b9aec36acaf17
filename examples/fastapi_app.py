"""A small FastAPI service on halo-async: patients across a practice group, as NDJSON.

- ``GET /groups/{group}/patients?surname=Smi%`` resolves each PMS site id of the group to
  its Halo site, fans one query out across them, and streams a line per row as each site's
  pages land: ``{"pmsSiteId": "1001", "row": {...}}``, or ``{"pmsSiteId": ..., "error": ...}``
  for a site that failed (the others carry on).
- ``GET /sites/{pms_site_id}/patients?surname=Smi%`` runs the query on one practice and
  streams its rows (``X-Halo-Query-Id`` names the query). The job waits on its poll
  interval, and a webhook announcing its query wakes it at once.
- ``POST /halo/webhooks`` is where Halo sends its webhooks (signature, freshness, replays).

Try it against the emulator, no Halo key needed (``pip install uvicorn`` to serve it)::

    halo emulator serve --port 8080   # another shell; `halo emulator sites` lists PMS ids
    export HALO_API_KEY=halo-emulator-key HALO_BASE_URL=http://127.0.0.1:8080
    export HALO_WEBHOOK_SECRET=change-me HALO_PRACTICE_GROUPS='{"north": ["520000", "700001"]}'
    uvicorn --factory examples.fastapi_app:create_app
    curl -N 'http://127.0.0.1:8000/groups/north/patients?surname=S%25'
    curl -N 'http://127.0.0.1:8000/sites/520000/patients?surname=Smi%25'
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import attrs
from fastapi import FastAPI, HTTPException

from halo_async import HaloClient, PollPolicy, SitePage
from halo_async.contrib.fastapi import (
    HaloClientDep,
    JobRegistryDep,
    NDJSONResponse,
    halo_lifespan,
    install_exception_handlers,
    rows_response,
    webhook_router,
)
from halo_async.errors import HaloError
from halo_async.webhooks import JobRegistry, WebhookVerifier

PATIENTS_SQL = (
    "SELECT InternalID, Firstname, Surname, DOB FROM BPS_Patients"
    " WHERE Surname LIKE @surname ORDER BY InternalID"
)


@attrs.frozen
class PracticeGroup:
    """Practices queried together: their PMS site ids, all on one practice management system."""

    pms_site_ids: tuple[str, ...] = attrs.field(converter=tuple)
    pms_name: str = "Best Practice"


def groups_from_env() -> dict[str, PracticeGroup]:
    """``$HALO_PRACTICE_GROUPS``: ``{"name": ["pms id", ...]}`` (Best Practice sites)."""
    raw = os.environ.get("HALO_PRACTICE_GROUPS", "{}")
    return {name: PracticeGroup(ids) for name, ids in json.loads(raw).items()}


def create_app(
    *,
    groups: Mapping[str, PracticeGroup] | None = None,
    client_factory: Callable[[], HaloClient] = HaloClient,
    webhook_secret: str | None = None,
    webhook_clock: Callable[[], dt.datetime] | None = None,
    poll: PollPolicy | None = None,
) -> FastAPI:
    """The service. Unset arguments come from the environment: ``$HALO_API_KEY`` and
    ``$HALO_BASE_URL`` (the client), ``$HALO_WEBHOOK_SECRET``, ``$HALO_PRACTICE_GROUPS``.

    ``webhook_clock`` and ``poll`` are for tests: the verifier's idea of now, and the jobs'
    poll policy.
    """
    groups = dict(groups) if groups is not None else groups_from_env()
    secret = webhook_secret or os.environ.get("HALO_WEBHOOK_SECRET")
    if not secret:
        raise RuntimeError("set HALO_WEBHOOK_SECRET to the webhook secret Halo issued you")
    verifier = (
        WebhookVerifier(secret, clock=webhook_clock) if webhook_clock else WebhookVerifier(secret)
    )

    app = FastAPI(title="halo-async example", lifespan=halo_lifespan(client_factory))
    # A Halo error raised before the first row becomes a JSON answer: 404 for a PMS site id
    # that resolves to no site, 422 for SQL the practice rejects, 429, 502/503/504...
    install_exception_handlers(app)
    app.include_router(webhook_router(verifier))

    @app.get("/sites/{pms_site_id}/patients")
    async def site_patients(
        pms_site_id: str, halo: HaloClientDep, jobs: JobRegistryDep, surname: str = "%"
    ) -> NDJSONResponse:
        site = await halo.resolve_site(pms_site_id, "Best Practice")
        job = await halo.submit(site.id, PATIENTS_SQL, parameters={"@surname": surname}, poll=poll)
        return rows_response(job, jobs=jobs)

    @app.get("/groups/{group}/patients")
    async def group_patients(
        group: str, halo: HaloClientDep, jobs: JobRegistryDep, surname: str = "%"
    ) -> NDJSONResponse:
        members = groups.get(group)
        if members is None:
            raise HTTPException(404, f"no practice group {group!r}")
        return rows_response(_group_lines(halo, members, surname, poll, jobs))

    return app


async def _resolve(
    halo: HaloClient, group: PracticeGroup
) -> tuple[dict[str, str], list[dict[str, str]]]:
    """Halo site id -> PMS id for the practices that resolve, and an error line for each
    that does not."""
    ids = group.pms_site_ids
    resolved = await asyncio.gather(
        *(halo.resolve_site(pms_id, group.pms_name) for pms_id in ids), return_exceptions=True
    )
    sites: dict[str, str] = {}
    failures: list[dict[str, str]] = []
    for pms_id, outcome in zip(ids, resolved, strict=True):
        if isinstance(outcome, HaloError):
            failures.append({"pmsSiteId": pms_id, "error": f"{type(outcome).__name__}: {outcome}"})
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            sites[outcome.id] = pms_id
    return sites, failures


async def _group_lines(
    halo: HaloClient,
    group: PracticeGroup,
    surname: str,
    poll: PollPolicy | None,
    jobs: JobRegistry,
) -> AsyncIterator[Sequence[dict[str, Any]]]:
    sites, failures = await _resolve(halo, group)
    if failures:
        yield failures
    if not sites:
        return
    # Each site's job joins ``jobs`` while it polls, so Halo's webhooks wake it at once.
    outcomes = halo.fan_out(
        PATIENTS_SQL,
        list(sites),
        parameters={"@surname": surname},
        stream=True,
        poll=poll,
        jobs=jobs,
    )
    # Closing the generator (the client hung up) stops every site's polling at once.
    async with contextlib.aclosing(outcomes):
        async for item in outcomes:
            if isinstance(item, SitePage):
                yield [{"pmsSiteId": sites[item.site_id], "row": row} for row in item.rows]
            elif not item.ok:
                error = f"{type(item.error).__name__}: {item.error}"
                yield [{"pmsSiteId": sites[item.site_id], "error": error}]
