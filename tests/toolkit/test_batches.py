"""Whole-batch handlers: one batch() call per batch, emitted batches right by construction."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from aioudf import BatchHandler, EdgeType, Point, PointBatch
from aioudf.testing import Batch, DataPoint, Kapacitor, UDFError


def batch(count: str, values: list[float], start: int = 0) -> Batch:
    points = [
        DataPoint("cpu", {"value": v}, tags={"count": count, "cpu": "c0"}, time=start + i)
        for i, v in enumerate(values)
    ]
    return Batch("cpu", points, tags={"count": count}, tmax=start + 1000)


BATCHES = [batch("1", [3.0, 1.0, 2.0]), batch("2", [5.0, 4.0], start=50), batch("3", [])]


class Largest(BatchHandler):
    """The point with the largest value of each batch, as a batch."""

    async def batch(self, batch: PointBatch) -> PointBatch:
        best = sorted(batch.points, key=lambda p: p.fieldsDouble["value"])[-1:]
        return batch.with_points(best)


async def test_the_returned_batch_keeps_name_group_tags_and_tmax() -> None:
    result = await Kapacitor(Largest).run(batches=BATCHES)
    assert [(b.name, b.group, b.tags, b.tmax, b.size) for b in result.batches] == [
        ("cpu", "count=1", {"count": "1"}, 1000, 1),
        ("cpu", "count=2", {"count": "2"}, 1050, 1),
        ("cpu", "count=3", {"count": "3"}, 1000, 0),
    ]
    assert [p.fields["value"] for p in result.points] == [3.0, 5.0]
    assert result.points[0].tags == {"count": "1", "cpu": "c0"}


class Halves(BatchHandler):
    """Returns a plain list of new points: they are wrapped in the input's header."""

    async def batch(self, batch: PointBatch) -> list[Point]:
        return [
            Point(time=p.time, fieldsDouble={"half": p.fieldsDouble["value"] / 2}) for p in batch
        ]


async def test_a_returned_list_of_points_becomes_a_batch_with_the_inputs_header() -> None:
    result = await Kapacitor(Halves).run(batches=BATCHES[:2])
    first, second = result.batches
    assert (first.group, first.tmax, first.size) == ("count=1", 1000, 3)
    assert [p.fields for p in second.points] == [{"half": 2.5}, {"half": 2.0}]


class Flatten(BatchHandler):
    """Batch in, stream out: each point named and grouped after its batch."""

    provides = EdgeType.STREAM

    async def batch(self, batch: PointBatch) -> PointBatch:
        return batch


async def test_a_stream_output_gets_each_point_its_batch_name_and_group() -> None:
    result = await Kapacitor(Flatten).run(batches=BATCHES[:1])
    assert result.points == [
        DataPoint(
            "cpu",
            {"value": v},
            tags={"count": "1", "cpu": "c0"},
            time=t,
            group_by=["count"],
        )
        for t, v in enumerate([3.0, 1.0, 2.0])
    ]


class Quiet(BatchHandler):
    async def batch(self, batch: PointBatch) -> None:
        if batch.group == "count=2":
            await self.emit_batch(batch)


async def test_returning_none_emits_nothing_but_what_the_handler_emitted() -> None:
    result = await Kapacitor(Quiet).run(batches=BATCHES)
    assert [b.group for b in result.batches] == ["count=2"]


class Frames(BatchHandler):
    async def batch(self, batch: PointBatch) -> pd.DataFrame:
        frame = batch.to_pandas()
        scaled: pd.DataFrame = frame.assign(value=frame["value"] * 10)
        return scaled


async def test_a_returned_dataframe_is_converted_against_the_input_batch() -> None:
    result = await Kapacitor(Frames).run(batches=BATCHES[:2])
    assert [p.fields["value"] for p in result.points] == [30.0, 10.0, 20.0, 50.0, 40.0]
    assert result.batches[1].tmax == 1050
    assert result.points[0].tags == {"count": "1", "cpu": "c0"}


class Wrong(BatchHandler):
    async def batch(self, batch: PointBatch) -> Any:
        return 42


async def test_returning_something_else_names_what_to_return() -> None:
    with pytest.raises(UDFError, match=r"Wrong\.batch\(\) returned a int; return a PointBatch"):
        await Kapacitor(Wrong).run(batches=BATCHES[:1])


def test_a_batch_handler_must_want_batches() -> None:
    with pytest.raises(TypeError, match="it wants a BATCH edge"):

        class Streamy(BatchHandler):
            wants = EdgeType.STREAM


def test_point_batch_messages_announce_the_size() -> None:
    pb = PointBatch("m", [Point(time=5), Point(time=9)], group="g=1", tags={"g": "1"})
    messages = pb.messages()
    assert messages[1:3] == pb.points
    begin, end = pb.begin(), pb.end()
    assert messages[0] == begin and messages[3] == end
    assert (begin.size, begin.group, end.tmax) == (2, "g=1", 9)


async def test_a_point_outside_a_batch_fails_the_task_naming_it() -> None:
    async with Kapacitor(Largest).task() as task:
        await task.send(DataPoint("cpu", {"value": 1.0}, time=1))
        with pytest.raises(UDFError, match=r"a Point arrived outside a batch"):
            await task.stop()


class Counting(BatchHandler):
    """Overrides point(): every point still goes through it, then into the batch."""

    def __init__(self) -> None:
        self.seen = 0

    async def point(self, point: Point) -> None:
        self.seen += 1
        point.fieldsDouble["seen"] = float(self.seen)
        await super().point(point)

    async def batch(self, batch: PointBatch) -> PointBatch:
        return batch


async def test_a_batch_handler_overriding_point_gets_every_point() -> None:
    result = await Kapacitor(Counting).run(batches=BATCHES)
    assert [p.fields["seen"] for p in result.points] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert [b.size for b in result.batches] == [3, 2, 0]
