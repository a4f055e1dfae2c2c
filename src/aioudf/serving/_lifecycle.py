"""One life for every long-running aioudf process: startup, main loop, shutdown.

``serve()``, the supervisor and each of its workers are a :class:`Service`
run by a :class:`Lifecycle`, so all three live the same way::

    signal handlers installed (SIGINT, SIGTERM: stop; SIGHUP: hangup)
      startup()                          bind or take over, start serving
      ready()                            sd_notify READY=1, or "ready" to the supervisor
      main_loop()  until it returns, or a stop signal / ``stop`` is set
      shutdown(started)                  stop accepting, the grace period, stop workers
      cleanup()                          always (shielded): close what is left
    signal handlers put back as they were

Only the service's parts differ. The lifecycle's task group owns what a
service starts beside its main loop (a SIGHUP's reload, the control
socket's answers); it is cancelled once shutdown() is done. A second stop
signal reaches the service with ``again=True`` (cut the grace period
short). An exception from startup() still runs shutdown(False) and
cleanup(); one from ready() or main_loop(), or a cancellation from outside,
skips the graceful shutdown() and runs cleanup(); either is then raised as
it was (not wrapped in an exception group).

:func:`signal_handlers` installs handlers that put back what they replaced
(an embedding program's own handlers, or Python's default SIGINT that raises
KeyboardInterrupt). :func:`first` is a main loop's wait: a stop, a
hand-over, a child's exit, whichever comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Iterator, Mapping
from types import FrameType
from typing import Any, Protocol

import anyio
import anyio.abc

__all__ = ["Lifecycle", "Service", "first", "signal_handlers"]

#: The signals that stop a service (the second of them: at once).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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


class Service(Protocol):
    """The parts of one process's life that differ: what a :class:`Lifecycle` runs."""

    async def startup(self, tasks: anyio.abc.TaskGroup) -> bool:
        """Start serving; False if nothing could be (the life ends: shutdown, cleanup).

        ``tasks``: the lifecycle's task group, for what runs beside the main loop.
        """

    async def ready(self) -> None:
        """Serving: tell whoever waits for it (systemd, the supervisor)."""

    async def main_loop(self) -> None:
        """Run until the service is done on its own (handed over, say); cancelled at a stop."""

    def stopping(self, signum: signal.Signals, again: bool) -> None:
        """A stop signal arrived (``again``: not the first); log it, act on a second one."""

    def hangup(self, tasks: anyio.abc.TaskGroup) -> None:
        """SIGHUP arrived: reload (in ``tasks``), or ignore it."""

    async def shutdown(self, started: bool) -> None:
        """After the main loop (or a failed startup): stop serving, gracefully."""

    async def cleanup(self) -> None:
        """At the very end, always (shielded from cancellation): close what is left."""


class Lifecycle:
    """Run a :class:`Service`: signals, startup, ready, main loop, shutdown, cleanup.

    ``stop``: an event that stops the service once set, as the first stop
    signal does (the service may hold it and set it itself); a new one by
    default. ``handle_signals=False``: install no signal handler (the life
    then ends when the main loop returns, ``stop`` is set, or it is cancelled).
    """

    def __init__(
        self,
        service: Service,
        *,
        stop: asyncio.Event | None = None,
        handle_signals: bool = True,
    ) -> None:
        self.service = service
        self.stop = stop if stop is not None else asyncio.Event()
        self.handle_signals = handle_signals
        self._tasks: anyio.abc.TaskGroup | None = None

    async def run(self) -> bool:
        """Live the whole life; whether the service started (False: startup() said so)."""
        failure: Exception | None = None
        started = False
        with self._signals():
            try:
                async with anyio.create_task_group() as tasks:
                    self._tasks = tasks
                    try:
                        started = await self._live(tasks)
                    except Exception as exc:  # raised below, outside the task group's wrapping
                        failure = exc
                    tasks.cancel_scope.cancel()  # what the service started beside ends with it
            finally:
                self._tasks = None
                with anyio.CancelScope(shield=True):
                    await self.service.cleanup()
        if failure is not None:
            raise failure
        return started

    async def _live(self, tasks: anyio.abc.TaskGroup) -> bool:
        service = self.service
        try:
            started = await service.startup(tasks)
        except Exception:
            await service.shutdown(False)
            raise
        if started:
            await service.ready()
            await first(self.stop.wait(), service.main_loop())
        await service.shutdown(started)
        return started

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        if not self.handle_signals:
            yield
            return
        handlers: dict[signal.Signals, Callable[[signal.Signals], object]] = {
            signum: self._on_stop for signum in STOP_SIGNALS
        }
        handlers[signal.SIGHUP] = self._on_hangup
        with signal_handlers(handlers):
            yield

    def _on_stop(self, signum: signal.Signals) -> None:
        self.service.stopping(signum, self.stop.is_set())
        self.stop.set()

    def _on_hangup(self, signum: signal.Signals) -> None:
        if self._tasks is not None:  # (None: before startup's group, or after it ended)
            self.service.hangup(self._tasks)
