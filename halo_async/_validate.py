"""Argument checks and request-body building, shared by the client and the fan-out.

Every check runs before anything is sent, and every error names the bad value and what
was expected.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
import re
import reprlib
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, TypedDict
from urllib.parse import urlsplit

from halo_async import _constants as C
from halo_async import _convert, models
from halo_async.errors import ConfigurationError, ValidationError

SqlOrCommand = str | models.Command
Parameters = Sequence[models.Parameter] | Mapping[str, models.Parameter | models.ParameterValue]


class QueryOptions(TypedDict, total=False):
    """The keyword arguments of every query-creating call, written once.

    ``parameters`` (``Parameter`` s, or a ``{name: value}`` map), ``execution_mode`` (reader,
    nonQuery, scalar), ``command_type`` (text, storedProcedure) and the catalogue (database)
    to run in; none of these may accompany a :class:`~halo_async.models.Command`, which
    carries its own. ``max_time_in_queue`` is in milliseconds: 0..60000 for immediate
    queries (default 30000), 0..7200000 for async ones (default 3600000).
    """

    parameters: Parameters | None
    execution_mode: models.ExecutionMode | str | None
    command_type: models.CommandType | str | None
    catalogue: str | None
    max_time_in_queue: int | None


_QUERY_OPTIONS = frozenset(QueryOptions.__optional_keys__)

_PMS_NAME_ALIASES = {
    "best practice": "Best Practice",
    "bestpractice": "Best Practice",
    "bp": "Best Practice",
    "zedmed": "Zedmed",
    "d4w": "D4w",
}


def check_base_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"base_url must be an http(s) URL such as {C.PRODUCTION_BASE_URL!r}, got {url!r}"
        )
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigurationError(
            f"refusing plain http:// for {parts.hostname!r}: the API key would travel "
            "unencrypted. Use https://, or a loopback host (127.0.0.1, localhost) for the emulator."
        )


def _is_loopback(host: str) -> bool:
    if host in C.LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def uuid_str(field: str, value: str | uuid.UUID) -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    what = "a site's Halo GUID" if field == "site_id" else "a query id"
    raise ValidationError(
        f"{field} must be a UUID ({what}, e.g. '3f91c577-20a8-467b-8991-b96dfb90e8c6'), "
        f"got {value!r}",
        field=field,
        value=value,
    )


def site_ids(values: Any) -> list[str]:
    """A fan-out's sites: a sequence of Halo GUIDs (not one GUID's characters)."""
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise ValidationError(
            f"site_ids must be a sequence of Halo GUIDs, got {values!r}",
            field="site_ids",
            value=values,
        )
    # Each distinct id is checked once: a fan-out lists a site once per query it runs there.
    checked: dict[str | uuid.UUID, str] = {}
    ids = []
    for site in values:
        if not isinstance(site, str | uuid.UUID):
            uuid_str("site_ids[]", site)  # raises, naming the value
        known = checked.get(site)
        if known is None:
            known = checked[site] = uuid_str("site_ids[]", site)
        ids.append(known)
    return ids


def site_and_query(site_id: str | uuid.UUID, query_id: str | uuid.UUID) -> tuple[str, str]:
    """Both ids of a query-level path, checked."""
    return uuid_str("site_id", site_id), uuid_str("query_id", query_id)


def seconds(field: str, value: Any, *, allow_zero: bool = False) -> float:
    """A duration in seconds: a real number, not NaN, > 0 (or >= 0 with ``allow_zero``)."""
    real = isinstance(value, int | float) and not isinstance(value, bool)
    if real and not math.isnan(value) and (value > 0 or (allow_zero and value == 0)):
        return float(value)
    bound = ">= 0" if allow_zero else "> 0"
    raise ValidationError(
        f"{field} must be a number of seconds {bound}, got {value!r}", field=field, value=value
    )


def instance_or_none(field: str, value: Any, cls: type[Any]) -> None:
    """``value`` is None or a ``cls`` (a PollPolicy, FanOutLimits...), or the error says so."""
    if value is not None and not isinstance(value, cls):
        raise ValidationError(
            f"{field} must be a {cls.__name__} (or None for the default), got {value!r}",
            field=field,
            value=value,
        )


def api_key(value: Any) -> str:
    """The API key, fit to travel in a header (a CR or LF would inject another one)."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(
            f"the API key must be a non-empty string, got {type(value).__name__}"
        )
    if "\r" in value or "\n" in value or value != value.strip():
        # The key itself is never quoted: not even a bad one goes into a message.
        raise ConfigurationError(
            "the API key has a line break or surrounding white space: copy it again from the "
            "Halo Integrator Portal"
        )
    return value


def int_in_range(field: str, value: Any, low: int, high: int | None, unit: str) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool)
    if ok and value >= low and (high is None or value <= high):
        return int(value)
    bound = f"{low}..{high}" if high is not None else f">= {low}"
    raise ValidationError(
        f"{field} must be an integer {bound} ({unit}), got {value!r}", field=field, value=value
    )


def time_in_queue(value: int | None, maximum: int, mode: str) -> int | None:
    if value is None:
        return None
    int_in_range("max_time_in_queue", value, 0, maximum, f"milliseconds, for {mode} queries")
    return value


def _check_enum(field: str, value: Any, enum_cls: type[Any]) -> Any:
    allowed = [member.value for member in enum_cls]
    if value in allowed:
        return enum_cls(value)
    raise ValidationError(
        f"{field} must be one of {allowed}, got {value!r}", field=field, value=value
    )


