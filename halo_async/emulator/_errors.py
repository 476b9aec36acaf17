"""HTTP-level failures of the emulator and the exact texts Halo Cloud uses for them."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

__all__ = ["ApiError", "envelope"]

# The OAS example messages, verbatim (REFERENCE §8): integrators match on some of them.
MISSING_KEY = (
    "Access denied due to missing subscription key. Make sure to include subscription key "
    "when making requests to an API."
)
# Azure API Management's own text for a key it does not know.
INVALID_KEY = (
    "Access denied due to invalid subscription key. Make sure to provide a valid key for an "
    "active subscription."
)
NOT_FOUND = "The server cannot find the requested resource."
GONE = "Access to the target resource is permanently no longer available at the origin server."
INTERNAL = "Failed to create query container in CosmosDB."
BAD_GATEWAY = "The practice management software returned an unexpected result code."
SITE_NOT_CONTACTED = (
    "Site could not be contacted, please try again later or contact a system administrator."
)
IMMEDIATE_TIMEOUT = "Query took more than 30 seconds to return a result."
# REFERENCE §12: no source gives this text; it is the emulator's choice.
EXPIRED_IN_QUEUE = "Query expired in queue"
SITE_OFFLINE_AFTER_ATTEMPT = "Site is offline"
TOO_LARGE = (
    "Query was executed successfully but an error occurred preparing it to be uploaded, results "
    "were too large. Immediate query results beyond message size limit (8mb)"
)
RATE_LIMITED = "Rate limit is exceeded. Try again in {seconds} seconds."

# Texts for the server errors a fault can inject, one per status.
SERVER_ERROR_TEXTS = {
    500: INTERNAL,
    502: BAD_GATEWAY,
    503: SITE_NOT_CONTACTED,
    504: IMMEDIATE_TIMEOUT,
}


def envelope(status: int, message: str) -> dict[str, Any]:
    """The OAS ``Error`` object (envelope A)."""
    return {
        "error": {"status": status, "statusText": HTTPStatus(status).phrase, "message": message}
    }


class ApiError(Exception):
    """A response other than success, raised anywhere below the routes and rendered by the app.

    ``body`` overrides the envelope for the few failures with their own shape (the
    ExecutionFailedImmediateQuery object, the 413 errorDetails body).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.body = body if body is not None else envelope(status, message)
        self.headers = headers or {}
