"""The UDF side of the protocol as a state machine, without I/O.

:class:`RequestDecoder` turns the bytes Kapacitor writes into the typed
request messages a handler sees (``InfoRequest``, ``InitRequest``,
``KeepaliveRequest``, ``SnapshotRequest``, ``RestoreRequest``, ``BeginBatch``,
``Point``, ``EndBatch``) and enforces the order Kapacitor follows:

* Info and Keepalive may come at any time;
* Init comes once, before any Snapshot, Restore or data;
* BeginBatch opens a batch that EndBatch closes; batches never nest.

Any violation, like any undecodable frame, raises a :class:`ProtocolError`
whose message names the cause and where it happened. Requests before the
violation have already been returned, so the caller can finish them first.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from .errors import ProtocolError
from .framing import DEFAULT_MAX_FRAME_SIZE, FrameDecoder
from .messages import (
    BeginBatch,
    EndBatch,
    InfoRequest,
    InitRequest,
    KeepaliveRequest,
    Point,
    Request,
    RequestMessage,
    RestoreRequest,
    SnapshotRequest,
)

__all__ = ["RequestDecoder"]

_parse_point = Point.FromString
_parse_request = Request.FromString

# Requests that are only valid once Init has been received.
_NEEDS_INIT = (SnapshotRequest, RestoreRequest, BeginBatch, Point, EndBatch)


class RequestDecoder:
    """Decode and validate the Request stream of one connection.

    Use it like :class:`~aioudf.framing.FrameDecoder`: :meth:`feed` bytes,
    then call :meth:`next_request` until it returns ``None``; call
    :meth:`feed_eof` at end of stream.
    """

    __slots__ = ("_batch", "_frames", "initialized")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self._frames = FrameDecoder(max_frame_size)
        #: True once an InitRequest has been received.
        self.initialized = False
        self._batch: BeginBatch | None = None  # the open batch, if any

    @property
    def in_batch(self) -> bool:
        """True between a BeginBatch and its EndBatch."""
        return self._batch is not None

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes received from Kapacitor."""
        self._frames.feed(data)

    def feed_eof(self) -> None:
        """Kapacitor closed its side; raise if it stopped mid-frame or mid-batch."""
        self._frames.feed_eof()
        if self._batch is not None:
            raise ProtocolError(
                f"stream ended inside the batch for group {self._batch.group!r} "
                "(BeginBatch without EndBatch)"
            )

    def next_request(self) -> RequestMessage | None:
        """Return the next request, or ``None`` if more bytes are needed."""
        body = self._frames.next_frame()
        if body is None:
            return None
        size = len(body)
        # Fast path for the bulk of the traffic: a frame holding nothing but
        # field 17 (a point). Parse the Point directly, without the wrapper.
        if size > 3 and body[0] == 0x8A and body[1] == 0x01:
            n = body[2]
            if n < 0x80:
                start = 3
            elif size > 4 and body[3] < 0x80:
                n = (n & 0x7F) | (body[3] << 7)
                start = 4
            else:
                start = 0
            if start and start + n == size:
                if not self.initialized:
                    raise self._out_of_order("Point", "before Init")
                try:
                    return _parse_point(body[start:])  # type: ignore[arg-type]  # buffers are accepted
                except DecodeError as exc:
                    raise self._undecodable(size, exc) from None
        try:
            request = _parse_request(body)  # type: ignore[arg-type]
        except DecodeError as exc:
            raise self._undecodable(size, exc) from None
        kind = request.WhichOneof("message")
        if kind is None:
            raise ProtocolError(
                f"frame {self._frames.frames_decoded} ({size} bytes) is a Request "
                "that carries no message"
            )
        message: RequestMessage = getattr(request, kind)
        self._check_order(message)
        return message

    def _check_order(self, message: RequestMessage) -> None:
        kind = type(message)
        if kind is InfoRequest or kind is KeepaliveRequest:
            return
        if kind is InitRequest:
            if self.initialized:
                raise self._out_of_order("Init", "after Init (Init may come only once)")
            self.initialized = True
            return
        if kind in _NEEDS_INIT and not self.initialized:
            raise self._out_of_order(kind.__name__.replace("Request", ""), "before Init")
        if kind is BeginBatch:
            if self._batch is not None:
                raise self._out_of_order(
                    "BeginBatch",
                    f"while the batch for group {self._batch.group!r} is still open",
                )
            self._batch = message  # type: ignore[assignment]
        elif kind is EndBatch:
            if self._batch is None:
                raise self._out_of_order("EndBatch", "without a BeginBatch")
            self._batch = None

    def _out_of_order(self, what: str, when: str) -> ProtocolError:
        return ProtocolError(f"unexpected {what} {when} (frame {self._frames.frames_decoded})")

    def _undecodable(self, size: int, exc: Exception) -> ProtocolError:
        return ProtocolError(
            f"frame {self._frames.frames_decoded} ({size} bytes) is not a valid "
            f"Request message: {exc}"
        )
