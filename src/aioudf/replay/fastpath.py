"""The replay's hot path: line protocol straight to Request frames, Points straight to lines.

Replaying line protocol through a UDF used to build three objects a point
on the way in (the parser's dict, a :class:`~aioudf.DataPoint`, a protobuf
Point) and two on the way out (a DataPoint, then its line). The UDF itself
costs a few microseconds a point; those objects cost ten times that. Here:

* :class:`LineEncoder` turns one line into its framed Request bytes. Lines
  of a series already seen (same measurement and tags) reuse that series'
  encoded name, tags and group, and only their fields and time are encoded,
  by hand. A line is taken this way only when it is plainly valid: names of
  ordinary characters, float and integer fields, a timestamp. Anything else
  (strings, booleans, escapes, a first sighting of the series, anything the
  fast check cannot vouch for) goes through :func:`aioudf.lineprotocol.parse_line`
  exactly as before, errors and all.
* :class:`LineFormatter` writes the line of an emitted protobuf Point,
  keeping the formatted measurement and tags of each series; points it
  cannot vouch for go through :func:`~aioudf.lineprotocol.format_line`.

Both give byte-for-byte what the slow path gives; the tests of ``aioudf
replay`` run through them.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable

from ..lineformat import MAX_TIME, MIN_TIME, multiplier
from ..lineprotocol import format_line, parse_line
from ..messages import Point, encode_data_frame
from ..points import DataPoint
from .grouping import Grouping

__all__ = ["LineEncoder", "LineFormatter"]

# Characters that need no escaping anywhere in a line and mean nothing to
# the parser: field keys made only of them are taken as they are.
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.:/@%+\-]+")
#: A float or integer field value the parser reads as Python does.
_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,3})?|-?\d{1,18}i").fullmatch
_INT64 = 1 << 64
#: Series whose encoding is kept (beyond that, new series take the slow path).
_MAX_SERIES = 100_000
_pack_double = struct.Struct("<d").pack


def _varint(value: int) -> bytes:
    if value < 0:
        value += _INT64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(key: str, tag: bytes, value_tag: bytes, value: bytes) -> bytes:
    """One map entry of a Point's field map (``tag`` is the map's field key)."""
    raw = key.encode()
    entry = b"\x0a" + _varint(len(raw)) + raw + value_tag + value
    return tag + _varint(len(entry)) + entry


class LineEncoder:
    """Lines of line protocol to framed Requests (see the module documentation)."""

    def __init__(
        self,
        *,
        precision: str,
        grouping: Grouping,
        source: str = "",
        default_time: int | Callable[[], int] | None = None,
    ) -> None:
        self.precision = precision
        self.grouping = grouping
        self.source = source
        self.default_time = default_time
        self._multiplier = multiplier(precision)
        #: series key (the text before the fields) -> the encoded rest of its Point
        self._series: dict[str, bytes] = {}
        #: field key -> its double-map entry without the 8 value bytes
        self._double_heads: dict[str, bytes] = {}
        self._last_time = -1
        self._last_time_bytes = b""

    def point(self, point: DataPoint) -> bytes:
        """The frame of a parsed point (grouping applied)."""
        if self.grouping.active:
            point = self.grouping.apply(point)
        return encode_data_frame(point.to_message())

    def line(self, text: str, lineno: int) -> bytes | None:
        """The frame of one record; None for a blank or comment line.

        Raises :class:`~aioudf.errors.LineProtocolError` as
        :func:`~aioudf.lineprotocol.parse_line` does.
        """
        parts = text.split(" ")
        if len(parts) == 3:
            series = self._series.get(parts[0])
            if series is not None:
                frame = self._simple(series, parts[1], parts[2])
                if frame is not None:
                    return frame
        point = parse_line(
            text,
            precision=self.precision,
            default_time=self.default_time,
            source=self.source,
            lineno=lineno,
        )
        if point is None:
            return None
        frame = self.point(point)
        if len(parts) == 3 and "\\" not in text and '"' not in text:
            self._learn(parts[0], point)
        return frame

    def _learn(self, key: str, point: DataPoint) -> None:
        """Keep the encoded name, tags and group of ``point``'s series.

        ``key`` is the text before the fields of a line the parser read:
        another line starting with the same text is of the same series.
        """
        if len(self._series) >= _MAX_SERIES:
            return
        if self.grouping.active:
            point = self.grouping.apply(point)
        message = point.to_message()
        message.ClearField("time")
        for name in ("fieldsDouble", "fieldsInt", "fieldsString", "fieldsBool"):
            message.ClearField(name)
        self._series[key] = message.SerializeToString()

    def _simple(self, series: bytes, fields: str, time: str) -> bytes | None:
        """The frame of a line of a known series, or None to leave it to the parser."""
        if not (time.isdigit() or (time[:1] == "-" and time[1:].isdigit())) or not time.isascii():
            return None
        stamp = int(time) * self._multiplier
        if stamp != self._last_time:
            if not MIN_TIME <= stamp <= MAX_TIME:
                return None
            self._last_time = stamp
            self._last_time_bytes = b"\x08" + _varint(stamp)
        parts = [series]
        heads = self._double_heads
        number = _NUMBER
        previous = ""
        for item in fields.split(","):
            key, _, value = item.partition("=")
            if key <= previous or number(value) is None:
                # A repeated key (the parser keeps the first), fields out of
                # the order the parser's path stores them in, or a value the
                # fast path does not read: leave the line to the parser.
                return None
            previous = key
            head = heads.get(key)
            if head is None:
                if _PLAIN_KEY.fullmatch(key) is None:
                    return None
                head = heads[key] = _field(key, b"\x42", b"\x11", bytes(8))[:-8]
            if value[-1] == "i":
                parts.append(_field(key, b"\x4a", b"\x10", _varint(int(value[:-1]))))
                continue
            real = float(value)
            if ("e" in value or "E" in value) and not 1e-300 < abs(real) < 1e300:
                return None  # the parser refuses what overflows or underflows
            parts.append(head + _pack_double(real))
        parts.append(self._last_time_bytes)
        body = b"".join(parts)
        length = len(body)
        inner = b"\x8a\x01" + _varint(length)  # Request.point, field 17
        return _varint(len(inner) + length) + inner + body


class LineFormatter:
    """Emitted protobuf Points as lines of line protocol (see the module documentation)."""

    def __init__(self, precision: str) -> None:
        self.precision = precision
        self._divisor = multiplier(precision)
        #: (name, tags) -> "name,tag=value... "
        self._series: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
        #: sorted field keys -> "key1={!r},key2={!r}..."
        self._templates: dict[tuple[str, ...], str] = {}

    def __call__(self, point: Point) -> str:
        """The point's line; raises ValueError for what line protocol cannot carry."""
        if point.fieldsInt or point.fieldsString or point.fieldsBool:
            return format_line(DataPoint.from_message(point), precision=self.precision)
        doubles = point.fieldsDouble
        stamp = point.time
        if not doubles or not MIN_TIME <= stamp <= MAX_TIME:
            return format_line(DataPoint.from_message(point), precision=self.precision)
        name = point.name
        tags = tuple(point.tags.items())
        prefix = self._series.get((name, tags))
        if prefix is None:
            prefix = self._learn(name, dict(tags))
            if prefix is None:
                return format_line(DataPoint.from_message(point), precision=self.precision)
        keys = tuple(sorted(doubles))
        template = self._templates.get(keys)
        if template is None:
            if len(self._templates) >= _MAX_SERIES or not all(map(_PLAIN_KEY.fullmatch, keys)):
                return format_line(DataPoint.from_message(point), precision=self.precision)
            template = self._templates[keys] = ",".join(f"{key}={{!r}}" for key in keys)
        values = [doubles[key] for key in keys]
        if not all(map(math.isfinite, values)):
            return format_line(DataPoint.from_message(point), precision=self.precision)
        return f"{prefix}{template.format(*values)} {stamp // self._divisor}"

    def _learn(self, name: str, tags: dict[str, str]) -> str | None:
        if len(self._series) >= _MAX_SERIES:
            return None
        try:
            line = format_line(DataPoint(name, {"x": 0.0}, tags=tags), precision="ns")
        except ValueError:
            return None
        prefix = line[: -len(" x=0.0 0")] + " "
        self._series[(name, tuple(tags.items()))] = prefix
        return prefix
