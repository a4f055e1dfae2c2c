"""The replay's hot path: line protocol straight to Request frames, Point bytes straight to lines.

Replaying line protocol through a UDF used to build three objects a point
on the way in (the parser's dict, a :class:`~aioudf.formats.DataPoint`, a protobuf
Point) and two on the way out (a protobuf Point, a DataPoint). The UDF itself
costs a few microseconds a point; those objects cost several times that. Here:

* :class:`LineEncoder` turns one line into its framed Request bytes. For a
  line of a series already seen (same text before the fields) whose field
  keys are those its series had last, one compiled expression checks the
  whole rest of the line and captures every value and the time, and one
  function written for that layout of fields packs the map entries (heads
  and doubles in one ``Struct.pack``) behind the series' encoded name, tags
  and group; the time's varint is kept while it does not change. Only what
  the parser reads exactly as ``float()`` and ``int()`` do is taken this
  way: plain field keys, floats of at most 200 digits either side of the
  point and a two-digit exponent, integers of at most 18 digits. Anything
  else (strings, booleans, escapes, a series' first line, another layout,
  anything the expression does not vouch for) goes through
  :func:`aioudf.formats.parse_line` exactly as before, errors and all.
* :class:`LineFormatter` writes the line of an emitted Point. From the
  Point's bytes (:meth:`LineFormatter.raw`): the time varint, then the
  series (name to tags, looked up whole in a cache of formatted
  ``measurement,tags `` prefixes), then the double fields, checked and read
  by a compiled expression and a ``Struct`` per layout, written sorted by
  one ``str.format``. Points it cannot vouch for (other field types,
  non-finite values, unknown fields, byName...) are decoded and go through
  the protobuf path, and through :func:`~aioudf.formats.format_line`.

Both give what the slow path gives, byte for byte for the lines (the
frames decode to the same Points); the tests of ``aioudf replay`` run
through them, and tests/replay/test_replay_fastpath.py compares both ways on
random lines and points.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable
from typing import Any

from google.protobuf.message import DecodeError

from ..errors import ProtocolError
from ..formats._lineformat import MAX_TIME, MIN_TIME, multiplier
from ..formats._lineprotocol import format_line, parse_line
from ..formats._points import DataPoint
from ..wire._layout import (
    POINT_HEADERS,
    data_header,
    encode_data_frame,
    encode_varint,
    read_uvarint,
)
from ..wire._messages import Point
from ._grouping import Grouping

__all__ = ["LineEncoder", "LineFormatter", "decode_point"]

# Characters that need no escaping anywhere in a line and mean nothing to
# the parser: field keys made only of them are taken as they are.
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.:/@%+\-]+")
# A float value as the parser reads it, or text float() refuses too ("",
# ".", "-", which then go to the parser). At most 200 digits before and
# after the point and a two-digit exponent: nothing that could overflow or
# underflow, which the parser refuses and float() does not. ASCII digits
# only (float() reads other digits too, the parser does not).
_FLOAT = r"-?[0-9]{0,200}\.?[0-9]{0,200}(?:[eE][+-]?[0-9]{1,2})?"
#: An integer value that fits an int64 whatever its digits.
_INT = r"-?[0-9]{1,18}"
#: The kind of a field value in a layout, by what its text looks like.
_VALUE_KIND = re.compile(f"(?P<int>{_INT})i|(?P<float>{_FLOAT})").fullmatch
_INT64 = 1 << 64
#: Series whose encoding is kept (beyond that, new series take the slow path).
_MAX_SERIES = 100_000
#: Field layouts kept (each a compiled expression).
_MAX_LAYOUTS = 10_000
_pack_double = struct.Struct("<d").pack


def _entry_key(key: str, value_tag: bytes) -> bytes:
    """A field map entry's key and its value's tag (what comes before the value)."""
    raw = key.encode()
    return b"\x0a" + encode_varint(len(raw)) + raw + value_tag


def _int_entry(head: bytes, text: str) -> bytes:
    """A fieldsInt map entry (field 9): ``head`` is its key and value tag."""
    entry = head + encode_varint(int(text))
    return b"\x4a" + encode_varint(len(entry)) + entry


# How a field value of each kind is read from a line and written into a
# Point, by kind (True: an integer): the one table every layout's
# expression and encoder are built from. ``value`` is the capture the
# layout's expression makes of the value's text, ``tag`` the map entry's
# value tag (field 2, wire type 0 or 1), ``encode`` the Python expression
# that writes entry ``i`` from its head ``h{i}`` and its text ``v[{i}]``
# (a fieldsInt entry, field 9, gets its tag and length with the value; a
# fieldsDouble one, field 8, has them in its head, its value being 8 bytes).
_KINDS: dict[bool, tuple[str, bytes, str]] = {
    False: (f"({_FLOAT})", b"\x11", "h{i} + pack_d(float(v[{i}]))"),
    True: (f"({_INT})i", b"\x10", "int_entry(h{i}, v[{i}])"),
}


class _Layout:
    """The field keys of a line, in its order, and their kinds: how to encode such lines.

    ``fullmatch`` takes the text after the series key (fields, a space, the
    time) and captures every value and then the time, in one call; a line
    of another layout, or with a value the parser might read otherwise,
    does not match. ``entries`` takes those captures and returns the
    Point's field-map entries.

    ``entries`` is generated (``exec``) from :data:`_KINDS`, for speed: a
    function written out for the layout, the entry heads constants and the
    doubles of an all-double layout packed by one precompiled Struct, runs
    in half the time of any generic code (measured on three double
    fields: 0.87 us a line generated, 1.5 us filling and packing an
    argument list, 1.9 us zipping heads and values into the Struct), and
    this is the replay's per-line cost. Only indices and names go into the
    source; keys and heads stay in its namespace.
    """

    __slots__ = ("entries", "fullmatch")

    def __init__(self, fields: tuple[tuple[str, bool], ...]) -> None:
        pattern = ",".join(f"{re.escape(key)}={_KINDS[is_int][0]}" for key, is_int in fields)
        self.fullmatch = re.compile(pattern + r" (-?[0-9]{1,19})").fullmatch
        namespace: dict[str, Any] = {
            "float": float,
            "int_entry": _int_entry,
            "pack_d": _pack_double,
        }
        heads = []
        for i, (key, is_int) in enumerate(fields):
            entry = _entry_key(key, _KINDS[is_int][1])
            heads.append(entry if is_int else b"\x42" + encode_varint(len(entry) + 8) + entry)
            namespace[f"h{i}"] = heads[i]
        if any(is_int for _, is_int in fields):
            parts = [_KINDS[is_int][2].format(i=i) for i, (_, is_int) in enumerate(fields)]
            body = f'b"".join(({", ".join(parts)},))'
        else:
            namespace["pack"] = struct.Struct(
                "<" + "".join(f"{len(head)}sd" for head in heads)
            ).pack
            body = f"pack({', '.join(f'h{i}, float(v[{i}])' for i in range(len(fields)))})"
        exec(f"def entries(v):\n    return {body}\n", namespace)
        self.entries: Callable[[tuple[str, ...]], bytes] = namespace["entries"]


class _Series:
    """A series seen: its encoded name, tags and group; the layout its lines last had."""

    __slots__ = ("data", "layout")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.layout: _Layout | None = None


def _layout_of(fields_text: str, point: DataPoint) -> tuple[tuple[str, bool], ...] | None:
    """The layout of a line's fields as the parser read them into ``point``; None if odd."""
    layout = []
    for item in fields_text.split(","):
        key, _, value = item.partition("=")
        kind = _VALUE_KIND(value)
        parsed = point.fields.get(key)
        if kind is None or _PLAIN_KEY.fullmatch(key) is None or type(parsed) is bool:
            return None
        is_int = kind.group("int") is not None
        if not isinstance(parsed, int if is_int else float):
            return None
        layout.append((key, is_int))
    if len({key for key, _ in layout}) != len(layout) or len(layout) != len(point.fields):
        return None  # a repeated key (the parser keeps the first, protobuf the last)
    return tuple(layout)


