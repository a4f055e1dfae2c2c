"""Backpressure end to end: when Kapacitor stops reading, the UDF stops reading.

A UDF whose responses nobody reads must not keep accepting requests and pile
them (or their responses) up in memory: once its bounded queues are full it
stops reading its socket, the kernel's buffers fill, and the sender's writes
block. That is what keeps a socket UDF's memory flat when Kapacitor stalls.

Both tests talk to a real unix socket as Kapacitor would, knowing nothing of
the agent's internals: one against :class:`aioudf.UnixServer` serving the
``mirror`` example in this process, one against the example run as a socket
server in a child process, whose peak memory is read from ``/proc``. Each
client stops reading, writes until it cannot write any more, checks how much
it got rid of, then reads again and checks that every point comes back,
unchanged and in order.

No timing is asserted. Whether the UDF has stopped reading is decided by
polling a condition a bounded number of times: "the client cannot write, and
the UDF makes no room however long we let it run".
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from conftest import EXAMPLES
from mirror import Mirror

from aioudf import UnixServer
from aioudf._pb import udf_pb2 as pb
from aioudf.wire._frames import FrameDecoder, encode_frame

#: Points sent: about 20 MB of requests, several times what the UDF's queues
#: and the kernel's socket buffers can hold together (see BOUND).
POINTS = 120_000
#: Agent limits for the tests: a small backlog and output queue, so what the
#: UDF may hold is dominated by fixed buffers, not by these.
MAX_BACKLOG = 100
MAX_OUTPUT = 64 * 1024
#: Bytes the client may manage to write while it does not read. The UDF's
#: share: the socket reader's buffer (asyncio pauses it at 2 x 1 MiB), one read
#: (256 KiB), the backlog (100 points) and output queue (64 KiB); the kernel's
#: share: the socket buffers in both directions (a few hundred KiB each on
#: Linux). 8 MB is about twice all that; without backpressure the client
#: would write all of its ~20 MB.
BOUND = 8_000_000
#: Growth of the UDF process's peak memory allowed over the run. While it
#: stalls it holds the buffers above; while it drains at full speed, also the
#: points parsed from one read (~1,600 at ~2.6 KB each). Without backpressure
#: it would hold at least the responses to everything sent (~20 MB), and the
#: parsed points too (~300 MB).
MEMORY_BOUND = 16_000_000
#: Consecutive polls without progress after which the pipeline counts as
#: stalled (each poll lets the in-process server run a loop iteration).
IDLE_POLLS = 1000


def point_frames(count: int) -> tuple[bytes, list[bytes]]:
    """``count`` framed Point requests (telegraf-like cpu points) and each Point's bytes."""
    template = pb.Point(
        name="cpu",
        database="telegraf",
        retentionPolicy="autogen",
        group="host=server01",
        dimensions=["host"],
        tags={"host": "server01", "cpu": "cpu0"},
        fieldsDouble={"usage_idle": 97.5, "usage_user": 1.5, "usage_system": 1.0},
    )
    frames = []
    points = []
    for index in range(count):
        template.time = 1_700_000_000_000_000_000 + index  # the order is checked by time
        template.fieldsDouble["usage_idle"] = index / count
        points.append(template.SerializeToString())
        frames.append(encode_frame(pb.Request(point=template).SerializeToString()))
    return b"".join(frames), points


INIT = encode_frame(pb.Request(init=pb.InitRequest(taskID="t", nodeID="n")).SerializeToString())


async def read_responses(sock: socket.socket, decoder: FrameDecoder, count: int) -> list[bytes]:
    """Read until ``count`` more response frames have arrived; return their bodies."""
    loop = asyncio.get_running_loop()
    bodies: list[bytes] = []
    while len(bodies) < count:
        while len(bodies) < count and (body := decoder.next_frame()) is not None:
            bodies.append(bytes(body))
        if len(bodies) < count:
            data = await loop.sock_recv(sock, 1 << 20)
            assert data, f"the UDF closed its side after {len(bodies)} of {count} responses"
            decoder.feed(data)
    return bodies


async def start_task(sock: socket.socket) -> FrameDecoder:
    """Send Init as Kapacitor does and check the UDF accepts it."""
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, INIT)
    decoder = FrameDecoder()
    (body,) = await read_responses(sock, decoder, 1)
    assert pb.Response.FromString(body).init.success
    return decoder


async def write_until_stalled(
    sock: socket.socket, data: bytes, stalled: Callable[[], bool] | None = None
) -> int:
    """Write ``data`` without reading; return how much was written when the UDF stalled.

    The UDF counts as stalled once the socket refuses every write for
    IDLE_POLLS polls in a row, each after letting the event loop run (and, if
    given, once ``stalled()`` also says so).
    """
    view = memoryview(data)
    sent = 0
    idle = 0
    while sent < len(data) and idle < IDLE_POLLS:
        try:
            sent += sock.send(view[sent : sent + 65536])
            idle = 0
        except BlockingIOError:
            if stalled is None or stalled():
                idle += 1
            await asyncio.sleep(0)  # a yield: lets an in-process UDF run
    return sent


