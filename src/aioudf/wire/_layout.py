"""The UDF wire, written once: varints, data tags, frame layout, the Point fast path.

Everything that reads or writes the bytes of the stream goes through here:
:class:`~aioudf.wire.FrameDecoder` (the stateful splitter of a byte
stream), the response encoders of :mod:`aioudf.wire`, both sides of
:mod:`aioudf.wire`, the replay's codec and the benchmarks. Stateless and
without I/O; it imports only the generated protobuf code, for the field
numbers and the message types.

The layout, as the Go and Python agents read and write it:

* a frame is ``uvarint(len(body)) body``, back to back and nothing else;
* a Request or Response carrying data holds one field: the tag of
  ``begin``, ``point`` or ``end`` (``(field << 3) | 2``, two bytes for the
  fields 16 to 18, read from the schema below), ``uvarint(len(message))``,
  the message. Request and Response number those fields alike, so a data
  frame is the same in both directions.

The public scanning API (:func:`scan_points`, :func:`point_start`,
:func:`frame_bounds`, :data:`TAG_KINDS`) is what the protocol's fast paths,
``aioudf replay`` and the benchmarks use instead of decoding a varint or
checking a tag themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import repeat
from typing import TypeVar

from google.protobuf.message import DecodeError

from .._pb import udf_pb2 as pb

__all__ = [
    "DATA_TAGS",
    "MAX_VARINT_LENGTH",
    "POINT_HEADERS",
    "POINT_TAG",
    "SCAN_MAX_FRAME",
    "TAG_KINDS",
    "UINT64_MAX",
    "VARINTS",
    "data_header",
    "decode_uvarint",
    "encode_data_frame",
    "encode_frame",
    "encode_uvarint",
    "encode_varint",
    "frame_bounds",
    "point_start",
    "read_uvarint",
    "scan_points",
]

# ---- varints -------------------------------------------------------------

#: A uvarint encodes at most 64 bits, 7 per byte.
MAX_VARINT_LENGTH = 10
UINT64_MAX = (1 << 64) - 1
_INT64 = 1 << 64

#: The varints of every value below 2**14 (so every length of a point
#: Kapacitor sends), built once: encoding a frame header is then an index.
VARINTS: tuple[bytes, ...] = tuple(bytes((i,)) for i in range(0x80)) + tuple(
    bytes(((i & 0x7F) | 0x80, i >> 7)) for i in range(0x80, 0x4000)
)


def encode_uvarint(value: int) -> bytes:
    """Encode a non-negative integer below 2**64 as a protobuf uvarint."""
    if 0 <= value < 0x4000:
        return VARINTS[value]
    if value < 0 or value > UINT64_MAX:
        raise ValueError(f"uvarint out of range: {value}")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_varint(value: int) -> bytes:
    """Encode an int64 as protobuf does: a negative one in ten bytes, two's complement."""
    return encode_uvarint(value + _INT64 if value < 0 else value)


def decode_uvarint(
    data: bytes | bytearray | memoryview, pos: int = 0, end: int | None = None
) -> tuple[int, int]:
    """The uvarint at ``data[pos:end]``: ``(value, its length in bytes)``.

    A length of 0 means the bytes stop (at ``end``) before the varint does;
    -1 that it runs past :data:`MAX_VARINT_LENGTH` bytes. In both cases the
    value is what the bytes read say, a lower bound of what the varint
    announces (the frame decoder refuses a header that is already too large
    from it). A ten-byte varint may carry bits past 64: ``value`` is then
    over :data:`UINT64_MAX`, for the caller to refuse.
    """
    stop = len(data) if end is None else end
    limit = min(stop, pos + MAX_VARINT_LENGTH)
    value = shift = 0
    i = pos
    while i < limit:
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i += 1
        if byte < 0x80:
            return value, i - pos
        shift += 7
    return value, (-1 if i - pos >= MAX_VARINT_LENGTH else 0)


def read_uvarint(data: bytes | bytearray | memoryview, pos: int = 0) -> tuple[int, int]:
    """The uvarint at ``data[pos:]`` and the position after it.

    Raises ValueError naming what is wrong: cut short, longer than ten
    bytes, or more than 64 bits.
    """
    value, length = decode_uvarint(data, pos)
    if length > 0 and value <= UINT64_MAX:
        return value, pos + length
    if length == 0:
        raise ValueError("cut short")
    if length < 0:
        raise ValueError(f"longer than {MAX_VARINT_LENGTH} bytes")
    raise ValueError("more than 64 bits")


# ---- frames and data tags ----------------------------------------------------


def encode_frame(body: bytes) -> bytes:
    """Prefix ``body`` with its length, ready to be written to the stream."""
    return encode_uvarint(len(body)) + body


def frame_bounds(data: bytes | memoryview, pos: int = 0) -> Iterator[tuple[int, int]]:
    """Where the body of each whole frame in ``data`` starts and ends, from ``pos``.

    Stops at the end of ``data`` or at a frame it cuts; a header that is
    not a uvarint raises ValueError. For tools that split a recorded
    stream (the benchmarks); a connection's bytes go through
    :class:`~aioudf.wire.FrameDecoder`.
    """
    end = len(data)
    while pos < end:
        size, header = decode_uvarint(data, pos, end)
        if header < 0 or size > UINT64_MAX:
            raise ValueError(f"the frame header at byte {pos} is not a uvarint")
        start = pos + header
        if not header or start + size > end:
            return
        pos = start + size
        yield start, pos


def _data_tag(field: str) -> bytes:
    number: int = pb.Request.DESCRIPTOR.fields_by_name[field].number
    if pb.Response.DESCRIPTOR.fields_by_name[field].number != number:
        raise RuntimeError(f"Request and Response number their {field!r} field apart")
    return encode_uvarint((number << 3) | 2)


