"""The replay's fast path gives what the parser and formatter give, line for line.

``aioudf replay`` encodes lines of a series it has seen by hand and formats
emitted points from the message; a user must not be able to tell: the same
points reach the UDF, the same lines come out, the same lines are refused.
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aioudf.errors import LineProtocolError, ProtocolError
from aioudf.formats._lineprotocol import format_line, parse_line
from aioudf.formats._points import DataPoint
from aioudf.formats._recordings import write_stream_recording
from aioudf.replay._fastpath import LineEncoder, LineFormatter
from aioudf.replay._grouping import Grouping
from aioudf.replay._inputs import open_input
from aioudf.replay._output import Output, ReplayStats
from aioudf.wire._kapacitor import KapacitorConnection
from aioudf.wire._layout import frame_bounds
from aioudf.wire._messages import Point, Request

pytest.importorskip("line_protocol_parser")

#: Each is replayed after a first line of its series, so that it takes the fast path if any.
LINES = [
    "cpu,host=a v=1.5 10",
    "cpu,host=a v=1.5,w=-2. 20",
    "cpu,host=a v=.5,w=-.25 30",
    "cpu,host=a n=3i,v=2.5 40",
    "cpu,host=a n=-9223372036854775807i 50",
    "cpu,host=a v=1e5 60",
    "cpu,host=a v=1.5E-3 70",
    "cpu,host=a v=00.5 80",
    "cpu,host=a w=1,v=2 90",  # fields out of order
    "cpu,host=a v=1,v=2 100",  # a repeated field: the parser keeps the first
    'cpu,host=a s="x y",v=1 110',
    "cpu,host=a b=true 120",
    "cpu,host=a v=5 -0",
    "cpu,host=a v=5 0005",
    "cpu,host=a v=5 -1700000000000000000",
    "cpu,host=a v=5 9223372036854775806",
    "cpu,host=a v=5 1700000000000000000",
]

#: The parser refuses these; so must the fast path, with the same error.
INVALID = [
    "cpu,host=a v=1e-500 10",
    "cpu,host=a v=1e999 10",
    "cpu,host=a v=+1 10",
    "cpu,host=a v=1.2.3 10",
    "cpu,host=a v= 10",
    "cpu,host=a v=1,w= 10",
    "cpu,host=a v=nan 10",
    "cpu,host=a v=inf 10",
    "cpu,host=a v=1_0 10",
    "cpu,host=a v=1 99999999999999999999",
    "cpu,host=a v=1 12a",
    "cpu,host=a v=99999999999999999999i 10",
]


def _slow(line: str, grouping: Grouping, precision: str = "ns") -> Request:
    point = parse_line(line, precision=precision)
    assert point is not None
    if grouping.active:
        point = grouping.apply(point)
    request = Request()
    request.point.CopyFrom(point.to_message())
    return request


def _decode(frame: bytes) -> Request:
    # A frame is a varint length, then the Request: one whole frame.
    [(start, end)] = frame_bounds(frame)
    assert end == len(frame)
    return Request.FromString(frame[start:])


@pytest.mark.parametrize("grouping", [Grouping(), Grouping(tags=("host",), by_name=True)])
@pytest.mark.parametrize("precision", ["ns", "s"])
@pytest.mark.parametrize("line", LINES)
def test_known_series_reach_the_udf_as_parsed(
    line: str, grouping: Grouping, precision: str
) -> None:
    if precision == "s" and abs(int(line.rsplit(" ", 1)[1])) > 9 * 10**9:
        pytest.skip("outside InfluxDB's range at second precision")
    encoder = LineEncoder(precision=precision, grouping=grouping)
    encoder.line("cpu,host=a v=0.5,w=1 1", 1)
    first = encoder.line(line, 2)
    again = encoder.line(line, 3)
    assert first is not None and again is not None
    expected = _slow(line, grouping, precision)
    assert _decode(first) == expected
    assert _decode(again) == expected


@pytest.mark.parametrize("line", INVALID)
def test_known_series_with_a_bad_line_fails_as_the_parser_does(line: str) -> None:
    encoder = LineEncoder(precision="ns", grouping=Grouping(), source="in.lp")
    encoder.line("cpu,host=a v=0.5,w=1 1", 1)
    with pytest.raises(LineProtocolError) as parser_error:
        parse_line(line, source="in.lp", lineno=7)
    with pytest.raises(LineProtocolError) as fast_error:
        encoder.line(line, 7)
    assert str(fast_error.value) == str(parser_error.value)


POINTS = [
    DataPoint("cpu", {"v": 1.5, "w": -0.0}, tags={"host": "a", "cpu": "0"}, time=5),
    DataPoint("cpu", {"v": 1e-300, "a": 2.5e300}, tags={"host": "a", "cpu": "0"}, time=5),
    DataPoint("cpu", {"v": 1.0, "n": 3}, tags={"host": "a"}, time=5),
    DataPoint("cpu", {"v": 1.0}, tags={"host": "a b", "empty": ""}, time=-5),
    DataPoint("c p,u", {"a=b": 1.0}, time=1_700_000_000_123_456_789),
    DataPoint("cpu", {"v": math.nan, "w": 1.0}, time=5),
    DataPoint("cpu", {"v": math.inf}, time=5),
    DataPoint("cpu", {}, time=5),
    DataPoint("#cpu", {"v": 1.0}, time=5),
    DataPoint("cpu", {"s": 'say "hi"', "b": True}, time=5),
]


@pytest.mark.parametrize("precision", ["ns", "ms"])
@pytest.mark.parametrize("point", POINTS, ids=repr)
def test_emitted_points_are_written_as_format_line_writes_them(
    point: DataPoint, precision: str
) -> None:
    formatter = LineFormatter(precision)
    message = point.to_message()
    try:
        expected = format_line(point, precision=precision)
    except ValueError as exc:
        for _ in range(2):  # the second time from what the first kept
            with pytest.raises(ValueError, match=re.escape(str(exc))):
                formatter(message)
        return
    for _ in range(2):
        assert formatter(message) == expected


# ---- the same, on lines and points made up at random ---------------------------------

_FINITE = st.floats(allow_nan=False, allow_infinity=False)
#: Mostly values the fast path takes, in every form; now and then one it leaves.
_VALUES = st.one_of(
    st.floats(-1e9, 1e9).map(repr),
    st.floats(-1e90, 1e90).map(repr),
    _FINITE.map(repr),
    _FINITE.map(lambda v: f"{v:e}"),
    _FINITE.map(lambda v: f"{v:.3f}"),
    st.integers(-(2**63), 2**63 - 1).map(lambda v: f"{v}i"),
    st.integers(-(10**25), 10**25).map(str),
    st.sampled_from(
        ["1e5", "1E-05", "1.e5", ".5", "5.", "-.5", "00.5", "-0", "0e99", "1e-320", "1e400",
         "1e0005", "9" * 250, "0." + "0" * 250 + "1", "1" * 200 + "." + "1" * 200 + "e99",
         "nan", "inf", "+1", "1.2.3", "", ".", "-", "e5", "\u0663", "1_0", "5u", "0x1",
         '"x y"', '"a,b=c"', "t", "true", "F", "1i", "-0i", "99999999999999999999i"]
    ),
)  # fmt: skip
#: Mostly plain keys; some needing escapes (left to the parser).
_KEYS = st.sampled_from(["v", "w", "usage_idle", "x.y-z", "_", "v", "w", "a\\ b", "k\\=", "\u00e9"])
_TIMES = st.one_of(
    st.integers(0, 2 * 10**18).map(str),
    st.integers(-(10**9), 10**10).map(str),
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.sampled_from(["", "0005", "-0", "99999999999999999999", "1.5", "+5", "\u0663"]),
)
_SERIES = st.sampled_from(["cpu", "cpu,host=a", "cpu,host=a,z=1", "m,t=\u00e9", "c\\ pu,h=x\\,y"])


def _record(series: str, fields: list[tuple[str, str]], time: str) -> str:
    text = series + " " + ",".join(f"{key}={value}" for key, value in fields)
    return f"{text} {time}" if time else text


def _outcome(make: object) -> object:
    """What a call gives: its frame's decoded Request, or the text of its error."""
    try:
        frame = make()  # type: ignore[operator]
    except LineProtocolError as exc:
        return f"error: {exc}"
    return None if frame is None else _decode(frame)


