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

import datetime
import math
from collections.abc import Iterable, Mapping, Sequence, Sized
from typing import Any

from ..wire._messages import BeginBatch, EndBatch, Point
from ._fields import (
    _NEVER_FIELDS,
    _check_field,
    _same_fields,
    fields_of,
    group_key,
    set_fields,
    to_nanoseconds,
)
from ._lineformat import FieldValue, format_record

__all__ = [
    "Batch",
    "BatchHeader",
    "DataPoint",
    "FieldValue",
    "make_point",
]


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
