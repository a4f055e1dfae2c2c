"""The wire, sans-I/O: bytes <-> frames <-> messages <-> both sides' rules.

Everything a byte on the socket touches, and nothing else: no event loop,
thread, socket or clock is used here (``tests/wire/test_protocol.py`` checks).

- ``_layout``: the wire once: varints, the data tags, frame layout and
  headers, the Point fast path (``scan_points``, ``point_start``,
  ``frame_bounds``: the public scanning API protocol, replay and the
  benchmarks share).
- ``_frames``: :class:`FrameDecoder`, a byte stream split into frames, the
  Point runs taken in place; :func:`encode_frame`.
- ``_messages``: the protobuf types under their public names, the response
  encoders.
- ``_values``: the one option table: TICKscript literal text <-> typed
  value <-> ``OptionValue`` (both sides of the wire type options here).
- ``_protocol``: :class:`UDFConnection`, the UDF's side of one connection:
  every rule of the conversation next to its :class:`State`, both
  directions, and the exported state.
- ``_kapacitor``: :class:`KapacitorConnection`, Kapacitor's side (replies
  matched, batches assembled, its keepalive clock).
"""

from __future__ import annotations

from ._frames import (
    DEFAULT_MAX_FRAME_SIZE,
    FrameDecoder,
)
from ._kapacitor import (
    EmittedBatch,
    KapacitorConnection,
    KapacitorEvent,
    go_time,
)
from ._layout import (
    DATA_TAGS,
    MAX_VARINT_LENGTH,
    POINT_HEADERS,
    POINT_TAG,
    SCAN_MAX_FRAME,
    TAG_KINDS,
    UINT64_MAX,
    VARINTS,
    data_header,
    decode_uvarint,
    encode_data_frame,
    encode_frame,
    encode_uvarint,
    encode_varint,
    frame_bounds,
    point_start,
    read_uvarint,
    scan_points,
)
from ._messages import (
    BeginBatch,
    DataMessage,
    EdgeType,
    EndBatch,
    ErrorResponse,
    InfoRequest,
    InfoResponse,
    InitRequest,
    InitResponse,
    KeepaliveRequest,
    KeepaliveResponse,
    Option,
    OptionInfo,
    OptionValue,
    Point,
    Request,
    RequestMessage,
    Response,
    RestoreRequest,
    RestoreResponse,
    SnapshotRequest,
    SnapshotResponse,
    ValueType,
    encode_error,
    encode_response,
)
from ._protocol import (
    STATE_FORMAT_VERSION,
    Ending,
    State,
    UDFConnection,
    snapshot_bytes,
)
from ._values import (
    describe_options,
    encode_options,
    literal_kind,
    option_value,
    parse_duration,
    parse_literal,
    parse_option_args,
    python_value,
    signature,
    tickscript_duration,
)

__all__ = [
    "BeginBatch",
    "DATA_TAGS",
    "DEFAULT_MAX_FRAME_SIZE",
    "DataMessage",
    "EdgeType",
    "EmittedBatch",
    "EndBatch",
    "Ending",
    "ErrorResponse",
    "FrameDecoder",
    "InfoRequest",
    "InfoResponse",
    "InitRequest",
    "InitResponse",
    "KapacitorConnection",
    "KapacitorEvent",
    "KeepaliveRequest",
    "KeepaliveResponse",
    "MAX_VARINT_LENGTH",
    "Option",
    "OptionInfo",
    "OptionValue",
    "POINT_HEADERS",
    "POINT_TAG",
    "Point",
    "Request",
    "RequestMessage",
    "Response",
    "RestoreRequest",
    "RestoreResponse",
    "SCAN_MAX_FRAME",
    "STATE_FORMAT_VERSION",
    "SnapshotRequest",
    "SnapshotResponse",
    "State",
    "TAG_KINDS",
    "UDFConnection",
    "UINT64_MAX",
    "VARINTS",
    "ValueType",
    "data_header",
    "decode_uvarint",
    "describe_options",
    "encode_data_frame",
    "encode_error",
    "encode_frame",
    "encode_options",
    "encode_response",
    "encode_uvarint",
    "encode_varint",
    "frame_bounds",
    "go_time",
    "literal_kind",
    "option_value",
    "parse_duration",
    "parse_literal",
    "parse_option_args",
    "point_start",
    "python_value",
    "read_uvarint",
    "scan_points",
    "signature",
    "snapshot_bytes",
    "tickscript_duration",
]
