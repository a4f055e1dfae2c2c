"""Formatting points as InfluxDB line protocol: escaping, precision, range checks.

A leaf module (it imports nothing of aioudf), so that both :mod:`aioudf.formats`
(``str(point)``) and :mod:`aioudf.formats` use it without importing each
other. See :mod:`aioudf.formats` for what line protocol cannot express.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["MAX_TIME", "MIN_TIME", "PRECISIONS", "format_record", "multiplier"]

#: A field value as InfluxDB types it: float, integer, string or boolean.
FieldValue = float | int | str | bool

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


def multiplier(precision: str) -> int:
    try:
        return PRECISIONS[precision]
    except KeyError:
        raise ValueError(
            f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}"
        ) from None


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


def format_record(
    name: str,
    tags: Mapping[str, str],
    fields: Mapping[str, FieldValue],
    stamp: int,
    *,
    precision: str = "ns",
) -> str:
    """A point given by its parts as one line of line protocol (no trailing newline).

    Raises ValueError for what line protocol cannot express; tags with an
    empty value are left out, as InfluxDB does.
    """
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
    parts.append(f" {stamp // multiplier(precision)}")
    return "".join(parts)
