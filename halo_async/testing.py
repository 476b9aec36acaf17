"""pytest plugin: a running Halo emulator, and a client connected to it, per test.

Installed as the ``halo_async`` pytest11 entry point, so the fixtures are available wherever
halo-async is installed (``-p no:halo_async`` turns it off). The emulator needs the
``emulator`` extra (``pip install 'halo-async[emulator]'``) and pytest-asyncio; neither is
imported until a test asks for the fixture.

```python
async def test_sites(halo_emulator):
    site = halo_emulator.sites[0]
    ...  # talk to halo_emulator.base_url with halo_emulator.api_key

@pytest.mark.halo_emulator(sites=20, latency="realistic")
async def test_many_sites(halo_emulator): ...

async def test_query(halo_emulator, halo_client):   # a HaloClient pointed at it
    query = await halo_client.immediate_query(halo_emulator.sites[0].id, "SELECT 1 AS one")
```

Async tests that use these fixtures run on pytest-asyncio without ``@pytest.mark.asyncio``
and without ``asyncio_mode = "auto"``: the plugin gives them pytest-asyncio's marker at
collection, so a project with no pytest configuration works as it is (strict mode).

Configuration, most specific first: the ``halo_emulator`` marker's keyword arguments (any
:class:`halo_async.emulator.Emulator` argument), then ``--halo-emulator-sites`` /
``--halo-emulator-seed`` on the command line, then the ``halo_emulator_sites`` /
``halo_emulator_seed`` ini options. Defaults: 3 sites, seed 1, zero latency.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Generator
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pytest

if TYPE_CHECKING:
    from halo_async import HaloClient
    from halo_async.emulator import Emulator

__all__ = ["halo_client", "halo_emulator"]

_DEFAULT_SITES = 3
_DEFAULT_SEED = 1
_FIXTURES = frozenset({"halo_emulator", "halo_client"})


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the command-line and ini options of the emulator fixture."""
    group = parser.getgroup("halo_async", "halo-async emulator")
    group.addoption(
        "--halo-emulator-sites",
        type=int,
        default=None,
        help=f"sites in the halo_emulator fixture (default {_DEFAULT_SITES})",
    )
    group.addoption(
        "--halo-emulator-seed",
        type=int,
        default=None,
        help=f"seed of the halo_emulator fixture (default {_DEFAULT_SEED})",
    )
    parser.addini("halo_emulator_sites", "sites in the halo_emulator fixture", default=None)
    parser.addini("halo_emulator_seed", "seed of the halo_emulator fixture", default=None)


def pytest_configure(config: pytest.Config) -> None:
    """Declare the ``halo_emulator`` marker."""
    config.addinivalue_line(
        "markers",
        "halo_emulator(**kwargs): configure the halo_emulator fixture "
        "(any halo_async.emulator.Emulator keyword argument)",
    )


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_pycollect_makeitem(
    collector: pytest.Module | pytest.Class, name: str, obj: object
) -> Generator[None, Any, None]:
    """Mark the async tests that use this plugin's fixtures with ``pytest.mark.asyncio``.

    In pytest-asyncio's strict mode (its default) an unmarked ``async def`` test is not run
    at all. pytest-asyncio turns marked coroutine tests into its own items in the same
    hook, after the test functions are built; this wrapper is the innermost one
    (``trylast``), so the marker is there by the time pytest-asyncio looks.
    """
    outcome = yield
    result = outcome.get_result()
    items = result if isinstance(result, list) else [result]
    for item in items:
        if _needs_asyncio_marker(item):
            item.add_marker(pytest.mark.asyncio)


def _needs_asyncio_marker(item: object) -> bool:
    return (
        isinstance(item, pytest.Function)
        and inspect.iscoroutinefunction(item.obj)
        and not _FIXTURES.isdisjoint(item.fixturenames)
        and item.get_closest_marker("asyncio") is None
    )


def _setting(config: pytest.Config, name: str, default: int) -> int:
    option = config.getoption(f"--halo-emulator-{name}")
    if option is not None:
        return int(option)
    ini = config.getini(f"halo_emulator_{name}")
    return int(ini) if ini else default


def emulator_kwargs(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The Emulator arguments for one test: defaults, options, then the marker."""
    kwargs: dict[str, Any] = {
        "sites": _setting(request.config, "sites", _DEFAULT_SITES),
        "seed": _setting(request.config, "seed", _DEFAULT_SEED),
        "latency": "zero",
    }
    # Closest marker last so that a test's own marker wins over a module's.
    for marker in reversed(list(request.node.iter_markers("halo_emulator"))):
        if marker.args:
            raise pytest.UsageError("halo_emulator marker takes keyword arguments only")
        kwargs.update(marker.kwargs)
    return kwargs


async def _running_emulator(request: pytest.FixtureRequest) -> AsyncIterator[Emulator]:
    try:
        from halo_async.emulator import Emulator
    except ImportError as exc:  # the emulator extra is missing
        pytest.skip(f"halo_emulator needs the emulator extra: {exc}")
    async with Emulator(**emulator_kwargs(request)) as emulator:
        yield emulator


_F = TypeVar("_F", bound=Callable[..., Any])


def _async_fixture() -> Callable[[_F], _F]:
    # The plugin loads in every pytest run where halo-async is installed, so a missing
    # pytest-asyncio must not break collection; the fixture then fails where it is used.
    try:
        import pytest_asyncio
    except ImportError:  # pragma: no cover - exercised only without pytest-asyncio
        return cast(Callable[[_F], _F], pytest.fixture)
    return cast(Callable[[_F], _F], pytest_asyncio.fixture)


@_async_fixture()
async def halo_emulator(request: pytest.FixtureRequest) -> AsyncIterator[Emulator]:
    """A running :class:`~halo_async.emulator.Emulator`, closed after the test.

    Zero latency and a few sites by default; configure it with the ``halo_emulator`` marker
    or the ``--halo-emulator-*`` options.
    """
    async for emulator in _running_emulator(request):
        yield emulator


@_async_fixture()
async def halo_client(halo_emulator: Emulator) -> AsyncIterator[HaloClient]:
    """A :class:`~halo_async.HaloClient` connected to ``halo_emulator``, closed after the test.

    Its retries do not wait (the emulator's ``Retry-After`` is honoured in count, not in
    real seconds), so tests with faults on stay fast.
    """
    from halo_async import HaloClient, RetryPolicy

    async def no_wait(_: float) -> None:
        await asyncio.sleep(0)

    async with HaloClient(
        halo_emulator.api_key,
        base_url=halo_emulator.base_url,
        retry=RetryPolicy(sleep=no_wait),
    ) as client:
        yield client
