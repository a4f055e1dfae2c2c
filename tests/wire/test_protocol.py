"""The UDF side of the protocol without I/O: requests, replies, states, export and import."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest
from google.protobuf.message import DecodeError
from hostile import (
    BAD_POINT,
    check_session,
    cut,
    drive_connection,
    expected_session,
    request_frame,
    session_stream,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from standin import decode_responses, request

from aioudf import ConnectionFailed, EdgeType, EmitError, ProtocolError, StateError
from aioudf._pb import udf_pb2 as pb
from aioudf.wire import _protocol as protocol
from aioudf.wire._frames import encode_frame
from aioudf.wire._messages import DataMessage, RequestMessage
from aioudf.wire._protocol import STATE_FORMAT_VERSION, Ending, State, UDFConnection

INIT = request(init=pb.InitRequest(taskID="t", nodeID="n"))
INFO = pb.InfoResponse(wants=pb.STREAM, provides=pb.STREAM)


def decode(stream: bytes, conn: UDFConnection | None = None) -> list[RequestMessage]:
    conn = conn or UDFConnection()
    conn.receive_data(stream)
    out = []
    while (message := conn.next_request()) is not None:
        out.append(message)
    conn.receive_eof()
    return out


def test_every_request_type_is_decoded_and_keepalives_are_answered_inside() -> None:
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
            request(keepalive=pb.KeepaliveRequest(time=43)),
            request(point=point),
            request(end=pb.EndBatch(name="cpu", group="g", tmax=3)),
        ]
    )
    conn = UDFConnection()
    messages = decode(stream, conn)
    assert [type(m).__name__ for m in messages] == [
        "InfoRequest",
        "InitRequest",
        "RestoreRequest",
        "SnapshotRequest",
        "Point",
        "BeginBatch",
        "Point",
        "EndBatch",
    ]
    assert messages[1] == pb.InitRequest(taskID="t", nodeID="n")
    assert messages[2] == pb.RestoreRequest(snapshot=b"state")
    assert messages[4] == point
    answers = decode_responses(conn.data_to_send())
    assert [r.keepalive.time for r in answers] == [42, 43]
    assert conn.data_to_send() == b""


def test_states_follow_the_conversation() -> None:
    conn = UDFConnection()
    seen = [conn.state]
    for frame in (
        INIT,
        request(begin=pb.BeginBatch(group="g")),
        request(point=pb.Point()),
        request(end=pb.EndBatch(group="g")),
    ):
        conn.receive_data(frame)
        assert conn.next_request() is not None
        seen.append(conn.state)
        if isinstance(conn.init_request, pb.InitRequest) and not conn.init_accepted:
            conn.send_init_result()
    conn.receive_eof()
    seen.append(conn.state)
    assert seen == [
        State.NEW,
        State.READY,
        State.IN_BATCH,
        State.IN_BATCH,
        State.READY,
        State.CLOSED,
    ]


def test_replies_are_framed_and_each_request_gets_exactly_one() -> None:
    conn = UDFConnection()
    conn.receive_data(
        request(info=pb.InfoRequest()) + INIT + request(snapshot=pb.SnapshotRequest())
    )
    while conn.next_request() is not None:
        pass
    out = conn.send_info(INFO) + conn.send_init_result() + conn.send_snapshot(b"s")
    assert decode_responses(out) == [
        pb.Response(info=INFO),
        pb.Response(init=pb.InitResponse(success=True)),
        pb.Response(snapshot=pb.SnapshotResponse(snapshot=b"s")),
    ]
    with pytest.raises(StateError, match="cannot send a snapshot reply: Kapacitor did not ask"):
        conn.send_snapshot(b"again")
    with pytest.raises(StateError, match="restore reply"):
        conn.send_restore_result()


def test_a_refused_init_makes_later_data_a_violation() -> None:
    conn = UDFConnection()
    # A point read before the handler refused Init, and one read after.
    conn.receive_data(INIT + request(point=pb.Point(name="early")))
    init, early = conn.next_request(), conn.next_request()
    assert isinstance(init, pb.InitRequest) and isinstance(early, pb.Point)
    reply = conn.send_init_result("size must be positive")
    assert decode_responses(reply) == [
        pb.Response(init=pb.InitResponse(success=False, error="size must be positive"))
    ]
    assert conn.state is State.INIT_FAILED and not conn.init_accepted
    # The point decoded before the refusal is a violation too: the first of
    # what a shell holds that the refusal forbids (an Info it is not).
    info = pb.InfoRequest()
    assert conn.forbidden([info, early, early]) is not None
    index, violation = conn.forbidden([info, early, early])  # type: ignore[misc]
    assert index == 1 and str(violation) == (
        "unexpected Point after a failed Init (size must be positive)"
    )
    assert conn.forbidden([info]) is None
    conn.receive_data(request(info=pb.InfoRequest()) + request(snapshot=pb.SnapshotRequest()))
    assert isinstance(conn.next_request(), pb.InfoRequest)
    with pytest.raises(ProtocolError, match=r"unexpected Snapshot after a failed Init \(size"):
        conn.next_request()


def test_fail_builds_one_error_response_and_keeps_the_first_cause() -> None:
    conn = UDFConnection()
    conn.receive_data(request(info=pb.InfoRequest()))
    conn.next_request()
    assert decode_responses(conn.fail("handler broke")) == [
        pb.Response(error=pb.ErrorResponse(error="handler broke"))
    ]
    assert conn.fail("later") == b""
    assert conn.state is State.FAILED and conn.failure == "handler broke"
    with pytest.raises(StateError, match="the connection has failed"):
        conn.send_info(INFO)


def emitted(conn: UDFConnection, *messages: DataMessage) -> list[str]:
    """Emit ``messages`` through the connection: the kinds framed, up to the first refused."""
    out = b"".join(conn.send_data(m) for m in messages)
    return [str(response.WhichOneof("message")) for response in decode_responses(out)]


BEGIN, END = pb.BeginBatch(name="b", group="g"), pb.EndBatch(name="b", group="g")


@pytest.mark.parametrize(
    ("provides", "messages", "error"),
    [
        (pb.STREAM, [pb.Point(), BEGIN], "cannot emit BeginBatch: the UDF provides a STREAM edge"),
        (pb.STREAM, [END], "cannot emit EndBatch: the UDF provides a STREAM edge"),
        (pb.BATCH, [pb.Point()], "cannot emit a Point outside a batch: the UDF provides a BATCH"),
        (pb.BATCH, [BEGIN, END, pb.Point()], "cannot emit a Point outside a batch"),
        (pb.BATCH, [END], r"cannot emit EndBatch: no batch is open \(emit its BeginBatch"),
        (pb.BATCH, [BEGIN, BEGIN], "cannot emit BeginBatch: the batch for group 'g' is still open"),
        (None, [BEGIN, pb.Point(), BEGIN], "the batch for group 'g' is still open"),
        (None, [pb.Point(), END], "cannot emit EndBatch: no batch is open"),
    ],
)
def test_what_the_udf_emits_must_fit_its_edge_and_nest(
    provides: int | None, messages: list[DataMessage], error: str
) -> None:
    conn = UDFConnection(provides=None if provides is None else EdgeType(provides))
    *allowed, refused = messages
    assert emitted(conn, *allowed) == [
        type(m).__name__.lower().replace("batch", "") for m in allowed
    ]
    with pytest.raises(EmitError, match=error):
        conn.send_data(refused)
    # Refused, it moved nothing: the connection stands where the others left it.
    twin = UDFConnection(provides=conn.provides)
    emitted(twin, *allowed)
    assert (conn.points_allowed, conn.emitting_batch) == (twin.points_allowed, twin.emitting_batch)


def test_batches_and_points_go_where_their_edge_allows() -> None:
    stream = UDFConnection(provides=EdgeType.STREAM)
    assert emitted(stream, pb.Point(), pb.Point()) == ["point", "point"]
    batch = UDFConnection(provides=EdgeType.BATCH)
    assert not batch.points_allowed
    assert emitted(batch, BEGIN, pb.Point(), pb.Point(), END, BEGIN) == [
        "begin",
        "point",
        "point",
        "end",
        "begin",
    ]
    assert batch.points_allowed and batch.emitting_batch
    either = UDFConnection()  # not known: batches nest, points go anywhere
    assert emitted(either, pb.Point(), BEGIN, pb.Point(), END, pb.Point()) == [
        "point",
        "begin",
        "point",
        "end",
        "point",
    ]
    with pytest.raises(TypeError, match="only Point, BeginBatch and EndBatch can be emitted"):
        either.send_data(pb.InfoRequest())


@pytest.mark.parametrize("end", ["fail", "close_output"])
def test_nothing_is_emitted_after_the_connection_ended(end: str) -> None:
    conn = UDFConnection(provides=EdgeType.BATCH)
    conn.send_data(BEGIN)
    if end == "fail":
        conn.fail("handler broke")
        error = r"has failed \(handler broke\)"
    else:
        conn.close_output()
        error = "is closed"
    assert not conn.points_allowed
    for message in (pb.Point(), END, BEGIN):
        with pytest.raises(
            ConnectionFailed, match="cannot emit: the connection to Kapacitor " + error
        ):
            conn.send_data(message)


def test_every_reason_a_connection_ends_is_worded_by_the_core() -> None:
    conn = UDFConnection()
    assert decode_responses(conn.end(Ending.protocol(ProtocolError("bad frame")))) == [
        pb.Response(error=pb.ErrorResponse(error="protocol error: bad frame"))
    ]
    lost = UDFConnection()
    assert lost.end(Ending.lost(BrokenPipeError("gone"), writing=True)) == b""  # cannot be told
    assert lost.failure == "connection lost while writing: gone"
    assert Ending.handler("H", "point", ValueError("v"), pb.Point()).reason == (
        "H.point() failed handling Point: ValueError: v"
    )
    assert Ending.handler("H", "stop", ValueError("v")).reason == "H.stop() failed: ValueError: v"
    assert not Ending.unwritten(10, 2.5).told


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


# Frames that reach every branch of the in-place loop: points with one- and
# two-byte headers and lengths, a point frame with an extra field (general
# path), a point whose bytes do not parse, and other requests between them.
_frames = st.one_of(
    points.map(lambda p: request(point=p)),
    st.binary(max_size=400).map(lambda b: request(point=pb.Point(name=b.hex()))),
    st.just(
        encode_frame(pb.Request(point=pb.Point(name="x")).SerializeToString() + b"\xf0\x01\x05")
    ),
    st.just(BAD_POINT),
    st.integers(0, 2**40).map(lambda t: request(keepalive=pb.KeepaliveRequest(time=t))),
    st.just(request(info=pb.InfoRequest())),
    st.just(request(snapshot=pb.SnapshotRequest())),
)


@settings(max_examples=150)
@given(
    st.lists(_frames, max_size=40),
    st.lists(st.integers(0, 1 << 16), max_size=6),
    st.lists(st.integers(1, 50), min_size=1, max_size=5),
    st.booleans(),
)
def test_runs_decoded_in_place_equal_the_one_at_a_time_decoder(
    frames: list[bytes], cuts: list[int], limits: list[int], as_views: bool
) -> None:
    """next_requests() (points parsed in place, in runs of any size) hands out
    exactly what next_request() does, answers the same keepalives, and raises
    the same error at the same frame, however the stream is cut."""
    stream = INIT + b"".join(frames)

    def run(take: object) -> tuple[list[RequestMessage], str | None, bytes, int]:
        conn = UDFConnection()
        got: list[RequestMessage] = []
        error = None
        turn = itertools.cycle(limits)
        try:
            for chunk in cut(stream, cuts):
                conn.receive_data(memoryview(chunk) if as_views else chunk)
                while True:
                    if take == "runs":
                        promised_nothing = conn.needs_data
                        requests = conn.next_requests(next(turn))
                        assert len(requests) <= max(limits)
                        assert not (promised_nothing and requests), "needs_data was wrong"
                    else:
                        one = conn.next_request()
                        requests = [] if one is None else [one]
                    if not requests:
                        break
                    got += requests
                    for message in requests:
                        if isinstance(message, pb.InitRequest):
                            conn.send_init_result()
                        elif isinstance(message, pb.InfoRequest):
                            conn.send_info(INFO)
                        elif isinstance(message, pb.SnapshotRequest):
                            conn.send_snapshot(b"")
            conn.receive_eof()
        except ProtocolError as exc:
            error = str(exc)
        return got, error, conn.data_to_send(), conn.buffered

    assert run("runs") == run("one at a time")


def test_a_point_cut_by_a_read_comes_in_one_run_with_the_points_after_it() -> None:
    # Kapacitor's small writes cut a point nearly every read: its rest and
    # the points behind it are one run, and the connection tells when a run
    # has used up the bytes (no need to ask again for nothing).
    points = [pb.Point(name="cpu", time=t, fieldsDouble={"usage_idle": 1.5}) for t in range(6)]
    stream = INIT + b"".join(request(point=p) for p in points)
    first = len(INIT) + 2 * len(request(point=points[0])) + 5  # inside the third point
    conn = UDFConnection()
    conn.receive_data(stream[:first])
    assert len(conn.next_requests()) == 1  # Init
    conn.send_init_result()
    assert conn.next_requests() == points[:2]
    assert conn.needs_data
    conn.receive_data(stream[first:])
    assert not conn.needs_data
    assert conn.next_requests() == points[2:]
    assert conn.needs_data and conn.next_requests() == []
    conn.receive_eof()


def test_frame_numbers_count_the_points_decoded_in_place() -> None:
    # Error messages name the frame; a run decoded in place must count as
    # many frames as it holds.
    stream = INIT + request(point=pb.Point(name="a")) * 5 + INIT
    conn = UDFConnection()
    conn.receive_data(stream)
    assert len(conn.next_requests(1)) == 1  # Init
    conn.send_init_result()
    assert len(conn.next_requests()) == 5
    with pytest.raises(ProtocolError, match=r"after Init \(Init may come only once\) \(frame 7\)"):
        conn.next_requests()


def test_raw_points_are_each_points_bytes_and_one_that_does_not_parse_is_named_as_parsed() -> None:
    # A caller that parses Points where it runs the handler gets their bytes,
    # numbered by frames_decoded; a bad one is the violation the parse here
    # would have raised, word for word.
    points = [pb.Point(name="cpu", time=t, group="g", fieldsDouble={"v": 1.5}) for t in range(4)]
    stream = (
        INIT + b"".join(request(point=p) for p in points) + BAD_POINT + request(point=points[0])
    )
    parsed = UDFConnection()
    parsed.receive_data(stream)
    parsed.next_requests()
    parsed.send_init_result()
    assert parsed.next_requests() == points
    with pytest.raises(ProtocolError) as expected:
        parsed.next_requests()
    conn = UDFConnection()
    conn.receive_data(stream)
    conn.next_requests(raw_points=True)  # Init: not a Point, parsed
    conn.send_init_result()
    raw = conn.next_requests(raw_points=True)
    assert raw[:4] == [p.SerializeToString() for p in points]
    assert conn.frames_decoded - len(raw) + 1 == 2  # the first Point's frame
    assert len(raw) == 6  # the bad Point and the one after it, raw too
    broken = raw[4]
    assert isinstance(broken, bytes)
    with pytest.raises(DecodeError) as cause:
        pb.Point.FromString(broken)
    error = conn.undecodable_point(broken, conn.frames_decoded - len(raw) + 5, cause.value)
    assert str(error) == str(expected.value)
    with pytest.raises(ProtocolError, match="frame 6 "):  # the connection has failed
        conn.next_requests(raw_points=True)


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


def test_requests_before_a_violation_are_returned_first_and_the_error_stays() -> None:
    conn = UDFConnection()
    conn.receive_data(request(info=pb.InfoRequest()) + INIT + INIT + request(info=pb.InfoRequest()))
    assert isinstance(conn.next_request(), pb.InfoRequest)
    assert isinstance(conn.next_request(), pb.InitRequest)
    with pytest.raises(ProtocolError) as first:
        conn.next_request()
    with pytest.raises(ProtocolError) as again:
        conn.next_requests()
    assert again.value is first.value


def test_stream_ending_inside_a_batch() -> None:
    conn = UDFConnection()
    conn.receive_data(INIT + request(begin=pb.BeginBatch(group="g")))
    while conn.next_request() is not None:
        pass
    assert conn.in_batch
    with pytest.raises(ProtocolError, match="inside the batch for group 'g'"):
        conn.receive_eof()


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
    assert len(decode(stream)) == 5


# ---- export and import --------------------------------------------------------------

# A recorded session as Kapacitor writes it: Info and keepalives anywhere,
# Init, Restore, stream points of both header sizes, a Snapshot, a batch
# with a keepalive inside, more points.
SESSION = [
    ("info", None),
    ("keepalive", 1),
    ("init", None),
    ("restore", b"saved"),
    *[("point", t) for t in range(1, 6)],
    ("keepalive", 2),
    ("point", 2**40),
    ("snapshot", None),
    ("begin", "host=a"),
    ("point", 7),
    ("keepalive", 3),
    ("point", 8),
    ("end", "host=a"),
    ("info", None),
    *[("point", t) for t in range(9, 12)],
]
RECORDED = b"".join(map(request_frame, SESSION)) + request(
    point=pb.Point(name="long" * 40, time=99)
)


def test_moving_the_connection_at_any_byte_boundary_changes_nothing() -> None:
    """Export, import, continue: at every byte where it is allowed, Kapacitor
    sees exactly the responses of a connection that never moved."""
    whole = drive_connection([RECORDED], max_frame_size=1 << 20, info=INFO)
    assert whole.failure is None
    moved_at = refused_at = 0
    for boundary in range(1, len(RECORDED)):
        first = UDFConnection()
        out = bytearray()
        seen = 0
        first.receive_data(RECORDED[:boundary])
        while requests := first.next_requests():
            out += first.data_to_send()
            for message in requests:
                seen += isinstance(message, pb.Point)
                out += _answer(first, message, seen)
        out += first.data_to_send()
        if not first.can_export:
            refused_at += 1
            assert first.in_batch
            with pytest.raises(StateError, match=r"a batch \(group 'host=a'\) is open"):
                first.export_state()
            continue
        moved_at += 1
        second = UDFConnection.from_state(first.export_state())
        second.receive_data(RECORDED[boundary:])
        while requests := second.next_requests():
            out += second.data_to_send()
            for message in requests:
                seen += isinstance(message, pb.Point)
                out += _answer(second, message, seen)
        second.receive_eof()
        assert second.state is State.CLOSED
        assert decode_responses(bytes(out)) == whole.responses, boundary
    assert moved_at > refused_at > 0


def _answer(conn: UDFConnection, message: RequestMessage, seen: int) -> bytes:
    if isinstance(message, pb.InfoRequest):
        return conn.send_info(INFO)
    if isinstance(message, pb.InitRequest):
        return conn.send_init_result()
    if isinstance(message, pb.SnapshotRequest):
        return conn.send_snapshot(str(seen).encode())
    if isinstance(message, pb.RestoreRequest):
        return conn.send_restore_result()
    return conn.send_data(message)  # type: ignore[arg-type]


@settings(max_examples=60)
@given(
    st.lists(st.sampled_from(SESSION), max_size=30),
    st.sampled_from(["eof", "partial", "garbage", "empty", "oversized"]),
    st.integers(0, 1000),
    st.lists(st.integers(0, 1 << 16), max_size=8),
)
def test_moves_between_chunks_keep_the_session_of_the_model(
    steps: list[tuple[str, object]], tail: str, tail_arg: int, cuts: list[int]
) -> None:
    """Any session, cut anywhere, moved wherever allowed: the model's responses."""
    steps = [("init", None), *steps]
    stream = session_stream(steps, tail, tail_arg, 300)
    expected = expected_session(steps, tail, tail_arg, 300, INFO)
    outcome = drive_connection(cut(stream, cuts), max_frame_size=300, info=INFO, move=True)
    check_session(outcome, expected)


