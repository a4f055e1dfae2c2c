"""Windows over one group's points, with the semantics of Kapacitor's ``|window()``.

Keep one window per group with :func:`~aioudf.per_group` (windows snapshot
themselves)::

    class Stats(Handler):
        period = Option(datetime.timedelta)

        @per_group
        def window(self) -> TimeWindow:
            return TimeWindow(self.period, every=self.period)

        async def point(self, point: Point) -> None:
            batch = self.window[point.group].push(point)
            if batch is not None:
                await self.emit_batch(batch)     # a window as a Kapacitor batch

:meth:`push` returns a :class:`~aioudf.PointBatch` when the window emits:
named after the group's measurement, with the group key, the group's tags
(the ``groupBy`` dimensions only, as Kapacitor's window node sets them) and
``byName``. What a window holds and when it emits is Kapacitor's:

:class:`TimeWindow` (``.period(p).every(e)``, optionally ``.align()`` and
``.fillPeriod()``)
    The first point of a group fixes the first emit time: its time plus
    ``every`` (plus ``period`` with ``fill_period``), rounded down to a
    multiple of ``every`` with ``align`` (with ``fill_period`` and ``align``
    moved on by ``every`` unless strictly after first point + period). A point at
    or after the emit time first emits the window — the points with times in
    ``[emit - period, emit)``, ``tmax`` = the emit time — and only then joins
    the window; the next emit time is *that point's* time plus ``every``
    (aligned). So a gap in the data emits one window when data comes back,
    not one per missed period, and a window may be empty (the gap's).
    ``every = 0`` emits on every point the points in ``(t - period, t]``,
    ``tmax`` = ``t``.
:class:`CountWindow` (``.periodCount(n).everyCount(m)``)
    Holds the last ``n`` points; emits after the ``m``-th point of the group
    and every ``m`` points after (after the ``n``-th first with
    ``fill_period``), ``tmax`` = the last point's time. Before ``n`` points
    it emits what it has.

Tumbling windows have ``every == period``, sliding ones ``every < period``.
In snapshots a window keeps its header, its schedule and its points (each as
the base64 of its protobuf bytes: exact, and quick to read back).
Points are kept as they arrived (protobuf messages, not copies): treat the
points of an emitted window as read-only, later windows share them.
"""

from __future__ import annotations

import base64
import collections
import datetime
from typing import Any

from ..wire._messages import Point
from ._batches import PointBatch

__all__ = ["CountWindow", "TimeWindow", "align_time"]

# Go's Time.Truncate rounds down to a multiple since its zero time (0001-01-01
# UTC), not the Unix epoch: the same for periods that divide a day, not for
# others (7 s, 13 min...). Kapacitor aligns windows with it.
_GO_ZERO_BEFORE_EPOCH_NS = 62_135_596_800 * 10**9


def _nanoseconds(value: int | datetime.timedelta, what: str) -> int:
    if isinstance(value, datetime.timedelta):
        return (value.days * 86_400 + value.seconds) * 10**9 + value.microseconds * 1000
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be nanoseconds (int) or a timedelta, not {value!r}")
    return value


def align_time(time: int, every: int) -> int:
    """``time`` rounded down to a multiple of ``every`` the way Kapacitor aligns windows."""
    if every <= 0:
        return time
    return time - (time + _GO_ZERO_BEFORE_EPOCH_NS) % every


def _dump_point(point: Point) -> str:
    # The protobuf bytes, in base64: exact (field types, nanoseconds) and
    # ~50 times faster to read back than building a Point from its maps.
    return base64.b64encode(point.SerializeToString()).decode("ascii")


def _load_point(data: str) -> Point:
    return Point.FromString(base64.b64decode(data, validate=True))


class _Window:
    """What both windows share: the group header taken from the first point."""

    __slots__ = ("by_name", "dimensions", "group", "name", "tags")

    def __init__(self) -> None:
        self.name = ""
        self.group = ""
        self.tags: dict[str, str] = {}
        self.dimensions: list[str] = []
        self.by_name = False

    def _adopt(self, point: Point) -> None:
        self.name = point.name
        self.group = point.group
        self.dimensions = list(point.dimensions)
        self.tags = {d: point.tags.get(d, "") for d in self.dimensions}
        self.by_name = point.byName

    def _batch(self, points: list[Point], tmax: int) -> PointBatch:
        # Built field by field: a sliding window makes one per point, and the
        # constructor's copies of the list and the tags doubled its cost.
        batch = PointBatch.__new__(PointBatch)
        batch.name = self.name
        batch.points = points
        batch.group = self.group
        batch.tags = dict(self.tags)
        batch.tmax = tmax
        batch.by_name = self.by_name
        return batch

    def _dump_header(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "group": self.group,
            "dimensions": self.dimensions,
            "tags": self.tags,
            "by_name": self.by_name,
        }

    def _load_header(self, data: dict[str, Any]) -> None:
        self.name = str(data["name"])
        self.group = str(data["group"])
        self.dimensions = [str(d) for d in data["dimensions"]]
        self.by_name = bool(data["by_name"])
        self.tags = {str(k): str(v) for k, v in data["tags"].items()}


