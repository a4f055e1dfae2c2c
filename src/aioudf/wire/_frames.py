"""Length-prefixed framing of the UDF byte stream, without any I/O.

A connection carries ``uvarint(len(body)) body`` frames back to back and
nothing else. :class:`FrameDecoder` is fed byte chunks cut anywhere and hands
out frame bodies; :func:`encode_frame` and :func:`encode_uvarint` go the other
way (both written, with the varint, in :mod:`aioudf.wire`, and re-exported
here). Nothing here touches a socket, so every edge case (a header split across
chunks, a body split across many, thousands of frames in one chunk) is tested
by feeding bytes.

Copies are kept to what is unavoidable: bodies that arrive whole inside a
chunk are handed out as zero-copy ``memoryview`` slices of that chunk. A
small chunk (a socket read of Kapacitor's small writes) is joined with what
is left of the one before, a Point it cuts (nearly every read cuts one)
included, so that the Point is parsed in one run with those after it. A
large chunk is never copied: a frame cut between it and the one before is
gathered into a buffer of its own, and it queues behind any whole frames
still waiting. Joining a large chunk copied all of it (tens of KiB a read on
a pipe) into memory the kernel had to hand over anew: through a real
kapacitord, two fifths of a process UDF's page faults.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TypeVar

from google.protobuf.message import DecodeError

from ..errors import FrameError, FrameTooLarge
from ._layout import (
    MAX_VARINT_LENGTH,
    SCAN_MAX_FRAME,
    UINT64_MAX,
    decode_uvarint,
    encode_frame,
    encode_uvarint,
    point_start,
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


#: A chunk at most this large, with what is left of the one before, is
#: joined with it instead (Kapacitor's writes to a socket, ~1.8 KiB): a copy
#: that small costs less than gathering the frame cut between them apart
#: and queueing the chunk (a 1,793-byte chunk of 11 points, ~400 fewer
#: instructions a point), and its memory is reused, not handed over anew.
_JOIN_MAX = 16 * 1024

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
        "_queued",
        "_queued_size",
        "_ready",
        "_ready_size",
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
        self._ready: memoryview | None = None  # a gathered frame's body, complete
        self._ready_size = 0  # its size as received, header included
        # Chunks fed while frames of _buf (or _ready) wait to be taken, in order.
        self._queued: deque[bytes | memoryview] = deque()
        self._queued_size = 0
        self._error: FrameError | None = None
        #: True when the bytes held are known to hold no whole frame: every
        #: :meth:`next_frame` would return ``None`` until :meth:`feed`. Set
        #: when a look found none (a cheap test for a caller that would
        #: otherwise look again), False whenever it is not known.
        self.needs_data = True

    @property
    def buffered(self) -> int:
        """Bytes received but not yet handed out as a frame."""
        held = len(self._buf) - self._pos + self._queued_size
        if self._acc is not None:
            held += len(self._acc)
        if self._ready is not None:
            held += self._ready_size
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
        parts.extend(self._queued)
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
        if not self._queued and self._ready is None:
            buf = self._buf
            if (
                self._pos < len(buf)
                and len(buf) - self._pos + len(data) <= _JOIN_MAX
                and type(buf) is bytes
            ):
                # A small chunk is joined with what is left of the last: the
                # copy costs less than gathering the frame it cuts apart.
                data = buf[self._pos :] + data
                self._buf = data
                self._view = memoryview(data)
                self._pos = 0
                return
            if self._cut():
                self._continue(data)
                return
        # Frames received earlier wait to be taken: the chunk waits behind them.
        self._queued.append(data)
        self._queued_size += len(data)

    def _cut(self) -> bool:
        """Make way for the next chunk: False if whole frames wait in this one.

        A frame the chunk ends inside is gathered (``_acc``), or, if even its
        header is cut (a byte or two of it), kept as the head of the next
        chunk (see :meth:`_continue`).
        """
        buf = self._buf
        pos = self._pos
        end = len(buf)
        if pos >= end:
            return True
        try:
            size, header = self._header(pos, end)
        except FrameError:
            return False  # next_frame() raises it, once what came before is taken
        if header == 0:
            return True  # _continue() joins these few bytes with the next chunk
        if size > self.max_frame_size or pos + header + size <= end:
            return False  # a whole frame (or an error) for next_frame() first
        self._acc = bytearray(self._view[pos:])
        self._acc_need = header + size
        self._acc_header = header
        self._buf = b""
        self._view = memoryview(self._buf)
        self._pos = 0
        return True

    def _continue(self, data: bytes | memoryview) -> None:
        """Go on with the next chunk, whatever :meth:`_cut` left of the one before."""
        start = 0
        acc = self._acc
        if acc is not None:
            # A frame is waiting for the rest of its body: gather only that,
            # and split whatever follows it in place (from ``start``: the
            # chunk itself is kept, not a view of it, for the Point fast
            # path, which needs bytes).
            missing = self._acc_need - len(acc)
            if len(data) < missing:
                acc += data
                self.needs_data = not self._queued
                return
            acc += memoryview(data)[:missing]
            self._ready = memoryview(acc)[self._acc_header :]
            self._ready_size = len(acc)
            self._acc = None
            start = missing
        elif len(self._buf) > self._pos:
            # A frame header cut by the chunk's end: a few bytes, joined.
            head = self._buf[self._pos :]
            data = (head if type(head) is bytes else bytes(head)) + data
        self._buf = data
        self._view = memoryview(data)
        self._pos = start

    def _next_chunk(self) -> bool:
        """Move on to the next queued chunk (this one has no whole frame left): False if none."""
        if not self._queued:
            self.needs_data = True
            return False
        data = self._queued.popleft()
        self._queued_size -= len(data)
        if not self._cut():
            # A bad header at the end of this chunk (its error is set, for
            # next_frame() to raise): nothing to move on to.
            self._queued.appendleft(data)
            self._queued_size += len(data)
            return self._error is not None
        self._continue(data)
        return True

    def next_frame(self) -> memoryview | None:
        """Return the next complete frame body, or ``None`` if more bytes are needed."""
        while True:
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
                if self._next_chunk():
                    continue
                return None
            size = buf[pos]
            if size < 0x80:
                header = 1
            else:
                size, header = self._read_header(pos, end)
                if header == 0:  # header incomplete: wait for more bytes
                    if self._next_chunk():
                        continue
                    return None
            if size > self.max_frame_size:
                self._error = FrameTooLarge(size, self.max_frame_size)
                raise self._error
            start = pos + header
            stop = start + size
            if stop <= end:
                self._pos = stop
                self.frames_decoded += 1
                return self._view[start:stop]
            if not self._next_chunk():
                return None  # the frame waits in the chunk: feed() gathers it

    def take_points(self, limit: int, convert: Callable[[memoryview], T], out: list[T]) -> int:
        """Take up to ``limit`` Point frames in place: how many were appended to ``out``.

        The fast path of both protocol sides: the Point frames at the head
        of the bytes held go through :func:`aioudf.wire.scan_points` in one
        loop (a call of :meth:`next_frame` per frame would cost more than
        finding the frame), each Point's view given to ``convert`` (a
        parse, or ``bytes``), a Point cut by a chunk's end and gathered
        included. Takes nothing (0) while an error is pending or when the
        limit on frames is below what the scan takes unchecked, and stops
        at a chunk fed as a memoryview; then, and for whatever ends the
        run, :meth:`next_frame` is the way.
        """
        if self._ready is not None:
            return self._take_gathered(limit, convert, out)
        buf = self._buf
        if (
            self._error is not None
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
            if self._queued:
                return taken  # not used up: more chunks wait
            # What ended the run: the end of the bytes, or a frame the chunk
            # cuts (the two nearly every small read ends in), or a frame for
            # next_frame(). Told here, the caller need not look again.
            # (_used_up() for the headers of 1-2 bytes every Point has,
            # inlined: this runs once a read.)
            end = len(buf)
            if pos >= end:
                self.needs_data = True
            elif (size := buf[pos]) < 0x80:
                self.needs_data = pos + 1 + size > end
            elif pos + 1 < end and (high := buf[pos + 1]) < 0x80:
                self.needs_data = pos + 2 + ((size & 0x7F) | high << 7) > end
        elif self._queued and self._used_up() and self._next_chunk():
            return self.take_points(limit, convert, out)  # went on with the next chunk
        return taken

    def _take_gathered(self, limit: int, convert: Callable[[memoryview], T], out: list[T]) -> int:
        """:meth:`take_points` when a frame cut between two chunks waits gathered: it first."""
        ready = self._ready
        assert ready is not None
        start = point_start(ready)
        if not start or self._error is not None or self.max_frame_size < SCAN_MAX_FRAME:
            return 0
        try:
            item = convert(ready[start:])
        except DecodeError:
            return 0  # next_frame() hands it out, for the caller to judge
        out.append(item)
        self._ready = None
        self.frames_decoded += 1
        return 1 + (self.take_points(limit - 1, convert, out) if limit > 1 else 0)

    def _used_up(self) -> bool:
        """True if the chunk holds no whole frame at ``_pos``."""
        pos = self._pos
        end = len(self._buf)
        if pos >= end:
            return True
        try:
            size, header = self._header(pos, end)
        except FrameError:
            return False  # next_frame() raises it
        return header == 0 or pos + header + size > end

    def _header(self, pos: int, end: int) -> tuple[int, int]:
        """:meth:`_read_header`, with the headers of one or two bytes (every Point's) read here."""
        buf = self._buf
        if (size := buf[pos]) < 0x80:
            return size, 1
        if pos + 1 < end and (high := buf[pos + 1]) < 0x80:
            return (size & 0x7F) | high << 7, 2
        return self._read_header(pos, end)

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
