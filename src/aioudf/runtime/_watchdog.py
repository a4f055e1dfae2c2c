"""Warn when the event loop is blocked: the usual reason keepalives are missed.

An ``async def`` handler method that blocks (``time.sleep``, a synchronous
HTTP client, a long computation) stops the whole event loop: keepalives go
unanswered, Kapacitor fails the task with "keepalive timedout", and every
other connection of a socket UDF stalls too. Nothing in the UDF's own log says
why. :class:`LoopWatchdog` does: a daemon thread pings the loop a few times a
threshold and, when a ping stays unanswered for longer than the threshold,
logs a warning naming the function, file and line the loop is stuck in (read
from the loop thread's current Python frame) and pointing at
:class:`~aioudf.BlockingHandler`. When the loop answers again it logs how long
the stall lasted.

The per-point path is untouched: the loop runs one tiny callback per ping,
whatever the traffic. Process UDFs (``aioudf run``, :func:`aioudf.run`) and
:func:`aioudf.serve` / ``aioudf serve`` start one by default
(``warn_blocked=`` / ``--warn-blocked SECONDS``, 0 disables it); an embedded
:class:`~aioudf.UnixServer` starts one only when asked (``warn_blocked=``),
since the service around it owns the loop. It can also be used on its own::

    async def main() -> None:
        with LoopWatchdog(threshold=0.5):
            ...
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import sysconfig
import threading
import time
import traceback
from types import FrameType, TracebackType

from ..config import DEFAULT_WARN_BLOCKED

__all__ = ["DEFAULT_WARN_BLOCKED", "LoopWatchdog"]

logger = logging.getLogger("aioudf")


# Frames inside these directories are machinery, not the code to blame: the
# loop itself, the standard library, installed packages and aioudf.
_ASYNCIO_DIR = os.path.dirname(asyncio.__file__)
_AIOUDF_DIR = os.path.dirname(os.path.abspath(__file__))
_LIBRARY_DIRS = tuple(
    {
        os.path.abspath(path)
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
        if (path := sysconfig.get_paths().get(key))
    }
)
# Frames shown with the warning.
_STACK_LIMIT = 12


def _is_machinery(filename: str) -> bool:
    path = os.path.abspath(filename)
    return path.startswith(_AIOUDF_DIR + os.sep) or path.startswith(_LIBRARY_DIRS)


def _callback_frames(frame: FrameType | None) -> list[FrameType]:
    """The frames of the callback the loop is running, innermost first.

    Walks outwards and stops at asyncio's own frames (the loop's run_once and
    what called the loop), which are the same for every stall.
    """
    frames: list[FrameType] = []
    while frame is not None:
        if os.path.abspath(frame.f_code.co_filename).startswith(_ASYNCIO_DIR + os.sep):
            break
        frames.append(frame)
        frame = frame.f_back
    return frames


def _describe(frame: FrameType) -> str:
    code = frame.f_code
    name = getattr(code, "co_qualname", code.co_name)
    return f"{name}() at {code.co_filename}:{frame.f_lineno}"


class LoopWatchdog:
    """A daemon thread that warns when the running event loop stops answering.

    ``threshold``
        seconds without the loop running a callback before the warning.
    ``interval``
        seconds between pings (default: a quarter of the threshold, at most
        one second); a stall is reported at most ``interval`` after it crosses
        the threshold.

    :meth:`start` must be called from the loop's thread while the loop runs
    (from a coroutine); :meth:`stop` ends the thread and waits for it. Used as
    a context manager, it does both.
    """

    def __init__(self, threshold: float = DEFAULT_WARN_BLOCKED, *, interval: float | None = None):
        if not threshold > 0:  # also refuses nan
            raise ValueError(
                "threshold must be positive (to disable the watchdog, do not start it)"
            )
        self.threshold = threshold
        self.interval = interval if interval is not None else min(threshold / 4, 1.0)
        if not self.interval > 0:
            raise ValueError("interval must be positive")
        #: Stalls reported so far.
        self.stalls = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        # The loop writes the number of the last ping it answered and when;
        # one tuple assignment, so the watchdog thread reads both consistently.
        self._answered: tuple[int, float] = (0, 0.0)

    def start(self) -> None:
        """Start watching the running loop (call from a coroutine)."""
        if self._thread is not None:
            raise RuntimeError("this LoopWatchdog is already started")
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stopping.clear()
        self._answered = (0, 0.0)
        self._thread = threading.Thread(
            target=self._watch, name="aioudf loop watchdog", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it (it wakes at once)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        if thread is not threading.current_thread():
            thread.join()

    def __enter__(self) -> LoopWatchdog:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- the loop side: one callback per ping ------------------------------------------

    def _answer(self, ping: int) -> None:
        self._answered = (ping, time.monotonic())

    # ---- the watchdog thread ---------------------------------------------------

    def _watch(self) -> None:
        loop = self._loop
        assert loop is not None
        ping = 0
        sent = 0.0
        warned = False
        where = ""
        while True:
            answered, answered_at = self._answered
            if answered == ping:
                if warned:
                    logger.warning(
                        "event loop responsive again after being blocked for %.1f s in %s",
                        answered_at - sent,
                        where,
                    )
                    warned = False
                ping += 1
                sent = time.monotonic()
                try:
                    loop.call_soon_threadsafe(self._answer, ping)
                except RuntimeError:  # the loop is closed: nothing left to watch
                    return
            elif not warned and time.monotonic() - sent >= self.threshold:
                warned = True
                self.stalls += 1
                where = self._report(time.monotonic() - sent)
            if self._stopping.wait(self.interval):
                break
        if warned:
            # stop() is called from the loop, so the loop is running again,
            # whether or not it got to the last ping.
            answered, answered_at = self._answered
            ended = answered_at if answered == ping else time.monotonic()
            logger.warning(
                "event loop responsive again after being blocked for %.1f s in %s",
                ended - sent,
                where,
            )

    def _report(self, blocked: float) -> str:
        """Log where the loop thread is; return the short location."""
        frame = sys._current_frames().get(self._loop_thread)
        try:
            frames = _callback_frames(frame) or ([frame] if frame is not None else [])
            if not frames:
                where = "an unknown place (the loop thread has no Python frame)"
                stack = ""
            else:
                culprit = next(
                    (f for f in frames if not _is_machinery(f.f_code.co_filename)), frames[0]
                )
                where = _describe(culprit)
                shown = reversed(frames[:_STACK_LIMIT])  # most recent call last
                summary = traceback.StackSummary.extract((f, f.f_lineno) for f in shown)
                stack = "".join(summary.format())
        finally:
            del frame  # frames hold locals alive: do not keep them
        logger.warning(
            "event loop blocked for %.1f s (threshold %g s) in %s: while it is blocked, "
            "keepalives go unanswered (past the UDF timeout, Kapacitor fails the task with "
            "'keepalive timedout') "
            "and every connection waits. Run blocking code in a worker thread: subclass "
            "aioudf.BlockingHandler (plain def methods), or await asyncio.to_thread(...). "
            "Loop thread stack, most recent call last:\n%s",
            blocked,
            self.threshold,
            where,
            stack.rstrip("\n"),
        )
        return where
