"""What a new user imports: the errors at the top level, and a quiet library logger."""

from __future__ import annotations

import logging
import subprocess
import sys

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
