"""Building and reading points and batches without protobuf boilerplate.

::

    p = make_point("cpu", {"usage_idle": 97.5, "count": 3},
                   tags={"host": "a", "cpu": "cpu0"}, time=1_700_000_000 * 10**9,
                   group_by=["host"])
    p.group        # 'host=a', as Kapacitor computes it for .groupBy('host')
    fields_of(p)   # {'usage_idle': 97.5, 'count': 3}

A :class:`Batch` is a BeginBatch, its points and the EndBatch as one value.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .messages import BeginBatch, EndBatch, Point

__all__ = [
    "Batch",
    "FieldValue",
    "fields_of",
    "group_key",
    "make_point",
    "set_fields",
    "to_nanoseconds",
]

#: A field value as InfluxDB types it.
FieldValue = float | int | str | bool

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def to_nanoseconds(when: int | datetime.datetime) -> int:
    """Nanoseconds since the epoch; naive datetimes are taken as UTC."""
    if isinstance(when, datetime.datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)
        delta = when - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000
    return int(when)


def group_key(
    tags: Mapping[str, str],
    dimensions: Iterable[str],
    *,
    name: str = "",
    by_name: bool = False,
) -> str:
    """The group key Kapacitor gives a point grouped by ``dimensions``.

    Tag names are sorted, the key is ``k1=v1,k2=v2``; with ``by_name`` it is
    prefixed by the measurement name and a newline (just the name when there
    are no dimensions). No dimensions and no ``by_name``: the empty key.
    """
    dims = sorted(dimensions)
    if not dims:
        return name if by_name else ""
    key = ",".join(f"{d}={tags.get(d, '')}" for d in dims)
    return f"{name}\n{key}" if by_name else key


def set_fields(point: Point, fields: Mapping[str, FieldValue]) -> None:
    """Store each field in the map of its type (bool, int, float or str)."""
    for key, value in fields.items():
        if isinstance(value, bool):
            point.fieldsBool[key] = value
        elif isinstance(value, int):
            point.fieldsInt[key] = value
        elif isinstance(value, float):
            point.fieldsDouble[key] = value
        elif isinstance(value, str):
            point.fieldsString[key] = value
        else:
            raise TypeError(
                f"field {key!r} has a value of type {type(value).__name__}; "
                "fields are float, int, str or bool"
            )


def fields_of(point: Point) -> dict[str, FieldValue]:
    """All fields of a point in one dict, whatever their type."""
    out: dict[str, FieldValue] = {}
    out.update(point.fieldsDouble)
    out.update(point.fieldsInt)
    out.update(point.fieldsString)
    out.update(point.fieldsBool)
    return out


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
    """A Point as Kapacitor would send it, group key and dimensions included."""
    tags = dict(tags or {})
    point = Point(
        name=name,
        time=to_nanoseconds(time),
        database=database,
        retentionPolicy=retention_policy,
        tags=tags,
        dimensions=sorted(group_by),
        byName=by_name,
        group=group_key(tags, group_by, name=name, by_name=by_name),
    )
    set_fields(point, fields)
    return point


@dataclass
class Batch:
    """A batch as one value: its metadata and its points, in order."""

    name: str
    points: list[Point] = field(default_factory=list)
    group: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    tmax: int = 0
    by_name: bool = False
    #: The size the BeginBatch announced (for batches received).
    size: int | None = None

    @classmethod
    def from_messages(cls, begin: BeginBatch, points: Iterable[Point], end: EndBatch) -> Batch:
        return cls(
            name=end.name or begin.name,
            points=list(points),
            group=end.group or begin.group,
            tags=dict(end.tags or begin.tags),
            tmax=end.tmax,
            by_name=end.byName or begin.byName,
            size=begin.size,
        )

    def begin(self) -> BeginBatch:
        return BeginBatch(
            name=self.name,
            group=self.group,
            tags=self.tags,
            size=len(self.points),
            byName=self.by_name,
        )

    def end(self) -> EndBatch:
        tmax = self.tmax or max((p.time for p in self.points), default=0)
        return EndBatch(
            name=self.name, group=self.group, tmax=tmax, tags=self.tags, byName=self.by_name
        )
