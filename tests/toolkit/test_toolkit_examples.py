"""The toolkit's examples (zscore, resample; outliers through a window) end to end.

Through the test kit (in process and as a process UDF) and through a real
kapacitord 1.4.1; expected numbers are computed here, independently.
"""

from __future__ import annotations

import datetime
import math
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import EXAMPLES, assert_batches_keep_their_headers
from kapacitord import Kapacitord, ProcessUDF, require_kapacitord, rows

from aioudf.cli import load_handler
from aioudf.testing import Batch, Command, DataPoint, InitFailed, Kapacitor

S = 10**9


@pytest.fixture(params=["in-process", "process"])
def udf(request: pytest.FixtureRequest, python_env: dict[str, str]) -> Callable[[str], Kapacitor]:
    """``udf("zscore")``: the example in process, or as ``python -u examples/zscore.py``."""

    def make(example: str) -> Kapacitor:
        if request.param == "in-process":
            cls = {"zscore": "ZScore", "resample": "Resample"}[example]
            return Kapacitor(load_handler(f"{EXAMPLES / example}.py:{cls}"))
        command = [sys.executable, "-u", str(EXAMPLES / f"{example}.py")]
        return Kapacitor(Command(command, env=python_env))

    return make


# ---- zscore ------------------------------------------------------------------------------


def zscores(values: list[float], size: int) -> list[float]:
    """Each value against the ``size`` before it: (v - mean) / population stdev, else 0."""
    out = []
    for i, value in enumerate(values):
        earlier = values[max(0, i - size) : i]
        spread = statistics.pstdev(earlier) if len(earlier) >= 2 else 0.0
        out.append((value - statistics.fmean(earlier)) / spread if spread > 0 else 0.0)
    return out


SERIES = {
    "a": [10.0, 11.0, 9.0, 10.0, 10.5, 9.5, 10.0, 30.0, 10.0, 9.0, 11.0, 10.0],
    "b": [50.0, 50.0, 50.0, 52.0, 48.0, 51.0, 49.0, 50.0, 20.0, 50.0, 51.0, 49.0],
}


def cpu_points() -> list[DataPoint]:
    return [
        DataPoint(
            "cpu",
            {"usage_idle": SERIES[host][t], "n": t},
            tags={"host": host},
            time=t * S,
            group_by=["host"],
        )
        for t in range(len(SERIES["a"]))
        for host in sorted(SERIES)
    ]


