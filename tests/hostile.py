"""Hostile-input oracles, shared by tests/wire/test_fuzz.py (hypothesis) and fuzz/ (atheris).

Each ``check_*`` function takes raw material (bytes, cut points, request
lists), runs the real code on it, and raises ``AssertionError`` when the
result breaks the wire contract. The expected results come from independent
models written here from docs/protocol.md, never from the code under test:

* :func:`reference_frames` splits a whole stream into frames the slow,
  obvious way;
* :func:`expected_session` replays a list of requests through the ordering
  rules (Init once and first, batches not nested) and the echo handlers'
  behaviour, giving the replies Kapacitor must see and the exact error text.

The agent is driven in process over :class:`aioudf.testing.MemoryPipe` (one
pipe write per chunk, so chunk boundaries reach the agent exactly as cut), or
by the socket tests over a real :class:`aioudf.UnixServer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError
from standin import decode_responses

from aioudf import (
    Agent,
    BaseHandler,
    BeginBatch,
    BlockingHandler,
    ConnectionFailed,
    EndBatch,
    FrameDecoder,
    FrameError,
    FrameTooLarge,
    Handler,
    Option,
    Point,
    ProtocolError,
    encode_frame,
)
from aioudf._pb import udf_pb2 as pb
from aioudf.testing import MemoryPipe
from aioudf.wire import _frames
from aioudf.wire._protocol import Ending, State, UDFConnection

#: Bounded time for one hostile connection: a hang becomes a failure.
HANG_TIMEOUT = 20.0

_UINT64_LIMIT = 1 << 64


# ---- frames -----------------------------------------------------------------


@dataclass
class ReferenceFrames:
    """What a stream holds: its complete frames, then why it stops, if it does."""

    bodies: list[bytes]
    error: str | None = None  # too_large, bad_varint, truncated_header, truncated_body
    size: int = 0  # the announced size (too_large with a complete header, truncated_body)
    received: int = 0  # body bytes present (truncated_body)
    header_bytes: int = 0  # header bytes present (truncated_header)


def reference_frames(stream: bytes, max_size: int) -> ReferenceFrames:
    """Split ``stream`` into frames one byte at a time, as docs/protocol.md words it.

    A header stops the stream as soon as the length it announces (even a lower
    bound, from an incomplete header) is above ``max_size``, when it runs past
    10 bytes, or when it encodes more than 64 bits.
    """
    bodies: list[bytes] = []
    pos = 0
    while pos < len(stream):
        value = shift = 0
        i = pos
        while True:
            if i - pos == 10:
                return ReferenceFrames(bodies, "bad_varint")
            if i == len(stream):
                return ReferenceFrames(bodies, "truncated_header", header_bytes=i - pos)
            byte = stream[i]
            value |= (byte & 0x7F) << shift
            shift += 7
            i += 1
            done = byte < 0x80
            if done and value >= _UINT64_LIMIT:
                return ReferenceFrames(bodies, "bad_varint")
            if value > max_size:
                return ReferenceFrames(bodies, "too_large", size=value if done else 0)
            if done:
                break
        if i + value > len(stream):
            return ReferenceFrames(bodies, "truncated_body", size=value, received=len(stream) - i)
        bodies.append(stream[i : i + value])
        pos = i + value
    return ReferenceFrames(bodies)


def cut(stream: bytes, cuts: Sequence[int]) -> list[bytes]:
    """``stream`` split at the given offsets (taken modulo its length, any order)."""
    if not stream:
        return []
    points = sorted({c % len(stream) for c in cuts} | {0, len(stream)})
    return [stream[a:b] for a, b in itertools.pairwise(points)]


@contextlib.contextmanager
def joining(join: bool) -> Iterator[None]:
    """The decoder as it is (``join``), or as if every chunk were large.

    Streams small enough to test are fed in chunks below the size up to
    which a chunk is joined with what is left of the last; ``join=False``
    takes the other way, the one a pipe's large reads take: each chunk kept
    as received, queued behind frames still waiting, a frame cut between two
    gathered apart.
    """
    saved = _frames._JOIN_MAX
    _frames._JOIN_MAX = saved if join else 0
    try:
        yield
    finally:
        _frames._JOIN_MAX = saved


def check_frame_decoder(
    stream: bytes, cuts: Sequence[int], max_size: int, hold: Sequence[bool] = ()
) -> None:
    """Decode ``stream`` cut at ``cuts``: same frames and same error as the reference.

    ``hold[i]`` true means chunk ``i + 1`` is fed before the frames of chunk
    ``i`` are taken (a caller that feeds again without draining first).
    Both ways of keeping chunks are checked under :func:`joining`.
    """
    expected = reference_frames(stream, max_size)
    decoder = FrameDecoder(max_size)
    got: list[bytes] = []
    error: FrameError | None = None
    chunks = cut(stream, cuts)
    try:
        for index, chunk in enumerate(chunks):
            decoder.feed(chunk)
            if index < len(hold) and hold[index] and index + 1 < len(chunks):
                continue
            while (body := decoder.next_frame()) is not None:
                got.append(bytes(body))
        decoder.feed_eof()
    except FrameError as exc:
        error = exc
    assert got == expected.bodies, (got, expected.bodies)
    check_frame_error(error, expected, max_size)
    if error is not None:
        # Errors are sticky: the stream cannot be resynchronised.
        for again in (decoder.next_frame, decoder.feed_eof, lambda: decoder.feed(b"\x01x")):
            raised: FrameError | None = None
            try:
                again()
            except FrameError as exc:
                raised = exc
            assert raised is not None, "a decoder in error accepted more input"
            assert str(raised) == str(error)


def check_frame_error(error: Exception | None, expected: ReferenceFrames, max_size: int) -> None:
    """``error`` is the one the reference predicts, with a message naming the cause."""
    if expected.error is None:
        assert error is None, f"unexpected error: {error}"
        return
    assert error is not None, f"expected a {expected.error} error, got none"
    text = str(error)
    if expected.error == "too_large":
        assert isinstance(error, FrameTooLarge), text
        assert text.endswith(f"exceeds the maximum frame size of {max_size} bytes"), text
        if expected.size:
            assert error.size == expected.size, text
    elif expected.error == "bad_varint":
        assert not isinstance(error, FrameTooLarge), text
        assert "is not a valid uvarint" in text, text
    elif expected.error == "truncated_header":
        assert text == (
            f"stream ended inside a frame header ({expected.header_bytes} header bytes received)"
        ), text
    else:
        assert text == (
            "stream ended inside a frame: received "
            f"{expected.received} of {expected.size} body bytes"
        ), text


@dataclass
class ReferenceRequests:
    """What a stream asks of the UDF side, by the rules of docs/protocol.md."""

    requests: list[Any]  # handed out, in order (keepalives apart)
    keepalives: list[int]  # times of the keepalives answered, in order
    error: str | None = None  # exact text of the ProtocolError, if one ends it
    error_prefix: str | None = None  # or its start (protobuf's own words follow)


def reference_requests(stream: bytes, max_size: int) -> ReferenceRequests:
    """Decode ``stream`` the slow, obvious way: whole frames, full Request parses.

    The order rules are applied here from docs/protocol.md: Info and Keepalive
    anywhere, Init once and first, batches not nested.
    """
    frames = reference_frames(stream, max_size)
    out = ReferenceRequests([], [])
    initialized = False
    batch: str | None = None
    for number, body in enumerate(frames.bodies, start=1):
        try:
            request = pb.Request.FromString(body)
        except Exception:
            out.error_prefix = (
                f"frame {number} ({len(body)} bytes) is not a valid Request message: "
            )
            return out
        kind = request.WhichOneof("message")
        if kind is None:
            out.error = f"frame {number} ({len(body)} bytes) is a Request that carries no message"
            return out
        message = getattr(request, kind)
        name = type(message).__name__.replace("Request", "")
        fault = None
        if kind == "keepalive":
            out.keepalives.append(message.time)
            continue
        if kind == "init":
            if initialized:
                fault = "after Init (Init may come only once)"
            initialized = True
        elif kind != "info" and not initialized:
            fault = "before Init"
        elif kind == "begin":
            if batch is not None:
                fault = f"while the batch for group {batch!r} is still open"
            batch = message.group
        elif kind == "end":
            if batch is None:
                fault = "without a BeginBatch"
            batch = None
        if fault is not None:
            out.error = f"unexpected {name} {fault} (frame {number})"
            return out
        out.requests.append(message)
    if frames.error is not None:
        out.error_prefix = ""  # the framing errors, checked by check_frame_decoder
    elif batch is not None:
        out.error = (
            f"stream ended inside the batch for group {batch!r} (BeginBatch without EndBatch)"
        )
    return out


def check_request_decoder(
    stream: bytes,
    cuts: Sequence[int],
    max_size: int,
    limits: Sequence[int] = (1,),
    *,
    raw_points: bool = False,
) -> None:
    """The connection hands out exactly the reference's requests, answers its
    keepalives, and raises its error, whatever the chunks and the run limits.

    ``limits`` are the run sizes asked of next_requests() in turn (the fast
    path decodes runs of points in place; a run of one is the slow path).
    ``raw_points``: runs of Points come as their bytes, parsed here as a
    blocking handler's thread parses them, a bad one raising the
    connection's ``undecodable_point()``. Both ways of keeping chunks are
    checked under :func:`joining`.
    """
    expected = reference_requests(stream, max_size)
    conn = UDFConnection(max_size)
    got: list[Any] = []
    error: ProtocolError | None = None
    turn = itertools.cycle(limits or (1,))
    try:
        for chunk in cut(stream, cuts):
            conn.receive_data(chunk)
            while requests := conn.next_requests(next(turn), raw_points=raw_points):
                first = conn.frames_decoded - len(requests) + 1  # a raw run's first frame
                for index, request in enumerate(requests):
                    if isinstance(request, bytes):
                        raw = request
                        try:
                            request = pb.Point.FromString(raw)
                        except DecodeError as exc:
                            raise conn.undecodable_point(raw, first + index, exc) from None
                    got.append(request)
                    answer_request(conn, request)
        conn.receive_eof()
    except ProtocolError as exc:
        error = exc
    assert got == expected.requests, (got, expected.requests)
    answered = [r.keepalive.time for r in decode_responses(conn.data_to_send())]
    assert answered == expected.keepalives, (answered, expected.keepalives)
    if expected.error is not None:
        assert error is not None and str(error) == expected.error, (error, expected.error)
    elif expected.error_prefix is not None:
        assert error is not None and str(error).startswith(expected.error_prefix), error
    else:
        assert error is None, error
        assert conn.state is State.CLOSED


def answer_request(
    conn: UDFConnection,
    request: Any,
    info: pb.InfoResponse | None = None,
    snapshot: bytes = b"",
) -> bytes:
    """What the echo handlers answer, through the connection's own replies."""
    kind = type(request)
    if kind is pb.InfoRequest:
        return conn.send_info(info or pb.InfoResponse())
    if kind is pb.InitRequest:
        return conn.send_init_result()
    if kind is pb.SnapshotRequest:
        return conn.send_snapshot(snapshot)
    if kind is pb.RestoreRequest:
        return conn.send_restore_result()
    return conn.send_data(request)


