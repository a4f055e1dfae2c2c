"""``self.emit(p)`` without ``await``: the output stays bounded, and Python says so.

What aioudf decides (documented on ``Handler.emit``): the frame is queued at
once, in order, awaited or not; once the output queue is full the agent takes
no further request until Kapacitor has read it below its limit, so a handler
that forgets ``await`` holds at most the limit plus one request's output; and
the call it did not await is reported by Python's own warning ("coroutine ...
was never awaited").
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable

from standin import decode_responses, kind, request

from aioudf import Handler, Point
from aioudf._pb import udf_pb2 as pb
from aioudf.lowlevel import Agent
from aioudf.testing import MemoryPipe

EMITS_PER_POINT = 100
POINTS = 50
LIMIT = 4096


class Forgetful(Handler):
    def __init__(self) -> None:
        self.calls = 0

    async def point(self, point: Point) -> None:
        self.calls += 1
        for _ in range(EMITS_PER_POINT):
            self.emit(point)  # the mistake under test: no await


async def spin(until: Callable[[], bool], turns: int = 10_000) -> None:
    """Let the event loop run until ``until()`` is true (a bounded number of turns)."""
    for _ in range(turns):
        if until():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


async def test_a_forgotten_await_keeps_the_output_bounded() -> None:
    handler = Forgetful()
    to_udf, from_udf = MemoryPipe(), MemoryPipe(limit=1024)  # Kapacitor not reading
    agent = Agent(handler, to_udf, from_udf, max_output=LIMIT)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        running = asyncio.create_task(agent.run())
        to_udf.write(request(init=pb.InitRequest()))
        for t in range(POINTS):
            to_udf.write(request(point=pb.Point(name="cpu", time=t, fieldsInt={"v": t})))
        to_udf.close()

        # The agent fills its output (or the transport's buffer, which it
        # writes into as it goes) and stops taking requests...
        output = agent._output
        await spin(
            lambda: (
                handler.calls > 0
                and (output.size >= output.limit or not from_udf._writable.is_set())
            )
        )
        calls = handler.calls
        for _ in range(1000):
            await asyncio.sleep(0)
        assert handler.calls == calls < POINTS
        frame_size = len(request(point=pb.Point(name="cpu", time=0, fieldsInt={"v": 0})))
        assert output.size <= LIMIT + EMITS_PER_POINT * (frame_size + 8)

        # ...until Kapacitor reads: then everything arrives, in order.
        received = b""
        while chunk := await from_udf.read():
            received += chunk
        await running
    responses = decode_responses(received)
    assert [kind(r) for r in responses] == ["init"] + ["point"] * POINTS * EMITS_PER_POINT
    times = [r.point.time for r in responses[1:]]
    assert times == sorted(times)
    assert any("was never awaited" in str(w.message) for w in caught)
