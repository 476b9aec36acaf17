"""The fast path of AsyncQuery and batch status answers against the converter.

``_convert.structure_async_query`` and ``structure_query_statuses`` must give exactly what
``_convert.structure`` gives (unknown keys ignored, unknown enum values kept as strings,
timezone-aware datetimes), and raise the same DecodeError where it raises: checked here
on every field of a full answer set to every kind of odd value, and on random mixes.
The fast path keeps ``statusTiming`` and ``metrics`` as sent and parses them when first read:
the same value, or the same DecodeError, then.
"""

from __future__ import annotations

import copy
import datetime as dt
import pickle
import random
import re
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest

from halo_async import _convert, models
from halo_async.errors import DecodeError

QUERY = "5a572254-9513-4d0c-a9e2-ab1ff64b38a7"
SITE = "7907e4b8-3f80-4323-940f-1ed129c4af74"


def full_query() -> dict[str, Any]:
    """A successful query as the emulator answers it, with every optional part present."""
    return {
        "id": QUERY,
        "integratorId": "b4c701c0-4340-4e0d-b191-3a1d691b8105",
        "siteId": SITE,
        "mode": "async",
        "status": "successful",
        "maxTimeInQueue": 3600000,
        "commandSize": 149,
        "requestSize": 169,
        "createdAt": "2026-12-02T14:20:35.959Z",
        "updatedAt": "2026-12-02T14:20:36.858Z",
        "completedAt": "2026-12-02T14:20:36.858Z",
        "statusTiming": {
            "initialising": {
                "startTime": "2026-12-02T14:20:35.959Z",
                "endTime": "2026-12-02T14:20:35.960Z",
            },
            "queued": {"startTime": "2026-12-02T14:20:35.960Z", "endTime": "2026-12-02T14:20:35"},
            "executing": {"startTime": "2026-12-02T14:20:35.9671234+10:00"},
            "uploading": {"startTime": "2026-12-02T14:20:36.857Z"},
            "downloading": None,
        },
        "metrics": {"sqlExecutionDuration": 870},
        "errorDetails": {"errorType": "mssql", "errorCode": 208, "errorMessage": "no table"},
        "errorCode": 208,
        "errorMessage": "no table",
        "result": {
            "rows": 20,
            "size": 1688,
            "rowsAffected": None,
            "pages": [
                {
                    "pageNumber": 1,
                    "status": "cached",
                    "size": 1688,
                    "rows": {"count": 20, "rangeStart": 0, "rangeEnd": 19},
                },
                {"pageNumber": 2},
            ],
        },
        "resultSize": 1688,
    }


