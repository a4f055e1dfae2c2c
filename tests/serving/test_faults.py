"""Broken peers and misbehaving handlers: each ends one connection, clearly, and loses nothing.

Broken peers: a client that disconnects mid-frame, mid-batch or while the UDF
is writing; one that half-closes with a lot still in flight (everything
received is answered before the UDF closes its side); one that never reads
(what it sends piles up in the kernel, not in the UDF's memory).

Misbehaving handlers: an exception in any method, sync or async; a stop()
that never returns (cancelled after ``stop_timeout``, logged, and the process
still exits); a server shut down with a blocking call stuck in its thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hostile import Echo, drive_agent
from logcapture import capturing
from serverproc import ServerProcess
from standin import Peer, decode_responses, kind, options, request
from udf_handlers import BatchEcho, Recorder, ThreadedEcho

import aioudf.runtime._agent
import aioudf.serving._server
from aioudf import (
    Agent,
    BaseHandler,
    BeginBatch,
    BlockingHandler,
    ConnectionFailed,
    EdgeType,
    EmitError,
    EndBatch,
    Handler,
    InfoResponse,
    InitRequest,
    Option,
    Point,
    UnixServer,
)
from aioudf._pb import udf_pb2 as pb
from aioudf.runtime._logs import ContextFilter
from aioudf.testing import MemoryPipe
from aioudf.wire._frames import FrameDecoder, encode_frame
from aioudf.wire._protocol import UDFConnection

INIT = request(init=pb.InitRequest())


def point(t: int, group: str = "") -> bytes:
    return request(point=pb.Point(name="cpu", time=t, group=group, fieldsInt={"t": t}))


class Logs(logging.Handler):
    """The aioudf log, with a way to await a line (records may come from any thread)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(ContextFilter())  # records carry conn, task and node
        self.lines: list[str] = []
        self.records: list[logging.LogRecord] = []
        self._waiters: list[tuple[str, asyncio.Future[str], asyncio.AbstractEventLoop]] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage()
        self.lines.append(line)
        self.records.append(record)
        for text, future, loop in self._waiters:
            if text in line:
                loop.call_soon_threadsafe(_resolve, future, line)

    async def wait_for(self, text: str, timeout: float = 30) -> str:
        """The first line containing ``text``, logged before or after the call."""
        for line in self.lines:
            if text in line:
                return line
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        self._waiters.append((text, future, loop))
        return await asyncio.wait_for(future, timeout)


def _resolve(future: asyncio.Future[str], line: str) -> None:
    if not future.done():
        future.set_result(line)


@pytest.fixture
def logs() -> Iterator[Logs]:
    with capturing(Logs()) as handler:
        yield handler


Factory = Callable[[], BaseHandler]


class Served:
    """A UnixServer under test, with the handlers it created."""

    def __init__(self, server: UnixServer, handlers: list[BaseHandler], path: Path) -> None:
        self.server = server
        self.handlers = handlers
        self.path = path

    async def connect(self) -> Peer:
        return await Peer.unix(self.path)

    async def idle(self, timeout: float = 30) -> None:
        """Wait until every connection has been torn down."""
        await asyncio.wait_for(self.server._idle.wait(), timeout)

    async def still_serves(self) -> None:
        """A fresh connection gets its replies: the server survived."""
        peer = await self.connect()
        await peer.send(request(keepalive=pb.KeepaliveRequest(time=4)))
        await peer.half_close()
        responses = await peer.receive_all()
        assert [(kind(r), r.keepalive.time) for r in responses] == [("keepalive", 4)]
        await peer.close()


@pytest.fixture
async def serve(socket_path: Path) -> AsyncIterator[Callable[..., Awaitable[Served]]]:
    started: list[UnixServer] = []

    async def start(cls: type[BaseHandler], **agent_options: Any) -> Served:
        handlers: list[BaseHandler] = []

        def factory() -> BaseHandler:
            handlers.append(cls())
            return handlers[-1]

        server = UnixServer(factory, socket_path, grace=1, **agent_options)
        await server.start()
        started.append(server)
        return Served(server, handlers, socket_path)

    yield start
    for server in started:
        await server.shutdown()


# ---- broken peers ------------------------------------------------------------------------


