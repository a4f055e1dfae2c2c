"""Kapacitor's side of the protocol without I/O, and the two sides talking to each other."""

from __future__ import annotations

import datetime

import pytest
from standin import decode_responses

from aioudf import ProtocolError
from aioudf._pb import udf_pb2 as pb
from aioudf.wire._frames import encode_frame
from aioudf.wire._kapacitor import EmittedBatch, KapacitorConnection, go_time
from aioudf.wire._messages import ValueType, encode_data_frame, encode_error, encode_response
from aioudf.wire._protocol import UDFConnection
from aioudf.wire._values import encode_options, parse_literal, parse_option_args


def reply(**fields: object) -> bytes:
    return encode_response(pb.Response(**fields))  # type: ignore[arg-type]


def events(kapacitor: KapacitorConnection, data: bytes) -> list[object]:
    kapacitor.receive_data(data)
    out: list[object] = []
    while (event := kapacitor.next_event()) is not None:
        out.append(event)
    return out


def test_replies_are_matched_to_the_requests_that_asked() -> None:
    kapacitor = KapacitorConnection()
    kapacitor.send_info()
    kapacitor.send_snapshot()
    info = pb.InfoResponse(wants=pb.BATCH)
    got = events(kapacitor, reply(snapshot=pb.SnapshotResponse(snapshot=b"s")) + reply(info=info))
    assert got == [pb.SnapshotResponse(snapshot=b"s"), info]
    with pytest.raises(ProtocolError, match="the UDF sent a info response nobody asked for"):
        events(kapacitor, reply(info=pb.InfoResponse()))