def test_the_exported_state_holds_init_and_the_unconsumed_bytes() -> None:
    conn = UDFConnection(max_frame_size=4096)
    half_a_point = request(point=pb.Point(name="cpu", time=5))[:7]
    conn.receive_data(INIT + half_a_point)
    assert isinstance(conn.next_request(), pb.InitRequest)
    assert not conn.can_export  # the Init reply is owed
    with pytest.raises(StateError, match=r"owed a reply \(init\): send it first"):
        conn.export_state()
    conn.send_init_result()
    state = conn.export_state()
    assert state.startswith(b"AUDC" + bytes([STATE_FORMAT_VERSION]))
    moved = UDFConnection.from_state(state)
    assert moved.state is State.READY and moved.init_accepted
    assert moved.init_request == pb.InitRequest(taskID="t", nodeID="n")
    assert moved.max_frame_size == 4096
    assert moved.buffered == len(half_a_point)
    moved.receive_data(request(point=pb.Point(name="cpu", time=5))[7:])
    assert moved.next_requests() == [pb.Point(name="cpu", time=5)]
    assert UDFConnection.from_state(state, max_frame_size=10).max_frame_size == 10


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (b"", "does not start with b'AUDC'"),
        (b"JUNKJUNK", "does not start with b'AUDC'"),
        (b"AUDC\x02", "version 2 cannot be read here"),
        (b"AUDC\x01\x07", "unknown state code 7"),
        (b"AUDC\x01\x00\x80", "max_frame_size is cut short"),
        (b"AUDC\x01\x00\x10\x00\x00\x05ab", "unconsumed bytes is cut short"),
        (b"AUDC\x01\x00\x10\x00\x00\x00!", "1 bytes follow its end"),
        (b"AUDC\x01\x00\x10\x00\x02\x08\x01\x00", "an InitRequest before Init"),
    ],
)
def test_a_state_that_cannot_be_read_is_refused(state: bytes, message: str) -> None:
    with pytest.raises(StateError, match=message):
        UDFConnection.from_state(state)


