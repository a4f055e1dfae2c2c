"""Points as columns: NumPy arrays and pandas DataFrames (optional extras).

NumPy comes with ``pip install 'aioudf[numpy]'``, pandas with
``'aioudf[pandas]'``; without them, these functions raise
:class:`MissingExtra`, whose one-line message names the extra to install.

DataFrames (:func:`to_pandas`, :func:`from_pandas`):

- indexed by time: a ``DatetimeIndex`` in UTC named ``time``, nanoseconds kept;
- one column per field, in its InfluxDB type: float64 for floats, int64 for
  integers, bool for booleans, object (Python str) for strings. A field some
  points lack becomes a nullable column (``Int64``, ``boolean``; NaN for
  floats, None for strings); a field whose type differs between points is an
  object column of Python values;
- one column per point tag that is not one of the batch's group tags
  (string values); the batch's name, group, tags and ``tmax`` are in
  ``frame.attrs["aioudf"]``.

Back from a DataFrame, each column is a field unless it is a tag column; a
missing value (NaN, None, ``pd.NA``) leaves the field out of that point.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from ..errors import MissingExtra
from ..wire._messages import Point

if TYPE_CHECKING:
    import numpy
    import numpy.typing
    import pandas


__all__ = [
    "BatchParts",
    "ColumnarBatch",
    "MissingExtra",
    "column",
    "from_pandas",
    "is_dataframe",
    "require_numpy",
    "require_pandas",
    "times",
    "to_pandas",
    "values",
]


def require_numpy() -> Any:
    """The ``numpy`` module, or :class:`MissingExtra` naming the extra to install."""
    try:
        import numpy
    except ImportError:
        raise MissingExtra(
            "this needs NumPy, which is not installed: pip install 'aioudf[numpy]'"
        ) from None
    return numpy


def require_pandas() -> Any:
    """The ``pandas`` module, or :class:`MissingExtra` naming the extra to install."""
    try:
        import pandas
    except ImportError:
        raise MissingExtra(
            "this needs pandas, which is not installed: pip install 'aioudf[pandas]'"
        ) from None
    return pandas


def is_dataframe(value: object) -> bool:
    """True for a pandas DataFrame (without importing pandas)."""
    return type(value).__name__ == "DataFrame" and type(value).__module__.startswith("pandas")


def times(points: Sequence[Point]) -> numpy.typing.NDArray[numpy.int64]:
    """The points' times (ns since the epoch) as an int64 array."""
    np = require_numpy()
    result: numpy.typing.NDArray[numpy.int64] = np.fromiter(
        (p.time for p in points), dtype=np.int64, count=len(points)
    )
    return result


def _number(point: Point, field: str) -> float:
    value = point.fieldsDouble.get(field)
    if value is not None:
        return value
    integer = point.fieldsInt.get(field)
    if integer is not None:
        return float(integer)
    boolean = point.fieldsBool.get(field)
    return math.nan if boolean is None else float(boolean)


def values(points: Sequence[Point], field: str) -> numpy.typing.NDArray[numpy.float64]:
    """A numeric field (float, int or bool) as a float64 array; NaN where it is missing."""
    np = require_numpy()
    result: numpy.typing.NDArray[numpy.float64] = np.fromiter(
        (_number(p, field) for p in points), dtype=np.float64, count=len(points)
    )
    return result


def _rows(points: Sequence[Point]) -> list[dict[str, Any]]:
    # Reading a protobuf map is slow (a wrapper per access, a call per key):
    # each point's maps are read once, into one dict of Python values.
    rows = []
    for point in points:
        row: dict[str, Any] = dict(point.fieldsDouble)
        for fields in (point.fieldsInt, point.fieldsString, point.fieldsBool):
            if fields:
                row.update(fields)
        rows.append(row)
    return rows


def _column_values(rows: Sequence[Mapping[str, Any]], field: str) -> tuple[list[Any], set[type]]:
    found = [row.get(field) for row in rows]
    kinds = {type(v) for v in found if v is not None}
    return found, kinds


def column(points: Sequence[Point], field: str) -> numpy.typing.NDArray[Any]:
    """A field in its own type: float64 (NaN if missing), int64 or bool if every
    point has it, object otherwise (missing values are None)."""
    np = require_numpy()
    found, kinds = _column_values(_rows(points), field)
    missing = any(v is None for v in found)
    result: numpy.typing.NDArray[Any]
    if kinds == {float}:
        result = np.array([math.nan if v is None else v for v in found], dtype=np.float64)
    elif not missing and kinds == {int}:
        result = np.array(found, dtype=np.int64)
    elif not missing and kinds == {bool}:
        result = np.array(found, dtype=bool)
    else:
        result = np.array(found, dtype=object)
    return result


class ColumnarBatch(Protocol):
    """What :func:`to_pandas` and :func:`from_pandas` read of a batch (a PointBatch has it).

    A protocol rather than :class:`~aioudf.PointBatch` itself, which imports
    this module: the toolkit's modules annotate with what they read, and
    import each other one way.
    """

    @property
    def name(self) -> str: ...
    @property
    def group(self) -> str: ...
    @property
    def tags(self) -> Mapping[str, str]: ...
    @property
    def tmax(self) -> int: ...
    @property
    def by_name(self) -> bool: ...
    @property
    def points(self) -> Sequence[Point]: ...