class LineEncoder:
    """Lines of line protocol to framed Requests (see the module documentation).

    Every point gets ``database`` and ``retention_policy`` (a stream
    recording's lines each come with theirs: one encoder per pair).
    """

    def __init__(
        self,
        *,
        precision: str,
        grouping: Grouping,
        source: str = "",
        default_time: int | Callable[[], int] | None = None,
        database: str = "",
        retention_policy: str = "",
    ) -> None:
        self.precision = precision
        self.grouping = grouping
        self.source = source
        self.default_time = default_time
        self.database = database
        self.retention_policy = retention_policy
        self._multiplier = multiplier(precision)
        #: series key (the text before the fields) -> what is kept of it
        self._series: dict[str, _Series] = {}
        #: field keys and kinds, in a line's order -> their layout
        self._layouts: dict[tuple[tuple[str, bool], ...], _Layout] = {}
        self._time_text = ""
        self._time_bytes = b""

    def point(self, point: DataPoint) -> bytes:
        """The frame of a parsed point (grouping applied)."""
        if self.grouping.active:
            point = self.grouping.apply(point)
        return encode_data_frame(point.to_message())

    def line(self, text: str, lineno: int) -> bytes | None:
        """The frame of one record; None for a blank or comment line.

        Raises :class:`~aioudf.errors.LineProtocolError` as
        :func:`~aioudf.formats.parse_line` does.
        """
        key, _, rest = text.partition(" ")
        series = self._series.get(key)
        if series is not None and series.layout is not None:
            layout = series.layout
            match = layout.fullmatch(rest)
            if match is not None:
                values = match.groups()
                stamp = values[-1]
                if stamp == self._time_text or self._set_time(stamp):
                    try:
                        entries = layout.entries(values)
                    except ValueError:  # no digits: the parser says what is wrong
                        return self._parsed(text, lineno, key, rest, series)
                    data = series.data
                    time_bytes = self._time_bytes
                    size = len(data) + len(entries) + len(time_bytes)
                    header = POINT_HEADERS.get(size) or data_header(Point, size)
                    return b"".join((header, data, entries, time_bytes))
        return self._parsed(text, lineno, key, rest, series)

    def _parsed(
        self, text: str, lineno: int, key: str, rest: str, series: _Series | None
    ) -> bytes | None:
        """The frame of a line the parser reads (and what is learnt from it)."""
        point = parse_line(
            text,
            precision=self.precision,
            default_time=self.default_time,
            source=self.source,
            lineno=lineno,
        )
        if point is None:
            return None
        point.database = self.database
        point.retention_policy = self.retention_policy
        if self.grouping.active:
            point = self.grouping.apply(point)
        frame = encode_data_frame(point.to_message())
        if "\\" not in text and '"' not in text and rest.count(" ") == 1:
            self._learn(key, rest.partition(" ")[0], point, series)
        return frame

    def _set_time(self, text: str) -> bool:
        """Take ``text`` as the time of the lines that follow; False if out of range."""
        stamp = int(text) * self._multiplier
        if not MIN_TIME <= stamp <= MAX_TIME:
            return False
        self._time_text = text
        self._time_bytes = b"\x08" + encode_varint(stamp)
        return True

    def _learn(self, key: str, fields_text: str, point: DataPoint, series: _Series | None) -> None:
        """Keep the encoded series of ``point`` and the layout of its line's fields.

        ``key`` is the text before the fields of a line the parser read
        into ``point`` (grouping applied): another line starting with the
        same text is of the same series.
        """
        if series is None:
            if len(self._series) >= _MAX_SERIES:
                return
            message = point.to_message()
            message.ClearField("time")
            for name in ("fieldsDouble", "fieldsInt", "fieldsString", "fieldsBool"):
                message.ClearField(name)
            series = self._series[key] = _Series(message.SerializeToString())
        fields = _layout_of(fields_text, point)
        if fields is None:
            series.layout = None
            return
        layout = self._layouts.get(fields)
        if layout is None:
            if len(self._layouts) >= _MAX_LAYOUTS:
                series.layout = None
                return
            layout = self._layouts[fields] = _Layout(fields)
        series.layout = layout


