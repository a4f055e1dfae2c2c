"""Kapacitor's side of the UDF protocol, in Python.

:class:`Kapacitor` drives one UDF the way Kapacitor does: Info on a
connection of its own, then for each task a connection with Init (options
typed by that Info), Restore if a snapshot is given, the data, Snapshot when
asked, keepalives every ``timeout / 2`` throughout, and at stop a half-close
followed by reading until the UDF closes its side::

    udf = Kapacitor(MovingAvg)                 # or a socket path, or an argv list
    result = await udf.run(
        {"field": "value", "size": 10},
        points=[DataPoint("cpu", {"value": 1.0}, time=1), ...],
    )
    result.points                              # what the UDF emitted, in order

For finer control, :meth:`Kapacitor.task` yields a :class:`TaskConnection`
to send requests one by one.

Failures use Kapacitor's words: a keepalive not answered within ``timeout``
raises :class:`KeepaliveTimeout` ("keepalive timedout, last keepalive received
was: ..."), an ErrorResponse raises :class:`UDFError` carrying the UDF's text,
a refused Init :class:`InitFailed`, a refused Restore :class:`RestoreFailed`.

Why one module of this size: :class:`Kapacitor`, its :class:`TaskConnection`
and the :class:`Result` they fill are one conversation over one
``KapacitorConnection``; the transports that reach the UDF are
``transports``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import time as _time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InitFailed, KeepaliveTimeout, ProtocolError, RestoreFailed, UDFError
from ..formats._points import Batch, DataPoint
from ..toolkit._handler import BaseHandler
from ..wire._kapacitor import EmittedBatch, KapacitorConnection, KapacitorEvent
from ..wire._messages import (
    BeginBatch,
    DataMessage,
    EndBatch,
    ErrorResponse,
    InfoResponse,
    InitResponse,
    Option,
    Point,
    RestoreResponse,
    SnapshotResponse,
)
from ..wire._values import encode_options
from .transports import Command, InProcess, Socket, Target, UDFConnection

__all__ = [
    "DEFAULT_TIMEOUT",
    "InitFailed",
    "Kapacitor",
    "KeepaliveTimeout",
    "RestoreFailed",
    "Result",
    "TaskConnection",
    "UDFError",
    "as_target",
    "encode_options",
]

#: Kapacitor's default UDF timeout, in seconds.
DEFAULT_TIMEOUT = 10.0

#: An option's value: a Python value, a tuple (one call, several values), a
#: list (several calls), True/False for a flag, None to leave it out.
OptionArg = Any
#: What :meth:`TaskConnection.send` accepts.
Sendable = DataPoint | Point | Batch | BeginBatch | EndBatch
#: What a UDF emits, as :class:`Result` holds it.
Emitted = DataPoint | Batch


def as_target(udf: Any) -> Target:
    """A Handler class (or factory), a socket path, an argv list, or a Target, as a Target."""
    if isinstance(udf, (InProcess, Socket, Command)):
        return udf
    if isinstance(udf, type) and issubclass(udf, BaseHandler):
        return InProcess(udf)
    if isinstance(udf, (str, os.PathLike)):
        return Socket(udf)
    if isinstance(udf, (list, tuple)):
        return Command(list(udf))
    if hasattr(udf, "open") and hasattr(udf, "describe"):
        target: Target = udf
        return target
    if callable(udf):
        return InProcess(udf)
    raise TypeError(
        f"cannot reach a UDF through {udf!r}: give a Handler class, a socket path, "
        "an argv list, or an aioudf.testing target (InProcess, Socket, Command)"
    )


# ---- results ----------------------------------------------------------------


@dataclass
class Result:
    """What a UDF emitted on one task connection, in order."""

    #: Points (stream output) and batches (batch output) in the order emitted.
    items: list[Emitted] = field(default_factory=list)
    #: The snapshot taken before stopping, if one was asked for.
    snapshot: bytes | None = None
    #: The UDF's stderr (child processes only).
    stderr: str = ""

    @property
    def points(self) -> list[DataPoint]:
        """Every point emitted, batches flattened."""
        out: list[DataPoint] = []
        for item in self.items:
            if isinstance(item, Batch):
                out.extend(item.points)
            else:
                out.append(item)
        return out

    @property
    def batches(self) -> list[Batch]:
        """The batches emitted."""
        return [item for item in self.items if isinstance(item, Batch)]


# ---- one connection ---------------------------------------------------------

_REPLY_KINDS: dict[type, str] = {
    InfoResponse: "info",
    InitResponse: "init",
    SnapshotResponse: "snapshot",
    RestoreResponse: "restore",
}


class TaskConnection:
    """One connection to the UDF, driven from Kapacitor's side.

    Requests are written at once; replies are matched to requests by type.
    Everything the UDF emits goes to ``on_output`` if given, and is collected
    in :attr:`result` otherwise.
    """

    def __init__(
        self,
        connection: UDFConnection,
        *,
        timeout: float | None,
        name: str,
        on_output: Callable[[Emitted], None] | None = None,
        on_message: Callable[[Point | EmittedBatch], None] | None = None,
        on_points: Callable[[list[bytes]], None] | None = None,
    ) -> None:
        self._conn = connection
        self.timeout = timeout
        self.name = name
        self.result = Result()
        self._on_output = on_output or self.result.items.append
        #: Emitted messages as they are decoded, instead of ``on_output``.
        self._on_message = on_message
        #: Points emitted outside a batch, serialized, instead of either.
        self._on_points = on_points
        self._loop = asyncio.get_running_loop()
        self._protocol = KapacitorConnection(timeout, now=self._loop.time(), wall=_time.time())
        self._pending: dict[str, collections.deque[asyncio.Future[Any]]] = {
            kind: collections.deque() for kind in _REPLY_KINDS.values()
        }
        self._failure: UDFError | None = None
        self._eof = asyncio.Event()
        self._ended = asyncio.Event()  # at the UDF's EOF or the first failure, whichever is first
        self._closing = False
        # The connection's own tasks, not a task group's: it is opened and
        # closed by separate calls (an anyio group must be left by the task
        # that entered it). close() cancels and awaits every one.
        self._tasks = [asyncio.create_task(self._read_loop(), name=f"{name} read")]
        if timeout:
            self._tasks.append(
                asyncio.create_task(self._keepalive_clock(), name=f"{name} keepalive")
            )
            if getattr(connection, "shares_loop", False):
                self._tasks.append(
                    asyncio.create_task(self._watch_loop(timeout), name=f"{name} loop watch")
                )

    @property
    def keepalives_answered(self) -> int:
        """KeepaliveResponses received so far."""
        return self._protocol.keepalives_answered

    # -- failure ---------------------------------------------------------

    def _fail(self, error: UDFError) -> None:
        if self._failure is None:
            self._failure = error
            self._ended.set()
            for waiters in self._pending.values():
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(error)
                waiters.clear()

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            self._failure.stderr = self._conn.stderr
            self._failure.result = self.result
            raise self._failure

    # -- background tasks -------------------------------------------------

    async def _read_loop(self) -> None:
        protocol = self._protocol
        on_points = self._on_points
        try:
            while True:
                data = await self._conn.read(1 << 20)
                if not data:
                    protocol.receive_eof()
                    break
                protocol.receive_data(data, now=self._loop.time(), wall=_time.time())
                if on_points is None:
                    while (event := protocol.next_event()) is not None:
                        self._on_event(event)
                    continue
                while True:
                    points = protocol.next_points()
                    if points:
                        on_points(points)
                    event = protocol.next_event()
                    if event is None:
                        break
                    self._on_event(event)
        except ProtocolError as exc:
            self._fail(UDFError(str(exc)))
        except UDFError as exc:
            self._fail(exc)
        except ConnectionResetError:
            if not self._closing:
                self._fail(UDFError("the UDF closed the connection unexpectedly (reset)"))
        except Exception as exc:
            self._fail(UDFError(f"cannot read the UDF's responses: {exc}"))
        finally:
            self._eof.set()
            self._ended.set()
            if not self._closing and self._failure is None:
                self._fail(UDFError("the UDF closed the connection unexpectedly"))

    def _on_event(self, event: KapacitorEvent) -> None:
        kind = type(event)
        if self._on_message is not None and (kind is Point or kind is EmittedBatch):
            self._on_message(event)  # type: ignore[arg-type]
        elif kind is Point:
            self._on_output(DataPoint.from_message(event))  # type: ignore[arg-type]
        elif kind is EmittedBatch:
            assert isinstance(event, EmittedBatch)
            self._on_output(Batch.from_messages(event.begin, event.points, event.end))
        elif kind is ErrorResponse:
            raise UDFError(event.error)  # type: ignore[union-attr]
        elif kind in _REPLY_KINDS:
            waiter = self._pending[_REPLY_KINDS[kind]].popleft()
            if not waiter.done():
                waiter.set_result(event)

    async def _keepalive_clock(self) -> None:
        # Kapacitor's timers (see KapacitorConnection): a keepalive every
        # timeout/2, and the task failed when nothing at all has come from
        # the UDF for a whole timeout. Both stop at stop().
        protocol = self._protocol
        loop = self._loop
        while not self._eof.is_set():
            deadline = protocol.next_deadline()
            if deadline is None:
                return
            await asyncio.sleep(max(0.0, deadline - loop.time()))
            if self._eof.is_set():
                return
            now = loop.time()
            expired = protocol.keepalive_expired(now)
            if expired is not None:
                self._keepalive_timed_out(expired)
                return
            request = protocol.keepalive_due(now, _time.time_ns())
            if request:
                with contextlib.suppress(OSError):
                    self._conn.write(request)

    async def _watch_loop(self, timeout: float) -> None:
        # An in-process UDF runs on this event loop: when its handler blocks
        # the loop, the clock above cannot run on time either, and late
        # responses look fresh. Under Kapacitor the UDF is a process of its
        # own whose blocked loop misses the keepalive: so a stall of this
        # loop longer than the timeout fails the task the same way, whenever
        # it happens (a replay stops right after sending the data, while a
        # live task would still be running).
        interval = min(timeout / 4, 0.25)
        while not self._eof.is_set() and self._failure is None:
            before = self._loop.time()
            await asyncio.sleep(interval)
            if self._loop.time() - before - interval > timeout:
                self._keepalive_timed_out(self._protocol.keepalive_failure())
                return

    def _keepalive_timed_out(self, message: str) -> None:
        self._fail(KeepaliveTimeout(message))
        self._conn.abort()

    # -- requests -------------------------------------------------------------

    async def _request(self, kind: str, request: bytes) -> Any:
        """Write ``request`` (from the protocol, which now awaits its reply); return the reply."""
        self._raise_if_failed()
        waiter: asyncio.Future[Any] = self._loop.create_future()
        self._pending[kind].append(waiter)
        await self._write(request)
        # Like Kapacitor, wait for the reply for as long as the UDF keeps
        # answering keepalives; a missed keepalive fails the waiter.
        try:
            return await waiter
        except UDFError:
            self._raise_if_failed()
            raise

    async def _write(self, data: bytes) -> None:
        self._raise_if_failed()
        try:
            self._conn.write(data)
            await self._conn.drain()
        except OSError as exc:
            # The UDF may have said why before closing: wait for the reader.
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(self._eof.wait(), 1.0)
            self._raise_if_failed()
            raise UDFError(f"cannot write to the UDF: {exc}", stderr=self.stderr) from exc

    async def info(self) -> InfoResponse:
        """Send Info and return the UDF's InfoResponse."""
        response: InfoResponse = await self._request("info", self._protocol.send_info())
        return response

    async def init(
        self,
        options: Mapping[str, OptionArg] | Iterable[Option] = (),
        *,
        info: InfoResponse | None = None,
        task_id: str = "task",
        node_id: str = "udf1",
    ) -> None:
        """Send Init; raise :class:`InitFailed` if the UDF refuses.

        ``options`` are Python values (see :func:`encode_options`, typed by
        ``info`` when given) or ready Option messages, sent as they are.
        """
        messages = encode_options(options, info) if isinstance(options, Mapping) else options
        request = self._protocol.send_init(messages, task_id=task_id, node_id=node_id)
        response = await self._request("init", request)
        if not response.success:
            raise InitFailed(response.error, stderr=self.stderr)

    async def restore(self, snapshot: bytes) -> None:
        """Send Restore; raise :class:`RestoreFailed` if the UDF refuses."""
        response = await self._request("restore", self._protocol.send_restore(snapshot))
        if not response.success:
            raise RestoreFailed(response.error, stderr=self.stderr)

    async def snapshot(self) -> bytes:
        """Ask for a snapshot of the UDF's state."""
        response = await self._request("snapshot", self._protocol.send_snapshot())
        snapshot: bytes = response.snapshot
        return snapshot

    async def send(self, *items: Sendable) -> None:
        """Send points, batches (as BeginBatch, points, EndBatch) or raw messages."""
        messages: list[DataMessage] = []
        for item in items:
            if isinstance(item, DataPoint):
                messages.append(item.to_message())
            elif isinstance(item, Batch):
                messages.append(item.begin())
                messages.extend(item.point_messages())
                messages.append(item.end())
            elif isinstance(item, (Point, BeginBatch, EndBatch)):
                messages.append(item)
            else:
                raise TypeError(
                    f"cannot send a {type(item).__name__}: send DataPoint, Batch or "
                    "protobuf Point/BeginBatch/EndBatch values"
                )
        await self._write(self._protocol.send_data(*messages))

    async def send_frames(self, data: bytes) -> None:
        """Send data already framed as Requests (points, BeginBatch, EndBatch).

        For a caller that encodes its own frames, as ``aioudf replay`` does
        with line protocol; nothing is checked.
        """
        await self._write(data)

    async def send_many(self, items: Iterable[Sendable], chunk: int = 1000) -> None:
        """Send a long sequence, ``chunk`` items per write (with flow control)."""
        buffer: list[Sendable] = []
        for item in items:
            buffer.append(item)
            if len(buffer) >= chunk:
                await self.send(*buffer)
                buffer = []
        if buffer:
            await self.send(*buffer)

    async def stop(self, timeout: float | None = None) -> Result:
        """Half-close, read until the UDF closes its side, and return its output.

        Kapacitor stops sending keepalives at this point and waits for the UDF
        to finish without a deadline; ``timeout`` (seconds) sets one.
        """
        self._raise_if_failed()
        self._closing = True
        self._protocol.stop()
        with contextlib.suppress(OSError):
            await self._conn.close_write()
        try:
            await asyncio.wait_for(self._ended.wait(), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            self._fail(UDFError(f"the UDF did not close its side within {timeout:g} s"))
        await self.close()
        self._raise_if_failed()
        return self.result

    async def close(self) -> None:
        """Release the connection (after :meth:`stop`, or to abandon it)."""
        self._closing = True
        if not self._eof.is_set():
            self._conn.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._conn.wait_closed(), self.timeout or DEFAULT_TIMEOUT)
        self.result.stderr = self._conn.stderr

    @property
    def stderr(self) -> str:
        """The UDF's stderr so far (child processes only)."""
        return self._conn.stderr


