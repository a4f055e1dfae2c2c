"""Agent semantics over real unix sockets: request handling, keepalives, errors, order."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest
from hostile import BAD_POINT, BlockingEcho, drive_agent
from standin import Peer, decode_responses, kind, options, request
from udf_handlers import BatchEcho, Fails, Recorder, SometimesSuspends, ThreadedEcho

from aioudf import (
    BlockingHandler,
    ConnectionFailed,
    EdgeType,
    Handler,
    InitError,
    Point,
    RestoreError,
    UnixServer,
)
from aioudf._pb import udf_pb2 as pb
from aioudf.runtime._output import Emitter, OutputQueue
from aioudf.testing import DataPoint, Kapacitor
from aioudf.wire._frames import encode_frame
from aioudf.wire._messages import DataMessage
from aioudf.wire._protocol import UDFConnection

INFO = request(info=pb.InfoRequest())


def init(**values: Any) -> bytes:
    return request(init=pb.InitRequest(options=options(**values), taskID="task", nodeID="n1"))


def point(t: int, **fields: float) -> bytes:
    return request(point=pb.Point(name="cpu", time=t, group="g", fieldsDouble=fields))


def keepalive(t: int) -> bytes:
    return request(keepalive=pb.KeepaliveRequest(time=t))


@pytest.fixture
async def serve(
    socket_path: Path,
) -> AsyncIterator[Callable[..., Any]]:
    """Start a UnixServer for a handler class; yields a function returning connected peers."""
    servers: list[UnixServer] = []
    peers: list[Peer] = []

    async def start(factory: Callable[[], Handler], **agent_options: Any) -> Callable[[], Any]:
        server = UnixServer(factory, socket_path, grace=1, **agent_options)
        await server.start()
        servers.append(server)

        async def connect() -> Peer:
            peer = await Peer.unix(socket_path)
            peers.append(peer)
            return peer

        return connect

    yield start
    for peer in peers:
        await peer.close()
    for server in servers:
        await server.shutdown()


async def test_every_request_gets_its_reply(serve: Any) -> None:
    connect = await serve(Recorder)
    peer = await connect()
    await peer.send(
        INFO,
        init(label="x"),
        request(restore=pb.RestoreRequest(snapshot=b"40")),
        point(1, v=1.0),
        keepalive(99),
        point(2, v=2.0),
        request(snapshot=pb.SnapshotRequest()),
    )
    await peer.half_close()
    responses = await peer.receive_all()
    by_kind: dict[str, list[pb.Response]] = {}
    for response in responses:
        by_kind.setdefault(kind(response), []).append(response)

    (info,) = by_kind["info"]
    assert info.info.wants == pb.STREAM and info.info.provides == pb.STREAM
    assert list(info.info.options["label"].valueTypes) == [pb.STRING]
    assert [r.init.success for r in by_kind["init"]] == [True]
    assert [r.restore.success for r in by_kind["restore"]] == [True]
    assert [r.keepalive.time for r in by_kind["keepalive"]] == [99]
    # Restored count 40, plus the two points received before the snapshot.
    assert [r.snapshot.snapshot for r in by_kind["snapshot"]] == [b"42"]
    points = [r.point for r in by_kind["point"]]
    assert [(p.name, p.time, p.tags["label"]) for p in points[:2]] == [
        ("cpu", 1, "x"),
        ("cpu", 2, "x"),
    ]
    # stop() ran after the input ended, and what it emitted was delivered.
    assert points[2].name == "stopped" and points[2].fieldsInt["count"] == 42
    assert "error" not in by_kind


async def test_info_only_connection(serve: Any) -> None:
    connect = await serve(Recorder)
    peer = await connect()
    await peer.send(INFO)
    await peer.half_close()
    responses = await peer.receive_all()
    # Info answered; stop() is not called without a successful Init.
    assert [kind(r) for r in responses] == ["info"]


async def test_snapshot_reflects_every_point_received_before_it(serve: Any) -> None:
    connect = await serve(Recorder)
    peer = await connect()
    await peer.send(init(), *(point(i, v=float(i)) for i in range(2000)))
    await peer.send(request(snapshot=pb.SnapshotRequest()))
    snapshot = await peer.receive_kind("snapshot")
    assert snapshot.snapshot.snapshot == b"2000"


async def test_batches_round_trip(serve: Any) -> None:
    connect = await serve(BatchEcho)
    peer = await connect()
    begin = pb.BeginBatch(name="cpu", group="host=a", tags={"host": "a"}, size=0, byName=True)
    end = pb.EndBatch(name="cpu", group="host=a", tmax=20, tags={"host": "a"}, byName=True)
    await peer.send(
        init(),
        request(begin=begin),
        point(10, v=1.0),
        point(20, v=2.0),
        request(end=end),
    )
    await peer.half_close()
    responses = [r for r in await peer.receive_all() if kind(r) != "init"]
    assert [kind(r) for r in responses] == ["begin", "point", "point", "end"]
    assert responses[0].begin.size == 2  # emit_batch sets the size
    assert responses[0].begin.group == "host=a" and responses[0].begin.byName
    assert [r.point.time for r in responses[1:3]] == [10, 20]
    assert responses[3].end == end


class Gate(Handler):
    """Holds every point until the test opens the gate."""

    opened: asyncio.Event

    async def point(self, point: Point) -> None:
        await self.opened.wait()
        await self.emit(point)


class ThreadGate(BlockingHandler):
    """The same, blocking a worker thread instead of awaiting."""

    opened: threading.Event
    threads: ClassVar[list[int]]

    def point(self, point: Point) -> None:
        self.threads.append(threading.get_ident())
        assert self.opened.wait(timeout=30), "the test never opened the gate"
        self.emit(point)


class HoldsFrom(Handler):
    """Emits each point at once, but holds from point ``held`` on until the gate opens."""

    held: ClassVar[int]
    opened: asyncio.Event

    async def point(self, point: Point) -> None:
        if point.time >= self.held:
            await self.opened.wait()
        await self.emit(point)


async def test_output_goes_out_while_a_later_point_is_held(serve: Any) -> None:
    # Points read together are handled in one run, and what the run emits
    # is written at its end; a handler that suspends part way must not hold
    # back what the points before it produced (Kapacitor would see nothing
    # until the slow call returns).
    class Held(HoldsFrom):
        held = 4
        opened = asyncio.Event()

    connect = await serve(Held)
    peer = await connect()
    await peer.send(init())
    assert (await peer.receive_kind("init")).init.success
    await peer.send(*(point(t, v=float(t)) for t in range(1, 7)))
    early = [await peer.receive() for _ in range(3)]
    assert [r.point.time for r in early if r] == [1, 2, 3]
    Held.opened.set()
    await peer.half_close()
    assert [r.point.time for r in await peer.receive_all()] == [4, 5, 6]


class ThreadHoldsFrom(BlockingHandler):
    """HoldsFrom's blocking twin: its worker thread waits from point ``held`` on."""

    held: ClassVar[int]
    opened: threading.Event

    def point(self, point: Point) -> None:
        if point.time >= self.held:
            assert self.opened.wait(timeout=30), "the test never opened the gate"
        self.emit(point)