#: Point fields between the time and the fields, all length-delimited: name,
#: database, retentionPolicy, group, dimensions, tags (their tag bytes).
_SERIES_TAGS = frozenset((0x12, 0x1A, 0x22, 0x2A, 0x32, 0x3A))
#: Eight bytes of a finite double (little-endian: not all exponent bits set).
_FINITE_DOUBLE = rb"(?![\x00-\xff]{6}[\xf0-\xff][\x7f\xff])[\x00-\xff]{8}"


class _Fields:
    """The double fields of emitted Points with these map-entry heads, in this order.

    ``match(data, pos)`` vouches for the rest of a Point from ``pos``: these
    entries, finite values, nothing after; ``unpack_from`` reads the
    values; ``template`` writes them sorted by key, as format_line does
    (``str.format`` fields from 1: 0 is the time's); ``size`` is their
    length in bytes.
    """

    __slots__ = ("match", "size", "template", "unpack_from")

    def __init__(self, heads: tuple[bytes, ...], keys: list[str]) -> None:
        self.match = re.compile(
            b"".join(re.escape(head) + _FINITE_DOUBLE for head in heads) + rb"\Z"
        ).match
        self.unpack_from = struct.Struct("<" + "".join(f"{len(h)}xd" for h in heads)).unpack_from
        self.size = sum(len(head) + 8 for head in heads)
        order = sorted(range(len(keys)), key=keys.__getitem__)
        self.template = ",".join(f"{keys[i]}={{{i + 1}!r}}" for i in order)


