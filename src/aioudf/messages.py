"""The protobuf messages of the UDF protocol, and how responses are framed.

The message classes are the generated ones (``aioudf._pb.udf_pb2``),
re-exported under stable names: a handler receives a :class:`Point`, emits a
:class:`Point`, and never needs the wrapper ``Request``/``Response`` types.

Responses that carry data are framed by hand instead of through a
``Response`` wrapper: the wrapper would copy the point into itself before
serializing. ``point`` is field 17 in both wrappers, so a Response frame is
``uvarint(len) 0x8a 0x01 uvarint(len(point)) point-bytes`` and the point is
serialized exactly once.
"""

from __future__ import annotations

import enum

from ._pb import udf_pb2 as pb
from .framing import encode_frame, encode_uvarint

__all__ = [
    "BeginBatch",
    "DataMessage",
    "EdgeType",
    "EndBatch",
    "ErrorResponse",
    "InfoRequest",
    "InfoResponse",
    "InitRequest",
    "InitResponse",
    "KeepaliveRequest",
    "KeepaliveResponse",
    "Option",
    "OptionInfo",
    "OptionValue",
    "Point",
    "Request",
    "RequestMessage",
    "Response",
    "RestoreRequest",
    "RestoreResponse",
    "SnapshotRequest",
    "SnapshotResponse",
    "ValueType",
    "POINT_HEADERS",
    "data_header",
    "encode_data_frame",
    "encode_error",
    "encode_response",
]

InfoRequest = pb.InfoRequest
InfoResponse = pb.InfoResponse
OptionInfo = pb.OptionInfo
InitRequest = pb.InitRequest
InitResponse = pb.InitResponse
Option = pb.Option
OptionValue = pb.OptionValue
SnapshotRequest = pb.SnapshotRequest
SnapshotResponse = pb.SnapshotResponse
RestoreRequest = pb.RestoreRequest
RestoreResponse = pb.RestoreResponse
KeepaliveRequest = pb.KeepaliveRequest
KeepaliveResponse = pb.KeepaliveResponse
ErrorResponse = pb.ErrorResponse
BeginBatch = pb.BeginBatch
Point = pb.Point
EndBatch = pb.EndBatch
Request = pb.Request
Response = pb.Response


class EdgeType(enum.IntEnum):
    """What a UDF consumes (``wants``) and produces (``provides``)."""

    STREAM = pb.STREAM
    BATCH = pb.BATCH


class ValueType(enum.IntEnum):
    """The type of one value of a UDF option, as TICKscript passes it."""

    BOOL = pb.BOOL
    INT = pb.INT
    DOUBLE = pb.DOUBLE
    STRING = pb.STRING
    DURATION = pb.DURATION


#: A message that flows as data, in either direction.
DataMessage = pb.Point | pb.BeginBatch | pb.EndBatch

#: Any message a Request can carry.
RequestMessage = (
    pb.InfoRequest
    | pb.InitRequest
    | pb.KeepaliveRequest
    | pb.SnapshotRequest
    | pb.RestoreRequest
    | pb.BeginBatch
    | pb.Point
    | pb.EndBatch
)

# Tag bytes of the data fields in Request and Response: (field << 3) | 2.
_DATA_TAGS: dict[type, bytes] = {
    pb.BeginBatch: b"\x82\x01",  # field 16
    pb.Point: b"\x8a\x01",  # field 17
    pb.EndBatch: b"\x92\x01",  # field 18
}

# Everything a Response frame puts before a data message's bytes (frame
# length, tag, message length), by message type and message length. It only
# depends on the length, so it is built once per length seen and framing a
# point costs one lookup and one concatenation (a third of what computing
# the varints did, measured). Lengths below the bound cover every ordinary
# point; the bound keeps the cache under a megabyte whatever the traffic.
_HEADERS: dict[type, dict[int, bytes]] = {kind: {} for kind in _DATA_TAGS}
_CACHED_LENGTHS = 2048


def encode_data_frame(message: DataMessage) -> bytes:
    """Frame a Point, BeginBatch or EndBatch as a Response, serializing it once."""
    headers = _HEADERS.get(type(message))
    if headers is None:
        raise TypeError(
            f"only Point, BeginBatch and EndBatch can be emitted, not {type(message).__name__}"
        )
    data = message.SerializeToString()
    header = headers.get(len(data))
    if header is None:
        header = _data_header(type(message), len(data))
    return header + data


#: Response headers of Points by length (the emitter's fast path reads it).
POINT_HEADERS = _HEADERS[pb.Point]


def data_header(kind: type, length: int) -> bytes:
    """What a Response frame puts before a ``kind`` message of ``length`` bytes."""
    return _HEADERS[kind].get(length) or _data_header(kind, length)


def _data_header(kind: type, length: int) -> bytes:
    tag = _DATA_TAGS[kind]
    inner = encode_uvarint(length)
    header = encode_uvarint(length + len(tag) + len(inner)) + tag + inner
    if length < _CACHED_LENGTHS:
        _HEADERS[kind][length] = header
    return header


def encode_response(response: pb.Response) -> bytes:
    """Frame a complete Response message."""
    return encode_frame(response.SerializeToString())


def encode_error(reason: str) -> bytes:
    """Frame the ErrorResponse that tells Kapacitor why a connection ends."""
    response = pb.Response()
    response.error.error = reason
    return encode_response(response)
