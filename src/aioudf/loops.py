"""Choosing and running the event loop: uvloop when available, asyncio otherwise.

``loop="auto"`` (the default everywhere) uses uvloop if it is installed
(``pip install aioudf[uvloop]``) and plain asyncio if not; ``"uvloop"``
insists on it and ``"asyncio"`` never uses it. Only :func:`run_async`, which
creates and owns a loop, looks at this: code embedded in someone else's loop
runs on whatever loop that is.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

__all__ = ["LOOP_CHOICES", "LoopName", "loop_factory", "resolve_loop", "run_async"]

T = TypeVar("T")
LoopName = Literal["auto", "asyncio", "uvloop"]
LOOP_CHOICES: tuple[LoopName, ...] = ("auto", "asyncio", "uvloop")


def resolve_loop(loop: str) -> Literal["asyncio", "uvloop"]:
    """Which loop ``loop`` means on this machine; raise if it cannot be had."""
    if loop not in LOOP_CHOICES:
        raise ValueError(f"unknown event loop {loop!r}: choose one of {', '.join(LOOP_CHOICES)}")
    have_uvloop = sys.platform != "win32" and importlib.util.find_spec("uvloop") is not None
    if loop == "uvloop" and not have_uvloop:
        raise RuntimeError("uvloop is not installed: pip install 'aioudf[uvloop]'")
    if loop == "asyncio" or not have_uvloop:
        return "asyncio"
    return "uvloop"


def loop_factory(loop: str = "auto") -> Callable[[], asyncio.AbstractEventLoop]:
    """A function creating a new event loop of the chosen kind."""
    if resolve_loop(loop) == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def run_async(main: Coroutine[Any, Any, T], loop: str = "auto") -> T:
    """Run ``main`` to completion on a new loop of the chosen kind (like asyncio.run)."""
    factory = loop_factory(loop)
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(main)
    # Python 3.10: asyncio.run with a temporary policy producing our loop.
    policy = asyncio.get_event_loop_policy()

    class _Policy(type(policy)):  # type: ignore[misc]
        def new_event_loop(self) -> asyncio.AbstractEventLoop:
            return factory()

    asyncio.set_event_loop_policy(_Policy())
    try:
        return asyncio.run(main)
    finally:
        asyncio.set_event_loop_policy(policy)
