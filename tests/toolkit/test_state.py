"""Per-group state: made on first use, snapshotted and restored with no user code."""

from __future__ import annotations

import collections
import dataclasses
import json
import zlib
from typing import Any, ClassVar

import numpy as np
import pytest

from aioudf import Handler, JsonCodec, Option, Point, RestoreError, per_group
from aioudf.testing import DataPoint, Kapacitor, RestoreFailed, UDFError
from aioudf.toolkit._state import Groups, restore_states, snapshot_states


@dataclasses.dataclass
class Tally:
    count: int = 0
    total: float = 0.0
    last: collections.deque[float] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=3)
    )


class Summer(Handler):
    """Per group: how many points, their sum and the last three values."""

    field = Option(str, default="v")

    @per_group
    def tallies(self) -> Tally:
        return Tally()

    async def point(self, point: Point) -> None:
        tally = self.tallies[point.group]
        value = point.fieldsDouble[self.field]
        tally.count += 1
        tally.total += value
        tally.last.append(value)
        point.fieldsDouble.clear()
        point.fieldsDouble.update(total=tally.total, first_of_last=tally.last[0])
        point.fieldsInt["count"] = tally.count
        await self.emit(point)


def points(*values: tuple[str, float]) -> list[DataPoint]:
    return [
        DataPoint("m", {"v": v}, tags={"host": host}, time=t, group_by=["host"])
        for t, (host, v) in enumerate(values)
    ]


SERIES = [("a", 1.0), ("b", 10.0), ("a", 2.0), ("a", 0.5), ("b", 20.0), ("a", 0.25), ("a", 7.5)]


async def test_each_group_gets_its_own_state_on_first_use() -> None:
    result = await Kapacitor(Summer).run(points=points(*SERIES))
    by_host: dict[str, list[tuple[object, object]]] = collections.defaultdict(list)
    for p in result.points:
        by_host[p.tags["host"]].append((p.fields["count"], p.fields["total"]))
    assert by_host["a"] == [(1, 1.0), (2, 3.0), (3, 3.5), (4, 3.75), (5, 11.25)]
    assert by_host["b"] == [(1, 10.0), (2, 30.0)]


async def test_a_restored_task_carries_on_exactly() -> None:
    kapacitor = Kapacitor(Summer)
    whole = await kapacitor.run(points=points(*SERIES))
    first = await kapacitor.run(points=points(*SERIES)[:4], snapshot=True)
    assert first.snapshot
    second = await kapacitor.run(points=points(*SERIES)[4:], restore=first.snapshot)
    assert first.points + second.points == whole.points  # floats to the last bit


async def test_the_snapshot_is_a_versioned_json_envelope() -> None:
    result = await Kapacitor(Summer).run(points=points(*SERIES[:2]), snapshot=True)
    assert result.snapshot is not None
    document = json.loads(result.snapshot)
    assert document == {
        "format": "aioudf.state",
        "states": {
            "tallies": {
                "version": 1,
                "groups": {
                    "host=a": {"count": 1, "total": 1.0, "last": [1.0]},
                    "host=b": {"count": 1, "total": 10.0, "last": [10.0]},
                },
            }
        },
    }


def envelope(version: int, groups: dict[str, Any], name: str = "tallies") -> bytes:
    states = {name: {"version": version, "groups": groups}}
    return json.dumps({"format": "aioudf.state", "states": states}).encode()


class SummerV2(Summer):
    """Version 2 renamed ``total`` to ``sum``: it migrates version 1 snapshots."""

    @staticmethod
    def upgrade(data: dict[str, Any], version: int) -> dict[str, Any]:
        assert version == 1
        data = dict(data)
        data["total"] = data.pop("sum_v1_total")
        return data

    @per_group(version=2, migrate=upgrade)
    def tallies(self) -> Tally:
        return Tally()


class SummerV3(Summer):
    @per_group(version=3)
    def tallies(self) -> Tally:
        return Tally()


async def test_an_older_snapshot_goes_through_the_migration_hook() -> None:
    old = envelope(1, {"host=a": {"count": 2, "sum_v1_total": 5.0, "last": [2.0, 3.0]}})
    result = await Kapacitor(SummerV2).run(points=points(("a", 1.0)), restore=old)
    assert result.points[0].fields == {"count": 3, "total": 6.0, "first_of_last": 2.0}


async def test_an_older_snapshot_without_a_hook_is_refused_by_name() -> None:
    old = envelope(1, {"host=a": {"count": 2}})
    with pytest.raises(RestoreFailed, match=r"tallies is version 1; .* reads version 3"):
        await Kapacitor(SummerV3).run(restore=old)


async def test_a_newer_snapshot_is_refused() -> None:
    new = envelope(2, {"host=a": {"count": 2}})
    with pytest.raises(RestoreFailed, match="written by version 2 of that state"):
        await Kapacitor(Summer).run(restore=new)


