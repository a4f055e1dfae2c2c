"""The examples, end to end, through aioudf.testing over all three transports.

Each test gets a ``udf(example)`` factory that reaches the example the way the
test is parametrized: in process (the handler class), over a unix socket (the
example served by ``examples/mirror.py --socket`` or ``aioudf serve``), or as
a process UDF (``python -u examples/X.py``). Expected outputs are computed
here, independently of the examples' code.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from conftest import EXAMPLES, assert_batches_keep_their_headers

from aioudf.cli import load_handler
from aioudf.testing import Batch, Command, DataPoint, InitFailed, Kapacitor, Socket
from aioudf.toolkit._handler import BaseHandler

CLASSES = {
    "moving_avg": "MovingAvg",
    "outliers": "Outliers",
    "mirror": "Mirror",
    "async_lookup": "AsyncLookup",
}
HANDLERS: dict[str, Callable[[], BaseHandler]] = {
    name: load_handler(f"{EXAMPLES / name}.py:{cls}") for name, cls in CLASSES.items()
}

UdfFactory = Callable[..., Awaitable[Kapacitor]]


class SocketServer:
    """An example served on a unix socket by a child process."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, env: dict[str, str], *argv: str) -> SocketServer:
        process = await asyncio.create_subprocess_exec(
            *argv, stderr=asyncio.subprocess.PIPE, env=env
        )
        assert process.stderr is not None
        log = []
        # The server logs "serving ... on PATH" once it accepts connections.
        while line := (await process.stderr.readline()).decode():
            log.append(line)
            if "serving " in line:
                return cls(process)
        raise AssertionError("the socket server did not start:\n" + "".join(log))

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(ProcessLookupError):
            await asyncio.wait_for(self.process.wait(), 30)


@pytest.fixture(params=["in-process", "socket", "process"])
async def udf(
    request: pytest.FixtureRequest, python_env: dict[str, str], short_tmp: Path
) -> AsyncIterator[UdfFactory]:
    """``await udf("moving_avg", timeout=...)``: the example over this test's transport."""
    servers: list[SocketServer] = []
    transport = request.param

    async def make(example: str, timeout: float = 10.0) -> Kapacitor:
        if transport == "in-process":
            return Kapacitor(HANDLERS[example], timeout=timeout)
        if transport == "process":
            command = Command(
                [sys.executable, "-u", str(EXAMPLES / f"{example}.py")], env=python_env
            )
            return Kapacitor(command, timeout=timeout)
        path = short_tmp / f"{example}.sock"
        if example == "mirror":  # the example's own --socket flag
            argv = [sys.executable, "-u", str(EXAMPLES / "mirror.py"), "--socket", str(path)]
        else:
            handler = f"{example}:{CLASSES[example]}"
            argv = [sys.executable, "-m", "aioudf", "serve", handler, "--socket", str(path)]
        servers.append(await SocketServer.start(python_env, *argv))
        return Kapacitor(Socket(path), timeout=timeout)

    try:
        yield make
    finally:
        for server in servers:
            await server.stop()


# ---- moving_avg ------------------------------------------------------------------------


def moving_averages(values: list[float], size: int) -> list[float]:
    """The plain mean of the last ``size`` values, after each value."""
    return [
        sum(values[max(0, i + 1 - size) : i + 1]) / len(values[max(0, i + 1 - size) : i + 1])
        for i in range(len(values))
    ]


def cpu(host: str, value: float, t: int) -> DataPoint:
    # Fields of every type: the average replaces them all.
    fields = {"idle": value, "user": 1.0, "procs": 7, "state": "ok", "up": True}
    return DataPoint("cpu", fields, tags={"host": host}, time=t, group_by=["host"])


SERIES = {
    "a": [5.0, 7.0, 9.0, 2.0, 8.0, 1.0, 6.0, 3.0],
    "b": [100.0, 90.0, 80.0, 85.0, 95.0, 60.0, 70.0, 75.0],
}


