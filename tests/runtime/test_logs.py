"""Log lines: one per event, parseable, and about the task node they concern."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import anyio
import pytest
from logcapture import capturing, parse_logfmt

from aioudf import BlockingHandler, Handler, Option, Point
from aioudf.runtime._logs import (
    MAX_FIELD,
    ContextFilter,
    JsonFormatter,
    LogfmtFormatter,
    TextFormatter,
    configure_logging,
    connection_context,
)
from aioudf.testing import DataPoint, InitFailed, Kapacitor

# A message with everything logfmt must escape, and text beyond ASCII.
AWKWARD = 'he said "x=1"\\ then\nleft\ttabbed, naïve ☃ \x01'


def record_of(message: str, **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("aioudf.test")
    return logger.makeRecord(
        logger.name, logging.WARNING, __file__, 1, message, (), None, extra=extra
    )


def failing_record() -> logging.LogRecord:
    try:
        int("not a number")  # the failing line
    except ValueError:
        import sys

        logger = logging.getLogger("aioudf.test")
        return logger.makeRecord(
            logger.name, logging.ERROR, __file__, 1, "it failed", (), sys.exc_info()
        )
    raise AssertionError("unreachable")


def test_logfmt_line_parses_back_to_its_fields() -> None:
    record = record_of(AWKWARD, group="host=a b", count=3)
    with connection_context("7") as context:
        context.task, context.node = "cpu alert", "udf1"
        ContextFilter().filter(record)
    line = LogfmtFormatter().format(record)
    assert "\n" not in line
    fields = parse_logfmt(line)
    assert line.startswith("ts=")
    assert list(fields) == [
        *("ts", "lvl", "msg", "logger", "pid", "conn", "task", "node", "group", "count")
    ]
    assert fields["pid"] == str(os.getpid())  # two processes share stderr in a hand-over
    assert fields["lvl"] == "warn"
    assert fields["msg"] == AWKWARD
    assert (fields["conn"], fields["task"], fields["node"]) == ("7", "cpu alert", "udf1")
    assert (fields["group"], fields["count"]) == ("host=a b", "3")
    assert fields["ts"].endswith("Z") and "T" in fields["ts"]


def test_traceback_is_folded_into_one_logfmt_line() -> None:
    line = LogfmtFormatter().format(failing_record())
    assert "\n" not in line
    fields = parse_logfmt(line)
    assert fields["msg"] == "it failed"
    assert fields["lvl"] == "error"
    exc = fields["exc"]
    assert exc.startswith("Traceback (most recent call last):\n")
    assert '\n    int("not a number")  # the failing line\n' in exc
    assert exc.endswith("ValueError: invalid literal for int() with base 10: 'not a number'")


def test_json_line_has_the_same_fields() -> None:
    record = failing_record()
    record.msg = AWKWARD
    line = JsonFormatter().format(record)
    assert "\n" not in line
    event = json.loads(line)
    assert event["msg"] == AWKWARD
    assert event["lvl"] == "error"
    assert "the failing line" in event["exc"]
    assert "conn" not in event  # outside a connection: no empty fields


def test_a_record_may_name_its_connection() -> None:
    # A hand-over logs about a connection from outside the connection's own task.
    record = record_of("task 't2' handed over", conn="2", task="t2", node="n")
    with connection_context("other"):
        ContextFilter().filter(record)
    fields = parse_logfmt(LogfmtFormatter().format(record))
    assert (fields["conn"], fields["task"], fields["node"]) == ("2", "t2", "n")
    assert list(fields).count("conn") == 1


def test_text_lines_name_the_process() -> None:
    line = TextFormatter().format(record_of("hello"))
    assert f"aioudf.test[{os.getpid()}]: hello" in line


@pytest.mark.parametrize("given", ["debug", "DEBUG", "Debug", "warn"])
def test_log_level_in_any_case(python_env: dict[str, str], given: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aioudf", "run", "udf_handlers:Recorder", "--log-level", given],
        input=b"",
        capture_output=True,
        env=python_env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b""


def test_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log format 'xml'; expected one of logfmt"):
        configure_logging("INFO", "xml")


class Captured(logging.Handler):
    """Every record, with the connection context as the record was made."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(ContextFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def where(self, message: str) -> tuple[str, str, str]:
        """task, node and thread name of the one record whose message is ``message``."""
        (record,) = [r for r in self.records if r.getMessage() == message]
        return (getattr(record, "task", ""), getattr(record, "node", ""), str(record.threadName))


