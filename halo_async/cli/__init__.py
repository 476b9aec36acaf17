"""The ``halo`` command line (needs the ``cli`` extra: click and rich).

``halo demo`` fans a query out across an embedded emulator; ``halo query``, ``halo fan-out``
and ``halo sites`` talk to Halo (or, with ``--emulator``, to an emulator in the process);
``halo emulator serve`` serves the emulator over HTTP. Nothing outside this package imports
it, so ``import halo_async`` never loads click or rich; without them, ``halo`` says in one
line what to install.
"""

from __future__ import annotations

import sys
from typing import Any

from halo_async._extras import missing_extra

__all__ = ["cli", "main"]


def main() -> None:
    """The ``halo`` entry point."""
    try:
        from halo_async.cli._root import main as run
    except ModuleNotFoundError as exc:
        message = missing_extra(exc, "the halo command")
        if message is None:
            raise
        print(f"halo: {message}", file=sys.stderr)
        sys.exit(1)
    run()


def __getattr__(name: str) -> Any:
    # ``cli`` (the click group) is imported on first use, so that main() can report a
    # missing extra in words.
    if name == "cli":
        from halo_async.cli._root import cli

        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
