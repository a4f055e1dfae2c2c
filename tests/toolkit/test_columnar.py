"""NumPy arrays and pandas DataFrames from points and back, for every field type."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from aioudf import Point, PointBatch
from aioudf.formats._fields import fields_of
from aioudf.formats._points import DataPoint

T0 = 1_700_000_000 * 10**9 + 123  # nanoseconds must survive


def mixed() -> PointBatch:
    """Every field type; some points lack some fields; a per-point tag."""
    points = [
        DataPoint(
            "m",
            {"f": 1.5, "i": 3, "s": "x", "b": True, "sparse": 2},
            tags={"g": "1", "cpu": "c0"},
            time=T0,
        ),
        DataPoint(
            "m",
            {"f": -0.25, "i": -7, "s": "", "b": False},
            tags={"g": "1", "cpu": "c1"},
            time=T0 + 1,
        ),
        DataPoint("m", {"i": 2**62, "s": "z", "b": True, "f": 1e300}, tags={"g": "1"}, time=T0 + 2),
    ]
    return PointBatch(
        "m", [p.to_message() for p in points], group="g=1", tags={"g": "1"}, tmax=T0 + 10
    )


def test_values_are_float_arrays_with_nan_where_missing() -> None:
    batch = mixed()
    np.testing.assert_array_equal(batch.values("f"), [1.5, -0.25, 1e300])
    np.testing.assert_array_equal(batch.values("i"), [3.0, -7.0, float(2**62)])
    np.testing.assert_array_equal(batch.values("b"), [1.0, 0.0, 1.0])
    sparse = batch.values("sparse")
    assert sparse.dtype == np.float64 and sparse[0] == 2.0 and np.isnan(sparse[1:]).all()
    assert batch.times().dtype == np.int64
    np.testing.assert_array_equal(batch.times(), [T0, T0 + 1, T0 + 2])


def test_columns_keep_their_type() -> None:
    batch = mixed()
    assert batch.column("i").dtype == np.int64 and batch.column("i")[2] == 2**62
    assert batch.column("b").dtype == np.bool_
    assert list(batch.column("s")) == ["x", "", "z"]
    assert list(batch.column("sparse")) == [2, None, None]
    assert batch.column("nothing").shape == (3,)


def test_an_empty_batch_gives_empty_arrays_and_frame() -> None:
    empty = PointBatch("m", [], group="", tmax=5)
    assert empty.values("f").shape == (0,) and empty.times().shape == (0,)
    frame = empty.to_pandas()
    assert frame.empty and isinstance(frame.index, pd.DatetimeIndex)
    back = PointBatch.from_pandas(frame)
    assert (back.name, back.tmax, back.points) == ("m", 5, [])


def test_to_pandas_types_every_field_and_keeps_tags() -> None:
    frame = mixed().to_pandas()
    index = pd.DatetimeIndex(frame.index)
    assert index.name == "time" and str(index.tz) == "UTC"
    assert [int(t) for t in index.as_unit("ns").asi8] == [T0, T0 + 1, T0 + 2]
    assert frame["f"].dtype == np.float64
    assert frame["i"].dtype == np.int64 and frame["i"].iloc[2] == 2**62
    assert frame["b"].dtype == np.bool_
    assert frame["s"].tolist() == ["x", "", "z"]
    assert str(frame["sparse"].dtype) == "Int64" and frame["sparse"].isna().tolist() == [
        False,
        True,
        True,
    ]
    # The per-point tag is a column; the group's tag is the batch's.
    assert frame["cpu"].tolist() == ["c0", "c1", None]
    assert "g" not in frame.columns
    assert frame.attrs["aioudf"]["tags"] == {"g": "1"}


def test_from_pandas_gives_back_the_same_points() -> None:
    batch = mixed()
    back = PointBatch.from_pandas(batch.to_pandas())
    assert (back.name, back.group, back.tags, back.tmax) == ("m", "g=1", {"g": "1"}, T0 + 10)
    for got, sent in zip(back.points, batch.points, strict=True):
        assert got.time == sent.time
        assert dict(got.tags) == dict(sent.tags)
        assert fields_of(got) == fields_of(sent)
        # ... and each field in the map of its type.
        assert dict(got.fieldsInt) == dict(sent.fieldsInt)
        assert dict(got.fieldsBool) == dict(sent.fieldsBool)


def test_from_pandas_reads_a_users_frame_with_missing_values() -> None:
    index = pd.date_range("2023-11-14T22:13:20Z", periods=3, freq="1s", name="time")
    frame = pd.DataFrame(
        {
            "f": [1.0, math.nan, 3.0],
            "n": pd.array([1, None, 3], dtype="Int64"),
            "ok": pd.array([True, None, False], dtype="boolean"),
            "s": ["a", None, "c"],
            "host": ["h1", "h2", "h3"],
        },
        index=index,
    )
    like = PointBatch("cpu", [], group="dc=x", tags={"dc": "x"}, tmax=99)
    batch = PointBatch.from_pandas(frame, like, tag_columns=["host"])
    assert (batch.name, batch.group, batch.tmax) == ("cpu", "dc=x", 99)
    middle = batch.points[1]
    assert fields_of(middle) == {} and dict(middle.tags) == {"dc": "x", "host": "h2"}
    assert fields_of(batch.points[0]) == {"f": 1.0, "n": 1, "ok": True, "s": "a"}
    assert batch.points[0].time == 1_700_000_000 * 10**9


def test_from_pandas_needs_a_time_index_and_a_name() -> None:
    with pytest.raises(TypeError, match="indexed by time"):
        PointBatch.from_pandas(pd.DataFrame({"x": [1.0]}), name="m")
    frame = pd.DataFrame({"x": [1.0]}, index=pd.DatetimeIndex([0], name="time"))
    with pytest.raises(ValueError, match="needs the batch's name"):
        PointBatch.from_pandas(frame)


def test_a_field_named_like_a_tag_is_refused() -> None:
    point = Point(time=1, tags={"x": "t"}, fieldsDouble={"x": 1.0})
    with pytest.raises(ValueError, match="'x' is both a field and a tag"):
        PointBatch("m", [point]).to_pandas()


@pytest.mark.parametrize(
    ("module", "call", "extra"),
    [
        ("numpy", "PointBatch('m').values('f')", "aioudf[numpy]"),
        ("pandas", "PointBatch('m').to_pandas()", "aioudf[pandas]"),
    ],
)
def test_a_missing_extra_is_named_in_one_line(module: str, call: str, extra: str) -> None:
    # A fresh interpreter in which the module cannot be imported.
    code = (
        f"import sys; sys.modules[{module!r}] = None\n"
        "from aioudf import PointBatch, MissingExtra\n"
        f"try:\n    {call}\nexcept MissingExtra as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [
        f"this needs {'NumPy' if module == 'numpy' else 'pandas'}, which is not installed: "
        f"pip install '{extra}'"
    ]