@pytest.mark.parametrize("read_first", [True, False], ids=["replies-read", "replies-unread"])
async def test_disconnect_mid_frame(serve: Any, logs: Logs, read_first: bool) -> None:
    served = await serve(Recorder)
    peer = await served.connect()
    await peer.send(INIT, point(1), point(2)[:-4])  # the second point cut short
    if read_first:
        assert (await peer.receive_kind("point")).point.time == 1
    await peer.close()
    line = await logs.wait_for("ended with an error")
    if read_first:
        # A close mid-frame is a truncated stream, logged with the cause.
        assert "protocol error: stream ended inside a frame: received 13 of 17 body bytes" in line
    else:
        # With replies left unread, the kernel may report a reset first.
        assert "stream ended inside a frame" in line or "connection lost" in line
    await served.idle()
    # A failed connection is torn down without stop(): nothing follows an error.
    (handler,) = served.handlers
    assert isinstance(handler, Recorder) and not handler.stopped
    await served.still_serves()


async def test_disconnect_mid_batch(serve: Any, logs: Logs) -> None:
    served = await serve(BatchEcho)
    peer = await served.connect()
    await peer.send(INIT, request(begin=pb.BeginBatch(name="cpu", group="host=a")), point(1))
    await peer.receive_kind("init")
    await peer.close()
    line = await logs.wait_for("stream ended inside the batch")
    assert "for group 'host=a' (BeginBatch without EndBatch)" in line
    await served.idle()
    fresh = await served.connect()
    await fresh.send(INIT, request(begin=pb.BeginBatch(group="g")), point(5, "g"))
    await fresh.send(request(end=pb.EndBatch(group="g")))
    await fresh.half_close()
    assert [kind(r) for r in await fresh.receive_all()] == ["init", "begin", "point", "end"]
    await fresh.close()


class Fanout(Handler):
    """Emits many large points for each point received: the UDF writes a lot."""

    async def point(self, point: Point) -> None:
        for n in range(2000):
            await self.emit(Point(name="fan", time=n, tags={"pad": "x" * 200}))


async def test_disconnect_while_the_udf_is_writing(serve: Any, logs: Logs) -> None:
    served = await serve(Fanout, max_output=16 * 1024)
    peer = await served.connect()
    await peer.send(INIT, point(1), point(2))
    await peer.receive_kind("point")  # the UDF is writing now, and will be for a while
    await peer.close()
    line = await logs.wait_for("ended with an error: connection lost")
    assert "while writing" in line or "while reading" in line
    await served.idle()
    # The handler's emit() failing then is the disconnect, not a handler bug.
    assert not [line for line in logs.lines if "Fanout.point() failed" in line]
    await served.still_serves()


async def test_info_requests_left_unread_are_a_lost_connection_not_an_internal_error(
    serve: Any, logs: Logs
) -> None:
    # Found by fuzzing: several Info requests, then a close without reading a
    # reply. The first reply written meets the closed socket; the requests
    # behind it must not be handled as if the connection were still there
    # (their replies raised StateError: "internal error handling InfoRequest").
    served = await serve(Recorder)
    infos = request(info=pb.InfoRequest()) * 5
    for _ in range(20):
        peer = await served.connect()
        await peer.send(infos)
        await peer.close()
    await served.idle()
    assert not [r for r in logs.records if r.levelno >= logging.ERROR], logs.lines
    assert not [line for line in logs.lines if "internal error" in line]
    await served.still_serves()


