"""Windows: Kapacitor's ``|window()`` semantics, pinned by hand and against kapacitord itself."""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from aioudf import CountWindow, EdgeType, Handler, Option, Point, PointBatch, TimeWindow, per_group
from aioudf.testing import DataPoint, Kapacitor, Kapacitord, make_point

S = 10**9


def cpu(t: float, host: str = "a", value: float = 1.0) -> Point:
    return make_point(
        "cpu", {"v": value}, tags={"host": host, "cpu": "c0"}, time=int(t * S), group_by=["host"]
    )


def feed(window: TimeWindow | CountWindow, seconds: Sequence[float]) -> list[Any]:
    """(tmax, point times) of each window emitted, in seconds."""
    out = []
    for t in seconds:
        batch = window.push(cpu(t))
        if batch is not None:
            out.append((batch.tmax / S, [p.time / S for p in batch.points]))
    return out


def test_tumbling_time_window_emits_when_a_point_reaches_its_end() -> None:
    window = TimeWindow(10 * S)
    emitted = feed(window, [0, 4, 9.5, 10, 13, 19, 20])
    # [0, 10) goes out when the point at 10 arrives; that point starts the next.
    assert emitted == [(10, [0, 4, 9.5]), (20, [10, 13, 19])]
    # Points of a finished window are dropped when the next one is cut.
    assert feed(window, [25, 30]) == [(30, [20, 25])]


def test_the_next_window_follows_the_point_that_closed_one_not_the_clock() -> None:
    window = TimeWindow(datetime.timedelta(seconds=10))
    # A gap: one window for the data before it, and the next ends 10 s after 35.
    assert feed(window, [0, 1, 35, 44, 45]) == [(10, [0, 1]), (45, [35, 44])]


def test_sliding_windows_step_from_each_closing_point() -> None:
    window = TimeWindow(10 * S, every=5 * S)
    # First end: 0 + 5. Then each end is the closing point's time + 5, and a
    # window holds the 10 s before its end.
    assert feed(window, [0, 3, 6, 9, 12, 16]) == [(5, [0, 3]), (11, [3, 6, 9])]


def test_a_window_whose_points_are_all_older_than_its_period_is_emitted_empty() -> None:
    window = TimeWindow(5 * S, every=10 * S)
    assert feed(window, [0, 1, 12]) == [(10, [])]


def test_aligned_windows_end_on_multiples_of_every() -> None:
    window = TimeWindow(10 * S, align=True)
    assert feed(window, [3, 7, 12, 25]) == [(10, [3, 7]), (20, [12])]


def test_fill_period_waits_for_a_whole_period_first() -> None:
    window = TimeWindow(10 * S, every=5 * S, fill_period=True)
    assert feed(window, [0, 4, 8, 10, 14, 15]) == [(10, [0, 4, 8]), (15, [8, 10, 14])]


def test_every_zero_emits_on_each_point_the_period_up_to_it() -> None:
    window = TimeWindow(5 * S, every=0)
    assert feed(window, [0, 2, 5, 9]) == [(0, [0]), (2, [0, 2]), (5, [2, 5]), (9, [5, 9])]


def test_count_windows_tumbling_sliding_and_filled() -> None:
    seconds = [1, 2, 3, 4, 5, 6, 7]
    assert feed(CountWindow(3), seconds) == [(3, [1, 2, 3]), (6, [4, 5, 6])]
    assert feed(CountWindow(3, every=2), seconds) == [
        (2, [1, 2]),
        (4, [2, 3, 4]),
        (6, [4, 5, 6]),
    ]
    assert feed(CountWindow(3, every=2, fill_period=True), seconds) == [
        (3, [1, 2, 3]),
        (5, [3, 4, 5]),
        (7, [5, 6, 7]),
    ]


def test_a_window_batch_carries_the_group_its_dimension_tags_and_name() -> None:
    window = CountWindow(2)
    window.push(cpu(1, host="b"))
    batch = window.push(cpu(2, host="b"))
    assert batch is not None
    assert (batch.name, batch.group, batch.tags, batch.tmax) == (
        "cpu",
        "host=b",
        {"host": "b"},
        2 * S,
    )
    # The points keep all their tags.
    assert batch.points[0].tags == {"host": "b", "cpu": "c0"}


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"period": 0}, "period must be positive"),
        ({"period": 10, "every": -1}, "every must not be negative"),
        ({"period": 1.5}, "period must be nanoseconds"),
    ],
)
def test_time_window_settings_are_checked(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises((ValueError, TypeError), match=words):
        TimeWindow(**kwargs)


def test_count_window_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="every must be a count >= 1"):
        CountWindow(3, every=0)


# ---- windows in a handler: per group, as batches, through snapshots ------------


class Windowed(Handler):
    """Stream in, each host's 10 s window out as a batch."""

    provides = EdgeType.BATCH
    period = Option(datetime.timedelta, default=datetime.timedelta(seconds=10))

    @per_group
    def window(self) -> TimeWindow:
        return TimeWindow(self.period)

    async def point(self, point: Point) -> None:
        batch = self.window[point.group].push(point)
        if batch is not None:
            await self.emit_batch(batch)


def stream(*pairs: tuple[float, str]) -> list[DataPoint]:
    return [
        DataPoint(
            "cpu",
            {"v": t, "n": 1, "s": "x", "b": True},
            tags={"host": h},
            time=int(t * S),
            group_by=["host"],
        )
        for t, h in pairs
    ]


