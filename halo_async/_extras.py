"""What a missing extra says: one line naming the pip command that installs it.

The core install is lean (aiohttp, attrs, cattrs, orjson, pybase64); each part that needs
more says so in words when its dependency is missing, as httpx does for its CLI, instead
of a traceback ending in "No module named 'click'".
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from types import ModuleType

# The extra that provides each optional module the package imports.
_EXTRA_OF = {
    "click": "cli",
    "rich": "cli",
    "fastapi": "fastapi",
    "starlette": "fastapi",
    "redis": "redis",
    "arq": "arq",
    "pyarrow": "arrow",
    "duckdb": "duckdb",
    "polars": "polars",
    "pandas": "pandas",
    "opentelemetry": "otel",
}


def missing_extra(error: ModuleNotFoundError, part: str) -> str | None:
    """The message for ``error`` if it is an extra's dependency missing, else None."""
    module = (error.name or "").partition(".")[0]
    extra = _EXTRA_OF.get(module)
    if extra is None:
        return None
    return (
        f"{part} needs the {extra} extra ({module} is not installed): "
        f"pip install 'halo-async[{extra}]'"
    )


def require(module: str, part: str) -> ModuleType:
    """``module`` imported; if an extra's dependency is missing, a ModuleNotFoundError whose
    message is the one line naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        message = missing_extra(exc, part)
        if message is None:
            raise
        raise ModuleNotFoundError(message, name=exc.name) from None


@contextlib.contextmanager
def extra_needed(part: str) -> Iterator[None]:
    """Around a module's imports of an extra's dependencies: a missing one raises the one
    line naming the extra to install, instead of "No module named ..."."""
    try:
        yield
    except ModuleNotFoundError as exc:
        message = missing_extra(exc, part)
        if message is None:
            raise
        raise ModuleNotFoundError(message, name=exc.name) from exc
