"""Points and batches as plain Python values: write them, compare them, read them.

A :class:`DataPoint` is what a person writes in a test and reads in a result::

    p = DataPoint("cpu", {"usage_idle": 97.5, "count": 3},
                  tags={"host": "a", "cpu": "cpu0"}, time=1_700_000_000 * 10**9,
                  group_by=["host"])
    p.group            # 'host=a', the key Kapacitor computes for .groupBy('host')
    p.fields["count"]  # 3 (an int field: InfluxDB's 3i)
    str(p)             # 'cpu,cpu=cpu0,host=a count=3i,usage_idle=97.5 1700000000000000000'

Two points are equal when every attribute is, field *types* included (``3``
and ``3.0`` are different fields to InfluxDB, so they are different here);
field values that are not plain numbers, such as ``pytest.approx(2.0)``, are
compared with ``==``. The repr is the constructor call that rebuilds the point.

A :class:`Batch` is a BeginBatch, its points and the EndBatch as one value.

:func:`make_point` builds the protobuf :class:`~aioudf.Point` directly, for a
handler that emits new points; :meth:`DataPoint.to_message` and
:meth:`DataPoint.from_message` convert between the two.

The group key follows Kapacitor (docs/protocol.md, "Group keys"): no dimensions, the
empty key (or the measurement name with ``by_name``); otherwise the sorted tag
names as ``k1=v1,k2=v2``, prefixed by ``name + "\\n"`` with ``by_name``.
"""

from __future__ import annotations

import calendar
import datetime
import math
import re
from collections.abc import Iterable, Mapping, Sequence, Sized
from typing import Any

from ..wire._messages import BeginBatch, EndBatch, Point
from ._lineformat import FieldValue, format_record

__all__ = [
    "Batch",
    "BatchHeader",
    "DataPoint",
    "FieldValue",
    "clear_fields",
    "fields_of",
    "format_time",
    "group_key",
    "make_point",
    "number_field",
    "parse_time",
    "set_fields",
    "to_nanoseconds",
]

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


# ---- time -------------------------------------------------------------------


def to_nanoseconds(when: int | datetime.datetime) -> int:
    """Nanoseconds since the epoch; naive datetimes are taken as UTC."""
    if isinstance(when, datetime.datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)
        delta = when - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000
    if isinstance(when, bool) or not isinstance(when, int):
        raise TypeError(f"time must be nanoseconds (int) or a datetime, not {type(when).__name__}")
    return when


def format_time(nanoseconds: int) -> str:
    """RFC 3339 in UTC with nanoseconds, trailing zeros dropped (Go's RFC3339Nano).

    ``format_time(1_700_000_000_980_000_000) == '2023-11-14T22:13:20.98Z'``
    """
    seconds, fraction = divmod(nanoseconds, 10**9)
    moment = _EPOCH + datetime.timedelta(seconds=seconds)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if fraction:
        text += "." + f"{fraction:09d}".rstrip("0")
    return text + "Z"


_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d\d):(\d\d))"
)


