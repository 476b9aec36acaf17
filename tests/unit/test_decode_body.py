"""Result page bodies: the envelope read in place, both base64 backends, sliced parsing, and
decoding off the event loop. Every shortcut must give what a plain full parse gives."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest

from halo_async import _constants as C
from halo_async import _decode, errors

ROWS = [
    {"InternalID": 101, "FIRSTNAME": "JANE", "SURNAME": "CITIZEN", "NOTE": None},
    # Text whose base64 holds both "/" and "+", the characters a JSON writer may escape.
    {"InternalID": 102, "FIRSTNAME": "JOHN", "SURNAME": "SMITH", "NOTE": "??????>>>>>>"},
]
PARAMETERS = [{"name": "@n", "type": "Int", "value": "2", "direction": "output"}]


def b64(value: Any) -> str:
    return base64.b64encode(orjson.dumps(value)).decode()


def plain(body: bytes) -> _decode.DecodedBody:
    """What the body means, by the obvious route: parse it all, then decode ``data``."""
    envelope = orjson.loads(body)
    data = envelope.get("data")
    rows = orjson.loads(base64.b64decode(data)) if data is not None else []
    return _decode.DecodedBody(rows, envelope.get("parameters"))


@pytest.fixture(params=["pybase64", "stdlib"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test once with pybase64 and once with the standard library's decoder."""
    if request.param == "stdlib":
        monkeypatch.setattr(_decode, "_fast_b64decode", None)
    else:
        assert _decode._fast_b64decode is not None, "pybase64 is a dependency: installed"
    return str(request.param)


# -- the envelope, read in place --------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(orjson.dumps({"data": b64(ROWS), "parameters": PARAMETERS}), id="compact"),
        pytest.param(
            b'{\n  "data" : "' + b64(ROWS).encode() + b'",\n  "parameters": []\n}',
            id="pretty-printed",
        ),
        pytest.param(
            orjson.dumps({"parameters": PARAMETERS, "data": b64(ROWS)}), id="parameters-first"
        ),
        pytest.param(
            orjson.dumps({"parameters": [{"name": "data", "value": "data"}], "data": b64(ROWS)}),
            id="a-parameter-named-data",
        ),
        pytest.param(
            orjson.dumps({"parameters": [{"data": b64([{"WRONG": 1}])}], "data": b64(ROWS)}),
            id="a-nested-data-key-first",
        ),
        pytest.param(
            b'{"data":"' + b64([{"OLD": 1}]).encode() + b'","data":"' + b64(ROWS).encode() + b'"}',
            id="a-repeated-key-the-last-wins",
        ),
        pytest.param(
            b'{"data":"' + b64(ROWS).replace("/", "\\/").encode() + b'","parameters":[]}',
            id="escaped-slashes",
        ),
        pytest.param(
            b'{"data":"' + b64(ROWS).replace("+", "\\u002B").encode() + b'","parameters":[]}',
            id="escaped-plus-as-dotnet-writes-it",
        ),
        pytest.param(orjson.dumps({"data": None, "parameters": PARAMETERS}), id="null-data"),
        pytest.param(orjson.dumps({"parameters": []}), id="no-data"),
        pytest.param(orjson.dumps({"data": b64([]), "parameters": []}), id="no-rows"),
    ],
)
@pytest.mark.parametrize("locate_from", [0, _decode._LOCATE_MIN_BYTES], ids=["located", "small"])
def test_the_body_decodes_as_a_full_parse_would(
    body: bytes, backend: str, locate_from: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # These bodies are small: located=0 makes them take the in-place path of large ones.
    monkeypatch.setattr(_decode, "_LOCATE_MIN_BYTES", locate_from)
    assert _decode.decode_body(body) == plain(body)
    assert _decode.decode_body(body, sliced=True) == plain(body)


def test_the_rows_base64_holds_the_characters_json_writers_escape() -> None:
    assert "/" in b64(ROWS)
    assert "+" in b64(ROWS)


def test_the_data_is_read_in_place_when_the_body_has_the_usual_shape() -> None:
    body = orjson.dumps({"data": b64(ROWS), "parameters": PARAMETERS})

    located = _decode._locate_data(body)

    assert located is not None
    data, parameters = located
    assert bytes(data) == b64(ROWS).encode()
    assert parameters == PARAMETERS


@pytest.mark.parametrize(
    "body",
    [
        b'{"data":"' + b64(ROWS).replace("/", "\\/").encode() + b'"}',
        orjson.dumps({"parameters": [{"data": "eA=="}], "data": b64(ROWS)}),
        b'{"data":"abc"',
        orjson.dumps([{"data": b64(ROWS)}]),
    ],
    ids=["escaped", "nested-key-first", "truncated", "not-an-object"],
)
def test_a_body_of_another_shape_is_left_to_the_full_parse(body: bytes) -> None:
    assert _decode._locate_data(body) is None


def test_base64_with_line_breaks_decodes_with_either_backend(backend: str) -> None:
    wrapped = base64.encodebytes(orjson.dumps(ROWS)).decode()  # a line break every 76 chars
    body = orjson.dumps({"data": wrapped, "parameters": []})

    assert "\n" in wrapped
    assert _decode.decode_body(body).rows == ROWS
    assert _decode.decode_rows(wrapped) == ROWS


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "body is empty"),
        (b"<html>Bad gateway</html>", "not JSON"),
        (orjson.dumps([1, 2]), "expected a JSON object, got list"),
        (orjson.dumps({"data": 12}), "must be a base64 string, got int"),
        (orjson.dumps({"data": "!!!not base64!!!"}), "not valid base64"),
        (orjson.dumps({"data": "e2lk..."}), "not valid JSON"),
        (orjson.dumps({"data": b64([1, 2])}), "must be JSON objects"),
        (orjson.dumps({"data": b64("text")}), "not rows"),
    ],
)
def test_a_bad_body_raises_decode_error_naming_what_is_wrong(
    body: bytes, reason: str, backend: str
) -> None:
    with pytest.raises(errors.DecodeError, match=reason):
        _decode.decode_body(body)


