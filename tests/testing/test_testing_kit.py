"""aioudf.testing behaves like Kapacitor: sequence, options, keepalives, failures, the fixture."""

from __future__ import annotations

import asyncio
import datetime
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import ClassVar

import pytest
from udf_handlers import BatchEcho, Fails, Recorder

from aioudf import Handler, InitRequest, Option, Point, ValueType
from aioudf._pb import udf_pb2 as pb
from aioudf.testing import (
    Batch,
    Command,
    DataPoint,
    InitFailed,
    Kapacitor,
    KeepaliveTimeout,
    RestoreFailed,
    Socket,
    UDFError,
    as_target,
    encode_options,
)
from aioudf.toolkit._handler import describe
from aioudf.wire._frames import FrameDecoder, encode_frame

pytest_plugins = ["pytester"]


class Typed(Handler):
    """Records the options it was given."""

    field = Option(str)
    scale = Option(float, default=1.0)
    every = Option(datetime.timedelta, default=datetime.timedelta(0))
    pair = Option(str, float, repeated=True)
    verbose = Option()

    seen: ClassVar[list[dict[str, object]]] = []

    async def init(self, request: InitRequest) -> None:
        Typed.seen.append(
            {
                "field": self.field,
                "scale": self.scale,
                "every": self.every,
                "pair": self.pair,
                "verbose": self.verbose,
                "task": self.task_id,
                "node": self.node_id,
            }
        )

    async def point(self, point: Point) -> None:
        await self.emit(point)


# ---- the sequence -------------------------------------------------------------------


async def test_info_has_a_connection_of_its_own_then_each_task_one() -> None:
    made: list[Recorder] = []

    def factory() -> Recorder:
        made.append(Recorder())
        return made[-1]

    kapacitor = Kapacitor(factory)
    await kapacitor.run(points=[DataPoint("cpu", {"v": 1.0}, time=1)])
    await kapacitor.run(points=[DataPoint("cpu", {"v": 1.0}, time=2)])
    # One instance answered Info (and saw no data); one per task after it.
    assert [h.count for h in made] == [0, 1, 1]
    assert [h.stopped for h in made] == [False, True, True]


async def test_stop_half_closes_and_reads_until_the_udf_is_done() -> None:
    result = await Kapacitor(Recorder).run(
        {"label": "x"}, points=[DataPoint("cpu", {"v": 1.0}, time=t) for t in range(3)]
    )
    # Recorder emits a last point from stop(), after Kapacitor's side closed.
    assert [p.name for p in result.points] == ["cpu", "cpu", "cpu", "stopped"]
    assert result.points[-1].fields == {"count": 3}
    assert {p.tags["label"] for p in result.points[:3]} == {"x"}


async def test_snapshot_and_restore() -> None:
    kapacitor = Kapacitor(Recorder)
    first = await kapacitor.run(points=[DataPoint("cpu", {"v": 1.0})] * 4, snapshot=True)
    assert first.snapshot == b"4"
    second = await kapacitor.run(points=[DataPoint("cpu", {"v": 1.0})], restore=first.snapshot)
    assert second.points[-1].fields == {"count": 5}


async def test_batches_go_and_come_back_as_values() -> None:
    batches = [
        Batch(
            "cpu",
            [DataPoint("cpu", {"v": float(i)}, tags={"count": str(n)}, time=i) for i in range(3)],
            tags={"count": str(n)},
        )
        for n in range(2)
    ]
    result = await Kapacitor(BatchEcho).run(batches=batches)
    assert result.batches == batches
    assert [b.size for b in result.batches] == [3, 3]


async def test_task_gives_request_by_request_control() -> None:
    kapacitor = Kapacitor(Recorder)
    async with kapacitor.task({"label": "t"}, task_id="cpu_alert", node_id="udf3") as task:
        await task.send(DataPoint("cpu", {"v": 1.0}, time=1))
        assert await task.snapshot() == b"1"
        await task.send(make_pb_point(2))
        result = await task.stop()
    assert [p.time for p in result.points[:2]] == [1, 2]