async def test_a_blocking_handlers_output_goes_out_while_its_thread_is_held(serve: Any) -> None:
    # The points read together go to the worker thread as one run; what the
    # thread emits rides on the run's end (one wake-up of the loop a run),
    # but not only: Kapacitor gets the first points' output while a later
    # point blocks the thread (a sweep every few milliseconds while a run
    # is in flight hands it over).
    class Held(ThreadHoldsFrom):
        held = 4
        opened = threading.Event()

    connect = await serve(Held)
    peer = await connect()
    await peer.send(init())
    assert (await peer.receive_kind("init")).init.success
    await peer.send(*(point(t, v=float(t)) for t in range(1, 7)))
    try:
        early = [await peer.receive() for _ in range(3)]
    finally:
        Held.opened.set()
    assert [r.point.time for r in early if r] == [1, 2, 3]
    await peer.half_close()
    assert [r.point.time for r in await peer.receive_all()] == [4, 5, 6]


_COUNTED: contextvars.ContextVar[int] = contextvars.ContextVar("counted", default=0)


class CountsInItsContext(Handler):
    """Emits each point with the count a context variable holds and the task it ran in."""

    tasks: ClassVar[set[asyncio.Task[Any] | None]] = set()

    async def point(self, point: Point) -> None:
        self.tasks.add(asyncio.current_task())
        if point.time % 2:  # anyio needs to know its task, and a thread hop suspends
            await anyio.to_thread.run_sync(time.sleep, 0)
            self.tasks.add(asyncio.current_task())
        count = _COUNTED.get() + 1  # counted after the suspension, or before it
        _COUNTED.set(count)
        point.fieldsDouble["count"] = count
        await self.emit(point)


