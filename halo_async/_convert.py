"""The one cattrs converter: the wire format of every model lives here.

- camelCase on the wire, snake_case in Python (a field's ``metadata["wire"]`` overrides);
- unknown keys ignored (Halo adds fields without notice);
- ``SomeEnum | str`` fields keep an unknown value as the plain string, never an exception;
- datetimes are timezone-aware (a stamp without an offset is UTC, as the API documents);
- tuples for sequences, so the frozen models stay hashable and immutable.

The answers a fan-out reads by the thousand (created queries, batch statuses) also have a
hand-written fast path, :func:`structure_async_query` and :func:`structure_query_statuses`,
which gives the converter's result or leaves the answer to the converter.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from halo_async import models
from halo_async.errors import DecodeError

T = TypeVar("T")

__all__ = [
    "camel",
    "converter",
    "parameter_value_to_wire",
    "structure",
    "structure_async_query",
    "structure_query_statuses",
    "unstructure_command",
]


def camel(name: str) -> str:
    """``status_timing`` -> ``statusTiming``."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _wire_name(field: attrs.Attribute[Any]) -> str:
    return str(field.metadata.get("wire", camel(field.name)))


def _structure_datetime(value: Any, _: type) -> dt.datetime:
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        # fromisoformat (3.11+) takes "Z", offsets and the 7-digit fractions .NET writes.
        parsed = dt.datetime.fromisoformat(value)
    else:
        raise TypeError(f"expected an ISO 8601 date-time string, got {value!r}")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _tolerant_enum(union: Any) -> type[enum.Enum] | None:
    """The enum of a ``SomeEnum | str`` (optionally ``| None``) annotation, else None."""
    if typing.get_origin(union) not in (typing.Union, types.UnionType):
        return None
    args = [arg for arg in typing.get_args(union) if arg is not type(None)]
    if len(args) == 2 and str in args:
        other = args[0] if args[1] is str else args[1]
        if isinstance(other, type) and issubclass(other, enum.Enum):
            return other
    return None


def _make_tolerant_enum_hook(union: Any) -> Callable[[Any, Any], Any]:
    enum_cls = _tolerant_enum(union)
    assert enum_cls is not None
    members = {member.value: member for member in enum_cls}

    def structure(value: Any, _: Any) -> Any:
        if value is None:
            return None
        return members.get(value, value if isinstance(value, str) else str(value))

    return structure


