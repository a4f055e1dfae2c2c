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

import math
import time as _time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from .errors import AioudfError
from .messages import Point
from .points import DataPoint, FieldValue, fields_of

__all__ = [
    "PRECISIONS",
    "LineProtocolError",
    "MissingDependency",
    "format_line",
    "parse_line",
    "parse_lines",
    "split_records",
]

#: Multipliers from a timestamp precision to nanoseconds (InfluxDB's names).
PRECISIONS: dict[str, int] = {
    "ns": 1,
    "n": 1,
    "us": 1_000,
    "u": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}

INSTALL_HINT = 'install it with: pip install "aioudf[replay]"'


class MissingDependency(AioudfError):
    """An optional dependency is not installed; the message says how to get it."""


class LineProtocolError(AioudfError, ValueError):
    """A line that is not valid line protocol.

    ``source`` and ``lineno`` say where (when known), ``line`` is the text.
    """

    def __init__(self, reason: str, line: str, *, source: str = "", lineno: int = 0) -> None:
        self.reason = reason
        self.line = line
        self.source = source
        self.lineno = lineno
        where = f"line {lineno}: " if lineno else ""
        if source and lineno:
            where = f"{source}:{lineno}: "
        shown = line if len(line) <= 120 else line[:117] + "..."
        super().__init__(f"{where}invalid line protocol ({reason}): {shown}")


_parser: Callable[[str], Any] | None = None
_parser_error: type[Exception] = Exception


def _load_parser() -> Callable[[str], Any]:
    global _parser, _parser_error
    if _parser is None:
        try:
            import line_protocol_parser
        except ImportError:
            raise MissingDependency(
                "reading line protocol needs the line-protocol-parser package; " + INSTALL_HINT
            ) from None
        _parser = line_protocol_parser.parse_line
        _parser_error = line_protocol_parser.LineFormatError
    return _parser


def _multiplier(precision: str) -> int:
    try:
        return PRECISIONS[precision]
    except KeyError:
        raise ValueError(
            f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}"
        ) from None


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
    pending: list[str] = []
    start = 0
    for lineno, raw in enumerate(lines, start=1):
        line = raw[:-1] if raw.endswith("\n") else raw
        if not pending:
            start = lineno
        pending.append(line)
        record = "\n".join(pending)
        if _ends_inside_string(record):
            continue
        pending = []
        yield start, record.rstrip("\r")
    if pending:
        yield start, "\n".join(pending)


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


# ---- formatting -----------------------------------------------------------------

_MEASUREMENT_ESCAPES = str.maketrans({",": "\\,", " ": "\\ "})
_KEY_ESCAPES = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_STRING_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})


#: The times InfluxDB can store (and its parser accepts), in nanoseconds.
MIN_TIME = -(2**63) + 2
MAX_TIME = 2**63 - 2


def _check_name(what: str, text: str, specials: str = ",= ") -> None:
    if "\n" in text or "\r" in text:
        raise ValueError(f"line protocol cannot carry a newline in a {what}: {text!r}")
    if "\x00" in text:
        raise ValueError(f"line protocol cannot carry a NUL character in a {what}: {text!r}")
    if "\\" in text:
        # A backslash before a character that must be escaped reads as an
        # escape pair (InfluxDB's scanner), and so does one at the end.
        if text.endswith("\\"):
            raise ValueError(f"line protocol cannot carry a {what} ending in a backslash: {text!r}")
        for special in specials:
            if "\\" + special in text:
                raise ValueError(
                    f"line protocol cannot carry a backslash before {special!r} "
                    f"in a {what}: {text!r}"
                )


def _format_value(key: str, value: FieldValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"line protocol cannot carry the value {value} of field {key!r}")
        return repr(value)
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"line protocol cannot carry a NUL character in field {key!r}")
        return '"' + value.translate(_STRING_ESCAPES) + '"'
    raise TypeError(f"field {key!r} has a value of type {type(value).__name__}")


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
    if not name:
        raise ValueError("line protocol cannot carry a point without a measurement name")
    if not fields:
        raise ValueError(f"line protocol cannot carry a point without fields ({name!r})")
    _check_name("measurement", name, ", ")
    if name.startswith(("#", "\t")):
        raise ValueError(
            f"line protocol cannot carry a measurement starting with {name[0]!r}: {name!r}"
        )
    if not MIN_TIME <= stamp <= MAX_TIME:
        raise ValueError(f"time {stamp} is outside the range InfluxDB can store")
    parts = [name.translate(_MEASUREMENT_ESCAPES)]
    for key in sorted(tags):
        value = tags[key]
        if not key or not value:
            continue
        _check_name("tag key", key)
        _check_name("tag value", value)
        parts.append(f",{key.translate(_KEY_ESCAPES)}={value.translate(_KEY_ESCAPES)}")
    parts.append(" ")
    field_parts: list[str] = []
    for key in sorted(fields):
        if not key:
            raise ValueError(f"line protocol cannot carry a field without a name ({name!r})")
        if key.startswith("\t") and not field_parts:
            # The parser skips whitespace before the first field.
            raise ValueError(f"line protocol cannot carry a field key starting with a tab: {key!r}")
        _check_name("field key", key)
        field_parts.append(f"{key.translate(_KEY_ESCAPES)}={_format_value(key, fields[key])}")
    parts.append(",".join(field_parts))
    parts.append(f" {stamp // _multiplier(precision)}")
    return "".join(parts)