async def test_a_handler_runs_in_its_task_and_context_wherever_input_arrives(
    serve: Any,
) -> None:
    # Bytes are decoded in the transport's callback, points handled by the
    # connection's dispatcher: whether a point arrives while the agent
    # waits or not, and whether it suspends or not, a handler sees one
    # task, one context (what it set in a context variable stays set), and
    # anyio works.
    connect = await serve(CountsInItsContext)
    peer = await connect()
    await peer.send(init())
    assert (await peer.receive_kind("init")).init.success
    counts = []
    for t in range(1, 7):
        await peer.send(point(t, v=1.0))  # one read at a time, each while the agent waits
        answer = await peer.receive_kind("point")
        counts.append((answer.point.time, answer.point.fieldsDouble["count"]))
    assert counts == [(t, float(t)) for t in range(1, 7)]
    assert len(CountsInItsContext.tasks) == 1 and None not in CountsInItsContext.tasks


@pytest.mark.parametrize("max_backlog", [7, 10_000])
async def test_order_is_kept_whether_or_not_a_handler_suspends(
    serve: Any, max_backlog: int
) -> None:
    # Bytes are decoded where they arrive and a run of points is dispatched
    # without a task switch while handlers return at once; every suspension
    # (a cancellation inside the handler too) hands what was emitted to the
    # writer: nothing is lost, reordered or held back, with a backlog far
    # smaller than one write (decoding stops at its bound and resumes) or not.
    connect = await serve(SometimesSuspends, max_backlog=max_backlog)
    peer = await connect()
    await peer.send(init())
    assert (await peer.receive_kind("init")).init.success
    await peer.send(*(point(t, v=float(t)) for t in range(1, 201)), keepalive(5))
    await peer.half_close()
    responses = await peer.receive_all()
    assert [r.point.time for r in responses if kind(r) == "point"] == list(range(1, 201))
    assert [r.keepalive.time for r in responses if kind(r) == "keepalive"] == [5]


async def test_keepalive_is_answered_while_an_async_handler_awaits(serve: Any) -> None:
    class Held(Gate):
        opened = asyncio.Event()

    connect = await serve(Held)
    peer = await connect()
    await peer.send(init(), point(1, v=1.0), point(2, v=2.0), keepalive(7))
    # The handler is still awaiting inside point(): the keepalive, queued
    # behind two points, is answered anyway (possibly even before Init's reply).
    answers = sorted(
        ((kind(r), r.keepalive.time) for r in [await peer.receive(), await peer.receive()] if r),
    )
    assert answers == [("init", 0), ("keepalive", 7)]
    Held.opened.set()
    first, second = await peer.receive(), await peer.receive()
    assert first is not None and second is not None
    assert [first.point.time, second.point.time] == [1, 2]


async def test_keepalive_behind_many_points_is_answered_while_the_first_is_held(
    serve: Any,
) -> None:
    # One write of more points than are decoded at a time, then a keepalive:
    # while the first point's call waits, the rest of the write is decoded
    # (up to the backlog's bound) and the keepalive answered.
    class Held(Gate):
        opened = asyncio.Event()

    connect = await serve(Held)
    peer = await connect()
    await peer.send(init())
    assert (await peer.receive_kind("init")).init.success
    await peer.send(*(point(t, v=float(t)) for t in range(1, 301)), keepalive(11))
    answer = await peer.receive()
    assert answer is not None and (kind(answer), answer.keepalive.time) == ("keepalive", 11)
    Held.opened.set()
    await peer.half_close()
    assert [r.point.time for r in await peer.receive_all()] == list(range(1, 301))


