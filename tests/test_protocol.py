"""The sans-I/O request decoder: every request type, the point fast path, order rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wire import request

from aioudf import ProtocolError, RequestDecoder
from aioudf._pb import udf_pb2 as pb
from aioudf.framing import encode_frame
from aioudf.messages import RequestMessage

INIT = request(init=pb.InitRequest(taskID="t", nodeID="n"))


def decode(stream: bytes) -> list[RequestMessage]:
    decoder = RequestDecoder()
    decoder.feed(stream)
    out = []
    while (message := decoder.next_request()) is not None:
        out.append(message)
    decoder.feed_eof()
    return out


def test_every_request_type_is_decoded() -> None:
    point = pb.Point(name="cpu", time=3, fieldsDouble={"v": 1.0})
    stream = b"".join(
        [
            request(info=pb.InfoRequest()),
            request(keepalive=pb.KeepaliveRequest(time=42)),
            INIT,
            request(restore=pb.RestoreRequest(snapshot=b"state")),
            request(snapshot=pb.SnapshotRequest()),
            request(point=point),
            request(begin=pb.BeginBatch(name="cpu", group="g", size=1)),
            request(point=point),
            request(end=pb.EndBatch(name="cpu", group="g", tmax=3)),
        ]
    )
    messages = decode(stream)
    assert [type(m).__name__ for m in messages] == [
        "InfoRequest",
        "KeepaliveRequest",
        "InitRequest",
        "RestoreRequest",
        "SnapshotRequest",
        "Point",
        "BeginBatch",
        "Point",
        "EndBatch",
    ]
    assert messages[1] == pb.KeepaliveRequest(time=42)
    assert messages[2] == pb.InitRequest(taskID="t", nodeID="n")
    assert messages[3] == pb.RestoreRequest(snapshot=b"state")
    assert messages[5] == point


field_names = st.text(min_size=1, max_size=20)
points = st.builds(
    pb.Point,
    time=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    name=st.text(max_size=30),
    group=st.text(max_size=60),
    tags=st.dictionaries(field_names, st.text(max_size=40), max_size=5),
    fieldsDouble=st.dictionaries(field_names, st.floats(allow_nan=False), max_size=5),
    fieldsInt=st.dictionaries(field_names, st.integers(-(2**63), 2**63 - 1), max_size=3),
    fieldsString=st.dictionaries(field_names, st.text(max_size=300), max_size=3),
    fieldsBool=st.dictionaries(field_names, st.booleans(), max_size=3),
)


@given(points)
def test_point_fast_path_equals_the_full_parse(point: pb.Point) -> None:
    # Whatever its size (1- or 2-byte length, or larger), a point frame
    # decodes to exactly the point that was sent.
    (message,) = decode(INIT + request(point=point))[1:]
    assert message == point


def test_a_point_frame_with_extra_fields_takes_the_general_path() -> None:
    # Request{point} followed by unknown field 30: still a valid Request.
    body = pb.Request(point=pb.Point(name="cpu")).SerializeToString() + b"\xf0\x01\x05"
    (message,) = decode(INIT + encode_frame(body))[1:]
    assert message == pb.Point(name="cpu")


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (request(point=pb.Point()), r"unexpected Point before Init \(frame 1\)"),
        (request(snapshot=pb.SnapshotRequest()), "unexpected Snapshot before Init"),
        (request(restore=pb.RestoreRequest()), "unexpected Restore before Init"),
        (request(begin=pb.BeginBatch()), "unexpected BeginBatch before Init"),
        (INIT + INIT, r"unexpected Init after Init \(Init may come only once\) \(frame 2\)"),
        (INIT + request(end=pb.EndBatch()), "unexpected EndBatch without a BeginBatch"),
        (
            INIT + request(begin=pb.BeginBatch(group="a")) + request(begin=pb.BeginBatch()),
            "unexpected BeginBatch while the batch for group 'a' is still open",
        ),
        (encode_frame(b""), "frame 1 .0 bytes. is a Request that carries no message"),
        (encode_frame(b"\xff\xff\xff"), r"frame 1 \(3 bytes\) is not a valid Request message"),
        (
            INIT + encode_frame(b"\x8a\x01\x03\xff\xff\xff"),
            r"frame 2 \(6 bytes\) is not a valid Request message",
        ),
    ],
)
def test_protocol_violations_name_the_cause(stream: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        decode(stream)


def test_requests_before_a_violation_are_returned_first() -> None:
    decoder = RequestDecoder()
    decoder.feed(request(info=pb.InfoRequest()) + INIT + INIT)
    assert isinstance(decoder.next_request(), pb.InfoRequest)
    assert isinstance(decoder.next_request(), pb.InitRequest)
    with pytest.raises(ProtocolError):
        decoder.next_request()


def test_stream_ending_inside_a_batch() -> None:
    decoder = RequestDecoder()
    decoder.feed(INIT + request(begin=pb.BeginBatch(group="g")))
    while decoder.next_request() is not None:
        pass
    assert decoder.in_batch
    with pytest.raises(ProtocolError, match="inside the batch for group 'g'"):
        decoder.feed_eof()


def test_info_and_keepalive_are_allowed_anywhere() -> None:
    stream = (
        request(keepalive=pb.KeepaliveRequest())
        + request(info=pb.InfoRequest())
        + INIT
        + request(begin=pb.BeginBatch())
        + request(keepalive=pb.KeepaliveRequest())
        + request(info=pb.InfoRequest())
        + request(end=pb.EndBatch())
    )
    assert len(decode(stream)) == 7
