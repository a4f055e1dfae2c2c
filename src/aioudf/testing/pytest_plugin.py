"""The pytest plugin of aioudf: the ``kapacitor`` and ``kapacitord`` fixtures.

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

``kapacitord(**udfs)`` starts a real, hermetic kapacitord with those UDFs
(:class:`~aioudf.testing.Kapacitord`) and stops it at the test's end::

    def test_task(kapacitord):
        k = kapacitord(movingAverage=MovingAvg)
        k.define_task("t", TICKSCRIPT)
        ...

The binary: ``--kapacitord=PATH`` (the same as ``AIOUDF_KAPACITORD=PATH``;
write it with ``=``: pytest reads its rootdir before it knows plugins' options),
else ``$AIOUDF_KAPACITORD``, else ``kapacitord`` on ``PATH``. Without one, a
test that needs it is skipped, with a message that says how to get one
(:class:`~aioudf.errors.KapacitordNotFound` raised anywhere in a test, say
by ``AsyncKapacitord``, skips it too); ``--require-kapacitord`` (or the
``require_kapacitord`` ini option) makes that a failure, for a CI that must
run them.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from ..errors import KapacitordNotFound
from ..runtime._loops import run_async
from .client import DEFAULT_TIMEOUT, Kapacitor, kapacitor_factory
from .kapacitord import KAPACITORD_ENV, Kapacitord, UDFSpec, locate_kapacitord

__all__ = [
    "kapacitor",
    "kapacitord",
    "kapacitord_binary",
    "pytest_addoption",
    "pytest_configure",
    "pytest_pyfunc_call",
    "pytest_runtest_call",
    "pytest_runtest_setup",
    "pytest_unconfigure",
]

# The fixtures whose async tests this plugin runs when no other plugin does.
_OURS = ("kapacitor", "kapacitord")

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
    group.addoption(
        "--kapacitord",
        default=None,
        metavar="PATH",
        help=f"the kapacitord binary for end-to-end tests (default: ${KAPACITORD_ENV}, or PATH)",
    )
    group.addoption(
        "--require-kapacitord",
        action="store_true",
        default=None,
        help="fail, rather than skip, the tests that need kapacitord when there is none",
    )
    parser.addini(
        "require_kapacitord",
        type="bool",
        default=False,
        help="fail, rather than skip, the tests that need kapacitord when there is none",
    )


_saved_env: list[str | None] = []


def pytest_configure(config: pytest.Config) -> None:
    binary = config.getoption("--kapacitord")
    if binary is not None:  # one setting for the fixtures, the kit, and child processes
        path = os.path.abspath(os.path.expanduser(binary))
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise pytest.UsageError(f"--kapacitord {binary}: not an executable file")
        _saved_env.append(os.environ.get(KAPACITORD_ENV))
        os.environ[KAPACITORD_ENV] = path


def pytest_unconfigure(config: pytest.Config) -> None:
    while _saved_env:
        previous = _saved_env.pop()
        if previous is None:
            os.environ.pop(KAPACITORD_ENV, None)
        else:
            os.environ[KAPACITORD_ENV] = previous


def _required(config: pytest.Config) -> bool:
    option = config.getoption("--require-kapacitord")
    return bool(option) if option is not None else bool(config.getini("require_kapacitord"))


def _no_kapacitord(config: pytest.Config, exc: KapacitordNotFound) -> None:
    if _required(config):
        raise pytest.fail.Exception(f"{exc} (--require-kapacitord)", pytrace=False) from None
    raise pytest.skip.Exception(str(exc)) from None


def _skipping_without_kapacitord(item: pytest.Item) -> Generator[None, None, None]:
    try:
        return (yield)
    except KapacitordNotFound as exc:
        _no_kapacitord(item.config, exc)
        raise  # pragma: no cover (_no_kapacitord always raises)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    """A fixture that found no kapacitord skips the test (or fails it, if required)."""
    return (yield from _skipping_without_kapacitord(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """A test that found no kapacitord is skipped (or failed, if required)."""
    return (yield from _skipping_without_kapacitord(item))


@pytest.fixture
def kapacitor(request: pytest.FixtureRequest) -> Callable[..., Kapacitor]:
    """Make a Kapacitor-side client: ``kapacitor(MyHandler).run(options, points=...)``."""
    timeout: Any = request.config.getoption("--kapacitor-timeout")
    if timeout is None:
        timeout = float(request.config.getini("kapacitor_timeout"))
    return kapacitor_factory(timeout)


@pytest.fixture(scope="session")
def kapacitord_binary(request: pytest.FixtureRequest) -> Path:
    """The kapacitord binary; without one the test is skipped (failed, if required)."""
    try:
        return locate_kapacitord()
    except KapacitordNotFound as exc:
        _no_kapacitord(request.config, exc)
        raise


@pytest.fixture
def kapacitord(kapacitord_binary: Path) -> Iterator[Callable[..., Kapacitord]]:
    """Start a hermetic kapacitord: ``kapacitord(name=UDF, ...)``; stopped at the test's end.

    Also ``kapacitord({"name": UDF}, snapshot_interval="10s")``. A UDF is a
    Handler class or ``"module:Class"`` (a process UDF), an argv list,
    ``ProcessUDF``, ``SocketUDF`` or ``ServedUDF`` (aioudf.testing).
    """
    started: list[Kapacitord] = []

    def start(
        udfs: Mapping[str, UDFSpec] | None = None,
        /,
        *,
        snapshot_interval: str = "1m0s",
        **named: UDFSpec,
    ) -> Kapacitord:
        daemon = Kapacitord(
            None,
            {**(udfs or {}), **named},
            binary=kapacitord_binary,
            snapshot_interval=snapshot_interval,
        )
        started.append(daemon)
        return daemon.start()

    yield start
    for daemon in started:
        daemon.stop()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run an ``async def`` test that uses our fixtures if no other plugin will."""
    function = pyfuncitem.obj
    if (
        not any(name in pyfuncitem.fixturenames for name in _OURS)
        or not inspect.iscoroutinefunction(function)  # pytest-asyncio wraps what it runs
        or any(pyfuncitem.get_closest_marker(name) for name in _OTHER_RUNNERS)
        or "anyio_backend" in pyfuncitem.funcargs
    ):
        return None
    arguments = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    run_async(function(**arguments))
    return True
