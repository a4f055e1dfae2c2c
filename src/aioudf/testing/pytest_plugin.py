"""The pytest plugin of aioudf: the ``kapacitor`` fixture.

Installed with aioudf (entry point ``pytest11``), so any project that has
aioudf installed can write::

    async def test_moving_average(kapacitor):
        result = await kapacitor(MovingAvg).run({"field": "v", "size": 2}, points=[...])

``kapacitor(udf, timeout=...)`` returns a :class:`~aioudf.testing.Kapacitor`
for a Handler class (run in process), a socket path, or an argv list (a
process UDF). Async tests need an async test runner (pytest-asyncio or
anyio's plugin); in a plain ``def`` test use ``.run_sync(...)``.

The UDF timeout defaults to Kapacitor's 10 s; change it for a whole test
session with ``--kapacitor-timeout SECONDS`` or the ``kapacitor_timeout`` ini
option.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .client import DEFAULT_TIMEOUT, Kapacitor, kapacitor_factory

__all__ = ["kapacitor", "pytest_addoption"]


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