# ---- the Kapacitor side of one UDF ------------------------------------------


class Kapacitor:
    """Drives one UDF as Kapacitor does; see the module documentation.

    ``udf`` is a Handler class (run in this process), a socket path, an argv
    list (a process UDF, spawned per connection), or a target
    (:class:`~aioudf.testing.InProcess`, :class:`~aioudf.testing.Socket`,
    :class:`~aioudf.testing.Command`). ``timeout`` is the UDF timeout of
    Kapacitor's configuration, in seconds (``None`` or 0: no keepalives).
    """

    def __init__(self, udf: Any, *, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        self.target = as_target(udf)
        self.timeout = timeout
        self._info: InfoResponse | None = None

    def __repr__(self) -> str:
        return f"Kapacitor({self.target.describe()!r}, timeout={self.timeout!r})"

    async def connect(
        self,
        on_output: Callable[[Emitted], None] | None = None,
        *,
        on_message: Callable[[Point | EmittedBatch], None] | None = None,
        on_points: Callable[[list[bytes]], None] | None = None,
    ) -> TaskConnection:
        """Open a raw connection (nothing sent yet). Close it when done.

        What the UDF emits goes to ``on_output`` (as DataPoint and Batch
        values), or with ``on_message`` to that, as the protobuf Point and
        :class:`~aioudf.wire.EmittedBatch` decoded from the wire (no
        conversion: for a caller that handles many points). With
        ``on_points``, Points emitted outside a batch go there instead, not
        even decoded: lists of their serialized bytes, as they come (see
        :meth:`~aioudf.wire.KapacitorConnection.next_points`; ``aioudf
        replay`` writes its lines from them); batches still go to the others.
        """
        connection = await self.target.open()
        return TaskConnection(
            connection,
            timeout=self.timeout,
            name=self.target.describe(),
            on_output=on_output,
            on_message=on_message,
            on_points=on_points,
        )

    async def info(self) -> InfoResponse:
        """Info on a connection of its own, as Kapacitor does at start-up (cached)."""
        if self._info is None:
            conn = await self.connect()
            try:
                self._info = await conn.info()
                await conn.stop()
            finally:
                await conn.close()
        return self._info

    @contextlib.asynccontextmanager
    async def task(
        self,
        options: Mapping[str, OptionArg] | Iterable[Option] | None = None,
        *,
        restore: bytes | None = None,
        task_id: str = "task",
        node_id: str = "udf1",
        on_output: Callable[[Emitted], None] | None = None,
        on_message: Callable[[Point | EmittedBatch], None] | None = None,
        on_points: Callable[[list[bytes]], None] | None = None,
    ) -> AsyncIterator[TaskConnection]:
        """A task's connection: Info (once), Init and Restore done, ready for data.

        Call ``await task.stop()`` to end the task and get its :class:`Result`;
        leaving the block without it abandons the connection (kills a process).
        """
        info = await self.info()
        conn = await self.connect(on_output, on_message=on_message, on_points=on_points)
        try:
            await conn.init(
                options if options is not None else {},
                info=info,
                task_id=task_id,
                node_id=node_id,
            )
            if restore is not None:
                await conn.restore(restore)
            yield conn
        finally:
            await conn.close()

    async def run(
        self,
        options: Mapping[str, OptionArg] | Iterable[Option] | None = None,
        *,
        points: Iterable[DataPoint | Point] = (),
        batches: Iterable[Batch] = (),
        restore: bytes | None = None,
        snapshot: bool = False,
        task_id: str = "task",
        node_id: str = "udf1",
    ) -> Result:
        """Run one task start to stop: Init, Restore, data, Snapshot, stop.

        ``points`` are sent first, then ``batches``. With ``snapshot=True`` a
        snapshot is taken after the data, as Kapacitor does when a task stops,
        and returned in :attr:`Result.snapshot`.
        """
        async with self.task(options, restore=restore, task_id=task_id, node_id=node_id) as conn:
            await conn.send_many(points)
            await conn.send_many(batches, chunk=10)
            saved = await conn.snapshot() if snapshot else None
            result = await conn.stop()
            result.snapshot = saved
            return result

    def run_sync(
        self,
        options: Mapping[str, OptionArg] | Iterable[Option] | None = None,
        *,
        points: Iterable[DataPoint | Point] = (),
        batches: Iterable[Batch] = (),
        restore: bytes | None = None,
        snapshot: bool = False,
        task_id: str = "task",
        node_id: str = "udf1",
    ) -> Result:
        """:meth:`run` from synchronous code (a plain ``def test_...``).

        Runs its own event loop, so it cannot be called from inside one.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                "Kapacitor.run_sync() was called inside a running event loop: "
                "use 'await kapacitor.run(...)' there"
            )
        return asyncio.run(
            self.run(
                options,
                points=points,
                batches=batches,
                restore=restore,
                snapshot=snapshot,
                task_id=task_id,
                node_id=node_id,
            )
        )


def kapacitor_factory(
    timeout: float | None = DEFAULT_TIMEOUT,
) -> Callable[..., Kapacitor]:
    """``factory(udf, timeout=...)`` -> :class:`Kapacitor` (the pytest fixture's value)."""

    def make(udf: Any, *, timeout: float | None = timeout) -> Kapacitor:
        return Kapacitor(udf, timeout=timeout)

    return make