#: Field layouts kept per series: a map's entries may come in a few orders.
_FIELDS_PER_SERIES = 4


#: How to write a series' lines with one layout of fields: that layout's
#: ``match`` and ``unpack_from``, and the line's ``str.format`` (the time
#: text first, then the values).
_Writer = tuple[
    Callable[[bytes, int], "re.Match[bytes] | None"],
    Callable[[bytes, int], tuple[float, ...]],
    Callable[..., str],
]


class _Prefix:
    """A series of emitted Points: its ``measurement,tags `` text, the fields it had last."""

    __slots__ = ("text", "writers")

    def __init__(self, text: str) -> None:
        self.text = text
        #: one per layout of fields seen last, the last first
        self.writers: tuple[_Writer, ...] = ()


def _series_end(data: bytes, pos: int) -> int:
    """Where the name-to-tags fields that start at ``pos`` end; 0 if one is odd."""
    end = len(data)
    series_tags = _SERIES_TAGS
    try:
        while pos < end and data[pos] in series_tags:
            size = data[pos + 1]
            if size >= 0x80:
                return 0
            pos += 2 + size
    except IndexError:
        return 0
    return pos if pos <= end else 0


def _double_fields(data: bytes, pos: int) -> tuple[tuple[bytes, ...], list[str]] | None:
    """The heads and keys of the fieldsDouble entries that end a Point from ``pos``.

    None for anything else: other fields, other field types, keys that are
    not plain or that repeat, entries not written key then value.
    """
    end = len(data)
    heads: list[bytes] = []
    keys: list[str] = []
    while pos < end:
        size = data[pos + 1] if pos + 1 < end else 0x80
        if data[pos] != 0x42 or size >= 0x80 or data[pos + 2 : pos + 3] != b"\x0a":
            return None
        length = data[pos + 3] if pos + 3 < end else 0
        head_end = pos + 4 + length
        if size != 11 + length or data[head_end : head_end + 1] != b"\x11":
            return None
        key = data[pos + 4 : head_end].decode("utf-8", "replace")
        if _PLAIN_KEY.fullmatch(key) is None or key in keys:
            return None
        keys.append(key)
        heads.append(data[pos : head_end + 1])
        pos = head_end + 9
    if pos != end or not heads:
        return None
    return tuple(heads), keys


def decode_point(data: bytes) -> Point:
    """A Point from its bytes; :class:`~aioudf.ProtocolError` if they are not one."""
    try:
        return Point.FromString(data)
    except DecodeError as exc:
        raise ProtocolError(f"the UDF sent a point that cannot be decoded: {exc}") from None


