"""aioudf.compat: Kapacitor's Python agent API, served by aioudf (in this process).

Each test serves handlers written against the official agent's API with
``aioudf.compat.Server`` in a thread and drives them with aioudf's test kit
over the socket, as Kapacitor would; the script-level behaviour (``aioudf
compat SCRIPT.py``, the ``kapacitor.udf`` modules) runs in child processes.
The real kapacitord runs the same in tests/compat/test_compat_kapacitord.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kapacitord import find_kapacitord

from aioudf.compat import Agent, Handler, Server, udf_pb2
from aioudf.testing import Batch, DataPoint, InitFailed, Kapacitor, Socket, UDFError
from aioudf.wire._messages import Point

HERE = Path(__file__).resolve().parent
SCRIPTS = HERE / "compat_scripts"


def official_agent() -> Path | None:
    """Kapacitor's own Python agent, beside kapacitord in shared/kapacitor."""
    binary = find_kapacitord()
    return binary.parent.parent / "peers" / "python" if binary is not None else None


def stream_info() -> Any:
    response = udf_pb2.Response()
    response.info.wants = udf_pb2.STREAM
    response.info.provides = udf_pb2.STREAM
    response.info.options["field"].valueTypes.append(udf_pb2.STRING)
    return response


class Mirror(Handler):
    """The shape of a handler for the official agent: Response objects, write_response()."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self.field = ""

    def info(self) -> Any:
        return stream_info()

    def init(self, init_req: Any) -> Any:
        for option in init_req.options:
            if option.name == "field":
                self.field = option.values[0].stringValue
        response = udf_pb2.Response()
        response.init.success = True
        return response

    def point(self, point: Any) -> None:
        response = udf_pb2.Response()
        response.point.CopyFrom(point)
        self._agent.write_response(response, True)


class Accepter:
    def __init__(self, make: Callable[[Agent], Any]) -> None:
        self.make = make
        self.finished = threading.Semaphore(0)  # released as each accept() returns

    def accept(self, conn: Any, addr: Any) -> None:
        agent = Agent(conn, conn)
        agent.handler = self.make(agent)
        agent.start()
        agent.wait()
        self.finished.release()


@pytest.fixture
def serve(short_tmp: Path) -> Iterator[Callable[..., str]]:
    """``serve(accepter)``: a compat Server in a thread; its socket path."""
    running: list[tuple[Server, threading.Thread]] = []

    def start(accepter: Any) -> str:
        path = str(short_tmp / f"udf{len(running)}.sock")
        server = Server(path, accepter)
        thread = threading.Thread(target=server.serve)
        thread.start()
        running.append((server, thread))
        assert server.serving.wait(10)
        return path

    yield start
    for server, thread in running:
        server.stop()
        thread.join(10)
        assert not thread.is_alive()


def points(*values: float) -> list[DataPoint]:
    return [DataPoint("cpu", {"v": v}, time=t) for t, v in enumerate(values)]


def test_a_handler_for_the_official_agent_serves_kapacitor(serve: Callable[..., str]) -> None:
    accepter = Accepter(Mirror)
    path = serve(accepter)
    result = Kapacitor(Socket(path)).run_sync({"field": "v"}, points=points(1.0, 2.0))
    assert [p.fields for p in result.points] == [{"v": 1.0}, {"v": 2.0}]
    # Info and the task: two connections, two accept() calls, both returned from wait().
    assert accepter.finished.acquire(timeout=10) and accepter.finished.acquire(timeout=10)


def test_a_handler_exception_sends_the_agents_text_and_logs_one_traceback(
    serve: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    class Fails(Mirror):
        def point(self, point: Any) -> None:
            raise ValueError(f"bad value {point.fieldsDouble['v']}")

    path = serve(Accepter(Fails))
    with caplog.at_level(logging.ERROR), pytest.raises(UDFError) as failed:
        Kapacitor(Socket(path)).run_sync({}, points=points(3.0))
    # What alerts and runbooks match on: Kapacitor's agent's own words.
    assert failed.value.text == "error processing request of type point: bad value 3.0"
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.getMessage() == "Fails.point() failed: ValueError: bad value 3.0"
    assert record.exc_info is not None
    tb = record.exc_info[2]
    assert tb is not None and tb.tb_frame.f_code.co_name == "point"  # the script's frame first


@pytest.mark.parametrize(
    ("method", "kind"), [("begin_batch", "begin"), ("end_batch", "end"), ("init", "init")]
)
def test_the_error_text_names_the_request_as_the_agent_does(
    serve: Callable[..., str], method: str, kind: str
) -> None:
    def fail(*args: Any) -> None:
        raise RuntimeError("nope")

    class Batches(Mirror):
        def info(self) -> Any:
            response = stream_info()
            response.info.wants = response.info.provides = udf_pb2.BATCH
            return response

        def begin_batch(self, begin_req: Any) -> None:
            pass

        def end_batch(self, end_req: Any) -> None:
            pass

    setattr(Batches, method, fail)
    path = serve(Accepter(Batches))
    batch = Batch("cpu", points(1.0))
    with pytest.raises(UDFError) as failed:
        Kapacitor(Socket(path)).run_sync({}, batches=[batch])
    assert failed.value.text == f"error processing request of type {kind}: nope"


def test_a_slow_point_does_not_miss_keepalives(serve: Callable[..., str]) -> None:
    class Slow(Mirror):
        def point(self, point: Any) -> None:
            time.sleep(2.5)  # a slow model: two and a half UDF timeouts
            super().point(point)

    path = serve(Accepter(Slow))

    async def run() -> tuple[list[Any], int]:
        got: list[Any] = []
        both = asyncio.Event()

        def output(item: Any) -> None:
            got.append(item)
            if len(got) == 1:
                both.set()

        kapacitor = Kapacitor(Socket(path), timeout=1.0)  # a keepalive every 0.5 s
        async with kapacitor.task({}, on_output=output) as task:
            await task.send(*points(1.0))
            await asyncio.wait_for(both.wait(), 20)
            answered = task.keepalives_answered
            await task.stop()  # raises KeepaliveTimeout if one went unanswered for 1 s
        return got, answered

    got, answered = asyncio.run(run())
    assert [p.fields for p in got] == [{"v": 1.0}]
    assert answered >= 3  # answered while the handler was busy


def test_points_a_handler_keeps_are_its_own(serve: Callable[..., str]) -> None:
    class KeepsAll(Mirror):
        def __init__(self, agent: Agent) -> None:
            super().__init__(agent)
            self.kept: list[Any] = []

        def point(self, point: Any) -> None:
            self.kept.append(point)  # outliers.py keeps points until end_batch

        def snapshot(self) -> Any:
            for point in self.kept:  # emitted late, after more requests came
                super().point(point)
            response = udf_pb2.Response()
            response.snapshot.snapshot = b"sent"
            return response

    path = serve(Accepter(KeepsAll))
    result = Kapacitor(Socket(path)).run_sync({}, points=points(1.0, 2.0, 3.0), snapshot=True)
    assert [p.fields["v"] for p in result.points] == [1.0, 2.0, 3.0]
    assert result.snapshot == b"sent"


def test_write_response_from_another_thread_after_the_method_returned(
    serve: Callable[..., str],
) -> None:
    class Later(Mirror):
        def point(self, point: Any) -> None:
            threading.Timer(0.05, super().point, args=(point,)).start()

    path = serve(Accepter(Later))

    async def run() -> list[Any]:
        got: list[Any] = []
        arrived = asyncio.Event()

        def output(item: Any) -> None:
            got.append(item)
            arrived.set()

        async with Kapacitor(Socket(path)).task({}, on_output=output) as task:
            await task.send(*points(7.0))
            # It arrives with no further request, no flush, to carry it.
            await asyncio.wait_for(arrived.wait(), 10)
            await task.stop()
        return got

    assert [p.fields for p in asyncio.run(run())] == [{"v": 7.0}]


def test_init_responses_are_sent_as_they_are(serve: Callable[..., str]) -> None:
    class Refuses(Mirror):
        def init(self, init_req: Any) -> Any:
            response = udf_pb2.Response()
            response.init.success = False
            response.init.error = "must supply field name"
            return response

    path = serve(Accepter(Refuses))
    with pytest.raises(InitFailed) as refused:
        Kapacitor(Socket(path)).run_sync({})
    assert refused.value.text == "must supply field name"


def test_an_error_response_the_handler_writes_is_sent_word_for_word(
    serve: Callable[..., str],
) -> None:
    class Writes(Mirror):
        def point(self, point: Any) -> None:
            response = udf_pb2.Response()
            response.error.error = "value out of range"
            self._agent.write_response(response)

    path = serve(Accepter(Writes))
    with pytest.raises(UDFError) as failed:
        Kapacitor(Socket(path)).run_sync({}, points=points(1.0))
    assert failed.value.text == "value out of range"


def test_methods_left_to_the_base_class(serve: Callable[..., str]) -> None:
    class Bare(Handler):
        def __init__(self, agent: Agent) -> None:
            self._agent = agent

        def info(self) -> Any:
            return stream_info()

        def init(self, init_req: Any) -> Any:
            response = udf_pb2.Response()
            response.init.success = True
            return response

    path = serve(Accepter(Bare))
    # snapshot() not implemented: an empty snapshot, not a failed task.
    assert Kapacitor(Socket(path)).run_sync({}, snapshot=True).snapshot == b""
    with pytest.raises(UDFError) as failed:
        Kapacitor(Socket(path)).run_sync({}, restore=b"state")
    assert "does not implement restore()" in failed.value.text


def test_a_method_returning_none_or_missing_is_named(serve: Callable[..., str]) -> None:
    class NoInfo(Mirror):
        def info(self) -> Any:
            return None

    class NoBatches:  # not a Handler: a duck-typed handler without begin_batch()
        def __init__(self, agent: Agent) -> None:
            self.mirror = Mirror(agent)
            self.init, self.point = self.mirror.init, self.mirror.point

        def info(self) -> Any:
            response = stream_info()
            response.info.wants = udf_pb2.BATCH
            return response

    path = serve(Accepter(NoInfo))
    with pytest.raises(UDFError) as failed:
        Kapacitor(Socket(path)).run_sync({})
    assert failed.value.text == (
        "error processing request of type info: NoInfo.info() returned None, "
        "not a Response with info"
    )
    path = serve(Accepter(NoBatches))
    batch = Batch("cpu", points(1.0))
    with pytest.raises(UDFError) as failed:
        Kapacitor(Socket(path)).run_sync({}, batches=[batch])
    assert failed.value.text == (
        "error processing request of type begin: NoBatches has no method begin_batch()"
    )


def test_an_accepter_that_starts_no_agent_fails_its_connection_only(
    serve: Callable[..., str],
) -> None:
    class Lazy:
        def accept(self, conn: Any, addr: Any) -> None:
            pass

    path = serve(Lazy())
    with pytest.raises(UDFError) as failed:
        Kapacitor(Socket(path)).run_sync({})
    assert failed.value.text == (
        "error processing request of type info: Lazy.accept() returned without starting an Agent"
    )


def test_a_malformed_frame_gets_an_error_and_the_server_lives_on(serve: Callable[..., str]) -> None:
    path = serve(Accepter(Mirror))

    async def hostile() -> str:
        kapacitor = Kapacitor(Socket(path))
        async with kapacitor.task({}) as task:
            await task.send_frames(b"\x05\xff\xff\xff\xff\xff")  # not a Request
            with pytest.raises(UDFError) as failed:
                await task.stop()
            return failed.value.text

    assert asyncio.run(hostile()).startswith("protocol error:")
    result = Kapacitor(Socket(path)).run_sync({}, points=points(5.0))
    assert [p.fields for p in result.points] == [{"v": 5.0}]


def test_udf_pb2_is_aioudfs_own_module() -> None:
    response = udf_pb2.Response()
    assert type(response.point) is Point
    assert udf_pb2.STREAM == 0 and udf_pb2.STRING == 3


# ---- scripts, in child processes ------------------------------------------


def compat(
    python_env: dict[str, str], *args: str, stdin: bytes = b""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aioudf", "compat", *args],
        input=stdin.decode(),
        capture_output=True,
        text=True,
        env=python_env,
        timeout=60,
    )


@pytest.fixture
def agent_env(python_env: dict[str, str]) -> dict[str, str]:
    """The environment with Kapacitor's own agent on PYTHONPATH, as kapacitor.conf sets it."""
    agent = official_agent()
    if agent is None:
        pytest.skip("no shared/kapacitor beside the checkout")
    return dict(python_env, PYTHONPATH=f"{agent}:{python_env['PYTHONPATH']}")