@given(
    series=_SERIES,
    keys=st.lists(_KEYS, min_size=1, max_size=4, unique=True) | st.lists(_KEYS, min_size=1),
    values=st.lists(st.lists(_VALUES, min_size=4, max_size=4), min_size=3, max_size=3),
    times=st.lists(_TIMES, min_size=3, max_size=3),
    grouped=st.booleans(),
    precision=st.sampled_from(["ns", "s"]),
)
@settings(max_examples=300, deadline=None)
def test_random_lines_reach_the_udf_as_the_parser_reads_them(
    series: str,
    keys: list[str],
    values: list[list[str]],
    times: list[str],
    grouped: bool,
    precision: str,
) -> None:
    """Lines of one series and one set of keys (repeated, in any order, of
    any value), each as the fast path takes it and as the parser does."""
    grouping = Grouping(tags=("host",), by_name=True) if grouped else Grouping()
    encoder = LineEncoder(precision=precision, grouping=grouping, source="in.lp", default_time=7)
    for number, (row, time) in enumerate(zip(values, times, strict=True), start=1):
        line = _record(series, list(zip(keys, row, strict=False)), time)

        def slow(line: str = line, number: int = number) -> bytes | None:
            point = parse_line(
                line, precision=precision, default_time=7, source="in.lp", lineno=number
            )
            if point is None:
                return None
            return LineEncoder(precision=precision, grouping=grouping).point(point)

        expected = _outcome(slow)
        for _ in range(2):  # the second time as what the first taught it
            assert _outcome(lambda line=line, number=number: encoder.line(line, number)) == expected