class LineFormatter:
    """Emitted Points as lines of line protocol (see the module documentation).

    Call it with a decoded Point, or give :meth:`raw` a Point's bytes.
    """

    def __init__(self, precision: str) -> None:
        self.precision = precision
        self._divisor = multiplier(precision)
        #: (name, tags) -> "name,tag=value... "
        self._series: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
        #: sorted field keys -> "key1={!r},key2={!r}..."
        self._templates: dict[tuple[str, ...], str] = {}
        #: a Point's bytes from its name to its tags -> its series
        self._prefixes: dict[bytes, _Prefix | None] = {}
        #: fieldsDouble entry heads -> their layout
        self._fields: dict[tuple[bytes, ...], _Fields] = {}
        #: the time field of the last Point (varint), and its text in a line
        self._time_field = b"\x08\x00"  # time 0, as a Point may say it
        self._time_text = " 0"
        #: the bytes of the last Point's fields
        self._fields_size = 0

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

    def raw(self, data: bytes) -> str:
        """The line of a Point given as its serialized bytes.

        The time, the series (everything from the name to the tags) and
        the double fields are read straight from the bytes; what this does
        not vouch for (other field types, non-finite values, unknown or
        repeated fields...) is decoded and goes through :meth:`__call__`.
        Raises ValueError as :meth:`__call__` does, and
        :class:`~aioudf.ProtocolError` for bytes that are not a Point.
        """
        time_field = self._time_field
        if data.startswith(time_field):
            start = len(time_field)
        else:
            start = self._read_time(data)
            if not start:
                return self._decoded(data)
        # Where the fields start if they take as many bytes as the last
        # Point's: a series known from its whole bytes and fields that match
        # up to the end vouch for every byte between.
        pos = len(data) - self._fields_size
        prefix = self._prefixes.get(data[start:pos])
        if prefix is None:
            pos = _series_end(data, start)
            if not pos:
                return self._decoded(data)
            prefix = self._prefixes.get(data[start:pos])
            if prefix is None:
                prefix = self._learn_series(data[start:pos])
                if prefix is None:
                    return self._decoded(data)
        for match, unpack_from, write in prefix.writers:
            if match(data, pos) is not None:
                return write(self._time_text, *unpack_from(data, pos))
        if not self._learn_fields(data, pos, prefix):
            return self._decoded(data)
        _, unpack_from, write = prefix.writers[0]
        return write(self._time_text, *unpack_from(data, pos))

    def _read_time(self, data: bytes) -> int:
        """Read the time field that starts ``data``; where it ends, or 0 if it does not."""
        if data[:1] != b"\x08":
            return 0
        try:
            value, end = read_uvarint(data, 1)
        except ValueError:
            return 0
        if value >= _INT64 >> 1:
            value -= _INT64
        if not MIN_TIME <= value <= MAX_TIME:
            return 0
        self._time_field = data[:end]
        self._time_text = f" {value // self._divisor}"
        return end

    def _learn_series(self, key: bytes) -> _Prefix | None:
        """The line prefix of the series whose bytes (name to tags) are ``key``."""
        if key in self._prefixes or len(self._prefixes) >= _MAX_SERIES:
            return None
        try:
            point = Point.FromString(key)
        except DecodeError:
            return None
        text = self._learn(point.name, dict(point.tags))
        prefix = self._prefixes[key] = _Prefix(text) if text is not None else None
        return prefix

    def _learn_fields(self, data: bytes, pos: int, prefix: _Prefix) -> bool:
        """Keep the layout of the fields from ``pos`` for ``prefix``'s series; False if odd."""
        found = _double_fields(data, pos)
        if found is None:
            return False
        heads, keys = found
        fields = self._fields.get(heads)
        if fields is None:
            if len(self._fields) >= _MAX_LAYOUTS:
                return False
            fields = self._fields[heads] = _Fields(heads, keys)
        if fields.match(data, pos) is None:
            return False  # a value that is not finite
        text = prefix.text.replace("{", "{{").replace("}", "}}")
        writer = (fields.match, fields.unpack_from, (text + fields.template + "{0}").format)
        prefix.writers = (writer, *prefix.writers[: _FIELDS_PER_SERIES - 1])
        self._fields_size = fields.size
        return True

    def _decoded(self, data: bytes) -> str:
        return self(decode_point(data))

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
