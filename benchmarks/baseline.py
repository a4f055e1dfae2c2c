"""The protobuf-only baseline: the least work any Python UDF must do per point.

A UDF receives framed Requests and, for a pass-through, writes each point
back as a framed Response. Whatever the framework, that costs at least one
parse of the point into a message object a handler can use, and one
serialization of that message. The baseline does exactly that over the same
pre-encoded Request stream the UDF is sent, in a tight loop, in one thread,
with no event loop, no I/O and no agent:

1. read the frame's uvarint length (inline, one or two bytes);
2. parse the frame body into a message (two variants, below);
3. ``SerializeToString()`` the point (or BeginBatch/EndBatch);
4. frame it as a Response by hand (``uvarint(len) 0x8a 0x01 uvarint(len) point``,
   the same bytes a ``Response`` wrapper would produce, without copying the
   point into one) and append the pieces to a list;
5. at the end, ``b"".join`` the list: one buffer, as one write would take.

Variants of step 2, both measured in every run:

``request``
    ``Request.FromString(body)`` then ``.point`` (the textbook way; the
    ``point`` attribute costs a wrapper object per message).
``point``
    ``Point.FromString`` of the bytes after the field-17 tag and length (what
    parsing the Request does for a point frame, without the wrapper).

The baseline figure is the faster of the two (median of its runs), so a
ratio of 1.0 means "as fast as the fastest pure-protobuf loop we know".
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aioudf._pb import udf_pb2 as pb
from aioudf.wire._layout import DATA_TAGS, VARINTS, encode_uvarint, read_uvarint

__all__ = ["VARIANTS", "baseline_point_loop", "baseline_request_loop"]

# The tags and varints of aioudf.wire._layout. The loops below read a frame's
# one- or two-byte length inline rather than calling the wire's decoder:
# the baseline is the least work a loop can do, and a call per frame is
# work (longer headers go to read_uvarint).
_TAGS = DATA_TAGS
_BY_TAG: dict[int, type[pb.BeginBatch] | type[pb.Point] | type[pb.EndBatch]] = {
    tag[0]: kind for kind, tag in DATA_TAGS.items()
}


def baseline_request_loop(stream: bytes) -> bytes:
    """Parse each frame as a Request, serialize its data message as a Response."""
    view = memoryview(stream)
    parse = pb.Request.FromString
    varints = VARINTS
    tags = _TAGS
    out: list[bytes] = []
    append = out.append
    pos = 0
    end = len(stream)
    while pos < end:
        size = stream[pos]
        if size < 0x80:
            pos += 1
        elif stream[pos + 1] < 0x80:
            size = (size & 0x7F) | (stream[pos + 1] << 7)
            pos += 2
        else:
            size, pos = read_uvarint(stream, pos)
        request = parse(view[pos : pos + size])  # type: ignore[arg-type]  # buffers are accepted
        pos += size
        message = getattr(request, request.WhichOneof("message") or "point")
        data = message.SerializeToString()
        length = len(data)
        inner = varints[length] if length < 0x4000 else encode_uvarint(length)
        length += 2 + len(inner)
        append(varints[length] if length < 0x4000 else encode_uvarint(length))
        append(tags[type(message)])
        append(inner)
        append(data)
    return b"".join(out)


def baseline_point_loop(stream: bytes) -> bytes:
    """Parse each frame's data message directly from after its tag; serialize it."""
    view = memoryview(stream)
    varints = VARINTS
    tags = _TAGS
    by_tag = _BY_TAG
    out: list[bytes] = []
    append = out.append
    pos = 0
    end = len(stream)
    while pos < end:
        size = stream[pos]
        if size < 0x80:
            pos += 1
        elif stream[pos + 1] < 0x80:
            size = (size & 0x7F) | (stream[pos + 1] << 7)
            pos += 2
        else:
            size, pos = read_uvarint(stream, pos)
        kind = by_tag[stream[pos]]  # body: tag (2 bytes), uvarint(len), message
        start = pos + 3 if stream[pos + 2] < 0x80 else pos + 4
        message = kind.FromString(view[start : pos + size])  # type: ignore[arg-type]
        pos += size
        data = message.SerializeToString()
        length = len(data)
        inner = varints[length] if length < 0x4000 else encode_uvarint(length)
        length += 2 + len(inner)
        append(varints[length] if length < 0x4000 else encode_uvarint(length))
        append(tags[kind])
        append(inner)
        append(data)
    return b"".join(out)


#: The baseline loops by name.
VARIANTS: dict[str, Callable[[bytes], bytes]] = {
    "request": baseline_request_loop,
    "point": baseline_point_loop,
}


def time_variant(name: str, stream: bytes) -> float:
    """Seconds one pass of the named baseline loop takes over ``stream``."""
    loop = VARIANTS[name]
    start = time.perf_counter()
    out = loop(stream)
    elapsed = time.perf_counter() - start
    if len(out) < len(stream) // 2:  # a sanity check that work was done
        raise AssertionError(f"baseline {name} produced {len(out)} bytes from {len(stream)}")
    return elapsed
