"""Fuzzing: the decoders and whole agents fed hostile byte streams in arbitrary chunks.

Each property is checked against an independent model (tests/hostile.py):

* the frame decoder gives the frames and the error a byte-at-a-time reference
  decoder gives, however the stream is cut and whenever frames are taken;
* the request decoder raises nothing but ProtocolError;
* an agent fed any stream ends within a bounded time, writes only valid
  Response frames, and a failed connection ends with exactly one ErrorResponse
  naming the cause;
* valid requests in any order get exactly the replies the protocol's ordering
  rules call for, then the ErrorResponse naming the first violation;
* over a real UnixServer, hostile connections end one by one while another
  connection, open all along, keeps being served.

The same oracles run under atheris for long coverage-guided runs (fuzz/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from hostile import (
    BAD_BODIES,
    BAD_POINT,
    HANG_TIMEOUT,
    TAILS,
    BlockingEcho,
    Echo,
    HandlerFactory,
    Outcome,
    Step,
    check_frame_decoder,
    check_outcome,
    check_request_decoder,
    check_session,
    cut,
    drive_agent,
    expected_session,
    joining,
    session_stream,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from standin import Peer, decode_responses, request

from aioudf import BaseHandler, UnixServer, encode_frame
from aioudf._pb import udf_pb2 as pb
from aioudf.toolkit._handler import describe

# Agents run a fresh event loop per example: no per-example deadline (a hang is
# caught by the agent driver's own timeout instead).
AGENT_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# ---- strategies -----------------------------------------------------------------

max_sizes = st.sampled_from([0, 1, 127, 128, 300, 16_384, 2**63])
cuts = st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=12)

#: Headers that sit at and beyond the limits: 10-byte varints, 64-bit overflow.
edge_headers = st.sampled_from(
    [
        b"\x80" * 9 + b"\x01",  # 2**63: ten bytes, valid, huge
        b"\x80" * 9 + b"\x02",  # 2**64: more than 64 bits
        b"\xff" * 9 + b"\x7f",  # beyond 64 bits
        b"\x80" * 10,  # ten continuation bytes
        b"\x80" * 11 + b"\x00",  # eleven bytes
        b"\xff\xff\xff\xff\x0f",  # 2**32 - 1
        b"\x80\x01",  # 128, in two bytes
        b"\x80\x00",  # 0, over-long encoding
        b"\x00",  # empty body
    ]
)

option_names = st.sampled_from(["flag", "count", "ratio", "label", "on", "every", "pair", "nope"])


@st.composite
def option_values(draw: st.DrawFn) -> pb.OptionValue:
    """An OptionValue with any type number (proto3 enums are open) and any member set."""
    value = pb.OptionValue()
    value.type = draw(st.integers(min_value=-2, max_value=9))  # type: ignore[assignment]
    member = draw(st.sampled_from(["", "bool", "int", "double", "string", "duration"]))
    if member == "bool":
        value.boolValue = draw(st.booleans())
    elif member == "int":
        value.intValue = draw(st.integers(-(2**63), 2**63 - 1))
    elif member == "double":
        value.doubleValue = draw(st.floats())
    elif member == "string":
        value.stringValue = draw(st.text(max_size=10))
    elif member == "duration":
        value.durationValue = draw(st.integers(-(2**63), 2**63 - 1))
    return value


init_requests = st.builds(
    lambda options: request(init=pb.InitRequest(options=options)),
    st.lists(
        st.builds(
            lambda name, values: pb.Option(name=name, values=values),
            option_names,
            st.lists(option_values(), max_size=3),
        ),
        max_size=4,
    ),
)

valid_requests = st.one_of(
    init_requests,
    st.just(request(info=pb.InfoRequest())),
    st.just(request(snapshot=pb.SnapshotRequest())),
    st.builds(lambda t: request(keepalive=pb.KeepaliveRequest(time=t)), st.integers(0, 2**62)),
    st.builds(lambda s: request(restore=pb.RestoreRequest(snapshot=s)), st.binary(max_size=20)),
    st.builds(lambda g: request(begin=pb.BeginBatch(group=g)), st.text(max_size=5)),
    st.builds(lambda g: request(end=pb.EndBatch(group=g)), st.text(max_size=5)),
    st.builds(
        lambda t, v: request(point=pb.Point(name="cpu", time=t, fieldsDouble={"v": v})),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(),
    ),
)

segments = st.one_of(
    valid_requests,
    st.binary(max_size=40),  # raw bytes
    st.binary(max_size=60).map(encode_frame),  # a well-framed body of random bytes
    st.sampled_from(BAD_BODIES).map(encode_frame),  # a frame that is not a Request
    edge_headers,
)

#: Byte streams that mix valid requests, random frames, raw bytes and edge headers.
streams = st.lists(segments, max_size=16).map(b"".join)


# ---- the decoders ---------------------------------------------------------------


@settings(max_examples=400)
@given(streams, cuts, max_sizes, st.lists(st.booleans(), max_size=12), st.booleans())
@example(b"\x05abc", [], 16, [], True)  # truncated body
@example(b"\x80", [], 16, [], True)  # truncated header
@example(b"\x80\x01" + b"x" * 128, [1, 2, 3], 128, [True], True)  # at the maximum
@example(b"\x80\x01" + b"x" * 128, [1, 2, 3], 128, [True], False)
@example(b"\x81\x01" + b"x" * 129, [], 128, [], True)  # one beyond
def test_frame_decoder_matches_the_reference(
    stream: bytes, cut_at: list[int], max_size: int, hold: list[bool], join: bool
) -> None:
    with joining(join):
        check_frame_decoder(stream, cut_at, max_size, hold)


@settings(max_examples=400)
@given(
    streams,
    cuts,
    max_sizes,
    st.lists(st.integers(1, 300), max_size=4),
    st.booleans(),
    st.booleans(),
)
@example(  # a Point that does not parse, among good ones, taken raw
    request(init=pb.InitRequest())
    + request(point=pb.Point(name="cpu"))
    + BAD_POINT
    + request(point=pb.Point(name="cpu")),
    [],
    2**63,
    [],
    True,
    True,
)
def test_request_decoder_matches_the_reference_and_the_order_model(
    stream: bytes, cut_at: list[int], max_size: int, limits: list[int], join: bool, raw: bool
) -> None:
    with joining(join):
        check_request_decoder(stream, cut_at, max_size, limits, raw_points=raw)


# ---- one agent over in-memory pipes ---------------------------------------------------

handlers = pytest.mark.parametrize("factory", [Echo, BlockingEcho], ids=["async", "blocking"])
HandlerClass = type[BaseHandler]


@handlers
def test_agent_survives_any_byte_stream(factory: HandlerFactory) -> None:
    @AGENT_SETTINGS
    @given(streams, cuts, st.sampled_from([64, 300, 1 << 20]))
    def check(stream: bytes, cut_at: list[int], max_frame_size: int) -> None:
        outcome = asyncio.run(
            drive_agent(factory(), cut(stream, cut_at), max_frame_size=max_frame_size)
        )
        check_outcome(outcome)

    check()


groups = st.sampled_from(["", "host=a", "cpu=cpu0,host=b"])
steps = st.lists(
    st.one_of(
        st.tuples(st.just("info"), st.none()),
        st.tuples(st.just("init"), st.none()),
        st.tuples(st.just("keepalive"), st.integers(0, 2**62)),
        st.tuples(st.just("snapshot"), st.none()),
        st.tuples(st.just("restore"), st.binary(max_size=8)),
        st.tuples(st.just("begin"), groups),
        st.tuples(st.just("point"), st.integers(0, 2**62)),
        st.tuples(st.just("end"), groups),
    ),
    max_size=25,
)

#: Sessions that mostly follow the rules, so the violations come late.
well_ordered = st.builds(
    lambda body: [("init", None), *body],
    st.lists(
        st.one_of(
            st.tuples(st.just("point"), st.integers(0, 2**62)),
            st.tuples(st.just("keepalive"), st.integers(0, 2**62)),
            st.tuples(st.just("snapshot"), st.none()),
            st.tuples(st.just("begin"), groups),
            st.tuples(st.just("end"), groups),
        ),
        max_size=25,
    ),
)


def run_session(
    factory: type[BaseHandler],
    session: list[Step],
    tail: str,
    tail_arg: int,
    cut_at: list[int],
    max_frame_size: int,
) -> None:
    stream = session_stream(session, tail, tail_arg, max_frame_size)
    outcome = asyncio.run(
        drive_agent(factory(), cut(stream, cut_at), max_frame_size=max_frame_size)
    )
    expected = expected_session(session, tail, tail_arg, max_frame_size, describe(factory))
    check_session(outcome, expected)


@handlers
def test_requests_in_any_order_get_the_replies_the_rules_call_for(
    factory: HandlerClass,
) -> None:
    @AGENT_SETTINGS
    @given(
        st.one_of(steps, well_ordered),
        st.sampled_from(TAILS),
        st.integers(0, 1000),
        cuts,
        st.sampled_from([300, 512]),
    )
    # The orders docs/protocol.md names: points before Init, EndBatch without
    # BeginBatch, a second Init; and each tail after a clean start.
    @example([("point", 1), ("init", None)], "eof", 0, [], 300)
    @example([("init", None), ("end", "g")], "eof", 0, [], 300)
    @example([("init", None), ("point", 1), ("init", None)], "eof", 0, [3], 300)
    @example([("init", None), ("begin", "a"), ("begin", "b")], "eof", 0, [], 300)
    @example([("init", None), ("begin", "a"), ("point", 2)], "eof", 0, [], 300)
    @example([("init", None), ("keepalive", 9)], "at_max", 0, [1, 2], 300)
    @example([("keepalive", 9)], "oversized", 3, [], 300)
    @example([("init", None)], "partial", 0, [], 300)
    @example([("init", None)], "partial", 1, [], 300)
    @example([("init", None)], "garbage", 5, [], 300)
    @example([("init", None)], "long_varint", 0, [], 300)
    @example([], "empty", 0, [], 300)
    def check(
        session: list[Step], tail: str, tail_arg: int, cut_at: list[int], max_frame_size: int
    ) -> None:
        run_session(factory, session, tail, tail_arg, cut_at, max_frame_size)

    check()


def test_the_session_model_is_not_vacuous() -> None:
    # The model's expectations for the orders the issue names, spelled out:
    # a guard against a model that would agree with anything.
    info = describe(Echo)
    assert expected_session([("point", 1)], "eof", 0, 300, info).error == (
        "protocol error: unexpected Point before Init (frame 1)"
    )
    assert expected_session([("init", None), ("end", "g")], "eof", 0, 300, info).error == (
        "protocol error: unexpected EndBatch without a BeginBatch (frame 2)"
    )
    assert expected_session([("init", None), ("init", None)], "eof", 0, 300, info).error == (
        "protocol error: unexpected Init after Init (Init may come only once) (frame 2)"
    )
    clean = expected_session([("init", None), ("point", 5)], "eof", 0, 300, info)
    assert clean.error is None and len(clean.replies) == 2


# ---- many hostile connections to one server --------------------------------------------


def test_hostile_connections_end_alone_while_the_server_keeps_serving(
    socket_path: Path,
) -> None:
    """Each hostile stream arrives on a new socket connection, in chunks with a
    drain between them; a well-behaved connection stays open throughout and is
    checked after every example."""

    async def start() -> tuple[UnixServer, Peer]:
        server = UnixServer(Echo, socket_path, grace=1, max_frame_size=300)
        await server.start()
        healthy = await Peer.unix(socket_path)
        await healthy.send(request(init=pb.InitRequest()))
        await healthy.receive_kind("init")
        return server, healthy

    async def hostile(chunks: list[bytes]) -> Outcome:
        peer = await Peer.unix(socket_path)
        with contextlib.suppress(ConnectionError):  # the server may close first
            for chunk in chunks:
                await peer.send(chunk)
            await peer.half_close()
        data = bytearray()
        while chunk := await asyncio.wait_for(peer.reader.read(1 << 16), HANG_TIMEOUT):
            data += chunk
        await peer.close()
        responses = decode_responses(bytes(data))
        errors = [r.error.error for r in responses if r.HasField("error")]
        return Outcome(responses, errors[-1] if errors else None)

    async def still_served(healthy: Peer, n: int) -> None:
        await healthy.send(
            request(keepalive=pb.KeepaliveRequest(time=n)),
            request(point=pb.Point(name="alive", time=n)),
        )
        reply = await healthy.receive_kind("point")
        assert reply.point.time == n

    loop = asyncio.new_event_loop()  # one loop for every example (asyncio.Runner is 3.11+)
    run = loop.run_until_complete
    examples = 0

    @settings(AGENT_SETTINGS, max_examples=100)
    @given(st.lists(segments, max_size=12).map(b"".join), cuts)
    def check(stream: bytes, cut_at: list[int]) -> None:
        nonlocal examples
        examples += 1
        check_outcome(run(hostile(cut(stream, cut_at))))
        run(still_served(healthy, examples))

    try:
        server, healthy = run(start())
        try:
            check()
            assert server.accepted == examples + 1
        finally:
            run(healthy.close())
            run(server.shutdown())
    finally:
        loop.close()


@AGENT_SETTINGS
@given(
    st.lists(
        st.builds(
            lambda name, values: pb.Option(name=name, values=values),
            option_names,
            st.lists(option_values(), min_size=1, max_size=2),
        ),
        max_size=4,
    )
)
def test_any_init_options_get_an_init_reply(init_options: list[pb.Option]) -> None:
    # Whatever options Init carries (unknown names, wrong counts, any type
    # number, any value), the reply is an InitResponse: success, or failure
    # with the reason; never an agent crash.
    stream = request(init=pb.InitRequest(options=init_options))
    outcome = asyncio.run(drive_agent(Echo(), [stream]))
    check_outcome(outcome)
    (reply,) = outcome.responses
    assert reply.HasField("init")
    assert reply.init.success == (reply.init.error == "")


def test_unknown_option_value_type_fails_init_instead_of_crashing() -> None:
    # Found while writing the Init strategy above (test_any_init_options...
    # finds it in a few dozen examples): proto3 enums are open, so an
    # OptionValue may carry a type number aioudf does not know. That is a
    # failed Init naming the option, not an internal error of the agent.
    option = pb.Option(name="label")
    option.values.add().type = 9  # type: ignore[assignment]
    stream = request(init=pb.InitRequest(options=[option]))
    outcome = asyncio.run(drive_agent(Echo(), [stream]))
    check_outcome(outcome)
    (reply,) = outcome.responses
    assert not reply.init.success
    assert reply.init.error == "option 'label' must be STRING (like 'text'), got value type 9"
