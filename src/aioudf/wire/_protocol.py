"""The UDF protocol, both sides of the wire, as state machines without I/O.

Every rule of the conversation lives here, next to the state it reads:

:class:`UDFConnection`
    the UDF's side. Fed the bytes Kapacitor writes (:meth:`~UDFConnection.receive_data`,
    :meth:`~UDFConnection.receive_eof`), it hands out typed requests
    (:meth:`~UDFConnection.next_requests`), answers keepalives by itself
    (:meth:`~UDFConnection.data_to_send`), and turns the handler's results
    (info, init result, snapshot, restore result, emitted data, a failure)
    into the bytes to send. Its whole state can be exported as bytes and
    imported in another process (:meth:`~UDFConnection.export_state`,
    :meth:`~UDFConnection.from_state`).
:class:`~aioudf.wire.KapacitorConnection`
    Kapacitor's side, the mirror image, is in ``_kapacitor``.

The states of the UDF side (:class:`State`), and what moves between them
(written once, as the table ``_TRANSITIONS`` below the states)::

             Init              BeginBatch
     NEW ──────────► READY ◄────────────► IN_BATCH
                       │        EndBatch       │
                       │ init result: refused  │
                       ▼                       │
                  INIT_FAILED ◄────────────────┘
     any state ── fail() ──► FAILED       any state ── clean EOF ──► CLOSED

* Info and Keepalive may come in any state; a keepalive is answered inside.
* Init comes once, before any Snapshot, Restore or data.
* BeginBatch opens a batch that EndBatch closes; batches never nest.
* After a refused Init, Snapshot, Restore and data are violations, also
  those decoded before the refusal (:meth:`UDFConnection.forbidden`).
* Each Info, Init, Snapshot and Restore gets exactly one reply of its type.

What the UDF emits has a machine of its own (``_EMITS``), per the edge type it
provides: Points alone on a STREAM edge; BeginBatch, Points, EndBatch on a
BATCH edge, never nested; nothing at all once the connection has failed or
our side has ended. A message out of turn is an :class:`~aioudf.EmitError`
(``emit()`` raises it to the handler), and is not sent. Every reason a
connection ends is worded here too (:class:`Ending`).

Why one module of this size: the states, the two transition tables, the
checks of both directions and the export all read the same few slots of a
:class:`UDFConnection`; kept together, each rule sits beside the state it
reads (Kapacitor's side, which shares none of it, is ``_kapacitor``).

A violation by Kapacitor, like an undecodable frame, raises
:class:`~aioudf.ProtocolError` (the requests before it have been handed out
first) and keeps raising it: the byte stream cannot be resynchronised. A call
the state does not allow on our side (a reply nobody asked for, an export
inside a batch, a state that cannot be read) raises
:class:`~aioudf.StateError`. Nothing here reads a clock, a socket or a
thread: the asyncio agent, the test client, replay and the benchmark driver
are shells that move bytes between a transport and one of these objects.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Iterable
from typing import Literal, overload

from google.protobuf.message import DecodeError

from ..errors import ConnectionFailed, EmitError, ProtocolError, StateError
from ._frames import DEFAULT_MAX_FRAME_SIZE, FrameDecoder
from ._layout import DATA_TAGS, encode_uvarint, point_start, read_uvarint
from ._messages import (
    BeginBatch,
    DataMessage,
    EdgeType,
    EndBatch,
    InfoRequest,
    InfoResponse,
    InitRequest,
    KeepaliveRequest,
    Point,
    Request,
    RequestMessage,
    Response,
    RestoreRequest,
    SnapshotRequest,
    encode_data_frame,
    encode_error,
    encode_response,
)

__all__ = [
    "STATE_FORMAT_VERSION",
    "Ending",
    "State",
    "UDFConnection",
    "snapshot_bytes",
]

_parse_point = Point.FromString
_parse_request = Request.FromString


class State(enum.Enum):
    """Where a :class:`UDFConnection` stands in the conversation."""

    #: Nothing but Info and Keepalive yet; Init is awaited.
    NEW = "new"
    #: Init received: data, Snapshot and Restore may come.
    READY = "ready"
    #: Between a BeginBatch and its EndBatch.
    IN_BATCH = "in batch"
    #: The handler refused Init: only Info and Keepalive are accepted.
    INIT_FAILED = "init failed"
    #: An ErrorResponse was sent (or the connection was lost): nothing more.
    FAILED = "failed"
    #: Kapacitor closed its side cleanly; replies still owed may be sent.
    CLOSED = "closed"


# ---- the states and what moves them -----------------------------------------
#
# One table, as h11 keeps its own: (state, event) -> the next state. An event
# is the type of a request handed out, or one of our side's steps below; Info
# and Keepalive are missing because they come in any state and move nothing.
# A pair missing from the table is not allowed: a request is a violation
# (ProtocolError, worded by UDFConnection._out_of_turn), a step of ours a
# StateError. What the states carry (the InitRequest, the open batch's
# BeginBatch, the refusal's text, the failure's) is kept beside them, for the
# messages; it decides nothing.

#: Our side's steps, as events of the table.
_INIT_REFUSED = "init refused"
_EOF = "clean end of input"
_FAIL = "fail"

_DATA_KINDS = (SnapshotRequest, RestoreRequest, Point)
_ALL_KINDS = (InitRequest, SnapshotRequest, RestoreRequest, BeginBatch, Point, EndBatch)

_TRANSITIONS: dict[tuple[State, object], State] = {
    (State.NEW, InitRequest): State.READY,
    **{(State.READY, kind): State.READY for kind in _DATA_KINDS},
    (State.READY, BeginBatch): State.IN_BATCH,
    **{(State.IN_BATCH, kind): State.IN_BATCH for kind in _DATA_KINDS},
    (State.IN_BATCH, EndBatch): State.READY,
    # The handler refuses Init: Snapshot, Restore and data are violations.
    (State.READY, _INIT_REFUSED): State.INIT_FAILED,
    (State.IN_BATCH, _INIT_REFUSED): State.INIT_FAILED,
    (State.CLOSED, _INIT_REFUSED): State.CLOSED,
    # A clean end of input; inside a batch it is a violation.
    (State.NEW, _EOF): State.CLOSED,
    (State.READY, _EOF): State.CLOSED,
    (State.INIT_FAILED, _EOF): State.CLOSED,
    (State.CLOSED, _EOF): State.CLOSED,
    (State.FAILED, _EOF): State.FAILED,
    # Anything ends in FAILED, which hears nothing more: what Kapacitor still
    # sends is dropped, not judged.
    **{(state, _FAIL): State.FAILED for state in State},
    **{(State.FAILED, kind): State.FAILED for kind in _ALL_KINDS},
}
# The requests a refused Init forbids: those that READY or IN_BATCH take.
_NEED_INIT = frozenset(
    kind
    for (state, kind), _ in _TRANSITIONS.items()
    if state in (State.READY, State.IN_BATCH) and kind in _ALL_KINDS and kind is not InitRequest
)

# The requests that must be answered, and the Response field of their reply.
_REPLY_FIELD: dict[type, str] = {
    InfoRequest: "info",
    InitRequest: "init",
    SnapshotRequest: "snapshot",
    RestoreRequest: "restore",
}
# States in which Points are decoded on the fast paths. Tested by identity
# (``state is _READY or state is _IN_BATCH``), not as ``state in`` a set: an
# Enum member's hash is a Python-level call, two of them per read.
_READY = State.READY
_IN_BATCH = State.IN_BATCH
# States from which reading on reaches a safe point to export at.
_MOVABLE = frozenset((State.NEW, State.READY, State.IN_BATCH))

# ---- what the UDF emits ---------------------------------------------------------
#
# A second machine, for the data our side sends: (emit state, message type) ->
# the next emit state, one table per edge type the UDF provides
# (docs/protocol.md: a STREAM edge carries Points; a BATCH edge BeginBatch,
# the batch's Points, EndBatch, never nested). ``None`` is for a UDF whose
# class does not say what it provides (an adapter of another API): batches
# nest, Points may go anywhere. _ENDED (failed, or our side ended) is in no
# table: nothing more goes out. The states are ints, and whether a Point may
# go now is a bool kept beside them (UDFConnection.points_allowed): the agent
# reads it once a point instead of calling send_data().
_IDLE, _BATCH, _ENDED = 0, 1, 2
_STREAM_EMITS: dict[tuple[int, type], int] = {(_IDLE, Point): _IDLE}
_BATCH_EMITS: dict[tuple[int, type], int] = {
    (_IDLE, BeginBatch): _BATCH,
    (_BATCH, Point): _BATCH,
    (_BATCH, EndBatch): _IDLE,
}
_EMITS: dict[EdgeType | None, dict[tuple[int, type], int]] = {
    EdgeType.STREAM: _STREAM_EMITS,
    EdgeType.BATCH: _BATCH_EMITS,
    None: {**_STREAM_EMITS, **_BATCH_EMITS},
}
_DATA_TYPES = (Point, BeginBatch, EndBatch)


def snapshot_bytes(snapshot: object) -> bytes:
    """A handler's snapshot as the bytes a SnapshotResponse carries.

    A bytearray or memoryview is copied to bytes; anything else is a
    TypeError naming what ``snapshot()`` returned.
    """
    if isinstance(snapshot, (bytearray, memoryview)):
        return bytes(snapshot)
    if not isinstance(snapshot, bytes):
        raise TypeError(f"snapshot() must return bytes, not {type(snapshot).__name__}")
    return snapshot


class Ending:
    """Why a connection ends: the text of its ErrorResponse, and whether it can be told.

    Every reason is worded here, once, for all the shells: build one with the
    class methods (or ``Ending(reason)`` for a reason given from outside, like
    a server's stop) and end the connection with :meth:`UDFConnection.end`.
    ``told`` is False when the connection is gone and nothing can be sent.
    """

    __slots__ = ("reason", "told")

    def __init__(self, reason: str, *, told: bool = True) -> None:
        self.reason = reason
        self.told = told

    def __repr__(self) -> str:
        return f"Ending({self.reason!r}{'' if self.told else ', told=False'})"

    @classmethod
    def protocol(cls, error: ProtocolError) -> Ending:
        """Kapacitor broke the contract (a bad frame, a request out of order)."""
        return cls(f"protocol error: {error}")

    @classmethod
    def lost(cls, error: BaseException, *, writing: bool) -> Ending:
        """The transport failed: nothing can be told."""
        doing = "writing" if writing else "reading"
        return cls(f"connection lost while {doing}: {error}", told=False)

    @classmethod
    def internal(cls, error: BaseException) -> Ending:
        """A bug of the shell's own: it ends this connection only."""
        return cls(f"internal error in the UDF agent: {error!r}")

    @classmethod
    def handler(
        cls, handler: str, method: str, error: BaseException, request: object = None
    ) -> Ending:
        """The handler's ``method`` raised ``error`` (handling ``request``, if any)."""
        what = f" handling {type(request).__name__}" if request is not None else ""
        return cls(f"{handler}.{method}() failed{what}: {type(error).__name__}: {error}")

    @classmethod
    def cancelled(cls) -> Ending:
        """The server cancelled the connection mid-way (it is shutting down)."""
        return cls("UDF connection cancelled (the UDF server is shutting down)")

    @classmethod
    def unwritten(cls, pending: int, timeout: float) -> Ending:
        """Kapacitor did not read our last responses within ``timeout`` s of closing."""
        return cls(
            f"Kapacitor stopped reading: {pending} bytes of responses "
            f"could not be written within {timeout:g} s of closing",
            told=False,
        )


# ---- the exported state ----------------------------------------------------
#
# export_state() writes, and from_state() reads, this layout (every integer
# an unsigned protobuf varint, every "bytes" a varint length then the bytes):
#
#     magic           4 bytes   b"AUDC"
#     version         varint    STATE_FORMAT_VERSION (1)
#     state           varint    0 = NEW, 1 = READY
#     max_frame_size  varint    the limit frames were checked against
#     frames_decoded  varint    frames handed out so far (named in errors)
#     init            bytes     the InitRequest (serialized), READY only
#     unconsumed      bytes     received but not yet handed out, as received
#
# Nothing follows. A state is exported only at a safe point: outside a
# batch, with every Info/Init/Snapshot/Restore answered and the keepalive
# answers taken, so nothing else of the conversation is pending. A version
# this code does not know is refused, never guessed at.

#: The version of the exported state written by :meth:`UDFConnection.export_state`.
STATE_FORMAT_VERSION = 1
_STATE_MAGIC = b"AUDC"
_STATE_CODES = {State.NEW: 0, State.READY: 1}
_CODE_STATES = {code: state for state, code in _STATE_CODES.items()}


class _StateReader:
    """Reads the fields of an exported state, refusing anything malformed."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def varint(self, what: str) -> int:
        try:
            value, self.pos = read_uvarint(self.data, self.pos)
        except ValueError:
            raise StateError(
                f"not a UDF connection state: its {what} is cut short or malformed"
            ) from None
        return value

    def bytes(self, what: str) -> bytes:
        length = self.varint(what)
        end = self.pos + length
        if end > len(self.data):
            raise StateError(f"not a UDF connection state: its {what} is cut short")
        out = self.data[self.pos : end]
        self.pos = end
        return out


class UDFConnection:
    """The UDF's side of one connection: bytes in, requests out, replies to bytes.

    Feed it what Kapacitor writes with :meth:`receive_data` (and
    :meth:`receive_eof` at end of stream), then take requests with
    :meth:`next_requests` (or :meth:`next_request`) until none is left.
    Keepalives never come out: they are answered inside, and the answers
    wait in :meth:`data_to_send` for the caller to write. Each Info, Init,
    Snapshot and Restore handed out is owed exactly one reply, built by
    :meth:`send_info`, :meth:`send_init_result`, :meth:`send_snapshot` and
    :meth:`send_restore_result`; the emitted data is framed by
    :meth:`send_data`, which checks that it fits the edge type the UDF
    ``provides`` and that batches nest, and :meth:`fail` (or :meth:`end`)
    builds the ErrorResponse that ends the connection. Those methods return
    the bytes to write, in the order they are called.

    ``max_frame_size`` bounds one request (bytes); a larger one is a
    :class:`~aioudf.FrameTooLarge` before any of its body is buffered.
    ``provides`` is the :class:`~aioudf.EdgeType` of the data the UDF emits;
    ``None`` (not known) checks only that emitted batches nest.
    """

    __slots__ = (
        "_batch",
        "_emits",
        "_emitted_batch",
        "_emitting",
        "_error",
        "_frames",
        "_init_error",
        "_outbox",
        "_outbox_times",
        "_owed",
        "_provides",
        "answered_keepalives",
        "failure",
        "init_request",
        "points_allowed",
        "state",
    )

    def __init__(
        self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, *, provides: EdgeType | None = None
    ) -> None:
        self._frames = FrameDecoder(max_frame_size)
        #: Where the conversation stands; see :class:`State`.
        self.state = State.NEW
        #: The InitRequest, once received (what a handler is built from).
        self.init_request: InitRequest | None = None
        #: Why the connection ended, once :meth:`fail` was called.
        self.failure: str | None = None
        self._batch: BeginBatch | None = None  # the open batch (IN_BATCH), for messages
        # What the UDF emits (see _EMITS): its state, the table of its edge type.
        self._emitting = _IDLE
        self._emitted_batch: BeginBatch | None = None  # the batch it emits, for messages
        self._provides: EdgeType | None = None
        self._emits = _EMITS[None]
        #: True while a Point may be emitted now (what :meth:`send_data`
        #: checks first): a shell that frames Points itself reads it once a
        #: point, and calls :meth:`send_data` for the error when it is False.
        self.points_allowed = True
        self.provides = provides
        self._init_error: str | None = None  # the handler's reason for refusing Init
        self._error: ProtocolError | None = None  # Kapacitor's violation, raised again
        self._outbox: list[bytes] = []  # keepalive answers, for data_to_send()
        self._outbox_times: list[int] = []
        #: The ``time`` of each keepalive whose answer the last
        #: :meth:`data_to_send` returned (Kapacitor's clock, ns): how late
        #: the answers are, for metrics.
        self.answered_keepalives: list[int] = []
        # Replies owed, by Response field: requests handed out, not yet answered.
        self._owed: dict[str, int] = dict.fromkeys(_REPLY_FIELD.values(), 0)

    def __repr__(self) -> str:
        return f"<UDFConnection {self.state.value}, {self._frames.frames_decoded} frames>"

    @property
    def init_accepted(self) -> bool:
        """True once the handler accepted Init (:meth:`send_init_result`)."""
        return self.init_request is not None and not self._owed["init"] and self._init_error is None

    @property
    def movable(self) -> bool:
        """True while reading on may reach a point where :attr:`can_export` holds.

        False once the connection has ended, or its Init was refused.
        Inside a batch it is True: the batch's EndBatch leads to one.
        """
        return self.state in _MOVABLE

    @property
    def provides(self) -> EdgeType | None:
        """The edge type of what the UDF emits (``None``: not known, only nesting is checked)."""
        return self._provides

    @provides.setter
    def provides(self, edge: EdgeType | None) -> None:
        if self._emitting != _IDLE and edge != self._provides:
            raise StateError("cannot change what the UDF provides inside a batch it emits")
        self._provides = None if edge is None else EdgeType(edge)
        self._emits = _EMITS[self._provides]
        self.points_allowed = (self._emitting, Point) in self._emits

    # ---- bytes in ---------------------------------------------------------

    @property
    def max_frame_size(self) -> int:
        """The largest request accepted, in bytes."""
        return self._frames.max_frame_size

    @property
    def in_batch(self) -> bool:
        """True between a BeginBatch and its EndBatch (the requests handed out)."""
        return self.state is State.IN_BATCH

    @property
    def buffered(self) -> int:
        """Bytes received but not yet handed out as requests."""
        return self._frames.buffered

    @property
    def needs_data(self) -> bool:
        """True when :meth:`next_requests` is known to return nothing until more bytes come.

        A cheap test for a caller that decodes a run at a time: after a run
        that used up (or stopped at a frame cut by the end of) the bytes
        received, it need not call again to find nothing.
        """
        return self._frames.needs_data and self._error is None

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes received from Kapacitor (must not be modified afterwards)."""
        self._frames.feed(data)

    def receive_eof(self) -> None:
        """Kapacitor closed its side; raise if it stopped mid-frame or mid-batch.

        Call it once :meth:`next_requests` has returned everything. A clean
        end moves to CLOSED; replies still owed may be sent after it.
        """
        try:
            self._frames.feed_eof()
        except ProtocolError as exc:
            self._error = exc
            raise
        moved = _TRANSITIONS.get((self.state, _EOF))
        if moved is None:
            assert self._batch is not None  # IN_BATCH: the only state EOF may not end
            self._error = ProtocolError(
                f"stream ended inside the batch for group {self._batch.group!r} "
                "(BeginBatch without EndBatch)"
            )
            raise self._error
        self.state = moved

    # ---- requests out -----------------------------------------------------

    def next_request(self) -> RequestMessage | None:
        """Return the next request, or ``None`` if more bytes are needed.

        Keepalives are answered (see :meth:`data_to_send`) and skipped.
        """
        if self._error is not None:
            raise self._error
        frames = self._frames
        while True:
            try:
                body = frames.next_frame()
            except ProtocolError as exc:
                self._error = exc
                raise
            if body is None:
                return None
            size = len(body)
            # Fast path for the bulk of the traffic: a frame holding nothing but
            # a Point. Parse the Point directly, without the wrapper.
            if (state := self.state) is _READY or state is _IN_BATCH:
                start = point_start(body)
                if start:
                    try:
                        return _parse_point(body[start:])  # type: ignore[arg-type]  # buffers are accepted
                    except DecodeError as exc:
                        raise self._violation(self._undecodable(size, exc)) from None
            try:
                request = _parse_request(body)  # type: ignore[arg-type]
            except DecodeError as exc:
                raise self._violation(self._undecodable(size, exc)) from None
            kind = request.WhichOneof("message")
            if kind is None:
                raise self._violation(
                    ProtocolError(
                        f"frame {frames.frames_decoded} ({size} bytes) is a Request "
                        "that carries no message"
                    )
                )
            message: RequestMessage = getattr(request, kind)
            if type(message) is KeepaliveRequest:
                self._answer_keepalive(message)
                continue
            self._accept(message)
            return message

    @overload
    def next_requests(
        self, limit: int = ..., *, raw_points: Literal[False] = ...
    ) -> list[RequestMessage]: ...

    @overload
    def next_requests(
        self, limit: int = ..., *, raw_points: bool
    ) -> list[RequestMessage | bytes]: ...

    def next_requests(
        self, limit: int = sys.maxsize, *, raw_points: bool = False
    ) -> list[RequestMessage] | list[RequestMessage | bytes]:
        """Return the next run of Points (at most ``limit``), or one request of another kind.

        The same requests :meth:`next_request` returns, many at a time: the
        Points that follow each other in the bytes received are decoded in
        one loop (the bulk of the traffic: a chunk read holds a thousand), and
        any other request comes alone in its list, so the caller can act on
        it before taking the Points behind it. An empty list means more bytes
        are needed. Like :meth:`next_request`, a bad frame raises only once
        the requests before it have been returned.

        Points not returned stay undecoded: a parsed Point takes about 16
        times the memory of its bytes, so a caller that can only queue so
        many passes ``limit`` and leaves the rest as bytes.

        ``raw_points``: a run of Points comes as the bytes of each Point
        message (``bytes``, in a list of their own), for the caller to parse
        where it runs the handler: frames ``frames_decoded - len(run) + 1``
        to ``frames_decoded``, one after the other. A Point that turns out
        not to parse is the violation :meth:`undecodable_point` returns.
        Points that do not come in such a run (one whose frame a read cut,
        say) are parsed here as ever.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if (state := self.state) is _READY or state is _IN_BATCH:
            # Points parsed in place; what ends the run goes through
            # next_request().
            points: list[RequestMessage] = []
            convert = bytes if raw_points else _parse_point
            if self._frames.take_points(limit, convert, points):  # type: ignore[arg-type]  # buffers are accepted
                return points
        message = self.next_request()
        return [] if message is None else [message]

    def _accept(self, message: RequestMessage) -> None:
        """Move the state by ``message`` (the table), or raise the violation it is."""
        kind = type(message)
        if kind is InfoRequest:
            self._owed["info"] += 1
            return
        moved = _TRANSITIONS.get((self.state, kind))
        if moved is None:
            raise self._violation(self._out_of_turn(message))
        self.state = moved
        if moved is State.FAILED:
            return  # heard after the end: dropped
        if kind is BeginBatch:
            self._batch = message  # type: ignore[assignment]
        elif kind is EndBatch:
            self._batch = None
        elif kind is InitRequest:
            self.init_request = message  # type: ignore[assignment]
        if (reply := _REPLY_FIELD.get(kind)) is not None:
            self._owed[reply] += 1

    def _out_of_turn(self, message: RequestMessage) -> ProtocolError:
        """The violation ``message`` is in the current state (the table has no move for it)."""
        kind = type(message)
        state = self.state
        name = kind.__name__.replace("Request", "")
        if kind is InitRequest:
            return self._out_of_order("Init", "after Init (Init may come only once)")
        if state is State.INIT_FAILED:
            return self.refusal(message)
        if state is State.NEW:
            return self._out_of_order(name, "before Init")
        if kind is BeginBatch and self._batch is not None:
            when = f"while the batch for group {self._batch.group!r} is still open"
            return self._out_of_order("BeginBatch", when)
        if kind is EndBatch:
            return self._out_of_order("EndBatch", "without a BeginBatch")
        return self._out_of_order(name, f"when the connection is {state.value}")

    def refusal(self, message: RequestMessage) -> ProtocolError:
        """The violation a request that came after a refused Init is."""
        return ProtocolError(
            f"unexpected {type(message).__name__.replace('Request', '')} after a failed Init "
            f"({self._init_error})"
        )

    def forbidden(self, requests: Iterable[object]) -> tuple[int, ProtocolError] | None:
        """The first of ``requests`` that the state now forbids, and the violation it is.

        For a shell that decodes ahead of its handler: the requests it holds
        were accepted before the handler refused Init, and the refusal makes
        the Snapshot, Restore and data among them violations too (those
        decoded later raise it from :meth:`next_requests` themselves).
        Returns the index of the first one and its violation, to end the
        connection there, or ``None``: Init was not refused, or nothing
        among ``requests`` is forbidden. Items that are not requests are
        passed over.
        """
        if self._init_error is None:
            return None
        for index, message in enumerate(requests):
            if type(message) in _NEED_INIT:
                return index, self.refusal(message)  # type: ignore[arg-type]
        return None

    def _violation(self, error: ProtocolError) -> ProtocolError:
        self._error = error
        return error

    def _out_of_order(self, what: str, when: str) -> ProtocolError:
        return ProtocolError(f"unexpected {what} {when} (frame {self._frames.frames_decoded})")

    def _undecodable(self, size: int, exc: Exception, frame: int | None = None) -> ProtocolError:
        return ProtocolError(
            f"frame {self._frames.frames_decoded if frame is None else frame} ({size} bytes) "
            f"is not a valid Request message: {exc}"
        )

    def undecodable_point(self, point: bytes, frame: int, exc: DecodeError) -> ProtocolError:
        """The violation a Point :meth:`next_requests` handed out raw is: it does not parse.

        ``frame`` is its frame's number, ``exc`` what the parse raised. The
        connection has failed; the error is the one the Point would have
        raised had it been parsed here.
        """
        # The frame held the Point alone: its field's tag, length and bytes.
        size = len(DATA_TAGS[Point]) + len(encode_uvarint(len(point))) + len(point)
        return self._violation(self._undecodable(size, exc, frame))

    @property
    def frames_decoded(self) -> int:
        """Frames handed out so far (errors name frames by this count)."""
        return self._frames.frames_decoded

    # ---- bytes out --------------------------------------------------------

    def _answer_keepalive(self, request: KeepaliveRequest) -> None:
        if self.state is State.FAILED:
            return
        response = Response()
        response.keepalive.time = request.time
        self._outbox.append(encode_response(response))
        self._outbox_times.append(request.time)

    def data_to_send(self) -> bytes:
        """The bytes the connection produced by itself (keepalive answers); then empty."""
        outbox = self._outbox
        if not outbox:
            return b""
        self._outbox = []
        self.answered_keepalives = self._outbox_times
        self._outbox_times = []
        return b"".join(outbox)

    def _reply(self, field: str, fill: Response) -> bytes:
        if self.state is State.FAILED:
            raise StateError(f"cannot send a {field} reply: the connection has failed")
        if not self._owed[field]:
            raise StateError(f"cannot send a {field} reply: Kapacitor did not ask for one")
        self._owed[field] -= 1
        return encode_response(fill)

    def send_info(self, info: InfoResponse) -> bytes:
        """The reply to an InfoRequest."""
        response = Response()
        response.info.CopyFrom(info)
        return self._reply("info", response)

    def send_init_result(self, error: str | None = None) -> bytes:
        """The reply to Init: accepted, or refused with ``error`` (shown as the task's error).

        A refused Init makes every later Snapshot, Restore and data request
        a violation (:meth:`refusal`).
        """
        response = Response()
        response.init.success = error is None
        if error is not None:
            response.init.error = error
        data = self._reply("init", response)
        if error is not None:
            self._init_error = error
            self.state = _TRANSITIONS[(self.state, _INIT_REFUSED)]
        return data

    def send_snapshot(self, snapshot: bytes | bytearray | memoryview) -> bytes:
        """The reply to a SnapshotRequest: the handler's state as bytes.

        Anything but bytes (or a bytearray or memoryview) is a TypeError
        (:func:`snapshot_bytes`).
        """
        response = Response()
        response.snapshot.snapshot = snapshot_bytes(snapshot)
        return self._reply("snapshot", response)

    def send_restore_result(self, error: str | None = None) -> bytes:
        """The reply to a RestoreRequest: restored, or refused with ``error``."""
        response = Response()
        response.restore.success = error is None
        if error is not None:
            response.restore.error = error
        return self._reply("restore", response)

    def send_data(self, message: DataMessage) -> bytes:
        """A Point, BeginBatch or EndBatch the handler emits, framed, if it may go now.

        The UDF may emit at any time, but what it emits must fit the edge it
        :attr:`provides`, batches must nest (no EndBatch without its
        BeginBatch, no BeginBatch inside a batch) and nothing goes out once
        the connection failed or our side ended (:meth:`close_output`).
        Raises :class:`~aioudf.EmitError` for a message out of turn,
        :class:`~aioudf.ConnectionFailed` after the end, TypeError for
        anything but the three data messages; nothing is framed then. A
        shell may frame Points itself while :attr:`points_allowed` is True.
        """
        kind = type(message)
        moved = self._emits.get((self._emitting, kind))
        if moved is None:
            raise self._emit_refused(message)
        frame = encode_data_frame(message)
        if kind is BeginBatch:
            self._emitted_batch = message  # type: ignore[assignment]
        self._emitting = moved
        self.points_allowed = (moved, Point) in self._emits
        return frame

    @property
    def emitting_batch(self) -> bool:
        """True between a BeginBatch the UDF emitted and its EndBatch."""
        return self._emitting == _BATCH

    def _emit_refused(self, message: object) -> Exception:
        """Why ``message`` may not be emitted now (the emit table has no move for it)."""
        kind = type(message)
        if kind not in _DATA_TYPES:
            return TypeError(
                f"only Point, BeginBatch and EndBatch can be emitted, not {kind.__name__}"
            )
        if self._emitting == _ENDED:
            if self.failure is not None:
                return ConnectionFailed(
                    f"cannot emit: the connection to Kapacitor has failed ({self.failure})"
                )
            return ConnectionFailed("cannot emit: the connection to Kapacitor is closed")
        if kind is Point:
            return EmitError(
                "cannot emit a Point outside a batch: the UDF provides a BATCH edge "
                "(emit a BeginBatch first)"
            )
        if self._provides is EdgeType.STREAM:
            return EmitError(
                f"cannot emit {kind.__name__}: the UDF provides a STREAM edge, which carries "
                "Points only (set provides = EdgeType.BATCH to emit batches)"
            )
        if kind is BeginBatch:
            group = self._emitted_batch.group if self._emitted_batch is not None else ""
            return EmitError(
                f"cannot emit BeginBatch: the batch for group {group!r} is still open "
                "(emit its EndBatch first)"
            )
        return EmitError("cannot emit EndBatch: no batch is open (emit its BeginBatch first)")

    def close_output(self) -> None:
        """Our side has ended cleanly: nothing more is emitted (:meth:`send_data` refuses)."""
        self._emitting = _ENDED
        self.points_allowed = False

    def fail(self, reason: str, *, send: bool = True) -> bytes:
        """End the connection: the ErrorResponse telling Kapacitor ``reason``.

        Keepalive answers not yet taken come first. The first cause is kept
        (:attr:`failure`); later calls return nothing. ``send=False`` records
        a cause that cannot be told (the connection is lost) and returns
        nothing. Nothing is emitted after it.
        """
        if self.failure is not None:
            return b""
        self.failure = reason
        self.state = _TRANSITIONS[(self.state, _FAIL)]
        self.close_output()
        pending = self.data_to_send()
        return pending + encode_error(reason) if send else b""

    def end(self, ending: Ending, *, send: bool = True) -> bytes:
        """End the connection for ``ending`` (:meth:`fail` with its reason).

        Nothing is sent when the ending cannot be told or ``send`` is False
        (the shell can no longer write).
        """
        return self.fail(ending.reason, send=send and ending.told)

    # ---- moving the connection --------------------------------------------

    @property
    def can_export(self) -> bool:
        """True at a safe point: :meth:`export_state` would succeed now."""
        return self._unsafe() is None

    def _unsafe(self) -> str | None:
        """Why the state cannot be exported now, or ``None``."""
        if self.state is State.IN_BATCH and self._batch is not None:
            return f"a batch (group {self._batch.group!r}) is open: export after its EndBatch"
        if self.state not in _STATE_CODES:
            return f"the connection is {self.state.value}"
        owed = [field for field, count in self._owed.items() if count]
        if owed:
            return f"Kapacitor is owed a reply ({', '.join(owed)}): send it first"
        if self._outbox:
            return "keepalive answers are waiting: take data_to_send() first"
        if self._error is not None:
            return f"the stream is broken ({self._error})"
        return None

    def export_state(self) -> bytes:
        """The whole state of the connection, as bytes another process can import.

        Holds where the conversation stands, the InitRequest, and every byte
        received but not yet handed out; see the format above
        :data:`STATE_FORMAT_VERSION`. Allowed only at a safe point
        (:attr:`can_export`): between batches, every reply sent, the
        keepalive answers taken. Raises :class:`~aioudf.StateError` naming
        what is pending otherwise. The requests handed out must have been
        processed by the handler: what they changed moves with the
        handler's own snapshot, not here.
        """
        unsafe = self._unsafe()
        if unsafe is not None:
            raise StateError(f"cannot export the connection state: {unsafe}")
        init = b"" if self.init_request is None else self.init_request.SerializeToString()
        unconsumed = self._frames.unconsumed()
        return b"".join(
            (
                _STATE_MAGIC,
                encode_uvarint(STATE_FORMAT_VERSION),
                encode_uvarint(_STATE_CODES[self.state]),
                encode_uvarint(self._frames.max_frame_size),
                encode_uvarint(self._frames.frames_decoded),
                encode_uvarint(len(init)),
                init,
                encode_uvarint(len(unconsumed)),
                unconsumed,
            )
        )

    @classmethod
    def from_state(
        cls,
        state: bytes,
        *,
        max_frame_size: int | None = None,
        provides: EdgeType | None = None,
    ) -> UDFConnection:
        """A connection continuing where the one that exported ``state`` stopped.

        Its next requests are those the exporter had received but not
        handed out; the bytes Kapacitor writes next follow them. Give
        ``max_frame_size`` to check frames against this process's limit
        instead of the exporter's; ``provides`` is the handler's edge type
        (it is not part of the state: the handler may change). Raises
        :class:`~aioudf.StateError` for bytes that are not an exported state
        of a version known here.
        """
        data = bytes(state)
        if data[:4] != _STATE_MAGIC:
            raise StateError("not a UDF connection state (it does not start with b'AUDC')")
        reader = _StateReader(data)
        reader.pos = 4
        version = reader.varint("version")
        if version != STATE_FORMAT_VERSION:
            raise StateError(
                f"UDF connection state version {version} cannot be read here "
                f"(this aioudf reads version {STATE_FORMAT_VERSION})"
            )
        code = reader.varint("state")
        if code not in _CODE_STATES:
            raise StateError(f"not a UDF connection state: unknown state code {code}")
        limit = reader.varint("max_frame_size")
        decoded = reader.varint("frame count")
        init = reader.bytes("InitRequest")
        unconsumed = reader.bytes("unconsumed bytes")
        if reader.pos != len(data):
            raise StateError(
                f"not a UDF connection state: {len(data) - reader.pos} bytes follow its end"
            )
        conn = cls(limit if max_frame_size is None else max_frame_size, provides=provides)
        conn.state = _CODE_STATES[code]
        if conn.state is State.READY:
            try:
                conn.init_request = InitRequest.FromString(init)
            except DecodeError as exc:
                raise StateError(f"not a UDF connection state: its InitRequest: {exc}") from None
        elif init:
            raise StateError("not a UDF connection state: an InitRequest before Init")
        conn._frames.frames_decoded = decoded
        conn._frames.feed(unconsumed)
        return conn
