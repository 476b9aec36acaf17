"""halo-async: an asyncio-native SDK for the Halo Cloud API for Integrators.

The public names are importable from here; everything in an underscore module is private.
"""

from halo_async._constants import PRODUCTION_BASE_URL, STAGE_BASE_URL
from halo_async._retry import RetryPolicy
from halo_async.client import HaloClient
from halo_async.models import Command, ExecutionMode, Parameter, QueryStatus

__all__ = [
    "PRODUCTION_BASE_URL",
    "STAGE_BASE_URL",
    "Command",
    "ExecutionMode",
    "HaloClient",
    "Parameter",
    "QueryStatus",
    "RetryPolicy",
]

__version__ = "0.1.0.dev0"
