"""A connection's output: the queue of encoded frames and the emitter that fills it.

:class:`OutputQueue` holds the Response frames waiting for the writer,
bounded in bytes (``await emit()`` waits while it is full); :class:`Emitter`
turns a handler's ``emit()`` into frames, checked by the connection, from the
loop or from worker threads, and ends the output under the lock the threads
emit under, so nothing of theirs follows the ErrorResponse. The agent decides
when the queue is written.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from ..config import DEFAULT_MAX_OUTPUT
from ..toolkit._handler import READY
from ..wire._messages import (
    POINT_HEADERS,
    DataMessage,
    EndBatch,
    Point,
    data_header,
    encode_response,
)
from ..wire._protocol import UDFConnection

__all__ = ["Emitter", "OutputQueue"]


class OutputQueue:
    """Encoded response frames waiting for the writer, bounded in bytes.

    ``put`` never waits: the frame is queued at once, so output order is the
    order of the calls. Producers then await :meth:`wait_space` while the
    queue holds ``limit`` bytes or more. Control responses (keepalive, errors)
    use the same queue and are never refused, so they cannot deadlock behind
    data.
    """

    __slots__ = (
        "_drained",
        "_emptying",
        "_frames",
        "_full",
        "_has_data",
        "_space",
        "closed",
        "deferred",
        "limit",
        "size",
    )

    def __init__(self, limit: int = DEFAULT_MAX_OUTPUT) -> None:
        self.limit = limit
        self.size = 0
        self.closed = False
        # True while the dispatcher runs without suspending and will write
        # what is queued itself before it next waits (Agent._dispatch_loop):
        # emit() then need not wake the writer task.
        self.deferred = False
        self._frames: list[bytes] = []
        self._has_data = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        # True from when _space is cleared until written() sets it again:
        # written() runs once per flush (per read from Kapacitor) and sets
        # the events only when someone may be waiting for them.
        self._full = False
        self._drained = asyncio.Event()  # set when the writer has flushed everything
        self._emptying = False  # wait_empty() is waiting for _drained

    def put(self, frame: bytes) -> bool:
        """Queue ``frame`` and wake the writer; True while the queue is below its limit.

        For replies and keepalive answers: they go out at once, even while
        the dispatcher defers data frames.
        """
        self._has_data.set()
        frames = self._frames
        frames.append(frame)
        self.size += len(frame)
        if self.size < self.limit:
            return True
        self._full = True
        self._space.clear()
        return False

    def put_many(self, frames: list[bytes]) -> None:
        """Queue ``frames`` (a worker thread's), waking the writer as emit() does; none once closed.

        (The connection refuses what is emitted after it ended, and
        :meth:`Emitter.end` queues what was emitted before: frames reaching
        a closed queue have no writer left to take them.)
        """
        if frames and not self.closed:
            if not self._frames and not self.deferred:
                self._has_data.set()  # while deferred the dispatcher writes them (see emit())
            self._frames.extend(frames)
            self.size += sum(map(len, frames))
            if self.size >= self.limit:
                self._full = True
                self._space.clear()

    async def wait_space(self) -> None:
        """Wait until the queue is below its limit (or closed)."""
        while self.size >= self.limit and not self.closed:
            await self._space.wait()

    async def wait_data(self) -> None:
        """Wait until there is something to write (or the queue is closed)."""
        while not self._frames and not self.closed:
            self._has_data.clear()
            await self._has_data.wait()

    def take(self) -> bytes:
        """Remove and return everything queued, as one buffer."""
        frames = self._frames
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        self._frames = []
        return data

    def written(self, nbytes: int) -> None:
        """The writer flushed ``nbytes`` taken earlier: make room for producers."""
        self.size -= nbytes
        if self._full and self.size < self.limit:
            self._full = False
            self._space.set()
        if self._emptying and not self.size:
            self._emptying = False
            self._drained.set()

    async def wait_empty(self) -> None:
        """Wait until the writer has flushed every frame queued (or the queue is closed)."""
        while self.size and not self.closed:
            self._emptying = True
            self._drained.clear()
            await self._drained.wait()

    def undefer(self) -> None:
        """The dispatcher suspended mid-run: the writer takes over what is queued."""
        self.deferred = False
        if self._frames:
            self._has_data.set()

    def close(self) -> None:
        """No more frames will be accepted; wake everyone waiting."""
        self.closed = True
        self._has_data.set()
        self._space.set()
        self._drained.set()


class Emitter:
    """Turns a handler's ``emit()`` calls into queued Response frames.

    The connection (:meth:`UDFConnection.send_data
    <aioudf.wire.UDFConnection.send_data>`) says whether each message
    may go: it raises :class:`~aioudf.EmitError` to the handler for one out
    of turn, :class:`~aioudf.ConnectionFailed` once the connection ended.
    On the event loop thread a frame goes straight into the output queue. From
    a worker thread (a blocking handler) frames are collected under a lock and
    handed to the loop in runs; the thread blocks while the output is full.
    """

    def __init__(
        self, output: OutputQueue, loop: asyncio.AbstractEventLoop, conn: UDFConnection
    ) -> None:
        self._output = output
        self._loop = loop
        self._conn = conn
        self._loop_thread = threading.get_ident()
        self._lock = threading.Lock()
        self._from_threads: list[bytes] = []
        self._from_threads_size = 0
        # The worker thread running a run of data requests the loop awaits
        # (see _HOLD): its frames wake nobody, the run's end flushes them.
        self._holder: int | None = None
        # [metrics] Counted here, published by the writer (aioudf.serving's metrics).
        self.points_emitted = 0
        self.batches_emitted = 0

    def emit(self, message: DataMessage) -> Awaitable[None]:
        if threading.get_ident() != self._loop_thread:
            self._emit_from_thread(message)
            return READY
        if type(message) is Point:
            if self._conn.points_allowed:
                # conn.send_data(message), inlined for the bulk of the
                # traffic: the connection's flag says a Point may go now.
                data = message.SerializeToString()
                frame = (POINT_HEADERS.get(len(data)) or data_header(Point, len(data))) + data
            else:
                frame = self._conn.send_data(message)  # raises why it may not go
            self.points_emitted += 1  # [metrics]
        else:
            frame = self._conn.send_data(message)
            if type(message) is EndBatch:
                self.batches_emitted += 1  # [metrics]
        output = self._output
        # output.put(frame), inlined: this runs once per point, and the call
        # alone was 2% of a mirror's time (measured).
        frames = output._frames
        if not frames and not output.deferred:
            # The writer waits for data only once it has found the queue
            # empty: waking it on that transition is enough. While the
            # dispatcher defers, it writes the frames itself.
            output._has_data.set()
        frames.append(frame)
        output.size += len(frame)
        if output.size < output.limit:
            return READY
        output._full = True
        output._space.clear()
        return output.wait_space()

    def emit_response(self, response: Any, which: str) -> Awaitable[None]:
        """emit() for a whole ``Response`` carrying a point, ``begin`` or ``end`` (``which``).

        The Response is serialized as it is: its bytes are the frame's body,
        where emit() of its message would wrap that in a new Python object
        first. For the compat agent's ``write_response()``, from any thread.
        The connection checks it as it checks emit()'s messages.
        """
        thread = threading.get_ident()
        if thread == self._loop_thread or which != "point":
            return self.emit(getattr(response, which))
        output = self._output
        # _emit_from_thread(), inlined: this runs once per point.
        with self._lock:
            if self._conn.points_allowed:
                frame = encode_response(response)
            else:
                frame = self._conn.send_data(response.point)  # raises why it may not go
            self.points_emitted += 1  # [metrics]
            frames = self._from_threads
            frames.append(frame)
            self._from_threads_size += len(frame)
            first = len(frames) == 1
            full = self._from_threads_size + output.size >= output.limit
        if first and self._holder != thread:
            self._loop.call_soon_threadsafe(self.flush_thread_frames)
        if full:
            asyncio.run_coroutine_threadsafe(self._flush_and_wait(), self._loop).result()
        return READY

    def _emit_from_thread(self, message: DataMessage) -> None:
        with self._lock:
            # Checked under the lock end() takes: a frame let through here is
            # queued before whatever ends the connection.
            frame = self._conn.send_data(message)
            if type(message) is Point:
                self.points_emitted += 1  # [metrics]
            elif type(message) is EndBatch:
                self.batches_emitted += 1  # [metrics]
            self._from_threads.append(frame)
            self._from_threads_size += len(frame)
            first = len(self._from_threads) == 1
            full = self._from_threads_size + self._output.size >= self._output.limit
        if first and self._holder != threading.get_ident():
            self._loop.call_soon_threadsafe(self.flush_thread_frames)
        if full:
            asyncio.run_coroutine_threadsafe(self._flush_and_wait(), self._loop).result()

    def hold(self) -> None:
        """Worker thread, as the run starts: its frames wait for its end (or _HOLD)."""
        self._holder = threading.get_ident()

    def release(self) -> None:
        """Worker thread, as the run ends."""
        self._holder = None

    def flush_thread_frames(self) -> None:
        """Move frames emitted from worker threads into the output (loop thread)."""
        with self._lock:
            frames = self._take_thread_frames()
        self._output.put_many(frames)

    def _take_thread_frames(self) -> list[bytes]:
        frames = self._from_threads
        self._from_threads = []
        self._from_threads_size = 0
        return frames

    def end(self, end: Callable[[], bytes]) -> None:
        """End the output with ``end()`` (the connection's fail or close), its bytes queued last.

        Under the lock worker threads emit under, and after the frames they
        emitted before it: no frame of theirs can follow what ``end()``
        returns (an ErrorResponse), and the connection refuses what they
        emit afterwards (loop thread).
        """
        with self._lock:
            frames = self._take_thread_frames()
            last = end()
        self._output.put_many(frames)
        if last:
            self._output.put(last)

    async def _flush_and_wait(self) -> None:
        self.flush_thread_frames()
        await self._output.wait_space()
