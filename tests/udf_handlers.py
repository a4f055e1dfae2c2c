"""Small handlers for the tests, importable by child processes as ``udf_handlers``."""

from __future__ import annotations

import asyncio
import ctypes
import os
import subprocess
import sys
import threading
import time

import anyio
from moving_avg import MovingAvg as _MovingAvg

from aioudf import (
    BatchHandler,
    BeginBatch,
    BlockingHandler,
    EdgeType,
    EndBatch,
    Handler,
    Option,
    Point,
    PointBatch,
    startup,
)


class SometimesSuspends(Handler):
    """Mirrors points; every other one suspends first (some through a cancelled wait)."""

    def __init__(self) -> None:
        self.seen = 0

    async def point(self, point: Point) -> None:
        self.seen += 1
        if self.seen % 2:
            await asyncio.sleep(0)
            if self.seen % 3 == 0:
                with anyio.move_on_after(0):  # a cancellation delivered inside the handler
                    await asyncio.Event().wait()
        await self.emit(point)


class Recorder(Handler):
    """Echoes points; its snapshot is the number of points seen so far."""

    label = Option(str, default="")

    def __init__(self) -> None:
        self.count = 0
        self.stopped = False

    async def point(self, point: Point) -> None:
        self.count += 1
        if self.label:
            point.tags["label"] = self.label
        await self.emit(point)

    async def snapshot(self) -> bytes:
        return str(self.count).encode()

    async def restore(self, snapshot: bytes) -> None:
        self.count = int(snapshot or b"0")

    async def stop(self) -> None:
        self.stopped = True
        # Output emitted at stop must still reach Kapacitor.
        await self.emit(Point(name="stopped", fieldsInt={"count": self.count}))


class BatchEcho(Handler):
    """Returns each batch as it came, with size set."""

    wants = EdgeType.BATCH
    provides = EdgeType.BATCH

    def __init__(self) -> None:
        self.begin: BeginBatch | None = None
        self.points: list[Point] = []

    async def begin_batch(self, begin: BeginBatch) -> None:
        self.begin = begin
        self.points = []

    async def point(self, point: Point) -> None:
        self.points.append(point)

    async def end_batch(self, end: EndBatch) -> None:
        assert self.begin is not None
        await self.emit_batch(self.begin, self.points, end)


class Fails(Handler):
    """Raises in the method named by its `in` option."""

    where = Option(str, name="in")

    async def init(self, request: object) -> None:
        if self.where == "init":
            raise RuntimeError("init exploded")

    async def point(self, point: Point) -> None:
        if self.where == "point" and point.fieldsDouble.get("boom"):
            raise ValueError(f"bad value at t={point.time}")
        await self.emit(point)

    async def snapshot(self) -> bytes:
        if self.where == "snapshot":
            raise KeyError("no state")
        return b""

    async def restore(self, snapshot: bytes) -> None:
        if self.where == "restore":
            raise OSError("disk gone")


class Unbatched(Handler):
    """Provides BATCH but emits each point alone: the mistake an EmitError names."""

    provides = EdgeType.BATCH

    async def point(self, point: Point) -> None:
        await self.emit(point)


class Printer(Handler):
    """Prints to stdout and writes to fd 1: neither may corrupt the frame stream."""

    async def point(self, point: Point) -> None:
        print("hello from print()", point.time)
        os.write(1, b"raw write to fd 1\n")
        await self.emit(point)


class SleepsOnLoop(Handler):
    """A blocking call in an async handler, not declared blocking: the wrong way."""

    seconds = Option(float, default=1.0)

    async def point(self, point: Point) -> None:
        time.sleep(self.seconds)  # noqa: ASYNC251 - the mistake this handler demonstrates
        await self.emit(point)


class SleepsInThread(BlockingHandler):
    """The right way to block: declared, so calls run in a worker thread."""

    seconds = Option(float, default=1.0)

    def point(self, point: Point) -> None:
        # Tests wait for this line to know the call is under way.
        print(f"sleeping {self.seconds:g} s in a worker thread", file=sys.stderr, flush=True)
        time.sleep(self.seconds)
        self.emit(point)


class AwaitsSlowly(Handler):
    """Awaits per point, keeping the loop free."""

    seconds = Option(float, default=1.0)

    async def point(self, point: Point) -> None:
        await asyncio.sleep(self.seconds)
        await self.emit(point)


