"""halo-async: an asyncio-native SDK for the Halo Cloud API for Integrators.

The public names are importable from here, the error classes included (models from
``halo_async.models``); everything in an underscore module is private.
"""

import logging

from halo_async import _logs
from halo_async._constants import PRODUCTION_BASE_URL, STAGE_BASE_URL
from halo_async._retry import PollPolicy, RetryPolicy
from halo_async._validate import QueryOptions
from halo_async.client import HaloClient
from halo_async.errors import (
    APIError,
    AuthenticationError,
    BadGatewayError,
    BadRequestError,
    ClientClosedError,
    ColumnTypeError,
    ConfigurationError,
    DecodeError,
    FanOutDeadlineError,
    GatewayTimeoutError,
    HaloConnectionError,
    HaloError,
    HaloLinkError,
    IncompleteResultError,
    InitialisationFailedError,
    InvalidArgumentError,
    LedgerMismatchError,
    NotAuthoritativeError,
    NotFoundError,
    PermissionDeniedError,
    PollTimeoutError,
    QueryExpiredInQueueError,
    QueryFailedError,
    RateLimitedError,
    RedirectRefusedError,
    ResultExpiredError,
    ResultTooLargeError,
    ResultTransferError,
    RowTypeError,
    ServerError,
    SiteGuidChangedError,
    SiteNotFoundError,
    SiteOfflineError,
    SiteUnavailableError,
    SqlExecutionError,
    SubmissionOutcomeUnknownError,
    UploadFailedError,
    WebhookError,
    WebhookPayloadError,
    WebhookReplayError,
    WebhookSignatureError,
    WebhookTimestampError,
)
from halo_async.fanout import (
    FanOutEvent,
    FanOutLimits,
    FanOutProgress,
    SiteFailure,
    SiteOutcome,
    SitePage,
    SiteSuccess,
)
from halo_async.jobs import QueryJob
from halo_async.models import Checkpoint, Command, ExecutionMode, Parameter, QueryStatus

__all__ = [
    "PRODUCTION_BASE_URL",
    "STAGE_BASE_URL",
    "APIError",
    "AuthenticationError",
    "BadGatewayError",
    "BadRequestError",
    "Checkpoint",
    "ClientClosedError",
    "ColumnTypeError",
    "Command",
    "ConfigurationError",
    "DecodeError",
    "ExecutionMode",
    "FanOutDeadlineError",
    "FanOutEvent",
    "FanOutLimits",
    "FanOutProgress",
    "GatewayTimeoutError",
    "HaloClient",
    "HaloConnectionError",
    "HaloError",
    "HaloLinkError",
    "IncompleteResultError",
    "InitialisationFailedError",
    "InvalidArgumentError",
    "LedgerMismatchError",
    "NotAuthoritativeError",
    "NotFoundError",
    "Parameter",
    "PermissionDeniedError",
    "PollPolicy",
    "PollTimeoutError",
    "QueryExpiredInQueueError",
    "QueryFailedError",
    "QueryJob",
    "QueryOptions",
    "QueryStatus",
    "RateLimitedError",
    "RedirectRefusedError",
    "ResultExpiredError",
    "ResultTooLargeError",
    "ResultTransferError",
    "RetryPolicy",
    "RowTypeError",
    "ServerError",
    "SiteFailure",
    "SiteGuidChangedError",
    "SiteNotFoundError",
    "SiteOfflineError",
    "SiteOutcome",
    "SitePage",
    "SiteSuccess",
    "SiteUnavailableError",
    "SqlExecutionError",
    "SubmissionOutcomeUnknownError",
    "UploadFailedError",
    "WebhookError",
    "WebhookPayloadError",
    "WebhookReplayError",
    "WebhookSignatureError",
    "WebhookTimestampError",
]

__version__ = "0.1.0.dev0"

# A library logs, the application decides where it goes: without this, Python's last-resort
# handler would print the library's warnings to stderr of an application that configured
# no logging.
logging.getLogger(__name__).addHandler(logging.NullHandler())
_logs.configure_from_env()