def drive_connection(
    chunks: Sequence[bytes],
    *,
    max_frame_size: int,
    info: pb.InfoResponse,
    limit: int = 256,
    move: bool = False,
) -> Outcome:
    """The echo handler's session over a bare :class:`UDFConnection`, no agent.

    Each request is answered as :class:`Echo` answers it (the snapshot is
    the number of points seen). With ``move``, the connection is exported and
    imported again at every chunk boundary where that is allowed, as a
    hand-over to another process would: the outcome must not change.
    """
    conn = UDFConnection(max_frame_size)
    out = bytearray()
    points = 0
    try:
        for chunk in chunks:
            conn.receive_data(chunk)
            while requests := conn.next_requests(limit):
                out += conn.data_to_send()
                for request in requests:
                    points += type(request) is pb.Point
                    out += answer_request(conn, request, info, str(points).encode())
            out += conn.data_to_send()
            if move and conn.can_export:
                conn = UDFConnection.from_state(conn.export_state())
        conn.receive_eof()
    except ProtocolError as exc:
        out += conn.data_to_send()
        out += conn.end(Ending.protocol(exc))
    return Outcome(decode_responses(bytes(out)), conn.failure)


# ---- handlers ---------------------------------------------------------------


class Echo(Handler):
    """Echoes every data message; its snapshot is the number of points seen.

    Declares one option of every value type, so hostile Init options reach the
    option parser. Takes both edges (begin_batch/end_batch are implemented),
    and emits what it takes: the hook of handlers whose class does not say
    their edge, so that only the nesting of what it emits is checked.
    """

    _aioudf_any_edge = True

    flag = Option()
    count = Option(int, default=0)
    ratio = Option(float, default=0.0)
    label = Option(str, default="")
    on = Option(bool, default=False)
    every = Option(datetime.timedelta, default=datetime.timedelta(0))
    pair = Option(str, float, repeated=True)

    def __init__(self) -> None:
        self.points = 0

    async def point(self, point: Point) -> None:
        self.points += 1
        await self.emit(point)

    async def begin_batch(self, begin: BeginBatch) -> None:
        await self.emit(begin)

    async def end_batch(self, end: EndBatch) -> None:
        await self.emit(end)

    async def snapshot(self) -> bytes:
        return str(self.points).encode()


