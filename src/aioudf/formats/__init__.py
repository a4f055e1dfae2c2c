"""How points are written down: DataPoint and Batch, group keys, line protocol, recordings.

- ``_lineformat``: line protocol formatting (escaping, precision, range).
- ``_fields``: times, group keys, a Point's fields by name.
- ``_points``: :class:`DataPoint`, :class:`Batch` (and :class:`BatchHeader`),
  :func:`make_point`.
- ``_lineprotocol``: parsing line protocol, :func:`format_line`.
- ``_recordings``: Kapacitor's ``.srpl`` / ``.brpl`` recordings, read and
  written.

Below the toolkit: handlers, the test kit and the replay all speak
``DataPoint`` and ``Batch``, and none needs the others to do so.
"""

from __future__ import annotations

from ._fields import (
    clear_fields,
    fields_of,
    format_time,
    group_key,
    number_field,
    parse_time,
    set_fields,
    to_nanoseconds,
)
from ._lineformat import (
    MAX_TIME,
    MIN_TIME,
    PRECISIONS,
    format_record,
    multiplier,
)
from ._lineprotocol import (
    LineProtocolError,
    MissingDependency,
    RecordJoiner,
    format_line,
    parse_line,
    parse_lines,
    split_records,
)
from ._points import (
    Batch,
    BatchHeader,
    DataPoint,
    FieldValue,
    make_point,
)
from ._recordings import (
    BatchRecording,
    RecordingError,
    StreamRecording,
    batch_to_json,
    point_to_json,
    read_batch_recording,
    read_stream_recording,
    write_batch_recording,
    write_stream_recording,
)

__all__ = [
    "Batch",
    "BatchHeader",
    "BatchRecording",
    "DataPoint",
    "FieldValue",
    "LineProtocolError",
    "MAX_TIME",
    "MIN_TIME",
    "MissingDependency",
    "PRECISIONS",
    "RecordJoiner",
    "RecordingError",
    "StreamRecording",
    "batch_to_json",
    "clear_fields",
    "fields_of",
    "format_line",
    "format_record",
    "format_time",
    "group_key",
    "make_point",
    "multiplier",
    "number_field",
    "parse_line",
    "parse_lines",
    "parse_time",
    "point_to_json",
    "read_batch_recording",
    "read_stream_recording",
    "set_fields",
    "split_records",
    "to_nanoseconds",
    "write_batch_recording",
    "write_stream_recording",
]
