"""Hand-over of live connections between two servers in one process.

A Kapacitor stand-in (tests/standin.py) streams points to a server; part way
through, a second server takes everything over (``start(takeover=True)``),
and the rest of the stream goes on over the same connection. The responses
must be those of a run that never moved: nothing lost, nothing twice, in
order, with the handler's per-group state carried across.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from logcapture import capturing
from moving_avg import MovingAvg
from standin import Peer, kind, options, request
from udf_handlers import BatchEcho

from aioudf import Handler, InitError, RestoreError, UnixServer
from aioudf._pb import udf_pb2 as pb
from aioudf.runtime._logs import ContextFilter
from aioudf.serving._handover import Channel, Observer, control_path

INIT = request(init=pb.InitRequest(taskID="avg", nodeID="udf1", options=options(field="v", size=3)))


def point(t: int, host: str) -> bytes:
    return request(
        point=pb.Point(
            name="cpu",
            time=t,
            group=f"host={host}",
            tags={"host": host},
            fieldsDouble={"v": t * t % 7},
        )
    )


def stream(n: int) -> bytes:
    return b"".join(point(t, host) for t in range(n) for host in ("a", "b"))


def averages(responses: list[pb.Response]) -> list[tuple[int, str, float]]:
    return [
        (r.point.time, r.point.tags["host"], r.point.fieldsDouble["avg"])
        for r in responses
        if kind(r) == "point"
    ]


async def unmoved_run(path: Path, data: bytes) -> list[pb.Response]:
    async with UnixServer(MovingAvg, path, handover=False):
        peer = await Peer.unix(path)
        await peer.send(INIT, data)
        await peer.half_close()
        return await peer.receive_all()


@contextlib.asynccontextmanager
async def old_and_new(
    path: Path, old_code: type[Handler], new_code: type[Handler], observer: Observer | None = None
) -> AsyncIterator[tuple[UnixServer, UnixServer]]:
    """A started server of ``old_code`` and one of ``new_code`` to take over; both shut down."""
    old = UnixServer(old_code, path, observer=observer)
    await old.start()
    new = UnixServer(new_code, path, observer=observer)
    try:
        yield old, new
    finally:
        await new.shutdown()
        await old.shutdown()


async def rest_of_stream(peer: Peer, data: bytes) -> list[pb.Response]:
    """Send the rest of the stream, close our side, and take every response."""
    await peer.send(data)
    await peer.half_close()
    return await peer.receive_all()


class Counting(Observer):
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.started = asyncio.Event()

    def handover_started(self) -> None:
        self.started.set()

    def connection_handed_over(self, task_id: str, node_id: str = "") -> None:
        self.events.append(("handed over", task_id))

    def connection_taken_over(self, task_id: str, node_id: str = "") -> None:
        self.events.append(("taken over", task_id))


@pytest.mark.parametrize("cut", [0, 1, 40])
async def test_connection_moves_mid_stream_and_continues_unchanged(
    short_tmp: Path, cut: int
) -> None:
    data = stream(30)
    # The move happens while Kapacitor's bytes are in flight: the first part
    # ends at a frame's end (0), inside its header (1) or inside its body (40).
    split = len(INIT) + len(stream(12)) + cut
    expected = await unmoved_run(short_tmp / "ref.sock", data)

    path = short_tmp / "udf.sock"
    seen = Counting()
    async with old_and_new(path, MovingAvg, MovingAvg, seen) as (old, new):
        peer = await Peer.unix(path)
        await peer.send((INIT + data)[:split])
        first = [await peer.receive() for _ in range(1 + 2 * 12)]  # Init and 24 points
        await new.start(takeover=True)
        await old.handed_over.wait()
        assert sorted(seen.events) == [("handed over", "avg"), ("taken over", "avg")]
        rest = await rest_of_stream(peer, (INIT + data)[split:])
    got = [r for r in first if r is not None] + rest
    assert averages(got) == averages(expected)
    assert [kind(r) for r in got] == [kind(r) for r in expected]
    # The socket files belong to the new server, which removed them.
    assert not path.exists() and not Path(control_path(str(path))).exists()


async def test_hand_over_log_lines_name_the_connection_and_the_new_process(
    short_tmp: Path,
) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep()
    keep.addFilter(ContextFilter())
    path = short_tmp / "udf.sock"
    with capturing(keep):
        async with old_and_new(path, MovingAvg, MovingAvg) as (old, new):
            peer = await Peer.unix(path)
            await peer.send(INIT, stream(2))
            await peer.receive_kind("init")
            await new.start(takeover=True)
            await old.handed_over.wait()
            await rest_of_stream(peer, b"")
    (moved,) = [r for r in records if r.getMessage() == "task 'avg' handed over"]
    assert (moved.conn, moved.task, moved.node) == ("1", "avg", "udf1")  # type: ignore[attr-defined]
    # The old server's last line says where its work went, not that serving stopped.
    assert f"handed over to pid {os.getpid()}; exiting" in [r.getMessage() for r in records]


async def test_new_server_answers_new_connections_and_old_one_stops(short_tmp: Path) -> None:
    path = short_tmp / "udf.sock"
    async with UnixServer(MovingAvg, path) as old:
        new = UnixServer(MovingAvg, path)
        await new.start(takeover=True)
        try:
            peer = await Peer.unix(path)
            await peer.send(request(info=pb.InfoRequest()))
            assert kind(await peer.receive_kind("info")) == "info"
            assert old.accepted == 0 and new.accepted == 1
        finally:
            await new.shutdown()


class RefusesRestore(MovingAvg):
    async def restore(self, snapshot: bytes) -> None:
        raise RestoreError("this version cannot read that state")


class RefusesInit(MovingAvg):
    async def init(self, request: object) -> None:
        raise InitError("this version needs another option")


@pytest.mark.parametrize(
    ("new_code", "reason"),
    [(RefusesRestore, "this version cannot read that state"), (RefusesInit, "another option")],
)
async def test_refused_connection_stays_with_the_old_code(
    short_tmp: Path, caplog: pytest.LogCaptureFixture, new_code: type[MovingAvg], reason: str
) -> None:
    data = stream(10)
    expected = await unmoved_run(short_tmp / "ref.sock", data)
    path = short_tmp / "udf.sock"
    async with old_and_new(path, MovingAvg, new_code) as (old, new):
        peer = await Peer.unix(path)
        await peer.send(INIT, data[: len(data) // 2])
        first = [await peer.receive() for _ in range(1 + 10)]
        with caplog.at_level(logging.WARNING, logger="aioudf"):
            await new.start(takeover=True)
            await old.handed_over.wait()
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("task 'avg' stays with this process" in w and reason in w for w in warnings)
        # New connections go to the new server; the old one serves the refused one.
        assert old.active == 1
        rest = await rest_of_stream(peer, data[len(data) // 2 :])
    assert averages([r for r in first if r is not None] + rest) == averages(expected)


async def test_takeover_with_nothing_running_starts_afresh(short_tmp: Path) -> None:
    path = short_tmp / "udf.sock"
    server = UnixServer(MovingAvg, path)
    await server.start(takeover=True)
    try:
        assert path.exists()
        peer = await Peer.unix(path)
        await peer.send(request(info=pb.InfoRequest()))
        assert kind(await peer.receive_kind("info")) == "info"
    finally:
        await server.shutdown()
    assert not path.exists()


def batch(n: int, group: str) -> bytes:
    return b"".join(
        [request(begin=pb.BeginBatch(name="cpu", group=group, size=3))]
        + [
            request(point=pb.Point(name="cpu", time=n * 10 + i, group=group, fieldsInt={"i": i}))
            for i in range(3)
        ]
        + [request(end=pb.EndBatch(name="cpu", group=group, tmax=n * 10 + 2))]
    )


async def test_connection_inside_a_batch_moves_at_the_batch_end(short_tmp: Path) -> None:
    init = request(init=pb.InitRequest(taskID="batches"))
    data = batch(1, "a") + batch(2, "b") + batch(3, "a")
    async with UnixServer(BatchEcho, short_tmp / "ref.sock", handover=False):
        peer = await Peer.unix(short_tmp / "ref.sock")
        await peer.send(init, data)
        await peer.half_close()
        expected = await peer.receive_all()

    path = short_tmp / "udf.sock"
    seen = Counting()
    async with old_and_new(path, BatchEcho, BatchEcho, seen) as (_, new):
        peer = await Peer.unix(path)
        inside = len(batch(1, "a")) + len(batch(2, "b")) // 2  # in the middle of batch 2
        await peer.send(init, data[:inside])
        first = [await peer.receive() for _ in range(1 + 5)]  # Init, then batch 1
        taking_over = asyncio.create_task(new.start(takeover=True))
        await seen.started.wait()  # the new server listens; the old one is offering
        assert not taking_over.done()  # ... waiting for the end of batch 2
        await peer.send(data[inside:])
        await taking_over
        assert sorted(seen.events) == [("handed over", "batches"), ("taken over", "batches")]
        rest = await rest_of_stream(peer, b"")
    got = [r for r in first if r is not None] + rest
    assert got == expected


async def test_taker_dying_part_way_leaves_everything_served_here(short_tmp: Path) -> None:
    path = short_tmp / "udf.sock"
    async with UnixServer(MovingAvg, path) as old:
        peer = await Peer.unix(path)
        await peer.send(INIT, stream(2))
        assert len([await peer.receive() for _ in range(1 + 4)]) == 5
        # A taker that gets the sockets, then dies before taking a connection.
        channel = await Channel.connect(control_path(str(path)))
        await channel.send("takeover", pid=0)
        (await channel.receive("listener")).close_fds()
        await channel.send("listening")
        (await channel.receive("channel")).close_fds()
        channel.close()
        # The socket answers (the old server took it back), and the live
        # connection goes on where it was.
        other = await Peer.unix(path)
        await other.send(request(info=pb.InfoRequest()))
        assert kind(await other.receive_kind("info")) == "info"
        await peer.send(stream(3)[len(stream(2)) :])
        assert len([await peer.receive() for _ in range(2)]) == 2
        assert not old.handed_over.is_set()
