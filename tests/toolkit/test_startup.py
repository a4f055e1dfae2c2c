"""Heavy start-up: loaded once per process, off Info's and Init's path, before the first point."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from kapacitord import Kapacitord, ProcessUDF, require_kapacitord, rows

from aioudf import BlockingHandler, Handler, Point, StartupError, startup
from aioudf.testing import DataPoint, Kapacitor, UDFError


class Gate:
    """A loader's record: how often it ran; it blocks until released."""

    def __init__(self) -> None:
        self.calls = 0
        self.started = threading.Event()
        self.release = threading.Event()

    def load(self) -> dict[str, float]:
        self.calls += 1
        self.started.set()
        if not self.release.wait(30):
            raise TimeoutError("the test never released the loader")
        return {"weight": 2.0}


def scorer(gate: Gate) -> type[Handler]:
    """A fresh handler class (start-up values are per class and process)."""

    class Scorer(Handler):
        @startup
        def model(cls) -> dict[str, float]:
            return gate.load()

        async def point(self, point: Point) -> None:
            point.fieldsDouble["score"] = point.fieldsDouble["v"] * self.model["weight"]
            await self.emit(point)

    return Scorer


POINTS = [DataPoint("cpu", {"v": float(t)}, time=t) for t in range(3)]


async def test_info_and_init_are_answered_while_the_model_loads() -> None:
    gate = Gate()
    kapacitor = Kapacitor(scorer(gate), timeout=0.2)
    await kapacitor.info()
    assert gate.calls == 0  # Info alone loads nothing (Kapacitor asks it at start-up)
    async with kapacitor.task() as task:  # Init answered with the loader blocked
        await task.send(*POINTS)
        await asyncio.to_thread(gate.started.wait, 30)
        # Keepalives go on being answered while the first point waits (the
        # kit fails the task if one is late): no event says so, poll.
        deadline = asyncio.get_running_loop().time() + 10
        while task.keepalives_answered < 3:
            assert asyncio.get_running_loop().time() < deadline, "no keepalive answered"
            await asyncio.sleep(0.01)
        assert task.result is not None and task.result.items == []
        gate.release.set()
        result = await task.stop()
    assert [p.fields["score"] for p in result.points] == [0.0, 2.0, 4.0]
    assert gate.calls == 1


async def test_connections_share_one_load() -> None:
    gate = Gate()
    gate.release.set()
    kapacitor = Kapacitor(scorer(gate))
    results = await asyncio.gather(*(kapacitor.run(points=POINTS) for _ in range(3)))
    assert gate.calls == 1
    assert all(len(r.points) == 3 for r in results)
    await kapacitor.run(points=POINTS)  # a later task: still loaded
    assert gate.calls == 1


async def test_a_failing_load_ends_each_connection_naming_the_failure() -> None:
    calls = []

    class Broken(Handler):
        @startup
        async def client(cls) -> Any:
            calls.append(1)
            raise OSError("connection refused by db:5432")

        async def point(self, point: Point) -> None:
            await self.emit(point)

    kapacitor = Kapacitor(Broken)
    for _ in range(2):
        with pytest.raises(
            UDFError, match=r"Broken.client failed to load: OSError: connection refused by db:5432"
        ):
            await kapacitor.run(points=POINTS)
    assert len(calls) == 2  # the next task tries again


async def test_blocking_handlers_wait_for_it_too() -> None:
    class Threaded(BlockingHandler):
        @startup
        async def table(cls) -> dict[str, int]:
            await asyncio.sleep(0)
            return {"x": 5}

        def point(self, point: Point) -> None:
            point.fieldsInt["x"] = self.table["x"]
            self.emit(point)

    result = await Kapacitor(Threaded).run(points=POINTS)
    assert [p.fields["x"] for p in result.points] == [5, 5, 5]


def test_reading_it_before_it_is_loaded_says_so() -> None:
    class Early(Handler):
        @startup
        def model(cls) -> int:
            return 1

    with pytest.raises(StartupError, match=r"Early\.model is not loaded yet"):
        _ = Early().model


# ---- in a real kapacitord --------------------------------------------------------


def model_udf(python_env: dict[str, str], handler: str) -> ProcessUDF:
    env = {"PYTHONPATH": python_env["PYTHONPATH"]}
    args = ["-u", "-m", "aioudf", "run", f"udf_handlers:{handler}"]
    return ProcessUDF(sys.executable, args, env=env, timeout="1s")


SCRIPT = """stream
    |from().measurement('cpu')
    @model()
    |window().period(10s).every(10s)
    |httpOut('out')
"""


def test_a_slow_model_load_under_a_short_timeout(
    python_env: dict[str, str], short_tmp: Path
) -> None:
    # The load takes 2 s; Kapacitor's UDF timeout is 1 s (a keepalive every 0.5 s).
    require_kapacitord()
    with Kapacitord(short_tmp / "k", {"model": model_udf(python_env, "SlowModel")}) as k:
        k.define_task("m", SCRIPT)
        k.write(f"cpu v={t} {t}" for t in range(3))
        k.write("cpu v=0 10")  # closes the window
        out = rows(k.wait_output("m", "out", 3))
        assert [row["scaled"] for row in out] == [0.0, 2.0, 4.0]
        assert not k.task("m")["error"]
        assert "keepalive timedout" not in k.log()


def test_a_failing_model_load_fails_the_task_naming_it(
    python_env: dict[str, str], short_tmp: Path
) -> None:
    require_kapacitord()
    with Kapacitord(short_tmp / "k", {"model": model_udf(python_env, "BrokenModel")}) as k:
        k.define_task("m", SCRIPT)
        k.write("cpu v=1 1")
        k.wait_for(lambda: "received error message" in k.log(), "the ErrorResponse")
        k.write("cpu v=2 2")  # Kapacitor fails the task when the node next takes a point
        error = k.wait_task_error("m")
        assert "BrokenModel.model failed to load: OSError: model file /models/cpu.onnx" in error