def command_from(
    command: SqlOrCommand,
    parameters: Parameters | None,
    execution_mode: models.ExecutionMode | str | None,
    command_type: models.CommandType | str | None,
) -> models.Command:
    if isinstance(command, models.Command):
        if parameters is not None or execution_mode is not None or command_type is not None:
            raise ValidationError(
                "pass parameters/execution_mode/command_type inside the Command, not beside it",
                field="command",
                value=command,
            )
        text = command.text
        execution_mode, command_type = command.execution_mode, command.type
        params: tuple[models.Parameter, ...] = command.parameters
    elif isinstance(command, str):
        text = command
        if isinstance(parameters, Mapping):
            params = tuple(models.parameters_from_mapping(parameters))
        else:
            params = tuple(parameters or ())
    else:
        raise ValidationError(
            f"command must be SQL text or a Command, got {type(command).__name__}",
            field="command",
            value=command,
        )
    if not text.strip():
        raise ValidationError(
            f"the command's SQL text is empty, got {text!r}", field="command", value=text
        )
    for param in params:
        _check_parameter(param)
    return models.Command(
        text=text,
        # Only None means "the default": an empty string is a mistake to report, not to
        # turn silently into "reader"/"text".
        execution_mode=_check_enum(
            "execution_mode",
            models.ExecutionMode.READER if execution_mode is None else execution_mode,
            models.ExecutionMode,
        ),
        type=_check_enum(
            "command_type",
            models.CommandType.TEXT if command_type is None else command_type,
            models.CommandType,
        ),
        parameters=params,
    )


# A T-SQL / Firebird parameter name: @ and an identifier (the @ is optional).
_PARAMETER_NAME = re.compile(r"@?[A-Za-z_][A-Za-z0-9_]*")
# What a value can be and still travel as the plain string Halo converts.
_SENDABLE = (str, int, float, Decimal, dt.date, dt.datetime, dt.time)


def _check_parameter(param: Any) -> None:
    if not isinstance(param, models.Parameter):
        raise ValidationError(
            f"parameters must be Parameter objects (or a name -> value mapping), got {param!r}",
            field="parameters",
            value=param,
        )
    if not isinstance(param.name, str) or not _PARAMETER_NAME.fullmatch(param.name):
        raise ValidationError(
            f"parameter name {param.name!r} is not @ and an identifier (e.g. '@surname')",
            field="parameters[].name",
            value=param.name,
        )
    _check_value(param)
    if param.type is not None and param.type not in C.PARAMETER_TYPES:
        raise ValidationError(
            f"parameter {param.name!r}: type {param.type!r} is not one of the API's "
            f"parameter types ({', '.join(sorted(C.PARAMETER_TYPES))})",
            field="parameters[].type",
            value=param.type,
        )
    if param.direction is not None:
        _check_enum(f"parameter {param.name!r} direction", param.direction, models.Direction)


def _check_value(param: models.Parameter) -> None:
    value = param.value
    if value is None:
        return
    if not isinstance(value, _SENDABLE):
        # bytes, lists, dicts, objects: str() of them is not what the caller meant to send.
        raise ValidationError(
            f"parameter {param.name}: {reprlib.repr(value)} ({type(value).__name__}) cannot be "
            "sent; pass a str, int, float, Decimal, date, datetime, time or bool",
            field="parameters[].value",
            value=value,
        )
    if isinstance(value, float | Decimal) and not math.isfinite(value):
        raise ValidationError(
            f"parameter {param.name}: {value!r} has no SQL value; pass a finite number or None",
            field="parameters[].value",
            value=value,
        )


def check_options(options: Mapping[str, Any]) -> None:
    """Refuse a keyword that is not a query option: ``**options`` would accept any typo."""
    unknown = sorted(set(options) - _QUERY_OPTIONS)
    if unknown:
        raise TypeError(
            f"unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
            f"the query options are {', '.join(sorted(_QUERY_OPTIONS))}"
        )


def command_of(command: SqlOrCommand, options: QueryOptions) -> models.Command:
    """The command with its options' parameters, mode and type, checked."""
    check_options(options)
    return command_from(
        command,
        options.get("parameters"),
        options.get("execution_mode"),
        options.get("command_type"),
    )


def query_body(
    command: SqlOrCommand, options: QueryOptions, *, max_queue_ms: int, mode: str
) -> dict[str, Any]:
    """The body of a query-creating POST, every argument checked before it is sent."""
    body: dict[str, Any] = {"command": _convert.unstructure_command(command_of(command, options))}
    queue_ms = time_in_queue(options.get("max_time_in_queue"), max_queue_ms, mode)
    if queue_ms is not None:
        body["maxTimeInQueue"] = queue_ms
    catalogue = options.get("catalogue")
    if catalogue is not None:
        body["catalogue"] = non_blank("catalogue", catalogue, "a catalogue name such as 'Patients'")
    return body


def non_blank(field: str, value: Any, what: str) -> str:
    """``value`` if it is a string with something in it; else the error naming ``what``."""
    if isinstance(value, str) and value.strip():
        return value
    raise ValidationError(f"{field} must be {what}, got {value!r}", field=field, value=value)


def pms_name(value: str) -> str:
    if isinstance(value, str):
        canonical = _PMS_NAME_ALIASES.get(value.strip().lower())
        if canonical is not None:
            return canonical
    raise ValidationError(
        f"pms_name must be one of {list(C.PMS_NAMES)}, got {value!r}", field="pms_name", value=value
    )


def pms_site_id(value: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(
            "pms_site_id must be the practice's PMS site id (Bp Site ID, Zedmed Database ID), "
            f"got {value!r}",
            field="pms_site_id",
            value=value,
        )
    return value.strip()
