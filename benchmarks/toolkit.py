"""What the toolkit's building blocks cost per point, in process (no agent, no I/O).

    .venv/bin/python benchmarks/toolkit.py [--points N] [--repeat R]

Each row is the best of ``repeat`` runs over the same telegraf-like points
(benchmarks/workload.py: 10 hosts, three double fields), in µs per point:
what a handler pays on top of the agent for per-group state, a window, a
whole batch, NumPy or pandas conversions and snapshots. The agent's own cost
and the process around it are measured by run.py and instructions.py; this
says which block is worth its price. Timings move with the machine's load:
compare rows of one run, not runs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "examples"), str(ROOT / "benchmarks")]

from workload import point_stream  # noqa: E402

from aioudf import (  # noqa: E402
    BatchHandler,
    CountWindow,
    Handler,
    Point,
    PointBatch,
    TimeWindow,
    per_group,
)
from aioudf._pb import udf_pb2 as pb  # noqa: E402
from aioudf.toolkit._state import restore_states, snapshot_states  # noqa: E402
from aioudf.wire._layout import frame_bounds  # noqa: E402


def decode_points(count: int) -> list[Point]:
    """``count`` points of the benchmark workload, parsed."""
    data = point_stream(count).data
    return [pb.Request.FromString(data[start:end]).point for start, end in frame_bounds(data)]


class Counts(Handler):
    @per_group
    def seen(self) -> list[int]:
        return [0]


class Collect(BatchHandler):
    async def batch(self, batch: PointBatch) -> None:
        return None


def best(function: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    points = decode_points(args.points)
    n = len(points)
    for i, point in enumerate(points):  # one point per second per host
        point.time = (i // 10) * 10**9
    rows: list[tuple[str, float]] = []

    def measure(name: str, function: Callable[[], Any], per: int = n) -> None:
        rows.append((name, best(function, args.repeat) / per * 1e6))

    def loop_only() -> None:
        for point in points:
            point.group  # noqa: B018

    measure("reading point.group (the floor)", loop_only)

    counts = Counts()

    def per_group_lookup() -> None:
        seen = counts.seen
        for point in points:
            seen[point.group][0] += 1

    measure("per-group state lookup (@per_group)", per_group_lookup)

    def windows(make: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            held: dict[str, Any] = {}
            for point in points:
                window = held.get(point.group)
                if window is None:
                    window = held[point.group] = make()
                window.push(point)

        return run

    measure("TimeWindow(10 s) push, tumbling", windows(lambda: TimeWindow(10 * 10**9)))
    measure(
        "TimeWindow(60 s, every 10 s) push, sliding",
        windows(lambda: TimeWindow(60 * 10**9, every=10 * 10**9)),
    )
    measure("CountWindow(100) push, tumbling", windows(lambda: CountWindow(100)))
    measure("CountWindow(30, every 1) push, sliding", windows(lambda: CountWindow(30, every=1)))

    batch = PointBatch("cpu", points[:1000], group="host=server00", tags={"host": "server00"})
    measure("PointBatch.values(field), batch of 1,000", lambda: batch.values("usage_idle"), 1000)
    measure("PointBatch.to_pandas(), batch of 1,000", batch.to_pandas, 1000)
    frame = batch.to_pandas()
    measure(
        "PointBatch.from_pandas(), batch of 1,000",
        lambda: PointBatch.from_pandas(frame, batch),
        1000,
    )

    def whole_batches() -> None:
        async def go() -> None:
            handler = Collect()
            for start in range(0, n, 1000):
                await handler.begin_batch(batch.begin())
                for point in points[start : start + 1000]:
                    await handler.point(point)
                await handler.end_batch(batch.end())

        asyncio.run(go())

    measure("BatchHandler accumulation (begin, points, end)", whole_batches)

    class Windows(Handler):
        @per_group
        def window(self) -> CountWindow:
            return CountWindow(100, every=1)

    handler = Windows()
    for point in points[:1000]:
        handler.window[point.group].push(point)
    measure(
        "snapshot of 10 groups x 100 points (per point)", lambda: snapshot_states(handler), 1000
    )
    saved = snapshot_states(handler)
    measure(
        "restore of 10 groups x 100 points (per point)",
        lambda: restore_states(Windows(), saved),
        1000,
    )

    print(f"| Toolkit block ({n:,} points, best of {args.repeat}) | µs/point |")
    print("|---|---:|")
    for name, micros in rows:
        print(f"| {name} | {micros:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
