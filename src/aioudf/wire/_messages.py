"""The protobuf messages of the UDF protocol, and how responses are framed.

The message classes are the generated ones (``aioudf._pb.udf_pb2``),
re-exported under stable names: a handler receives a :class:`Point`, emits a
:class:`Point`, and never needs the wrapper ``Request``/``Response`` types.

Responses that carry data are framed by hand instead of through a
``Response`` wrapper, which would copy the point into itself before
serializing: :func:`encode_data_frame`, :func:`data_header` and
:data:`POINT_HEADERS` are written in :mod:`aioudf.wire` (the data tags and
the frame layout, once) and re-exported here.
"""

from __future__ import annotations

import enum

from .._pb import udf_pb2 as pb
from ._layout import POINT_HEADERS, data_header, encode_data_frame, encode_frame

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


def encode_response(response: pb.Response) -> bytes:
    """Frame a complete Response message."""
    return encode_frame(response.SerializeToString())


def encode_error(reason: str) -> bytes:
    """Frame the ErrorResponse that tells Kapacitor why a connection ends."""
    response = pb.Response()
    response.error.error = reason
    return encode_response(response)