def test_kapacitor_modules_are_aioudfs_even_beside_the_real_agent(
    agent_env: dict[str, str], tmp_path: Path
) -> None:
    script = tmp_path / "which.py"
    script.write_text(
        "import sys\n"
        "import kapacitor.udf.agent as agent\n"
        "from kapacitor.udf import udf_pb2\n"
        "import aioudf.wire._messages\n"
        "print(agent.__name__, udf_pb2.Response is aioudf.wire._messages.pb.Response)\n"
        "print(sys.argv, sys.path[0] == sys.argv[0].rpartition('/')[0])\n"
        "agent.Agent()\n"
    )
    done = compat(agent_env, str(script), "--size", "3")
    assert done.stdout == ""  # print() goes to stderr: stdout carries frames only
    assert done.stderr.strip().splitlines() == [
        "aioudf.compat.agent True",
        f"[{str(script)!r}, '--size', '3'] True",
        # The script made an Agent but never started it: one line, no traceback.
        f"aioudf compat: error: {script} created an Agent but never called its start(): "
        "nothing serves Kapacitor",
    ]
    assert done.returncode == 2


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file: {path}"),
        ("#!/bin/sh\necho not python (\n", "{path} is not a Python script: "),
        ("import json\n", "{path} never created an Agent or a Server"),
    ],
)
def test_bad_scripts_get_one_line(
    python_env: dict[str, str], tmp_path: Path, content: str | None, expected: str
) -> None:
    path = tmp_path / "udf.py"
    if content is not None:
        path.write_text(content)
    done = compat(python_env, str(path))
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("aioudf compat: error: " + expected.format(path=path))