async def test_keepalive_is_answered_while_a_blocking_handler_runs_in_a_thread(
    serve: Any,
) -> None:
    class Held(ThreadGate):
        opened = threading.Event()
        threads: ClassVar[list[int]] = []

    connect = await serve(Held)
    peer = await connect()
    await peer.send(init(), point(1, v=1.0), point(2, v=2.0), keepalive(8), keepalive(9))
    answers = [await peer.receive() for _ in range(3)]
    assert sorted((kind(a), a.keepalive.time) for a in answers if a) == [
        ("init", 0),
        ("keepalive", 8),
        ("keepalive", 9),
    ]
    Held.opened.set()
    points = [await peer.receive(), await peer.receive()]
    assert [p.point.time for p in points if p] == [1, 2]
    assert Held.threads and threading.get_ident() not in Held.threads


class Busy(Handler):
    """Computes for 1 ms in point() without ever awaiting: a CPU-bound async handler."""

    seen: ClassVar[list[int]] = []
    started = asyncio.Event()

    async def point(self, point: Point) -> None:
        self.started.set()
        deadline = time.perf_counter() + 0.001
        while time.perf_counter() < deadline:
            pass
        self.seen.append(point.time)


async def test_a_handler_that_never_awaits_does_not_starve_other_connections(
    serve: Any,
) -> None:
    connect = await serve(Busy)
    busy = await connect()
    await busy.send(init(), *(point(i, v=1.0) for i in range(1000)))
    await Busy.started.wait()
    # While the first connection's backlog (a second of work) is processed,
    # a second connection is served: the dispatcher yields the event loop
    # (once its 2 ms slice is over, checked every 16 points) instead of
    # only once its backlog is empty.
    other = await connect()
    await other.send(init(), keepalive(5))
    assert kind(await other.receive_kind("keepalive")) == "keepalive"
    assert len(Busy.seen) < 1000
    await busy.half_close()
    await busy.receive_all()
    assert Busy.seen == list(range(1000))


async def test_blocking_handler_keeps_order_over_many_points(serve: Any) -> None:
    connect = await serve(ThreadedEcho)
    peer = await connect()
    await peer.send(init(), *(point(i, v=float(i)) for i in range(3000)))
    await peer.half_close()
    times = [r.point.time for r in await peer.receive_all() if kind(r) == "point"]
    assert times == list(range(3000))


async def test_handler_exception_ends_only_its_connection(serve: Any) -> None:
    connect = await serve(Fails)
    bad, good = await connect(), await connect()
    await good.send(init(in_="point"), point(1, v=1.0))
    await bad.send(init(in_="point"), point(1, v=1.0), point(2, boom=1.0), point(3, v=3.0))
    responses = await bad.receive_all()
    # The point before the failure was delivered, then the error, then EOF.
    assert [kind(r) for r in responses] == ["init", "point", "error"]
    assert responses[1].point.time == 1
    assert responses[2].error.error == (
        "Fails.point() failed handling Point: ValueError: bad value at t=2"
    )
    # The other connection is unaffected and keeps working.
    await good.send(point(2, v=2.0))
    await good.half_close()
    assert [r.point.time for r in await good.receive_all() if kind(r) == "point"] == [1, 2]
    # And the server still accepts new connections.
    fresh = await connect()
    await fresh.send(INFO)
    assert (await fresh.receive_kind("info")).info.wants == pb.STREAM


@pytest.mark.parametrize(
    ("where", "requests", "error"),
    [
        ("init", [], "Fails.init() failed handling InitRequest: RuntimeError: init exploded"),
        (
            "snapshot",
            [request(snapshot=pb.SnapshotRequest())],
            "Fails.snapshot() failed handling SnapshotRequest: KeyError: 'no state'",
        ),
        (
            "restore",
            [request(restore=pb.RestoreRequest(snapshot=b"s"))],
            "Fails.restore() failed handling RestoreRequest: OSError: disk gone",
        ),
    ],
)
async def test_exception_in_each_method_becomes_an_error_response(
    serve: Any, where: str, requests: list[bytes], error: str
) -> None:
    connect = await serve(Fails)
    peer = await connect()
    await peer.send(init(in_=where), *requests)
    responses = await peer.receive_all()
    assert kind(responses[-1]) == "error"
    assert responses[-1].error.error == error


