"""What a UDF author writes: a :class:`Handler` subclass.

A handler states what it consumes and produces, declares its options, and
implements the request methods it cares about. One handler instance serves
one Kapacitor connection (one task node), so per-task state lives on ``self``.

Methods are ``async`` and run on the event loop, one request at a time and in
the order Kapacitor sent them. Code that blocks (a synchronous client, heavy
CPU work) subclasses :class:`BlockingHandler` instead: its plain ``def``
methods then run in a worker thread, still one at a time and in order, while
the agent keeps answering keepalives.

Output goes through ``emit()`` at any time, from any method or from a task the
handler started. ``await self.emit(point)`` waits when Kapacitor reads slower
than the handler produces, which is what keeps memory bounded.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ..errors import ProtocolError
from ..wire._messages import (
    BeginBatch,
    DataMessage,
    EdgeType,
    EndBatch,
    InfoResponse,
    InitRequest,
    Point,
)
from ._options import Option, OptionValues, collect_options
from ._startup import install_startup
from ._state import Codec, GroupState, declared_states, restore_states, snapshot_states

__all__ = [
    "BaseHandler",
    "BatchOut",
    "BlockingHandler",
    "EmitSink",
    "Handler",
]


class BatchOut(Protocol):
    """A whole batch ``emit_batch()`` takes in one argument: a :class:`~aioudf.PointBatch`.

    (A protocol, so that this module, which ``PointBatch``'s imports, does
    not import it back.)
    """

    def messages(self) -> list[DataMessage]:
        """BeginBatch (``size`` set), the points, EndBatch."""
        ...


class _Ready(tuple[()]):
    """An awaitable that is already done: ``emit()`` returns it when there is room.

    Awaiting it iterates an empty tuple, all in C: ``await self.emit(p)`` runs
    once per point, and a generator-based ``__await__`` costs a Python frame
    each time (measured: a quarter of the cost of the await).
    """

    __slots__ = ()
    if TYPE_CHECKING:

        def __await__(self) -> Generator[Any, None, None]: ...

    else:
        __await__ = tuple.__iter__


#: The already-done awaitable (see :class:`_Ready`).
READY = _Ready()


class EmitSink(Protocol):
    """Where a handler's ``emit()`` goes: the agent serving its connection.

    Declared here, on the handler's side, so that the handler module does not
    depend on the agent (the agent depends on it).
    """

    def emit(self, message: DataMessage) -> Awaitable[None]: ...


# The request methods a handler may implement (and the agent dispatches to).
REQUEST_METHODS = (
    "info",
    "init",
    "snapshot",
    "restore",
    "begin_batch",
    "point",
    "end_batch",
    "stop",
)


class _ClassLogger:
    """``self.log``: a logger named after the handler's class (``module.Class``).

    Its records, like those of any logger used while a connection is served
    (also from worker threads and tasks the handler starts), carry the
    connection's ``task``, ``node`` and ``conn`` (see :mod:`aioudf.runtime`).
    A handler that sets ``self.log`` itself keeps its own.
    """

    def __get__(self, instance: object, owner: type) -> logging.Logger:
        return logging.getLogger(f"{owner.__module__}.{owner.__qualname__}")


class BaseHandler:
    """What :class:`Handler` and :class:`BlockingHandler` share.

    Subclass one of those two; this class is what agents and servers accept
    (use it in annotations meaning "any handler").

    Class attributes:

    ``wants`` / ``provides``
        :class:`~aioudf.EdgeType` consumed and produced (default STREAM).
    ``blocking``
        ``True`` to allow plain ``def`` request methods (what
        :class:`BlockingHandler` sets); without it, defining one is a
        TypeError. The agent runs each plain ``def`` method in a worker
        thread and each ``async def`` one on the event loop, whatever the
        class says.
    :class:`~aioudf.Option` attributes
        The TICKscript methods the UDF accepts; their values are readable as
        attributes once Init has been received.
    :func:`~aioudf.per_group` declarations
        Per-group state, written by the default ``snapshot`` and read back by
        the default ``restore`` (see :mod:`aioudf.toolkit`).
    ``state_codec``
        How that state becomes snapshot bytes (default: JSON).

    Every request method has a default: ``info`` describes the class,
    ``init`` accepts, ``snapshot`` and ``restore`` save and load the declared
    per-group state (nothing when there is none),
    ``stop`` does nothing, and the data methods raise a clear error when the
    data does not fit the declared edge type.
    """

    wants: ClassVar[EdgeType] = EdgeType.STREAM
    provides: ClassVar[EdgeType] = EdgeType.STREAM
    blocking: ClassVar[bool] = False
    #: The codec of per-group state snapshots; None means JSON.
    state_codec: ClassVar[Codec | None] = None

    #: The declared options by TICKscript name, gathered from the class.
    options: ClassVar[dict[str, Option[Any]]] = {}

    # Set by the agent when the handler is attached to a connection.
    _aioudf_emitter: EmitSink | None = None
    # Read by the Option properties; replaced by the values at Init.
    _aioudf_options: OptionValues = OptionValues({})
    #: Kapacitor's task and node ids, set at Init.
    task_id: str = ""
    node_id: str = ""

    # The per-group state declarations, gathered from the class and its bases.
    _aioudf_states: ClassVar[dict[str, GroupState[Any, Any]]] = {}

    def __new__(cls, *args: object, **kwargs: object) -> Any:
        """Attach the per-group state before the subclass's ``__init__`` runs."""
        handler = super().__new__(cls)
        for declaration in cls._aioudf_states.values():
            declaration.attach(handler)  # before the subclass's __init__ runs
        return handler

    def __init_subclass__(cls, **kwargs: object) -> None:
        """Check the subclass's methods, gather its options, state and start-up hooks."""
        super().__init_subclass__(**kwargs)
        cls._aioudf_states = declared_states(cls)
        cls.wants = EdgeType(cls.wants)
        cls.provides = EdgeType(cls.provides)
        cls.options = collect_options(reversed(cls.__mro__))
        cls._aioudf_options = OptionValues(cls.options)
        for name in REQUEST_METHODS:
            method = getattr(cls, name, None)
            if method is None or inspect.iscoroutinefunction(method) or cls.blocking:
                continue
            raise TypeError(
                f"{cls.__qualname__}.{name}() is a plain function: make it "
                "'async def', or subclass BlockingHandler (blocking = True) to run "
                "it in a worker thread"
            )
        install_startup(cls, cls.blocking)

    log = _ClassLogger()

    def _aioudf_fast_point(self) -> Callable[[Point], Awaitable[None]] | None:
        """A plain function the agent may call for each Point instead of ``point()``.

        It returns an awaitable (:data:`READY` when it did everything at
        once), so the agent skips creating and running a coroutine a point.
        None (the default): the agent awaits :meth:`point` itself.
        """
        return None

    def emit(self, message: DataMessage) -> Awaitable[None]:
        """Send a Point, BeginBatch or EndBatch to Kapacitor: queued at once, in order.

        ``await self.emit(p)`` waits while the output queue is full; from a
        blocking handler's worker thread just call it: it blocks then. (Without
        ``await`` it is still queued and memory stays bounded; see README.md,
        "Emitting".)
        """
        emitter = self._aioudf_emitter
        if emitter is None:
            raise RuntimeError(
                f"{type(self).__name__} is not attached to a connection: emit() "
                "works inside a running agent (or aioudf.testing)"
            )
        return emitter.emit(message)


