"""Length-prefixed framing of the UDF byte stream, without any I/O.

A connection carries ``uvarint(len(body)) body`` frames back to back and
nothing else. :class:`FrameDecoder` is fed byte chunks cut anywhere and hands
out frame bodies; :func:`encode_frame` and :func:`encode_uvarint` go the other
way (both written, with the varint, in :mod:`aioudf.wire`, and re-exported
here). Nothing here touches a socket, so every edge case (a header split across
chunks, a body split across many, thousands of frames in one chunk) is tested
by feeding bytes.

Copies are kept to what is unavoidable: bodies that arrive whole inside a
chunk are handed out as zero-copy ``memoryview`` slices of that chunk. A small
frame cut by a chunk boundary (a Point: Kapacitor's small writes cut one
nearly every read) is joined with the next chunk, so it is parsed in one run
with the frames after it; a large one is gathered into a buffer of its own,
copied once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ..errors import FrameError, FrameTooLarge
from ._layout import (
    MAX_VARINT_LENGTH,
    SCAN_MAX_FRAME,
    UINT64_MAX,
    decode_uvarint,
    encode_frame,
    encode_uvarint,
    scan_points,
)

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "MAX_VARINT_LENGTH",
    "FrameDecoder",
    "encode_frame",
    "encode_uvarint",
]

#: Default upper bound for one frame body. Points are a few hundred bytes; the
#: bound exists for snapshots, which hold a UDF's whole state.
DEFAULT_MAX_FRAME_SIZE = 64 * 1024 * 1024


#: The largest frame (header included) left in the chunk it starts in when
#: the chunk ends inside it, to be joined with the next: the frames the Point
#: fast path takes. Larger ones are gathered apart, copied once.
_JOIN_MAX = SCAN_MAX_FRAME

T = TypeVar("T")


class FrameDecoder:
    """Split a byte stream into frame bodies.

    Feed it bytes as they arrive with :meth:`feed`, then call
    :meth:`next_frame` until it returns ``None`` (more bytes needed). At end of
    stream call :meth:`feed_eof`, which raises if a frame was cut short.

    A header announcing more than ``max_frame_size`` bytes, or a varint longer
    than 10 bytes, raises :class:`~aioudf.FrameTooLarge` /
    :class:`~aioudf.FrameError` from :meth:`next_frame` as soon as the header
    is seen, before any of the body is buffered. Frames before the bad header
    are still returned first, so nothing already received is lost. After an
    error the stream cannot be resynchronised; the decoder keeps raising it.

    Returned bodies are memoryviews that stay valid for as long as they are
    referenced (the decoder never writes into memory it has handed out).
    Bytes passed to :meth:`feed` must not be modified afterwards.
    """

    __slots__ = (
        "_acc",
        "_acc_header",
        "_acc_need",
        "_buf",
        "_error",
        "_pos",
        "_ready",
        "_view",
        "frames_decoded",
        "max_frame_size",
        "needs_data",
    )

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        if max_frame_size < 0:
            raise ValueError("max_frame_size must be >= 0")
        self.max_frame_size = max_frame_size
        #: Number of bodies handed out so far (used to locate errors).
        self.frames_decoded = 0
        self._buf: bytes | memoryview = b""  # chunk being split
        self._view = memoryview(self._buf)
        self._pos = 0  # start of the next frame in _buf
        self._acc: bytearray | None = None  # a frame cut by a chunk boundary
        self._acc_need = 0  # its total size, header included
        self._acc_header = 0  # its header size
        self._ready: memoryview | None = None  # a gathered frame, complete
        self._error: FrameError | None = None
        #: True when the bytes held are known to hold no whole frame: every
        #: :meth:`next_frame` would return ``None`` until :meth:`feed`. Set
        #: when a look found none (a cheap test for a caller that would
        #: otherwise look again), False whenever it is not known.
        self.needs_data = True

    @property
    def buffered(self) -> int:
        """Bytes received but not yet handed out as a frame."""
        held = len(self._buf) - self._pos
        if self._acc is not None:
            held += len(self._acc)
        if self._ready is not None:
            held += len(self._ready)
        return held

    def unconsumed(self) -> bytes:
        """Every byte received but not handed out as a frame, as received.

        Feeding them to a new decoder continues the stream where this one
        stands (a gathered frame comes back with a minimal header, which
        means the same). Refused after an error: that stream cannot go on.
        """
        if self._error is not None:
            raise self._error
        parts: list[bytes | bytearray | memoryview] = []
        if self._ready is not None:
            parts += (encode_uvarint(len(self._ready)), self._ready)
        if self._acc is not None:
            parts.append(self._acc)
        parts.append(self._view[self._pos :])
        return b"".join(parts)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes received from the peer."""
        if self._error is not None:
            raise self._error
        if not data:
            return
        self.needs_data = False
        if isinstance(data, bytearray):
            data = bytes(data)  # the caller may reuse its buffer
        start = 0
        acc = self._acc
        if acc is not None:
            # A frame is waiting for the rest of its body: gather only that,
            # and parse whatever follows it in place (from ``start``; the
            # chunk itself is kept, not a view of it, for UDFConnection's
            # fast path, which needs bytes).
            missing = self._acc_need - len(acc)
            if len(data) < missing:
                acc += data
                self.needs_data = True
                return
            acc += memoryview(data)[:missing]
            self._ready = memoryview(acc)[self._acc_header :]
            self._acc = None
            start = missing
        if len(self._buf) > self._pos:
            # What is left is the start of a small frame (see next_frame), or
            # frames the caller has not taken yet: join them with the new
            # bytes, so that a Point cut by the chunk's end is parsed in the
            # same run as those after it (Kapacitor's small writes cut one
            # nearly every read).
            head = self._buf[self._pos :]
            data = (head if type(head) is bytes else bytes(head)) + (
                memoryview(data)[start:] if start else data
            )
            start = 0
        self._buf = data
        self._view = memoryview(data)
        self._pos = start

    def next_frame(self) -> memoryview | None:
        """Return the next complete frame body, or ``None`` if more bytes are needed."""
        ready = self._ready
        if ready is not None:
            self._ready = None
            self.frames_decoded += 1
            return ready
        if self._error is not None:
            raise self._error
        buf = self._buf
        pos = self._pos
        end = len(buf)
        if pos >= end:
            self.needs_data = True
            return None
        size = buf[pos]
        if size < 0x80:
            header = 1
        else:
            size, header = self._read_header(pos, end)
            if header == 0:
                self.needs_data = True
                return None  # header incomplete; wait for more bytes
        if size > self.max_frame_size:
            self._error = FrameTooLarge(size, self.max_frame_size)
            raise self._error
        start = pos + header
        stop = start + size
        if stop <= end:
            self._pos = stop
            self.frames_decoded += 1
            return self._view[start:stop]
        self.needs_data = True
        if stop - pos <= _JOIN_MAX:
            return None  # a small frame waits in the chunk: feed() joins it with the next
        # A large body continues in later chunks: gather it in a buffer of its
        # own (joining each chunk to it would copy it again and again).
        self._acc = bytearray(self._view[pos:])
        self._acc_need = header + size
        self._acc_header = header
        self._buf = b""
        self._view = memoryview(self._buf)
        self._pos = 0
        return None

    def take_points(self, limit: int, convert: Callable[[memoryview], T], out: list[T]) -> int:
        """Take up to ``limit`` Point frames in place: how many were appended to ``out``.

        The fast path of both protocol sides: the Point frames at the head
        of the chunk being split go through :func:`aioudf.wire.scan_points`
        in one loop (a call of :meth:`next_frame` per frame would cost more
        than finding the frame), each Point's view given to ``convert`` (a
        parse, or ``bytes``). Takes nothing (0) while a gathered frame or an
        error is pending, when the chunk was fed as a memoryview, or when
        the limit on frames is below what the scan takes unchecked; then,
        and for whatever ends the run, :meth:`next_frame` is the way.
        """
        buf = self._buf
        if (
            self._ready is not None
            or self._error is not None
            or type(buf) is not bytes
            or self.max_frame_size < SCAN_MAX_FRAME
        ):
            return 0
        before = len(out)
        pos = scan_points(buf, self._view, self._pos, limit, convert, out)
        taken = len(out) - before
        if taken:
            self._pos = pos
            self.frames_decoded += taken
            # What ended the run: the end of the bytes, or a frame the chunk
            # cuts (the two nearly every small read ends in), or a frame for
            # next_frame(). Told here, the caller need not look again.
            end = len(buf)
            if pos >= end:
                self.needs_data = True
            elif (size := buf[pos]) < 0x80:
                self.needs_data = pos + 1 + size > end
            elif pos + 1 < end and (high := buf[pos + 1]) < 0x80:
                self.needs_data = pos + 2 + ((size & 0x7F) | high << 7) > end
        return taken

    def _read_header(self, pos: int, end: int) -> tuple[int, int]:
        """Decode the header at ``pos``: (value, header length), or (0, 0) if it is cut.

        Raises, and keeps raising, for a header that is not a uvarint or that
        already announces more than the maximum (next_frame() decodes
        one-byte headers itself).
        """
        value, length = decode_uvarint(self._buf, pos, end)
        if length > 0 and value <= UINT64_MAX:
            return value, length
        if length > 0:
            # Ten bytes carrying more than 64 bits: their first nine (63 bits)
            # may already announce too much, which is what a decoder reading
            # byte by byte would have said first.
            value &= (1 << 63) - 1
        if value > self.max_frame_size:
            # Already too large, whatever the remaining bytes say.
            self._error = FrameTooLarge(value, self.max_frame_size, at_least=True)
            raise self._error
        if length == 0:
            return 0, 0  # wait for the rest of the header
        reason = "more than 64 bits" if length > 0 else f"longer than {MAX_VARINT_LENGTH} bytes"
        self._error = FrameError(
            f"frame header at frame {self.frames_decoded + 1} is not a valid uvarint ({reason})"
        )
        raise self._error

    def feed_eof(self) -> None:
        """Signal the end of the stream; raise if it stopped inside a frame.

        Call it once :meth:`next_frame` has returned ``None``.
        """
        if self._error is not None:
            raise self._error
        if self._acc is not None:
            body = self._acc_need - self._acc_header
            self._error = FrameError(
                "stream ended inside a frame: received "
                f"{len(self._acc) - self._acc_header} of {body} body bytes"
            )
            raise self._error
        left = len(self._buf) - self._pos
        if left:
            # The start of a small frame was left: its header, complete or
            # not, and perhaps part of its body.
            size, header = self._read_header(self._pos, len(self._buf))
            if header:
                self._error = FrameError(
                    f"stream ended inside a frame: received {left - header} of {size} body bytes"
                )
            else:
                self._error = FrameError(
                    f"stream ended inside a frame header ({left} header bytes received)"
                )
            raise self._error
