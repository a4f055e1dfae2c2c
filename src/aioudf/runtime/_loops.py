"""Choosing and running the event loop: uvloop when available, asyncio otherwise.

``loop="auto"`` (the default everywhere) uses uvloop if it is installed
(``pip install aioudf[uvloop]``) and plain asyncio if not; ``"uvloop"``
insists on it and ``"asyncio"`` never uses it. Only :func:`run_async`, which
creates and owns a loop, looks at this: code embedded in someone else's loop
runs on whatever loop that is.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

from ..errors import MissingDependency

__all__ = [
    "LOOP_CHOICES",
    "LoopName",
    "exit_past_stuck_threads",
    "loop_factory",
    "resolve_loop",
    "run_async",
]

logger = logging.getLogger("aioudf")

# anyio's worker threads, which run blocking handlers' calls; they are not
# daemon threads, so the interpreter waits for them at exit.
_WORKER_THREAD_NAME = "AnyIO worker thread"

T = TypeVar("T")
LoopName = Literal["auto", "asyncio", "uvloop"]
LOOP_CHOICES: tuple[LoopName, ...] = ("auto", "asyncio", "uvloop")


def resolve_loop(loop: str) -> Literal["asyncio", "uvloop"]:
    """Which loop ``loop`` means on this machine; raise if it cannot be had."""
    if loop not in LOOP_CHOICES:
        raise ValueError(f"unknown event loop {loop!r}: choose one of {', '.join(LOOP_CHOICES)}")
    have_uvloop = sys.platform != "win32" and importlib.util.find_spec("uvloop") is not None
    if loop == "uvloop" and not have_uvloop:
        raise MissingDependency(
            "--loop uvloop: uvloop is not installed (pip install 'aioudf[uvloop]'), "
            "or use --loop asyncio"
        )
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
    """Run ``main`` to completion on a new loop of the chosen kind (like asyncio.run).

    Raises :class:`~aioudf.errors.MissingDependency` if the loop cannot be had
    (``main`` is then closed, never started).
    """
    try:
        factory = loop_factory(loop)
    except BaseException:
        main.close()  # no "coroutine was never awaited" warning on top of the error
        raise
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


def exit_past_stuck_threads(status: int, wait: float = 1.0) -> None:
    """End the process now if a blocking handler call outlived the event loop.

    For entry points that own the process (``aioudf run``/``serve``,
    :func:`aioudf.run`), once their loop has finished. A blocking handler's
    call that was abandoned (``stop()`` past ``stop_timeout``, a connection
    cancelled at shutdown) keeps running in a non-daemon worker thread, and
    the interpreter would wait for it forever at exit: Kapacitor would be left
    waiting for the process, and a second SIGINT would not end it. Idle worker
    threads get ``wait`` seconds to end; if any call is still running, this
    logs a warning and exits with ``status`` without running atexit handlers.
    """
    workers = [t for t in threading.enumerate() if t.name == _WORKER_THREAD_NAME]
    deadline = time.monotonic() + wait
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
    stuck = [t for t in workers if t.is_alive()]
    if not stuck:
        return
    logger.warning(
        "%d blocking handler call(s) still running in worker threads after the UDF "
        "stopped; exiting without waiting for them",
        len(stuck),
    )
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed or broken stream: nothing to save
            stream.flush()
    os._exit(status)
