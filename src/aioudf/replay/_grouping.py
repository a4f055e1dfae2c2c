"""Grouping as ``|from().groupBy(...)`` sets it on the replayed data."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..formats._fields import group_key
from ..formats._points import Batch, DataPoint

__all__ = ["Grouping"]


@dataclass(frozen=True)
class Grouping:
    """What ``|from().groupBy(...)`` and ``.groupByMeasurement()`` set on the data."""

    tags: tuple[str, ...] = ()
    all_tags: bool = False
    by_name: bool = False

    @classmethod
    def from_args(cls, group_by: Iterable[str], *, by_name: bool = False) -> Grouping:
        """From ``--group-by`` values: tag names, comma-separated or not; ``*`` for all."""
        names = {name.strip() for arg in group_by for name in arg.split(",") if name.strip()}
        return cls(tags=tuple(sorted(names - {"*"})), all_tags="*" in names, by_name=by_name)

    @property
    def active(self) -> bool:
        return bool(self.tags) or self.all_tags or self.by_name

    def dimensions(self, tags: dict[str, str]) -> tuple[str, ...]:
        return tuple(sorted(tags)) if self.all_tags else self.tags

    def apply(self, point: DataPoint) -> DataPoint:
        dims = self.dimensions(point.tags)
        point.dimensions = dims
        point.by_name = self.by_name
        point.group = group_key(point.tags, dims, name=point.name, by_name=self.by_name)
        return point

    def regroup(self, batch: Batch) -> list[Batch]:
        """Split a batch by the new group, as a groupBy node does on a batch edge."""
        groups: dict[str, tuple[dict[str, str], list[DataPoint]]] = {}
        for point in batch.points:
            dims = self.dimensions(point.tags)
            key = group_key(point.tags, dims, name=batch.name, by_name=self.by_name)
            if key not in groups:
                groups[key] = ({d: point.tags.get(d, "") for d in dims}, [])
            groups[key][1].append(point)
        return [
            Batch(batch.name, points, tags=tags, group=key, by_name=self.by_name, tmax=batch.tmax)
            for key, (tags, points) in groups.items()
        ]
