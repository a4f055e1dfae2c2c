"""Kapacitor's side of the UDF protocol, in Python.

:class:`Kapacitor` drives one UDF the way Kapacitor does: Info on a
connection of its own, then for each task a connection with Init (options
typed by that Info), Restore if a snapshot is given, the data, Snapshot when
asked, keepalives every ``timeout / 2`` throughout, and at stop a half-close
followed by reading until the UDF closes its side::

    udf = Kapacitor(MovingAvg)                 # or Socket(path), Command([...])
    result = await udf.run(
        options={"field": "value", "size": 10},
        points=[make_point("cpu", {"value": 1.0}), ...],
    )
    result.points                              # what the UDF emitted, in order

For finer control, :meth:`Kapacitor.task` yields a :class:`TaskConnection`
to send requests one by one.

Failures use Kapacitor's words: a keepalive not answered within ``timeout``
raises :class:`KeepaliveTimeout` ("keepalive timedout"), an ErrorResponse
raises :class:`UDFError` carrying the UDF's text, a failed Init
:class:`InitFailed`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import time as _time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import AioudfError
from ..framing import FrameDecoder, encode_frame
from ..handler import BaseHandler
from ..messages import (
    BeginBatch,
    EndBatch,
    InfoResponse,
    Option,
    OptionValue,
    Point,
    Request,
    Response,
    ValueType,
    encode_data_frame,
)
from ..points import Batch
from .transports import Command, InProcess, Socket, Target, UDFConnection

__all__ = [
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

#: Kapacitor's default UDF timeout.
DEFAULT_TIMEOUT = 10.0

OptionArg = Any  # a Python value, a tuple of them, or a list of tuples (repeated calls)
Sendable = Point | BeginBatch | EndBatch | Batch


class UDFError(AioudfError):
    """The UDF failed the task: ErrorResponse, unexpected close, timeout."""

    def __init__(self, text: str, *, stderr: str = "") -> None:
        super().__init__(text)
        #: The UDF's own words (the ErrorResponse text), or what went wrong.
        self.text = text
        #: The UDF's stderr, for a child process.
        self.stderr = stderr


class InitFailed(UDFError):
    """InitResponse came back with success=false."""


class RestoreFailed(UDFError):
    """RestoreResponse came back with success=false."""


class KeepaliveTimeout(UDFError):
    """No KeepaliveResponse within the timeout: Kapacitor would fail the task."""


def as_target(udf: Any) -> Target:
    """A Handler class, a socket path, an argv list, or a Target, as a Target."""
    if isinstance(udf, (InProcess, Socket, Command)) or (
        hasattr(udf, "open") and hasattr(udf, "describe")
    ):
        return udf  # type: ignore[no-any-return]
    if isinstance(udf, type) and issubclass(udf, BaseHandler):
        return InProcess(udf)
    if isinstance(udf, str):
        return Socket(udf)
    if isinstance(udf, (list, tuple)):
        return Command(list(udf))
    if callable(udf):
        return InProcess(udf)
    raise TypeError(f"cannot reach a UDF through {udf!r}")


# ---- options ---------------------------------------------------------------

_INFERRED: list[tuple[type, ValueType]] = [
    (bool, ValueType.BOOL),
    (int, ValueType.INT),
    (float, ValueType.DOUBLE),
    (str, ValueType.STRING),
    (datetime.timedelta, ValueType.DURATION),
]


def _option_value(option: str, value: Any, declared: ValueType | None) -> OptionValue:
    if isinstance(value, OptionValue):
        return value
    vtype = declared
    if vtype is None:
        for python_type, inferred in _INFERRED:
            if isinstance(value, python_type):
                vtype = inferred
                break
        else:
            raise TypeError(f"option {option!r}: cannot send a {type(value).__name__}")
    out = OptionValue(type=int(vtype))  # type: ignore[arg-type]
    try:
        if vtype is ValueType.BOOL:
            if not isinstance(value, bool):
                raise TypeError
            out.boolValue = value
        elif vtype is ValueType.INT:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError
            out.intValue = value
        elif vtype is ValueType.DOUBLE:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError
            out.doubleValue = float(value)
        elif vtype is ValueType.STRING:
            if not isinstance(value, str):
                raise TypeError
            out.stringValue = value
        else:
            if isinstance(value, datetime.timedelta):
                value = round(value.total_seconds() * 1e9)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError
            out.durationValue = value
    except TypeError:
        # TICKscript refuses this before the UDF ever sees it; so do we.
        raise TypeError(
            f"invalid {type(value).__name__} value {value!r} for option {option!r}: "
            f"the UDF declares {vtype.name}"
        ) from None
    return out


def encode_options(
    options: Mapping[str, OptionArg], info: InfoResponse | None = None
) -> list[Option]:
    """Turn ``{"field": "x", "size": 10, "pair": ("k", 1.0)}`` into Option messages.

    A tuple is one call with several values; a list of tuples is several
    calls. Names ending in ``_`` lose it (``as_`` is ``.as()``). Values are
    typed by ``info`` where the UDF declares the option (an int becomes a
    DOUBLE where one is declared), and by their Python type otherwise.
    """
    out: list[Option] = []
    for raw_name, arg in options.items():
        name = raw_name.rstrip("_") or raw_name
        declared: Sequence[ValueType] = ()
        if info is not None and name in info.options:
            declared = [ValueType(t) for t in info.options[name].valueTypes]
        calls = arg if isinstance(arg, list) else [arg]
        for call in calls:
            values = call if isinstance(call, tuple) else (call,)
            if values == (True,) and declared == []:
                values = ()  # a flag option: .flag()
            message = Option(name=name)
            for position, value in enumerate(values):
                vtype = declared[position] if position < len(declared) else None
                message.values.append(_option_value(name, value, vtype))
            out.append(message)
    return out


# ---- results ----------------------------------------------------------------


@dataclass
class Result:
    """What a UDF emitted on one task connection, in order."""

    #: Points and batches in the order they were emitted.
    items: list[Point | Batch] = field(default_factory=list)
    #: The snapshot returned at the end, if one was asked for.
    snapshot: bytes | None = None
    #: The UDF's stderr (child processes only).
    stderr: str = ""

    @property
    def points(self) -> list[Point]:
        """Every point emitted, batches flattened."""
        out: list[Point] = []
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

_REPLIES = ("info", "init", "snapshot", "restore")


class TaskConnection:
    """One connection to the UDF, driven from Kapacitor's side.

    Requests are written at once; replies are matched to requests by type.
    Everything the UDF emits is collected in :attr:`result`.
    """

    def __init__(self, connection: UDFConnection, *, timeout: float, name: str) -> None:
        self._conn = connection
        self.timeout = timeout
        self.name = name
        self.result = Result()
        self._pending: dict[str, collections.deque[asyncio.Future[Any]]] = {
            kind: collections.deque() for kind in _REPLIES
        }
        self._batch: tuple[BeginBatch, list[Point]] | None = None
        self._failure: UDFError | None = None
        self._failed = asyncio.Event()
        self._eof = asyncio.Event()
        self._closing = False
        self._last_keepalive = _time.monotonic()
        self.keepalives_answered = 0
        self._tasks = [
            asyncio.create_task(self._read_loop()),
            asyncio.create_task(self._keepalive_loop()),
        ]

    # -- failure ---------------------------------------------------------

    def _fail(self, error: UDFError) -> None:
        if self._failure is None:
            error.stderr = error.stderr or self._conn.stderr
            self._failure = error
            self._failed.set()
            for waiters in self._pending.values():
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(error)
                waiters.clear()

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            self._failure.stderr = self._failure.stderr or self._conn.stderr
            raise self._failure

    # -- background tasks -------------------------------------------------

    async def _read_loop(self) -> None:
        decoder = FrameDecoder()
        try:
            while True:
                data = await self._conn.read(1 << 20)
                if not data:
                    decoder.feed_eof()
                    break
                decoder.feed(data)
                body = decoder.next_frame()
                while body is not None:
                    self._on_response(Response.FromString(body))  # type: ignore[arg-type]  # buffers are accepted
                    body = decoder.next_frame()
        except UDFError as exc:
            self._fail(exc)
        except Exception as exc:
            self._fail(UDFError(f"cannot read the UDF's responses: {exc}"))
        finally:
            self._eof.set()
            if not self._closing and self._failure is None:
                self._fail(UDFError("the UDF closed the connection unexpectedly"))
            if self._batch is not None and self._failure is None:
                self._fail(UDFError("the UDF closed the connection inside a batch"))

    def _on_response(self, response: Response) -> None:
        # Like Kapacitor, any response (not only a KeepaliveResponse) shows
        # the UDF is alive and resets the keepalive timer.
        self._last_keepalive = _time.monotonic()
        kind = response.WhichOneof("message")
        if kind == "point":
            if self._batch is not None:
                self._batch[1].append(response.point)
            else:
                self.result.items.append(response.point)
        elif kind == "begin":
            if self._batch is not None:
                raise UDFError("the UDF began a batch inside another batch")
            self._batch = (response.begin, [])
        elif kind == "end":
            if self._batch is None:
                raise UDFError("the UDF ended a batch it never began")
            begin, points = self._batch
            self._batch = None
            self.result.items.append(Batch.from_messages(begin, points, response.end))
        elif kind == "keepalive":
            self.keepalives_answered += 1
        elif kind == "error":
            raise UDFError(response.error.error)
        elif kind in _REPLIES:
            waiters = self._pending[kind]
            if not waiters:
                raise UDFError(f"the UDF sent a {kind} response nobody asked for")
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(getattr(response, kind))
        else:
            raise UDFError(f"the UDF sent an empty or unknown response ({kind})")

    async def _keepalive_loop(self) -> None:
        # Kapacitor sends a keepalive every timeout/2 and fails the task when
        # nothing at all came back for a whole timeout. It stops both at stop.
        interval = self.timeout / 2
        while not self._eof.is_set() and not self._closing:
            await asyncio.sleep(interval)
            if self._eof.is_set() or self._closing:
                return
            if _time.monotonic() - self._last_keepalive > self.timeout:
                last = _time.time() - (_time.monotonic() - self._last_keepalive)
                self._fail(
                    KeepaliveTimeout(
                        "keepalive timedout, last keepalive received was: "
                        + datetime.datetime.fromtimestamp(last, datetime.timezone.utc).isoformat()
                    )
                )
                self._conn.abort()
                return
            request = Request()
            request.keepalive.time = _time.time_ns()
            with contextlib.suppress(OSError):
                self._conn.write(encode_frame(request.SerializeToString()))

    # -- requests -------------------------------------------------------------

    async def _request(self, kind: str, request: Request) -> Any:
        self._raise_if_failed()
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[kind].append(waiter)
        await self._write(encode_frame(request.SerializeToString()))
        # Like Kapacitor, wait for the reply for as long as the UDF keeps
        # answering keepalives; a missed keepalive fails the waiter.
        return await waiter

    async def _write(self, data: bytes) -> None:
        self._raise_if_failed()
        try:
            self._conn.write(data)
            await self._conn.drain()
        except OSError as exc:
            await asyncio.sleep(0)  # let the reader record an ErrorResponse first
            self._raise_if_failed()
            raise UDFError(f"cannot write to the UDF: {exc}") from exc

    async def info(self) -> InfoResponse:
        request = Request()
        request.info.SetInParent()
        response: InfoResponse = await self._request("info", request)
        return response

    async def init(
        self,
        options: Mapping[str, OptionArg] | Iterable[Option] = (),
        *,
        info: InfoResponse | None = None,
        task_id: str = "task",
        node_id: str = "udf1",
    ) -> None:
        """Send Init; raise :class:`InitFailed` if the UDF refuses."""
        request = Request()
        if isinstance(options, Mapping):
            request.init.options.extend(encode_options(options, info))
        else:
            request.init.options.extend(options)
        request.init.taskID = task_id
        request.init.nodeID = node_id
        response = await self._request("init", request)
        if not response.success:
            raise InitFailed(response.error, stderr=self._conn.stderr)

    async def restore(self, snapshot: bytes) -> None:
        """Send Restore; raise :class:`RestoreFailed` if the UDF refuses."""
        request = Request()
        request.restore.snapshot = snapshot
        response = await self._request("restore", request)
        if not response.success:
            raise RestoreFailed(response.error, stderr=self._conn.stderr)

    async def snapshot(self) -> bytes:
        """Ask for a snapshot of the UDF's state."""
        request = Request()
        request.snapshot.SetInParent()
        response = await self._request("snapshot", request)
        snapshot: bytes = response.snapshot
        return snapshot

    async def send(self, *items: Sendable) -> None:
        """Send points, batches (as BeginBatch, points, EndBatch) or raw messages."""
        frames: list[bytes] = []
        for item in items:
            if isinstance(item, Batch):
                frames.append(encode_data_frame(item.begin()))
                frames.extend(encode_data_frame(p) for p in item.points)
                frames.append(encode_data_frame(item.end()))
            else:
                frames.append(encode_data_frame(item))
        await self._write(b"".join(frames))

    async def send_many(self, items: Iterable[Sendable], chunk: int = 1000) -> None:
        """Send a long sequence, a chunk at a time (with flow control)."""
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
        with contextlib.suppress(OSError):
            await self._conn.close_write()
        try:
            await asyncio.wait_for(self._wait_eof_or_failure(), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            self._fail(UDFError(f"the UDF did not close its side within {timeout:g} s"))
        await self.close()
        self._raise_if_failed()
        return self.result

    async def _wait_eof_or_failure(self) -> None:
        eof = asyncio.ensure_future(self._eof.wait())
        failed = asyncio.ensure_future(self._failed.wait())
        try:
            await asyncio.wait({eof, failed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            eof.cancel()
            failed.cancel()

    async def close(self) -> None:
        """Release the connection (after :meth:`stop`, or to abandon it)."""
        self._closing = True
        if not self._eof.is_set():
            self._conn.abort()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._conn.wait_closed(), self.timeout)
        self.result.stderr = self._conn.stderr

    @property
    def stderr(self) -> str:
        return self._conn.stderr


# ---- the Kapacitor side of one UDF ------------------------------------------


class Kapacitor:
    """Drives one UDF as Kapacitor does; see the module documentation.

    ``udf`` is a Handler class (run in process), a socket path, an argv list
    (a process UDF), or a :class:`~aioudf.testing.Target`. ``timeout`` is the
    UDF timeout of Kapacitor's configuration.
    """

    def __init__(self, udf: Any, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.target = as_target(udf)
        self.timeout = timeout
        self._info: InfoResponse | None = None

    async def connect(self) -> TaskConnection:
        """Open a raw connection (nothing sent yet). Close it when done."""
        connection = await self.target.open()
        return TaskConnection(connection, timeout=self.timeout, name=self.target.describe())

    async def info(self) -> InfoResponse:
        """Info on a connection of its own, as Kapacitor does at start-up."""
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
        options: Mapping[str, OptionArg] | None = None,
        *,
        restore: bytes | None = None,
        task_id: str = "task",
        node_id: str = "udf1",
    ) -> AsyncIterator[TaskConnection]:
        """A task's connection: Init (and Restore) done, ready for data.

        Leaving the block without calling ``stop()`` abandons the connection.
        """
        info = await self.info()
        conn = await self.connect()
        try:
            await conn.init(options or {}, info=info, task_id=task_id, node_id=node_id)
            if restore is not None:
                await conn.restore(restore)
            yield conn
        finally:
            await conn.close()

    async def run(
        self,
        options: Mapping[str, OptionArg] | None = None,
        *,
        points: Iterable[Point] = (),
        batches: Iterable[Batch] = (),
        restore: bytes | None = None,
        snapshot: bool = False,
        task_id: str = "task",
        node_id: str = "udf1",
    ) -> Result:
        """Run one task start to stop: Init, Restore, data, Snapshot, stop."""
        async with self.task(options, restore=restore, task_id=task_id, node_id=node_id) as conn:
            await conn.send_many(points)
            await conn.send_many(batches, chunk=10)
            saved = await conn.snapshot() if snapshot else None
            result = await conn.stop()
            result.snapshot = saved
            return result


def kapacitor_factory(timeout: float = DEFAULT_TIMEOUT) -> Callable[..., Kapacitor]:
    """``factory(udf, timeout=...)`` -> :class:`Kapacitor` (the pytest fixture's value)."""

    def make(udf: Any, *, timeout: float = timeout) -> Kapacitor:
        return Kapacitor(udf, timeout=timeout)

    return make