async def test_frames_encoded_by_the_caller_and_messages_as_decoded() -> None:
    # What aioudf replay uses to skip the value objects: its own frames in,
    # the decoded protobuf messages out.
    from aioudf.wire._kapacitor import EmittedBatch, KapacitorConnection

    got: list[Point | EmittedBatch] = []
    async with Kapacitor(Recorder).task(on_message=got.append) as task:
        await task.send_frames(KapacitorConnection.send_data(make_pb_point(1), make_pb_point(2)))
        result = await task.stop()
    assert got[:2] == [make_pb_point(1), make_pb_point(2)]
    assert result.items == []  # went to on_message instead

    batch = Batch("cpu", [DataPoint("cpu", {"v": 1.0}, time=5)])
    got.clear()
    async with Kapacitor(BatchEcho).task(on_message=got.append) as task:
        await task.send(batch)
        await task.stop()
    [emitted] = got
    assert isinstance(emitted, EmittedBatch)
    assert Batch.from_messages(emitted.begin, emitted.points, emitted.end).points == batch.points


async def test_points_as_bytes_batches_as_messages() -> None:
    # What aioudf replay uses to skip even the Point objects: the bytes of
    # every Point emitted outside a batch; a batch still comes whole.
    from aioudf.wire._kapacitor import EmittedBatch

    raw: list[bytes] = []
    messages: list[Point | EmittedBatch] = []
    async with Kapacitor(Recorder).task(on_points=raw.extend, on_message=messages.append) as task:
        await task.send(make_pb_point(1), make_pb_point(2))
        assert await task.snapshot() == b"2"
        await task.send(make_pb_point(3))
        result = await task.stop()
    assert [Point.FromString(data) for data in raw[:3]] == [make_pb_point(t) for t in (1, 2, 3)]
    assert messages == [] and result.items == []

    batch = Batch("cpu", [DataPoint("cpu", {"v": 1.0}, time=5)])
    raw.clear()
    async with Kapacitor(BatchEcho).task(on_points=raw.extend, on_message=messages.append) as task:
        await task.send(batch)
        await task.stop()
    [emitted] = messages
    assert raw == [] and isinstance(emitted, EmittedBatch)


def make_pb_point(t: int) -> Point:
    return Point(name="cpu", time=t, fieldsDouble={"v": 1.0})


# ---- options ------------------------------------------------------------------------


async def test_options_are_typed_by_the_udfs_info() -> None:
    Typed.seen.clear()
    kapacitor = Kapacitor(Typed)
    await kapacitor.run(
        {
            "field": "usage",
            "scale": 2,  # an int where a DOUBLE is declared
            "every": datetime.timedelta(seconds=90, microseconds=1),
            "pair": [("a", 1.0), ("b", 2)],
            "verbose": True,
        },
        task_id="t1",
        node_id="n1",
    )
    assert Typed.seen == [
        {
            "field": "usage",
            "scale": 2.0,
            "every": datetime.timedelta(seconds=90, microseconds=1),
            "pair": [("a", 1.0), ("b", 2.0)],
            "verbose": True,
            "task": "t1",
            "node": "n1",
        }
    ]


def info_of(handler: type[Typed]) -> pb.InfoResponse:
    return describe(handler)


def test_a_flag_given_false_is_left_out_and_none_leaves_any_option_out() -> None:
    messages = encode_options({"field": "x", "verbose": False, "scale": None}, info_of(Typed))
    assert [m.name for m in messages] == ["field"]
    (flag,) = encode_options({"verbose": True}, info_of(Typed))
    assert (flag.name, list(flag.values)) == ("verbose", [])