async def test_init_error_is_a_failed_init_not_a_crash(serve: Any) -> None:
    class Picky(Handler):
        async def init(self, request: pb.InitRequest) -> None:
            raise InitError("scale must be >= 1.0")

        async def point(self, point: Point) -> None:
            await self.emit(point)

    connect = await serve(Picky)
    peer = await connect()
    await peer.send(init())
    reply = await peer.receive_kind("init")
    assert not reply.init.success and reply.init.error == "scale must be >= 1.0"
    # Data after a failed Init is a protocol error, not silently processed.
    await peer.send(point(1, v=1.0))
    error = await peer.receive_kind("error")
    assert error.error.error.startswith("protocol error: unexpected Point after a failed Init")


async def test_invalid_options_fail_init_with_the_reason(serve: Any) -> None:
    connect = await serve(Recorder)
    peer = await connect()
    await peer.send(init(label=3))
    reply = await peer.receive_kind("init")
    assert not reply.init.success
    assert reply.init.error == "option 'label' must be STRING (like 'text'), got INT"


async def test_restore_error_is_a_failed_restore(serve: Any) -> None:
    class NoRestore(Handler):
        async def restore(self, snapshot: bytes) -> None:
            raise RestoreError(f"cannot read {len(snapshot)} bytes")

    connect = await serve(NoRestore)
    peer = await connect()
    await peer.send(init(), request(restore=pb.RestoreRequest(snapshot=b"abc")))
    reply = await peer.receive_kind("restore")
    assert not reply.restore.success and reply.restore.error == "cannot read 3 bytes"


async def test_snapshot_must_return_bytes(serve: Any) -> None:
    class Wrong(Handler):
        async def snapshot(self) -> bytes:
            return "text"  # type: ignore[return-value]

    connect = await serve(Wrong)
    peer = await connect()
    await peer.send(init(), request(snapshot=pb.SnapshotRequest()))
    error = await peer.receive_kind("error")
    assert error.error.error == (
        "Wrong.snapshot() failed handling SnapshotRequest: "
        "TypeError: snapshot() must return bytes, not str"
    )


async def test_batch_sent_to_a_stream_handler(serve: Any) -> None:
    connect = await serve(Recorder)
    peer = await connect()
    await peer.send(init(), request(begin=pb.BeginBatch(name="cpu")))
    error = await peer.receive_kind("error")
    assert error.error.error == (
        "protocol error: Recorder wants a STREAM edge and cannot take BeginBatch"
    )


async def test_protocol_error_after_data_loses_nothing(serve: Any) -> None:
    connect = await serve(Recorder)
    peer = await connect()
    garbage = encode_frame(b"\xff\xff\xff\xff")
    await peer.send(init(), *(point(i, v=1.0) for i in range(100)), garbage, point(100, v=1.0))
    responses = await peer.receive_all()
    assert [r.point.time for r in responses if kind(r) == "point"] == list(range(100))
    assert kind(responses[-1]) == "error"
    assert responses[-1].error.error.startswith(
        "protocol error: frame 102 (4 bytes) is not a valid Request message"
    )


@pytest.mark.parametrize("before", [100, 1500], ids=["one-run", "many-runs"])
@pytest.mark.parametrize("handler", [Recorder, ThreadedEcho], ids=["async", "blocking"])
async def test_a_point_that_does_not_parse_ends_the_connection_after_those_before_it(
    serve: Any, handler: type[Handler], before: int
) -> None:
    # A blocking point() gets its Points parsed on its own thread, in runs
    # of up to 512: the same points go out and the same error names the
    # same frame (the Init is frame 1) as when the loop parses them.
    connect = await serve(handler)
    peer = await connect()
    after = (point(before + 1 + i, v=1.0) for i in range(100))
    await peer.send(init(), *(point(i, v=1.0) for i in range(before)), BAD_POINT, *after)
    responses = await peer.receive_all()
    assert [r.point.time for r in responses if kind(r) == "point"] == list(range(before))
    assert kind(responses[-1]) == "error"
    assert responses[-1].error.error.startswith(
        f"protocol error: frame {before + 2} (6 bytes) is not a valid Request message: "
    )