def parameter_value_to_wire(value: models.ParameterValue) -> str | None:
    """Halo takes parameter values as plain strings and converts them itself (REFERENCE §3)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        # Bit parameters: SQL Server reads "1"/"0"; "True" would fail the implicit conversion.
        return "1" if value else "0"
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return str(value)


def _structure_str(value: Any, _: type) -> str:
    # cattrs' default is str(value): a null id would become the id "None", and an object
    # its repr. The API's strings are strings; anything else is an answer out of shape.
    if isinstance(value, str):
        return value
    raise TypeError(f"expected a string, got {type(value).__name__} {value!r:.60}")


def _build_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=False)
    conv.register_structure_hook(str, _structure_str)
    conv.register_structure_hook(dt.datetime, _structure_datetime)
    conv.register_unstructure_hook(dt.datetime, lambda value: value.isoformat())
    conv.register_structure_hook_factory(
        lambda t: _tolerant_enum(t) is not None, _make_tolerant_enum_hook
    )

    def structure_factory(cls: type) -> Callable[[Any, Any], Any]:
        renames = {f.name: override(rename=_wire_name(f)) for f in attrs.fields(cls)}
        return make_dict_structure_fn(cls, conv, **renames)  # type: ignore[arg-type]

    def unstructure_factory(cls: type) -> Callable[[Any], Any]:
        renames = {
            # Unset optional fields stay off the wire; explicit defaults (executionMode
            # "reader", type "text") are sent, as the documented examples send them.
            f.name: override(rename=_wire_name(f), omit_if_default=f.default is None)
            for f in attrs.fields(cls)
        }
        return make_dict_unstructure_fn(cls, conv, **renames)  # type: ignore[arg-type]

    conv.register_structure_hook_factory(attrs.has, structure_factory)
    conv.register_unstructure_hook_factory(attrs.has, unstructure_factory)

    # getQuery's description says "results object" where the schema says "result":
    # accept either (REFERENCE §11 #11).
    query_hook = conv.get_structure_hook(models.AsyncQuery)

    def structure_async_query(value: Mapping[str, Any], _: Any) -> models.AsyncQuery:
        if "result" not in value and isinstance(value.get("results"), Mapping):
            value = {**value, "result": value["results"]}
        return query_hook(value, models.AsyncQuery)  # type: ignore[no-any-return]

    conv.register_structure_hook(models.AsyncQuery, structure_async_query)

    # A parameter value from the server (an output parameter) is the string it sent.
    conv.register_structure_hook(
        models.ParameterValue, lambda value, _: value if value is None else str(value)
    )
    parameter_hook = conv.get_unstructure_hook(models.Parameter)

    def unstructure_parameter(parameter: models.Parameter) -> dict[str, Any]:
        wire: dict[str, Any] = parameter_hook(parameter)
        if parameter.value is not None:
            wire["value"] = parameter_value_to_wire(parameter.value)
        return wire

    conv.register_unstructure_hook(models.Parameter, unstructure_parameter)
    return conv


converter = _build_converter()


def structure(value: Any, cls: type[T]) -> T:
    """Structure a decoded JSON value into a model (or a ``list[Model]``).

    A body that does not fit raises :class:`~halo_async.errors.DecodeError`, a
    :class:`~halo_async.errors.HaloError` like every other failure of a call, naming the
    fields at fault rather than surfacing cattrs' internals.
    """
    try:
        return converter.structure(value, cls)
    except (cattrs.BaseValidationError, ValueError, TypeError, KeyError, AttributeError) as exc:
        name = (
            str(cls).replace("halo_async.models.", "") if typing.get_origin(cls) else cls.__name__
        )
        problems = "; ".join(cattrs.transform_error(exc, path=f"<{name}>"))
        raise DecodeError(f"the answer does not fit {name}: {problems}") from exc


# -- the fast path of the answers a fan-out reads by the thousand -----------------------------
#
# A fan-out structures an AsyncQuery for every create and every status it reads, and cattrs'
# generated code (a hook call and a try block per field, detailed validation) cost ~20 us
# each: more than the client's side of the HTTP request around it. The functions below read
# the shape Halo sends, field by field, and give up (_Unusual) at the first value of any
# other type; the converter then structures or rejects the whole answer as it always did.
# tests/unit/test_convert_fast.py checks that both agree, on odd answers too.


class _Unusual(Exception):
    """A value the fast path does not read: the converter takes the whole answer."""


def _members(enum_cls: type[enum.Enum]) -> dict[str, Any]:
    return {member.value: member for member in enum_cls}


_QUERY_STATUSES = _members(models.QueryStatus)
_QUERY_MODES = _members(models.QueryMode)
_PAGE_STATUSES = _members(models.PageStatus)
_ERROR_TYPES = _members(models.ErrorType)
_BATCH_STATUSES = _members(models.BatchStatus)


def _opt_str(value: Any) -> str | None:
    if value is None or type(value) is str:
        return value
    raise _Unusual


_INT_OR_NONE = frozenset({int, type(None)})
_PAGE_LISTS = frozenset({list, tuple})  # the list sent, or () where "pages" is absent
_STR_OR_NONE = frozenset({str, type(None)})


def _opt_int(value: Any) -> int | None:
    # bool is not int here: the converter's int() makes True 1, and it decides such values.
    if value is None or type(value) is int:
        return value
    raise _Unusual


def _enum(members: dict[str, Any], value: Any) -> Any:
    """A tolerant enum: the member, the unknown string itself, or None (as the hook does)."""
    if type(value) is str:
        return members.get(value, value)
    if value is None:
        return None
    raise _Unusual


def _datetime(value: Any) -> dt.datetime:
    if type(value) is not str:
        raise _Unusual
    return _parsed_datetime(value)


@functools.lru_cache(maxsize=4096)
def _parsed_datetime(value: str) -> dt.datetime:
    # Cached: a query's answers repeat its times (created, each phase begun and ended) on
    # every poll, and a phase's end is often the next one's start.
    parsed = dt.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _dict(value: Any) -> dict[str, Any]:
    if type(value) is dict:
        return value
    raise _Unusual


def _phase(value: Any) -> models.StatusPhase:
    if type(value) is not dict:
        raise _Unusual
    start, end = value.get("startTime"), value.get("endTime")
    return models.StatusPhase(
        start_time=None if start is None else _datetime(start),
        end_time=None if end is None else _datetime(end),
    )


def _timing(value: Any) -> models.StatusTiming | None:
    # Five phases of two times each in every status answer: the absent ones cost no call.
    if value is None:
        return None
    get = _dict(value).get
    initialising, queued = get("initialising"), get("queued")
    executing, uploading, downloading = get("executing"), get("uploading"), get("downloading")
    return models.StatusTiming(
        None if initialising is None else _phase(initialising),
        None if queued is None else _phase(queued),
        None if executing is None else _phase(executing),
        None if uploading is None else _phase(uploading),
        None if downloading is None else _phase(downloading),
    )


def status_timing(value: Any) -> models.StatusTiming | None:
    """A ``statusTiming`` object as a StatusTiming: what a query's ``status_timing`` holds
    once read (see ``models._ParsedOnRead``)."""
    try:
        return _timing(value)
    except (_Unusual, KeyError, ValueError):
        return _structure_field(value, models.StatusTiming, "status_timing")


def query_metrics(value: Any) -> models.QueryMetrics | None:
    """A ``metrics`` object as QueryMetrics (as ``status_timing`` above)."""
    try:
        return _metrics(value)
    except (_Unusual, KeyError, ValueError):
        return _structure_field(value, models.QueryMetrics, "metrics")


def _structure_field(value: Any, cls: type[T], field: str) -> T:
    try:
        return converter.structure(value, cls)
    except (cattrs.BaseValidationError, ValueError, TypeError, KeyError, AttributeError) as exc:
        # What structuring the whole answer would have said (only async queries keep it).
        problems = "; ".join(cattrs.transform_error(exc, path=f"<AsyncQuery>.{field}"))
        raise DecodeError(f"the answer does not fit AsyncQuery: {problems}") from exc


def _row_range(value: Any) -> models.RowRange | None:
    if value is None:
        return None
    if type(value) is not dict:
        raise _Unusual
    count, start, end = map(value.get, _ROW_RANGE_KEYS)
    ok = _INT_OR_NONE
    if type(count) not in ok or type(start) not in ok or type(end) not in ok:
        raise _Unusual
    return _new_row_range(count, start, end)


_ROW_RANGE_KEYS = ("count", "rangeStart", "rangeEnd")


def _page(value: Any) -> models.Page:
    if type(value) is not dict:
        raise _Unusual
    number, size, rows = value["pageNumber"], value.get("size"), value.get("rows")
    if type(number) is not int or type(size) not in _INT_OR_NONE:
        raise _Unusual
    status = value.get("status", models.PageStatus.QUEUED)
    if type(status) is str:
        status = _PAGE_STATUSES.get(status, status)
    elif status is not models.PageStatus.QUEUED:  # null, or not a string
        raise _Unusual
    return _new_page(number, status, size, None if rows is None else _row_range(rows))


def _result(value: Any) -> models.AsyncResult:
    if type(value) is not dict:  # (None is not passed: the caller checks)
        raise _Unusual
    size, rows, affected = map(value.get, _RESULT_KEYS)
    pages = value.get("pages", ())
    ok = _INT_OR_NONE
    if (
        type(pages) not in _PAGE_LISTS
        or type(size) not in ok
        or type(rows) not in ok
        or type(affected) not in ok
    ):
        raise _Unusual
    # (One page, the usual: its tuple made directly, with no list or iterator on the way.)
    listed = (_page(pages[0]),) if len(pages) == 1 else tuple([_page(page) for page in pages])
    return _new_result(size, rows, affected, listed)


_RESULT_KEYS = ("size", "rows", "rowsAffected")


def _metrics(value: Any) -> models.QueryMetrics | None:
    if value is None:
        return None
    return models.QueryMetrics(
        sql_execution_duration=_opt_int(_dict(value).get("sqlExecutionDuration"))
    )


def _error_details(value: Any) -> models.ErrorDetails | None:
    if value is None:
        return None
    details = _dict(value)
    return models.ErrorDetails(
        error_type=_enum(_ERROR_TYPES, details.get("errorType")),
        error_code=_opt_int(details.get("errorCode")),
        error_message=_opt_str(details.get("errorMessage")),
    )


def slot_filler(cls: type[T], names: tuple[str, ...]) -> Callable[..., T]:
    """A constructor of the frozen attrs class ``cls`` taking its fields positionally, in
    the order ``names`` gives (checked here, once: a field added or moved fails at import,
    not as a value in the wrong field); or ``cls`` itself where its ``__init__`` does more
    than fill the slots (a converter, a validator, a hook).

    For the models made for every answer of a fan-out. attrs' frozen ``__init__`` sets each
    field through ``object.__setattr__``, a call that makes an argument tuple (~1,000 CPU
    instructions a field: 19,000 for an AsyncQuery, twice per query). Here the instance is
    made as one of a subclass that adds nothing but plain attribute setting (a slot's own
    store, ~20 instructions), filled, and then made the class's own by assigning its
    ``__class__`` (the same layout: the subclass has no slots of its own): 2,800
    instructions in all. The same instance either way (the tests compare them); generated
    once, as attrs generates its own ``__init__``.
    """
    fields = attrs.fields(typing.cast(Any, cls))
    if tuple(field.name for field in fields) != names:
        raise RuntimeError(f"{cls.__qualname__}'s fields are not {names}")
    plain = not any(
        field.validator or field.converter or field.on_setattr for field in fields
    ) and not any(hasattr(cls, hook) for hook in ("__attrs_pre_init__", "__attrs_post_init__"))
    if not plain or {"self", "new", "filling", "cls"} & set(names):
        return cls
    # Both of the attribute hooks, or CPython keeps calling the Python-level one.
    members: dict[str, Any] = {
        "__slots__": (),
        "__setattr__": object.__setattr__,
        "__delattr__": object.__delattr__,
    }
    for name in names:
        slot = inspect.getattr_static(cls, name)
        if hasattr(slot, "_slot"):  # a _ParsedOnRead: attrs' own slot under it, directly
            members[name] = slot._slot
    filling = type(f"_Filling{cls.__name__}", (cls,), members)
    body = "".join(f"    self.{name} = {name}\n" for name in names)
    source = (
        f"def fill({', '.join(names)}):\n    self = new(filling)\n{body}"
        "    self.__class__ = cls\n    return self\n"
    )
    namespace: dict[str, Any] = {"new": object.__new__, "filling": filling, "cls": cls}
    exec(compile(source, f"<slot filler of {cls.__qualname__}>", "exec"), namespace)
    filler: Callable[..., T] = namespace["fill"]
    return filler


_new_async_query = slot_filler(
    models.AsyncQuery,
    ("id", "site_id", "status", "mode", "integrator_id", "max_time_in_queue", "command_size",
     "request_size", "created_at", "updated_at", "completed_at", "status_timing", "metrics",
     "error_details", "error_code", "error_message", "result", "result_size"),
)  # fmt: skip
_new_page = slot_filler(models.Page, ("page_number", "status", "size", "rows"))
_new_result = slot_filler(models.AsyncResult, ("size", "rows", "rows_affected", "pages"))
_new_row_range = slot_filler(models.RowRange, ("count", "range_start", "range_end"))
_new_status_result = slot_filler(models.QueryStatusResult, ("query_id", "status", "query"))


def _async_query(value: Any) -> models.AsyncQuery:
    if type(value) is not dict:
        raise _Unusual
    query_id, site_id, status, mode = value["id"], value["siteId"], value["status"], value["mode"]
    # The optional fields in one go, at C speed: a map of the dict's get, unpacked.
    (
        integrator, in_queue, command_size, request_size, created, updated, completed,
        timing, metrics, details, error_code, message, result, result_size,
    ) = map(value.get, _ASYNC_QUERY_KEYS)  # fmt: skip
    text, number = _STR_OR_NONE, _INT_OR_NONE
    if (
        type(query_id) is not str
        or type(site_id) is not str
        or type(integrator) not in text
        or type(message) not in text
        or type(in_queue) not in number
        or type(command_size) not in number
        or type(request_size) not in number
        or type(error_code) not in number
        or type(result_size) not in number
        or type(created) not in text
        or type(updated) not in text
        or type(completed) not in text
        or type(timing) not in _DICT_OR_NONE  # statusTiming and metrics: kept as sent, for
        or type(metrics) not in _DICT_OR_NONE  # the model to parse if read (_ParsedOnRead)
    ):
        raise _Unusual
    if result is None and "result" not in value:
        aliased = value.get("results")  # the alias the converter's hook accepts as well
        if aliased is not None and isinstance(aliased, Mapping):  # (an ABC check: not for None)
            result = aliased
    return _new_async_query(
        query_id,
        site_id,
        _QUERY_STATUSES.get(status, status)
        if type(status) is str
        else _enum(_QUERY_STATUSES, status),
        _QUERY_MODES.get(mode, mode) if type(mode) is str else _enum(_QUERY_MODES, mode),
        integrator,
        in_queue,
        command_size,
        request_size,
        None if created is None else _parsed_datetime(created),
        None if updated is None else _parsed_datetime(updated),
        None if completed is None else _parsed_datetime(completed),
        timing,
        metrics,
        None if details is None else _error_details(details),
        error_code,
        message,
        None if result is None else _result(result),
        result_size,
    )


_ASYNC_QUERY_KEYS = (
    "integratorId", "maxTimeInQueue", "commandSize", "requestSize", "createdAt", "updatedAt",
    "completedAt", "statusTiming", "metrics", "errorDetails", "errorCode", "errorMessage",
    "result", "resultSize",
)  # fmt: skip
_DICT_OR_NONE = frozenset({dict, type(None)})


def _status_result(value: Any) -> models.QueryStatusResult:
    if type(value) is not dict:
        raise _Unusual
    query_id, status, query = value["queryId"], value["status"], value.get("query")
    if type(query_id) is not str:
        raise _Unusual
    return _new_status_result(
        query_id,
        _BATCH_STATUSES.get(status, status)
        if type(status) is str
        else _enum(_BATCH_STATUSES, status),
        None if query is None else _async_query(query),
    )


def structure_async_query(value: Any) -> models.AsyncQuery:
    """``structure(value, AsyncQuery)``, without the converter for the usual answer."""
    try:
        return _async_query(value)
    except (_Unusual, KeyError, ValueError):
        return structure(value, models.AsyncQuery)


def structure_query_statuses(value: Any) -> list[models.QueryStatusResult]:
    """``structure(value, list[QueryStatusResult])`` (a batch status answer's ``results``),
    without the converter for the usual answer."""
    try:
        if type(value) is not list:
            raise _Unusual
        return [_status_result(item) for item in value]
    except (_Unusual, KeyError, ValueError):
        return structure(value, list[models.QueryStatusResult])


def unstructure_command(command: models.Command) -> dict[str, Any]:
    """The ``command`` object as the API takes it: camelCase, unset fields left out."""
    # Enum members unstructure to themselves; JSON wants their values.
    body: dict[str, Any] = _plain(converter.unstructure(command))
    return body


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items() if item is not None}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
