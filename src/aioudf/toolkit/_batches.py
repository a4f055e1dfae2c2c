"""Whole batches: :class:`PointBatch` and the :class:`BatchHandler` that receives them.

A Kapacitor batch arrives as BeginBatch, its points, then EndBatch. A
:class:`BatchHandler` receives it as one :class:`PointBatch` and answers it::

    class Top(BatchHandler):
        async def batch(self, batch: PointBatch) -> PointBatch:
            best = max(batch.points, key=lambda p: p.fieldsDouble["value"])
            return batch.with_points([best])

What ``batch()`` returns is emitted:

- a :class:`PointBatch` (or a list of points, wrapped in the input batch's
  name, group, tags and ``tmax``) as one batch when the handler provides
  BATCH; as points when it provides STREAM, each given the batch's name and
  group if it has none;
- a pandas DataFrame, converted with :meth:`PointBatch.from_pandas` against
  the input batch;
- ``None``: nothing (the handler emitted what it wanted itself).

Emitted batches are right by construction: BeginBatch carries the number of
points as ``size``, BeginBatch and EndBatch the batch's name, group, tags and
``byName``, EndBatch its ``tmax`` (Kapacitor takes the output's group and
tags from them, docs/protocol.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import ProtocolError
from ..formats._points import BatchHeader
from ..wire._messages import BeginBatch, DataMessage, EdgeType, EndBatch, Point
from . import _columnar as columnar
from ._handler import READY, Handler

if TYPE_CHECKING:
    import numpy
    import numpy.typing
    import pandas

__all__ = ["BatchHandler", "BatchResult", "PointBatch"]


class PointBatch(BatchHeader):
    """A batch of protobuf points with its header: name, group, tags, ``tmax``.

    ``tags`` are the batch's group tags (what BeginBatch and EndBatch carry);
    each point keeps its own tags. ``tmax`` is the batch's end time in
    nanoseconds (a window's end, a query's stop time); it defaults to the
    latest point's time. The points are Kapacitor's own messages, not copies.
    """

    __slots__ = ("by_name", "group", "name", "points", "tags", "tmax")

    def __init__(
        self,
        name: str,
        points: Iterable[Point] = (),
        *,
        group: str = "",
        tags: Mapping[str, str] | None = None,
        tmax: int | None = None,
        by_name: bool = False,
    ) -> None:
        self.name = name
        self.points: list[Point] = list(points)
        self.group = group
        self.tags: dict[str, str] = dict(tags or {})
        self.tmax = max((p.time for p in self.points), default=0) if tmax is None else tmax
        self.by_name = by_name

    @classmethod
    def from_messages(
        cls, begin: BeginBatch | None, points: Iterable[Point], end: EndBatch
    ) -> PointBatch:
        """The batch Kapacitor sent as ``begin``, ``points``, ``end``."""
        head = begin if begin is not None else end
        return cls(
            end.name or head.name,
            points,
            group=end.group or head.group,
            tags=end.tags or head.tags,
            tmax=end.tmax,
            by_name=end.byName or head.byName,
        )

    def with_points(self, points: Iterable[Point]) -> PointBatch:
        """A batch with this one's name, group, tags and ``tmax``, holding ``points``."""
        return PointBatch(
            self.name,
            points,
            group=self.group,
            tags=self.tags,
            tmax=self.tmax,
            by_name=self.by_name,
        )

    def end(self) -> EndBatch:
        """The EndBatch of this batch."""
        return EndBatch(
            name=self.name, group=self.group, tmax=self.tmax, tags=self.tags, byName=self.by_name
        )

    def messages(self) -> list[DataMessage]:
        """BeginBatch, the points, EndBatch: what a UDF emits for this batch."""
        return [self.begin(), *self.points, self.end()]

    def stream_points(self) -> list[Point]:
        """The points as a stream: each given the batch's name, group and dimensions
        (its group tags) where it has none."""
        dimensions = sorted(self.tags)
        for point in self.points:
            if not point.name:
                point.name = self.name
            if not point.group:
                point.group = self.group
                point.byName = self.by_name
            if not point.dimensions:
                point.dimensions.extend(dimensions)
        return self.points

    # ---- columnar ---------------------------------------------------------

    def times(self) -> numpy.typing.NDArray[numpy.int64]:
        """Point times (ns since the epoch) as a NumPy int64 array."""
        return columnar.times(self.points)

    def values(self, field: str) -> numpy.typing.NDArray[numpy.float64]:
        """A numeric field as a NumPy float64 array; NaN where a point lacks it."""
        return columnar.values(self.points, field)

    def column(self, field: str) -> numpy.typing.NDArray[Any]:
        """A field in its own type: float64, int64 or bool, object if mixed or missing."""
        return columnar.column(self.points, field)

    def to_pandas(self) -> pandas.DataFrame:
        """The points as a DataFrame indexed by time; see :func:`aioudf.toolkit.to_pandas`."""
        return columnar.to_pandas(self)

    @classmethod
    def from_pandas(
        cls,
        frame: pandas.DataFrame,
        like: PointBatch | None = None,
        *,
        name: str | None = None,
        group: str | None = None,
        tags: Mapping[str, str] | None = None,
        tmax: int | None = None,
        tag_columns: Iterable[str] | None = None,
    ) -> PointBatch:
        """A batch from a DataFrame; see :func:`aioudf.toolkit.from_pandas`."""
        parts = columnar.from_pandas(
            frame, like, name=name, group=group, tags=tags, tmax=tmax, tag_columns=tag_columns
        )
        return cls(
            parts.name,
            parts.points,
            group=parts.group,
            tags=parts.tags,
            tmax=parts.tmax,
            by_name=parts.by_name,
        )

    # ---- value behaviour --------------------------------------------------

    def __len__(self) -> int:
        return len(self.points)

    def __iter__(self) -> Iterator[Point]:
        return iter(self.points)

    def __repr__(self) -> str:
        return (
            f"PointBatch({self.name!r}, <{len(self.points)} points>, group={self.group!r}, "
            f"tags={self.tags!r}, tmax={self.tmax!r})"
        )


