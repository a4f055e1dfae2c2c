"""What serve(), the supervisor and a worker share: one Lifecycle, signal handlers put back."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import anyio.abc
import anyio.lowlevel
import pytest

from aioudf.serving._lifecycle import Lifecycle, first, signal_handlers
from aioudf.serving._supervisor import Supervisor


def _theirs(signum: int, frame: FrameType | None) -> None:
    """The embedding program's own handler."""


@pytest.fixture
def their_handlers() -> Iterator[None]:
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    for signum in before:
        signal.signal(signum, _theirs)
    yield
    for signum, handler in before.items():
        signal.signal(signum, handler)


@pytest.mark.usefixtures("their_handlers")
async def test_signal_handlers_run_on_the_loop_and_put_back_what_was_there() -> None:
    got: list[signal.Signals] = []
    received = asyncio.Event()

    def ours(signum: signal.Signals) -> None:
        got.append(signum)
        received.set()

    with signal_handlers({signal.SIGHUP: ours}):
        os.kill(os.getpid(), signal.SIGHUP)
        await received.wait()
    assert got == [signal.SIGHUP]
    assert signal.getsignal(signal.SIGHUP) is _theirs


@pytest.mark.usefixtures("their_handlers")
async def test_a_supervisor_puts_back_the_handlers_it_replaced(socket_path: Path) -> None:
    # (Before, it removed them: SIGTERM's became the default, which kills.)
    fails = [sys.executable, "-c", "raise SystemExit(3)"]
    assert await Supervisor(str(socket_path), 2, command=fails).run() == 1
    assert signal.getsignal(signal.SIGTERM) is _theirs
    assert signal.getsignal(signal.SIGHUP) is _theirs


async def test_first_returns_with_the_first_wait_and_cancels_the_others() -> None:
    done = asyncio.Event()
    cancelled = asyncio.Event()

    async def never() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    done.set()
    await first(never(), done.wait())
    assert cancelled.is_set()


class _Recorded:
    """A Service that writes down each part of its life, in order."""

    def __init__(self, *, starts: bool = True, fail_startup: bool = False) -> None:
        self.calls: list[str] = []
        self.starts = starts
        self.fail_startup = fail_startup
        self.serving = asyncio.Event()
        self.done = asyncio.Event()  # the main loop returns once set

    async def startup(self, tasks: anyio.abc.TaskGroup) -> bool:
        self.calls.append("startup")
        if self.fail_startup:
            raise OSError("address in use")
        return self.starts

    async def ready(self) -> None:
        self.calls.append("ready")
        self.serving.set()

    async def main_loop(self) -> None:
        await self.done.wait()
        self.calls.append("main loop returned")

    def stopping(self, signum: signal.Signals, again: bool) -> None:
        self.calls.append(f"{signum.name} again" if again else signum.name)

    def hangup(self, tasks: anyio.abc.TaskGroup) -> None:
        self.calls.append("hangup")

    async def shutdown(self, started: bool) -> None:
        self.calls.append(f"shutdown({started})")

    async def cleanup(self) -> None:
        await anyio.lowlevel.checkpoint()  # shielded: a cancelled life gets here whole
        self.calls.append("cleanup")


@pytest.mark.usefixtures("their_handlers")
async def test_a_lifecycle_runs_each_part_in_order_and_puts_the_handlers_back() -> None:
    service = _Recorded()
    life = asyncio.create_task(Lifecycle(service).run())
    await service.serving.wait()
    os.kill(os.getpid(), signal.SIGHUP)
    os.kill(os.getpid(), signal.SIGTERM)
    assert await life is True
    assert service.calls == ["startup", "ready", "hangup", "SIGTERM", "shutdown(True)", "cleanup"]
    assert signal.getsignal(signal.SIGTERM) is _theirs


@pytest.mark.usefixtures("their_handlers")
async def test_a_second_stop_signal_reaches_the_service_as_again() -> None:
    stop = asyncio.Event()
    stop.set()  # stopped already, as serve(stop=...) may be: the next signal is the second
    received = asyncio.Event()

    class Slow(_Recorded):
        async def shutdown(self, started: bool) -> None:
            os.kill(os.getpid(), signal.SIGTERM)
            await received.wait()
            await super().shutdown(started)

        def stopping(self, signum: signal.Signals, again: bool) -> None:
            super().stopping(signum, again)
            received.set()

    service = Slow()
    assert await Lifecycle(service, stop=stop).run() is True
    assert service.calls == ["startup", "ready", "SIGTERM again", "shutdown(True)", "cleanup"]


async def test_a_main_loop_that_returns_ends_the_life_without_a_signal() -> None:
    service = _Recorded()
    service.done.set()
    assert await Lifecycle(service, handle_signals=False).run() is True
    assert service.calls == ["startup", "ready", "main loop returned", "shutdown(True)", "cleanup"]


async def test_a_service_that_does_not_start_is_shut_down_and_cleaned_up() -> None:
    service = _Recorded(starts=False)
    assert await Lifecycle(service, handle_signals=False).run() is False
    assert service.calls == ["startup", "shutdown(False)", "cleanup"]


async def test_a_failed_startup_is_raised_as_it_was_after_shutdown_and_cleanup() -> None:
    service = _Recorded(fail_startup=True)
    with pytest.raises(OSError, match="address in use"):  # not an exception group
        await Lifecycle(service, handle_signals=False).run()
    assert service.calls == ["startup", "shutdown(False)", "cleanup"]


async def test_a_cancelled_life_skips_the_graceful_shutdown_but_cleans_up() -> None:
    service = _Recorded()
    async with anyio.create_task_group() as tg:  # (anyio cancels every await until it ends)
        tg.start_soon(Lifecycle(service, handle_signals=False).run)
        await service.serving.wait()
        tg.cancel_scope.cancel()
    assert service.calls == ["startup", "ready", "cleanup"]
