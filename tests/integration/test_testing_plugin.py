"""The pytest plugin's fixtures, as users get them: an emulator and a client pointed at it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from halo_async import HaloClient
from halo_async.emulator import Emulator
from halo_async.errors import SqlExecutionError


async def test_halo_client_talks_to_halo_emulator(
    halo_emulator: Emulator, halo_client: HaloClient
) -> None:
    site = next(s for s in halo_emulator.sites if s.pms_type == "BestPractice")

    query = await halo_client.immediate_query(site.id, "SELECT TOP 3 INTERNALID FROM PATIENTS")

    assert len(query.decode_rows()) == 3
    assert halo_client.base_url == halo_emulator.base_url


async def test_halo_client_raises_typed_errors(
    halo_emulator: Emulator, halo_client: HaloClient
) -> None:
    site = next(s for s in halo_emulator.sites if s.pms_type == "BestPractice")

    with pytest.raises(SqlExecutionError) as caught:
        await halo_client.immediate_query(site.id, "SELECT * FROM NO_SUCH_TABLE")

    assert caught.value.error_code == 208


@pytest.mark.halo_emulator(sites=2)
async def test_halo_client_retries_without_waiting(
    halo_emulator: Emulator, halo_client: HaloClient
) -> None:
    halo_emulator.faults.fail_next("getSite", 2, status=429, retry_after=30)

    site = await halo_client.get_site(halo_emulator.sites[0].id)

    assert site.id == halo_emulator.sites[0].id
    assert halo_emulator.stats.requests["getSite"] == 3


# Every warning an error, but pytest-asyncio's "asyncio_default_fixture_loop_scope is unset".
STRICT_WARNINGS = (
    "-W",
    "error",
    "-W",
    "ignore:The configuration option:pytest.PytestDeprecationWarning",
)


def readme_plugin_snippet() -> str:
    """The README's pytest-plugin example, exactly as a user would paste it."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    (snippet,) = [block for block in blocks if "@pytest.mark.halo_emulator" in block]
    return snippet


def test_the_readme_plugin_example_passes_as_pasted_in_strict_mode(tmp_path: Path) -> None:
    # A fresh project: no pytest configuration at all, so pytest-asyncio is in its default
    # strict mode; warnings are errors so that a deprecation shows as a failure (except
    # pytest-asyncio's own nudge to configure its fixture loop scope, which any project
    # without configuration gets, with or without halo-async).
    (tmp_path / "test_pasted.py").write_text(readme_plugin_snippet(), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", *STRICT_WARNINGS],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert "warning" not in result.stdout.lower()
    assert re.search(r"asyncio: mode=\S*strict", result.stdout, re.IGNORECASE), result.stdout
