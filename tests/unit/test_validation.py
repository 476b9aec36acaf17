"""Bad arguments are refused before anything is sent, and the error names the bad value."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from halo_async import (
    Checkpoint,
    Command,
    FanOutLimits,
    HaloClient,
    Parameter,
    PollPolicy,
    RetryPolicy,
    errors,
)
from tests.support import HaloMock

SITE = "3f91c577-20a8-467b-8991-b96dfb90e8c6"
QUERY = "1366ef6e-d536-457c-8f1b-eaa4352059f9"

Call = Callable[[HaloClient], Awaitable[Any]]


@pytest.fixture
def mocked() -> Iterator[HaloMock]:
    """Catches any request that slips through (none should)."""
    with HaloMock() as m:
        yield m


@pytest.fixture
async def client() -> AsyncIterator[HaloClient]:
    async with HaloClient("test-key", retry=RetryPolicy.none()) as halo:
        yield halo


# (call, the bad value it passes, the field the error names)
CASES: dict[str, tuple[Call, Any, str]] = {
    "site-id-not-a-uuid": (
        lambda c: c.immediate_query("site-123", "SELECT 1"),
        "site-123",
        "site_id",
    ),
    "site-id-an-int": (lambda c: c.get_site(12345), 12345, "site_id"),
    "query-id-not-a-uuid": (lambda c: c.get_query(SITE, "q-1"), "q-1", "query_id"),
    "registered-id-not-a-uuid": (
        lambda c: c.cancel_registered_query(SITE, "nope"),
        "nope",
        "query_id",
    ),
    "batch-id-not-a-uuid": (
        lambda c: c.get_query_statuses(SITE, [QUERY, "bad-id"]),
        "bad-id",
        "query_ids[]",
    ),
    "immediate-queue-over-60000": (
        lambda c: c.immediate_query(SITE, "SELECT 1", max_time_in_queue=60001),
        60001,
        "max_time_in_queue",
    ),
    "immediate-queue-negative": (
        lambda c: c.immediate_query(SITE, "SELECT 1", max_time_in_queue=-1),
        -1,
        "max_time_in_queue",
    ),
    "immediate-queue-a-float": (
        lambda c: c.immediate_query(SITE, "SELECT 1", max_time_in_queue=1.5),
        1.5,
        "max_time_in_queue",
    ),
    "immediate-queue-a-bool": (
        lambda c: c.immediate_query(SITE, "SELECT 1", max_time_in_queue=True),
        True,
        "max_time_in_queue",
    ),
    "async-queue-over-7200000": (
        lambda c: c.create_async_query(SITE, "SELECT 1", max_time_in_queue=7_200_001),
        7_200_001,
        "max_time_in_queue",
    ),
    "async-queue-negative": (
        lambda c: c.create_async_query(SITE, "SELECT 1", max_time_in_queue=-5),
        -5,
        "max_time_in_queue",
    ),
    "async-queue-a-string": (
        lambda c: c.create_async_query(SITE, "SELECT 1", max_time_in_queue="900000"),
        "900000",
        "max_time_in_queue",
    ),
    "page-zero": (lambda c: c.get_result_page(SITE, QUERY, 0), 0, "page_number"),
    "page-negative": (lambda c: c.stream_result_page(SITE, QUERY, -2), -2, "page_number"),
    "page-a-float": (lambda c: c.get_result_page(SITE, QUERY, 1.0), 1.0, "page_number"),
    "page-a-bool": (lambda c: c.get_result_page(SITE, QUERY, True), True, "page_number"),
    "page-a-string": (lambda c: c.get_result_page(SITE, QUERY, "1"), "1", "page_number"),
    "unknown-parameter-type": (
        lambda c: c.immediate_query(SITE, "SELECT @x", parameters=[Parameter("@x", "Integer", 1)]),
        "Integer",
        "parameters[].type",
    ),
    "bad-direction": (
        lambda c: c.create_async_query(
            SITE, "SELECT @x", parameters=[Parameter("@x", "Int", 1, direction="in")]
        ),
        "in",
        "parameter '@x' direction",
    ),
    "parameter-not-a-parameter": (
        lambda c: c.immediate_query(SITE, "SELECT @x", parameters=[("@x", 1)]),
        ("@x", 1),
        "parameters",
    ),
    "bad-execution-mode": (
        lambda c: c.immediate_query(SITE, "SELECT 1", execution_mode="read"),
        "read",
        "execution_mode",
    ),
    "bad-execution-mode-in-command": (
        lambda c: c.immediate_query(SITE, Command("SELECT 1", execution_mode="rows")),
        "rows",
        "execution_mode",
    ),
    "empty-execution-mode": (
        lambda c: c.immediate_query(SITE, "SELECT 1", execution_mode=""),
        "",
        "execution_mode",
    ),
    "empty-command-type": (
        lambda c: c.immediate_query(SITE, "SELECT 1", command_type=""),
        "",
        "command_type",
    ),
    "bad-command-type": (
        lambda c: c.create_async_query(SITE, "SELECT 1", command_type="sql"),
        "sql",
        "command_type",
    ),
    "empty-sql": (lambda c: c.immediate_query(SITE, ""), "", "command"),
    "blank-sql": (lambda c: c.create_async_query(SITE, "  \n "), "  \n ", "command"),
    "blank-sql-in-command": (lambda c: c.immediate_query(SITE, Command("\t")), "\t", "command"),
    "blank-catalogue": (
        lambda c: c.immediate_query(SITE, "SELECT 1", catalogue=" "),
        " ",
        "catalogue",
    ),
    "unknown-pms-name-find": (
        lambda c: c.find_sites("12345", "MedicalDirector"),
        "MedicalDirector",
        "pms_name",
    ),
    "unknown-pms-name-pair": (
        lambda c: c.pair_site("12345", "Best-Practice", "ABC123"),
        "Best-Practice",
        "pms_name",
    ),
    "blank-pms-site-id": (lambda c: c.find_sites(" ", "Zedmed"), " ", "pms_site_id"),
    "blank-pairing-code": (
        lambda c: c.pair_site("12345", "Best Practice", "  "),
        "  ",
        "pairing_code",
    ),
    "pairing-code-not-a-string": (
        lambda c: c.pair_site("12345", "Best Practice", 123456),
        123456,
        "pairing_code",
    ),
    "missing-pairing-code-for-best-practice": (
        lambda c: c.pair_site("12345", "Best Practice"),
        None,
        "pairing_code",
    ),
    "registered-frequency-under-60": (
        lambda c: c.create_registered_query(SITE, "SELECT 1", name="n", frequency=59, duration=600),
        59,
        "frequency",
    ),
    "registered-frequency-a-bool": (
        lambda c: c.create_registered_query(
            SITE, "SELECT 1", name="n", frequency=True, duration=600
        ),
        True,
        "frequency",
    ),
    "registered-duration-over-86400": (
        lambda c: c.create_registered_query(
            SITE, "SELECT 1", name="n", frequency=60, duration=86401
        ),
        86401,
        "duration",
    ),
    "registered-duration-zero": (
        lambda c: c.create_registered_query(SITE, "SELECT 1", name="n", frequency=60, duration=0),
        0,
        "duration",
    ),
    "registered-blank-name": (
        lambda c: c.create_registered_query(SITE, "SELECT 1", name=" ", frequency=60, duration=60),
        " ",
        "name",
    ),
    "registered-name-not-a-string": (
        lambda c: c.create_registered_query(SITE, "SELECT 1", name=7, frequency=60, duration=60),
        7,
        "name",
    ),
    "empty-query-ids": (lambda c: c.get_query_statuses(SITE, []), [], "query_ids"),
    # A job's own settings are checked before its query is created: afterwards, a retry
    # of the call would run the query twice.
    "submit-prefetch-zero": (lambda c: c.submit(SITE, "SELECT 1", prefetch=0), 0, "prefetch"),
    "fan-out-deadline-negative": (
        lambda c: c.fan_out("SELECT 1", [SITE], deadline=-1),  # type: ignore[return-value]
        -1,
        "deadline",
    ),
    "fan-out-site-not-a-uuid": (
        lambda c: c.fan_out("SELECT 1", [SITE, "x-1"]),  # type: ignore[return-value]
        "x-1",
        "site_ids[]",
    ),
    "fan-out-queue-over-7200000": (
        lambda c: c.fan_out(  # type: ignore[return-value]
            "SELECT 1", [SITE], max_time_in_queue=7_200_001
        ),
        7_200_001,
        "max_time_in_queue",
    ),
    "submit-poll-not-a-policy": (
        lambda c: c.submit(SITE, "SELECT 1", poll="fast"),  # type: ignore[arg-type]
        "fast",
        "poll",
    ),
    "fan-out-deadline-nan": (
        lambda c: c.fan_out("SELECT 1", [SITE], deadline=float("nan")),  # type: ignore[return-value]
        float("nan"),
        "deadline",
    ),
    "fan-out-deadline-a-string": (
        lambda c: c.fan_out("SELECT 1", [SITE], deadline="5"),  # type: ignore[arg-type,return-value]
        "5",
        "deadline",
    ),
    "fan-out-site-ids-a-string": (
        lambda c: c.fan_out("SELECT 1", SITE),  # type: ignore[return-value]
        SITE,
        "site_ids",
    ),
    "parameter-nan": (
        lambda c: c.immediate_query(SITE, "SELECT @x", parameters={"@x": float("nan")}),
        float("nan"),
        "parameters[].value",
    ),
    "parameter-infinity": (
        lambda c: c.submit(SITE, "SELECT @x", parameters={"@x": float("inf")}),
        float("inf"),
        "parameters[].value",
    ),
    "parameter-bytes": (
        lambda c: c.immediate_query(SITE, "SELECT @x", parameters={"@x": b"\x00\x01"}),  # type: ignore[dict-item]
        b"\x00\x01",
        "parameters[].value",
    ),
    "parameter-a-list": (
        lambda c: c.immediate_query(SITE, "SELECT @x", parameters={"@x": [1, 2]}),  # type: ignore[dict-item]
        [1, 2],
        "parameters[].value",
    ),
    "parameter-name-injected": (
        lambda c: c.immediate_query(SITE, "SELECT 1", parameters={"@x; DROP TABLE y": 1}),
        "@x; DROP TABLE y",
        "parameters[].name",
    ),
    "resume-negative-row": (
        lambda c: c.resume(Checkpoint(SITE, QUERY, 1, -1)),  # type: ignore[arg-type,return-value]
        -1,
        "next_row",
    ),
    "query-ids-a-string": (lambda c: c.get_query_statuses(SITE, QUERY), QUERY, "query_ids"),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_bad_arguments_are_refused_before_sending(
    case: str, client: HaloClient, mocked: HaloMock
) -> None:
    call, value, field = CASES[case]

    with pytest.raises(errors.ValidationError) as caught:
        await call(client)

    assert mocked.requests == {}, "a request was sent"
    error = caught.value
    assert repr(value) in str(error), f"{str(error)!r} does not name {value!r}"
    assert error.field == field
    assert error.value == value or (value != value and error.value != error.value)  # NaN
    assert isinstance(error, ValueError)


async def test_a_command_object_with_options_beside_it_is_refused(
    client: HaloClient, mocked: HaloMock
) -> None:
    with pytest.raises(errors.ValidationError, match="inside the Command"):
        await client.immediate_query(SITE, Command("SELECT 1"), execution_mode="scalar")

    assert mocked.requests == {}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"request_timeout": 0}, "request_timeout"),
        ({"connect_timeout": -1.0}, "connect_timeout"),
        ({"connection_limit": 0}, "connection_limit"),
        ({"connection_limit": 2.5}, "connection_limit"),
        ({"request_timeout": float("nan")}, "request_timeout"),
        ({"connect_timeout": "3"}, "connect_timeout"),
        ({"retry": 3}, "retry"),
    ],
)
def test_bad_client_settings_are_refused(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        HaloClient("test-key", **kwargs)

    assert caught.value.field == field
    assert repr(kwargs[field]) in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"initial_delay": -0.1}, "initial_delay"),
        ({"max_delay": -1}, "max_delay"),
        ({"deadline": -1}, "deadline"),
        ({"retry_after_cap": -1}, "retry_after_cap"),
        ({"max_attempts": 2.5}, "max_attempts"),
        ({"initial_delay": float("nan")}, "initial_delay"),
        ({"deadline": float("nan")}, "deadline"),
        ({"multiplier": "2"}, "multiplier"),
    ],
)
def test_bad_retry_policies_are_refused(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        RetryPolicy(**kwargs)

    assert caught.value.field == field
    assert repr(kwargs[field]) in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"per_site": True}, "per_site"),
        ({"prefetch": 1.5}, "prefetch"),
    ],
)
def test_bad_fan_out_limits_are_refused(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        FanOutLimits(**kwargs)

    assert caught.value.field == field
    assert repr(kwargs[field]) in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"initial_interval": -1}, "initial_interval"),
        ({"deadline": -5}, "deadline"),
        ({"max_interval": float("nan")}, "max_interval"),
        ({"multiplier": None}, "multiplier"),
    ],
)
def test_bad_poll_policies_are_refused(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(errors.ValidationError) as caught:
        PollPolicy(**kwargs)

    assert caught.value.field == field
    assert "PollPolicy" in str(caught.value)


async def test_a_misspelt_query_option_is_refused_before_sending(
    client: HaloClient, mocked: HaloMock
) -> None:
    with pytest.raises(TypeError, match="'catalog'") as caught:
        await client.submit(SITE, "SELECT 1", catalog="Patients")  # type: ignore[call-arg]

    assert "catalogue" in str(caught.value)  # the options it could have meant
    assert mocked.requests == {}


@pytest.mark.parametrize(
    "key", ["abc\r\nX-Injected: 1", "abc\n", " abc", 12345], ids=["crlf", "lf", "space", "int"]
)
def test_an_api_key_unfit_for_a_header_is_refused_without_quoting_it(key: Any) -> None:
    with pytest.raises(errors.ConfigurationError) as caught:
        HaloClient(key)
    assert str(key) not in str(caught.value) or isinstance(key, int)

    halo = HaloClient("good-key")
    with pytest.raises(errors.ConfigurationError):
        halo.api_key = key
    assert halo.api_key == "good-key"