class TimeWindow(_Window):
    """One group's window by time: ``period`` long, emitted every ``every``.

    Durations are nanoseconds or timedeltas; ``every`` defaults to ``period``
    (tumbling). See the module doc for when it emits and what it holds.
    """

    __slots__ = ("align", "every", "fill_period", "next_emit", "period", "points")

    def __init__(
        self,
        period: int | datetime.timedelta,
        every: int | datetime.timedelta | None = None,
        *,
        align: bool = False,
        fill_period: bool = False,
    ) -> None:
        super().__init__()
        self.period = _nanoseconds(period, "period")
        self.every = self.period if every is None else _nanoseconds(every, "every")
        if self.period <= 0:
            raise ValueError(f"period must be positive, got {self.period} ns")
        if self.every < 0:
            raise ValueError(f"every must not be negative, got {self.every} ns")
        self.align = align
        self.fill_period = fill_period
        #: The points held, oldest first.
        self.points: collections.deque[Point] = collections.deque()
        #: When the window next emits (ns); None before the first point.
        self.next_emit: int | None = None

    def _first_emit(self, now: int) -> int:
        if not self.fill_period:
            first = now + self.every
            return align_time(first, self.every) if self.align else first
        first = now + self.period
        if not self.align:
            return first
        aligned = align_time(first, self.every)
        return aligned if aligned > first else aligned + self.every

    def push(self, point: Point) -> PointBatch | None:
        """Add ``point``; return the window it completes, if any."""
        time = point.time
        next_emit = self.next_emit
        if next_emit is None:
            self._adopt(point)
            next_emit = self.next_emit = self._first_emit(time)
        points = self.points
        if self.every == 0:
            # Every point emits (after the first emit time): (t - period, t].
            points.append(point)
            if time < next_emit:
                return None
            oldest = time - self.period
            while points and points[0].time <= oldest:
                points.popleft()
            self.next_emit = time
            return self._batch(list(points), time)
        if time < next_emit:
            points.append(point)
            return None
        oldest = next_emit - self.period
        while points and points[0].time < oldest:
            points.popleft()
        batch = self._batch(list(points), next_emit)
        following = time + self.every
        self.next_emit = align_time(following, self.every) if self.align else following
        points.append(point)
        return batch

    def __len__(self) -> int:
        return len(self.points)

    def dump_state(self) -> dict[str, Any]:
        return {
            **self._dump_header(),
            "next_emit": self.next_emit,
            "points": [_dump_point(p) for p in self.points],
        }

    def load_state(self, data: dict[str, Any]) -> None:
        self._load_header(data)
        next_emit = data["next_emit"]
        self.next_emit = None if next_emit is None else int(next_emit)
        self.points.clear()
        self.points.extend(_load_point(p) for p in data["points"])


class CountWindow(_Window):
    """One group's window by count: the last ``period`` points, emitted every ``every``.

    ``every`` defaults to ``period`` (tumbling). See the module doc.
    """

    __slots__ = ("count", "every", "fill_period", "next_emit", "period", "points")

    def __init__(self, period: int, every: int | None = None, *, fill_period: bool = False) -> None:
        super().__init__()
        if isinstance(period, bool) or not isinstance(period, int) or period < 1:
            raise ValueError(f"period must be a count >= 1, got {period!r}")
        every = period if every is None else every
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a count >= 1, got {every!r}")
        self.period = period
        self.every = every
        self.fill_period = fill_period
        #: The last ``period`` points, oldest first.
        self.points: collections.deque[Point] = collections.deque(maxlen=period)
        #: Points pushed so far, and the count at which the window next emits.
        self.count = 0
        self.next_emit = period if fill_period else every

    def push(self, point: Point) -> PointBatch | None:
        """Add ``point``; return the window when it is time to emit."""
        if not self.count:
            self._adopt(point)
        self.points.append(point)
        self.count += 1
        if self.count != self.next_emit:
            return None
        self.next_emit += self.every
        return self._batch(list(self.points), point.time)

    def __len__(self) -> int:
        return len(self.points)

    def dump_state(self) -> dict[str, Any]:
        return {
            **self._dump_header(),
            "count": self.count,
            "next_emit": self.next_emit,
            "points": [_dump_point(p) for p in self.points],
        }

    def load_state(self, data: dict[str, Any]) -> None:
        self._load_header(data)
        self.count = int(data["count"])
        self.next_emit = int(data["next_emit"])
        self.points.clear()
        self.points.extend(_load_point(p) for p in data["points"])
