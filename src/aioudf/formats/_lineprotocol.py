"""InfluxDB line protocol in and out: parse lines into points, format points as lines.

Parsing is done by `line-protocol-parser <https://pypi.org/project/line-protocol-parser/>`_
(a C implementation of InfluxDB 1.x's line parser), installed with the
``replay`` extra: ``pip install "aioudf[replay]"``. This module adds what a
single-line parser does not do: reading whole files with line numbers (a
string field may span lines), timestamp precision, a default time for lines
without one, and errors that name the file and line.

Formatting follows InfluxDB's escaping rules, so every point that line
protocol can express comes back unchanged from :func:`parse_line`::

    format_line(DataPoint("cpu", {"v": 1.5, "n": 3, "ok": True, "s": 'say "hi"'},
                          tags={"host": "a b"}, time=5))
    # 'cpu,host=a\\ b n=3i,ok=true,s="say \\"hi\\"",v=1.5 5'

Tags and fields are written sorted by key, as InfluxDB stores them. What line
protocol cannot express: a point without fields, NaN or infinite floats, a tag
with an empty value (InfluxDB drops those tags), a name, key or tag value
ending in a backslash or with a backslash before a character that needs
escaping (InfluxDB reads both as escapes), newlines outside string fields, NUL characters, a
measurement starting with ``#`` or a tab (a comment, skipped whitespace), and
times outside InfluxDB's range.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from ..errors import LineProtocolError, MissingDependency
from ..wire._messages import Point
from ._fields import fields_of
from ._lineformat import MAX_TIME, MIN_TIME, PRECISIONS, format_record
from ._lineformat import multiplier as _multiplier
from ._points import DataPoint, FieldValue

__all__ = [
    "PRECISIONS",
    "LineProtocolError",
    "MAX_TIME",
    "MIN_TIME",
    "MissingDependency",
    "format_line",
    "parse_line",
    "parse_lines",
    "RecordJoiner",
    "split_records",
]

INSTALL_HINT = 'install it with: pip install "aioudf[replay]"'


_parser: Callable[[str], Any] | None = None
_parser_error: type[Exception] = Exception


def _load_parser() -> Callable[[str], Any]:
    global _parser, _parser_error
    if _parser is None:
        try:
            import line_protocol_parser
        except ImportError:
            raise MissingDependency(
                "reading line protocol (and stream recordings, .srpl, which hold it) needs "
                "the line-protocol-parser package, in aioudf's replay extra; " + INSTALL_HINT
            ) from None
        _parser = line_protocol_parser.parse_line
        _parser_error = line_protocol_parser.LineFormatError
    return _parser


def _reason(exc: Exception) -> str:
    text = str(exc).strip().rstrip(".")
    return text[:1].lower() + text[1:] if text else type(exc).__name__


def parse_line(
    line: str,
    *,
    precision: str = "ns",
    default_time: int | Callable[[], int] | None = None,
    source: str = "",
    lineno: int = 0,
) -> DataPoint | None:
    """One line of line protocol as a point; None for a blank or comment line.

    ``precision`` is the unit of the timestamp (``ns``, ``us``, ``ms``, ``s``,
    ``m``, ``h``). A line without a timestamp gets ``default_time`` (ns, or a
    function returning it); by default the current time, as InfluxDB does.
    Raises :class:`LineProtocolError`.
    """
    parse = _load_parser()
    multiplier = _multiplier(precision)
    text = line.rstrip("\r\n")
    if not text.strip() or text.lstrip().startswith("#"):
        return None
    try:
        parsed = parse(text)
    except _parser_error as exc:
        raise LineProtocolError(_reason(exc), text, source=source, lineno=lineno) from None
    except (UnicodeError, ValueError) as exc:
        raise LineProtocolError(_reason(exc), text, source=source, lineno=lineno) from None
    if parsed is None:
        return None
    stamp = parsed["time"]
    if stamp is None:
        if default_time is None:
            stamp = _time.time_ns()
        elif callable(default_time):
            stamp = default_time()
        else:
            stamp = default_time
    else:
        stamp *= multiplier
        if not MIN_TIME <= stamp <= MAX_TIME:
            raise LineProtocolError(
                f"time {parsed['time']} at precision {precision} is outside the range "
                f"InfluxDB can store ({MIN_TIME} to {MAX_TIME} ns)",
                text,
                source=source,
                lineno=lineno,
            )
    out = DataPoint.__new__(DataPoint)
    out.name = parsed["measurement"]
    # The parser returns keys in no useful order: use InfluxDB's (sorted).
    fields = parsed["fields"]
    out.fields = {key: fields[key] for key in sorted(fields)}
    tags = parsed["tags"]
    out.tags = {key: tags[key] for key in sorted(tags)} if len(tags) > 1 else tags
    out.time = stamp
    out.dimensions = ()
    out.by_name = False
    out.group = ""
    out.database = ""
    out.retention_policy = ""
    return out


def split_records(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    """Join physical lines into records: ``(first line number, text)``.

    A string field value may contain a newline (InfluxDB accepts it inside
    double quotes), so a line that ends inside a quoted field value continues
    on the next one. Line endings are removed.
    """
    joiner = RecordJoiner()
    for lineno, raw in enumerate(lines, start=1):
        record = joiner.add(lineno, raw[:-1] if raw.endswith("\n") else raw)
        if record is not None:
            yield record[0], record[1].rstrip("\r")
    rest = joiner.rest()
    if rest is not None:
        yield rest


class RecordJoiner:
    """:func:`split_records` one line at a time, for a reader that has its lines in blocks.

    ``add(lineno, line)`` (the line without its ``\n``) returns the record
    the line completes, as ``(first line number, text)``, or None while a
    string field value goes on to the next line; ``rest()`` is what is left
    at the end of the input (a string that never closed), or None.
    """

    __slots__ = ("_pending", "_start")

    def __init__(self) -> None:
        self._pending: list[str] = []
        self._start = 0

    @property
    def open(self) -> bool:
        """True while a record is waiting for its next line."""
        return bool(self._pending)

    def add(self, lineno: int, line: str) -> tuple[int, str] | None:
        pending = self._pending
        if not pending:
            if '"' not in line:  # nothing can go on: the line is the record
                return lineno, line
            self._start = lineno
        pending.append(line)
        record = "\n".join(pending)
        if _ends_inside_string(record):
            return None
        self._pending = []
        return self._start, record

    def rest(self) -> tuple[int, str] | None:
        if not self._pending:
            return None
        record = self._start, "\n".join(self._pending)
        self._pending = []
        return record


def _ends_inside_string(record: str) -> bool:
    """True if the record's field section has an unterminated string value."""
    if '"' not in record:
        return False
    n = len(record)
    # The key (measurement and tags) ends at the first unescaped space; a
    # double quote there is an ordinary character, as it is in field keys.
    i = 0
    while i < n and record[i] != " ":
        i += 2 if record[i] == "\\" else 1
    while i < n and record[i] == " ":
        i += 1
    while i < n:
        while i < n and record[i] != "=":  # a field key
            if record[i] == " ":
                return False
            i += 2 if record[i] == "\\" else 1
        i += 1
        if i < n and record[i] == '"':  # a string value: up to the closing quote
            i += 1
            while i < n and record[i] != '"':
                i += 2 if record[i] == "\\" else 1
            if i >= n:
                return True
            i += 1
        while i < n and record[i] not in ", ":  # the rest of the value
            i += 1
        if i >= n or record[i] == " ":
            return False
        i += 1
    return False