@pytest.mark.parametrize(
    "handler", [Recorder, ThreadedEcho, BatchEcho], ids=["async", "blocking", "batch"]
)
async def test_half_close_delivers_every_response_before_closing(
    serve: Any, handler: type[BaseHandler]
) -> None:
    # 30,000 points (and batches) sent and the write side shut before reading
    # a single byte: far more than every buffer on the way can hold, so the
    # UDF must keep working after Kapacitor's half-close, and write it all.
    served = await serve(handler, max_output=64 * 1024, max_backlog=500)
    peer = await served.connect()
    n = 30_000
    if handler is BatchEcho:
        frames = []
        for b in range(n // 100):
            group = f"b={b}"
            frames.append(request(begin=pb.BeginBatch(name="cpu", group=group)))
            frames += [point(b * 100 + i, group) for i in range(100)]
            frames.append(request(end=pb.EndBatch(name="cpu", group=group)))
    else:
        frames = [point(t) for t in range(n)]

    async def send_then_half_close() -> None:
        await peer.send(INIT, *frames)
        await peer.half_close()

    sender = asyncio.create_task(send_then_half_close())
    responses = await peer.receive_all(timeout=60)
    await sender
    points = [r.point.time for r in responses if kind(r) == "point" and r.point.name == "cpu"]
    assert points == list(range(n))
    if handler is Recorder:
        # What stop() emitted after the half-close came last, then EOF.
        assert responses[-1].point.name == "stopped"
        assert responses[-1].point.fieldsInt["count"] == n
    if handler is BatchEcho:
        assert [kind(r) for r in responses].count("end") == n // 100
    assert not [r for r in responses if kind(r) == "error"]


def test_process_udf_delivers_everything_after_stdin_closes(python_env: dict[str, str]) -> None:
    n = 50_000
    stdin = INIT + b"".join(point(t) for t in range(n))
    done = subprocess.run(
        [sys.executable, "-m", "aioudf", "run", "udf_handlers:Recorder", "--max-output", "4096"],
        input=stdin,
        capture_output=True,
        env=python_env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()
    responses = decode_responses(done.stdout)
    assert [r.point.time for r in responses if r.point.name == "cpu"] == list(range(n))
    assert responses[-1].point.name == "stopped"


class CountingWriter:
    """A ByteWriter over a MemoryPipe that records the largest single write."""

    def __init__(self, pipe: MemoryPipe) -> None:
        self.pipe = pipe
        self.written = 0
        self.largest_write = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)
        self.largest_write = max(self.largest_write, len(data))
        self.pipe.write(data)

    async def drain(self) -> None:
        await self.pipe.drain()

    def close(self) -> None:
        self.pipe.close()

    async def wait_closed(self) -> None:
        await self.pipe.wait_closed()


async def test_keepalive_flood_from_a_peer_that_never_reads_is_not_buffered() -> None:
    # Keepalives are answered by the reader itself, outside the handler's
    # backlog. A peer sending them without ever reading the replies must make
    # the agent stop reading, not queue replies without end. 200,000
    # keepalives are ~2.6 MB of replies; the agent may hold max_output plus
    # the replies to one read.
    max_output, read_size, count = 64 * 1024, 16 * 1024, 200_000
    stream = b"".join(request(keepalive=pb.KeepaliveRequest(time=t)) for t in range(count))
    to_udf, from_udf = MemoryPipe(limit=len(stream)), MemoryPipe(limit=64 * 1024)
    to_udf.write(stream)
    to_udf.close()
    writer = CountingWriter(from_udf)
    agent = Agent(Echo(), to_udf, writer, max_output=max_output, read_size=read_size)
    run = asyncio.create_task(agent.run())
    received = bytearray()
    while chunk := await asyncio.wait_for(from_udf.read(1 << 16), 30):
        received += chunk
    await asyncio.wait_for(run, 30)
    # Every keepalive answered, in order: nothing lost by pausing.
    replies = decode_responses(bytes(received))
    assert [r.keepalive.time for r in replies] == list(range(count))
    # At most: a queue just under its limit, plus the replies to one read
    # (a read may complete one frame begun in the read before).
    frame = len(request(keepalive=pb.KeepaliveRequest(time=count)))
    assert writer.largest_write < max_output + read_size + frame


async def test_a_client_that_never_reads_gets_backpressure_not_buffering() -> None:
    # Over a real socket pair: the client sends 200,000 points (about 6 MB)
    # and reads nothing. The UDF must stop producing once its output queue
    # and the kernel's buffers are full, stop reading once its backlog is full,
    # and so push back on the client, whose writes then wait: memory stays
    # bounded on both sides of the UDF. Then the client reads, and gets all.
    n, max_output, max_backlog = 200_000, 64 * 1024, 100
    udf_sock, client_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    udf_reader, udf_writer = await asyncio.open_unix_connection(sock=udf_sock)
    client_reader, client_writer = await asyncio.open_unix_connection(sock=client_sock)
    handler = Recorder()
    agent = Agent(handler, udf_reader, udf_writer, max_output=max_output, max_backlog=max_backlog)
    run = asyncio.create_task(agent.run())

    async def send() -> None:
        client_writer.write(INIT)
        for t in range(n):
            client_writer.write(point(t))
            if t % 1000 == 999:
                await client_writer.drain()
        client_writer.write_eof()

    sender = asyncio.create_task(send())

    # The whole pipeline stalls: output full, handler waiting in emit(),
    # backlog full, reader paused. The agent has no event for that state, so
    # the flag is polled; a pipeline that never stalls fails by the timeout.
    async def stalled() -> None:
        while not agent._reader_paused:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    await asyncio.wait_for(stalled(), 30)
    assert not sender.done(), "the client could send everything: the UDF buffered it all"
    # What the UDF processed is bounded by its limits and the kernel's
    # buffers, nowhere near what the client tried to send.
    assert handler.count < n // 10, handler.count
    assert agent._output.size < max_output + 1024
    # Now the client reads: everything arrives, in order, nothing lost.
    decoder = FrameDecoder()
    times: list[int] = []
    while data := await asyncio.wait_for(client_reader.read(1 << 20), 60):
        decoder.feed(data)
        while (frame := decoder.next_frame()) is not None:
            response = pb.Response.FromString(bytes(frame))
            if response.HasField("point") and response.point.name == "cpu":
                times.append(response.point.time)
    await sender
    await asyncio.wait_for(run, 30)
    client_writer.close()
    assert times == list(range(n))


# ---- misbehaving handlers -------------------------------------------------------------------


class Raises(Handler):
    """Raises in the method named by the ``in`` option; echoes data otherwise."""

    wants = EdgeType.BATCH
    provides = EdgeType.BATCH
    where: ClassVar[str] = ""

    async def info(self) -> InfoResponse:
        if self.where == "info":
            raise RuntimeError("info exploded")
        return await super().info()

    async def begin_batch(self, begin: BeginBatch) -> None:
        if self.where == "begin_batch":
            raise LookupError(f"no such group {begin.group!r}")
        await self.emit(begin)

    async def point(self, point: Point) -> None:
        await self.emit(point)

    async def end_batch(self, end: EndBatch) -> None:
        if self.where == "end_batch":
            raise ZeroDivisionError("division by zero")
        await self.emit(end)

    async def stop(self) -> None:
        await self.emit_batch(BeginBatch(name="last"), [Point(name="last words")], EndBatch())
        if self.where == "stop":
            raise RuntimeError("stop exploded")


BATCH = [
    request(begin=pb.BeginBatch(name="cpu", group="g")),
    point(1, "g"),
    request(end=pb.EndBatch(name="cpu", group="g")),
]


@pytest.mark.parametrize(
    ("where", "stream", "delivered", "error"),
    [
        (
            "info",
            [request(info=pb.InfoRequest())],
            [],
            "Raises.info() failed handling InfoRequest: RuntimeError: info exploded",
        ),
        (
            "begin_batch",
            [INIT, *BATCH],
            ["init"],
            "Raises.begin_batch() failed handling BeginBatch: LookupError: no such group 'g'",
        ),
        (
            "end_batch",
            [INIT, *BATCH],
            ["init", "begin", "point"],
            "Raises.end_batch() failed handling EndBatch: ZeroDivisionError: division by zero",
        ),
        (
            "stop",
            [INIT, *BATCH],
            ["init", "begin", "point", "end", "begin", "point", "end"],
            "Raises.stop() failed: RuntimeError: stop exploded",
        ),
    ],
)
async def test_exception_in_any_method_is_an_error_response(
    serve: Any,
    logs: Logs,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
    stream: list[bytes],
    delivered: list[str],
    error: str,
) -> None:
    monkeypatch.setattr(Raises, "where", where)
    served = await serve(Raises)
    peer = await served.connect()
    await peer.send(*stream)
    await peer.half_close()
    responses = await peer.receive_all()
    # What was emitted before the exception is delivered, then the error.
    assert [kind(r) for r in responses] == [*delivered, "error"]
    assert responses[-1].error.error == error
    # The log has the same text and the traceback.
    logged = [r for r in logs.lines if error in r]
    assert logged
    await served.idle()
    await served.still_serves()


class Unwrapped(Handler):
    """Provides BATCH, emits each point alone; with ``.wrap()`` it catches that, batches it."""

    provides = EdgeType.BATCH
    wrap = Option(bool, default=False)

    async def point(self, point: Point) -> None:
        try:
            await self.emit(point)
        except EmitError:
            if not self.wrap:
                raise
            await self.emit_batch(BeginBatch(name="w"), [point], EndBatch(name="w"))


async def test_an_emit_out_of_turn_is_a_clear_error_that_ends_only_its_connection(
    serve: Any, logs: Logs
) -> None:
    served = await serve(Unwrapped)
    bad, good = await served.connect(), await served.connect()
    await good.send(request(init=pb.InitRequest(options=options(wrap=True))), point(1))
    await bad.send(INIT, point(1), point(2))
    await bad.half_close()
    responses = await bad.receive_all()
    # Nothing of the refused point went out; the error names the mistake.
    assert [kind(r) for r in responses] == ["init", "error"]
    error = (
        "Unwrapped.point() failed handling Point: EmitError: cannot emit a Point outside "
        "a batch: the UDF provides a BATCH edge (emit a BeginBatch first)"
    )
    assert responses[-1].error.error == error
    # Logged in one line, without a traceback.
    (record,) = [r for r in logs.records if r.getMessage() == error]
    assert record.exc_info is None
    # The handler that caught the EmitError goes on, on its own connection.
    await good.send(point(2))
    await good.half_close()
    answered = await good.receive_all()
    assert [kind(r) for r in answered] == ["init", *["begin", "point", "end"] * 2]
    await served.idle()
    await served.still_serves()


class EmitsFromItsThread(Handler):
    """Starts a thread of its own at Init that emits points until emit() refuses."""

    refused: ClassVar[list[BaseException]] = []
    threads: ClassVar[list[threading.Thread]] = []

    async def init(self, request: InitRequest) -> None:
        started = threading.Event()

        def run() -> None:
            try:
                n = 0
                while True:
                    self.emit(Point(name="from the thread", time=n))
                    n += 1
                    started.set()
            except Exception as exc:  # what ends the loop
                self.refused.append(exc)
                started.set()

        thread = threading.Thread(target=run, daemon=True)
        self.threads.append(thread)
        thread.start()
        await asyncio.to_thread(started.wait)


async def test_a_threads_emits_never_follow_the_error_response(serve: Any) -> None:
    EmitsFromItsThread.refused.clear()
    EmitsFromItsThread.threads.clear()
    served = await serve(EmitsFromItsThread, max_output=1 << 30)
    peer = await served.connect()
    await peer.send(INIT)
    await peer.receive_kind("point")  # the thread is emitting
    await peer.send(encode_frame(b"\xff\xff\xff"))  # a violation: the connection fails
    responses = await peer.receive_all()
    assert kind(responses[-1]) == "error", [kind(r) for r in responses[-3:]]
    assert "protocol error" in responses[-1].error.error
    assert {kind(r) for r in responses[:-1]} <= {"init", "point"}
    await served.idle()
    (thread,) = EmitsFromItsThread.threads
    await asyncio.to_thread(thread.join, 30)
    # The thread was told, by the error emit() raises once the connection ended.
    (refused,) = EmitsFromItsThread.refused
    assert isinstance(refused, ConnectionFailed) and "has failed (protocol error" in str(refused)
    await served.still_serves()


class BlockingRaises(BlockingHandler):
    """A blocking handler raising in its worker thread, at point 700 or in init()."""

    fail_init: ClassVar[bool] = False

    def init(self, request: InitRequest) -> None:
        if self.fail_init:
            raise PermissionError("no access to the model file")

    def point(self, point: Point) -> None:
        assert threading.current_thread() is not threading.main_thread()
        if point.time == 700:
            raise ValueError("cannot score t=700")
        self.emit(point)


async def test_blocking_handler_raising_in_its_thread(serve: Any) -> None:
    served = await serve(BlockingRaises)
    peer = await served.connect()
    # One run of points handed to the thread at once: the failure lands in
    # the middle of a run, and the points before it still go out first.
    await peer.send(INIT, *(point(t) for t in range(1000)))
    responses = await peer.receive_all()
    assert [r.point.time for r in responses if kind(r) == "point"] == list(range(700))
    assert responses[-1].error.error == (
        "BlockingRaises.point() failed handling Point: ValueError: cannot score t=700"
    )
    await served.still_serves()


async def test_blocking_init_raising_in_its_thread(serve: Any) -> None:
    class FailsInit(BlockingRaises):
        fail_init = True

    served = await serve(FailsInit)
    peer = await served.connect()
    await peer.send(INIT, point(1))
    (error,) = await peer.receive_all()
    assert error.error.error == (
        "FailsInit.init() failed handling InitRequest: PermissionError: no access to the model file"
    )


class HangsInStop(Handler):
    """Its stop() emits, then waits forever."""

    async def point(self, point: Point) -> None:
        await self.emit(point)

    async def stop(self) -> None:
        await self.emit(Point(name="before hanging"))
        await asyncio.Event().wait()


class HangsInStopThread(BlockingHandler):
    """Its stop() blocks its worker thread until the test releases it."""

    release: ClassVar[threading.Event]

    def point(self, point: Point) -> None:
        self.emit(point)

    def stop(self) -> None:
        self.emit(Point(name="before hanging"))
        self.release.wait(timeout=60)


@pytest.mark.parametrize("handler", [HangsInStop, HangsInStopThread], ids=["async", "blocking"])
async def test_stop_that_hangs_is_cancelled_after_the_grace_timeout(
    serve: Any, logs: Logs, handler: type[BaseHandler]
) -> None:
    HangsInStopThread.release = threading.Event()
    served = await serve(handler, stop_timeout=0.2)
    peer = await served.connect()
    await peer.send(INIT, point(1), point(2))
    await peer.half_close()
    try:
        responses = await peer.receive_all()
    finally:
        HangsInStopThread.release.set()
    # Everything, including what stop() emitted before hanging, then EOF: the
    # connection ends normally for Kapacitor.
    assert [(r.point.name, r.point.time) for r in responses if kind(r) == "point"] == [
        ("cpu", 1),
        ("cpu", 2),
        ("before hanging", 0),
    ]
    assert not [r for r in responses if kind(r) == "error"]
    line = await logs.wait_for("did not return within")
    assert line.endswith(f"{handler.__name__}.stop() did not return within 0.2 s and was cancelled")
    await served.idle()


@pytest.mark.parametrize("handler", ["StopHangsInThread", "StopHangsOnLoop"])
def test_process_udf_exits_even_if_stop_never_returns(
    python_env: dict[str, str], handler: str
) -> None:
    # Kapacitor waits for a process UDF to exit once stdin is closed. A
    # blocking stop() stuck in its worker thread would keep the interpreter
    # from exiting; the UDF gives up on it instead (the timeout turns a hang
    # into a failure).
    done = subprocess.run(
        [sys.executable, "-m", "aioudf", "run", f"udf_handlers:{handler}", "--stop-timeout", "0.3"],
        input=INIT + point(1),
        capture_output=True,
        env=python_env,
        timeout=30,
    )
    stderr = done.stderr.decode()
    assert done.returncode == 0, stderr
    assert [kind(r) for r in decode_responses(done.stdout)] == ["init", "point"]
    assert f"{handler}.stop() did not return within 0.3 s and was cancelled" in stderr
    if handler == "StopHangsInThread":
        assert "1 blocking handler call(s) still running in worker threads" in stderr


async def test_second_sigint_exits_despite_a_blocking_call_stuck_in_its_thread(
    python_env: dict[str, str], socket_path: Path
) -> None:
    # SleepsInThread sleeping an hour: the first SIGINT waits for it (grace),
    # the second cancels the connection, and the process must then exit
    # although the thread is still asleep.
    server = await ServerProcess.start(
        python_env, "udf_handlers:SleepsInThread", socket_path, "--grace", "600"
    )
    try:
        peer = await Peer.unix(socket_path)
        await peer.send(request(init=pb.InitRequest(options=options(seconds=3600.0))), point(1))
        await peer.receive_kind("init")
        # Not before the call is in its thread: an answered Init does not
        # mean the point behind it has been handed over yet.
        await server.wait_for_log("sleeping 3600 s in a worker thread")
        server.process.send_signal(signal.SIGINT)
        await server.wait_for_log("waiting up to 600 s for 1 connection(s)")
        server.process.send_signal(signal.SIGINT)
        responses = await peer.receive_all()
        assert kind(responses[-1]) == "error"
        assert await server.exit_code() == 0
        assert any("still running in worker threads" in line for line in server.log)
        assert not socket_path.exists()
    finally:
        await server.kill()


# ---- bugs in the agent itself end one connection, truthfully ------------------------------------


async def test_unexpected_server_error_closes_that_connection(
    socket_path: Path, logs: Logs, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bug that makes the agent fail before it starts (here: its first
    # construction raises). The connection used to be left open forever
    # (Kapacitor waiting on it, its socket leaking); it is now closed, with
    # an ErrorResponse if the peer is still there to read it.
    built: list[Agent] = []

    class FirstFails(Agent):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if not built:
                built.append(self)
                raise RuntimeError("a bug in the agent")
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(aioudf.serving._server, "Agent", FirstFails)
    async with UnixServer(Recorder, socket_path) as server:
        broken = await Peer.unix(socket_path)
        with contextlib.suppress(ConnectionResetError):
            responses = await broken.receive_all()  # a hang fails by its timeout
            assert [r.error.error for r in responses] == [
                "internal error in the UDF server: RuntimeError: a bug in the agent"
            ]
        await logs.wait_for("failed unexpectedly")
        assert [
            getattr(r, "conn", None) for r in logs.records if "unexpectedly" in r.getMessage()
        ] == ["1"]
        await asyncio.wait_for(server._idle.wait(), 30)
        await broken.close()
        healthy = await Peer.unix(socket_path)
        await healthy.send(request(info=pb.InfoRequest()))
        assert kind(await healthy.receive_kind("info")) == "info"
        await healthy.close()


async def test_unexpected_error_in_the_dispatcher_names_itself(
    monkeypatch: pytest.MonkeyPatch, logs: Logs
) -> None:
    # Whatever goes wrong inside the agent while handling a request (here the
    # option parser failing in a way it never should), Kapacitor is told it
    # was an internal error, not that the server is shutting down.
    def broken(*args: object) -> None:
        raise RuntimeError("a bug in the option parser")

    monkeypatch.setattr(aioudf.runtime._agent, "parse_options", broken)
    outcome = await drive_agent(Recorder(), [request(info=pb.InfoRequest()), INIT, point(1)])
    assert [kind(r) for r in outcome.responses] == ["info", "error"]
    assert outcome.failure == (
        "internal error in the UDF agent: RuntimeError('a bug in the option parser')"
    )
    (record,) = [r for r in logs.records if r.getMessage().startswith("internal error handling")]
    assert record.getMessage() == "internal error handling InitRequest"
    assert getattr(record, "conn", None) == "hostile"  # the agent's name


async def test_unexpected_error_decoding_a_socket_read_ends_that_connection(
    serve: Any, logs: Logs, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A socket's bytes are decoded in the transport's callback, not in a task
    # of the connection: a bug there still ends that connection alone, says
    # so to Kapacitor, and is logged with the connection it happened on.
    served = await serve(Recorder)
    real = UDFConnection.receive_data

    def broken(conn: Any, data: Any) -> None:
        if conn.init_accepted:
            raise RuntimeError("a bug in the decoder")
        real(conn, data)

    monkeypatch.setattr(UDFConnection, "receive_data", broken)
    peer = await served.connect()
    await peer.send(INIT)
    assert kind(await peer.receive_kind("init")) == "init"
    await peer.send(point(1))
    responses = await peer.receive_all()
    assert [r.error.error for r in responses] == [
        "internal error in the UDF agent: RuntimeError('a bug in the decoder')"
    ]
    (record,) = [r for r in logs.records if r.getMessage() == "reader failed"]
    assert getattr(record, "conn", None) == "1"
    await peer.close()
    await served.still_serves()
