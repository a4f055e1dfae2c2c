"""The public end-to-end kit (aioudf.testing.Kapacitord) under a real kapacitord.

Each test uses the kit the way a UDF author would: a UDF given as a Handler
class, ``module:Class``, an argv or a handler the kit serves on a socket; a
TICKscript checked by Kapacitor's own parser; results read back as
DataPoints; a batch task answered from rows the test gives.
"""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from moving_avg import MovingAvg

import aioudf
from aioudf.testing import (
    AsyncKapacitord,
    Batch,
    DataPoint,
    Kapacitord,
    KapacitordError,
    ServedUDF,
    series_points,
)
from aioudf.toolkit._handler import describe
from aioudf.wire._values import parse_option_args

pytestmark = pytest.mark.usefixtures("kapacitord_binary")

SECOND = 10**9
Start = Callable[..., Kapacitord]  # the kapacitord fixture

MOVING_AVG = """stream
    |from().measurement('cpu').groupBy('host')
    @movingAverage().field('idle').size(2)
    |window().period(10s).every(10s)
    |httpOut('out')
"""


def cpu(host: str, idle: float, t: int) -> DataPoint:
    return DataPoint("cpu", {"idle": idle}, tags={"host": host}, time=t * SECOND)


def test_handler_class_as_a_process_udf_gives_datapoints(kapacitord: Start) -> None:
    k = kapacitord(movingAverage=MovingAvg)
    k.define_task("avg", MOVING_AVG)
    k.write([cpu("a", v, t) for t, v in enumerate([1.0, 3.0, 6.0])] + [cpu("a", 0.0, 10)])
    out = k.wait_points("avg", "out", 3)
    assert out == [
        DataPoint("cpu", {"avg": 1.0}, tags={"host": "a"}, time=0),  # JSON's 1: a float
        DataPoint("cpu", {"avg": 2.0}, tags={"host": "a"}, time=SECOND),
        DataPoint("cpu", {"avg": 4.5}, tags={"host": "a"}, time=2 * SECOND),
    ]
    assert k.processed("avg")[("from1", "movingAverage2")] == 4


def test_kapacitor_checks_the_option_types_of_the_tickscript(kapacitord: Start) -> None:
    k = kapacitord(movingAverage="moving_avg:MovingAvg")
    with pytest.raises(KapacitordError, match="unexpected arg to size, got DOUBLE expected INT"):
        k.define_task("avg", MOVING_AVG.replace(".size(2)", ".size(2.0)"))


class Typed(aioudf.Handler):
    """One option of each type."""

    d = aioudf.Option(float, default=0.0)
    i = aioudf.Option(int, default=0)
    b = aioudf.Option(bool, default=False)
    t = aioudf.Option(datetime.timedelta, default=datetime.timedelta(0))

    async def point(self, point: aioudf.Point) -> None:
        await self.emit(point)


LITERALS = {
    "d": ["1", "1.0", "1.", ".5", "-2.5", "-.5", "+1.0", "1e3", "10s", "TRUE", "inf"],
    "i": ["1", "-3", "007", "+3", "1.0", "99999999999999999999", "10s"],
    "t": ["10s", "-5s", "10u", "1w", "10", "0", "1m30s", "1.5s", "10ns", "10us"],
    "b": ["TRUE", "FALSE", "true", "True", "1"],
}


def test_replay_takes_an_option_literal_exactly_when_kapacitor_does(kapacitord: Start) -> None:
    k = kapacitord(typed=ServedUDF(Typed))
    info = describe(Typed)
    disagree = []
    for n, (option, text) in enumerate((o, t) for o, texts in LITERALS.items() for t in texts):
        script = f"stream\n    |from().measurement('m')\n    @typed().{option}({text})\n"
        try:
            k.define_task(f"t{n}", script + "    |httpOut('out')\n", enabled=False)
            kapacitor_takes = True
        except KapacitordError as exc:
            kapacitor_takes = "invalid TICKscript" not in str(
                exc
            )  # any other error: a disagreement
        try:
            parse_option_args([f"{option}={text}"], info)
            replay_takes = True
        except ValueError:
            replay_takes = False
        if replay_takes != kapacitor_takes:
            disagree.append((option, text, kapacitor_takes))
    assert disagree == []


class Doubles(aioudf.Handler):
    """Doubles ``value``; refuses a negative one (the task fails with its words)."""

    async def init(self, request: object) -> None:
        self.log.info("doubling for this task")

    async def point(self, point: aioudf.Point) -> None:
        value = point.fieldsDouble["value"]
        if value < 0:
            raise ValueError(f"negative value {value}")
        point.fieldsDouble["value"] = 2 * value
        await self.emit(point)


DOUBLES = "stream\n    |from().measurement('m')\n    @doubles()\n    |httpOut('out')\n"


def test_served_udf_its_log_and_the_tasks_error(kapacitord: Start) -> None:
    k = kapacitord(doubles=ServedUDF(Doubles))
    k.define_task("d", DOUBLES)
    k.write("m value=1.5 1")
    assert k.wait_points("d", "out") == [DataPoint("m", {"value": 3.0}, time=SECOND)]
    assert any(
        "doubling for this task" in line and "task=d" in line for line in k.udf_log("doubles")
    )
    assert k.udf_log(task="elsewhere") == []
    k.write("m value=-1 2")
    # Kapacitor logs the ErrorResponse at once, and fails the task when the
    # UDF's node next takes a point.
    sent = k.wait_for(lambda: k.udf_errors("d"), "the UDF's ErrorResponse")
    assert sent == ["Doubles.point() failed handling Point: ValueError: negative value -1.0"]
    k.write("m value=1 3")
    error = k.wait_task_error("d")
    assert "ValueError: negative value -1.0" in error
    assert k.task_error("d") == error