def interleaved() -> list[DataPoint]:
    points = []
    for t in range(len(SERIES["a"])):
        for host in sorted(SERIES):
            points.append(cpu(host, SERIES[host][t], t))
    return points


async def test_moving_avg_averages_each_group(udf: UdfFactory) -> None:
    result = await (await udf("moving_avg")).run(
        {"field": "idle", "size": 3, "as": "mean"}, points=interleaved()
    )
    for host, values in SERIES.items():
        out = [p for p in result.points if p.tags["host"] == host]
        expected = moving_averages(values, 3)
        assert [p.fields for p in out] == [{"mean": pytest.approx(v)} for v in expected]
        # Each output point keeps the time, tags and group of its input.
        assert [(p.time, p.group) for p in out] == [(t, f"host={host}") for t in range(len(values))]


async def test_moving_avg_carries_on_after_a_task_restart(udf: UdfFactory) -> None:
    kapacitor = await udf("moving_avg")
    options = {"field": "idle", "size": 4}
    points = interleaved()
    first = await kapacitor.run(options, points=points[:6], snapshot=True)
    assert first.snapshot
    # The task restarts: a new connection (a new process for a process UDF),
    # restored from the snapshot Kapacitor kept.
    second = await kapacitor.run(options, points=points[6:], restore=first.snapshot)
    uninterrupted = await kapacitor.run(options, points=points)
    assert first.points + second.points == uninterrupted.points
    averages_a = [p.fields["avg"] for p in first.points + second.points if p.tags["host"] == "a"]
    assert averages_a == pytest.approx(moving_averages(SERIES["a"], 4))


async def test_moving_avg_refuses_a_bad_size_with_its_own_words(udf: UdfFactory) -> None:
    with pytest.raises(InitFailed, match="size must be >= 1, got 0"):
        await (await udf("moving_avg")).run({"field": "idle", "size": 0})


# ---- outliers ---------------------------------------------------------------------------

# Kapacitor's own server test: these 20 values, scale 1.5, give 5 outliers.
KAPACITOR_VALUES = [5, 6, 7, 13, 33, 35, 36, 45, 46, 47, 48, 50, 51, 52, 53, 54, 80, 85, 90, 100]


def tukey_outliers(values: list[float], scale: float) -> list[float]:
    """Outliers by the quartile rule of Kapacitor's outliers examples, written anew.

    For ``n`` sorted values with ``m = n // 2``: when ``n`` is even the median
    sits between positions ``m`` and ``m + 1``, otherwise at ``m``. Q1 is the
    median (same rule) of everything before the median's right position, Q3
    of everything after its left position.
    """
    ordered = sorted(values)

    def median_at(data: list[float]) -> tuple[int, int, float]:
        m = len(data) // 2
        if len(data) % 2:
            return m, m, data[m]
        return m, m + 1, (data[m] + data[m + 1]) / 2

    left, right, _ = median_at(ordered)
    q1 = median_at(ordered[:right])[2]
    q3 = median_at(ordered[left + 1 :])[2]
    low, high = q1 - scale * (q3 - q1), q3 + scale * (q3 - q1)
    return [v for v in ordered if v < low] + [v for v in ordered if v > high]


def value_batch(values: list[float], count: str, start: int) -> Batch:
    points = [
        DataPoint("cpu", {"value": float(v)}, tags={"count": count}, time=start + i)
        for i, v in enumerate(values)
    ]
    return Batch("cpu", points, tags={"count": count})


def test_the_independent_rule_agrees_with_kapacitors_server_test() -> None:
    assert tukey_outliers([float(v) for v in KAPACITOR_VALUES], 1.5) == [5, 6, 85, 90, 100]


def test_the_examples_are_the_classes_the_servers_run() -> None:
    for handler in HANDLERS.values():
        assert isinstance(handler, type) and issubclass(handler, BaseHandler)


