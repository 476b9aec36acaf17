"""Validation of request bodies and parameters, with the messages a caller needs to fix them.

Everything the OAS types is checked here, so that a malformed request is a 400 and never
reaches the state machine (and never becomes a 500).
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from halo_async.emulator._errors import ApiError

__all__ = [
    "CommandRequest",
    "RegisteredRequest",
    "parse_batch_ids",
    "parse_command_request",
    "parse_json",
    "parse_page_number",
    "parse_registered_request",
    "parse_uuid",
]

IMMEDIATE_MAX_TIME_IN_QUEUE = (0, 60_000, 30_000)
ASYNC_MAX_TIME_IN_QUEUE = (0, 7_200_000, 3_600_000)
MIN_FREQUENCY = 60
MAX_DURATION = 86_400
# The batch size limit is unpublished (REFERENCE §12); this one keeps a request bounded.
MAX_BATCH_IDS = 1000

EXECUTION_MODES = ("reader", "nonQuery", "scalar")
COMMAND_TYPES = ("text", "storedProcedure")
DIRECTIONS = ("output", "input", "inputOutput", "returnValue")
PARAMETER_TYPES = (
    "BigInt", "Binary", "Bit", "Char", "String", "Date", "DateTime", "DateTime2",
    "DateTimeOffset", "Decimal", "Float", "Image", "Int", "Money", "NChar", "NText", "NVarChar",
    "Real", "SmallDateTime", "SmallInt", "SmallMoney", "Structured", "Text", "Time", "Timestamp",
    "TinyInt", "Udt", "UniqueIdentifier", "VarBinary", "VarChar", "Variant", "Xml",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class CommandRequest:
    """A validated immediate or async query request."""

    text: str
    execution_mode: str
    command_type: str
    parameters: list[dict[str, Any]]
    catalogue: str | None
    max_time_in_queue: int
    command_size: int
    request_size: int


@dataclasses.dataclass(frozen=True)
class RegisteredRequest:
    """A validated registered query request."""

    name: str
    frequency: int
    duration: int
    text: str
    execution_mode: str
    command_type: str
    parameters: list[dict[str, Any]]
    request_size: int


def bad_request(message: str) -> ApiError:
    """A 400 with ``message`` in envelope A."""
    return ApiError(400, message)


def parse_json(raw: bytes) -> Any:
    """The JSON body, or 400 when it is absent or not JSON."""
    if not raw.strip():
        raise bad_request("Request body is required.")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"Request body is not valid JSON: {exc.msg}.") from None


def parse_uuid(value: str) -> str | None:
    """The canonical lowercase form of a UUID string, or None when it is not one."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        return None


def parse_page_number(value: str) -> int:
    """A page number from the path: an integer >= 1, else 400."""
    try:
        number = int(value, 10)
    except ValueError:
        raise bad_request(f"Page number must be an integer, got {value!r}.") from None
    if number < 1:
        raise bad_request(f"Page number must be 1 or greater, got {number}.")
    return number


def _is_integer(value: Any) -> bool:
    # JSON Schema counts 2.0 as an integer; bool is an int subclass in Python but not in JSON.
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value) and value.is_integer()


def _require_object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise bad_request(f"{what} must be a JSON object.")
    return value


def _optional_enum(obj: Mapping[str, Any], key: str, allowed: tuple[str, ...], default: str) -> str:
    value = obj.get(key, default)
    if value not in allowed:
        raise bad_request(f"'{key}' must be one of {', '.join(allowed)}; got {value!r}.")
    return str(value)


def _parse_parameter(raw: Any, index: int) -> dict[str, Any]:
    param = _require_object(raw, f"command.parameters[{index}]")
    where = f"command.parameters[{index}]"
    if "name" in param and not isinstance(param["name"], str):
        raise bad_request(f"{where}.name must be a string.")
    if "direction" in param and param["direction"] not in DIRECTIONS:
        raise bad_request(f"{where}.direction must be one of {', '.join(DIRECTIONS)}.")
    if "type" in param and param["type"] not in PARAMETER_TYPES:
        raise bad_request(f"{where}.type {param['type']!r} is not a supported parameter type.")
    if "value" in param and param["value"] is not None and not isinstance(param["value"], str):
        raise bad_request(f"{where}.value must be a string or null.")
    if "size" in param and not _is_integer(param["size"]):
        raise bad_request(f"{where}.size must be an integer.")
    parsed = {key: param[key] for key in ("name", "direction", "type", "value") if key in param}
    if "size" in param:
        parsed["size"] = int(param["size"])
    return parsed