def test_durations_are_sent_in_exact_nanoseconds() -> None:
    (every,) = encode_options(
        {"every": datetime.timedelta(days=400, microseconds=3)}, info_of(Typed)
    )
    assert every.values[0].durationValue == (400 * 86_400 * 10**6 + 3) * 1000
    assert ValueType(every.values[0].type) is ValueType.DURATION


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"nope": 1},
            "the UDF has no option 'nope'; it takes: .every(DURATION) .field(STRING) "
            ".pair(STRING, DOUBLE) .scale(DOUBLE) .verbose()",
        ),
        ({"pair": ("a",)}, "option 'pair' takes 2 value(s), .pair(STRING, DOUBLE), got 1"),
        ({"field": 3}, "invalid int value 3 for option 'field': the UDF declares STRING"),
        ({"scale": "big"}, "invalid str value 'big' for option 'scale': the UDF declares DOUBLE"),
    ],
)
def test_options_tickscript_would_refuse_are_refused(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(TypeError, match=re.escape(message)):
        encode_options(options, info_of(Typed))


def test_without_info_values_are_typed_by_python_type() -> None:
    (option,) = encode_options({"as_": ("x", 1, 2.5, True)})
    assert option.name == "as"
    assert [v.WhichOneof("value") for v in option.values] == [
        "stringValue",
        "intValue",
        "doubleValue",
        "boolValue",
    ]


# ---- failures, in the UDF's words ------------------------------------------------------


async def test_refused_init_raises_with_the_udfs_text() -> None:
    with pytest.raises(InitFailed) as caught:
        await Kapacitor(Typed).run({"pair": [("a", 1.0)]})  # no field
    assert (
        caught.value.text == "missing required option 'field': add .field('text') to the UDF call"
    )


async def test_an_init_that_crashes_is_an_error_response() -> None:
    with pytest.raises(UDFError) as caught:
        await Kapacitor(Fails).run({"in": "init"})
    assert caught.value.text == (
        "Fails.init() failed handling InitRequest: RuntimeError: init exploded"
    )


async def test_error_response_raises_with_its_text_and_keeps_earlier_output() -> None:
    points = [DataPoint("cpu", {"v": 1.0}, time=1), DataPoint("cpu", {"boom": 1.0}, time=4)]
    with pytest.raises(UDFError) as caught:
        await Kapacitor(Fails).run({"in": "point"}, points=points)
    assert caught.value.text == "Fails.point() failed handling Point: ValueError: bad value at t=4"
    assert caught.value.result is not None
    assert [p.time for p in caught.value.result.points] == [1]


async def test_refused_restore_raises_with_the_udfs_text() -> None:
    class Picky(Recorder):
        async def restore(self, snapshot: bytes) -> None:
            from aioudf import RestoreError

            raise RestoreError(f"cannot use a snapshot of {len(snapshot)} bytes")

    with pytest.raises(RestoreFailed, match="cannot use a snapshot of 3 bytes"):
        await Kapacitor(Picky).run(restore=b"abc")


# A fake UDF on a unix socket, to misbehave in ways aioudf's agent never does.
Fake = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def fake_udf(socket_path: Path) -> AsyncIterator[Callable[[Fake], Awaitable[Path]]]:
    servers: list[asyncio.AbstractServer] = []

    async def start(behaviour: Fake) -> Path:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await behaviour(reader, writer)
            finally:
                writer.close()

        servers.append(await asyncio.start_unix_server(serve, path=str(socket_path)))
        return socket_path

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def read_requests(reader: asyncio.StreamReader) -> AsyncIterator[pb.Request]:
    decoder = FrameDecoder()
    while data := await reader.read(65536):
        decoder.feed(data)
        while (body := decoder.next_frame()) is not None:
            yield pb.Request.FromString(bytes(body))


async def test_unanswered_keepalive_fails_with_kapacitors_words(
    fake_udf: Callable[[Fake], Awaitable[Path]],
) -> None:
    keepalives: list[int] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async for request in read_requests(reader):
            if request.WhichOneof("message") == "keepalive":
                keepalives.append(request.keepalive.time)
        writer.close()

    path = await fake_udf(silent)
    with pytest.raises(KeepaliveTimeout) as caught:
        await Kapacitor(Socket(path), timeout=0.2).info()
    assert str(caught.value).startswith("keepalive timedout, last keepalive received was: ")
    # The keepalive went out (at timeout/2) carrying the time in nanoseconds.
    assert keepalives
    assert abs(keepalives[0] / 1e9 - datetime.datetime.now().timestamp()) < 60


async def test_udf_closing_early_is_an_error(fake_udf: Callable[[Fake], Awaitable[Path]]) -> None:
    async def rude(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    path = await fake_udf(rude)
    with pytest.raises(UDFError, match="the UDF closed the connection unexpectedly"):
        await Kapacitor(Socket(path)).info()


async def test_a_reply_nobody_asked_for_is_an_error(
    fake_udf: Callable[[Fake], Awaitable[Path]],
) -> None:
    async def eager(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(
            encode_frame(pb.Response(init=pb.InitResponse(success=True)).SerializeToString())
        )
        await writer.drain()
        await reader.read()

    path = await fake_udf(eager)
    with pytest.raises(UDFError, match="the UDF sent a init response nobody asked for"):
        await Kapacitor(Socket(path)).info()


async def test_a_process_udf_stderr_is_kept(python_env: dict[str, str]) -> None:
    command = Command(
        [sys.executable, "-m", "aioudf", "run", "udf_handlers:Printer"], env=python_env
    )
    result = await Kapacitor(command).run(points=[DataPoint("cpu", {"v": 1.0}, time=7)])
    assert [p.time for p in result.points] == [7]
    assert "hello from print() 7" in result.stderr


async def test_a_process_udf_that_dies_shows_its_stderr(python_env: dict[str, str]) -> None:
    command = Command([sys.executable, "-c", "import sys; sys.exit('no such model: gpt-9')"])
    with pytest.raises(UDFError) as caught:
        await Kapacitor(command).info()
    assert "no such model: gpt-9" in caught.value.stderr
    assert "no such model: gpt-9" in str(caught.value)


def test_targets() -> None:
    assert isinstance(as_target(Recorder), type(as_target(Recorder)))
    assert as_target("/tmp/x.sock") == Socket("/tmp/x.sock")
    assert as_target(Path("/tmp/x.sock")) == Socket(Path("/tmp/x.sock"))
    assert as_target(["prog", "arg"]) == Command(["prog", "arg"])
    with pytest.raises(TypeError, match="cannot reach a UDF through 42"):
        as_target(42)


def test_run_sync_in_plain_code() -> None:
    result = Kapacitor(Recorder).run_sync(points=[DataPoint("cpu", {"v": 1.0}, time=3)])
    assert [p.time for p in result.points] == [3, 0]


async def test_run_sync_inside_a_loop_says_what_to_do() -> None:
    with pytest.raises(RuntimeError, match=r"use 'await kapacitor\.run"):
        Kapacitor(Recorder).run_sync()


# ---- the pytest plugin ------------------------------------------------------------------


def test_the_fixture_makes_a_udf_test_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from aioudf import Handler, Option, Point
        from aioudf.testing import DataPoint

        class Double(Handler):
            field = Option(str)

            async def point(self, point: Point) -> None:
                point.fieldsDouble[self.field] *= 2
                await self.emit(point)

        def test_sync(kapacitor):
            assert kapacitor(Double).run_sync(
                {"field": "v"}, points=[DataPoint("m", {"v": 2.0}, time=1)]
            ).points == [DataPoint("m", {"v": 4.0}, time=1)]

        @pytest.mark.asyncio
        async def test_async(kapacitor):
            udf = kapacitor(Double)
            result = await udf.run({"field": "v"}, points=[DataPoint("m", {"v": 1.5})])
            assert result.points[0].fields == {"v": 3.0}

        def test_timeout_option(kapacitor):
            assert kapacitor(Double).timeout == 2.5
        """
    )
    outcome = pytester.runpytest(
        "--kapacitor-timeout",
        "2.5",
        "-p",
        "asyncio",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
    )
    outcome.assert_outcomes(passed=3)
