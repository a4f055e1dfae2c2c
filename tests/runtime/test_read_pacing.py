"""Read pacing: while requests arrive fast, reading pauses a moment after each read.

Kapacitor writes every request on its own; a UDF that keeps up reads one or
two at a time and pays a wake-up, a read and a write for each. The agent
then stops its transport for about a millisecond after a read, so the next
read takes what gathered meanwhile. What Kapacitor sees must not change:
every request answered, in order, keepalives included, nothing lost when
the input ends during a pause, and a point arriving alone never held.

These tests drive the agent through an in-memory pushing transport that
honours pause_reading(): what is sent while it is paused waits, as it would
in a socket, until reading resumes.
"""

from __future__ import annotations

import asyncio
import contextlib

from standin import decode_responses, kind, request
from udf_handlers import Recorder

from aioudf._pb import udf_pb2 as pb
from aioudf.runtime import Agent
from aioudf.runtime._streams import Receiver


def point(t: int) -> bytes:
    return request(point=pb.Point(name="cpu", time=t, group="g", fieldsDouble={"v": float(t)}))


INIT = request(init=pb.InitRequest(taskID="task", nodeID="n1"))


class Transport:
    """Both ends of an in-memory connection: a pushing reader and a writer."""

    def __init__(self) -> None:
        self._receiver: Receiver | None = None
        self._waiting: list[bytes] = []  # sent while paused, or before the agent reads
        self.paused = False
        self.pauses = 0
        self.resumed = asyncio.Event()
        self.written = bytearray()
        self.answered = asyncio.Event()

    # ---- the agent's side (PushReader, ByteWriter) ----

    async def read(self, n: int = -1) -> bytes:
        raise AssertionError("a pushing reader is never read")

    def push_to(self, receiver: Receiver | None) -> None:
        self._receiver = receiver
        if receiver is None:
            self.paused = False
        else:
            self._flush()

    def pause_reading(self) -> None:
        if not self.paused:
            self.paused = True
            self.pauses += 1

    def resume_reading(self) -> None:
        if self.paused:
            self.paused = False
            self.resumed.set()
            self._flush()

    def write(self, data: bytes) -> None:
        self.written += data
        self.answered.set()

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        pass

    async def wait_closed(self) -> None:
        pass

    # ---- Kapacitor's side ----

    def send(self, data: bytes) -> None:
        """Kapacitor writes ``data`` (b"": it closes its side)."""
        self._waiting.append(data)
        self._flush()

    def _flush(self) -> None:
        while self._waiting and self._receiver is not None and not self.paused:
            self._receiver(self._waiting.pop(0))

    def responses(self) -> list[pb.Response]:
        return decode_responses(bytes(self.written))

    async def wait_responses(self, count: int) -> list[pb.Response]:
        while len(responses := self.responses()) < count:
            self.answered.clear()
            await self.answered.wait()
        return responses


async def start() -> tuple[Transport, asyncio.Task[None]]:
    transport = Transport()
    agent = Agent(Recorder(), transport, transport)
    task = asyncio.ensure_future(agent.run())
    transport.send(INIT)
    await transport.wait_responses(1)
    return transport, task


async def start_paused() -> tuple[Transport, asyncio.Task[None]]:
    """A connection whose reading Kapacitor's ten points in one read paused."""
    transport, task = await start()
    transport.send(b"".join(point(t) for t in range(10)))
    assert transport.paused
    return transport, task


async def test_requests_arriving_fast_are_read_in_paced_turns_and_all_answered() -> None:
    # Ten requests in one read: reading pauses, and resumes by itself.
    transport, task = await start_paused()
    transport.send(b"".join(point(t) for t in range(10, 20)))
    transport.send(request(keepalive=pb.KeepaliveRequest(time=7)))
    transport.send(b"".join(point(t) for t in range(20, 30)))
    await transport.resumed.wait()
    responses = await transport.wait_responses(1 + 30 + 1)
    # Every point answered, in order; the keepalive answered where it came.
    assert [kind(r) for r in responses[1:]] == ["point"] * 20 + ["keepalive"] + ["point"] * 10
    points = [r.point.time for r in responses if kind(r) == "point"]
    assert points == list(range(30))
    transport.send(b"")
    await task


async def test_end_of_input_during_a_pause_loses_nothing() -> None:
    transport, task = await start_paused()
    # Kapacitor writes its last points and closes while reading is paused.
    transport.send(b"".join(point(t) for t in range(10, 15)))
    transport.send(b"")
    await task  # ends once the pause is over and the rest is read
    responses = transport.responses()
    times = [r.point.time for r in responses if kind(r) == "point" and r.point.name == "cpu"]
    assert times == list(range(15))
    # stop() ran and its output went out after every point.
    assert kind(responses[-1]) == "point" and responses[-1].point.name == "stopped"


async def test_a_point_arriving_alone_is_never_held() -> None:
    transport, task = await start()
    for t in range(12):
        transport.send(point(t))
        await transport.wait_responses(2 + t)
        # Kapacitor sends the next point later than the pacing window: at
        # 1,000 points/s or fewer, nothing may wait for a pause to end.
        await asyncio.sleep(0.002)
    assert transport.pauses == 0
    transport.send(b"")
    await task


async def test_a_read_of_a_backlog_is_not_paused() -> None:
    # A read of 32 KiB or more: input comes faster than it is handled, and
    # the handler has work enough without waiting for more.
    transport, task = await start()
    chunk = b"".join(point(t) for t in range(1500))
    assert len(chunk) >= 32768
    transport.send(chunk)
    assert transport.pauses == 0
    await transport.wait_responses(1 + 1500)
    transport.send(b"")
    await task


async def test_a_connection_cancelled_during_a_pause_hands_its_transport_back_reading() -> None:
    transport, task = await start_paused()
    task.cancel()  # the server shutting down, say
    with contextlib.suppress(asyncio.CancelledError):
        await task
    # The pause ended with the connection: the transport is handed back
    # reading, not left paused by a timer of a connection that is gone.
    assert not transport.paused