@pytest.fixture
def captured() -> Iterator[Captured]:
    with capturing(Captured(), "") as handler:  # the root: handlers' loggers too
        yield handler


class Chatty(Handler):
    """Logs from the loop, a task it starts, and worker threads of both kinds."""

    async def init(self, request: object) -> None:
        self.log.info("init")

    async def point(self, point: Point) -> None:
        self.log.info("point")
        await asyncio.to_thread(self.log.info, "asyncio.to_thread")
        await anyio.to_thread.run_sync(self.log.info, "anyio.to_thread")
        await asyncio.create_task(self._later())
        await self.emit(point)

    async def _later(self) -> None:
        self.log.info("task")


class ChattyBlocking(BlockingHandler):
    def init(self, request: object) -> None:
        self.log.info("blocking init")

    def point(self, point: Point) -> None:
        self.log.info("blocking point in %s", threading.current_thread().name)
        self.emit(point)


async def test_handler_log_lines_carry_task_and_node(captured: Captured) -> None:
    result = await Kapacitor(Chatty).run(
        points=[DataPoint("cpu", {"v": 1.0}, time=1)], task_id="cpu_alert", node_id="chatty3"
    )
    assert len(result.points) == 1
    for message in ("init", "point", "asyncio.to_thread", "anyio.to_thread", "task"):
        task, node, _ = captured.where(message)
        assert (task, node) == ("cpu_alert", "chatty3"), message
    assert captured.where("asyncio.to_thread")[2] != threading.current_thread().name
    logger_names = {r.name for r in captured.records if r.getMessage() == "point"}
    assert logger_names == {f"{__name__}.Chatty"}


async def test_blocking_handler_log_lines_carry_task_and_node(captured: Captured) -> None:
    await Kapacitor(ChattyBlocking).run(
        points=[DataPoint("cpu", {"v": 1.0}, time=1)], task_id="t2", node_id="n2"
    )
    assert captured.where("blocking init")[:2] == ("t2", "n2")
    (record,) = [r for r in captured.records if r.getMessage().startswith("blocking point in")]
    assert (getattr(record, "task", ""), getattr(record, "node", "")) == ("t2", "n2")
    assert record.threadName != threading.current_thread().name  # a worker thread


async def test_a_refused_option_is_logged_with_task_and_node(captured: Captured) -> None:
    class Needs(Handler):
        field = Option(str)

    with pytest.raises(InitFailed, match="missing required option 'field'"):
        await Kapacitor(Needs).run(task_id="t7", node_id="needs2")
    (record,) = [r for r in captured.records if r.getMessage().startswith("Init refused")]
    assert (getattr(record, "task", ""), getattr(record, "node", "")) == ("t7", "needs2")


async def test_two_connections_keep_their_own_context(captured: Captured) -> None:
    udf = Kapacitor(Chatty)
    async with anyio.create_task_group() as tg:
        for task in ("a", "b"):
            tg.start_soon(
                lambda t: udf.run(points=[DataPoint("cpu", {"v": 1.0}, time=1)], task_id=t), task
            )
    tasks = sorted(getattr(r, "task", "") for r in captured.records if r.getMessage() == "task")
    assert tasks == ["a", "b"]
    # The agent names the connection when no server did (aioudf.testing: in-process).
    chatty = [r for r in captured.records if r.name.endswith("Chatty")]
    assert {getattr(r, "conn", "") for r in chatty} == {"in-process"}


def test_a_huge_message_stays_under_kapacitors_line_limit() -> None:
    # Kapacitor stops reading a process UDF's stderr after a line over 64 KiB.
    message = "start " + "x" * 200_000 + " the end"
    line = LogfmtFormatter().format(record_of(message))
    assert len(line.encode()) < 64 * 1024
    fields = parse_logfmt(line)
    assert fields["msg"].startswith("start xxx")
    assert fields["msg"].endswith("xxx the end")
    assert f"[...{len(message) - MAX_FIELD} characters cut...]" in fields["msg"]


def test_a_handler_may_set_its_own_log() -> None:
    class OwnLogger(Handler):
        def __init__(self) -> None:
            self.log = logging.getLogger("mine")

    assert OwnLogger().log.name == "mine"
    assert Chatty().log.name == f"{__name__}.Chatty"