# The one table of data messages: their type and their field in both wrappers.
_DATA_FIELDS: tuple[tuple[type[pb.BeginBatch | pb.Point | pb.EndBatch], str], ...] = (
    (pb.BeginBatch, "begin"),
    (pb.Point, "point"),
    (pb.EndBatch, "end"),
)
#: The tag bytes that start a data frame's body, by message type.
DATA_TAGS: dict[type, bytes] = {kind: _data_tag(field) for kind, field in _DATA_FIELDS}
#: The field a data frame holds (``"begin"``, ``"point"``, ``"end"``), by its
#: body's first two bytes: a frame's kind without a parse.
TAG_KINDS: dict[bytes, str] = {_data_tag(field): field for _, field in _DATA_FIELDS}
#: The tag of a Point (field 17): ``b"\x8a\x01"``.
POINT_TAG = DATA_TAGS[pb.Point]
_TAG0, _TAG1 = POINT_TAG

# Everything a frame puts before a data message's bytes (frame length, tag,
# message length), by message type and message length. It only depends on
# the length, so it is built once per length seen and framing a point costs
# one lookup and one concatenation (a third of what computing the varints
# did, measured). Lengths below the bound cover every ordinary point; the
# bound keeps the cache under a megabyte whatever the traffic.
_HEADERS: dict[type, dict[int, bytes]] = {kind: {} for kind in DATA_TAGS}
_CACHED_LENGTHS = 2048

#: Frame headers of Points by length, filled as lengths are seen (the
#: emitter's fast path reads it: ``POINT_HEADERS.get(n) or data_header(Point, n)``).
POINT_HEADERS = _HEADERS[pb.Point]


def data_header(kind: type, length: int) -> bytes:
    """What a frame puts before a ``kind`` message (Point, BeginBatch, EndBatch) of ``length``."""
    header = _HEADERS[kind].get(length)
    if header is None:
        tag = DATA_TAGS[kind]
        inner = encode_uvarint(length)
        header = encode_uvarint(length + len(tag) + len(inner)) + tag + inner
        if length < _CACHED_LENGTHS:
            _HEADERS[kind][length] = header
    return header


def encode_data_frame(message: pb.Point | pb.BeginBatch | pb.EndBatch) -> bytes:
    """Frame a Point, BeginBatch or EndBatch as a Request or Response, serializing it once.

    The wrapper is written by hand: building a ``Response`` would copy the
    message into it before serializing.
    """
    headers = _HEADERS.get(type(message))
    if headers is None:
        raise TypeError(
            f"only Point, BeginBatch and EndBatch can be emitted, not {type(message).__name__}"
        )
    data = message.SerializeToString()
    header = headers.get(len(data))
    if header is None:
        header = data_header(type(message), len(data))
    return header + data


# ---- the Point fast path -------------------------------------------------------


def point_start(body: bytes | memoryview) -> int:
    """Where the Point starts in a frame body that holds a Point and nothing else; 0 if not.

    Lengths of one and two bytes only (every Point below 16 KiB); anything
    else is 0, for the caller's Request parse to judge.
    """
    size = len(body)
    if size < 3 or body[0] != _TAG0 or body[1] != _TAG1:
        return 0
    length = body[2]
    start = 3
    if length >= 0x80:
        if size < 4 or body[3] >= 0x80:
            return 0
        length = (length & 0x7F) | (body[3] << 7)
        start = 4
    return start if start + length == size else 0


# The layout of frames that hold nothing but a Point, by their first bytes.
# Such a frame is uvarint(body length), the Point's tag and uvarint(Point
# length), then the Point; the first bytes (four with a one-byte header, six
# with a two-byte one) fix where the Point starts and ends. scan_points looks
# each frame's first bytes up here: one slice and one lookup instead of
# decoding two varints and checking the tag in Python (measured: a quarter
# fewer instructions per decoded point, protobuf's own parse included).
# Filled on first sight; bounded.
_POINT_LAYOUTS: dict[bytes, tuple[int, int]] = {}
_MAX_POINT_LAYOUTS = 4096

#: The largest frame :func:`scan_points` takes (a two-byte header): a
#: decoder whose limit is below it must check sizes itself.
SCAN_MAX_FRAME = 0x3FFF

T = TypeVar("T")


def scan_points(
    buf: bytes,
    view: memoryview,
    pos: int,
    limit: int,
    convert: Callable[[memoryview], T],
    out: list[T],
) -> int:
    """Take the Point frames at ``buf[pos:]`` in place; the position after them.

    At most ``limit`` frames. ``view`` is ``memoryview(buf)``; ``convert``
    (a Point's parse, or ``bytes``) gets a view of each Point, appended to
    ``out``. Any frame that is not a whole, valid, single-field Point (or
    has a header over two bytes, or is cut by the end of ``buf``) ends the
    run: the caller's slow path takes it. No call per frame but
    ``convert``: the agent's decode loop
    (:meth:`~aioudf.wire.FrameDecoder.take_points`).
    """
    end = len(buf)
    layouts = _POINT_LAYOUTS
    append = out.append
    # repeat() counts in C, at no cost per point.
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
            break  # cut by the chunk's end: the slow path gathers it
        try:
            item = convert(view[stop - length : stop])
        except DecodeError:
            break
        append(item)
        pos = stop
    return pos


def _point_layout(buf: bytes, pos: int) -> tuple[int, int] | None:
    """(frame length, Point length) if a frame holding only a Point starts at ``pos``.

    ``None`` for anything else, or if ``buf`` ends first. Headers of three
    bytes or more are left to the slow path too.
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
    if inner > end or buf[start] != _TAG0 or buf[start + 1] != _TAG1:
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