class ThreadedEcho(BlockingHandler):
    """Echoes points from a worker thread, recording which thread ran it."""

    def __init__(self) -> None:
        self.threads: set[int] = set()

    def point(self, point: Point) -> None:
        self.threads.add(threading.get_ident())
        self.emit(point)


# ---- issue 5: faults, stdout hygiene ------------------------------------------------------

# Captured at import, before aioudf reserves stdout: what a library holding on
# to the original sys.stdout (a logging handler set up at import...) writes to.
_STDOUT_AT_IMPORT = sys.stdout


class StopHangsInThread(BlockingHandler):
    """Echoes points; its stop() blocks its worker thread forever."""

    def point(self, point: Point) -> None:
        self.emit(point)

    def stop(self) -> None:
        threading.Event().wait()  # never set: an abandoned call, on purpose


class StopHangsOnLoop(Handler):
    """Echoes points; its stop() awaits something that never happens."""

    async def point(self, point: Point) -> None:
        await self.emit(point)

    async def stop(self) -> None:
        await asyncio.Event().wait()


class StrayWriters(Handler):
    """Writes to stdout every way a library might, then echoes the point.

    The ``via`` option picks one: ``libc`` (C stdio ``puts``, left in the C
    buffer), ``libc_flushed`` (``puts`` + ``fflush``), ``child`` (a child
    process inheriting fd 1), ``early`` (the ``sys.stdout`` object captured at
    import, written without a newline or flush), ``dunder`` (``sys.__stdout__``).
    """

    via = Option(str)

    async def point(self, point: Point) -> None:
        text = f"stray {self.via} output at t={point.time}"
        if self.via in ("libc", "libc_flushed"):
            libc = ctypes.CDLL(None)
            libc.puts(text.encode())
            if self.via == "libc_flushed":
                libc.fflush(None)
        elif self.via == "child":
            # A library running a child process: blocking, and the case tested.
            subprocess.run([sys.executable, "-c", f"print({text!r})"], check=True)  # noqa: ASYNC221
        elif self.via == "early":
            _STDOUT_AT_IMPORT.write(text)
        elif self.via == "dunder":
            assert sys.__stdout__ is not None
            sys.__stdout__.write(text + "\n")
        await self.emit(point)


def no_database() -> Handler:
    """A handler factory that fails, as one that connects somewhere might."""
    raise RuntimeError("no database")


def not_a_handler() -> Handler:
    """A handler factory that returns something else (a user's mistake)."""
    return "Recorder"  # type: ignore[return-value]


def returns_a_number() -> Handler:
    """A handler factory that returns an int (the article must read 'an int')."""
    return 5  # type: ignore[return-value]


class LoggedMovingAvg(_MovingAvg):
    """examples/moving_avg.py, saying on stderr each time Kapacitor takes a snapshot.

    Tests against a real Kapacitor wait for that line (it lands in kapacitord's
    log as a ``UDF log`` entry) instead of guessing when a snapshot was taken.
    """

    async def snapshot(self) -> bytes:
        state = await super().snapshot()
        print(f"snapshot taken: {len(state)} bytes", file=sys.stderr, flush=True)
        return state


class LogsHugeMessage(Handler):
    """Logs a 100,000-character message at Init, then a short one; passes points on."""

    async def init(self, request: object) -> None:
        self.log.warning("huge: %s", "x" * 100_000)
        self.log.info("after the huge message")


class WindowLog(BatchHandler):
    """Writes one stderr line per batch received (group, tmax, point times); emits nothing."""

    async def batch(self, batch: PointBatch) -> None:
        times = ",".join(str(p.time) for p in batch.points)
        tags = ",".join(f"{k}:{v}" for k, v in sorted(batch.tags.items()))
        line = f"window name={batch.name} group={batch.group} tags={tags} tmax={batch.tmax}"
        print(f"{line} times={times}", file=sys.stderr, flush=True)


class SlowModel(Handler):
    """A "model" that takes 2 s to load (a plain def: a worker thread); scales `v` by it."""

    @startup
    def model(cls) -> float:
        time.sleep(2)  # stands in for reading a large model file
        return 2.0

    async def point(self, point: Point) -> None:
        point.fieldsDouble["scaled"] = point.fieldsDouble["v"] * self.model
        await self.emit(point)


class BrokenModel(Handler):
    """A model whose load fails."""

    @startup
    def model(cls) -> float:
        raise OSError("model file /models/cpu.onnx not found")

    async def point(self, point: Point) -> None:
        await self.emit(point)
