"""Kapacitor's side of one connection, without I/O: requests out, replies in.

:class:`KapacitorConnection` is the mirror image of the UDF's side in
``_protocol``: it frames the requests Kapacitor sends, matches each reply to
the request that asked for it, assembles the batches the UDF emits
(:class:`EmittedBatch`), and keeps Kapacitor's keepalive clock (its
``udf/server.go``: a keepalive every timeout/2, "keepalive timedout" after a
timeout of silence), reading the time the caller gives it. The test kit,
``aioudf replay`` and the benchmark driver are shells over it.
"""

from __future__ import annotations

import collections
import datetime
import sys
from collections.abc import Iterable

from google.protobuf.message import DecodeError

from ..errors import ProtocolError
from ._frames import DEFAULT_MAX_FRAME_SIZE, FrameDecoder
from ._layout import TAG_KINDS, encode_frame, point_start
from ._messages import (
    BeginBatch,
    DataMessage,
    EndBatch,
    ErrorResponse,
    InfoResponse,
    InitResponse,
    KeepaliveResponse,
    Option,
    Point,
    Request,
    Response,
    RestoreResponse,
    SnapshotResponse,
    encode_data_frame,
)

__all__ = ["EmittedBatch", "KapacitorConnection", "KapacitorEvent", "go_time"]


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
        """An InitRequest with these Option messages (:func:`~aioudf.wire.encode_options`)."""
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
