"""``submit(..., ledger=, run_id=)`` against the emulator, on SQLite and on Redis: the same
run id and site give back the same query's job, after the last page its consumer took."""

from __future__ import annotations

import pytest

from halo_async import (
    HaloClient,
    SqlExecutionError,
    SubmissionOutcomeUnknownError,
)
from halo_async.emulator import Emulator
from halo_async.ledger import EntryKey, EntryState, Ledger
from tests.support import FAST_POLL, bp_sites

ORDERED = "SELECT INTERNALID FROM PATIENTS ORDER BY INTERNALID"
RUN = "export-7"

pytestmark = pytest.mark.halo_emulator(sites=bp_sites(1, patients=120), seed=5, page_size=500)


def creates(emulator: Emulator) -> int:
    return len(emulator.queries(mode="async"))


async def test_a_resubmitted_job_carries_on_after_the_last_page_taken(
    halo_emulator: Emulator, halo_client: HaloClient, ledger: Ledger
) -> None:
    site = halo_emulator.sites[0].id
    expected = [
        row["INTERNALID"]
        for row in (await halo_client.immediate_query(site, ORDERED)).decode_rows()
    ]
    job = await halo_client.submit(site, ORDERED, ledger=ledger, run_id=RUN, poll=FAST_POLL)
    taken = []
    async for row in job.rows():
        taken.append(row["INTERNALID"])
        if len(taken) == 40:
            break  # mid-way through the second page, say; then the process stops
    recorded = await ledger.get(EntryKey(RUN, site))
    assert recorded is not None
    # The first page was recorded once the consumer asked for the row after it.
    assert 0 < recorded.rows_delivered < 40
    assert (recorded.next_page, recorded.next_row) == (2, 0)

    again = await halo_client.submit(site, ORDERED, ledger=ledger, run_id=RUN, poll=FAST_POLL)
    rest = [row["INTERNALID"] for row in await again.fetch_all()]

    assert again.query_id == job.query_id
    assert creates(halo_emulator) == 1
    # The rows after the recorded page come again, from the start of their page.
    assert taken[: recorded.rows_delivered] + rest == expected
    entry = await ledger.get(EntryKey(RUN, site))
    assert entry is not None
    assert entry.state is EntryState.SUCCEEDED
    assert entry.rows_delivered == len(expected)


async def test_a_finished_job_resubmitted_sends_no_create_and_yields_nothing(
    halo_emulator: Emulator, halo_client: HaloClient, ledger: Ledger
) -> None:
    site = halo_emulator.sites[0].id
    job = await halo_client.submit(site, ORDERED, ledger=ledger, run_id=RUN, poll=FAST_POLL)
    assert len(await job.fetch_all()) == 120

    again = await halo_client.submit(site, ORDERED, ledger=ledger, run_id=RUN, poll=FAST_POLL)
    assert [row async for row in again.rows()] == []
    assert creates(halo_emulator) == 1


async def test_an_unknown_create_is_not_re_sent_by_a_later_submit(
    halo_emulator: Emulator, halo_client: HaloClient, ledger: Ledger
) -> None:
    site = halo_emulator.sites[0].id
    halo_emulator.faults.fail_next("createAsyncQuery", drop=True)
    with pytest.raises(SubmissionOutcomeUnknownError):
        await halo_client.submit(site, ORDERED, ledger=ledger, run_id=RUN)
    requests = halo_emulator.stats.requests["createAsyncQuery"]

    with pytest.raises(SubmissionOutcomeUnknownError, match="not re-sent"):
        await halo_client.submit(site, ORDERED, ledger=ledger, run_id=RUN)
    assert halo_emulator.stats.requests["createAsyncQuery"] == requests
    assert creates(halo_emulator) == 1


async def test_a_failed_query_is_recorded_and_its_error_comes_back_without_a_create(
    halo_emulator: Emulator, halo_client: HaloClient, ledger: Ledger
) -> None:
    site = halo_emulator.sites[0].id
    bad = "SELECT NOSUCHCOLUMN FROM PATIENTS"
    job = await halo_client.submit(site, bad, ledger=ledger, run_id=RUN, poll=FAST_POLL)
    with pytest.raises(SqlExecutionError):
        await job.fetch_all()
    entry = await ledger.get(EntryKey(RUN, site))
    assert entry is not None
    assert entry.state is EntryState.FAILED
    assert "SqlExecutionError" in (entry.error or "")

    again = await halo_client.submit(site, bad, ledger=ledger, run_id=RUN, poll=FAST_POLL)
    with pytest.raises(SqlExecutionError):
        await again.fetch_all()
    assert creates(halo_emulator) == 1
