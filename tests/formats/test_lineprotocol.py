"""Line protocol in and out: every field type and every escape round-trips."""

from __future__ import annotations

import builtins
import math
import sys
from typing import Any, Literal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aioudf.formats import _lineprotocol as lineprotocol
from aioudf.formats._lineprotocol import (
    MAX_TIME,
    MIN_TIME,
    LineProtocolError,
    MissingDependency,
    format_line,
    parse_line,
    parse_lines,
)
from aioudf.formats._points import DataPoint

# Text with every character line protocol escapes, and some it does not.
_TRICKY = st.sampled_from([*" ,=\"\\'#\t", "é", "😀", "a", "Z", "0", "-", "."])
_NO_SURROGATES: list[Literal["Cs"]] = ["Cs"]
_TEXT = st.text(
    st.one_of(
        _TRICKY, st.characters(blacklist_categories=_NO_SURROGATES, blacklist_characters="\n\r\x00")
    ),
    min_size=1,
    max_size=12,
)


def _expressible(text: str, specials: str = ",= ") -> bool:
    # Line protocol cannot end a name, key or tag value in a backslash, nor
    # put one before a character that needs escaping (format_line refuses).
    return not text.endswith("\\") and not any("\\" + c in text for c in specials)


names = _TEXT.filter(lambda s: _expressible(s, ", ") and not s.startswith(("#", "\t")))
keys = _TEXT.filter(_expressible)
field_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=False),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.text(
        st.one_of(_TRICKY, st.characters(blacklist_categories=_NO_SURROGATES), st.just("\n"))
    ).filter(lambda s: "\x00" not in s),
)
points = st.builds(
    lambda name, tags, fields, time: DataPoint(name, fields, tags=tags, time=time),
    names,
    st.dictionaries(keys, keys, max_size=4),
    st.dictionaries(
        keys.filter(lambda k: not k.startswith("\t")), field_values, min_size=1, max_size=5
    ),
    st.integers(min_value=MIN_TIME, max_value=MAX_TIME),
)


@settings(max_examples=300)
@given(points)
@example(DataPoint("m", {'"': "\n", "b": 'x"\ny'}, tags={"t": '"'}, time=0))  # quotes in keys
@example(
    DataPoint(
        "my meas,x=y",
        {"f 1": 1.5, "f=2": 2, "s": 'he said "hi" \\ back', "b": True, "B": False},
        tags={"tag k=1": "v,a b=c"},
        time=123,
    )
)
def test_every_expressible_point_round_trips(point: DataPoint) -> None:
    line = format_line(point)
    (parsed,) = parse_lines(part + "\n" for part in line.split("\n"))
    assert parsed == point, line


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("m v=1.5", {"v": 1.5}),
        ("m v=1", {"v": 1.0}),
        ("m v=-1e3", {"v": -1000.0}),
        ("m v=3i", {"v": 3}),
        ("m v=-9223372036854775808i", {"v": -(2**63)}),
        ('m v="a \\"quoted\\" \\\\ string"', {"v": 'a "quoted" \\ string'}),
        ("m v=t,w=FALSE,x=True,y=f", {"v": True, "w": False, "x": True, "y": False}),
    ],
)
def test_field_types(text: str, fields: dict[str, Any]) -> None:
    point = parse_line(text + " 5")
    assert point is not None
    assert point.fields == fields
    assert [type(v) for v in point.fields.values()] == [type(v) for v in fields.values()]


def test_floats_are_written_so_they_read_back_as_floats() -> None:
    assert format_line(DataPoint("m", {"v": 3.0}, time=1)) == "m v=3.0 1"
    assert format_line(DataPoint("m", {"v": 1e300}, time=1)) == "m v=1e+300 1"


def test_tags_and_fields_are_written_sorted() -> None:
    point = DataPoint("m", {"b": 1.0, "a": 2.0}, tags={"z": "1", "y": "2"}, time=0)
    assert format_line(point) == "m,y=2,z=1 a=2.0,b=1.0 0"


def test_tags_with_empty_values_are_left_out_as_influxdb_does() -> None:
    assert format_line(DataPoint("m", {"v": 1.0}, tags={"a": "", "b": "x"}, time=0)) == (
        "m,b=x v=1.0 0"
    )


