"""What a new user imports: the errors at the top level, and a quiet library logger."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

import halo_async
from halo_async import errors


def test_the_error_classes_import_from_the_top_level() -> None:
    from halo_async import HaloError, InvalidArgumentError, SqlExecutionError

    assert HaloError is errors.HaloError
    assert SqlExecutionError is errors.SqlExecutionError
    assert InvalidArgumentError is errors.InvalidArgumentError
    public = set(errors.__all__) - {"ValidationError"}
    assert public <= set(halo_async.__all__)
    assert all(getattr(halo_async, name) is getattr(errors, name) for name in public)


def test_invalid_argument_error_does_not_collide_with_pydantic_but_the_old_name_works() -> None:
    # FastAPI apps import pydantic's ValidationError; ours has its own name at the top level.
    assert "ValidationError" not in halo_async.__all__
    assert errors.ValidationError is errors.InvalidArgumentError
    assert errors.InvalidArgumentError.__name__ == "InvalidArgumentError"
    assert issubclass(errors.InvalidArgumentError, ValueError)


def test_the_library_logger_has_a_null_handler() -> None:
    handlers = logging.getLogger("halo_async").handlers
    assert any(isinstance(handler, logging.NullHandler) for handler in handlers)


def test_a_library_warning_does_not_reach_stderr_without_logging_configured() -> None:
    # Python's last-resort handler prints WARNING records of unconfigured loggers to stderr.
    code = (
        "import logging, halo_async\n"
        "logging.getLogger('halo_async.client').warning('a library warning')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stderr == ""


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env},
    )


def test_halo_without_the_cli_extra_says_what_to_install_in_one_line() -> None:
    # None in sys.modules makes the import fail as a missing package would.
    result = _run(
        "import sys; sys.modules['click'] = None\nfrom halo_async.cli import main; main()"
    )

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "halo: the halo command needs the cli extra (click is not installed): "
        "pip install 'halo-async[cli]'"
    ]


def test_the_fastapi_glue_without_its_extra_names_the_install() -> None:
    result = _run("import sys; sys.modules['fastapi'] = None\nimport halo_async.contrib.fastapi")

    assert result.returncode == 1
    assert "pip install 'halo-async[fastapi]'" in result.stderr.splitlines()[-1]


@pytest.mark.parametrize(("value", "shown"), [("debug", True), ("INFO", False), ("", False)])
def test_halo_log_switches_the_logger_on(value: str, shown: bool) -> None:
    code = (
        "import logging, halo_async\n"
        "logging.getLogger('halo_async').debug('a debug line')\n"
        "logging.getLogger('halo_async').info('an info line')\n"
    )
    result = _run(code, HALO_LOG=value)

    assert ("a debug line" in result.stderr) is shown
    assert ("an info line" in result.stderr) is bool(value)


def test_the_emulator_without_its_extra_names_the_install() -> None:
    result = _run("import sys; sys.modules['sqlglot'] = None\nimport halo_async.emulator")

    assert result.returncode == 1
    assert "pip install 'halo-async[emulator]'" in result.stderr.splitlines()[-1]