#: What :meth:`BatchHandler.batch` may return.
BatchResult = PointBatch | Iterable[Point] | None


class BatchHandler(Handler):
    """A handler that receives each batch whole: implement :meth:`batch`.

    Wants BATCH and provides BATCH unless ``provides`` says STREAM. The data
    methods (``begin_batch``, ``point``, ``end_batch``) are implemented here;
    override :meth:`batch` only.
    """

    wants: ClassVar[EdgeType] = EdgeType.BATCH
    provides: ClassVar[EdgeType] = EdgeType.BATCH

    _aioudf_begin: BeginBatch | None = None
    _aioudf_points: list[Point] | None = None

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.wants is not EdgeType.BATCH:
            raise TypeError(f"{cls.__qualname__} is a BatchHandler: it wants a BATCH edge")

    async def batch(self, batch: PointBatch) -> BatchResult | pandas.DataFrame:
        """Process one whole batch; return what to emit (see the module doc)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement batch()")

    async def begin_batch(self, begin: BeginBatch) -> None:
        self._aioudf_begin = begin
        self._aioudf_points = []

    async def point(self, point: Point) -> None:
        await self._collect(point)

    def _collect(self, point: Point) -> Awaitable[None]:
        points = self._aioudf_points
        if points is None:
            raise ProtocolError("a Point arrived outside a batch (no BeginBatch before it)")
        points.append(point)
        return READY

    def _aioudf_fast_point(self) -> Callable[[Point], Awaitable[None]] | None:
        # A batch's points are only collected: a plain call each, no coroutine
        # (unless a subclass does more in point()).
        return self._collect if type(self).point is BatchHandler.point else None

    async def end_batch(self, end: EndBatch) -> None:
        batch = PointBatch.from_messages(self._aioudf_begin, self._aioudf_points or (), end)
        self._aioudf_begin = None
        self._aioudf_points = None
        result = await self.batch(batch)
        await self.emit_result(batch, result)

    async def emit_result(self, batch: PointBatch, result: Any) -> None:
        """Emit what :meth:`batch` returned for ``batch``."""
        if result is None:
            return
        if not isinstance(result, PointBatch):
            if columnar.is_dataframe(result):
                result = PointBatch.from_pandas(result, batch)
            elif isinstance(result, Iterable) and not isinstance(result, str | bytes):
                result = batch.with_points(result)
            else:
                raise TypeError(
                    f"{type(self).__name__}.batch() returned a {type(result).__name__}; "
                    "return a PointBatch, a list of points, a DataFrame or None"
                )
        if self.provides is EdgeType.BATCH:
            await self.emit_batch(result)
        else:
            for point in result.stream_points():
                await self.emit(point)
