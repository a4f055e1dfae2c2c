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
:class:`KapacitorConnection`
    Kapacitor's side: requests out, responses in, batches assembled, replies
    matched to the requests that asked for them, and the keepalive clock of
    Kapacitor's ``udf/server.go``.

The states of the UDF side (:class:`State`), and what moves between them::

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
* After a refused Init, Snapshot, Restore and data are violations.
* Each Info, Init, Snapshot and Restore gets exactly one reply of its type.

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

import collections
import datetime
import enum
import sys
from collections.abc import Iterable

from google.protobuf.message import DecodeError

from .errors import ProtocolError, StateError
from .framing import DEFAULT_MAX_FRAME_SIZE, FrameDecoder
from .messages import (
    BeginBatch,
    DataMessage,
    EndBatch,
    ErrorResponse,
    InfoRequest,
    InfoResponse,
    InitRequest,
    InitResponse,
    KeepaliveRequest,
    KeepaliveResponse,
    Option,
    Point,
    Request,
    RequestMessage,
    Response,
    RestoreRequest,
    RestoreResponse,
    SnapshotRequest,
    SnapshotResponse,
    encode_data_frame,
    encode_error,
    encode_response,
)
from .wire import TAG_KINDS, encode_frame, encode_uvarint, point_start, read_uvarint