class Handler(BaseHandler):
    """Base class of async UDF handlers (``async def`` methods; attributes: BaseHandler)."""

    async def info(self) -> InfoResponse:
        """Describe the UDF: edge types and options (built from the class)."""
        return describe(type(self))

    async def init(self, request: InitRequest) -> None:
        """Prepare for a task (options are set); raise ``InitError`` to refuse it."""

    async def snapshot(self) -> bytes:
        """The handler's state for :meth:`restore`; by default the per-group state."""
        return snapshot_states(self)

    async def restore(self, snapshot: bytes) -> None:
        """Take a snapshot's state back; raise ``RestoreError`` to refuse it."""
        restore_states(self, snapshot)

    async def begin_batch(self, begin: BeginBatch) -> None:
        """A batch starts; its points follow, then :meth:`end_batch`."""
        raise _wrong_edge(self, "BeginBatch", EdgeType.BATCH)

    async def point(self, point: Point) -> None:
        """A point arrived (alone for a stream, inside a batch for a batch edge)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement point()")

    async def end_batch(self, end: EndBatch) -> None:
        """The current batch is complete."""
        raise _wrong_edge(self, "EndBatch", EdgeType.BATCH)

    async def stop(self) -> None:
        """Kapacitor closed its side after a successful Init: emit what is held."""

    async def emit_batch(
        self,
        begin: BeginBatch | BatchOut,
        points: Iterable[Point] = (),
        end: EndBatch | None = None,
    ) -> None:
        """Emit ``begin`` (a copy, ``size`` set), ``points``, ``end``; or one PointBatch."""
        for message in batch_messages(begin, points, end):
            await self.emit(message)


class BlockingHandler(BaseHandler):
    """A handler whose methods block: each runs in a worker thread, in order.

    Write the request methods as plain ``def``; they mean what
    :class:`Handler`'s do. The agent stays responsive (keepalives are
    answered) while a call runs. ``self.emit(p)`` may be called from these
    methods directly; it blocks while the output queue is full.
    """

    blocking = True

    def info(self) -> InfoResponse:
        return describe(type(self))

    def init(self, request: InitRequest) -> None:
        pass

    def snapshot(self) -> bytes:
        return snapshot_states(self)

    def restore(self, snapshot: bytes) -> None:
        restore_states(self, snapshot)

    def begin_batch(self, begin: BeginBatch) -> None:
        raise _wrong_edge(self, "BeginBatch", EdgeType.BATCH)

    def point(self, point: Point) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not implement point()")

    def end_batch(self, end: EndBatch) -> None:
        raise _wrong_edge(self, "EndBatch", EdgeType.BATCH)

    def stop(self) -> None:
        pass

    def emit_batch(
        self,
        begin: BeginBatch | BatchOut,
        points: Iterable[Point] = (),
        end: EndBatch | None = None,
    ) -> None:
        for message in batch_messages(begin, points, end):
            self.emit(message)


def batch_messages(
    begin: BeginBatch | BatchOut, points: Iterable[Point] = (), end: EndBatch | None = None
) -> list[DataMessage]:
    """BeginBatch (a copy, with ``size`` set to the number of points), the points, EndBatch."""
    if not isinstance(begin, BeginBatch):
        return begin.messages()
    if end is None:
        raise TypeError("emit_batch(begin, points, end) needs the EndBatch")
    body = list(points)
    head = BeginBatch()
    head.CopyFrom(begin)
    head.size = len(body)
    return [head, *body, end]


def describe(cls: type[BaseHandler]) -> InfoResponse:
    """The InfoResponse for a handler class: edge types and declared options."""
    info = InfoResponse(wants=int(cls.wants), provides=int(cls.provides))  # type: ignore[arg-type]
    for name, option in cls.options.items():
        info.options[name].valueTypes.extend(int(t) for t in option.value_types)  # type: ignore[misc]
    return info


def _wrong_edge(handler: BaseHandler, what: str, edge: EdgeType) -> ProtocolError:
    if handler.wants is not edge:
        return ProtocolError(
            f"{type(handler).__name__} wants a {handler.wants.name} edge and cannot take {what}"
        )
    return ProtocolError(f"{type(handler).__name__} does not implement {what}")
