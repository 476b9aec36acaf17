"""``HALO_LOG=debug|info`` switches the ``halo_async`` logger on, as ``OPENAI_LOG`` does.

Without it the library only logs into a ``NullHandler``: where its records go is the
application's choice. With it, records at that level and above go to stderr, one line each
(the API key is never in them).
"""

from __future__ import annotations

import logging
import os

from halo_async import _constants as C

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO}


def configure_from_env() -> None:
    """Add a stderr handler at ``$HALO_LOG``'s level (once), if it names one."""
    level = _LEVELS.get(os.environ.get(C.LOG_ENV, "").strip().lower())
    logger = logging.getLogger(C.LOGGER_NAME)
    if level is None or any(getattr(h, "_halo_log", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler._halo_log = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