def parse_lines(
    lines: Iterable[str],
    *,
    source: str = "",
    precision: str = "ns",
    default_time: int | Callable[[], int] | None = None,
    on_error: Callable[[LineProtocolError], None] | None = None,
) -> Iterator[DataPoint]:
    """Parse the lines of a file; blank and comment lines are skipped.

    An invalid line raises :class:`LineProtocolError` naming ``source`` and the
    line number, after every point before it has been yielded; with
    ``on_error`` it is passed there instead and parsing goes on.
    """
    for lineno, record in split_records(lines):
        try:
            point = parse_line(
                record,
                precision=precision,
                default_time=default_time,
                source=source,
                lineno=lineno,
            )
        except LineProtocolError as exc:
            if on_error is None:
                raise
            on_error(exc)
            continue
        if point is not None:
            yield point


def format_line(point: DataPoint | Point, *, precision: str = "ns") -> str:
    """The point as one line of line protocol (no trailing newline).

    Raises ValueError for what line protocol cannot express (see the module
    documentation); tags with an empty value are left out, as InfluxDB does.
    """
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    if isinstance(point, Point):
        name, tags, fields, stamp = point.name, point.tags, fields_of(point), point.time
    else:
        name, tags, fields, stamp = point.name, point.tags, point.fields, point.time
    return format_record(name, tags, fields, stamp, precision=precision)
