"""aioudf.wire._layout: the varint, the data tags, frame headers and the Point scan.

Checked against protobuf's own encoding, so a wrong table or a wrong field
number fails here rather than as garbled frames on a connection.
"""

from __future__ import annotations

import pytest

from aioudf._pb import udf_pb2 as pb
from aioudf.wire._frames import FrameDecoder
from aioudf.wire._layout import (
    DATA_TAGS,
    TAG_KINDS,
    UINT64_MAX,
    decode_uvarint,
    encode_data_frame,
    encode_frame,
    encode_uvarint,
    encode_varint,
    frame_bounds,
    point_start,
    read_uvarint,
    scan_points,
)

# Values across every boundary of the one- and two-byte forms and the 64 bits.
VALUES = [0, 1, 127, 128, 300, 16383, 16384, 2**21, 2**35 - 1, 2**63, UINT64_MAX]


def protobuf_uvarint(value: int) -> bytes:
    """The varint protobuf writes for ``value`` (an int64 field holds all 64 bits)."""
    signed = value - 2**64 if value >= 2**63 else value
    return pb.Point(time=signed).SerializeToString()[1:] or b"\x00"  # after the tag


@pytest.mark.parametrize("value", VALUES)
def test_a_uvarint_reads_back_as_protobuf_writes_it(value: int) -> None:
    written = protobuf_uvarint(value)
    assert encode_uvarint(value) == written
    assert decode_uvarint(b"x" + written + b"rest", 1) == (value, len(written))
    assert read_uvarint(written) == (value, len(written))


@pytest.mark.parametrize("value", [-1, -(2**63), 5, 2**63 - 1])
def test_an_int64_is_written_as_protobuf_writes_it(value: int) -> None:
    assert b"\x08" + encode_varint(value) == pb.Point(time=value).SerializeToString()


def test_a_cut_or_overlong_varint_says_so() -> None:
    # Cut: the value so far is a lower bound of what the varint announces.
    assert decode_uvarint(encode_uvarint(2**35 - 1)[:2]) == (16383, 0)
    assert decode_uvarint(b"\x80" * 11) == (0, -1)
    with pytest.raises(ValueError, match="cut short"):
        read_uvarint(b"\xff")
    with pytest.raises(ValueError, match="longer than 10 bytes"):
        read_uvarint(b"\x80" * 11)
    with pytest.raises(ValueError, match="more than 64 bits"):
        read_uvarint(b"\xff" * 9 + b"\x7f")


@pytest.mark.parametrize("name_length", [0, 100, 130, 16_500])
def test_data_frames_are_the_frames_of_the_wrappers(name_length: int) -> None:
    # Point lengths on both sides of the one- and two-byte length forms.
    name = "n" * name_length
    messages: list[tuple[str, pb.BeginBatch | pb.Point | pb.EndBatch]] = [
        ("begin", pb.BeginBatch(name=name, group="g")),
        ("point", pb.Point(name=name, time=1, fieldsDouble={"v": 0.5})),
        ("end", pb.EndBatch(name=name, tmax=2)),
    ]
    for field, message in messages:
        response, request = pb.Response(), pb.Request()
        getattr(response, field).CopyFrom(message)
        getattr(request, field).CopyFrom(message)
        wrapped = response.SerializeToString()
        assert encode_data_frame(message) == encode_frame(wrapped)
        assert request.SerializeToString() == wrapped
        assert TAG_KINDS[wrapped[:2]] == field
        assert DATA_TAGS[type(message)] == wrapped[:2]


def test_only_data_messages_are_framed_as_data() -> None:
    with pytest.raises(TypeError, match="not InfoResponse"):
        encode_data_frame(pb.InfoResponse())  # type: ignore[arg-type]


def test_point_start_finds_a_lone_point_only() -> None:
    point = pb.Point(name="cpu" * 50, time=7)  # a two-byte length
    body = pb.Response(point=point).SerializeToString()
    start = point_start(body)
    assert body[start:] == point.SerializeToString()
    assert point_start(memoryview(body)) == start
    assert point_start(body[:-1]) == 0  # cut
    assert point_start(body + b"\x08\x01") == 0  # something after the Point
    assert point_start(pb.Response(begin=pb.BeginBatch()).SerializeToString()) == 0
    assert point_start(b"\x8a\x01\x00") == 3  # an empty Point is a Point


def test_scan_points_takes_the_run_of_points_and_stops_at_anything_else() -> None:
    points = [pb.Point(name="cpu", time=i, fieldsInt={"v": i}) for i in range(5)]
    frames = [encode_data_frame(p) for p in points]
    begin = encode_data_frame(pb.BeginBatch(name="cpu"))
    buf = b"".join(frames[:3]) + begin + b"".join(frames[3:])
    out: list[bytes] = []
    pos = scan_points(buf, memoryview(buf), 0, 10, bytes, out)
    assert out == [p.SerializeToString() for p in points[:3]]
    assert buf[pos:].startswith(begin)
    # The limit is kept; a frame cut by the end of the bytes is left.
    out = []
    tail = b"".join(frames[3:])
    pos = scan_points(tail[:-1], memoryview(tail[:-1]), 0, 10, bytes, out)
    assert (len(out), pos) == (1, len(frames[3]))
    out = []
    assert scan_points(tail, memoryview(tail), 0, 1, bytes, out) == len(frames[3])
    # A header of three bytes is the slow path's.
    big = encode_data_frame(pb.Point(name="n" * 20_000))
    assert scan_points(big, memoryview(big), 0, 10, bytes, out) == 0


def test_frame_bounds_splits_whole_frames() -> None:
    stream = encode_frame(b"a") + encode_frame(b"b" * 300) + encode_frame(b"cut")[:-1]
    bounds = list(frame_bounds(stream))
    assert [stream[start:end] for start, end in bounds] == [b"a", b"b" * 300]
    with pytest.raises(ValueError, match="at byte 0 is not a uvarint"):
        list(frame_bounds(b"\xff" * 11))


def test_the_decoder_takes_points_in_place_and_counts_them() -> None:
    points = [pb.Point(name="cpu", time=i) for i in range(4)]
    data = b"".join(map(encode_data_frame, points)) + encode_frame(b"other")
    decoder = FrameDecoder()
    decoder.feed(data)
    out: list[bytes] = []
    assert decoder.take_points(3, bytes, out) == 3
    assert decoder.take_points(9, bytes, out) == 1
    assert out == [p.SerializeToString() for p in points]
    assert decoder.frames_decoded == 4
    assert bytes(decoder.next_frame() or b"") == b"other"
    # Where only next_frame() may be used, nothing is taken.
    small = FrameDecoder(max_frame_size=100)
    small.feed(data)
    assert small.take_points(9, bytes, out) == 0
    viewed = FrameDecoder()
    viewed.feed(memoryview(data))
    assert viewed.take_points(9, bytes, out) == 0
    assert bytes(viewed.next_frame() or b"") == pb.Response(point=points[0]).SerializeToString()