async def test_a_point_that_does_not_parse_is_named_wherever_the_runs_to_the_thread_end() -> None:
    # The runs a blocking handler's thread is handed (up to 512 requests)
    # end inside the runs of Points decoded together (64): a bad Point
    # anywhere around the first runs' ends is named by its own frame.
    points = [point(i, v=1.0) for i in range(560)]
    for before in range(470, 560):
        stream = init() + b"".join(points[:before]) + BAD_POINT + points[0]
        outcome = await drive_agent(BlockingEcho(), [stream])
        assert outcome.failure is not None
        assert outcome.failure.startswith(f"protocol error: frame {before + 2} (6 bytes) "), before
        assert len([r for r in outcome.responses if kind(r) == "point"]) == before


async def test_oversized_frame_is_refused(serve: Any) -> None:
    connect = await serve(Recorder, max_frame_size=1024)
    peer = await connect()
    await peer.send(
        init(), point(1, v=1.0), request(restore=pb.RestoreRequest(snapshot=b"x" * 2000))
    )
    responses = await peer.receive_all()
    assert [kind(r) for r in responses] == ["init", "point", "error"]
    assert responses[-1].error.error == (
        "protocol error: frame of 2006 bytes exceeds the maximum frame size of 1024 bytes"
    )


class RestoresAnything(Handler):
    restored: ClassVar[list[int]] = []

    async def point(self, point: Point) -> None:
        await self.emit(point)

    async def restore(self, snapshot: bytes) -> None:
        self.restored.append(len(snapshot))


async def test_a_request_larger_than_the_read_ahead_is_read_whole(serve: Any) -> None:
    # The transport pauses while a MiB of input waits undecoded; the rest of
    # one larger request (a snapshot restored) is not waiting, it is needed.
    connect = await serve(RestoresAnything)
    peer = await connect()
    await peer.send(init())
    assert (await peer.receive_kind("init")).init.success
    snapshot = bytes(range(256)) * (3 << 12)  # 3 MiB
    await peer.send(request(restore=pb.RestoreRequest(snapshot=snapshot)), point(1, v=1.0))
    assert (await peer.receive_kind("restore")).restore.success
    assert (await peer.receive_kind("point")).point.time == 1
    assert RestoresAnything.restored == [len(snapshot)]


async def test_truncated_stream_is_an_error(serve: Any) -> None:
    connect = await serve(Recorder)
    peer = await connect()
    await peer.send(init(), point(1, v=1.0)[:-3])
    await peer.half_close()
    responses = await peer.receive_all()
    assert kind(responses[-1]) == "error"
    assert "stream ended inside a frame" in responses[-1].error.error


async def test_handler_can_emit_from_its_own_task(serve: Any) -> None:
    class Ticker(Handler):
        """Emits on its own schedule, not in reply to a request."""

        tick = asyncio.Event()

        async def init(self, request: pb.InitRequest) -> None:
            self.task = asyncio.create_task(self.run())

        async def run(self) -> None:
            await self.tick.wait()
            await self.emit(Point(name="tick", time=1))

        async def stop(self) -> None:
            await self.task

    connect = await serve(Ticker)
    peer = await connect()
    await peer.send(init())
    await peer.receive_kind("init")
    Ticker.tick.set()
    tick = await peer.receive_kind("point")
    assert tick.point.name == "tick"


async def test_many_connections_each_get_a_fresh_handler(serve: Any) -> None:
    created: list[Recorder] = []

    def factory() -> Recorder:
        created.append(Recorder())
        return created[-1]

    connect = await serve(factory)
    peers = [await connect() for _ in range(20)]
    for n, peer in enumerate(peers):
        await peer.send(init(label=f"c{n}"), *(point(i, v=1.0) for i in range(n + 1)))
    for peer in peers:
        await peer.half_close()
    results = await asyncio.gather(*(peer.receive_all() for peer in peers))
    for n, responses in enumerate(results):
        points = [r.point for r in responses if kind(r) == "point" and r.point.name == "cpu"]
        assert [p.time for p in points] == list(range(n + 1))
        assert {p.tags["label"] for p in points} == {f"c{n}"}
    assert len({id(h) for h in created}) == 20
    assert all(h.stopped for h in created)