class BlockingEcho(BlockingHandler):
    """:class:`Echo` as a blocking handler: every call runs in a worker thread."""

    _aioudf_any_edge = True

    flag = Option()
    count = Option(int, default=0)
    label = Option(str, default="")

    def __init__(self) -> None:
        self.points = 0

    def point(self, point: Point) -> None:
        self.points += 1
        self.emit(point)

    def begin_batch(self, begin: BeginBatch) -> None:
        self.emit(begin)

    def end_batch(self, end: EndBatch) -> None:
        self.emit(end)

    def snapshot(self) -> bytes:
        return str(self.points).encode()


# ---- one agent, in process ------------------------------------------------------


@dataclass
class Outcome:
    """What Kapacitor saw on one connection."""

    responses: list[pb.Response]
    failure: str | None  # ConnectionFailed.reason, or None for a clean end


async def drive_agent(
    handler: BaseHandler,
    chunks: Sequence[bytes],
    *,
    timeout: float = HANG_TIMEOUT,
    **agent_options: Any,
) -> Outcome:
    """Feed ``chunks`` then end of input to an agent; return its responses.

    A hang (the agent not finishing within ``timeout``) is an AssertionError.
    Anything but ConnectionFailed escaping ``Agent.run`` propagates.
    """
    to_udf, from_udf = MemoryPipe(), MemoryPipe()
    for chunk in chunks:
        to_udf.write(chunk)
    to_udf.close()
    agent = Agent(handler, to_udf, from_udf, name="hostile", **agent_options)

    async def collect() -> bytes:
        data = bytearray()
        while chunk := await from_udf.read(1 << 16):
            data += chunk
        return bytes(data)

    collector = asyncio.ensure_future(collect())
    failure: str | None = None
    try:
        await asyncio.wait_for(agent.run(), timeout)
    except ConnectionFailed as exc:
        failure = exc.reason
    except asyncio.TimeoutError:
        raise AssertionError(f"the agent did not finish within {timeout} s") from None
    finally:
        from_udf.close()
    output = await asyncio.wait_for(collector, timeout)
    return Outcome(decode_responses(output), failure)