@pytest.mark.parametrize(
    ("body", "rows", "parameters"),
    [
        (orjson.dumps(b64(ROWS)), ROWS, None),
        (orjson.dumps(ROWS), ROWS, None),
        (orjson.dumps(ROWS[0]), ROWS[:1], None),
        (orjson.dumps({"data": b64(ROWS), "parameters": []}), ROWS, []),
    ],
    ids=["json-string-of-base64", "bare-rows", "one-bare-row", "envelope"],
)
def test_any_shape_reads_what_the_stream_endpoint_may_send(
    body: bytes, rows: list[dict[str, Any]], parameters: Any
) -> None:
    assert _decode.decode_body(body, any_shape=True) == _decode.DecodedBody(rows, parameters)


def test_without_pybase64_installed_the_standard_library_decodes() -> None:
    # A fresh interpreter in which `import pybase64` fails, as on a platform without wheels.
    script = (
        "import sys; sys.modules['pybase64'] = None\n"
        "import base64, orjson\n"
        "from halo_async import _decode\n"
        "assert _decode._fast_b64decode is None\n"
        "body = orjson.dumps({'data': base64.b64encode(b'[{\"N\":1}]').decode()})\n"
        "print(_decode.decode_body(body).rows)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[{'N': 1}]"


# -- rows parsed in slices ---------------------------------------------------------------------


@pytest.fixture
def small_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(C, "DECODE_SLICE_BYTES", 64)


def _many_rows(count: int) -> list[dict[str, Any]]:
    return [{"ID": i, "NAME": f"patient {i}", "FLAG": i % 2 == 0} for i in range(count)]


@pytest.mark.usefixtures("small_slices")
@pytest.mark.parametrize(
    "rows",
    [
        pytest.param(_many_rows(200), id="plain"),
        pytest.param(
            [{"ID": i, "TEXT": "ends like a row boundary },{"} for i in range(50)],
            id="strings-ending-in-a-boundary",
        ),
        pytest.param(
            [
                {"ID": i, "JSON": '{"a":1},{"b":2}', "NEST": {"x": [{"y": 1}, {"z": 2}]}}
                for i in range(50)
            ],
            id="embedded-json-and-nested-values",
        ),
        pytest.param([{"ID": 1}], id="one-row"),
        pytest.param([], id="no-rows"),
    ],
)
def test_sliced_parsing_gives_the_rows_one_parse_gives(rows: list[dict[str, Any]]) -> None:
    raw = orjson.dumps(rows)

    assert _decode._loads_sliced(raw) == orjson.loads(raw)


@pytest.mark.usefixtures("small_slices")
def test_sliced_parsing_of_invalid_json_raises_decode_error() -> None:
    raw = orjson.dumps(_many_rows(50))[:-10]

    with pytest.raises(errors.DecodeError, match="not valid JSON"):
        _decode._loads_sliced(raw)


@pytest.mark.usefixtures("small_slices")
def test_sliced_parsing_of_json_that_is_not_an_array_parses_it_whole() -> None:
    raw = orjson.dumps({"ID": 1, "PADDING": "x" * 200})

    assert _decode._loads_sliced(raw) == orjson.loads(raw)


# -- off the event loop --------------------------------------------------------------------


@pytest.fixture
def off_loop(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every body goes off the loop; returns the names of the threads that decoded."""
    monkeypatch.setattr(C, "DECODE_OFF_LOOP_MIN_BYTES", 0)
    threads: list[str] = []
    decode_body = _decode.decode_body

    def recording(*args: Any, **kwargs: Any) -> _decode.DecodedBody:
        threads.append(threading.current_thread().name)
        return decode_body(*args, **kwargs)

    monkeypatch.setattr(_decode, "decode_body", recording)
    return threads


async def test_a_large_body_is_decoded_in_the_decoding_thread(off_loop: list[str]) -> None:
    body = orjson.dumps({"data": b64(ROWS), "parameters": PARAMETERS})

    decoded = await _decode.decode_result_body(body)

    assert decoded == _decode.DecodedBody(ROWS, PARAMETERS)
    assert len(off_loop) == 1
    assert off_loop[0].startswith("halo-async-decode")


async def test_a_small_body_is_decoded_on_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(C, "DECODE_OFF_LOOP_MIN_BYTES", 1 << 30)
    loop_thread = threading.current_thread().name
    seen: list[str] = []
    decode_body = _decode.decode_body

    def recording(*args: Any, **kwargs: Any) -> _decode.DecodedBody:
        seen.append(threading.current_thread().name)
        return decode_body(*args, **kwargs)

    monkeypatch.setattr(_decode, "decode_body", recording)

    assert (await _decode.decode_result_body(orjson.dumps({"data": b64(ROWS)}))).rows == ROWS
    assert seen == [loop_thread]


@pytest.mark.usefixtures("off_loop")
async def test_a_bad_large_body_raises_decode_error_from_the_thread() -> None:
    with pytest.raises(errors.DecodeError, match="not valid JSON"):
        await _decode.decode_result_body(orjson.dumps({"data": "e2lk..."}))


@pytest.mark.usefixtures("off_loop")
async def test_other_tasks_run_while_a_large_body_decodes() -> None:
    body = orjson.dumps({"data": b64(_many_rows(2000)), "parameters": []})
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    try:
        decoded = await _decode.decode_result_body(body)
    finally:
        task.cancel()
    assert len(decoded.rows) == 2000
    assert ticks > 0


async def test_a_shut_down_pool_still_decodes_the_body_it_was_given(
    off_loop: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = ThreadPoolExecutor(max_workers=1)
    closed.shutdown()
    monkeypatch.setattr(_decode, "_pool", closed)

    decoded = await _decode.decode_result_body(orjson.dumps({"data": b64(ROWS)}))

    assert decoded.rows == ROWS
    assert off_loop == [threading.current_thread().name]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_decodes_off_the_loop_in_a_thread_of_its_own() -> None:
    # The parent's decoding thread exists (the pool is made); the child must make its own.
    script = (
        "import asyncio, base64, os, orjson\n"
        "from halo_async import _decode, _constants as C\n"
        "C.DECODE_OFF_LOOP_MIN_BYTES = 0\n"
        "body = orjson.dumps({'data': base64.b64encode(b'[{\"N\":1}]').decode()})\n"
        "asyncio.run(_decode.decode_result_body(body))\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    rows = asyncio.run(asyncio.wait_for(_decode.decode_result_body(body), 30)).rows\n"
        "    os._exit(0 if rows == [{'N': 1}] else 1)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "print(os.waitstatus_to_exitcode(status))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"
