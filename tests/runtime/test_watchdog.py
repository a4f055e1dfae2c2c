"""The blocked-loop watchdog: a warning that says where the loop is stuck, and why it matters.

A handler that blocks the event loop (``time.sleep`` in an ``async def``)
makes Kapacitor fail the task with "keepalive timedout" and nothing else. The
watchdog's warning names the function, file and line, and points at
BlockingHandler. It runs by default in process UDFs and ``serve()``, only on
request in an embedded UnixServer, and leaves no thread behind.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hostile import drive_agent
from logcapture import capturing, parse_logfmt
from standin import Peer, decode_responses, kind, options, request
from udf_handlers import Recorder, SleepsOnLoop

from aioudf import UnixServer, serve
from aioudf._pb import udf_pb2 as pb
from aioudf.config import Config
from aioudf.runtime._watchdog import DEFAULT_WARN_BLOCKED, LoopWatchdog

THREAD_NAME = "aioudf loop watchdog"


def watchdog_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


def line_of(function: Callable[..., object], text: str) -> int:
    """The line number of the first line of ``function`` containing ``text``."""
    lines, first = inspect.getsourcelines(function)
    for offset, line in enumerate(lines):
        if text in line:
            return first + offset
    raise AssertionError(f"{text!r} not in {function.__qualname__}")


SLEEP_LINE = line_of(SleepsOnLoop.point, "time.sleep(")
SLEEP_WHERE = f"SleepsOnLoop.point() at {inspect.getsourcefile(SleepsOnLoop)}:{SLEEP_LINE}"


class Watch(logging.Handler):
    """Collects the aioudf log records and signals (across threads) when one matches."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.waiting: list[tuple[str, threading.Event]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        for text, event in self.waiting:
            if text in record.getMessage():
                event.set()

    def when(self, text: str) -> threading.Event:
        event = threading.Event()
        self.waiting.append((text, event))
        return event

    def messages(self, text: str = "") -> list[str]:
        return [r.getMessage() for r in self.records if text in r.getMessage()]


@pytest.fixture
def watch() -> Iterator[Watch]:
    with capturing(Watch()) as handler:
        yield handler


async def wait_thread_event(event: threading.Event, timeout: float = 30) -> None:
    """Await a threading.Event without blocking the loop; a timeout is a failure."""
    assert await asyncio.to_thread(event.wait, timeout), "the expected log line never came"


# ---- the watchdog on its own -------------------------------------------------------------


def stuck_until(released: threading.Event) -> None:
    """Blocks the thread it runs on until ``released`` (30 s at most)."""
    released.wait(timeout=30)


async def blocking_coroutine(released: threading.Event) -> None:
    stuck_until(released)  # a blocking call on the loop: the mistake being diagnosed


async def test_warning_names_the_blocking_function_file_and_line(watch: Watch) -> None:
    # The loop stays blocked until the warning has been logged: no race with the clock.
    released = watch.when("event loop blocked for")
    recovered = watch.when("event loop responsive again")
    with LoopWatchdog(threshold=0.05) as watchdog:
        await blocking_coroutine(released)
        await wait_thread_event(recovered)
    (warning,) = watch.messages("event loop blocked for")
    # The innermost frame outside the stdlib and aioudf: here, this test file.
    here = Path(__file__).resolve()
    line = line_of(stuck_until, "released.wait(")
    assert f"in stuck_until() at {here}:{line}:" in warning
    assert "keepalives go unanswered" in warning
    assert "aioudf.BlockingHandler" in warning
    # The stack shows how the loop got there, most recent call last, down
    # into the standard library's wait.
    stack = warning.split("most recent call last:\n", 1)[1]
    assert stack.index("in blocking_coroutine") < stack.index("released.wait(timeout=30)")
    assert "threading.py" in stack.rstrip().splitlines()[-2]
    (end,) = watch.messages("event loop responsive again")
    assert end.endswith(f"in stuck_until() at {here}:{line}")
    assert watchdog.stalls == 1
    assert not watchdog_threads()


async def test_each_stall_is_reported_once(watch: Watch) -> None:
    with LoopWatchdog(threshold=0.05, interval=0.01) as watchdog:
        for n in range(1, 3):
            released = watch.when("event loop blocked for")
            recovered = watch.when("event loop responsive again")
            await blocking_coroutine(released)
            await wait_thread_event(recovered)
            assert watchdog.stalls == n
    assert len(watch.messages("event loop blocked for")) == 2
    assert len(watch.messages("event loop responsive again")) == 2


async def test_a_busy_loop_that_keeps_yielding_is_not_blocked(watch: Watch) -> None:
    # 20,000 points through an agent keep the loop busy, but it never stops
    # running callbacks for anywhere near the threshold.
    frames = [request(init=pb.InitRequest())]
    frames += [request(point=pb.Point(name="cpu", time=t)) for t in range(20_000)]
    with LoopWatchdog(threshold=0.5) as watchdog:
        outcome = await drive_agent(Recorder(), [b"".join(frames)])
    assert outcome.failure is None
    assert len([r for r in outcome.responses if r.HasField("point")]) == 20_001
    assert watchdog.stalls == 0
    assert not watch.messages("event loop blocked")