__all__ = [
    "STATE_FORMAT_VERSION",
    "EmittedBatch",
    "KapacitorConnection",
    "KapacitorEvent",
    "State",
    "UDFConnection",
    "go_time",
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
    :meth:`send_data`, and :meth:`fail` builds the ErrorResponse that ends
    the connection. Those methods return the bytes to write, in the order
    they are called.

    ``max_frame_size`` bounds one request (bytes); a larger one is a
    :class:`~aioudf.FrameTooLarge` before any of its body is buffered.
    """

    __slots__ = (
        "_batch",
        "_error",
        "_frames",
        "_init_error",
        "_outbox",
        "_outbox_times",
        "_owed",
        "answered_keepalives",
        "failure",
        "init_accepted",
        "init_request",
        "state",
    )

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self._frames = FrameDecoder(max_frame_size)
        #: Where the conversation stands; see :class:`State`.
        self.state = State.NEW
        #: The InitRequest, once received (what a handler is built from).
        self.init_request: InitRequest | None = None
        #: True once the handler accepted Init (:meth:`send_init_result`).
        self.init_accepted = False
        #: Why the connection ended, once :meth:`fail` was called.
        self.failure: str | None = None
        self._batch: BeginBatch | None = None  # the open batch, if any
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

    # ---- bytes in ---------------------------------------------------------

    @property
    def max_frame_size(self) -> int:
        """The largest request accepted, in bytes."""
        return self._frames.max_frame_size

    @property
    def in_batch(self) -> bool:
        """True between a BeginBatch and its EndBatch (the requests handed out)."""
        return self._batch is not None

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
        if self._batch is not None:
            self._error = ProtocolError(
                f"stream ended inside the batch for group {self._batch.group!r} "
                "(BeginBatch without EndBatch)"
            )
            raise self._error
        if self.state is not State.FAILED:
            self.state = State.CLOSED

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

    def next_requests(self, limit: int = sys.maxsize) -> list[RequestMessage]:
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
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if (state := self.state) is _READY or state is _IN_BATCH:
            # Points parsed in place; what ends the run goes through
            # next_request().
            points: list[RequestMessage] = []
            if self._frames.take_points(limit, _parse_point, points):  # type: ignore[arg-type]  # buffers are accepted
                return points
        message = self.next_request()
        return [] if message is None else [message]

    def _accept(self, message: RequestMessage) -> None:
        """Apply the order rules to ``message`` and move the state."""
        kind = type(message)
        reply = _REPLY_FIELD.get(kind)
        if kind is InfoRequest:
            self._owed["info"] += 1
            return
        state = self.state
        if kind is InitRequest:
            if self.init_request is not None:
                raise self._violation(
                    self._out_of_order("Init", "after Init (Init may come only once)")
                )
            self.init_request = message  # type: ignore[assignment]
            if state is State.NEW:
                self.state = State.READY
        elif self._init_error is not None:
            raise self._violation(self.refusal(message))
        elif self.init_request is None:
            name = kind.__name__.replace("Request", "")
            raise self._violation(self._out_of_order(name, "before Init"))
        elif kind is BeginBatch:
            if self._batch is not None:
                raise self._violation(
                    self._out_of_order(
                        "BeginBatch",
                        f"while the batch for group {self._batch.group!r} is still open",
                    )
                )
            self._batch = message  # type: ignore[assignment]
            if state is State.READY:
                self.state = State.IN_BATCH
        elif kind is EndBatch:
            if self._batch is None:
                raise self._violation(self._out_of_order("EndBatch", "without a BeginBatch"))
            self._batch = None
            if state is State.IN_BATCH:
                self.state = State.READY
        if reply is not None:
            self._owed[reply] += 1

    def refusal(self, message: RequestMessage) -> ProtocolError:
        """The violation a request that came after a refused Init is.

        For the requests handed out before the handler refused Init (the
        ones decoded later raise it from :meth:`next_requests` themselves).
        """
        return ProtocolError(
            f"unexpected {type(message).__name__.replace('Request', '')} after a failed Init "
            f"({self._init_error})"
        )

    def _violation(self, error: ProtocolError) -> ProtocolError:
        self._error = error
        return error

    def _out_of_order(self, what: str, when: str) -> ProtocolError:
        return ProtocolError(f"unexpected {what} {when} (frame {self._frames.frames_decoded})")

    def _undecodable(self, size: int, exc: Exception) -> ProtocolError:
        return ProtocolError(
            f"frame {self._frames.frames_decoded} ({size} bytes) is not a valid "
            f"Request message: {exc}"
        )

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
        self.init_accepted = error is None
        if error is not None:
            self._init_error = error
            if self.state is not State.CLOSED:
                self.state = State.INIT_FAILED
        return data

    def send_snapshot(self, snapshot: bytes | bytearray | memoryview) -> bytes:
        """The reply to a SnapshotRequest: the handler's state as bytes.

        Anything but bytes (or a bytearray or memoryview) is a TypeError.
        """
        if isinstance(snapshot, (bytearray, memoryview)):
            snapshot = bytes(snapshot)
        if not isinstance(snapshot, bytes):
            raise TypeError(f"snapshot() must return bytes, not {type(snapshot).__name__}")
        response = Response()
        response.snapshot.snapshot = snapshot
        return self._reply("snapshot", response)

    def send_restore_result(self, error: str | None = None) -> bytes:
        """The reply to a RestoreRequest: restored, or refused with ``error``."""
        response = Response()
        response.restore.success = error is None
        if error is not None:
            response.restore.error = error
        return self._reply("restore", response)

    @staticmethod
    def send_data(message: DataMessage) -> bytes:
        """A Point, BeginBatch or EndBatch the handler emits, framed.

        The UDF may emit at any time; nothing of the state is read, which is
        why the agent's emit() may call :func:`~aioudf.messages.encode_data_frame`
        itself, without the method call, once per point.
        """
        return encode_data_frame(message)

    def fail(self, reason: str, *, send: bool = True) -> bytes:
        """End the connection: the ErrorResponse telling Kapacitor ``reason``.

        Keepalive answers not yet taken come first. The first cause is kept
        (:attr:`failure`); later calls return nothing. ``send=False`` records
        a cause that cannot be told (the connection is lost) and returns
        nothing.
        """
        if self.failure is not None:
            return b""
        self.failure = reason
        self.state = State.FAILED
        pending = self.data_to_send()
        return pending + encode_error(reason) if send else b""

    # ---- moving the connection --------------------------------------------

    @property
    def can_export(self) -> bool:
        """True at a safe point: :meth:`export_state` would succeed now."""
        return self._unsafe() is None

    def _unsafe(self) -> str | None:
        """Why the state cannot be exported now, or ``None``."""
        if self._batch is not None:
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
    def from_state(cls, state: bytes, *, max_frame_size: int | None = None) -> UDFConnection:
        """A connection continuing where the one that exported ``state`` stopped.

        Its next requests are those the exporter had received but not
        handed out; the bytes Kapacitor writes next follow them. Give
        ``max_frame_size`` to check frames against this process's limit
        instead of the exporter's. Raises :class:`~aioudf.StateError` for
        bytes that are not an exported state of a version known here.
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
        conn = cls(limit if max_frame_size is None else max_frame_size)
        conn.state = _CODE_STATES[code]
        if conn.state is State.READY:
            conn.init_accepted = True
            try:
                conn.init_request = InitRequest.FromString(init)
            except DecodeError as exc:
                raise StateError(f"not a UDF connection state: its InitRequest: {exc}") from None
        elif init:
            raise StateError("not a UDF connection state: an InitRequest before Init")
        conn._frames.frames_decoded = decoded
        conn._frames.feed(unconsumed)
        return conn


# ---- Kapacitor's side ------------------------------------------------------------


class EmittedBatch:
    """A batch the UDF emitted: its BeginBatch, Points and EndBatch, assembled."""

    __slots__ = ("begin", "end", "points")

    def __init__(self, begin: BeginBatch, points: list[Point], end: EndBatch) -> None:
        self.begin = begin
        self.points = points
        self.end = end

    def __repr__(self) -> str:
        return f"EmittedBatch(group={self.begin.group!r}, {len(self.points)} points)"


#: What :meth:`KapacitorConnection.next_event` hands out: a reply, a keepalive
#: answer, a point emitted outside a batch, a whole batch, or the UDF's
#: ErrorResponse.
KapacitorEvent = (
    InfoResponse
    | InitResponse
    | SnapshotResponse
    | RestoreResponse
    | KeepaliveResponse
    | ErrorResponse
    | Point
    | EmittedBatch
)

# The Response field of each request that awaits a reply.
_REQUEST_REPLY = {"info": "info", "init": "init", "snapshot": "snapshot", "restore": "restore"}


def go_time(seconds: float) -> str:
    """A wall-clock time the way Kapacitor (Go's time.Time) prints it."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f +0000 UTC")


class KapacitorConnection:
    """Kapacitor's side of one connection: requests out, responses in.

    The ``send_*`` methods return the framed request to write. Feed what the
    UDF writes to :meth:`receive_data` and take :meth:`next_event` until it
    returns ``None``: replies (each matched to a request that asked for it),
    keepalive answers, points emitted outside a batch, whole batches
    (:class:`EmittedBatch`) and the UDF's ErrorResponse. A response that
    breaks the contract (a reply nobody asked for, a nested batch, an
    undecodable frame) raises :class:`~aioudf.ProtocolError`.

    The keepalive clock is Kapacitor's (``udf/server.go``): with a
    ``timeout``, a KeepaliveRequest is due every ``timeout / 2`` from the
    start (:meth:`keepalive_due`), and the task fails when nothing at all
    has come from the UDF for ``timeout`` (:meth:`keepalive_expired`), any
    response counting as a sign of life. Both stop at :meth:`stop`. Times
    are the caller's clock (``now``, in seconds): nothing here reads one.
    """

    __slots__ = (
        "_batch",
        "_frames",
        "_heard",
        "_heard_wall",
        "_held",
        "_next_keepalive",
        "_pending",
        "_received",
        "error",
        "keepalives_answered",
        "stopped",
        "timeout",
    )

    def __init__(
        self,
        timeout: float | None = None,
        *,
        now: float = 0.0,
        wall: float = 0.0,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        self._frames = FrameDecoder(max_frame_size)
        #: Kapacitor's UDF timeout in seconds; ``None``: no keepalives.
        self.timeout = timeout if timeout else None
        #: The UDF's ErrorResponse text, once one came.
        self.error: str | None = None
        #: KeepaliveResponses received so far.
        self.keepalives_answered = 0
        #: True after :meth:`stop`: no more keepalives, no more timeout.
        self.stopped = False
        self._pending: dict[str, int] = dict.fromkeys(_REQUEST_REPLY.values(), 0)
        self._batch: tuple[BeginBatch, list[Point]] | None = None
        self._received = (now, wall)  # when the last bytes came (caller's clocks)
        self._heard = now  # when the last response came, or the start
        self._heard_wall = wall
        self._next_keepalive = now + self.timeout / 2 if self.timeout else 0.0
        #: A frame next_points() took that is not a Point: next_event()'s next.
        self._held: memoryview | None = None

    # ---- requests out -----------------------------------------------------

    def _request(self, field: str, fill: Request) -> bytes:
        if field in self._pending:
            self._pending[field] += 1
        return encode_frame(fill.SerializeToString())

    def send_info(self) -> bytes:
        """An InfoRequest."""
        request = Request()
        request.info.SetInParent()
        return self._request("info", request)

    def send_init(
        self, options: Iterable[Option] = (), *, task_id: str = "task", node_id: str = "udf1"
    ) -> bytes:
        """An InitRequest with these Option messages (:func:`~aioudf.options.encode_options`)."""
        request = Request()
        request.init.options.extend(options)
        request.init.taskID = task_id
        request.init.nodeID = node_id
        return self._request("init", request)

    def send_snapshot(self) -> bytes:
        """A SnapshotRequest."""
        request = Request()
        request.snapshot.SetInParent()
        return self._request("snapshot", request)

    def send_restore(self, snapshot: bytes) -> bytes:
        """A RestoreRequest carrying ``snapshot``."""
        request = Request()
        request.restore.snapshot = snapshot
        return self._request("restore", request)

    @staticmethod
    def send_data(*messages: DataMessage) -> bytes:
        """Points, BeginBatch and EndBatch messages, framed as Requests.

        (Request and Response carry data in the same fields, so a data frame
        is the same both ways.)
        """
        return b"".join(map(encode_data_frame, messages))

    def send_keepalive(self, time_ns: int) -> bytes:
        """A KeepaliveRequest stamped ``time_ns`` (Kapacitor: its wall clock, in ns)."""
        request = Request()
        request.keepalive.time = time_ns
        return self._request("keepalive", request)

    def stop(self) -> None:
        """Kapacitor stops the task: it closes its side and stops the keepalive clock."""
        self.stopped = True

    # ---- the keepalive clock ----------------------------------------------

    def next_deadline(self) -> float | None:
        """When :meth:`keepalive_due` or :meth:`keepalive_expired` next changes."""
        if self.timeout is None or self.stopped:
            return None
        return min(self._next_keepalive, self._heard + self.timeout)

    def keepalive_due(self, now: float, time_ns: int) -> bytes:
        """The KeepaliveRequest to write if one is due at ``now``, else nothing."""
        if self.timeout is None or self.stopped or now < self._next_keepalive:
            return b""
        # A ticker: the next one a period after this one was due, not after now.
        period = self.timeout / 2
        while self._next_keepalive <= now:
            self._next_keepalive += period
        return self.send_keepalive(time_ns)

    def keepalive_expired(self, now: float) -> str | None:
        """Kapacitor's error if nothing came from the UDF for a whole timeout, else ``None``."""
        if self.timeout is None or self.stopped or now < self._heard + self.timeout:
            return None
        return self.keepalive_failure()

    def keepalive_failure(self) -> str:
        """Kapacitor's error for a missed keepalive, naming when the UDF was last heard."""
        return "keepalive timedout, last keepalive received was: " + go_time(self._heard_wall)

    # ---- responses in -----------------------------------------------------

    @property
    def in_batch(self) -> bool:
        """True between a BeginBatch the UDF emitted and its EndBatch."""
        return self._batch is not None

    def receive_data(
        self, data: bytes | bytearray | memoryview, *, now: float = 0.0, wall: float = 0.0
    ) -> None:
        """Add bytes the UDF wrote, received at ``now`` (and ``wall``, for messages)."""
        self._frames.feed(data)
        self._received = (now, wall)

    def receive_eof(self) -> None:
        """The UDF closed its side; raise if it stopped inside a frame or a batch."""
        self._frames.feed_eof()
        if self._batch is not None:
            raise ProtocolError("the UDF closed the connection inside a batch")

    def _heard_now(self) -> None:
        self._heard, self._heard_wall = self._received

    def next_event(self) -> KapacitorEvent | None:
        """The next thing the UDF said, or ``None`` if more bytes are needed."""
        held = self._held
        if held is not None:
            self._held = None
            event = self._event(held)
            if event is not None:
                return event
        frames = self._frames
        while (body := frames.next_frame()) is not None:
            event = self._event(body)
            if event is not None:
                return event
        return None

    def _event(self, body: memoryview) -> KapacitorEvent | None:
        """The event a response frame makes; ``None`` for a piece of a batch."""
        # Like Kapacitor, any response (not only a KeepaliveResponse) shows
        # the UDF is alive and resets the keepalive timer.
        self._heard_now()
        try:
            response = Response.FromString(body)  # type: ignore[arg-type]  # buffers are accepted
        except DecodeError as exc:
            raise ProtocolError(f"the UDF sent a response that cannot be decoded: {exc}") from None
        kind = response.WhichOneof("message")
        if kind == "point":
            if self._batch is not None:
                self._batch[1].append(response.point)
                return None
            return response.point
        if kind == "begin":
            if self._batch is not None:
                raise ProtocolError("the UDF began a batch inside another batch")
            self._batch = (response.begin, [])
            return None
        if kind == "end":
            if self._batch is None:
                raise ProtocolError("the UDF ended a batch it never began")
            begin, points = self._batch
            self._batch = None
            return EmittedBatch(begin, points, response.end)
        if kind == "keepalive":
            self.keepalives_answered += 1
            return response.keepalive
        if kind == "error":
            self.error = response.error.error
            return response.error
        if kind in self._pending:
            if not self._pending[kind]:
                raise ProtocolError(f"the UDF sent a {kind} response nobody asked for")
            self._pending[kind] -= 1
            reply: KapacitorEvent = getattr(response, kind)
            return reply
        raise ProtocolError(f"the UDF sent an empty or unknown response ({kind})")

    def next_points(self) -> list[bytes]:
        """Take the Points the UDF emitted outside a batch, as their serialized bytes.

        For a client that reads the Points itself instead of decoding them
        (``aioudf replay`` writes lines straight from the bytes): every
        whole frame received that holds only a Point, up to the first that
        is anything else, which :meth:`next_event` then hands out as usual
        (so call both until :meth:`next_event` returns ``None``). Inside a
        batch it takes nothing: the batch's Points belong to its
        :class:`EmittedBatch`. The bytes are not checked: a Point that
        cannot be decoded is the caller's to report.
        """
        if self._batch is not None or self._held is not None:
            return []
        points: list[bytes] = []
        frames = self._frames
        while True:
            # The Points at the head of the chunk being split, in place (as
            # UDFConnection.next_requests takes them), copied out as bytes.
            frames.take_points(sys.maxsize, bytes, points)
            # What the loop above leaves: a frame gathered across chunks, a
            # longer header, the end of the chunk, or something else.
            body = frames.next_frame()
            if body is None:
                break
            start = point_start(body)
            if not start:
                self._held = body
                break
            points.append(body[start:].tobytes())
        if points:
            self._heard_now()
        return points

    def count_responses(self) -> collections.Counter[str]:
        """Take every whole response received, counted by kind, data left unparsed.

        For drivers that only count what a UDF emits (the benchmarks): a
        data frame (``point``, ``begin``, ``end``) is recognised by its tag
        and not decoded; any other response is taken as :meth:`next_event`
        takes it (replies matched, keepalives counted). An ErrorResponse
        raises :class:`~aioudf.ProtocolError` carrying its text.
        """
        counts: collections.Counter[str] = collections.Counter()
        frames = self._frames
        kinds = TAG_KINDS
        held, self._held = self._held, None
        while (body := held if held is not None else frames.next_frame()) is not None:
            held = None
            kind = kinds.get(bytes(body[:2]))
            if kind is None:
                event = self._event(body)
                if type(event) is ErrorResponse:
                    raise ProtocolError(f"the UDF sent an ErrorResponse: {event.error}")
                kind = _EVENT_KINDS[type(event)]
            else:
                self._heard_now()
            counts[kind] += 1
        return counts


_EVENT_KINDS: dict[type, str] = {
    InfoResponse: "info",
    InitResponse: "init",
    SnapshotResponse: "snapshot",
    RestoreResponse: "restore",
    KeepaliveResponse: "keepalive",
}