def _parse_command(raw: Any, where: str) -> tuple[str, str, str, list[dict[str, Any]]]:
    if raw is None:
        raise bad_request(f"Required property '{where}' is missing.")
    command = _require_object(raw, f"'{where}'")
    text = command.get("text")
    if text is None:
        raise bad_request(f"Required property '{where}.text' is missing.")
    if not isinstance(text, str):
        raise bad_request(f"'{where}.text' must be a string.")
    if not text.strip():
        raise bad_request(f"'{where}.text' must not be empty.")
    execution_mode = _optional_enum(command, "executionMode", EXECUTION_MODES, "reader")
    command_type = _optional_enum(command, "type", COMMAND_TYPES, "text")
    raw_params = command.get("parameters", [])
    if not isinstance(raw_params, list):
        raise bad_request(f"'{where}.parameters' must be an array.")
    parameters = [_parse_parameter(p, i) for i, p in enumerate(raw_params)]
    return text, execution_mode, command_type, parameters


def parse_command_request(raw: bytes, *, immediate: bool) -> CommandRequest:
    """Validate an ImmediateCommand or AsyncCommand body."""
    body = _require_object(parse_json(raw), "Request body")
    text, execution_mode, command_type, parameters = _parse_command(body.get("command"), "command")
    low, high, default = IMMEDIATE_MAX_TIME_IN_QUEUE if immediate else ASYNC_MAX_TIME_IN_QUEUE
    # Absent means the default; an explicit null is as wrong as any other non-integer.
    max_time = body.get("maxTimeInQueue", default)
    if not _is_integer(max_time):
        raise bad_request("'maxTimeInQueue' must be an integer number of milliseconds.")
    if not low <= max_time <= high:
        raise bad_request(f"'maxTimeInQueue' must be between {low} and {high} milliseconds.")
    catalogue = body.get("catalogue")
    if "catalogue" in body and not isinstance(catalogue, str):
        raise bad_request("'catalogue' must be a string.")
    return CommandRequest(
        text=text,
        execution_mode=execution_mode,
        command_type=command_type,
        parameters=parameters,
        catalogue=catalogue,
        max_time_in_queue=int(max_time),
        command_size=len(orjson.dumps(body["command"])),
        request_size=len(raw),
    )


def parse_registered_request(raw: bytes) -> RegisteredRequest:
    """Validate a RegisteredQueryPostReq body (every field is required)."""
    body = _require_object(parse_json(raw), "Request body")
    for key in ("name", "registeredQueryType", "frequency", "duration", "registerCommand"):
        if key not in body:
            raise bad_request(f"Required property '{key}' is missing.")
    if not isinstance(body["name"], str):
        raise bad_request("'name' must be a string.")
    if body["registeredQueryType"] != "query":
        raise bad_request("'registeredQueryType' must be 'query'.")
    frequency, duration = body["frequency"], body["duration"]
    if not _is_integer(frequency) or frequency < MIN_FREQUENCY:
        raise bad_request(f"'frequency' must be an integer of at least {MIN_FREQUENCY} seconds.")
    if not _is_integer(duration) or not 0 < duration <= MAX_DURATION:
        raise bad_request(f"'duration' must be an integer between 1 and {MAX_DURATION} seconds.")
    register = _require_object(body["registerCommand"], "'registerCommand'")
    text, execution_mode, command_type, parameters = _parse_command(
        register.get("command"), "registerCommand.command"
    )
    return RegisteredRequest(
        name=body["name"],
        frequency=int(frequency),
        duration=int(duration),
        text=text,
        execution_mode=execution_mode,
        command_type=command_type,
        parameters=parameters,
        request_size=len(raw),
    )


def parse_batch_ids(raw: bytes) -> list[str]:
    """The ``queryIds`` of a batch status request, each a UUID, in request order."""
    body = _require_object(parse_json(raw), "Request body")
    ids = body.get("queryIds")
    if ids is None:
        raise bad_request("Required property 'queryIds' is missing.")
    if not isinstance(ids, list):
        raise bad_request("'queryIds' must be an array of query ids.")
    if len(ids) > MAX_BATCH_IDS:
        raise bad_request(f"'queryIds' may hold at most {MAX_BATCH_IDS} ids.")
    parsed: list[str] = []
    for index, value in enumerate(ids):
        canonical = parse_uuid(value) if isinstance(value, str) else None
        if canonical is None:
            raise bad_request(f"'queryIds[{index}]' must be a UUID.")
        parsed.append(canonical)
    return parsed