DATA = stream((0, "a"), (1, "b"), (4, "a"), (10, "a"), (11, "b"), (12, "a"), (20, "a"), (23, "b"))


async def test_windows_per_group_come_out_as_kapacitor_batches() -> None:
    result = await Kapacitor(Windowed).run(points=DATA)
    got = [(b.group, b.tags, b.tmax // S, [p.time // S for p in b.points]) for b in result.batches]
    assert got == [
        ("host=a", {"host": "a"}, 10, [0, 4]),
        ("host=b", {"host": "b"}, 11, [1]),
        ("host=a", {"host": "a"}, 20, [10, 12]),
        ("host=b", {"host": "b"}, 21, [11]),
    ]
    assert all(b.size == len(b.points) and b.name == "cpu" for b in result.batches)


async def test_windows_survive_a_restart_through_the_snapshot() -> None:
    kapacitor = Kapacitor(Windowed)
    whole = await kapacitor.run(points=DATA)
    first = await kapacitor.run(points=DATA[:5], snapshot=True)
    second = await kapacitor.run(points=DATA[5:], restore=first.snapshot)
    assert first.batches + second.batches == whole.batches
    # Field types survive the JSON snapshot.
    assert second.batches[0].points[0].fields == {"v": 10.0, "n": 1, "s": "x", "b": True}


# ---- against kapacitord's own |window() ---------------------------------------

LOG_LINE = re.compile(r"window name=(\S*) group=(\S*) tags=(\S*) tmax=(\d+) times=([\d,]*)")


def ours(window: Any, lines: list[tuple[int, str]]) -> list[tuple[str, str, int, list[int]]]:
    """What our windows emit for points at (seconds, host), one window per host."""
    windows: dict[str, Any] = {}
    out = []
    for t, host in lines:
        group = f"host={host}"
        point = make_point("cpu", {"v": 1.0}, tags={"host": host}, time=t * S, group_by=["host"])
        emitted = windows.setdefault(group, window()).push(point)
        if emitted is not None:
            tags = ",".join(f"{k}:{v}" for k, v in sorted(emitted.tags.items()))
            out.append((emitted.group, tags, emitted.tmax, [p.time for p in emitted.points]))
    return out


def kapacitors(
    kapacitord: Callable[..., Kapacitord], window: str, lines: list[tuple[int, str]]
) -> list[tuple[str, str, int, list[int]]]:
    """What kapacitord's ``|window()`` emits for the same points, read from a logging UDF."""
    k = kapacitord(windowLog="udf_handlers:WindowLog")  # the public kit, as a user has it
    script = (
        "stream\n    |from().measurement('cpu').groupBy('host')\n"
        f"    |window(){window}\n    @windowLog()\n"
    )
    k.define_task("w", script)
    k.write(f"cpu,host={host} v=1 {t}" for t, host in lines)
    # A last group whose window closes after everything else was windowed.
    k.write(f"cpu,host=zz v=1 {100_000 * i}" for i in range(1, 9))

    def up_to_the_last_window() -> list[str] | None:
        lines = k.udf_log("windowLog")
        return lines if any("group=host=zz" in line for line in lines) else None

    logged = k.wait_for(up_to_the_last_window, "the last window")
    found = [match.groups() for line in logged if (match := LOG_LINE.fullmatch(line))]
    return [
        (group, tags, int(tmax), [int(t) for t in times.split(",") if t])
        for name, group, tags, tmax, times in found
        if group != "host=zz" and name == "cpu"
    ]


# Two hosts, bursts, a long gap, repeated timestamps.
POINTS = [
    (t, host)
    for t in [0, 1, 2, 3, 5, 7, 8, 8, 11, 14, 15, 16, 19, 21, 22, 40, 41, 43, 47, 50, 51, 60]
    for host in ("a", "b")
    if not (host == "b" and t % 3 == 0)
]


@pytest.mark.parametrize(
    ("tick", "make"),
    [
        (".period(5s).every(5s)", lambda: TimeWindow(5 * S)),
        (".period(10s).every(3s)", lambda: TimeWindow(10 * S, every=3 * S)),
        (".period(7s).every(7s).align()", lambda: TimeWindow(7 * S, align=True)),
        (
            ".period(6s).every(4s).align().fillPeriod()",
            lambda: TimeWindow(6 * S, 4 * S, align=True, fill_period=True),
        ),
        (".period(3s).every(8s)", lambda: TimeWindow(3 * S, every=8 * S)),
        (".periodCount(3).everyCount(2)", lambda: CountWindow(3, every=2)),
        (".periodCount(4).everyCount(4)", lambda: CountWindow(4)),
    ],
)
def test_windows_match_kapacitords_own(
    tick: str, make: Any, kapacitord: Callable[..., Kapacitord]
) -> None:
    expected = ours(make, POINTS)
    assert expected, "the case must emit something"
    assert kapacitors(kapacitord, tick, POINTS) == expected


def test_point_batch_repr_names_its_header() -> None:
    batch = PointBatch("cpu", [cpu(1)], group="host=a", tags={"host": "a"})
    assert (
        repr(batch)
        == "PointBatch('cpu', <1 points>, group='host=a', tags={'host': 'a'}, tmax=1000000000)"
    )