async def finish_and_collect(
    sock: socket.socket, decoder: FrameDecoder, data: bytes, sent: int, count: int
) -> list[bytes]:
    """Read again: send the rest, half-close, and collect ``count`` point responses."""
    loop = asyncio.get_running_loop()

    async def send_rest() -> None:
        await loop.sock_sendall(sock, data[sent:])
        sock.shutdown(socket.SHUT_WR)

    sender = asyncio.create_task(send_rest())
    bodies = await read_responses(sock, decoder, count)
    await sender
    assert await loop.sock_recv(sock, 1 << 16) == b"", "responses nobody asked for"
    return bodies


def assert_mirrored(bodies: list[bytes], points: list[bytes]) -> None:
    """Every response is the point sent at that position, unchanged."""
    assert len(bodies) == len(points)
    for index, (body, sent) in enumerate(zip(bodies, points, strict=True)):
        response = pb.Response.FromString(body)
        assert response.WhichOneof("message") == "point", (index, response)
        assert response.point == pb.Point.FromString(sent), index


@pytest.fixture(scope="module")
def stream() -> tuple[bytes, list[bytes]]:
    return point_frames(POINTS)


@pytest.fixture
async def client(socket_path: Path) -> AsyncIterator[socket.socket]:
    async with UnixServer(
        Mirror, socket_path, max_backlog=MAX_BACKLOG, max_output=MAX_OUTPUT, grace=5
    ):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, str(socket_path))
            yield sock
        finally:
            sock.close()


async def test_a_client_that_stops_reading_can_only_write_a_bounded_amount(
    client: socket.socket, stream: tuple[bytes, list[bytes]]
) -> None:
    data, points = stream
    decoder = await start_task(client)

    sent = await write_until_stalled(client, data)

    # The UDF stopped reading: the client is stuck far short of its data,
    # and its next write would block (a blocking writer's drain() would
    # never return).
    assert sent < len(data), "the client wrote everything: the UDF buffered it all"
    assert sent < BOUND, f"the UDF and the kernel took {sent:,} bytes"
    with pytest.raises(BlockingIOError):
        client.send(data[sent : sent + 65536])

    # Reading again unblocks everything: every point comes back, in order.
    bodies = await finish_and_collect(client, decoder, data, sent, len(points))
    assert_mirrored(bodies, points)


def _memory(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return {key: int(fields[key].split()[0]) * 1024 for key in ("VmRSS", "VmHWM")}


def _sleeping(pid: int) -> bool:
    """True if the process's main thread is waiting (in epoll, for a UDF), not running."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rpartition(")")[2].split()[0] == "S"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
async def test_a_socket_udf_process_keeps_its_memory_flat_when_kapacitor_stops_reading(
    socket_path: Path, python_env: dict[str, str], stream: tuple[bytes, list[bytes]]
) -> None:
    # The mirror example as Kapacitor runs it: its own process, on a socket.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "mirror.py"),
        "--socket",
        str(socket_path),
        "--max-backlog",
        str(MAX_BACKLOG),
        "--max-output",
        str(MAX_OUTPUT),
        stderr=asyncio.subprocess.PIPE,
        env=python_env,
    )
    assert process.stderr is not None
    try:
        # The server logs "serving ... on PATH" once it accepts connections.
        while b"serving " not in (line := await process.stderr.readline()):
            assert line, "the socket server did not start"
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        with sock:
            await loop.sock_connect(sock, str(socket_path))
            data, points = stream
            decoder = await start_task(sock)
            idle = _memory(process.pid)["VmRSS"]

            # The UDF runs on its own here: it has stalled when the client
            # cannot write and the UDF's process sits waiting regardless.
            sent = await write_until_stalled(sock, data, lambda: _sleeping(process.pid))
            stalled = _memory(process.pid)

            assert sent < len(data), "the client wrote everything: the UDF buffered it all"
            assert sent < BOUND, f"the UDF and the kernel took {sent:,} bytes"
            # What the UDF holds is its bounded buffers: nothing near the
            # ~20 MB sent, let alone the parsed points (~2.6 KB each).
            assert stalled["VmHWM"] - idle < MEMORY_BOUND, (idle, stalled)

            bodies = await finish_and_collect(sock, decoder, data, sent, len(points))
            assert_mirrored(bodies, points)
            # Draining everything at full speed keeps it bounded too.
            assert _memory(process.pid)["VmHWM"] - idle < MEMORY_BOUND, idle
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()
