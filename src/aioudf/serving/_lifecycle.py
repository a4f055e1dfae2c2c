"""What every long-running aioudf process shares: waiting for the first of several events,
and signal handlers that leave the process as they found it.

``serve()``, the supervisor and each of its workers install their SIGINT,
SIGTERM and SIGHUP handlers with :func:`signal_handlers`, so all three put
back what was there before when they return (an embedding program's own
handlers, or Python's default SIGINT that raises KeyboardInterrupt), rather
than each in its own way. :func:`first` is their main loop's wait: a stop, a
hand-over, a child's exit, whichever comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Iterator, Mapping
from types import FrameType
from typing import Any

import anyio

__all__ = ["first", "signal_handlers"]


async def first(*waits: Awaitable[object]) -> None:
    """Return as soon as one of ``waits`` is done (the others are cancelled)."""
    async with anyio.create_task_group() as tg:

        async def one(wait: Awaitable[object]) -> None:
            await wait
            tg.cancel_scope.cancel()

        for wait in waits:
            tg.start_soon(one, wait)


@contextlib.contextmanager
def signal_handlers(
    handlers: Mapping[signal.Signals, Callable[[signal.Signals], object]],
) -> Iterator[None]:
    """Call ``handlers[signum](signum)`` on the running loop for each signal, within the block.

    On leaving it, the handlers that were there before are put back. Only
    the main thread may install signal handlers (``ValueError`` otherwise,
    and nothing is left installed).
    """
    loop = asyncio.get_running_loop()
    replaced: dict[signal.Signals, Callable[[int, FrameType | None], Any] | int | None] = {}
    try:
        for signum, handler in handlers.items():
            before = signal.getsignal(signum)
            loop.add_signal_handler(signum, handler, signum)
            replaced[signum] = before
        yield
    finally:
        for signum, before in replaced.items():
            loop.remove_signal_handler(signum)
            if before is not None:  # (None: not installed from Python; leave the default)
                signal.signal(signum, before)
