"""Every Python snippet of the README runs against the emulator, so the README cannot rot.

Snippets with ``asyncio.run`` run as scripts in a subprocess, with ``HALO_API_KEY`` and
``HALO_BASE_URL`` pointing at the emulator. The others run with top-level ``await`` in a
namespace that holds what the prose around them assumes: ``halo``, ``site``, ``site_ids``,
``sql``, ``handle`` and ``save``. A snippet that defines a ``test_`` function is called
with the emulator and a client, as the pytest plugin would.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import re
import subprocess
import sys
import textwrap
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from halo_async import HaloClient, PollPolicy, RetryPolicy
from halo_async.emulator import Emulator, SiteSpec
from tests.support import no_sleep

README = Path(__file__).resolve().parents[2] / "README.md"
FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def snippets() -> list[tuple[int, str]]:
    text = README.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in FENCE.finditer(text)]


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    sites = [SiteSpec(pms_type="BestPractice", pms_site_id="12345")] + [
        SiteSpec(pms_type="BestPractice", patients=200) for _ in range(3)
    ]
    async with Emulator(sites=sites, seed=3) as emu:
        yield emu


@pytest.fixture
async def halo(emulator: Emulator) -> AsyncIterator[HaloClient]:
    retry = RetryPolicy(sleep=no_sleep)
    async with HaloClient(emulator.api_key, base_url=emulator.base_url, retry=retry) as client:
        yield client


def test_the_readme_has_snippets() -> None:
    assert len(snippets()) >= 6


@pytest.mark.parametrize(("line", "code"), snippets(), ids=[f"line {n}" for n, _ in snippets()])
async def test_readme_snippet_runs(
    line: int,
    code: str,
    emulator: Emulator,
    halo: HaloClient,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)  # what a snippet writes (a ledger file, say) lands here
    if "asyncio.run(" in code:
        output = await run_script(code, emulator)
        assert output.strip(), f"the snippet at README line {line} printed nothing"
        return

    handled: list[dict[str, Any]] = []
    saved: dict[str, Any] = {}
    namespace: dict[str, Any] = {
        "halo": halo,
        "site": await halo.resolve_site("12345", "Best Practice"),
        "site_ids": [site.id for site in emulator.sites],
        "sql": "SELECT TOP 5 SURNAME FROM PATIENTS",
        "handle": handled.append,
        "handled": handled,
        "save": saved.__setitem__,
    }
    # The README's snippets poll at the library's pace; the test need not wait for it.
    namespace["halo"].submit = _fast_submit(halo)
    compiled = compile(code, f"README.md:{line}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(compiled, namespace)
    if asyncio.iscoroutine(result):
        await result
    for name, value in list(namespace.items()):
        if name.startswith("test_") and callable(value):
            await value(emulator, halo)

    if "FastAPI(" in code:
        monkeypatch.setenv("HALO_API_KEY", emulator.api_key)
        monkeypatch.setenv("HALO_BASE_URL", emulator.base_url)
        lines = await asyncio.to_thread(call_site_routes, namespace["app"], namespace["site"].id)
        assert lines, "the FastAPI snippet's route streamed no rows"
    if "job.rows()" in code:
        assert handled, "no row reached handle()"
    if "halo.resume(" in code:
        ids = [row["InternalID"] for row in handled]
        assert len(ids) > 3, "the resumed job delivered nothing"
        assert ids == sorted(set(ids)), "a row was lost or repeated across the resume"
    if "await write_" in code:
        assert namespace["summary"].rows > 0, "the sink wrote no rows"
        assert sorted(namespace["summary"].rows_by_site) == sorted(namespace["site_ids"])
    elif "halo.fan_out(" in code:
        assert sorted(saved) == sorted(namespace["site_ids"])
        assert all(isinstance(rows, list) and rows for rows in saved.values())
    if "SqlExecutionError" in code:
        assert "mssql 208" in capsys.readouterr().out


def call_site_routes(app: Any, site_id: str) -> list[Any]:
    """GET every ``{site_id}`` route of a FastAPI app (in this worker thread's own loop)."""
    from fastapi.routing import APIRoute

    with warnings.catch_warnings():
        # Starlette's TestClient warns that it will move from httpx to httpx2; not ours.
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    lines: list[Any] = []
    with TestClient(app) as client:
        for route in app.routes:
            if isinstance(route, APIRoute) and "{site_id}" in route.path:
                response = client.get(route.path.replace("{site_id}", site_id))
                assert response.status_code == 200, response.text
                lines += [json.loads(line) for line in response.text.splitlines()]
    return lines


def _fast_submit(halo: HaloClient) -> Any:
    submit = HaloClient.submit

    async def fast(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("poll", PollPolicy(initial_interval=0.005, max_interval=0.05))
        return await submit(halo, *args, **kwargs)

    return fast


async def run_script(code: str, emulator: Emulator) -> str:
    env = {**os.environ, "HALO_API_KEY": emulator.api_key, "HALO_BASE_URL": emulator.base_url}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, err.decode()
    return out.decode()


# The names the snippets without asyncio.run take from their surroundings, typed as a user's
# own code would have them.
TYPED_SURROUNDINGS = """\
from typing import Any

from halo_async import HaloClient
from halo_async.models import Site

halo: HaloClient
site: Site
site_ids: list[str]
sql: str
handled: list[dict[str, Any]]


def handle(row: dict[str, Any]) -> None: ...
def save(site_id: str, rows: list[dict[str, Any]]) -> None: ...
"""


def test_every_snippet_passes_mypy_strict(tmp_path: Path) -> None:
    pytest.importorskip("mypy", reason="mypy comes with the dev extra")
    for line, code in snippets():
        if "asyncio.run(" not in code:
            code = f"{TYPED_SURROUNDINGS}\n\nasync def _snippet() -> None:\n" + textwrap.indent(
                code, "    "
            )
        (tmp_path / f"readme_line_{line}.py").write_text(code, encoding="utf-8")

    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
