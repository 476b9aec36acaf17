"""How the ``halo`` command reports a failure: one line saying what failed and what to do.

The line speaks the user's language: the flag or argument they typed (``--pms``, ``SITE``)
instead of the library's argument name, the full URL requested instead of its path, and a
hint only where it adds something the message does not say.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from typing import IO, Any, Final, TypeVar

import attrs
import click

from halo_async import _constants as C
from halo_async import errors

__all__ = [
    "CommandFailed",
    "ErrorContext",
    "describe",
    "hint_for",
    "run_async",
    "without_site",
]

T = TypeVar("T")

# The library's argument names as a command line spells them; commands add their own
# arguments (SITE, PMS_SITE_ID) to these.
COMMON_NAMES: Final[Mapping[str, str]] = {
    "pms_name": "--pms",
    "catalogue": "--catalogue",
    "parameters": "--param",
    "command": "SQL",
    "deadline": "--deadline",
    "max_in_flight": "--max-in-flight",
}
# The path every operation starts with: a base URL ending in it doubles it.
_API_PREFIX: Final = "/integrator"


@attrs.frozen
class ErrorContext:
    """What a command knows that the library's error does not: where requests went (None
    for an embedded emulator), where that base URL came from (``--base-url``,
    ``$HALO_BASE_URL``, or None for the default), and the names the user typed."""

    base_url: str | None = None
    base_url_source: str | None = None
    names: Mapping[str, str] = attrs.field(factory=lambda: dict(COMMON_NAMES))

    def set_base_url(self, url: str) -> str:
        """How to set ``url`` the way the user set the base URL."""
        if self.base_url_source == f"${C.BASE_URL_ENV}":
            return f"{self.base_url_source}={url}"
        return f"--base-url {url}"


_NO_CONTEXT: Final = ErrorContext()

_Hint = str | Callable[[BaseException, ErrorContext], str | None]


def _not_found(_: BaseException, context: ErrorContext) -> str | None:
    base = context.base_url
    if base is not None and base.lower().endswith(_API_PREFIX):
        fixed = base[: -len(_API_PREFIX)]
        return (
            f"the base URL ends in {_API_PREFIX}, which halo adds to every path itself: "
            f"use {context.set_base_url(fixed)}"
        )
    return "check the site's Halo GUID (`halo sites find PMS_ID --pms NAME`)"


def _no_answer(_: BaseException, context: ErrorContext) -> str:
    if context.base_url_source and context.base_url:
        return f"check the network and {context.base_url_source} ({context.base_url})"
    return "check the network, then try again"


# Most specific class first: the first match gives the advice. None: the message says it.
_HINTS: tuple[tuple[type[BaseException], _Hint | None], ...] = (
    (errors.InvalidArgumentError, "fix the argument and run it again"),
    (errors.ConfigurationError, None),  # the messages say what to use instead
    (errors.SiteNotFoundError, None),  # the message asks the two questions to check
    (
        errors.SubmissionOutcomeUnknownError,
        "the query may have run: check the site before running it again",
    ),
    (errors.HaloConnectionError, _no_answer),
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
    (errors.NotFoundError, _not_found),
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


def hint_for(exc: BaseException, context: ErrorContext = _NO_CONTEXT) -> str | None:
    """What the user should do about ``exc``, or None when there is nothing to add."""
    for cls, hint in _HINTS:
        if isinstance(exc, cls):
            return hint(exc, context) if callable(hint) else hint
    return None


def _in_user_terms(exc: BaseException, message: str, context: ErrorContext) -> str:
    """The message with the library's argument name replaced by the one the user typed."""
    if isinstance(exc, errors.InvalidArgumentError) and message.startswith(f"{exc.field} "):
        return context.names.get(exc.field, exc.field) + message[len(exc.field) :]
    if isinstance(exc, errors.ConfigurationError) and message.startswith("base_url "):
        return (context.base_url_source or "--base-url") + message[len("base_url") :]
    return message


def _with_full_url(exc: BaseException, message: str, context: ErrorContext) -> str:
    """``GET /integrator/sites/...`` as the URL really requested."""
    method, path = getattr(exc, "method", None), getattr(exc, "path", None)
    if context.base_url is None or not isinstance(method, str) or not isinstance(path, str):
        return message
    return message.replace(f"{method} {path}", f"{method} {context.base_url}{path}", 1)


def without_site(message: str, site_id: str) -> str:
    """The message without its mentions of ``site_id``, for a line that already names it."""
    for mention, replacement in (
        (f"site {site_id}: ", ""),
        (f" (site {site_id})", ""),
        (f"(site {site_id}, ", "("),
    ):
        message = message.replace(mention, replacement)
    return message


def _joined(message: str, hint: str | None) -> str:
    if not hint:
        return message
    if message.endswith((".", "?", "!")):  # a sentence already: the hint is the next one
        return f"{message} {hint[0].upper()}{hint[1:]}"
    return f"{message}; {hint}"


def describe(
    exc: BaseException, context: ErrorContext = _NO_CONTEXT, *, site_named: str | None = None
) -> str:
    """``exc`` on one line: the library's message (it names the site and query), then advice.

    ``site_named`` is a site the line already names: the message's mentions of it go.
    The library keeps the API key out of every message, so this never shows it.
    """
    message = " ".join(str(exc).split()) or type(exc).__name__
    message = _with_full_url(exc, _in_user_terms(exc, message, context), context)
    if site_named is not None:
        message = without_site(message, site_named)
    return _joined(message, hint_for(exc, context))


class CommandFailed(click.ClickException):
    """A failure reported as one ``halo: error: ...`` line on stderr, exit status 1."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        """Print the one line (click calls this on the way out)."""
        click.echo(f"halo: error: {self.format_message()}", err=True, file=file)


def run_async(coroutine: Coroutine[Any, Any, T], context: ErrorContext = _NO_CONTEXT) -> T:
    """Run a command's coroutine; library errors become one clear line and exit status 1.

    Ctrl-C exits with 130, as shells expect, after asyncio has cancelled the command's tasks
    (which closes the client, its session and any embedded emulator).
    """
    try:
        return asyncio.run(coroutine)
    except errors.HaloError as exc:
        raise CommandFailed(describe(exc, context)) from exc
    except KeyboardInterrupt:
        click.echo("halo: interrupted", err=True)
        raise SystemExit(130) from None
