"""A local Halo Cloud for integrators: develop and test without a Halo key.

The emulator serves every integrator operation of the Halo Cloud API (OAS 26.619.10213, FHIR
excepted) over HTTP, backed by per-site SQLite practice databases with synthetic Best
Practice, Zedmed and D4W data. It shares no code with the client side of ``halo_async``.

```python
from halo_async.emulator import Emulator

async with Emulator(sites=5, seed=1) as emu:
    print(emu.base_url, emu.sites[0].id)   # point a client at base_url with emu.api_key
```

From a shell: ``python -m halo_async.emulator --sites 50 --port 8080``.
"""

try:
    import sqlglot  # noqa: F401  (the emulator extra: T-SQL and Firebird SQL to SQLite)
except ModuleNotFoundError as _missing:  # pragma: no cover - exercised in a subprocess
    raise ModuleNotFoundError(
        "halo_async.emulator needs the emulator extra (sqlglot is not installed): "
        "pip install 'halo-async[emulator]'",
        name=_missing.name,
    ) from _missing

from halo_async.emulator._clock import Clock, ManualClock, SystemClock
from halo_async.emulator._emulator import DEFAULT_API_KEY, Emulator
from halo_async.emulator._latency import Latency
from halo_async.emulator._sites import SiteSpec
from halo_async.emulator.faults import Faults
from halo_async.emulator.webhooks import WebhookSender

__all__ = [
    "DEFAULT_API_KEY",
    "Clock",
    "Emulator",
    "Faults",
    "Latency",
    "ManualClock",
    "SiteSpec",
    "SystemClock",
    "WebhookSender",
]