# Values of every kind a JSON answer can hold, and a few more (a body rewritten by a proxy).
ODD_VALUES: list[Any] = [
    None,
    "",
    "successful",
    "aNewStatus",
    "cached",
    "haloLink",
    "2026-12-02T14:20:35Z",
    "2026-12-02T14:20:35",
    "2026-12-02 14:20:35.5+05:30",
    "not a date",
    0,
    7,
    -1,
    2.5,
    True,
    False,
    "12",
    [],
    [1],
    [{"pageNumber": 1}],
    {},
    {"count": 1},
    {"startTime": "2026-12-02T14:20:35Z"},
    {"pageNumber": "1"},
    dt.datetime(2026, 1, 1, 9, 30),
]


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path in a nested answer, list items included."""
    items: Any = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in items:
        yield (*prefix, key)
        if isinstance(child, dict | list):
            yield from paths(child, (*prefix, key))


def replaced(answer: Any, path: tuple[Any, ...], new: Any) -> Any:
    """A copy of ``answer`` with the value at ``path`` replaced (or deleted when ``new`` is
    ``DELETE``)."""
    result = copy.deepcopy(answer)
    parent = result
    for key in path[:-1]:
        parent = parent[key]
    if new is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return result


DELETE = object()


def outcome(structure: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", structure()
    except DecodeError as exc:
        return "error", str(exc)


def read(query: Any) -> Any:
    """The query with its ``status_timing`` and ``metrics`` read: the fast path keeps them
    as sent and parses them then (so their errors come from that read)."""
    if isinstance(query, models.AsyncQuery):
        _ = query.status_timing, query.metrics
    return query


def read_all(results: list[models.QueryStatusResult]) -> list[models.QueryStatusResult]:
    for result in results:
        read(result.query)
    return results


def assert_same_query(answer: Any) -> None:
    fast = outcome(lambda: read(_convert.structure_async_query(answer)))
    slow = outcome(lambda: _convert.structure(answer, models.AsyncQuery))
    if fast != slow and fast[0] == slow[0] == "error":
        assert_read_fault(fast[1], slow[1])
        return
    assert fast == slow, answer
    if fast[0] == "ok":
        assert type(fast[1]) is models.AsyncQuery
        assert_same_types(fast[1], slow[1])


def assert_same_statuses(answer: Any) -> None:
    fast = outcome(lambda: read_all(_convert.structure_query_statuses(answer)))
    slow = outcome(lambda: _convert.structure(answer, list[models.QueryStatusResult]))
    if fast != slow and fast[0] == slow[0] == "error":
        assert_read_fault(fast[1], query_relative(slow[1]))
        return
    assert fast == slow, answer
    if fast[0] == "ok":
        assert_same_types(fast[1], slow[1])


def assert_read_fault(read: str, whole: str) -> None:
    """A timing (or metrics) that does not fit fails its read, with the converter's own
    words for it: the problems of the field read first, of those the whole answer has."""
    prefix = "the answer does not fit AsyncQuery: "
    assert read.startswith(prefix), read
    assert whole.startswith(prefix), whole
    problems = read.removeprefix(prefix).split("; ")
    assert set(problems) <= set(whole.removeprefix(prefix).split("; ")), (read, whole)
    fields = {problem.split(" @ <AsyncQuery>.")[1].split(".")[0] for problem in problems}
    assert len(fields) == 1, read
    assert fields <= {"status_timing", "metrics"}, read


def query_relative(message: str) -> str:
    """A batch answer's DecodeError as the query's own would word it."""
    message = re.sub(r"<list\[QueryStatusResult\]>\[\d+\]\.query\.", "<AsyncQuery>.", message)
    return message.replace("fit list[QueryStatusResult]", "fit AsyncQuery")


def assert_same_types(fast: Any, slow: Any) -> None:
    """Equal is not enough: a StrEnum member equals its string, 1 equals True."""
    assert type(fast) is type(slow)
    if isinstance(fast, list | tuple):
        for one, other in zip(fast, slow, strict=True):
            assert_same_types(one, other)
    elif hasattr(type(fast), "__attrs_attrs__"):
        for field in type(fast).__attrs_attrs__:
            assert_same_types(getattr(fast, field.name), getattr(slow, field.name))
    elif isinstance(fast, dt.datetime):
        assert fast.tzinfo is not None
        assert fast.utcoffset() == slow.utcoffset()


def test_the_usual_answers_take_the_fast_path_and_agree() -> None:
    created = {
        key: value
        for key, value in full_query().items()
        if key not in {"result", "resultSize", "completedAt", "errorDetails", "metrics"}
    }
    created["status"] = "initialising"
    for answer in (full_query(), created):
        assert _convert._async_query(answer) == _convert.structure(answer, models.AsyncQuery)
        assert_same_query(answer)
    query = _convert.structure_async_query(full_query())
    assert query.status is models.QueryStatus.SUCCESSFUL
    assert query.result is not None
    assert query.result.pages[1].status is models.PageStatus.QUEUED
    assert query.status_timing is not None
    assert query.status_timing.queued is not None
    end = query.status_timing.queued.end_time
    assert end is not None
    assert end.tzinfo is dt.UTC


@pytest.mark.parametrize("path", list(paths(full_query())), ids=lambda p: ".".join(map(str, p)))
def test_every_field_set_to_every_odd_value_agrees(path: tuple[Any, ...]) -> None:
    for new in [DELETE, *ODD_VALUES]:
        answer = replaced(full_query(), path, new)
        assert_same_query(answer)
        assert_same_statuses([{"queryId": QUERY, "status": "found", "query": answer}])


def test_odd_shapes_of_the_whole_answer_agree() -> None:
    query = full_query()
    aliased = {key: value for key, value in query.items() if key != "result"}
    aliased["results"] = query["result"]
    for answer in [aliased, {**query, "unknownKey": {"x": 1}}, {**query, "results": 5}]:
        assert_same_query(answer)
    for odd in ODD_VALUES:
        assert_same_query(odd)
        assert_same_statuses(odd)
        assert_same_statuses([odd])
        assert_same_statuses([{"queryId": QUERY, "status": "found", "query": odd}])
        assert_same_statuses([{"queryId": odd, "status": "notFound"}])
        assert_same_statuses([{"queryId": QUERY, "status": odd}])
    assert_same_statuses([{"queryId": QUERY, "status": "notFound", "query": None}])
    assert_same_statuses([{"queryId": QUERY, "status": "found", "query": aliased}])


def test_random_mixes_of_odd_values_agree() -> None:
    rng = random.Random(20261202)
    every_path = list(paths(full_query()))
    for _ in range(400):
        answer = full_query()
        for path in rng.sample(every_path, rng.randint(1, 4)):
            try:
                answer = replaced(answer, path, rng.choice([DELETE, *ODD_VALUES]))
            except (KeyError, IndexError, TypeError):
                continue  # an earlier change removed or replaced this path's parent
        assert_same_query(answer)
        assert_same_statuses([{"queryId": QUERY, "status": "found", "query": answer}])


def test_a_timing_that_does_not_fit_fails_only_its_reader() -> None:
    # A fan-out's polls read the status and the pages, never the ten timestamps: an odd one
    # must not fail the poll, only the code that reads it, with the converter's own error.
    answer = replaced(full_query(), ("statusTiming", "queued", "startTime"), "not a time")
    with pytest.raises(DecodeError) as whole:
        _convert.structure(answer, models.AsyncQuery)
    query = _convert.structure_async_query(answer)
    assert query.status is models.QueryStatus.SUCCESSFUL
    assert [page.page_number for page in query.pages] == [1, 2]
    with pytest.raises(DecodeError) as read_later:
        _ = query.status_timing
    assert str(read_later.value) == str(whole.value)
    assert "status_timing.queued.start_time" in str(read_later.value)


def test_a_timing_parsed_on_read_is_kept_and_reads_as_the_converters() -> None:
    query = _convert.structure_async_query(full_query())
    slow = _convert.structure(full_query(), models.AsyncQuery)
    timing = query.status_timing
    assert timing == slow.status_timing
    assert query.status_timing is timing  # parsed once
    assert repr(query) == repr(slow)
    assert attrs.asdict(_convert.structure_async_query(full_query())) == attrs.asdict(slow)
    assert pickle.loads(pickle.dumps(_convert.structure_async_query(full_query()))) == slow


def test_the_slot_filled_models_are_the_models_attrs_makes() -> None:
    query = _convert.structure_async_query(full_query())
    made = models.AsyncQuery(
        **{f.name: getattr(query, f.name) for f in attrs.fields(models.AsyncQuery)}
    )
    assert type(query) is models.AsyncQuery
    assert query == made
    assert hash(query) == hash(made)
    assert repr(query) == repr(made)
    assert pickle.loads(pickle.dumps(query)) == query
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        query.status = models.QueryStatus.INITIALISING  # type: ignore[misc]
    assert attrs.evolve(query, status="x").status == "x"
    assert query.result is not None
    assert type(query.result.pages[0]) is models.Page


def test_a_slot_filler_refuses_fields_it_was_not_told_of() -> None:
    @attrs.frozen
    class Two:
        first: int
        second: int

    with pytest.raises(RuntimeError, match=r"Two's fields are not \('second', 'first'\)"):
        _convert.slot_filler(Two, ("second", "first"))
    assert _convert.slot_filler(Two, ("first", "second"))(1, 2) == Two(1, 2)


def test_a_slot_filler_leaves_an_init_that_does_more_to_attrs() -> None:
    @attrs.frozen
    class Converted:
        number: int = attrs.field(converter=int)

    @attrs.frozen
    class Checked:
        number: int = attrs.field(validator=attrs.validators.instance_of(int))

    assert _convert.slot_filler(Converted, ("number",)) is Converted
    assert _convert.slot_filler(Checked, ("number",)) is Checked
    fields = tuple(field.name for field in attrs.fields(models.Command))
    assert _convert.slot_filler(models.Command, fields) is models.Command  # a converter


def test_every_slot_filler_in_use_makes_its_class_exactly() -> None:
    from halo_async import client, fanout

    fillers = {
        models.AsyncQuery: _convert._new_async_query,
        models.Page: _convert._new_page,
        models.AsyncResult: _convert._new_result,
        models.RowRange: _convert._new_row_range,
        models.QueryStatusResult: _convert._new_status_result,
        models.ResultPage: client._new_result_page,
        fanout.SiteSuccess: fanout._new_success,
    }
    for cls, fill in fillers.items():
        values = [object() for _ in attrs.fields(cls)]
        made = fill(*values)
        assert type(made) is cls
        assert made == cls(*values)
        assert [getattr(made, field.name) for field in attrs.fields(cls)] == values
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            made.x = 1