def test_a_script_failing_at_import_is_one_line_naming_its_line_and_exit_1(
    python_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "broken.py"
    path.write_text("import json\n\nraise ImportError('no module named sklearn')\n")
    done = compat(python_env, "--log-format", "json", str(path))
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()  # raised in the script itself: the line says all
    assert line == (
        f"aioudf compat: error: cannot run {path}: {path}:3: ImportError: no module named sklearn"
    )


def test_an_error_raised_deeper_at_import_is_one_line_and_its_traceback_once(
    python_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "helper.py").write_text("def load():\n    return 1 / 0\n")
    path = tmp_path / "udf.py"
    path.write_text("import helper\n\nMODEL = helper.load()\n")
    done = compat(python_env, "--log-format", "json", str(path))
    assert done.returncode == 1
    line, entry = done.stderr.strip().splitlines()
    assert line.startswith(f"aioudf compat: error: cannot run {path}: ")
    assert line.endswith("helper.py:2: ZeroDivisionError: division by zero")
    record = json.loads(entry)  # one JSON entry: the traceback inside it, from the script on
    assert record["exc"].count("Traceback") == 1
    assert f'File "{path}", line 3' in record["exc"]
    assert "runpy" not in record["exc"]


def test_socket_flags_for_a_process_udf_are_refused(
    python_env: dict[str, str], tmp_path: Path
) -> None:
    done = compat(python_env, "--workers", "2", str(SCRIPTS / "slow.py"), "0")
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "--workers serve a socket (a Server)" in line
    done = compat(python_env, "--socket", str(tmp_path / "s"), str(SCRIPTS / "slow.py"), "0")
    assert done.returncode == 2
    assert "names its socket itself" in done.stderr