@pytest.mark.parametrize(
    ("snapshot", "words"),
    [
        (b"\x80\x04not json", "not json data"),
        (b'{"host=a": {"window": [1, 2], "avg": 1.5}}', "not an aioudf state snapshot"),
        (envelope(1, {"host=a": {"count": "x", "last": 5}}), "group 'host=a' failed: TypeError"),
    ],
)
async def test_an_unreadable_snapshot_is_refused_and_changes_nothing(
    snapshot: bytes, words: str
) -> None:
    handler = Summer()
    handler.tallies["host=z"].count = 41
    with pytest.raises(RestoreError, match=words):
        restore_states(handler, snapshot)
    assert handler.tallies["host=z"].count == 41


def test_restore_replaces_the_groups_and_keeps_deque_bounds() -> None:
    handler = Summer()
    handler.tallies["host=gone"].count = 1
    restore_states(handler, envelope(1, {"host=a": {"count": 9, "last": [1.0, 2.0, 3.0, 4.0]}}))
    assert list(handler.tallies) == ["host=a"]
    restored = handler.tallies["host=a"]
    assert (restored.count, list(restored.last), restored.last.maxlen) == (9, [2.0, 3.0, 4.0], 3)
    assert isinstance(handler.tallies, Groups)


class Custom:
    """A state that says itself how it is saved."""

    def __init__(self, scale: int) -> None:
        self.scale = scale
        self.seen: list[int] = []

    def dump_state(self) -> Any:
        return {"seen": self.seen}

    def load_state(self, data: Any) -> None:
        self.seen = [v * self.scale for v in data["seen"]]


class Several(Handler):
    scale = Option(int, default=1)

    @per_group
    def custom(self) -> Custom:
        return Custom(self.scale)  # made with the options of the task being restored

    @per_group
    def array(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        return np.zeros(2)

    @per_group
    def counts(self) -> dict[str, int]:
        return {}

    async def point(self, point: Point) -> None:
        group = point.group
        self.custom[group].seen.append(int(point.fieldsDouble["v"]))
        self.array[group] = self.array[group] + point.fieldsDouble["v"]
        self.counts[group]["x"] = self.counts[group].get("x", 0) + 1
        point.fieldsDouble.clear()
        point.fieldsString["seen"] = repr(self.custom[group].seen)
        point.fieldsDouble["a0"] = float(self.array[group][0])
        point.fieldsInt["x"] = self.counts[group]["x"]
        await self.emit(point)


async def test_stateful_objects_arrays_and_dicts_round_trip() -> None:
    kapacitor = Kapacitor(Several)
    first = await kapacitor.run(points=points(("a", 1.0), ("a", 2.0)), snapshot=True)
    second = await kapacitor.run({"scale": 10}, points=points(("a", 3.0)), restore=first.snapshot)
    # Restored into fresh states made with the new task's options.
    assert second.points[0].fields == {"seen": "[10, 20, 3]", "a0": 6.0, "x": 3}


class Opaque(Handler):
    @per_group
    def things(self) -> object:
        return object()

    async def point(self, point: Point) -> None:
        self.things[point.group]


async def test_state_json_cannot_hold_fails_the_snapshot_with_a_clear_message() -> None:
    words = r"cannot snapshot Opaque.things of group 'host=a': 'object' values cannot be written"
    with pytest.raises(UDFError, match=words):
        await Kapacitor(Opaque).run(points=points(("a", 1.0)), snapshot=True)


class CompressedCodec(JsonCodec):
    name = "compressed json"

    def encode(self, document: Any) -> bytes:
        return zlib.compress(super().encode(document))

    def decode(self, data: bytes) -> Any:
        return super().decode(zlib.decompress(data))


class CompressedSummer(Summer):
    state_codec: ClassVar[JsonCodec] = CompressedCodec()


async def test_a_pluggable_codec_writes_and_reads_the_snapshot() -> None:
    kapacitor = Kapacitor(CompressedSummer)
    first = await kapacitor.run(points=points(*SERIES[:3]), snapshot=True)
    assert first.snapshot is not None
    assert json.loads(zlib.decompress(first.snapshot))["format"] == "aioudf.state"
    second = await kapacitor.run(points=points(("a", 4.0)), restore=first.snapshot)
    assert second.points[0].fields["total"] == 7.0
    with pytest.raises(RestoreFailed, match="not compressed json data"):
        await kapacitor.run(restore=b"plain")


def test_no_declared_state_means_an_empty_snapshot() -> None:
    assert snapshot_states(Handler()) == b""


def test_a_version_must_be_a_positive_integer() -> None:
    with pytest.raises(ValueError, match="version must be an integer >= 1"):
        per_group(version=0)(lambda handler: 0)