#: Every way a hostile stream may legitimately end a connection, by its cause.
KNOWN_CAUSES = re.compile(
    r"protocol error: ("
    r"frame of (?:at least )?\d+ bytes exceeds the maximum frame size of \d+ bytes"
    r"|frame header at frame \d+ is not a valid uvarint \(.*\)"
    r"|stream ended inside a frame(: received \d+ of \d+ body bytes| header \(\d+ header bytes"
    r" received\))"
    r"|stream ended inside the batch for group .* \(BeginBatch without EndBatch\)"
    r"|frame \d+ \(\d+ bytes\) is not a valid Request message: .*"
    r"|frame \d+ \(\d+ bytes\) is a Request that carries no message"
    r"|unexpected \w+ (before Init|after Init \(Init may come only once\)"
    r"|without a BeginBatch|while the batch for group .* is still open) \(frame \d+\)"
    r"|unexpected \w+ after a failed Init \(.*\)"
    r")$",
    re.DOTALL,
)


def check_outcome(outcome: Outcome) -> None:
    """Invariants of any connection, whatever it was fed.

    A clean end has no ErrorResponse; a failed one ends with exactly one,
    carrying the reason, which names one of the known causes.
    """
    errors = [r for r in outcome.responses if r.WhichOneof("message") == "error"]
    if outcome.failure is None:
        assert not errors, f"ErrorResponse on a clean end: {errors}"
        return
    assert len(errors) == 1, f"expected one ErrorResponse, got {len(errors)}"
    assert outcome.responses[-1].WhichOneof("message") == "error", "output after the error"
    text = outcome.responses[-1].error.error
    assert text == outcome.failure, (text, outcome.failure)
    assert KNOWN_CAUSES.match(text), f"error does not name a known cause: {text!r}"