SCRIPT = """
import sys
import aioudf

class Says(aioudf.Handler):
    async def init(self, request):
        print("init for", request.taskID, file=sys.stderr, flush=True)

    async def point(self, point):
        await self.emit(point)

aioudf.run(Says)
"""


def test_argv_process_udf_and_its_stderr_by_task(kapacitord: Start, tmp_path: Path) -> None:
    script = tmp_path / "says.py"
    script.write_text(SCRIPT)
    k = kapacitord(says=[sys.executable, "-u", str(script)])
    for task in ("t1", "t2"):
        k.define_task(task, DOUBLES.replace("@doubles()", "@says()"))
    k.write("m value=2 1")
    assert k.wait_points("t1", "out") == [DataPoint("m", {"value": 2.0}, time=SECOND)]
    assert k.wait_for(lambda: k.udf_log("says", task="t2"), "t2's line") == ["init for t2"]
    assert sorted(k.udf_log()) == ["init for t1", "init for t2"]


BATCH = """batch
    |query('SELECT value FROM "mydb"."myrp"."cpu"').period(10s).every(1s).groupBy('host')
    @batchEcho()
    |httpOut('out')
"""


def test_batch_task_answered_from_the_tests_rows(kapacitord: Start) -> None:
    k = kapacitord(batchEcho="udf_handlers:BatchEcho")
    rows = [
        Batch(
            "cpu",
            [DataPoint("cpu", {"value": 1.5}, time=t * SECOND) for t in (1, 2)],
            tags={"host": "a"},
        ),
        Batch("cpu", [DataPoint("cpu", {"value": 7.25}, time=3 * SECOND)], tags={"host": "b"}),
    ]
    k.answer_queries(rows)
    k.define_task("b", BATCH, kind="batch")
    out = k.wait_points("b", "out", 3)
    assert sorted(out, key=lambda p: p.time) == [
        DataPoint("cpu", {"value": 1.5}, tags={"host": "a"}, time=SECOND),
        DataPoint("cpu", {"value": 1.5}, tags={"host": "a"}, time=2 * SECOND),
        DataPoint("cpu", {"value": 7.25}, tags={"host": "b"}, time=3 * SECOND),
    ]
    query = k.influxdb.queries[0]
    assert query.startswith("SELECT value FROM mydb.myrp.cpu WHERE time >= ")
    assert query.endswith("GROUP BY host")


async def test_async_kit_runs_beside_the_tests_loop() -> None:
    async with AsyncKapacitord(udfs={"doubles": ServedUDF(Doubles)}) as k:
        await k.define_task("d", DOUBLES)
        await k.write([DataPoint("m", {"value": 0.25}, time=SECOND)])
        assert await k.wait_points("d", "out") == [DataPoint("m", {"value": 0.5}, time=SECOND)]
    assert not k.sync.workdir.exists()  # its own temporary folder, removed


def test_a_refused_start_names_kapacitors_reason(short_tmp: Path) -> None:
    broken = [sys.executable, "-c", "import sys; sys.exit(3)"]
    k = Kapacitord(short_tmp / "k", {"broken": broken})
    with pytest.raises(KapacitordError, match='failed to load process info for "broken"'):
        k.start()


def test_local_handler_class_cannot_be_a_process_udf() -> None:
    class Local(aioudf.Handler):
        pass

    with pytest.raises(TypeError, match=r"defined inside a function; .* ServedUDF"):
        Kapacitord(udfs={"local": Local})


def test_series_points_reads_httpout_json() -> None:
    series = [
        {
            "name": "cpu",
            "tags": {"host": "a"},
            "columns": ["time", "avg", "n", "state", "ok", "gone"],
            "values": [["2024-01-01T00:00:00.5Z", 2, 2**60 + 1, "up", True, None]],
        }
    ]
    assert series_points(series, ints=["n"]) == [
        DataPoint(
            "cpu",
            {"avg": 2.0, "n": 2**60 + 1, "state": "up", "ok": True},
            tags={"host": "a"},
            time=1_704_067_200_500_000_000,
        )
    ]


@pytest.mark.parametrize("answer", [{"series": None}, {"series": [None]}, {}])
def test_an_empty_httpout_is_no_series(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch, answer: dict[str, object]
) -> None:
    # Kapacitor's answers before a first result, and while it holds an empty one.
    k = Kapacitord(short_tmp / "k", {})
    body = json.dumps(answer).encode()
    monkeypatch.setattr(k, "_request", lambda method, path, *rest: (200, body))
    assert k.output("t", "out") == []
    assert k.points("t", "out") == []


def test_an_httpout_not_served_yet_is_no_series_for_a_task_that_exists(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Kapacitor serves a task's httpOut once the task runs: before that the
    # path answers 404 "no task exists", although the task does.
    k = Kapacitord(short_tmp / "k", {})
    tasks = {"/tasks/t": (200, b'{"id": "t", "error": ""}')}
    missing = (404, b'{"error": "no task exists"}')
    monkeypatch.setattr(k, "_request", lambda method, path, *rest: tasks.get(path, missing))
    assert k.output("t", "out") == []
    with pytest.raises(KapacitordError, match="GET /tasks/nope answered 404"):
        k.output("nope", "out")


def test_the_documented_example_is_the_example_test_word_for_word() -> None:
    example = Path(__file__).with_name("test_e2e_kit_example.py").read_text()
    code = example[example.index("from collections.abc") :]
    docs = (Path(__file__).resolve().parents[2] / "docs" / "testing.md").read_text()
    assert f"```python\n{code}```" in docs