def to_pandas(batch: ColumnarBatch) -> pandas.DataFrame:
    """The batch's points as a DataFrame indexed by time (see the module doc)."""
    pd = require_pandas()
    points = batch.points
    index = pd.DatetimeIndex(pd.to_datetime(times(points), unit="ns", utc=True), name="time")
    data: dict[str, Any] = {}
    rows = _rows(points)
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    for field in names:
        found, kinds = _column_values(rows, field)
        missing = any(v is None for v in found)
        if kinds == {float}:
            data[field] = pd.Series(found, index=index, dtype="float64")
        elif kinds == {int}:
            data[field] = pd.Series(found, index=index, dtype="Int64" if missing else "int64")
        elif kinds == {bool}:
            data[field] = pd.Series(found, index=index, dtype="boolean" if missing else "bool")
        else:
            data[field] = pd.Series(found, index=index, dtype=object)
    tag_columns = []
    for point in points:
        for tag in point.tags:
            if tag not in batch.tags and tag not in tag_columns:
                tag_columns.append(tag)
    for tag in tag_columns:
        if tag in data:
            raise ValueError(f"{tag!r} is both a field and a tag: rename one before to_pandas()")
        data[tag] = pd.Series([p.tags.get(tag) for p in points], index=index, dtype=object)
    frame: pandas.DataFrame = pd.DataFrame(data, index=index)
    frame.attrs["aioudf"] = {
        "name": batch.name,
        "group": batch.group,
        "tags": dict(batch.tags),
        "tmax": batch.tmax,
        "by_name": batch.by_name,
        "tag_columns": tag_columns,
    }
    return frame


def _time_index(pd: Any, frame: pandas.DataFrame) -> list[int]:
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex):
        raise TypeError(
            f"the DataFrame must be indexed by time (a DatetimeIndex), not {type(index).__name__}"
        )
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    return [int(t) for t in index.as_unit("ns").asi8]


def _set_field(point: Point, field: str, value: Any) -> None:
    # NumPy scalars first: np.bool_ is no bool, np.int64 no int.
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, bool):
        point.fieldsBool[field] = value
    elif isinstance(value, int):
        point.fieldsInt[field] = value
    elif isinstance(value, float):
        if not math.isnan(value):
            point.fieldsDouble[field] = value
    elif isinstance(value, str):
        point.fieldsString[field] = value
    else:
        raise TypeError(
            f"column {field!r} holds a {type(value).__name__}; fields are float, int, str or bool"
        )


class BatchParts(NamedTuple):
    """What a :class:`~aioudf.PointBatch` is made of, read from a DataFrame."""

    name: str
    points: list[Point]
    group: str
    tags: dict[str, str]
    tmax: int | None
    by_name: bool


def from_pandas(
    frame: pandas.DataFrame,
    like: ColumnarBatch | None = None,
    *,
    name: str | None = None,
    group: str | None = None,
    tags: Mapping[str, str] | None = None,
    tmax: int | None = None,
    tag_columns: Iterable[str] | None = None,
) -> BatchParts:
    """The parts of a :class:`~aioudf.PointBatch` from a DataFrame indexed by time.

    :meth:`PointBatch.from_pandas <aioudf.PointBatch.from_pandas>` builds the
    batch from them (this module sits below the batch type and never builds one).

    The header (name, group, tags, ``tmax``) comes from the arguments, else
    from ``like`` (usually the batch the frame was made from), else from
    ``frame.attrs["aioudf"]`` when a pandas operation kept it. Tag columns
    are ``tag_columns``, else those :func:`to_pandas` made. Every point gets
    the batch's group tags and its tag columns' values.
    """
    pd = require_pandas()
    saved: dict[str, Any] = dict(frame.attrs.get("aioudf") or {})
    if like is not None:
        saved.update(
            name=like.name, group=like.group, tags=like.tags, tmax=like.tmax, by_name=like.by_name
        )
    name = name if name is not None else saved.get("name")
    if name is None:
        raise ValueError("from_pandas() needs the batch's name: pass name= or like=")
    group = group if group is not None else saved.get("group", "")
    batch_tags = dict(tags if tags is not None else saved.get("tags") or {})
    tag_set = set(tag_columns if tag_columns is not None else saved.get("tag_columns") or ())
    stamps = _time_index(pd, frame)
    columns = [str(c) for c in frame.columns]
    points = []
    rows = frame.itertuples(index=False, name=None)
    for stamp, row in zip(stamps, rows, strict=True):
        point = Point(time=stamp, group=group or "", tags=batch_tags)
        for key, value in zip(columns, row, strict=True):
            if value is None or value is pd.NA or (isinstance(value, float) and value != value):
                continue
            if key in tag_set:
                point.tags[key] = str(value)
            else:
                _set_field(point, key, value)
        points.append(point)
    if tmax is None:
        tmax = saved.get("tmax")
    return BatchParts(
        name, points, group or "", batch_tags, tmax, bool(saved.get("by_name", False))
    )
