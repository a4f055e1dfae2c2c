"""The example of docs/testing.md ("End to end: your TICKscript, your UDF, a real Kapacitor").

Kept word for word in the docs (tests/testing/test_e2e_kit.py checks it), and run in
CI like any test.
"""

from collections.abc import Callable

from moving_avg import MovingAvg

from aioudf.testing import DataPoint, Kapacitord

TICKSCRIPT = """
stream
    |from()
        .measurement('cpu')
        .groupBy('host')
    @movingAverage()
        .field('idle')
        .size(2)
    |window()
        .period(10s)
        .every(10s)
    |httpOut('averages')
"""


def test_moving_average_per_host(kapacitord: Callable[..., Kapacitord]) -> None:
    k = kapacitord(movingAverage=MovingAvg)  # a process UDF, as Kapacitor runs it
    k.define_task("cpu_avg", TICKSCRIPT)
    rows = [(0, "a", 10.0), (0, "b", 5.0), (1, "a", 20.0)]
    rows += [(10, "a", 0.0), (10, "b", 0.0)]  # points at 10 s close each host's first window
    k.write(
        DataPoint("cpu", {"idle": idle}, tags={"host": host}, time=t * 10**9)
        for t, host, idle in rows
    )
    assert k.wait_points("cpu_avg", "averages", 3) == [
        DataPoint("cpu", {"avg": 10.0}, tags={"host": "a"}, time=0),
        DataPoint("cpu", {"avg": 15.0}, tags={"host": "a"}, time=10**9),
        DataPoint("cpu", {"avg": 5.0}, tags={"host": "b"}, time=0),
    ]
    assert k.task_error("cpu_avg") == ""