def test_batches_are_assembled_and_points_outside_them_come_alone() -> None:
    kapacitor = KapacitorConnection()
    begin = pb.BeginBatch(name="cpu", group="g")
    points = [pb.Point(name="cpu", time=t) for t in range(3)]
    end = pb.EndBatch(name="cpu", group="g", tmax=2)
    stream = KapacitorConnection.send_data(pb.Point(time=9), begin, *points, end)
    lone, batch = events(kapacitor, stream)
    assert lone == pb.Point(time=9)
    assert isinstance(batch, EmittedBatch)
    assert (batch.begin, batch.points, batch.end) == (begin, points, end)


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (encode_data_frame(pb.BeginBatch()) * 2, "began a batch inside another batch"),
        (encode_data_frame(pb.EndBatch()), "ended a batch it never began"),
        (reply(), r"empty or unknown response \(None\)"),
        (b"\x03\xff\xff\xff", "a response that cannot be decoded"),
    ],
)
def test_responses_that_break_the_contract(stream: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        events(KapacitorConnection(), stream)


def test_an_error_response_is_an_event_carrying_the_udfs_words() -> None:
    kapacitor = KapacitorConnection()
    assert events(kapacitor, encode_error("boom")) == [pb.ErrorResponse(error="boom")]
    assert kapacitor.error == "boom"


def test_closing_inside_a_batch_is_a_violation() -> None:
    kapacitor = KapacitorConnection()
    events(kapacitor, encode_data_frame(pb.BeginBatch()))
    with pytest.raises(ProtocolError, match="closed the connection inside a batch"):
        kapacitor.receive_eof()


def test_the_keepalive_clock_is_kapacitors() -> None:
    """A keepalive every timeout/2 from the start; the task fails when nothing
    at all came for a whole timeout, any response resetting the wait."""
    kapacitor = KapacitorConnection(10.0, now=100.0, wall=1_000.0)
    assert kapacitor.next_deadline() == 105.0
    assert kapacitor.keepalive_due(104.9, 1) == b""
    sent = kapacitor.keepalive_due(105.0, 42)
    assert pb.Request.FromString(sent[1:]).keepalive.time == 42
    assert kapacitor.keepalive_due(105.5, 43) == b""  # one per period
    assert kapacitor.next_deadline() == 110.0
    assert kapacitor.keepalive_expired(109.9) is None
    # An answer (any response) at 108 moves the timeout to 118.
    kapacitor.receive_data(reply(keepalive=pb.KeepaliveResponse(time=42)), now=108.0, wall=1_008.0)
    assert kapacitor.next_event() == pb.KeepaliveResponse(time=42)
    assert kapacitor.keepalives_answered == 1
    assert kapacitor.keepalive_expired(117.9) is None
    assert kapacitor.keepalive_expired(118.0) == (
        "keepalive timedout, last keepalive received was: " + go_time(1_008.0)
    )
    assert go_time(1_008.0) == "1970-01-01 00:16:48.000000 +0000 UTC"
    kapacitor.stop()  # Kapacitor stops both timers when the task stops
    assert kapacitor.next_deadline() is None and kapacitor.keepalive_expired(500.0) is None
    assert KapacitorConnection(None).next_deadline() is None


def test_counting_takes_data_frames_without_parsing_them() -> None:
    kapacitor = KapacitorConnection()
    kapacitor.send_snapshot()
    big = pb.Point(name="x" * 300)
    data = KapacitorConnection.send_data(pb.Point(), big, pb.BeginBatch(), pb.EndBatch())
    kapacitor.receive_data(data + reply(snapshot=pb.SnapshotResponse()))
    assert kapacitor.count_responses() == {"point": 2, "begin": 1, "end": 1, "snapshot": 1}
    kapacitor.receive_data(encode_error("gone"))
    with pytest.raises(ProtocolError, match="the UDF sent an ErrorResponse: gone"):
        kapacitor.count_responses()


def take_all(kapacitor: KapacitorConnection) -> list[object]:
    """Points as bytes and everything else as events, in the order they came."""
    out: list[object] = []
    while True:
        out.extend(kapacitor.next_points())
        event = kapacitor.next_event()
        if event is None:
            return out
        out.append(event)


def test_points_come_as_bytes_in_order_with_everything_else() -> None:
    kapacitor = KapacitorConnection()
    kapacitor.send_snapshot()
    small = pb.Point(name="cpu", time=1, fieldsDouble={"v": 1.5})
    big = pb.Point(name="x" * 300, time=2)  # a two-byte length
    huge = pb.Point(name="y" * 20_000, time=3)  # three bytes: not read by hand
    begin, inner, end = pb.BeginBatch(name="b"), pb.Point(time=4), pb.EndBatch(name="b")
    keepalive = pb.KeepaliveResponse(time=7)
    # A frame holding a Point and then more (protobuf merges two Points):
    # not a lone Point, so decoded as a whole.
    merged = pb.Response(point=pb.Point(name="a")).SerializeToString()
    merged += pb.Response(point=pb.Point(time=9)).SerializeToString()
    stream = b"".join(
        [
            KapacitorConnection.send_data(small, big),
            reply(snapshot=pb.SnapshotResponse(snapshot=b"s")),
            KapacitorConnection.send_data(huge, begin, inner, end, small),
            reply(keepalive=keepalive),
            encode_frame(merged),
            KapacitorConnection.send_data(small),
        ]
    )
    expected = [
        small.SerializeToString(),
        big.SerializeToString(),
        pb.SnapshotResponse(snapshot=b"s"),
        huge,
        EmittedBatch(begin, [inner], end),
        small.SerializeToString(),
        keepalive,
        pb.Point(name="a", time=9),
        small.SerializeToString(),
    ]

    def same(got: list[object]) -> bool:
        def plain(item: object) -> object:
            if isinstance(item, EmittedBatch):
                return (item.begin, item.points, item.end)
            return pb.Point.FromString(item) if isinstance(item, bytes) else item

        kinds = [type(item) for item in got] == [type(item) for item in expected]
        return kinds and [plain(item) for item in got] == [plain(item) for item in expected]

    kapacitor.receive_data(stream)
    assert same(take_all(kapacitor))
    # The same stream cut anywhere: frames split across chunks come out the same.
    for cut in (1, 3, 7, 50, 333, len(stream) - 5):
        kapacitor = KapacitorConnection()
        kapacitor.send_snapshot()
        got = []
        for start in range(0, len(stream), cut):
            kapacitor.receive_data(stream[start : start + cut])
            got += take_all(kapacitor)
        assert same(got), cut
    # Counting after taking points leaves nothing out either.
    kapacitor = KapacitorConnection()
    kapacitor.receive_data(KapacitorConnection.send_data(small) + reply(keepalive=keepalive))
    assert len(kapacitor.next_points()) == 1
    assert kapacitor.count_responses() == {"keepalive": 1}


def test_the_two_sides_talk() -> None:
    """Requests built by one side are what the other reads, and back."""
    kapacitor = KapacitorConnection()
    udf = UDFConnection()
    info = pb.InfoResponse(options={"size": pb.OptionInfo(valueTypes=[pb.INT])})
    point = pb.Point(name="cpu", time=1)
    udf.receive_data(
        kapacitor.send_info()
        + kapacitor.send_init(parse_option_args(["size=10"], info), task_id="t", node_id="n")
        + kapacitor.send_data(point)
        + kapacitor.send_keepalive(7)
        + kapacitor.send_snapshot()
    )
    requests = []
    while (request := udf.next_request()) is not None:
        requests.append(request)
    assert [type(r).__name__ for r in requests] == [
        "InfoRequest",
        "InitRequest",
        "Point",
        "SnapshotRequest",
    ]
    assert requests[1].options[0].values[0].intValue == 10  # type: ignore[union-attr]
    out = (
        udf.send_info(info)
        + udf.send_init_result()
        + udf.send_data(point)
        + udf.data_to_send()
        + udf.send_snapshot(b"1")
    )
    assert events(kapacitor, out) == [
        info,
        pb.InitResponse(success=True),
        point,
        pb.KeepaliveResponse(time=7),
        pb.SnapshotResponse(snapshot=b"1"),
    ]
    assert len(decode_responses(out)) == 5


# ---- the option table -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "vtype", "value"),
    [
        ("TRUE", ValueType.BOOL, True),
        ("FALSE", ValueType.BOOL, False),
        ("10", ValueType.INT, 10),
        ("-3", ValueType.INT, -3),
        ("1.5", ValueType.DOUBLE, 1.5),
        ("usage idle", ValueType.STRING, "usage idle"),
        ("90s", ValueType.DURATION, 90 * 10**9),
        ("-5u", ValueType.DURATION, -5000),
        (".5", ValueType.DOUBLE, 0.5),
    ],
)
def test_tickscript_literals_have_one_reading(text: str, vtype: ValueType, value: object) -> None:
    assert parse_literal(text, vtype) == value


@pytest.mark.parametrize(
    ("text", "vtype", "message"),
    [
        ("yes", ValueType.BOOL, "must be BOOL .like TRUE.: not TRUE or FALSE: 'yes'"),
        ("1", ValueType.BOOL, "must be BOOL"),
        ("10", ValueType.DURATION, r"must be DURATION \(like 10s\), got INT 10"),
        ("1.0", ValueType.INT, "must be INT"),
    ],
)
def test_literals_of_the_wrong_shape_are_refused(text: str, vtype: ValueType, message: str) -> None:
    # (The benchmark driver once read 'yes' as TRUE and '10' as 10 ns.)
    with pytest.raises(ValueError, match=message):
        parse_literal(text, vtype)


def test_python_values_and_literals_make_the_same_option() -> None:
    info = pb.InfoResponse(
        options={
            "every": pb.OptionInfo(valueTypes=[pb.DURATION]),
            "scale": pb.OptionInfo(valueTypes=[pb.DOUBLE]),
        }
    )
    from_python = encode_options({"every": datetime.timedelta(seconds=10), "scale": 2}, info)
    from_text = parse_option_args(["every=10s", "scale=2.0"], info)
    assert from_python == from_text