async def test_stop_ends_the_thread_and_start_again_works() -> None:
    watchdog = LoopWatchdog(threshold=1)
    watchdog.start()
    assert len(watchdog_threads()) == 1
    with pytest.raises(RuntimeError, match="already started"):
        watchdog.start()
    watchdog.stop()
    assert not watchdog_threads()
    watchdog.stop()  # idempotent
    with watchdog:
        assert len(watchdog_threads()) == 1
    assert not watchdog_threads()


@pytest.mark.parametrize("threshold", [0, -1, float("nan")])
def test_threshold_must_be_positive(threshold: float) -> None:
    with pytest.raises(ValueError, match="threshold must be positive"):
        LoopWatchdog(threshold)


def test_start_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError, match="no running event loop"):
        LoopWatchdog().start()
    assert not watchdog_threads()


# ---- where it runs by default ------------------------------------------------------------


async def test_embedded_server_starts_no_watchdog_unless_asked(socket_path: Path) -> None:
    async with UnixServer(Recorder, socket_path):
        assert not watchdog_threads()
    async with UnixServer(Recorder, socket_path, warn_blocked=0.5):
        assert len(watchdog_threads()) == 1
    assert not watchdog_threads()


@pytest.mark.parametrize(
    ("kwargs", "threads"),
    [({}, 1), ({"config": Config()}, 1), ({"warn_blocked": 0.3}, 1), ({"warn_blocked": 0}, 0)],
    ids=["default", "default-config", "set", "off"],
)
async def test_serve_runs_a_watchdog_by_default(
    socket_path: Path, kwargs: dict[str, Any], threads: int
) -> None:
    # (Before, serve(config=Config()) ran none: the Config's default was not serve()'s.)
    ready = asyncio.Event()
    task = asyncio.create_task(serve(Recorder, socket_path, ready=ready, **kwargs))
    await ready.wait()
    running = watchdog_threads()
    assert len(running) == threads
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not watchdog_threads()


async def test_serve_warns_about_a_handler_sleeping_on_the_loop(
    socket_path: Path, watch: Watch
) -> None:
    # In process, so the threshold and the handler share one loop: the
    # 1 s sleep is five times the threshold.
    ready = asyncio.Event()
    task = asyncio.create_task(serve(SleepsOnLoop, socket_path, ready=ready, warn_blocked=0.2))
    await ready.wait()
    peer = await Peer.unix(socket_path)
    await peer.send(
        request(init=pb.InitRequest(options=options(seconds=1.0))),
        request(point=pb.Point(name="cpu", time=1)),
    )
    assert (await peer.receive_kind("point")).point.time == 1
    await wait_thread_event(watch.when("event loop responsive again"))
    (warning,) = watch.messages("event loop blocked for")
    assert f"in {SLEEP_WHERE}:" in warning
    await peer.close()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not watchdog_threads()


# ---- process UDFs ---------------------------------------------------------------------


def run_sleeper(env: dict[str, str], argv: list[str], seconds: float) -> str:
    """A process UDF sleeping ``seconds`` on its loop for one point; return its log events."""
    stdin = request(init=pb.InitRequest(options=options(seconds=seconds))) + request(
        point=pb.Point(name="cpu", time=5)
    )
    done = subprocess.run(
        [sys.executable, *argv], input=stdin, capture_output=True, env=env, timeout=60
    )
    stderr = done.stderr.decode()
    assert done.returncode == 0, stderr
    # The warning went to stderr; the frames are intact.
    assert [kind(r) for r in decode_responses(done.stdout)] == ["init", "point"]
    # One logfmt line per event (a multi-line stack included): "lvl logger: msg".
    events = [parse_logfmt(line) for line in stderr.splitlines()]
    return "\n".join(f"{e['lvl']} {e['logger']}: {e['msg']}" for e in events)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_aioudf_run_warns_where_the_loop_is_blocked(python_env: dict[str, str], loop: str) -> None:
    stderr = run_sleeper(
        python_env,
        [
            "-m",
            "aioudf",
            "run",
            "udf_handlers:SleepsOnLoop",
            "--warn-blocked",
            "0.2",
            "--loop",
            loop,
        ],
        seconds=1.0,
    )
    assert "warn aioudf: event loop blocked for" in stderr
    assert f"in {SLEEP_WHERE}: while it is blocked, keepalives go unanswered" in stderr
    assert "subclass aioudf.BlockingHandler" in stderr
    assert "event loop responsive again after being blocked for" in stderr


def test_aioudf_run_function_warns_with_the_default_threshold(python_env: dict[str, str]) -> None:
    # aioudf.run() with no watchdog argument: the default threshold applies
    # (the handler sleeps 2.5 times as long).
    stderr = run_sleeper(
        python_env,
        ["-c", "import aioudf, udf_handlers; aioudf.run(udf_handlers.SleepsOnLoop)"],
        seconds=DEFAULT_WARN_BLOCKED * 2.5,
    )
    assert f"(threshold {DEFAULT_WARN_BLOCKED:g} s) in {SLEEP_WHERE}:" in stderr


def test_warn_blocked_flag_refuses_negative_values(python_env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aioudf", "run", "udf_handlers:Recorder", "--warn-blocked", "-1"],
        capture_output=True,
        env=python_env,
        timeout=60,
    )
    assert done.returncode == 2
    assert "argument --warn-blocked: must be 0 or more seconds, got -1" in done.stderr.decode()
