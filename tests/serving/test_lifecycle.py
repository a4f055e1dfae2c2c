"""What serve(), the supervisor and a worker share: signal handlers put back as found."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from aioudf.serving._lifecycle import first, signal_handlers
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
