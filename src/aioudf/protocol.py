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

import sys
from itertools import repeat

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


# The layout of frames that hold nothing but a Point, by their first bytes.
# Such a frame is uvarint(body length), the tag of field 17 (0x8a 0x01) and
# uvarint(Point length), then the Point; the first bytes (four with a one-byte
# header, six with a two-byte one) fix where the Point starts and ends. The
# fast path of RequestDecoder.next_requests looks each frame's first bytes up
# here: one slice and one lookup instead of decoding two varints and checking
# the tag in Python (measured: a quarter fewer instructions per decoded point,
# protobuf's own parse included). Filled on first sight; bounded.
_POINT_LAYOUTS: dict[bytes, tuple[int, int]] = {}
_MAX_POINT_LAYOUTS = 4096


def _point_layout(buf: bytes, pos: int) -> tuple[int, int] | None:
    """(frame length, Point length) if a frame holding only a Point starts at ``pos``.

    ``None`` for anything else, or if the chunk ends first: next_request()
    deals with it. Headers of three bytes or more are left to it too.
    """
    end = len(buf)
    size = buf[pos]
    start = pos + 1
    if size >= 0x80:
        if start >= end or buf[start] >= 0x80:
            return None
        size = (size & 0x7F) | (buf[start] << 7)
        start += 1
    inner = start + 3
    if inner > end or buf[start] != 0x8A or buf[start + 1] != 0x01:
        return None
    length = buf[start + 2]
    if length >= 0x80:
        if inner >= end or buf[inner] >= 0x80:
            return None
        length = (length & 0x7F) | (buf[inner] << 7)
        inner += 1
    if inner + length != start + size:
        return None
    layout = (inner + length - pos, length)
    # The key must hold every byte the layout was read from.
    key = buf[pos : pos + (4 if start == pos + 1 else 6)]
    if inner - pos <= len(key) and len(_POINT_LAYOUTS) < _MAX_POINT_LAYOUTS:
        _POINT_LAYOUTS[key] = layout
    return layout


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

    def next_requests(self, limit: int = sys.maxsize) -> list[RequestMessage]:
        """Return the next run of Points (at most ``limit``), or one request of another kind.

        The same requests :meth:`next_request` returns, many at a time: the
        Points that follow each other in the bytes received are decoded in
        one loop (the bulk of the traffic: a chunk read holds a thousand), and
        any other request comes alone in its list, so the caller can act on
        it (answer a keepalive) before taking the Points behind it. An empty
        list means more bytes are needed. Like :meth:`next_request`, a bad
        frame raises only once the requests before it have been returned.

        Points not returned stay undecoded: a parsed Point takes about 16
        times the memory of its bytes, so a caller that can only queue so
        many passes ``limit`` and leaves the rest as bytes.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        frames = self._frames
        # (A two-byte header announces at most 16383 bytes: the fast path
        # needs no size check unless the limit is below that.)
        chunk = frames._chunk() if self.initialized and frames.max_frame_size >= 0x3FFF else None
        if chunk is not None:
            # Split frames and parse Points in place, in one loop over the
            # chunk: no call per frame but the parse, no view but the Point's.
            # Any frame that is not a whole, valid, single-field Point (or
            # has a header over two bytes, or is cut by the chunk's end)
            # ends the run and goes through next_request().
            buf, view, pos = chunk
            end = len(buf)
            parse = _parse_point
            layouts = _POINT_LAYOUTS
            points: list[RequestMessage] = []
            append = points.append
            # At most ``limit`` points; repeat() counts in C, at no cost per point.
            for _ in repeat(None, limit):
                if pos >= end:
                    break
                key = buf[pos : pos + 4] if buf[pos] < 0x80 else buf[pos : pos + 6]
                layout = layouts.get(key)
                if layout is None:
                    layout = _point_layout(buf, pos)
                    if layout is None:
                        break
                total, length = layout
                stop = pos + total
                if stop > end:
                    break  # cut by the chunk's end: next_request() gathers it
                try:
                    point = parse(view[stop - length : stop])  # type: ignore[arg-type]  # buffers are accepted
                except DecodeError:
                    break  # next_request() raises for it, once these are returned
                append(point)
                pos = stop
            if points:
                frames._skip(pos, len(points))
                return points
        message = self.next_request()
        return [] if message is None else [message]

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