async def test_outliers_finds_kapacitors_five(udf: UdfFactory) -> None:
    shuffled = [float(v) for v in KAPACITOR_VALUES[7:] + KAPACITOR_VALUES[:7]]
    other = [12.0, 10.0, 15.0, -60.0, 11.0, 13.0, 120.0, 14.0, 16.0, 17.0, 18.0]
    batches = [value_batch(shuffled, "1", 0), value_batch(other, "0", 100)]
    result = await (await udf("outliers")).run({"field": "value", "scale": 1.5}, batches=batches)
    first, second = result.batches
    assert [p.fields["value"] for p in first.points] == [5.0, 6.0, 85.0, 90.0, 100.0]
    assert [p.fields["value"] for p in second.points] == tukey_outliers(other, 1.5)
    assert tukey_outliers(other, 1.5) == [-60.0, 120.0]  # Q1 11, Q3 17: fences 2 and 26
    assert_batches_keep_their_headers(result.batches, batches)


async def test_outliers_scale_changes_the_fences(udf: UdfFactory) -> None:
    values = [float(v) for v in KAPACITOR_VALUES]
    result = await (await udf("outliers")).run(
        {"field": "value", "scale": 3.0}, batches=[value_batch(values, "1", 0)]
    )
    assert [p.fields["value"] for p in result.points] == tukey_outliers(values, 3.0)


async def test_outliers_refuses_a_scale_below_one(udf: UdfFactory) -> None:
    with pytest.raises(InitFailed, match=r"invalid scale 0\.5: must be >= 1\.0"):
        await (await udf("outliers")).run({"field": "value", "scale": 0.5})


# ---- mirror ------------------------------------------------------------------------------


async def test_mirror_returns_points_with_their_fields_set(udf: UdfFactory) -> None:
    points = [
        DataPoint("cpu", {"v": 1.0, "mirrored": 7}, tags={"host": "a"}, time=1, group_by=["host"]),
        DataPoint("mem", {"free": 3}, time=2),
    ]
    result = await (await udf("mirror")).run(
        {"field": [("mirrored", 1.0), ("copy", 2)]}, points=points
    )
    # .field(name, value) sets a double field (replacing a same-named int one).
    assert result.points == [
        points[0].replace(fields={"v": 1.0, "mirrored": 1.0, "copy": 2.0}),
        points[1].replace(fields={"free": 3, "mirrored": 1.0, "copy": 2.0}),
    ]


async def test_mirror_without_options_returns_points_unchanged(udf: UdfFactory) -> None:
    points = [
        DataPoint("cpu", {"v": float(t), "s": "x", "b": True, "n": t}, time=t) for t in range(20)
    ]
    result = await (await udf("mirror")).run(points=points)
    assert result.points == points


# ---- async_lookup ------------------------------------------------------------------------


async def test_async_lookup_adds_looked_up_in_order(udf: UdfFactory) -> None:
    points = [DataPoint("cpu", {"v": float(t)}, time=t) for t in range(5)]
    result = await (await udf("async_lookup")).run(
        {"delay": datetime.timedelta(milliseconds=5)}, points=points
    )
    assert result.points == [p.replace(fields={**p.fields, "looked_up": 1.0}) for p in points]


async def test_async_lookup_outlives_a_timeout_shorter_than_each_lookup() -> None:
    # The example's promise: lookups longer than the UDF timeout do not miss
    # keepalives. In process, so that no process start-up eats the timeout.
    kapacitor = Kapacitor(HANDLERS["async_lookup"], timeout=0.2)
    async with kapacitor.task({"delay": datetime.timedelta(seconds=0.4)}) as task:
        await task.send(*(DataPoint("cpu", {"v": 1.0}, time=t) for t in range(2)))
        await task.snapshot()  # answered after both lookups: the task stays up meanwhile
        result = await task.stop()
    assert [p.time for p in result.points] == [0, 1]
    assert task.keepalives_answered >= 1


async def test_async_lookup_refuses_a_negative_delay(udf: UdfFactory) -> None:
    with pytest.raises(InitFailed, match="delay must not be negative"):
        await (await udf("async_lookup")).run({"delay": datetime.timedelta(seconds=-1)})
