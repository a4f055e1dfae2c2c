"""Points and batches as values: construction, Kapacitor's group keys, equality, repr, time."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aioudf import Point
from aioudf.formats._fields import format_time, group_key, parse_time, to_nanoseconds
from aioudf.formats._points import Batch, DataPoint, make_point

TAGS = {"host": "server01", "cpu": "cpu-total", "dc": "eu"}


# ---- group keys, as Kapacitor computes them (models.ToGroupID) ----------------------


def test_no_dimensions_is_the_empty_group() -> None:
    assert DataPoint("cpu", {"v": 1.0}, tags=TAGS).group == ""


def test_dimensions_are_sorted_name_value_pairs() -> None:
    point = DataPoint("cpu", {"v": 1.0}, tags=TAGS, group_by=["host", "cpu"])
    assert point.group == "cpu=cpu-total,host=server01"
    assert point.dimensions == ("cpu", "host")


def test_by_name_prefixes_the_measurement_and_a_newline() -> None:
    point = DataPoint("cpu", {"v": 1.0}, tags=TAGS, group_by=["host"], by_name=True)
    assert point.group == "cpu\nhost=server01"


def test_by_name_without_dimensions_is_the_measurement_name() -> None:
    assert DataPoint("cpu", {"v": 1.0}, tags=TAGS, by_name=True).group == "cpu"


def test_a_missing_tag_groups_as_empty() -> None:
    assert group_key({"host": "a"}, ["rack", "host"]) == "host=a,rack="


def test_make_point_builds_the_protobuf_kapacitor_sends() -> None:
    point = make_point(
        "cpu",
        {"idle": 97.5, "n": 3, "up": True, "state": "ok"},
        tags=TAGS,
        time=42,
        group_by=["host"],
        database="db",
        retention_policy="rp",
    )
    assert isinstance(point, Point)
    assert point.group == "host=server01" and list(point.dimensions) == ["host"]
    assert dict(point.fieldsDouble) == {"idle": 97.5}
    assert dict(point.fieldsInt) == {"n": 3}
    assert dict(point.fieldsBool) == {"up": True}
    assert dict(point.fieldsString) == {"state": "ok"}
    assert (point.database, point.retentionPolicy, point.time) == ("db", "rp", 42)


# ---- values --------------------------------------------------------------------------


def test_to_and_from_message_round_trip() -> None:
    point = DataPoint(
        "cpu",
        {"idle": 97.5, "n": -3, "up": False, "s": "x"},
        tags=TAGS,
        time=7,
        group_by=["dc", "host"],
        by_name=True,
        database="db",
        retention_policy="rp",
    )
    assert DataPoint.from_message(point.to_message()) == point


def test_a_datapoint_equals_the_protobuf_point_it_describes() -> None:
    assert DataPoint("cpu", {"v": 1.5}, time=3) == make_point("cpu", {"v": 1.5}, time=3)
    assert DataPoint("cpu", {"v": 1.5}, time=3) != make_point("cpu", {"v": 1.5}, time=4)


def test_field_types_matter_as_they_do_to_influxdb() -> None:
    assert DataPoint("m", {"v": 3}) != DataPoint("m", {"v": 3.0})
    assert DataPoint("m", {"v": True}) != DataPoint("m", {"v": 1})
    assert DataPoint("m", {"v": 3}) == DataPoint("m", {"v": 3})


def test_approx_field_values_compare_by_value() -> None:
    assert DataPoint("m", {"avg": 0.1 + 0.2}) == DataPoint("m", {"avg": pytest.approx(0.3)})
    assert DataPoint("m", {"avg": 0.31}) != DataPoint("m", {"avg": pytest.approx(0.3)})


def test_every_attribute_takes_part_in_equality() -> None:
    base = DataPoint("cpu", {"v": 1.0}, tags=TAGS, time=1, group_by=["host"])
    for changes in (
        {"name": "mem"},
        {"fields": {"v": 2.0}},
        {"tags": {**TAGS, "host": "b"}},
        {"time": 2},
        {"group_by": ["dc"]},
        {"by_name": True},
        {"group": "custom"},
        {"database": "db"},
        {"retention_policy": "rp"},
    ):
        assert base.replace(**changes) != base, changes
    assert base.replace() == base


def test_repr_is_the_constructor_call() -> None:
    point = DataPoint("cpu", {"v": 1.5, "n": 2}, tags={"host": "a"}, time=9, group_by=["host"])
    assert repr(point) == (
        "DataPoint('cpu', {'v': 1.5, 'n': 2}, tags={'host': 'a'}, time=9, group_by=('host',))"
    )
    assert eval(repr(point)) == point


def test_repr_shows_a_group_set_by_hand() -> None:
    point = DataPoint("cpu", {"v": 1.0}, group="odd")
    assert "group='odd'" in repr(point)
    assert eval(repr(point)) == point


def test_str_is_line_protocol() -> None:
    point = DataPoint("cpu", {"v": 1.5, "n": 2}, tags={"host": "a b"}, time=9)
    assert str(point) == "cpu,host=a\\ b n=2i,v=1.5 9"


def test_bad_field_values_are_refused_with_the_field_name() -> None:
    with pytest.raises(TypeError, match="field 'v' has a value of type NoneType"):
        DataPoint("cpu", {"v": None})
    with pytest.raises(ValueError, match="does not fit in 64 bits"):
        DataPoint("cpu", {"v": 2**63})


def test_replace_recomputes_the_group_from_new_tags() -> None:
    point = DataPoint("cpu", {"v": 1.0}, tags={"host": "a"}, group_by=["host"])
    assert point.replace(tags={"host": "b"}).group == "host=b"


# ---- batches -------------------------------------------------------------------------


def test_a_batch_group_defaults_to_all_its_tags_like_a_query_group_by() -> None:
    batch = Batch("cpu", [DataPoint("cpu", {"v": 1.0}, time=5)], tags={"count": "1", "a": "x"})
    assert batch.group == "a=x,count=1"
    assert batch.tmax == 5


def test_batch_points_carry_the_batch_name_and_group() -> None:
    batch = Batch("cpu", [DataPoint("", {"v": 1.0}, time=1)], tags={"count": "1"})
    assert batch.points[0].name == "cpu" and batch.points[0].group == "count=1"


def test_batch_messages_are_those_kapacitor_sends() -> None:
    batch = Batch(
        "cpu",
        [DataPoint("cpu", {"v": float(i)}, tags={"count": "1"}, time=i) for i in range(3)],
        tags={"count": "1"},
        tmax=10,
    )
    begin, points, end = batch.begin(), batch.point_messages(), batch.end()
    assert (begin.name, begin.group, dict(begin.tags), begin.size) == (
        "cpu",
        "count=1",
        {"count": "1"},
        3,
    )
    # Points inside a batch carry time, group, tags and fields only.
    assert [(p.name, p.group, p.time) for p in points] == [("", "count=1", i) for i in range(3)]
    assert (end.name, end.group, end.tmax) == ("cpu", "count=1", 10)
    assert Batch.from_messages(begin, points, end) == batch


def test_batch_equality_and_repr() -> None:
    batch = Batch("cpu", [DataPoint("cpu", {"v": 1.0}, time=1)], tags={"count": "1"})
    assert eval(repr(batch)) == batch
    assert batch != Batch("cpu", [DataPoint("cpu", {"v": 2.0}, time=1)], tags={"count": "1"})


# ---- time ---------------------------------------------------------------------------


def test_datetimes_become_nanoseconds_naive_ones_as_utc() -> None:
    aware = datetime.datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=datetime.timezone.utc)
    assert to_nanoseconds(aware) == 1_700_000_000_123_456_000
    assert to_nanoseconds(aware.replace(tzinfo=None)) == 1_700_000_000_123_456_000
    assert DataPoint("m", {"v": 1.0}, time=aware).time == 1_700_000_000_123_456_000


def test_format_time_is_gos_rfc3339nano() -> None:
    assert format_time(1_700_000_009_980_000_000) == "2023-11-14T22:13:29.98Z"
    assert format_time(1_700_000_010_000_000_000) == "2023-11-14T22:13:30Z"
    assert format_time(1) == "1970-01-01T00:00:00.000000001Z"


def test_parse_time_keeps_nanoseconds_and_offsets() -> None:
    assert parse_time("2023-11-14T22:13:29.98Z") == 1_700_000_009_980_000_000
    assert parse_time("2023-11-14T23:13:29.000000001+01:00") == 1_700_000_009_000_000_001
    with pytest.raises(ValueError, match="not an RFC 3339 time"):
        parse_time("2023-13-14T22:13:29Z")
    with pytest.raises(ValueError, match="not an RFC 3339 time"):
        parse_time("yesterday")


@given(st.integers(min_value=-(10**18), max_value=2**63 - 1))
def test_time_text_round_trips(nanoseconds: int) -> None:
    assert parse_time(format_time(nanoseconds)) == nanoseconds