@pytest.mark.parametrize(
    ("point", "message"),
    [
        (DataPoint("m", {}, time=0), "without fields"),
        (DataPoint("m", {"v": math.nan}, time=0), "cannot carry the value nan"),
        (DataPoint("m", {"v": math.inf}, time=0), "cannot carry the value inf"),
        (DataPoint("m\\", {"v": 1.0}, time=0), "ending in a backslash"),
        (DataPoint("m", {"v": 1.0}, tags={"t": "a\\ b"}, time=0), "backslash before ' '"),
        (DataPoint("m", {"v": 1.0}, tags={"a\nb": "x"}, time=0), "newline"),
        (DataPoint("#m", {"v": 1.0}, time=0), "starting with '#'"),
        (DataPoint("", {"v": 1.0}, time=0), "without a measurement"),
        (DataPoint("m", {"v": "a\x00b"}, time=0), "NUL"),
        (DataPoint("m", {"v": 1.0}, time=2**63 - 1), "outside the range"),
    ],
)
def test_what_line_protocol_cannot_say_is_refused(point: DataPoint, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        format_line(point)


def test_a_string_field_may_span_lines() -> None:
    text = 'm s="first\nsecond" 1\nm v=2i 2\n'
    parsed = list(parse_lines(text.splitlines(keepends=True)))
    assert [p.fields for p in parsed] == [{"s": "first\nsecond"}, {"v": 2}]


def test_blank_lines_comments_and_crlf_are_fine() -> None:
    text = "# a comment\r\n\r\nm v=1i 1\r\n   # indented comment\nm v=2i 2"
    parsed = list(parse_lines(text.splitlines(keepends=True)))
    assert [(p.time, p.fields) for p in parsed] == [(1, {"v": 1}), (2, {"v": 2})]


def test_precision_scales_timestamps_in_and_out() -> None:
    point = parse_line("m v=1 1700000000", precision="s")
    assert point is not None and point.time == 1_700_000_000 * 10**9
    assert format_line(point, precision="ms") == "m v=1.0 1700000000000"
    with pytest.raises(ValueError, match="unknown precision 'fortnight'"):
        parse_line("m v=1 1", precision="fortnight")
    # In range as written, out of it once scaled: refused, as InfluxDB does.
    with pytest.raises(LineProtocolError, match="time 9300000000 at precision s is outside"):
        parse_line("m v=1 9300000000", precision="s")


def test_missing_timestamp_gets_the_default_time() -> None:
    point = parse_line("m v=1", default_time=77)
    assert point is not None and point.time == 77


def test_an_invalid_line_is_reported_with_file_and_line_after_the_good_ones() -> None:
    lines = ["m v=1i 1\n", "m v=2i 2\n", "m,host= v=3i 3\n", "m v=4i 4\n"]
    seen: list[DataPoint] = []
    with pytest.raises(LineProtocolError) as caught:
        seen.extend(parse_lines(lines, source="data.lp"))
    assert [p.time for p in seen] == [1, 2]
    assert caught.value.lineno == 3
    assert str(caught.value) == (
        "data.lp:3: invalid line protocol (failed to parse value of tag): m,host= v=3i 3"
    )


def test_invalid_lines_can_be_skipped_and_reported() -> None:
    lines = ["m v=1i 1\n", "not line protocol\n", "m v=2i 2\n"]
    errors: list[LineProtocolError] = []
    parsed = list(parse_lines(lines, source="x.lp", on_error=errors.append))
    assert [p.time for p in parsed] == [1, 2]
    assert [e.lineno for e in errors] == [2]


@pytest.mark.parametrize(
    "bad",
    [
        "m",
        "m v=",
        "m v=1 12x",
        "m v=1 1 extra",
        'm v="unterminated',
        "m v=1_0",
        "m v=9223372036854775808i",
        ",t=a v=1",
        "m,=x v=1",
        "m v=1\x00",
    ],
)
def test_malformed_lines_are_errors(bad: str) -> None:
    with pytest.raises(LineProtocolError):
        parse_line(bad)


def test_a_missing_parser_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_parser(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "line_protocol_parser":
            raise ImportError("No module named 'line_protocol_parser'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(lineprotocol, "_parser", None)
    monkeypatch.delitem(sys.modules, "line_protocol_parser", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_parser)
    with pytest.raises(MissingDependency, match=r'pip install "aioudf\[replay\]"'):
        parse_line("m v=1 1")