def parse_time(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time, e.g. ``2023-11-14T22:13:29.98Z``.

    Nanosecond fractions are kept exactly. Raises ValueError for anything else.
    """
    match = _RFC3339.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.group(1, 2, 3, 4, 5, 6))
    try:
        datetime.datetime(year, month, day, hour, minute, min(second, 59))
    except ValueError as exc:
        raise ValueError(f"not an RFC 3339 time: {text!r} ({exc})") from None
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if match.group(9):
        offset = int(match.group(10)) * 3600 + int(match.group(11)) * 60
        seconds -= offset if match.group(9) == "+" else -offset
    fraction = int((match.group(7) or "0").ljust(9, "0"))
    return seconds * 10**9 + fraction


# ---- grouping and fields ------------------------------------------------------


def group_key(
    tags: Mapping[str, str],
    dimensions: Iterable[str],
    *,
    name: str = "",
    by_name: bool = False,
) -> str:
    """The group key Kapacitor gives a point grouped by ``dimensions``.

    Tag names are sorted, the key is ``k1=v1,k2=v2`` (a missing tag counts as
    empty); with ``by_name`` it is prefixed by the measurement name and a
    newline, and is just the name when there are no dimensions. No dimensions
    and no ``by_name``: the empty key.
    """
    dims = sorted(dimensions)
    if not dims:
        return name if by_name else ""
    key = ",".join(f"{d}={tags.get(d, '')}" for d in dims)
    return f"{name}\n{key}" if by_name else key


def _check_field(key: str, value: object) -> None:
    if isinstance(value, bool | str | float):
        return
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"field {key!r}: integer {value} does not fit in 64 bits")
        return
    raise TypeError(
        f"field {key!r} has a value of type {type(value).__name__}; "
        "fields are float, int, str or bool"
    )


_NEVER_FIELDS = (bytes, bytearray, list, tuple, dict, set, frozenset, datetime.datetime)


def set_fields(point: Point, fields: Mapping[str, FieldValue]) -> None:
    """Store each field in the protobuf map of its type (bool, int, float or str)."""
    for key, value in fields.items():
        _check_field(key, value)
        if isinstance(value, bool):
            point.fieldsBool[key] = value
        elif isinstance(value, int):
            point.fieldsInt[key] = value
        elif isinstance(value, float):
            point.fieldsDouble[key] = value
        else:
            point.fieldsString[key] = value


def fields_of(point: Point) -> dict[str, FieldValue]:
    """All fields of a protobuf point in one dict, whatever their type."""
    out: dict[str, FieldValue] = {}
    out.update(point.fieldsDouble)
    out.update(point.fieldsInt)
    out.update(point.fieldsString)
    out.update(point.fieldsBool)
    return out


def number_field(point: Point, field: str) -> float | None:
    """A numeric field (float, or int as a float) of a protobuf point; None if absent."""
    value = point.fieldsDouble.get(field)
    if value is not None:
        return value
    integer = point.fieldsInt.get(field)
    return None if integer is None else float(integer)


def clear_fields(point: Point) -> None:
    """Remove every field of a protobuf point (to reuse it, time, tags and group kept)."""
    # Emptying a map in place costs half of ClearField(), and telegraf's
    # points rarely carry anything but doubles: the other maps are cleared
    # only when they hold something (measured: 1.0 µs a point instead of 2.9).
    point.fieldsDouble.clear()
    if point.fieldsInt:
        point.ClearField("fieldsInt")
    if point.fieldsString:
        point.ClearField("fieldsString")
    if point.fieldsBool:
        point.ClearField("fieldsBool")


def _field_kind(value: object) -> type | None:
    """The InfluxDB type of a plain field value; None for anything else (approx...)."""
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind
    return None


def _same_fields(left: Mapping[str, Any], right: Mapping[str, Any]) -> bool:
    if left.keys() != right.keys():
        return False
    for key, a in left.items():
        b = right[key]
        kind_a, kind_b = _field_kind(a), _field_kind(b)
        if kind_a is not None and kind_b is not None and kind_a is not kind_b:
            return False
        if a != b:
            return False
    return True


def make_point(
    name: str,
    fields: Mapping[str, FieldValue],
    *,
    tags: Mapping[str, str] | None = None,
    time: int | datetime.datetime = 0,
    group_by: Sequence[str] = (),
    by_name: bool = False,
    database: str = "",
    retention_policy: str = "",
) -> Point:
    """A protobuf Point as Kapacitor would send it, group key and dimensions included."""
    return DataPoint(
        name,
        fields,
        tags=tags,
        time=time,
        group_by=group_by,
        by_name=by_name,
        database=database,
        retention_policy=retention_policy,
    ).to_message()


# ---- values -------------------------------------------------------------------


class DataPoint:
    """One point: measurement name, fields, tags, time (ns) and its group.

    ``group_by`` names the tags the point is grouped by (Kapacitor's
    ``dimensions``, kept sorted); ``group`` is then computed as Kapacitor does,
    unless given explicitly. Attributes are plain and mutable; ``fields`` and
    ``tags`` are dicts. A point that is only compared with others (an expected
    value in a test) may hold matchers such as ``pytest.approx(2.0)`` as field
    values.
    """

    __slots__ = (
        "by_name",
        "database",
        "dimensions",
        "fields",
        "group",
        "name",
        "retention_policy",
        "tags",
        "time",
    )
    __hash__ = None  # type: ignore[assignment]  # mutable: not hashable

    def __init__(
        self,
        name: str,
        fields: Mapping[str, Any] | None = None,
        *,
        tags: Mapping[str, str] | None = None,
        time: int | datetime.datetime = 0,
        group_by: Iterable[str] = (),
        by_name: bool = False,
        group: str | None = None,
        database: str = "",
        retention_policy: str = "",
    ) -> None:
        self.name = name
        self.fields: dict[str, FieldValue] = dict(fields or {})
        for key, value in self.fields.items():
            # Expected values in tests may be matchers (pytest.approx): only
            # what can never be a field is refused here, the rest on sending.
            if isinstance(value, (int, *_NEVER_FIELDS)) or value is None:
                _check_field(key, value)
        self.tags: dict[str, str] = dict(tags or {})
        self.time = to_nanoseconds(time)
        self.dimensions: tuple[str, ...] = tuple(sorted(set(group_by)))
        self.by_name = by_name
        self.group = (
            group
            if group is not None
            else group_key(self.tags, self.dimensions, name=name, by_name=by_name)
        )
        self.database = database
        self.retention_policy = retention_policy

    # -- conversions ------------------------------------------------------------

    @classmethod
    def from_message(cls, point: Point) -> DataPoint:
        """The value of a protobuf Point (group and dimensions kept as they are)."""
        out = cls.__new__(cls)
        out.name = point.name
        out.fields = fields_of(point)
        out.tags = dict(point.tags)
        out.time = point.time
        out.dimensions = tuple(point.dimensions)
        out.by_name = point.byName
        out.group = point.group
        out.database = point.database
        out.retention_policy = point.retentionPolicy
        return out

    def to_message(self) -> Point:
        """The protobuf Point Kapacitor would send for this value."""
        point = Point(
            name=self.name,
            time=self.time,
            database=self.database,
            retentionPolicy=self.retention_policy,
            group=self.group,
            dimensions=self.dimensions,
            byName=self.by_name,
            tags=self.tags,
        )
        set_fields(point, self.fields)
        return point

    def replace(self, **changes: object) -> DataPoint:
        """A copy with some constructor arguments changed.

        ``p.replace(fields={"avg": 2.0})``; the group is recomputed unless
        ``group`` is among the changes or the point's group was set by hand.
        """
        arguments: dict[str, Any] = {
            "name": self.name,
            "fields": self.fields,
            "tags": self.tags,
            "time": self.time,
            "group_by": self.dimensions,
            "by_name": self.by_name,
            "database": self.database,
            "retention_policy": self.retention_policy,
        }
        if self.group != self._computed_group():
            arguments["group"] = self.group
        arguments.update(changes)
        return DataPoint(**arguments)

    def _computed_group(self) -> str:
        return group_key(self.tags, self.dimensions, name=self.name, by_name=self.by_name)

    # -- value behaviour ----------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Point):
            other = DataPoint.from_message(other)
        if not isinstance(other, DataPoint):
            return NotImplemented
        return (
            self.name == other.name
            and self.time == other.time
            and self.tags == other.tags
            and self.group == other.group
            and self.dimensions == other.dimensions
            and self.by_name == other.by_name
            and self.database == other.database
            and self.retention_policy == other.retention_policy
            and _same_fields(self.fields, other.fields)
        )

    def __repr__(self) -> str:
        parts = [repr(self.name), repr(self.fields)]
        if self.tags:
            parts.append(f"tags={self.tags!r}")
        parts.append(f"time={self.time!r}")
        if self.dimensions:
            parts.append(f"group_by={self.dimensions!r}")
        if self.by_name:
            parts.append("by_name=True")
        if self.group != self._computed_group():
            parts.append(f"group={self.group!r}")
        if self.database:
            parts.append(f"database={self.database!r}")
        if self.retention_policy:
            parts.append(f"retention_policy={self.retention_policy!r}")
        return f"DataPoint({', '.join(parts)})"

    def __str__(self) -> str:
        """The point as a line of InfluxDB line protocol."""
        return format_record(self.name, self.tags, self.fields, self.time)


class BatchHeader:
    """The header both batch types share (this module's :class:`Batch` and
    :class:`~aioudf.PointBatch`), and the BeginBatch it makes."""

    __slots__ = ()

    name: str
    group: str
    tags: dict[str, str]
    by_name: bool
    points: Sized

    def begin(self) -> BeginBatch:
        """The BeginBatch in front of this batch's points, ``size`` set."""
        return BeginBatch(
            name=self.name,
            group=self.group,
            tags=self.tags,
            size=len(self.points),
            byName=self.by_name,
        )


class Batch(BatchHeader):
    """A batch as one value: its name, group, tags, end time and points, in order.

    The batch owns its points' measurement and group: every point in
    :attr:`points` carries the batch's ``name`` and ``group`` (Kapacitor sends
    batch points without them). ``tags`` are the batch's (group) tags; by
    default the group key is computed from all of them, as for the result of
    an InfluxQL query with ``GROUP BY``; ``group_by`` or ``group`` change
    that. ``tmax`` defaults to the latest point time.
    """

    __slots__ = ("by_name", "group", "name", "points", "size", "tags", "tmax")
    __hash__ = None  # type: ignore[assignment]

    def __init__(
        self,
        name: str,
        points: Iterable[DataPoint | Point] = (),
        *,
        tags: Mapping[str, str] | None = None,
        group_by: Iterable[str] | None = None,
        by_name: bool = False,
        group: str | None = None,
        tmax: int | datetime.datetime | None = None,
    ) -> None:
        self.name = name
        self.tags: dict[str, str] = dict(tags or {})
        self.by_name = by_name
        if group is None:
            dims = self.tags.keys() if group_by is None else group_by
            group = group_key(self.tags, dims, name=name, by_name=by_name)
        self.group = group
        self.points: list[DataPoint] = [self._adopt(p) for p in points]
        if tmax is None:
            self.tmax = max((p.time for p in self.points), default=0)
        else:
            self.tmax = to_nanoseconds(tmax)
        #: The size the BeginBatch announced, for batches a UDF emitted.
        self.size: int | None = None

    def _adopt(self, point: DataPoint | Point) -> DataPoint:
        value = DataPoint.from_message(point) if isinstance(point, Point) else point
        return DataPoint(
            self.name,
            value.fields,
            tags=value.tags,
            time=value.time,
            group=self.group,
        )

    @classmethod
    def from_messages(cls, begin: BeginBatch, points: Iterable[Point], end: EndBatch) -> Batch:
        """The batch a UDF emitted (read as Kapacitor does: mostly from the EndBatch)."""
        batch = cls(
            end.name or begin.name,
            points,
            tags=dict(end.tags or begin.tags),
            by_name=begin.byName or end.byName,
            group=end.group or begin.group,
            tmax=end.tmax,
        )
        batch.size = begin.size
        return batch

    def point_messages(self) -> list[Point]:
        """The points as Kapacitor sends them inside a batch: time, group, tags, fields."""
        out = []
        for value in self.points:
            point = Point(time=value.time, group=self.group, tags=value.tags)
            set_fields(point, value.fields)
            out.append(point)
        return out

    def end(self) -> EndBatch:
        """The EndBatch Kapacitor sends for this batch."""
        return EndBatch(name=self.name, group=self.group, tmax=self.tmax, tags=self.tags)

    def __len__(self) -> int:
        return len(self.points)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Batch):
            return NotImplemented
        return (
            self.name == other.name
            and self.group == other.group
            and self.tags == other.tags
            and self.tmax == other.tmax
            and self.by_name == other.by_name
            and self.points == other.points
        )

    def __repr__(self) -> str:
        points = ", ".join(_batch_point_repr(p) for p in self.points)
        parts = [repr(self.name), f"[{points}]"]
        if self.tags:
            parts.append(f"tags={self.tags!r}")
        if self.by_name:
            parts.append("by_name=True")
        if self.group != group_key(self.tags, self.tags, name=self.name, by_name=self.by_name):
            parts.append(f"group={self.group!r}")
        parts.append(f"tmax={self.tmax!r}")
        return f"Batch({', '.join(parts)})"


def _batch_point_repr(point: DataPoint) -> str:
    parts = [repr(point.name), repr(point.fields)]
    if point.tags:
        parts.append(f"tags={point.tags!r}")
    parts.append(f"time={point.time!r}")
    return f"DataPoint({', '.join(parts)})"


def is_finite(value: FieldValue) -> bool:
    """False for NaN and infinite floats (which InfluxDB cannot store)."""
    return not isinstance(value, float) or math.isfinite(value)
