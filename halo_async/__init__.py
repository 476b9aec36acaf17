"""halo-async: an asyncio-native SDK for the Halo Cloud API for Integrators.

The public names are importable from here (models from ``halo_async.models``, errors from
``halo_async.errors``); everything in an underscore module is private.
"""

from halo_async._constants import PRODUCTION_BASE_URL, STAGE_BASE_URL
from halo_async._retry import PollPolicy, RetryPolicy
from halo_async._validate import QueryOptions
from halo_async.client import HaloClient
from halo_async.fanout import FanOutEvent, FanOutLimits, FanOutProgress, SiteOutcome, SitePage
from halo_async.jobs import QueryJob
from halo_async.models import Checkpoint, Command, ExecutionMode, Parameter, QueryStatus

__all__ = [
    "PRODUCTION_BASE_URL",
    "STAGE_BASE_URL",
    "Checkpoint",
    "Command",
    "ExecutionMode",
    "FanOutEvent",
    "FanOutLimits",
    "FanOutProgress",
    "HaloClient",
    "Parameter",
    "PollPolicy",
    "QueryJob",
    "QueryOptions",
    "QueryStatus",
    "RetryPolicy",
    "SiteOutcome",
    "SitePage",
]

__version__ = "0.1.0.dev0"
