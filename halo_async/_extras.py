"""What a missing extra says: one line naming the pip command that installs it.

The core install is lean (aiohttp, attrs, cattrs, orjson, pybase64); each part that needs
more says so in words when its dependency is missing, as httpx does for its CLI, instead
of a traceback ending in "No module named 'click'".
"""

from __future__ import annotations

# The extra that provides each optional module the package imports.
_EXTRA_OF = {
    "click": "cli",
    "rich": "cli",
    "fastapi": "fastapi",
    "starlette": "fastapi",
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
