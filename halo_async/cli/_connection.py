"""Where a command's queries go: a real Halo (key and base URL) or an embedded emulator."""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import click
from click.core import ParameterSource

from halo_async import _constants as C
from halo_async.cli._errors import COMMON_NAMES, CommandFailed, ErrorContext
from halo_async.client import HaloClient

if TYPE_CHECKING:
    from halo_async.emulator import Emulator

__all__ = [
    "Connection",
    "Session",
    "configure_logging",
    "connection_options",
    "emulator_missing",
    "open_session",
]

F = TypeVar("F", bound=Callable[..., Any])

_DEBUG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Marks the handler the CLI installed, so that configuring again replaces it.
_HANDLER_NAME = "halo-cli"


@attrs.frozen
class Connection:
    """The connection options of one command. The key never shows in a repr."""

    api_key: str | None = attrs.field(repr=False)
    base_url: str | None
    emulator: bool = False
    emulator_sites: int = 8
    emulator_seed: int = 1
    base_url_source: str | None = None
    """``--base-url`` or ``$HALO_BASE_URL``: where the base URL came from (None: default)."""

    @property
    def requested_base_url(self) -> str | None:
        """The base URL requests go to, as the client spells it (None for an emulator)."""
        if self.emulator:
            return None
        return (self.base_url or C.PRODUCTION_BASE_URL).rstrip("/")

    def error_context(self, names: Mapping[str, str] | None = None) -> ErrorContext:
        """How this command's errors are told: its URL and the names of its arguments."""
        return ErrorContext(
            base_url=self.requested_base_url,
            base_url_source=self.base_url_source,
            names={**COMMON_NAMES, **(names or {})},
        )


def connection_options(command: F) -> F:
    """Add ``--api-key``, ``--base-url``, ``--emulator[-sites|-seed]`` and ``--debug``.

    The decorated command receives one ``connection`` argument in their place.
    """

    @click.option(
        "--api-key",
        envvar=C.API_KEY_ENV,
        show_envvar=True,
        metavar="KEY",
        help="Halo API key (from the Integrator Portal).",
    )
    @click.option(
        "--base-url",
        envvar=C.BASE_URL_ENV,
        show_envvar=True,
        metavar="URL",
        help=f"Halo API base URL (default {C.PRODUCTION_BASE_URL}).",
    )
    @click.option(
        "--emulator",
        is_flag=True,
        help="Run against an embedded local emulator instead of Halo (no key needed).",
    )
    @click.option(
        "--emulator-sites",
        type=click.IntRange(1, 10_000),
        default=8,
        show_default=True,
        help="Sites in the embedded emulator.",
    )
    @click.option(
        "--emulator-seed",
        type=int,
        default=1,
        show_default=True,
        help="Seed of the embedded emulator's sites and data (same seed, same sites).",
    )
    @click.option("--debug", is_flag=True, help="Log every request (API key redacted) to stderr.")
    @functools.wraps(command)
    def wrapper(
        *args: Any,
        api_key: str | None,
        base_url: str | None,
        emulator: bool,
        emulator_sites: int,
        emulator_seed: int,
        debug: bool,
        **kwargs: Any,
    ) -> Any:
        connection = Connection(
            api_key, base_url, emulator, emulator_sites, emulator_seed, _base_url_source()
        )
        configure_logging(debug=debug, base_url=connection.requested_base_url)
        return command(*args, connection=connection, **kwargs)

    return wrapper  # type: ignore[return-value]


def _base_url_source() -> str | None:
    source = click.get_current_context().get_parameter_source("base_url")
    if source is ParameterSource.COMMANDLINE:
        return "--base-url"
    if source is ParameterSource.ENVIRONMENT:
        return f"${C.BASE_URL_ENV}"
    return None


class _FullUrlFormatter(logging.Formatter):
    """Shows the full URL in the library's request records, which name only the path.

    Those records start ``"%s %s"`` with the method and the path; the rest is left alone.
    """

    def __init__(self, fmt: str, base_url: str | None) -> None:
        super().__init__(fmt)
        self._base_url = base_url

    def format(self, record: logging.LogRecord) -> str:
        """Format a copy of ``record`` with the base URL before its path."""
        args = record.args
        if (
            self._base_url is not None
            and isinstance(record.msg, str)
            and record.msg.startswith("%s %s")
            and isinstance(args, tuple)
            and len(args) >= 2
            and isinstance(args[1], str)
            and args[1].startswith("/")
        ):
            record = logging.makeLogRecord(record.__dict__)
            record.args = (args[0], self._base_url + args[1], *args[2:])
        return super().format(record)


def configure_logging(
    *,
    debug: bool,
    level: int = logging.ERROR,
    handler: logging.Handler | None = None,
    base_url: str | None = None,
) -> None:
    """Send the ``halo_async`` logger to ``handler`` (stderr by default): every record with
    ``debug``, else ``level`` and up; requests show ``base_url`` before their path.

    The library's records never hold the API key. Without this, Python's last-resort
    handler would print the library's retry warnings in the middle of the command's output.
    """
    logger = logging.getLogger(C.LOGGER_NAME)
    for old in list(logger.handlers):
        if old.get_name() == _HANDLER_NAME:
            logger.removeHandler(old)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        fmt = _DEBUG_FORMAT if debug else "halo: %(message)s"
        handler.setFormatter(_FullUrlFormatter(fmt, base_url))
    handler.set_name(_HANDLER_NAME)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else level)
    logger.propagate = False


@attrs.frozen
class Session:
    """An open client, and the embedded emulator it talks to (with ``--emulator``)."""

    halo: HaloClient
    emulator: Emulator | None = None


@contextlib.asynccontextmanager
async def open_session(connection: Connection) -> AsyncIterator[Session]:
    """A client for ``connection``; with ``--emulator``, the emulator runs until it closes."""
    if not connection.emulator:
        if not connection.api_key:
            raise CommandFailed(
                f"no API key: pass --api-key or set ${C.API_KEY_ENV} (keys come from the "
                "Halo Integrator Portal), or try it locally with --emulator"
            )
        async with HaloClient(connection.api_key, base_url=connection.base_url) as halo:
            yield Session(halo)
        return
    emulator_cls = _emulator_class()
    async with (
        emulator_cls(sites=connection.emulator_sites, seed=connection.emulator_seed) as emu,
        HaloClient(emu.api_key, base_url=emu.base_url) as halo,
    ):
        yield Session(halo, emu)


def emulator_missing(exc: ImportError) -> CommandFailed:
    """The error for a missing ``emulator`` extra."""
    return CommandFailed(
        f"the emulator needs the emulator extra ({exc}): pip install 'halo-async[emulator]'"
    )


def _emulator_class() -> type[Emulator]:
    try:
        from halo_async.emulator import Emulator
    except ImportError as exc:
        raise emulator_missing(exc) from exc
    return Emulator