def test_plain_function_in_an_async_handler_is_refused_at_definition() -> None:
    with pytest.raises(TypeError, match=r"point\(\) is a plain function: make it 'async def'"):

        class Wrong(Handler):
            def point(self, point: Point) -> None:  # type: ignore[override]
                pass


def test_edge_types_are_normalised() -> None:
    class B(Handler):
        wants = 1  # type: ignore[assignment]

    assert B.wants is EdgeType.BATCH


async def test_a_handler_overriding_emit_sees_every_emitted_message() -> None:
    class Stamping(Handler):
        """Overrides emit() to stamp what goes out; point() emits through it."""

        async def point(self, point: Point) -> None:
            await self.emit(point)

        def emit(self, message: DataMessage) -> Awaitable[None]:
            if isinstance(message, Point):
                message.tags["stamped"] = "yes"
            return super().emit(message)

    result = await Kapacitor(Stamping).run(
        points=[DataPoint("cpu", {"v": float(i)}, time=i) for i in range(3)]
    )
    assert [p.tags for p in result.points] == [{"stamped": "yes"}] * 3


async def test_a_threads_frames_go_before_the_error_response_and_none_after_it() -> None:
    conn = UDFConnection()
    output = OutputQueue()
    emitter = Emitter(output, asyncio.get_running_loop(), conn)

    def emit_in_a_thread(message: DataMessage) -> BaseException | None:
        # Joined without letting the loop run: the frame waits in the
        # emitter, its move into the output still scheduled.
        raised: list[BaseException] = []

        def run() -> None:
            try:
                emitter.emit(message)
            except BaseException as exc:
                raised.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
        return raised[0] if raised else None

    assert emit_in_a_thread(Point(name="before")) is None
    emitter.end(partial(conn.fail, "handler broke"))
    refused = emit_in_a_thread(Point(name="after"))
    assert isinstance(refused, ConnectionFailed)
    await asyncio.sleep(0)  # the scheduled move runs: nothing is left to move
    assert [kind(r) for r in decode_responses(output.take())] == ["point", "error"]
    # And a closed queue takes nothing more.
    output.close()
    output.put_many([b"late"])
    assert output.take() == b""


@pytest.mark.parametrize("fill", ["put", "put_many", "emit"])
async def test_the_writer_wakes_a_producer_waiting_for_room_and_one_waiting_for_empty(
    fill: str,
) -> None:
    # written() sets its events only when someone may wait (once a read from
    # Kapacitor, it must cost little): whichever way the queue filled, a
    # producer waiting for room resumes once the writer has made some, and a
    # hand-over waiting for the output to empty once it is empty.
    conn = UDFConnection()
    conn.receive_data(request(init=pb.InitRequest()))
    assert len(conn.next_requests()) == 1
    conn.send_init_result()
    output = OutputQueue(limit=64)
    if fill == "emit":
        emitter = Emitter(output, asyncio.get_running_loop(), conn)
        await emitter.emit(Point(name="small"))
        room = asyncio.ensure_future(emitter.emit(Point(name="x" * 64)))
    else:
        output.put(b"a" * 10)
        if fill == "put":
            assert not output.put(b"b" * 60)
        else:
            output.put_many([b"b" * 60])
        room = asyncio.ensure_future(output.wait_space())
    empty = asyncio.ensure_future(output.wait_empty())
    await asyncio.sleep(0)  # both are waiting now
    assert not room.done() and not empty.done()

    first = len(output.take())
    output.written(first - 20)  # part of it: below the limit, not empty
    await asyncio.sleep(0)
    assert room.done() and not empty.done()
    output.written(20)
    await asyncio.wait_for(empty, 5)
    assert output.size == 0