# ---- sessions: valid requests in any order, then a tail ---------------------------------

# A request is a tuple: (kind, argument). Kinds: info, init, keepalive (time),
# snapshot, restore (bytes), begin (group), point (time), end (group).
Step = tuple[str, Any]

#: How the stream ends after the requests.
TAILS = (
    "eof",  # clean end of input
    "partial",  # the first bytes of one more frame
    "garbage",  # a frame whose body is not a Request
    "empty",  # a frame with an empty body
    "oversized",  # a header announcing max_frame_size + 1 bytes
    "long_varint",  # a header of more than 10 bytes
    "at_max",  # a Restore whose frame body is exactly max_frame_size bytes
)

#: Bodies that are not valid Request messages, whatever comes before them.
#: A frame holding only a Point, whose name (b"\xff") is not UTF-8: it does
#: not parse, though its Request framing is sound (a Point of 3 bytes).
BAD_POINT_BODY = b"\x8a\x01\x03\x12\x01\xff"
BAD_POINT = encode_frame(BAD_POINT_BODY)

BAD_BODIES = (
    b"\xff\xff\xff\xff",  # field 0 / wire type 7
    b"\x8a\x01\x05\x0a",  # point announcing 5 bytes, holding 1
    b"\x0a\x05\x01",  # info announcing 5 bytes
    b"\x8a\x01\x02\x12\xff",  # point name that is not UTF-8 (wrong length too)
    BAD_POINT_BODY,
    b"\x1a\x02\x08",  # keepalive with a truncated varint
    b"\x0b",  # a group start that never ends
)