def test_failed_and_closed_connections_cannot_be_exported() -> None:
    conn = UDFConnection()
    conn.fail("gone")
    with pytest.raises(StateError, match="the connection is failed"):
        conn.export_state()
    conn = UDFConnection()
    conn.receive_data(request(keepalive=pb.KeepaliveRequest(time=1)))
    assert conn.next_request() is None
    with pytest.raises(StateError, match="take data_to_send"):
        conn.export_state()


def test_the_protocol_module_does_no_io() -> None:
    """The wire layer and what it imports from aioudf touch no event loop,
    thread or socket: it runs wherever bytes can be handed to it."""
    root = Path(protocol.__file__).parents[1]  # src/aioudf
    forbidden = {"asyncio", "anyio", "threading", "socket", "selectors", "trio"}
    seen: set[Path] = set()
    todo = [root / "wire" / "__init__.py"]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        tree = ast.parse(path.read_text())
        # Imports under ``if TYPE_CHECKING:`` are annotations only: never run.
        typing_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # inside the package: follow it
                    base = path.parent
                    for _ in range(node.level - 1):
                        base = base.parent
                    target = base.joinpath(*(node.module or "").split("."))
                    for candidate in (target.with_suffix(".py"), target / "__init__.py"):
                        if node.module and candidate.exists():
                            todo.append(candidate)
                            break
                    continue
                names = [node.module or ""]
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"
    read = {str(path.relative_to(root)) for path in seen}
    assert {"wire/_protocol.py", "wire/_frames.py", "wire/_messages.py", "errors.py"} <= read
