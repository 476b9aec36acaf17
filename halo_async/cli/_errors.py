"""How the ``halo`` command reports a failure: one line saying what failed and what to do."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import IO, Any, TypeVar

import click

from halo_async import errors

__all__ = ["CommandFailed", "describe", "hint_for", "run_async"]

T = TypeVar("T")

# Most specific class first: the first match gives the advice.
_HINTS: tuple[tuple[type[BaseException], str], ...] = (
    (errors.InvalidArgumentError, "fix the argument and run it again"),
    (errors.ConfigurationError, "pass --api-key/--base-url or set HALO_API_KEY/HALO_BASE_URL"),
    (errors.SiteNotFoundError, "check the PMS site id and --pms, and that the site is paired"),
    (
        errors.SubmissionOutcomeUnknownError,
        "the query may have run: check the site before running it again",
    ),
    (errors.HaloConnectionError, "check the network and --base-url, then try again"),
    (
        errors.AuthenticationError,
        "check HALO_API_KEY or --api-key (stage and production keys differ)",
    ),
    (
        errors.NotAuthoritativeError,
        "query the authoritative site: `halo sites find PMS_ID --pms NAME`",
    ),
    (
        errors.SiteGuidChangedError,
        "the site's GUID changed: look it up again with `halo sites find PMS_ID --pms NAME`",
    ),
    (errors.PermissionDeniedError, "check that the site is paired with your integration"),
    (errors.NotFoundError, "check the site's Halo GUID (`halo sites find PMS_ID --pms NAME`)"),
    (errors.ResultExpiredError, "results are kept 24-48 h: run the query again"),
    (errors.ResultTooLargeError, "narrow the query, or run it async (without --immediate)"),
    (errors.RateLimitedError, "slow down and try again in a minute"),
    (errors.SiteUnavailableError, "the site could not be contacted: try again later"),
    (errors.GatewayTimeoutError, "run it async (without --immediate), or narrow the query"),
    (errors.ServerError, "Halo failed; try again later"),
    (errors.SqlExecutionError, "fix the SQL and run it again"),
    (errors.ResultTransferError, "narrow the query, or run it async (without --immediate)"),
    (errors.HaloLinkError, "an error inside Halo Link: contact Halo support if it persists"),
    (errors.UploadFailedError, "the result failed to upload: run the query again"),
    (errors.QueryExpiredInQueueError, "the site was busy: run the query again later"),
    (errors.SiteOfflineError, "the site is offline: try again when it is back"),
    (errors.InitialisationFailedError, "the query never started: run it again"),
)


def hint_for(exc: BaseException) -> str | None:
    """What the user should do about ``exc``, or None when there is nothing to advise."""
    for cls, hint in _HINTS:
        if isinstance(exc, cls):
            return hint
    return None


def describe(exc: BaseException) -> str:
    """``exc`` on one line: the library's message (it names the site and query), then advice.

    The library keeps the API key out of every message, so this never shows it.
    """
    message = " ".join(str(exc).split()) or type(exc).__name__
    hint = hint_for(exc)
    return f"{message}; {hint}" if hint else message


class CommandFailed(click.ClickException):
    """A failure reported as one ``halo: error: ...`` line on stderr, exit status 1."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        """Print the one line (click calls this on the way out)."""
        click.echo(f"halo: error: {self.format_message()}", err=True, file=file)


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; library errors become one clear line and exit status 1.

    Ctrl-C exits with 130, as shells expect, after asyncio has cancelled the command's tasks
    (which closes the client, its session and any embedded emulator).
    """
    try:
        return asyncio.run(coroutine)
    except errors.HaloError as exc:
        raise CommandFailed(describe(exc)) from exc
    except KeyboardInterrupt:
        click.echo("halo: interrupted", err=True)
        raise SystemExit(130) from None
