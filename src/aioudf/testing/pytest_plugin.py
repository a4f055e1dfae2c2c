"""The pytest plugin of aioudf: the ``kapacitor`` fixture.

Installed with aioudf (entry point ``pytest11``), so any project that has
aioudf installed can write::

    async def test_moving_average(kapacitor):
        result = await kapacitor(MovingAvg).run({"field": "v", "size": 2}, points=[...])

``kapacitor(udf, timeout=...)`` returns a :class:`~aioudf.testing.Kapacitor`
for a Handler class (run in process), a socket path, or an argv list (a
process UDF). In a plain ``def`` test use ``.run_sync(...)``.

An ``async def`` test that uses the fixture runs as it is, with nothing to
configure: when no async plugin has taken it (pytest-asyncio in its default
strict mode leaves unmarked tests alone; without any plugin pytest would skip
them with "async def functions are not natively supported"), this plugin runs
it on a new event loop of its own. Tests marked for pytest-asyncio or anyio,
or collected by pytest-asyncio's auto mode, are left to those plugins.

The UDF timeout defaults to Kapacitor's 10 s; change it for a whole test
session with ``--kapacitor-timeout SECONDS`` or the ``kapacitor_timeout`` ini
option.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from ..loops import run_async
from .client import DEFAULT_TIMEOUT, Kapacitor, kapacitor_factory

__all__ = ["kapacitor", "pytest_addoption", "pytest_pyfunc_call"]

# Markers of the async plugins that run coroutine tests themselves.
_OTHER_RUNNERS = ("asyncio", "anyio", "trio")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("aioudf", "aioudf: Kapacitor UDF testing")
    group.addoption(
        "--kapacitor-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"UDF timeout of the kapacitor fixture (default {DEFAULT_TIMEOUT:g})",
    )
    parser.addini(
        "kapacitor_timeout",
        help=f"UDF timeout of the kapacitor fixture, in seconds (default {DEFAULT_TIMEOUT:g})",
        default=str(DEFAULT_TIMEOUT),
    )


@pytest.fixture
def kapacitor(request: pytest.FixtureRequest) -> Callable[..., Kapacitor]:
    """Make a Kapacitor-side client: ``kapacitor(MyHandler).run(options, points=...)``."""
    timeout: Any = request.config.getoption("--kapacitor-timeout")
    if timeout is None:
        timeout = float(request.config.getini("kapacitor_timeout"))
    return kapacitor_factory(timeout)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run an ``async def`` test that uses ``kapacitor`` if no other plugin will."""
    function = pyfuncitem.obj
    if (
        "kapacitor" not in pyfuncitem.fixturenames
        or not inspect.iscoroutinefunction(function)  # pytest-asyncio wraps what it runs
        or any(pyfuncitem.get_closest_marker(name) for name in _OTHER_RUNNERS)
        or "anyio_backend" in pyfuncitem.funcargs
    ):
        return None
    arguments = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    run_async(function(**arguments))
    return True