async def test_zscore_scores_each_host_against_its_own_window(
    udf: Callable[[str], Kapacitor],
) -> None:
    result = await udf("zscore").run(
        {"field": "usage_idle", "size": 5, "threshold": 2.5}, points=cpu_points()
    )
    for host, values in SERIES.items():
        out = [p for p in result.points if p.tags["host"] == host]
        expected = zscores(values, 5)
        assert [p.fields["zscore"] for p in out] == pytest.approx(expected, rel=1e-9, abs=1e-12)
        assert [p.fields["anomaly"] for p in out] == [abs(z) > 2.5 for z in expected]
        # The input's fields, time and group are kept.
        assert [(p.fields["usage_idle"], p.time, p.group) for p in out] == [
            (v, t * S, f"host={host}") for t, v in enumerate(values)
        ]
    flagged = {(p.tags["host"], p.time // S) for p in result.points if p.fields["anomaly"]}
    assert {("a", 7), ("b", 8)} <= flagged  # the spikes


async def test_zscore_carries_its_windows_across_a_restart(
    udf: Callable[[str], Kapacitor],
) -> None:
    kapacitor = udf("zscore")
    options = {"field": "usage_idle", "size": 4}
    points = cpu_points()
    whole = await kapacitor.run(options, points=points)
    first = await kapacitor.run(options, points=points[:9], snapshot=True)
    second = await kapacitor.run(options, points=points[9:], restore=first.snapshot)
    assert first.points + second.points == whole.points


async def test_zscore_refuses_a_window_too_small() -> None:
    kapacitor = Kapacitor(load_handler(f"{EXAMPLES / 'zscore'}.py:ZScore"))
    with pytest.raises(InitFailed, match="size >= 2"):
        await kapacitor.run({"field": "x", "size": 1})


# ---- resample ----------------------------------------------------------------------------


def resampled(samples: list[tuple[float, float]], every: float) -> list[tuple[float, float]]:
    """(bin start, mean) on a grid of ``every`` seconds from the epoch; empty bins
    between two full ones interpolated linearly."""
    bins: dict[int, list[float]] = {}
    for t, v in samples:
        bins.setdefault(math.floor(t / every), []).append(v)
    first, last = min(bins), max(bins)
    means = {b: statistics.fmean(vs) for b, vs in bins.items()}
    out = []
    for b in range(first, last + 1):
        if b in means:
            out.append((b * every, means[b]))
            continue
        before = max(k for k in means if k < b)
        after = min(k for k in means if k > b)
        share = (b - before) / (after - before)
        out.append((b * every, means[before] + (means[after] - means[before]) * share))
    return out


SAMPLES = {
    "1": [(100.0, 1.0), (100.5, 3.0), (101.2, 5.0), (104.1, 11.0), (105.9, 2.0), (106.0, 8.0)],
    "2": [(200.0, 4.0), (203.3, 10.0)],
}


def sample_batch(count: str) -> Batch:
    points = [
        DataPoint("cpu", {"value": v, "n": 1, "label": "x"}, tags={"count": count}, time=int(t * S))
        for t, v in SAMPLES[count]
    ]
    return Batch("cpu", points, tags={"count": count}, tmax=int(SAMPLES[count][-1][0] * S) + S)


async def test_resample_averages_per_interval_and_interpolates_gaps(
    udf: Callable[[str], Kapacitor],
) -> None:
    batches = [sample_batch("1"), sample_batch("2"), Batch("cpu", [], tags={"count": "3"}, tmax=7)]
    result = await udf("resample").run({"every": datetime.timedelta(seconds=1)}, batches=batches)
    assert_batches_keep_their_headers(result.batches, batches)
    for out, count in zip(result.batches, ["1", "2"], strict=False):
        expected = resampled(SAMPLES[count], 1.0)
        assert [p.time for p in out.points] == [int(t * S) for t, _ in expected]
        assert [p.fields for p in out.points] == [
            {"value": pytest.approx(v), "n": 1.0} for _, v in expected
        ]
    assert result.batches[2].points == []


# ---- the examples in a real kapacitord ---------------------------------------------------


def process_udf(python_env: dict[str, str], example: str) -> ProcessUDF:
    env = {"PYTHONPATH": python_env["PYTHONPATH"]}
    return ProcessUDF(sys.executable, ["-u", str(EXAMPLES / f"{example}.py")], env=env)


def test_zscore_in_kapacitord(python_env: dict[str, str], short_tmp: Path) -> None:
    require_kapacitord()
    with Kapacitord(short_tmp / "k", {"zscore": process_udf(python_env, "zscore")}) as k:
        k.define_task(
            "z",
            """stream
    |from().measurement('cpu').groupBy('host')
    @zscore().field('usage_idle').size(5).threshold(2.5)
    |window().period(100s).every(100s)
    |httpOut('out')
""",
        )
        k.write(
            f"cpu,host={host} usage_idle={SERIES[host][t]} {t}"
            for t in range(len(SERIES["a"]))
            for host in sorted(SERIES)
        )
        k.write(f"cpu,host={host} usage_idle=1 100" for host in SERIES)  # closes the window
        out = rows(k.wait_output("z", "out", 2 * len(SERIES["a"])))
        for host, values in SERIES.items():
            got = [row for row in out if row["host"] == host]
            expected = zscores(values, 5)
            assert [r["zscore"] for r in got] == pytest.approx(expected, rel=1e-9, abs=1e-12)
            assert [r["anomaly"] for r in got] == [abs(z) > 2.5 for z in expected]


WINDOW_THEN = """stream
    |from().measurement('cpu').groupBy('host')
    |window().period(10s).every(10s)
    {udf}
    |httpOut('out')
"""


def test_resample_on_kapacitords_windows(python_env: dict[str, str], short_tmp: Path) -> None:
    require_kapacitord()
    with Kapacitord(short_tmp / "k", {"resample": process_udf(python_env, "resample")}) as k:
        k.define_task("r", WINDOW_THEN.format(udf="@resample().every(2s)"))
        samples = [(0, 1.0), (1, 3.0), (5, 6.0), (9, 2.0)]
        k.write(f"cpu,host=a value={v} {t}" for t, v in samples)
        k.write("cpu,host=a value=0 10")  # closes the window [0s, 10s)
        out = rows(k.wait_output("r", "out", 5))
        expected = resampled([(float(t), v) for t, v in samples], 2.0)
        assert [row["value"] for row in out] == pytest.approx([v for _, v in expected])
        assert [row["time"] for row in out] == [
            f"1970-01-01T00:00:{int(t):02d}Z" for t, _ in expected
        ]
        assert {row["host"] for row in out} == {"a"}


def test_outliers_on_kapacitords_windows(python_env: dict[str, str], short_tmp: Path) -> None:
    require_kapacitord()
    values = [5, 6, 7, 13, 33, 35, 36, 45, 46, 47, 48, 50, 51, 52, 53, 54, 80, 85, 90, 100]
    with Kapacitord(short_tmp / "k", {"outliers": process_udf(python_env, "outliers")}) as k:
        k.define_task("o", WINDOW_THEN.format(udf="@outliers().field('value').scale(1.5)"))
        # 20 values within one 10 s window (nanosecond precision), then one past it.
        k.write(
            (f"cpu,host=a value={v} {i * 400_000_000}" for i, v in enumerate(values)),
            precision="ns",
        )
        k.write("cpu,host=a value=0 10")
        out = rows(k.wait_output("o", "out", 5))
        # Kapacitor's own server test: these 20 values, scale 1.5, give 5 outliers.
        assert sorted(row["value"] for row in out) == [5, 6, 85, 90, 100]


# ---- moving_avg on per-group state ------------------------------------------------------


async def test_moving_avg_restored_with_a_smaller_size_keeps_the_last_values() -> None:
    kapacitor = Kapacitor(load_handler(f"{EXAMPLES / 'moving_avg'}.py:MovingAvg"))
    points = [DataPoint("cpu", {"v": v}, time=t) for t, v in enumerate([1.0, 2.0, 4.0, 8.0])]
    first = await kapacitor.run({"field": "v", "size": 4}, points=points, snapshot=True)
    more = [DataPoint("cpu", {"v": 16.0}, time=9)]
    second = await kapacitor.run({"field": "v", "size": 2}, points=more, restore=first.snapshot)
    assert second.points[0].fields == {"avg": 12.0}  # (8 + 16) / 2: the window kept [8]