def request_frame(step: Step) -> bytes:
    """The framed Request for one step."""
    kind, arg = step
    if kind == "info":
        message = pb.Request(info=pb.InfoRequest())
    elif kind == "init":
        message = pb.Request(init=pb.InitRequest(taskID="t", nodeID="n"))
    elif kind == "keepalive":
        message = pb.Request(keepalive=pb.KeepaliveRequest(time=arg))
    elif kind == "snapshot":
        message = pb.Request(snapshot=pb.SnapshotRequest())
    elif kind == "restore":
        message = pb.Request(restore=pb.RestoreRequest(snapshot=arg))
    elif kind == "begin":
        message = pb.Request(begin=pb.BeginBatch(name="cpu", group=arg))
    elif kind == "point":
        message = pb.Request(point=pb.Point(name="cpu", time=arg, fieldsInt={"v": arg}))
    elif kind == "end":
        message = pb.Request(end=pb.EndBatch(name="cpu", group=arg, tmax=7))
    else:  # pragma: no cover - a bug in the strategy
        raise ValueError(kind)
    return encode_frame(message.SerializeToString())


def restore_frame_of_size(body_size: int) -> bytes:
    """A framed Restore whose body is exactly ``body_size`` bytes."""
    for padding in range(body_size, -1, -1):
        body = pb.Request(restore=pb.RestoreRequest(snapshot=b"s" * padding)).SerializeToString()
        if len(body) == body_size:
            return encode_frame(body)
    raise ValueError(f"no Restore body of {body_size} bytes")


def tail_bytes(tail: str, max_frame_size: int, arg: int = 0) -> bytes:
    """The bytes of a tail (``arg`` picks the bad body or where to cut)."""
    if tail == "eof":
        return b""
    if tail == "partial":
        # A point big enough for a two-byte header, cut anywhere inside.
        whole = pb.Request(point=pb.Point(name="c" * 200, time=arg))
        frame = encode_frame(whole.SerializeToString())
        return frame[: 1 + arg % (len(frame) - 1)]
    if tail == "garbage":
        return encode_frame(BAD_BODIES[arg % len(BAD_BODIES)])
    if tail == "empty":
        return encode_frame(b"")
    if tail == "oversized":
        return encode_frame(b"x" * (max_frame_size + 1))[: 10 + arg % 50]
    if tail == "long_varint":
        return b"\x80" * (11 + arg % 5)
    if tail == "at_max":
        return restore_frame_of_size(max_frame_size)
    raise ValueError(tail)  # pragma: no cover


@dataclass
class Expected:
    """What Kapacitor must see for a session."""

    replies: list[pb.Response] = field(default_factory=list)  # in order, keepalives apart
    keepalives: list[int] = field(default_factory=list)  # answered times, in order
    error: str | None = None  # exact text
    error_pattern: str | None = None  # or a regular expression, when the text quotes protobuf