_NAMES = st.text(alphabet="cpu ,=\\#\t\n\u00e9x", max_size=6)
#: Mostly finite doubles, the edges among them.
_FLOATS = st.one_of(
    st.floats(-1e9, 1e9),
    _FINITE,
    st.floats(),
    st.sampled_from([0.0, -0.0, 5e-324, 1.7976931348623157e308, 1e16, 1e-5, 0.1]),
)


def _mostly(plain: list[str], odd: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(plain), st.sampled_from(plain), st.sampled_from(plain), odd)


@st.composite
def _points(draw: st.DrawFn) -> tuple[Point, bytes]:
    """A Point, and its bytes with the double fields in an order of their own."""
    point = Point(
        name=draw(_mostly(["cpu", "c p,u"], _NAMES)),
        time=draw(
            st.integers(1, 2**62)
            | st.integers(-(2**63), 2**63 - 1)
            | st.sampled_from([0, 1, -1, 1_700_000_000])
        ),
        group=draw(st.sampled_from(["", "cpu\nhost=a"])),
        dimensions=draw(st.sampled_from([[], ["host"]])),
        database=draw(st.sampled_from(["", "telegraf"])),
        byName=draw(st.sampled_from([False, False, False, True])),
        tags=draw(
            st.dictionaries(
                _mostly(["host", "cpu", "a b"], _NAMES),
                _mostly(["a", "server01", ""], _NAMES),
                max_size=3,
            )
        ),
    )
    keys = st.sampled_from(["v", "w", "usage_idle", "x", "y", "a=b", "\u00e9", ""])
    doubles = draw(st.dictionaries(keys, _FLOATS, min_size=1, max_size=4))
    others = draw(st.sampled_from(["none", "none", "none", "none", "int", "string", "bool"]))
    if others == "int":
        point.fieldsInt["n"] = draw(st.integers(-(2**63), 2**63 - 1))
    elif others == "string":
        point.fieldsString["s"] = draw(_NAMES)
    elif others == "bool":
        point.fieldsBool["b"] = draw(st.booleans())
    entries = []
    for key, value in draw(st.permutations(list(doubles.items()))):
        entries.append(Point(fieldsDouble={key: value}).SerializeToString())
    return point, point.SerializeToString() + b"".join(entries)


