"""The asyncio agent: one Kapacitor connection driven through a handler.

The agent is a shell around :class:`~aioudf.wire.UDFConnection`, which
holds every rule of the conversation (request order, keepalive answers, the
reply each request is owed, what a refused Init forbids, the ErrorResponse).
The agent adds what needs an event loop: scheduling, backpressure, worker
threads for a :class:`~aioudf.BlockingHandler`, and the I/O. Beside its own
:meth:`Agent.run` it runs a writer task and, for a reader that cannot push,
a reader task, in one task group:

reading
    bytes are fed to the connection, the keepalive answers it produced are
    written at once, and every request is queued in a bounded backlog (a
    deque). A socket's or a pipe's reader pushes (:class:`~aioudf.runtime.PushReader`):
    its bytes are decoded in the transport's own callback, no task involved;
    any other reader is read by the ``read`` task. Either way reading goes
    on while a handler call runs, so a keepalive is answered even when
    points are queued in front of it.
``write``
    drains the output (an :class:`OutputQueue` of encoded frames, bounded in
    bytes) into the transport, coalescing whatever accumulated into one
    write, and awaits ``drain()`` so a slow reader on Kapacitor's side slows
    us down.

:meth:`Agent.run` itself dispatches: it takes requests from the backlog one
at a time, in order, calls the handler (on the loop for ``async def``
methods, in a worker thread for plain ones) and hands the results to the
connection, which turns them into the replies.

Kapacitor writes to a UDF in small pieces, so what each read costs counts
more than what each point does: a read is decoded where it arrives and
wakes the dispatcher alone, which handles it and writes what it produced
itself (the writer task is woken only for replies, or when a handler
suspends part way through a run). While requests arrive fast, the
transport pauses for a millisecond after each read (read pacing,
``_PACE``), so that the next read takes many of Kapacitor's writes at once.

When the backlog is full, reading pauses until the handler catches up; a
keepalive arriving then waits in the socket like everything else, so a handler
stalled for longer than Kapacitor's UDF timeout gets the task failed with
"keepalive timedout", which is the truth. When the output is full,
``await emit()`` waits, and the next request is not dispatched until there is
room again.

Why one module of this size: the reader callback, the dispatch loop, the
blocking runs and the hand-over pause all work on the one connection's
backlog, bounds and flags, on the hot path (one attribute read where a
split would pass state between objects per read); the output is
``_output``, the handler's creation ``_handlers``.

A protocol error or a handler exception ends the connection: requests accepted
before it are processed first, everything emitted so far is written, then an
ErrorResponse naming the cause, and :meth:`Agent.run` raises
:class:`~aioudf.ConnectionFailed`.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
from google.protobuf.message import DecodeError

from ..config import (
    DEFAULT_MAX_BACKLOG,
    DEFAULT_MAX_OUTPUT,
    DEFAULT_STOP_TIMEOUT,
    Config,
)
from ..errors import (
    ConnectionFailed,
    EmitError,
    InitError,
    OptionError,
    ProtocolError,
    RestoreError,
)
from ..toolkit._handler import BaseHandler
from ..toolkit._options import bind_options, parse_options
from ..wire._messages import (
    BeginBatch,
    EndBatch,
    InfoRequest,
    InitRequest,
    Point,
    RestoreRequest,
    SnapshotRequest,
)
from ..wire._protocol import Ending, UDFConnection, snapshot_bytes
from ._handlers import _run_sync
from ._hooks import NO_METRICS
from ._logs import current_connection, ensure_connection_context
from ._output import Emitter, OutputQueue
from ._streams import ByteReader, ByteWriter, PushReader

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..config import ConnectionSettings
    from ._hooks import MetricsHooks

__all__ = [
    "DEFAULT_MAX_BACKLOG",
    "DEFAULT_MAX_OUTPUT",
    "DEFAULT_STOP_TIMEOUT",
    "Agent",
    "ByteReader",
    "ByteWriter",
    "HandOff",
]

logger = logging.getLogger("aioudf")

# Points decoded per run before the reader lets the dispatcher take them.
# Decoding a whole read (or all the socket buffer holds: up to the backlog
# limit) before dispatching keeps thousands of parsed points alive at once,
# and protobuf's allocator frees them in bulk, trims the heap (upb calls
# malloc_trim every 10,000 frees) and faults the pages back in on the next
# parse. In runs of 256, a mirror over a socket takes a third of the page
# faults per point and spends 7-9% of its CPU time in the kernel instead of
# 12-19%, and its peak RSS is 37 MB instead of 60 MB (measured); the extra
# task switches cost nothing measurable. Runs of 64 keep the points being
# worked on within the CPU's L2 cache, and halve the page faults again: a
# mirror as a process UDF over 300,000 points took 14,200 minor faults
# instead of 22,000-28,500, and 0.92-0.96 x the CPU time (medians of 8 and
# 10 paired whole-process runs); a point parsed while 1,000 others are held
# costs about twice what it costs while 64 are.
_DECODE_RUN = 64

# Bytes a pushing reader (streams.PushReader) may hand over before they are
# decoded: past this, the transport stops reading until half is decoded.
_READ_AHEAD = 1 << 20

# Seconds the dispatcher may run a handler that never suspends before it
# yields to the event loop. An ``async def point()`` that computes without
# awaiting anything would otherwise keep the loop for a whole backlog (up to
# the output queue's limit: thousands of points, a tenth of a second each),
# one connection after another: with 200 connections flooding one server,
# a pass of the loop took 8 s (measured), and every reader, so every
# keepalive answer, waited that long. The clock is read every
# _SLICE_CHECK requests, not for each: the slice then costs a mirror 0.7%
# more instructions per point (benchmarks/instructions.py).
_TIME_SLICE = 0.002
_SLICE_CHECK = 16

# Consecutive data requests a blocking handler processes per worker-thread
# call: one thread hop per run of points instead of one per point.
_THREAD_BATCH = 512

# Seconds at most that frames a blocking handler emits during such a run wait
# for the run to end before the loop writes them anyway. The end of the run
# writes them (the loop wakes for it in any case); waking the loop for the
# first frame as well cost a wake-up and a handover of the GIL each time,
# several per run (measured under a real kapacitord, which writes ~11
# points a read on a socket).
_HOLD = 0.01

# Read pacing. Kapacitor writes each request on its own (a point is two
# write(2)s), so a UDF that keeps up reads one or a few points a wake-up,
# and pays a pass of the event loop, a read and a write (and Kapacitor a
# read of its own) for each. Once _PACE_AFTER requests have arrived within
# _PACE_WINDOW seconds, the transport stops reading for _PACE seconds after
# each read: Kapacitor's writes gather in the socket meanwhile and the next
# read takes them all, while what was read is handled and answered. At
# 1,000 points/s (one a millisecond) no pause starts, and a point arriving
# during one waits at most _PACE. A read of _PACE_CEILING bytes or more
# (input arriving faster than it is handled: a backlog, the bulk of a
# batch) starts none: the handler has work enough. Through a real
# kapacitord, a socket mirror at ~45,000 points/s went from 4-12 points a
# read to ~40 and used 0.67-0.74 x the CPU a point (paired rounds,
# benchmarks/README.md, "Under kapacitord"). uvloop's timers count whole
# milliseconds: a _PACE below one would be no pause there.
_PACE = 0.001
_PACE_WINDOW = 0.001
_PACE_AFTER = 8
_PACE_CEILING = 32768

_METHODS = {Point: "point", BeginBatch: "begin_batch", EndBatch: "end_batch"}


class _Undeferring:
    """Awaits ``coro`` (the dispatch loop), calling ``agent._suspended()`` as it suspends in a run.

    While the dispatcher runs without suspending, ``emit()`` leaves its frames
    for the dispatcher to write at the end of the run (``OutputQueue.deferred``).
    If a handler suspends part way instead, those frames must not wait for it,
    nor must the input it has not decoded yet (keepalives to answer): every
    suspension of the loop passes through here, and ``Agent._suspended`` sees
    to both. This costs a step of this generator per suspension, where a
    callback scheduled at the start of every run cost an extra pass of the
    event loop per read. Between runs (``Agent._dispatching`` false: waiting
    for input, once a read) nothing is deferred and nothing is to decode:
    the call is skipped.
    """

    __slots__ = ("_agent", "_coro")

    def __init__(self, coro: Coroutine[Any, Any, None], agent: Agent) -> None:
        self._coro = coro
        self._agent = agent

    def __await__(self) -> Generator[Any, Any, None]:
        coro = self._coro
        agent = self._agent
        suspended = agent._suspended
        send = coro.send
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                if error is None:
                    yielded = send(value)
                else:
                    yielded = coro.throw(error)
                    error = None
            except StopIteration:
                return
            if agent._dispatching:  # (OutputQueue.deferred only while it is)
                suspended()
            try:
                value = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # cancellation included: the loop handles it
                error = exc
                value = None


class _EndOfInput:
    """Backlog marker: Kapacitor closed its side cleanly."""


class _Failure:
    """Backlog marker: the input failed, or the connection must end here, for ``ending``."""

    __slots__ = ("ending", "level")

    def __init__(self, ending: Ending, level: int = logging.WARNING) -> None:
        self.ending = ending
        self.level = level  # how the end is logged


class _Pause:
    """Backlog marker: stop here for a hand-over, after every request before it."""

    __slots__ = ("decision", "paused", "snapshot")

    def __init__(self) -> None:
        self.paused = asyncio.Event()  # the dispatcher stopped (snapshot taken, or not)
        self.snapshot: bytes | None = None  # None: the handler could not give one
        self.decision: asyncio.Future[bool] = asyncio.get_running_loop().create_future()


class HandOff:
    """A connection stopped at a safe point, ready to move to another process.

    ``state`` is the protocol state (:meth:`UDFConnection.export_state
    <aioudf.wire._protocol.UDFConnection.export_state>`: the Init request and the
    bytes received but not handled), ``snapshot`` the handler's own. Every
    request before that point has been handled and its output flushed to
    the transport. Exactly one of :meth:`commit` (another process serves the
    connection now: the agent ends without a word to Kapacitor) or
    :meth:`resume` (it stays: the agent reads on as if nothing happened).
    """

    def __init__(self, agent: Agent, pause: _Pause, state: bytes) -> None:
        self._agent = agent
        self._pause = pause
        self.state = state
        self.snapshot: bytes = pause.snapshot or b""
        init = agent._conn.init_request
        #: Kapacitor's ids of the task and node (empty before Init).
        self.task_id = init.taskID if init is not None else ""
        self.node_id = init.nodeID if init is not None else ""

    def commit(self) -> None:
        """The connection moved: end this agent quietly (no stop(), no ErrorResponse)."""
        if not self._pause.decision.done():
            self._agent._handed_over = True
            self._pause.decision.set_result(True)

    def resume(self) -> None:
        """The connection stays: handle requests and read again."""
        if not self._pause.decision.done():
            self._pause.decision.set_result(False)
            self._agent._start_reading()


class _HandlerFailed(Exception):
    def __init__(self, message: object, method: str, error: BaseException) -> None:
        super().__init__(method)
        self.message = message
        self.method = method
        self.error = error


class _RawRun:
    """Backlog marker: the raw Points behind it (bytes) are frames ``frame`` on.

    A blocking ``point()`` gets its Points as the bytes of each message
    (:meth:`UDFConnection.next_requests` with ``raw_points``), parsed on
    the handler's own thread (:meth:`Agent._process_run`); the marker
    numbers them for the error a Point that does not parse ends the
    connection with.
    """

    __slots__ = ("frame",)

    def __init__(self, frame: int) -> None:
        self.frame = frame


class _BadPoint:
    """What a run of raw Points stopped at: one that does not parse (frame ``frame``)."""

    __slots__ = ("error", "frame", "point")

    def __init__(self, point: bytes, frame: int, error: DecodeError) -> None:
        self.point = point
        self.frame = frame
        self.error = error


class Agent:
    """Serve one Kapacitor connection with ``handler``.

    ``reader`` and ``writer`` are the two directions of the connection
    (``asyncio.StreamReader``/``StreamWriter`` or anything with the same
    ``read``/``write``/``drain``/``close`` methods). :meth:`run` returns when
    Kapacitor has closed its side and every response has been written, and
    raises :class:`~aioudf.ConnectionFailed` when the connection ended on an
    error.

    The limits that bound its memory (``max_frame_size``, ``max_backlog``,
    ``max_output``, ``read_size``, ``stop_timeout``, ``close_timeout``) come
    from ``config`` (a :class:`~aioudf.config.Config`) with ``settings``
    changed, checked here: an unknown or invalid setting raises
    :class:`~aioudf.ConfigError` before anything is read.
    """

    def __init__(
        self,
        handler: BaseHandler,
        reader: ByteReader,
        writer: ByteWriter,
        *,
        config: Config | None = None,
        name: str = "",
        connection: UDFConnection | None = None,
        metrics: MetricsHooks | None = None,
        **settings: Unpack[ConnectionSettings],
    ) -> None:
        config = Config.of(config, **settings)
        self.config = config
        self.handler = handler
        self.name = name or f"{type(handler).__name__}@{id(self):x}"
        self._reader = reader
        self._writer = writer
        # A connection taken over from another process continues its state.
        self._conn = connection or UDFConnection(config.max_frame_size)
        # What the handler emits is checked against the edge it provides.
        self._conn.provides = (
            None if getattr(handler, "_aioudf_any_edge", False) else handler.provides
        )
        self._handed_over = False  # True once the connection moved to another process
        self._ended = asyncio.Event()  # set when run() ends
        self._max_backlog = config.max_backlog
        self._read_size = config.read_size
        self._stop_timeout = config.stop_timeout
        self._close_timeout = config.close_timeout
        self._backlog: collections.deque[Any] = collections.deque()
        self._output = OutputQueue(config.max_output)
        self._requests_ready = asyncio.Event()
        self._backlog_space = asyncio.Event()
        self._reader_paused = False
        self._reader_scope = anyio.CancelScope()
        self._reader_stopped = asyncio.Event()  # set once the read loop has returned
        self._done = False
        self._flushed = False  # the writer emptied the output after it was closed
        self._emitter = Emitter(self._output, asyncio.get_running_loop(), self._conn)
        handler._aioudf_emitter = self._emitter
        if type(handler).emit is BaseHandler.emit:
            # ``self.emit(p)`` then finds the emitter's method on the instance:
            # one Python call a point instead of two (BaseHandler.emit only
            # checks that an emitter is attached, and here one is).
            handler.emit = self._emitter.emit  # type: ignore[method-assign]
        # [metrics] One object whose methods are called at the hook points.
        self._metrics = (
            metrics.connection(self._emitter, self._backlog, self._output)
            if metrics is not None
            else NO_METRICS
        )
        # [metrics] Called at every flush (once a read from Kapacitor): not at
        # all without metrics, where it would be a call that does nothing.
        self._publish = None if metrics is None else self._metrics.publish
        if (init := self._conn.init_request) is not None:  # taken over after its Init
            self._metrics.bind(init.taskID, init.nodeID)
        # Data methods written as plain functions, run in worker threads.
        self._blocking_methods: dict[type, Callable[[Any], None]] = {}
        for kind, method in _METHODS.items():
            function = getattr(handler, method)
            if not inspect.iscoroutinefunction(function):
                self._blocking_methods[kind] = function
        # A blocking point() gets its Points raw, parsed on its own thread:
        # the memory a Point takes is then allocated and freed by one
        # thread (a compat outliers script in bulk: 0.70 x the CPU a point
        # of the loop's parse, benchmarks/README.md). _run_kinds: what a
        # run handed to that thread takes.
        self._raw_points = Point in self._blocking_methods
        self._run_kinds: set[type] = set(self._blocking_methods)
        if self._raw_points:
            self._run_kinds |= {bytes, _RawRun}
        # [worker thread] The frame of the raw Point a run begins with when
        # the run before it ended inside the same marker's Points.
        self._raw_next = 0
        self._table: dict[type, Callable[[Any], Awaitable[None]]] = {
            InfoRequest: self._on_info,
            InitRequest: self._on_init,
            SnapshotRequest: self._on_snapshot,
            RestoreRequest: self._on_restore,
            BeginBatch: self._data_call("begin_batch"),
            Point: self._data_call("point"),
            EndBatch: self._data_call("end_batch"),
        }
        if self._raw_points:
            self._table[bytes] = self._table[_RawRun] = self._table[Point]
        # An async point() is awaited by the dispatcher itself, not through
        # the table (see _dispatch_loop); None when points go another way.
        point: Callable[[Point], Awaitable[None]] = (
            handler._aioudf_fast_point() or getattr(handler, "point")  # noqa: B009
        )
        self._async_point = None if Point in self._blocking_methods else point
        self._run_sync = _run_sync(handler)
        # A reader that pushes what it receives (streams.PushReader) is not
        # read by a task: its bytes are decoded where they arrive (_received).
        self._push: PushReader | None = reader if isinstance(reader, PushReader) else None
        # Blocking runs in flight, and their sweeper (see _HOLD).
        self._runs = 0
        self._sweeper: asyncio.TimerHandle | None = None
        self._attached = False  # the push reader delivers to _received
        self._eof_seen = False  # it delivered the end of input (not yet decoded up to)
        self._input_held = False  # decoding waits for room in the output
        self._push_paused = False  # the transport is paused by us
        self._take_scheduled = False  # _take_to_bound is scheduled
        # False once decoding found no whole frame, until more bytes come:
        # a look costs a few calls, and each read would pay for two or three.
        self._fresh = True
        self._dispatching = False  # the dispatcher is in a run (not waiting for input)
        # Read pacing (see _PACE): requests decoded since _window_start, and
        # the timer that resumes reading while a pause lasts.
        self._window_start = 0.0
        self._window_requests = 0
        self._pacing: asyncio.TimerHandle | None = None
        self._context = contextvars.copy_context()  # what _received logs in (see _attach)

    # ---- life -----------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it ends; raise ConnectionFailed on error."""
        # [logs] Records logged while serving carry the connection (aioudf.runtime._logs).
        with ensure_connection_context(self.name) as context:
            if (init := self._conn.init_request) is not None:  # taken over after its Init
                context.task, context.node = init.taskID, init.nodeID
            try:
                await self._run()
            finally:
                self._metrics.close()  # [metrics]
                if (ended := getattr(self.handler, "_aioudf_ended", None)) is not None:
                    ended()

    async def _run(self) -> None:
        if self._conn.buffered:
            self._decode_buffered()  # taken over: the bytes the previous process had not handled
        try:
            async with anyio.create_task_group() as tg:
                self._tasks = tg
                tg.start_soon(self._write_loop, name=f"{self.name} write")
                if self._push is not None:
                    self._attach()
                else:
                    tg.start_soon(self._read_loop, name=f"{self.name} read")
                await _Undeferring(self._dispatch_loop(), self)
                # Let the writer flush what is queued, but not forever.
                self._emitter.end(self._close_output)
                self._output.close()
                self._reader_scope.cancel()
                self._detach()
                tg.cancel_scope.deadline = anyio.current_time() + self._close_timeout
            self._done = True
            if not self._flushed and self._conn.failure is None:
                self._fail(Ending.unwritten(self._output.size, self._close_timeout))
                logger.warning("%s", self._conn.failure)
        finally:
            self._ended.set()
            if not self._done:
                self._detach()  # no read pause outlives the connection
                self._abort(Ending.cancelled())
            await self._close_transport()
        if self._conn.failure is not None:
            raise ConnectionFailed(self._conn.failure)

    def _close_output(self) -> bytes:
        self._conn.close_output()
        return b""

    def _fail(self, ending: Ending) -> None:
        """Record why the connection ends and queue the ErrorResponse (if it can be told)."""
        conn = self._conn
        first = conn.failure is None
        self._emitter.end(partial(conn.end, ending, send=not self._output.closed))
        if first:
            self._metrics.failed(ending.reason)  # [metrics]

    def _abort(self, ending: Ending) -> None:
        """Cancelled mid-way: hand pending output and an error to the transport."""
        self._fail(ending)
        try:
            if self._output._frames:
                self._writer.write(self._output.take())
        except Exception:  # the transport may already be gone
            pass
        self._output.close()

    async def _close_transport(self) -> None:
        try:
            self._writer.close()
            with anyio.move_on_after(self._close_timeout, shield=True):
                await self._writer.wait_closed()
        except Exception:  # closing a broken connection may fail; nothing to save
            pass

    # ---- ending from outside ------------------------------------------------

    async def finish(self, reason: str) -> None:
        """End the connection on our side: answer what was received, then tell ``reason``.

        Kapacitor never closes a task's connection by itself, so a server
        that stops must end it: reading stops, the requests in the bytes
        already read are handled (their output written), and an
        ErrorResponse saying ``reason`` follows. :meth:`run` then raises
        :class:`~aioudf.ConnectionFailed` with ``reason``. Returns once the
        end is queued; a connection already ending is left as it is.
        """
        if self._done:
            return
        await self._stop_reading()
        if not any(isinstance(item, (_EndOfInput, _Failure)) for item in self._backlog):
            self._decode_buffered()  # the reader did not end by itself: finish its bytes
        self._backlog.append(_Failure(Ending(reason), level=logging.INFO))
        self._requests_ready.set()

    # ---- hand-over ----------------------------------------------------------

    @property
    def handed_over(self) -> bool:
        """True once the connection moved to another process (see :meth:`pause_for_handover`)."""
        return self._handed_over

    async def pause_for_handover(self) -> HandOff | None:
        """Stop at the next point where the connection can move to another process.

        Reading stops (inside a batch, once its EndBatch has been read), every
        request read is handled, the handler's ``snapshot()`` is taken and the
        output is flushed to the transport; the agent then waits for the
        returned :class:`HandOff`'s ``commit()`` or ``resume()``. Returns
        ``None``, and carries on by itself, when the connection cannot move:
        it is ending, its Init was refused, its stream broke, or
        ``snapshot()`` failed (logged).
        """
        conn = self._conn
        if self._done or self._ended.is_set() or conn.failure is not None:
            return None
        if not conn.movable:
            return None
        await self._stop_reading()
        backlog = self._backlog
        if any(isinstance(item, (_EndOfInput, _Failure)) for item in backlog):
            return None  # the input ended by itself: the connection is ending
        pause = _Pause()
        handoff: HandOff | None = None
        try:  # (cancelled part way, e.g. by a timeout: the connection carries on)
            try:
                await self._read_to_batch_end()
            except ProtocolError as exc:
                backlog.append(_Failure(Ending.protocol(exc)))
            except OSError as exc:
                backlog.append(_Failure(Ending.lost(exc, writing=False)))
            backlog.append(pause)
            self._requests_ready.set()
            if (
                await self._unless_ended(pause.paused.wait())
                and pause.snapshot is not None
                and conn.can_export
                and await self._unless_ended(self._output.wait_empty())
            ):
                handoff = HandOff(self, pause, conn.export_state())
        finally:
            if handoff is None and not pause.decision.done():
                pause.decision.set_result(False)
                if not self._ended.is_set() and not any(
                    isinstance(item, (_EndOfInput, _Failure)) for item in backlog
                ):
                    self._start_reading()
        return handoff

    async def _unless_ended(self, waiting: Awaitable[Any]) -> bool:
        """Await ``waiting``; False if the agent ends first."""
        result = False
        async with anyio.create_task_group() as tg:

            async def wait() -> None:
                nonlocal result
                await waiting
                result = True
                tg.cancel_scope.cancel()

            async def ended() -> None:
                await self._ended.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(wait)
            tg.start_soon(ended)
        return result

    async def _read_to_batch_end(self) -> None:
        """Reading has stopped: read on until no batch is open (a batch moves whole)."""
        conn = self._conn
        while conn.in_batch:
            requests = conn.next_requests(_DECODE_RUN, raw_points=self._raw_points)
            self._send_answers()
            if requests:
                self._queue(requests)
                self._requests_ready.set()
                continue
            data = await self._reader.read(self._read_size)
            if not data:
                conn.receive_eof()  # raises: the stream ended inside the batch
                return
            conn.receive_data(data)

    async def _paused(self, pause: _Pause) -> bool:
        """The dispatcher reached a hand-over point: snapshot, then wait. True if handed over."""
        snapshot: Any = b""
        if self._conn.init_accepted:
            try:
                snapshot = snapshot_bytes(await self._call("snapshot", None))
            except Exception as exc:
                error = exc.error if isinstance(exc, _HandlerFailed) else exc
                logger.warning(
                    "stays in this process: %s.snapshot() failed: %s: %s",
                    type(self.handler).__name__,
                    type(error).__name__,
                    error,
                )
                snapshot = None
        pause.snapshot = snapshot
        pause.paused.set()
        return await pause.decision

    def _start_reading(self) -> None:
        """Read again after a hand-over that did not happen."""
        self._reader_scope = anyio.CancelScope()
        self._reader_stopped = asyncio.Event()
        self._reader_paused = False
        if self._push is not None:
            self._attach()
        else:
            self._tasks.start_soon(self._read_loop, name=f"{self.name} read")

    async def _stop_reading(self) -> None:
        """Stop the read loop and wait until it has returned (decoded requests are queued).

        A push reader stops at once; what it delivered stays in the
        connection's buffer, undecoded, as bytes read by the task would.
        """
        if self._push is not None:
            self._detach()
            return
        self._reader_scope.cancel()
        await self._reader_stopped.wait()

    def _decode_buffered(self) -> None:
        """Queue the requests in bytes read but not decoded yet (the reader has stopped)."""
        conn = self._conn
        try:
            while requests := conn.next_requests(_DECODE_RUN, raw_points=self._raw_points):
                self._queue(requests)
        except ProtocolError as exc:
            self._backlog.append(_Failure(Ending.protocol(exc)))
        finally:
            self._send_answers()

    # ---- reading ----------------------------------------------------------

    async def _read_loop(self) -> None:
        conn = self._conn
        backlog = self._backlog
        output = self._output
        read = self._reader.read
        ready = self._requests_ready
        next_requests = partial(conn.next_requests, raw_points=self._raw_points)
        queue = self._queue
        max_backlog = self._max_backlog
        with self._reader_scope:
            try:
                while True:
                    data = await read(self._read_size)
                    if not data:
                        conn.receive_eof()
                        backlog.append(_EndOfInput())
                        ready.set()
                        return
                    conn.receive_data(data)
                    # Points come in runs, queued with one extend() each; any
                    # other request comes alone. Keepalives are answered by
                    # the connection as they are decoded, and their answers
                    # go out at once, ahead of the points queued. No more
                    # points are decoded than the backlog has room for: the
                    # rest of the chunk waits as bytes, ~16 times smaller
                    # than parsed points.
                    while requests := next_requests(
                        max(1, min(_DECODE_RUN, max_backlog - len(backlog)))
                    ):
                        self._send_answers()
                        queue(requests)
                        ready.set()
                        if len(backlog) >= max_backlog:
                            self._reader_paused = True
                            self._backlog_space.clear()
                            await self._backlog_space.wait()
                            self._reader_paused = False
                        elif len(requests) == _DECODE_RUN:
                            # Let the dispatcher take this run before the
                            # next is decoded (see _DECODE_RUN). After a
                            # shorter run the chunk is (nearly always) used
                            # up: the next read suspends anyway, and a pass
                            # of the loop here would cost a task switch per
                            # read, Kapacitor's small writes each paying it.
                            await asyncio.sleep(0)
                    self._send_answers()
                    if output.size >= output.limit:
                        # Kapacitor is not reading: keepalive replies, which
                        # skip the backlog, would pile up without bound.
                        await output.wait_space()
            except Exception as exc:
                backlog.append(self._input_failure(exc))
            finally:
                self._reader_stopped.set()
            ready.set()

    def _input_failure(self, exc: Exception) -> _Failure:
        """The backlog marker for what ended the input."""
        if isinstance(exc, ProtocolError):
            self._send_answers()  # keepalives before the fault
            return _Failure(Ending.protocol(exc))
        if isinstance(exc, OSError):
            return _Failure(Ending.lost(exc, writing=False))
        # A bug of ours; still end this connection only.
        logger.error("reader failed", exc_info=exc)
        return _Failure(Ending.internal(exc))

    # ---- reading: a push reader -------------------------------------------
    #
    # Kapacitor writes ~11 points at a time: a task reading them would cost
    # a pass of the event loop and a task switch per write before the
    # dispatcher even wakes. A push reader's bytes are decoded in the
    # transport's callback instead, one run of _DECODE_RUN while the
    # dispatcher waits for input (it decodes the rest itself, run after run,
    # before it next waits), or up to the backlog's bound while a handler
    # call is suspended (so keepalives behind the points are answered, as the
    # reader task answers them). The same bounds hold: no decoding beyond
    # max_backlog, none while the output is full, and the transport paused
    # while _READ_AHEAD bytes of whole requests wait undecoded.

    def _attach(self) -> None:
        assert self._push is not None
        # The transport's callbacks run in the context the connection was
        # accepted in: log in this one (aioudf.runtime._logs: conn=, task=, node=).
        self._context = contextvars.copy_context()
        self._attached = True
        self._fresh = True
        self._push.push_to(self._received)  # may deliver what was buffered, at once

    def _detach(self) -> None:
        if self._pacing is not None:
            self._pacing.cancel()  # push_to(None) resumes the transport
            self._pacing = None
        if self._attached:
            self._attached = False
            self._push_paused = False
            assert self._push is not None
            self._push.push_to(None)  # the transport resumes: the reader's own limit bounds it
        self._reader_stopped.set()

    def _received(self, data: bytes | Exception) -> None:
        """The push reader's callback: bytes received, b"" at EOF, or what ended the input."""
        if not self._attached:
            return
        try:
            if isinstance(data, Exception):
                self._end_input(self._context.run(self._input_failure, data))
                return
            conn = self._conn
            if data:
                conn.receive_data(data)
                self._fresh = True
            else:
                self._eof_seen = True
            queued = len(self._backlog)
            if self._dispatching:
                self._take_to_bound()  # a handler call is suspended: answer keepalives
            elif self._take_input():
                self._requests_ready.set()
            if data and self._pacing is None:
                self._pace(len(data), len(self._backlog) - queued)
            if (
                not self._push_paused
                and self._attached
                and not conn.needs_data  # whole requests wait, not the rest of a large one
                and conn.buffered >= _READ_AHEAD
            ):
                self._pause_input()
        except Exception as exc:
            self._end_input(self._context.run(self._input_failure, exc))

    def _pace(self, size: int, requests: int) -> None:
        """After a read of ``size`` bytes that held ``requests``: pause reading if input is busy."""
        now = time.monotonic()
        if now - self._window_start > _PACE_WINDOW:
            self._window_start = now
            self._window_requests = requests
        else:
            self._window_requests += requests
        if (
            self._window_requests >= _PACE_AFTER
            and size < _PACE_CEILING
            and self._attached
            and not self._push_paused
        ):
            assert self._push is not None
            self._push.pause_reading()
            self._pacing = asyncio.get_running_loop().call_later(_PACE, self._paced)

    def _paced(self) -> None:
        """A read pause is over: read what gathered (unless reading is paused for a bound)."""
        self._pacing = None
        self._window_start = time.monotonic()
        self._window_requests = 0
        if self._attached and not self._push_paused:
            assert self._push is not None
            self._push.resume_reading()

    def _pause_input(self) -> None:
        assert self._push is not None
        self._push_paused = True
        self._push.pause_reading()

    def _take_input(self) -> bool:
        """Decode the next run from the bytes pushed; True if the backlog grew."""
        if not self._attached:
            return False
        conn = self._conn
        backlog = self._backlog
        room = self._max_backlog - len(backlog)
        if room <= 0:
            self._reader_paused = True  # the dispatcher calls _backlog_room() at half
            return False
        output = self._output
        if output.size >= output.limit:
            # Kapacitor is not reading: keepalive answers, which skip the
            # backlog, would pile up. _flush() resumes us.
            self._input_held = True
            if not self._push_paused:
                self._pause_input()
            return False
        if self._push_paused and conn.buffered < _READ_AHEAD // 2:
            assert self._push is not None
            self._push_paused = False
            self._push.resume_reading()
        if not self._fresh and not self._eof_seen:
            return False  # nothing came since the last look found no whole frame
        try:
            requests = conn.next_requests(min(_DECODE_RUN, room), raw_points=self._raw_points)
            self._send_answers()
            if requests:
                self._queue(requests)
                if conn.needs_data:
                    self._fresh = False  # the run used up the bytes: no need to look again
                return True
            if not self._eof_seen:
                self._fresh = False
                if self._push_paused:
                    # What is left is part of one large request: only more
                    # bytes can complete it (its bound is max_frame_size).
                    assert self._push is not None
                    self._push_paused = False
                    self._push.resume_reading()
                return False
            conn.receive_eof()
            self._end_input(_EndOfInput())
        except Exception as exc:
            self._end_input(self._context.run(self._input_failure, exc))
        return True

    def _take_to_bound(self) -> None:
        """Decode runs until the bytes or the backlog's room run out; wake the dispatcher."""
        self._take_scheduled = False
        taken = False
        while self._take_input():
            taken = True
        if taken:
            self._requests_ready.set()

    def _schedule_take(self) -> None:
        if not self._take_scheduled and self._attached:
            self._take_scheduled = True
            asyncio.get_running_loop().call_soon(self._take_to_bound)

    def _end_input(self, marker: _EndOfInput | _Failure) -> None:
        self._backlog.append(marker)
        self._detach()
        self._requests_ready.set()

    def _backlog_room(self) -> None:
        """The backlog is down to half its bound: read on."""
        self._backlog_space.set()
        if self._push is not None:
            self._reader_paused = False
            self._schedule_take()

    def _suspended(self) -> None:
        """The dispatcher suspends (see _Undeferring)."""
        output = self._output
        if output.deferred:
            output.undefer()
        if self._dispatching and self._attached and self._conn.buffered:
            self._schedule_take()

    def _queue(self, requests: list[Any]) -> None:
        """Count a run :meth:`UDFConnection.next_requests` returned and put it in the backlog.

        Raw Points go behind a marker numbering their frames (see _RawRun).
        """
        self._metrics.received(requests)  # [metrics]
        if type(requests[0]) is bytes:
            self._backlog.append(_RawRun(self._conn.frames_decoded - len(requests) + 1))
        self._backlog.extend(requests)

    def _send_answers(self) -> None:
        """Queue the keepalive answers the connection made, ahead of any data."""
        conn = self._conn
        if answers := conn.data_to_send():
            self._output.put(answers)
            for sent in conn.answered_keepalives:  # [metrics]
                self._metrics.keepalive(sent)

    # ---- dispatching -----------------------------------------------------

    async def _dispatch_loop(self) -> None:
        backlog = self._backlog
        table = self._table
        output = self._output
        resume_at = self._max_backlog // 2
        # Points, the bulk of the traffic, skip the table: the handler's
        # point() is awaited right here, one coroutine per point instead of
        # two (the table's wrapper), its errors caught here instead.
        point = self._async_point
        clock = time.monotonic
        yield_at = clock() + _TIME_SLICE
        countdown = _SLICE_CHECK
        metrics = self._metrics
        timed = False  # [metrics] time the next point() call (metrics.sample() says when)
        ready = self._requests_ready
        conn = self._conn
        writer = self._writer
        while True:
            if not backlog:
                if (
                    self._attached
                    and (self._fresh or self._eof_seen or self._push_paused)
                    and self._take_input()
                ):
                    continue  # the next run of the bytes a push reader delivered
                self._dispatching = False
                # Everything read is handled: write what it produced from
                # here, instead of waking the writer task for it (one task
                # switch less per read; Kapacitor writes ~11 points a read).
                output.deferred = False
                if output._frames and not output.closed:
                    # self._flush(), inlined, with output.take() and
                    # output.written(): a coroutine and two calls less a read.
                    frames = output._frames
                    data = frames[0] if len(frames) == 1 else b"".join(frames)
                    output._frames = []
                    if self._publish is not None:  # [metrics]
                        self._publish()
                    try:
                        writer.write(data)
                        await writer.drain()
                    except OSError as exc:
                        self._write_failed(exc)
                        return
                    if output._full or output._emptying:
                        output.written(len(data))  # someone may wait: wake them
                    else:
                        output.size -= len(data)
                    if self._input_held and output.size < output.limit:
                        self._input_held = False
                        self._schedule_take()  # decoding waited for room in the output
                    if conn.failure is not None:
                        return
                    continue  # more may have been read meanwhile
                ready.clear()
                await ready.wait()
                self._dispatching = True
                if conn.failure is not None:
                    return  # failed while waiting (the writer lost the connection)
                # Until this task next suspends, emitted frames wait for the
                # flush above; if a handler suspends first, _Undeferring
                # (which drives this loop) hands them to the writer.
                output.deferred = True
                yield_at = clock() + _TIME_SLICE
                continue
            countdown -= 1
            if not countdown:
                countdown = _SLICE_CHECK
                timed = metrics.sample()
                if clock() >= yield_at:
                    await asyncio.sleep(0)  # let other connections run (see _TIME_SLICE)
                    if conn.failure is not None:
                        return
                    yield_at = clock() + _TIME_SLICE
            message = backlog.popleft()
            if self._reader_paused and len(backlog) <= resume_at:
                self._backlog_room()
            if point is not None and type(message) is Point:
                try:
                    if timed:  # [metrics]
                        timed = False
                        started = clock()
                        await point(message)
                        metrics.handled("point", clock() - started)
                    else:
                        await point(message)
                except Exception as exc:
                    self._handler_failed(message, "point", exc)
                    return
            else:
                call = table.get(type(message))
                if call is None:
                    if type(message) is _Pause and not await self._paused(message):
                        continue  # the hand-over did not happen: carry on
                    await self._on_marker(message)
                    return
                try:
                    await call(message)
                except _HandlerFailed as exc:
                    self._handler_failed(exc.message, exc.method, exc.error)
                    return
                except ProtocolError as exc:
                    self._fail(Ending.protocol(exc))
                    return
                except Exception as exc:  # a bug of ours; still end this connection only
                    logger.exception("internal error handling %s", type(message).__name__)
                    self._fail(Ending.internal(exc))
                    return
            if output.size >= output.limit:
                output.undefer()
                await output.wait_space()
            if conn.failure is not None:
                return

    async def _on_marker(self, marker: object) -> None:
        if isinstance(marker, _Pause):
            return  # handed over: end without a word
        if isinstance(marker, _Failure):
            # A failed connection is torn down without stop(): its output
            # would follow the ErrorResponse, which Kapacitor has acted on.
            logger.log(marker.level, "%s", marker.ending.reason)
            self._fail(marker.ending)
        else:
            await self._call_stop()

    async def _call_stop(self) -> None:
        if not self._conn.init_accepted:
            return
        with anyio.move_on_after(self._stop_timeout) as scope:
            try:
                await self._call("stop", None)
            except _HandlerFailed as exc:
                self._handler_failed(None, exc.method, exc.error)
        if scope.cancelled_caught:
            logger.warning(
                "%s.stop() did not return within %.3g s and was cancelled",
                type(self.handler).__name__,
                self._stop_timeout,
            )

    def _handler_failed(self, message: object, method: str, error: BaseException) -> None:
        handler = type(self.handler).__name__
        if isinstance(error, ConnectionFailed) and self._conn.failure is not None:
            return  # emit() after the connection was lost: that is the cause, already told
        if isinstance(error, ProtocolError):
            self._fail(Ending.protocol(error))
            return
        describe = getattr(self.handler, "_aioudf_failure", None)
        if describe is not None:
            reason, account, exc_info = describe(method, error)
            logger.error("%s", account, exc_info=exc_info)
            self._fail(Ending(reason))
            return
        ending = Ending.handler(handler, method, error, message)
        # An emit() out of turn says all there is in its one line; a
        # traceback would show aioudf's frames, not the handler's mistake.
        logger.error("%s", ending.reason, exc_info=None if isinstance(error, EmitError) else error)
        self._fail(ending)

    async def _call(self, method: str, request: object, *args: Any) -> Any:
        """Call a handler method on the loop or in a worker thread, wrapping errors.

        ``request`` is the request being handled (named in error messages).
        """
        function = getattr(self.handler, method)
        started = time.monotonic()
        try:
            if inspect.iscoroutinefunction(function):
                return await function(*args)
            return await self._in_thread(function, *args)
        except (InitError, RestoreError):
            self._metrics.refused(f"{method}_refused")  # [metrics]
            raise  # answered with success=false by the caller
        except Exception as exc:
            raise _HandlerFailed(request, method, exc) from exc
        finally:
            self._metrics.handled(method, time.monotonic() - started)  # [metrics]

    async def _in_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        try:
            return await self._run_sync(function, *args)
        finally:
            self._emitter.flush_thread_frames()

    def _data_call(self, method: str) -> Callable[[Any], Awaitable[None]]:
        function = getattr(self.handler, method)
        if not inspect.iscoroutinefunction(function):
            return self._blocking_data_call

        async def call(message: Any) -> None:
            started = time.monotonic()
            try:
                await function(message)
            except Exception as exc:
                raise _HandlerFailed(message, method, exc) from exc
            finally:
                self._metrics.handled(method, time.monotonic() - started)  # [metrics]

        return call

    async def _blocking_data_call(self, first: Any) -> None:
        """Run a blocking handler over the run of data requests at the backlog's head."""
        backlog = self._backlog
        blocking = self._run_kinds
        run = [first]
        while True:
            while backlog and len(run) < _THREAD_BATCH and type(backlog[0]) in blocking:
                run.append(backlog.popleft())
            # The backlog used up, bytes a push reader delivered may hold
            # more: decoded into this run, instead of a hop to the thread
            # for each _DECODE_RUN of them (and one for each BeginBatch and
            # EndBatch, which are decoded alone).
            if backlog or len(run) >= _THREAD_BATCH or not self._take_input():
                break
        if self._reader_paused and len(backlog) <= self._max_backlog // 2:
            self._backlog_room()
        started = time.monotonic()
        self._runs += 1
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(_HOLD, self._sweep)
        try:
            handled, failed = await self._in_thread(self._process_run, run)
        finally:
            self._runs -= 1
        # [metrics] One observation per run: the mean time per request (a
        # raw Point's, or its marker's, is a point's).
        method = _METHODS.get(type(first), "point")
        self._metrics.handled(method, time.monotonic() - started, max(1, handled))
        if type(failed) is _BadPoint:
            raise self._conn.undecodable_point(failed.point, failed.frame, failed.error)
        if failed is not None:
            raise failed

    def _sweep(self) -> None:
        # Every _HOLD seconds while runs are in flight: a handler method
        # that emits and then works on keeps nothing back for longer.
        self._sweeper = None
        self._emitter.flush_thread_frames()
        if self._runs:
            self._sweeper = asyncio.get_running_loop().call_later(_HOLD, self._sweep)

    def _process_run(self, run: list[Any]) -> tuple[int, _HandlerFailed | _BadPoint | None]:
        """Worker thread: feed a run of data requests to the blocking handler.

        Raw Points are parsed here, on the handler's thread. Returns how
        many requests the run held (markers aside) and what stopped it, if
        anything: the handler's exception, or a Point that does not parse.
        """
        methods = self._blocking_methods
        point = methods.get(Point)
        parse = Point.FromString
        emitter = self._emitter
        # The raw Point run[i] with no marker between is frame ``frame + i - at``.
        frame, at, marks = self._raw_next, 0, 0
        emitter.hold()
        try:
            for index, message in enumerate(run):
                kind = type(message)
                if kind is bytes:
                    try:
                        message = parse(message)
                    except DecodeError as exc:
                        return index - marks, _BadPoint(run[index], frame + index - at, exc)
                    method = point
                elif kind is _RawRun:
                    frame, at = message.frame, index + 1
                    marks += 1
                    continue
                else:
                    method = methods[kind]
                try:
                    method(message)  # type: ignore[misc]  # point is set for raw Points
                except Exception as exc:
                    return index + 1 - marks, _HandlerFailed(message, method.__name__, exc)  # type: ignore[union-attr]
            # A run cut short (_THREAD_BATCH) inside a marker's Points, or
            # right after the marker: the next run goes on with them. (A
            # run that ends on anything else leaves nothing to go on with:
            # the next raw Point comes behind a marker of its own.)
            self._raw_next = frame + len(run) - at
            return len(run) - marks, None
        finally:
            emitter.release()

    def _answerable(self) -> bool:
        """False if the connection failed while the handler ran: the reply has nowhere to go.

        The writer may lose the connection while a handler call is under way
        (Kapacitor, or anything, closing without reading its replies); the
        cause is recorded and the dispatcher stops after this request, so
        its reply is dropped, not an error.
        """
        return self._conn.failure is None

    async def _on_info(self, request: InfoRequest) -> None:
        info = await self._call("info", request)
        if self._answerable():
            self._output.put(self._conn.send_info(info))

    async def _on_init(self, request: InitRequest) -> None:
        handler = self.handler
        if (context := current_connection()) is not None:  # [logs]
            context.task, context.node = request.taskID, request.nodeID
        try:
            if not getattr(handler, "_aioudf_raw_init", False):
                try:
                    values = parse_options(type(handler).options, request.options)
                except OptionError:
                    self._metrics.refused("options_refused")  # [metrics]
                    raise
                bind_options(handler, values)
            handler.task_id = request.taskID
            handler.node_id = request.nodeID
            await self._call("init", request, request)
        except InitError as exc:
            logger.warning("Init refused: %s", exc)
            if self._answerable():
                conn = self._conn
                self._output.put(conn.send_init_result(str(exc)))
                # The requests decoded ahead of the refusal: the connection
                # ends at the first one it makes a violation.
                if (forbidden := conn.forbidden(self._backlog)) is not None:
                    index, violation = forbidden
                    self._backlog.insert(index, _Failure(Ending.protocol(violation)))
        else:
            if self._answerable():
                self._output.put(self._conn.send_init_result())

    async def _on_snapshot(self, request: SnapshotRequest) -> None:
        snapshot = await self._call("snapshot", request)
        if not self._answerable():
            return
        try:
            reply = self._conn.send_snapshot(snapshot)
        except TypeError as exc:
            raise _HandlerFailed(request, "snapshot", exc) from None
        self._output.put(reply)

    async def _on_restore(self, request: RestoreRequest) -> None:
        try:
            await self._call("restore", request, request.snapshot)
        except RestoreError as exc:
            logger.warning("Restore refused: %s", exc)
            if self._answerable():
                self._output.put(self._conn.send_restore_result(str(exc)))
        else:
            if self._answerable():
                self._output.put(self._conn.send_restore_result())

    # ---- writing ---------------------------------------------------------

    async def _write_loop(self) -> None:
        output = self._output
        while True:
            await output.wait_data()
            if not output._frames:
                self._flushed = True
                return  # closed and drained
            if not await self._flush():
                return

    def _write_failed(self, exc: OSError) -> None:
        """Kapacitor went away; nothing more can be written. Stop everything."""
        self._output.close()
        self._fail(Ending.lost(exc, writing=True))
        self._tasks.cancel_scope.cancel()

    async def _flush(self) -> bool:
        """Write everything queued, as one buffer, and wait until the transport takes it.

        Both the writer task and the dispatcher (at the end of a run, this
        inlined in _dispatch_loop) flush; taking and writing happen in one
        step, so frames go out in queue order.
        False if the connection was lost (everything is being stopped).
        """
        output = self._output
        data = output.take()
        if self._publish is not None:  # [metrics]
            self._publish()
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as exc:
            self._write_failed(exc)
            return False
        output.written(len(data))
        if self._input_held and output.size < output.limit:
            self._input_held = False
            self._schedule_take()  # decoding waited for room in the output
        return True