def expected_session(
    steps: Sequence[Step],
    tail: str,
    tail_arg: int,
    max_frame_size: int,
    info: pb.InfoResponse,
) -> Expected:
    """Model of the echo handlers behind the protocol's ordering rules.

    ``info`` is the InfoResponse the handler must give.
    """
    out = Expected()
    initialized = False
    batch: str | None = None
    points = 0
    frame = 0

    def violation(what: str, when: str) -> Expected:
        out.error = f"protocol error: unexpected {what} {when} (frame {frame})"
        return out

    for kind, arg in steps:
        frame += 1
        if kind == "keepalive":
            out.keepalives.append(arg)
            continue
        if kind == "info":
            out.replies.append(pb.Response(info=info))
            continue
        if kind == "init":
            if initialized:
                return violation("Init", "after Init (Init may come only once)")
            initialized = True
            out.replies.append(pb.Response(init=pb.InitResponse(success=True)))
            continue
        name = {"snapshot": "Snapshot", "restore": "Restore", "begin": "BeginBatch"}.get(
            kind, {"point": "Point", "end": "EndBatch"}.get(kind, kind)
        )
        if not initialized:
            return violation(name, "before Init")
        if kind == "snapshot":
            snapshot = pb.SnapshotResponse(snapshot=str(points).encode())
            out.replies.append(pb.Response(snapshot=snapshot))
        elif kind == "restore":
            out.replies.append(pb.Response(restore=pb.RestoreResponse(success=True)))
        elif kind == "begin":
            if batch is not None:
                return violation("BeginBatch", f"while the batch for group {batch!r} is still open")
            batch = arg
            out.replies.append(pb.Response(begin=pb.BeginBatch(name="cpu", group=arg)))
        elif kind == "end":
            if batch is None:
                return violation("EndBatch", "without a BeginBatch")
            batch = None
            out.replies.append(pb.Response(end=pb.EndBatch(name="cpu", group=arg, tmax=7)))
        elif kind == "point":
            points += 1
            point = pb.Point(name="cpu", time=arg, fieldsInt={"v": arg})
            out.replies.append(pb.Response(point=point))
    frame += 1
    if tail == "partial":
        piece = tail_bytes(tail, max_frame_size, tail_arg)
        reference = reference_frames(piece, max_frame_size)
        if reference.error == "too_large":
            # The header alone (even unfinished) already announces too much.
            out.error_pattern = (
                re.escape("protocol error: frame of ")
                + r"(?:at least )?\d+"
                + re.escape(f" bytes exceeds the maximum frame size of {max_frame_size} bytes")
            )
        elif reference.error == "truncated_header":
            out.error = (
                "protocol error: stream ended inside a frame header "
                f"({reference.header_bytes} header bytes received)"
            )
        else:
            out.error = (
                "protocol error: stream ended inside a frame: received "
                f"{reference.received} of {reference.size} body bytes"
            )
    elif tail == "garbage":
        body = BAD_BODIES[tail_arg % len(BAD_BODIES)]
        out.error_pattern = (
            re.escape(f"protocol error: frame {frame} ({len(body)} bytes) is not a valid ")
            + re.escape("Request message: ")
            + ".+"
        )
        if not initialized and body.startswith(b"\x8a\x01"):
            # A frame shaped like a point, before Init: both faults are true,
            # and either may be reported first.
            before_init = f"protocol error: unexpected Point before Init (frame {frame})"
            out.error_pattern = f"(?:{out.error_pattern})|{re.escape(before_init)}"
    elif tail == "empty":
        out.error = f"protocol error: frame {frame} (0 bytes) is a Request that carries no message"
    elif tail == "oversized":
        size = max_frame_size + 1
        out.error = (
            f"protocol error: frame of {size} bytes exceeds the maximum frame size of "
            f"{max_frame_size} bytes"
        )
    elif tail == "long_varint":
        out.error = (
            f"protocol error: frame header at frame {frame} is not a valid uvarint "
            "(longer than 10 bytes)"
        )
    elif tail == "at_max":
        if not initialized:
            return violation("Restore", "before Init")
        out.replies.append(pb.Response(restore=pb.RestoreResponse(success=True)))
    if out.error is None and out.error_pattern is None and batch is not None:
        out.error = (
            f"protocol error: stream ended inside the batch for group {batch!r} "
            "(BeginBatch without EndBatch)"
        )
    return out


def session_stream(steps: Sequence[Step], tail: str, tail_arg: int, max_frame_size: int) -> bytes:
    return b"".join(map(request_frame, steps)) + tail_bytes(tail, max_frame_size, tail_arg)


def check_session(outcome: Outcome, expected: Expected) -> None:
    """The responses are exactly the model's: replies in order, keepalives, the error."""
    check_outcome(outcome)
    keepalives = [r.keepalive.time for r in outcome.responses if r.HasField("keepalive")]
    replies = [
        r for r in outcome.responses if r.WhichOneof("message") not in ("keepalive", "error")
    ]
    assert keepalives == expected.keepalives, (keepalives, expected.keepalives)
    assert replies == expected.replies, (replies, expected.replies)
    if expected.error is not None:
        assert outcome.failure == expected.error, (outcome.failure, expected.error)
    elif expected.error_pattern is not None:
        assert outcome.failure is not None and re.fullmatch(
            expected.error_pattern, outcome.failure, re.DOTALL
        ), outcome.failure
    else:
        assert outcome.failure is None, outcome.failure


HandlerFactory = Callable[[], BaseHandler]