@given(points=st.lists(_points(), min_size=1, max_size=4), precision=st.sampled_from(["ns", "ms"]))
@settings(max_examples=150, deadline=None)
def test_random_points_are_written_from_their_bytes_as_format_line_writes_them(
    points: list[tuple[Point, bytes]], precision: str
) -> None:
    formatter = LineFormatter(precision)
    for _, data in points * 2:  # the second time from what the first taught it
        point = Point.FromString(data)
        try:
            expected = format_line(DataPoint.from_message(point), precision=precision)
        except ValueError as exc:
            with pytest.raises(ValueError, match=re.escape(str(exc))):
                formatter.raw(data)
        else:
            assert formatter.raw(data) == expected


def test_times_are_read_from_the_bytes_whatever_came_before() -> None:
    formatter = LineFormatter("ns")
    rest = Point(name="cpu", fieldsDouble={"v": 1.0}).SerializeToString()
    # 128 is 0x80 0x01: a varint that starts as a longer one would
    for stamp in (128, 1, 2**62, -1, 128):
        data = Point(time=stamp).SerializeToString() + rest
        assert formatter.raw(data) == f"cpu v=1.0 {stamp}"
    # time 0 written out (proto3 leaves it out; a Point may still say it)
    assert formatter.raw(b"\x08\x00" + rest) == "cpu v=1.0 0"
    assert formatter.raw(rest) == "cpu v=1.0 0"


def test_bytes_that_are_not_a_point_are_the_udfs_fault() -> None:
    formatter = LineFormatter("ns")
    good = Point(name="cpu", time=5, fieldsDouble={"v": 1.0}).SerializeToString()
    assert formatter.raw(good) == "cpu v=1.0 5"
    for bad in (good[:-3], b"\x08\x05\x12\xff", b"\xff\xff\xff"):
        with pytest.raises(ProtocolError, match="the UDF sent a point that cannot be decoded"):
            formatter.raw(bad)


def test_a_stream_recording_reaches_the_udf_as_its_points(tmp_path: Path) -> None:
    """Its lines go through the line encoder, each with its database and retention policy."""
    points = [
        DataPoint(
            "cpu",
            {"v": i / 7, "n": i},
            tags={"host": f"h{i % 3}"},
            time=10**18 + i,
            database=f"db{i % 2}",
            retention_policy="autogen" if i % 5 else "",
        )
        for i in range(60)
    ]
    points.append(DataPoint("m", {"s": 'say "hi"\nthere'}, time=5, database="db0"))
    path = tmp_path / "in.srpl"
    write_stream_recording(path, points)
    grouping = Grouping(tags=("host",))
    frames = open_input(str(path)).frames(grouping, 7)
    assert frames is not None
    sent = KapacitorConnection()
    sent.receive_data(b"".join(data for data, _ in frames))
    got = sent.next_points()
    read = [point for point in open_input(str(path)) if isinstance(point, DataPoint)]
    assert [Point.FromString(data) for data in got] == [
        grouping.apply(point).to_message() for point in read
    ]
    assert len(got) == len(points)


def test_lines_before_a_point_that_is_not_one_are_written() -> None:
    stream = io.StringIO()
    output = Output(stream, ReplayStats(), "line", "ns")
    good = [Point(name="cpu", time=t, fieldsDouble={"v": 1.0}).SerializeToString() for t in (1, 2)]
    unwritable = Point(name="cpu", time=3, fieldsDouble={"v": math.nan}).SerializeToString()
    with pytest.raises(ProtocolError, match="cannot be decoded"):
        output.points([*good, unwritable, b"\x08\x05\x12\xff"])
    output.flush()
    assert stream.getvalue() == "cpu v=1.0 1\ncpu v=1.0 2\n"
    assert output.stats.points_out == 3
    assert output.stats.unwritable == {"line protocol cannot carry the value nan of field 'v'": 1}
