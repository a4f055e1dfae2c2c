"""``aioudf serve --workers``: no process's failure ends another's connections; load is shared.

Through a real Kapacitor: tasks connect while the second worker is still
starting (held in its import by a gate the test opens, or kills it in), as
they do when kapacitord and the UDF start together. The averages of a window
of 3 across every move are those of one uninterrupted run only if the
handler's state moved with the connection, and Kapacitor's own counts of the
points along each edge say none was lost or handled twice.
"""

from __future__ import annotations

import collections
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from kapacitord import VALUES, Kapacitord, Servers, SocketServer, SocketUDF, processed, rows
from test_operations import (
    AVG_BY_HOST,
    HANDLER_CODE,
    Serve,
    check_continuity,
    write_points,
)

from aioudf.serving._supervisor import Backoff, share_plan

# Put first in the handler's file: the second worker waits in its import
# until the test opens the gate (or kills it there).
GATE = (Path(__file__).parents[1] / "held_import.py").read_text()


@pytest.fixture
def serve(python_env: dict[str, str], short_tmp: Path) -> Iterator[Serve]:
    servers = Servers(python_env, short_tmp)
    yield servers.start
    servers.kill()


def start_held(serve: Serve, short_tmp: Path) -> tuple[SocketServer, int]:
    """``--workers 2`` whose first worker serves and whose second is held; (server, its pid)."""
    os.mkfifo(short_tmp / "gate")
    (short_tmp / "gated.py").write_text(GATE + HANDLER_CODE.format(version=1.0))
    server = serve(str(short_tmp / "gated.py") + ":Avg", "--workers", "2")
    server.wait_log("serving ")
    server.wait_log("holds in its import")
    held = re.search(r"worker (\d+) holds in its import", server.log())
    assert held is not None
    return server, int(held.group(1))


def start_tasks(k: Kapacitord, count: int) -> list[str]:
    """``count`` tasks, each through its first 6 points; all served by the one ready worker."""
    tasks = [f"t{n}" for n in range(count)]
    for task in tasks:
        k.define_task(task, AVG_BY_HOST.format(measurement="cpu"))
    write_points(k, range(0, 6))
    for task in tasks:
        check_continuity(k, task, 5, version=1.0)
    return tasks


def finish_tasks(k: Kapacitord, tasks: list[str]) -> dict[str, int]:
    """Stream the other 6 points; check every task's averages and counts; task -> pid."""
    for t in range(6, 12):
        write_points(k, range(t, t + 1))
        for task in tasks:
            check_continuity(k, task, t, version=1.0)
    points = 12 * len(VALUES)
    for task in tasks:
        state = k.task(task)
        assert not state["error"], f"task {task} failed: {state['error']}"
        edges = processed(state["dot"])
        assert edges[("from1", "movingAverage2")] == points, edges
        assert edges[("movingAverage2", "http_out3")] == points, edges
    assert "keepalive timedout" not in k.log()
    return {task: int(rows(k.output(task, "out"))[-1]["pid"]) for task in tasks}


def test_worker_killed_while_starting_leaves_the_live_tasks_running(
    serve: Serve, short_tmp: Path
) -> None:
    server, held = start_held(serve, short_tmp)
    with Kapacitord(short_tmp / "k", {"movingAverage": SocketUDF(str(server.path))}) as k:
        tasks = start_tasks(k, 4)
        os.kill(held, signal.SIGKILL)
        # Tried again after a pause, the other worker's tasks untouched.
        server.wait_log(f"worker {held} could not start (killed by SIGKILL); trying again in 1 s")
        server.wait_log("serving ", count=2)
        server.wait_log("gave 2 connection(s) to worker")  # the new one takes its share
        pids = finish_tasks(k, tasks)
    assert sorted(collections.Counter(pids.values()).values()) == [2, 2], pids
    assert "shutting down" not in server.log()
    assert server.process.poll() is None
    assert server.stop() == 0


def test_tasks_connected_before_the_second_worker_is_ready_end_up_shared(
    serve: Serve, short_tmp: Path
) -> None:
    server, held = start_held(serve, short_tmp)
    with Kapacitord(short_tmp / "k", {"movingAverage": SocketUDF(str(server.path))}) as k:
        tasks = start_tasks(k, 8)
        assert len({row["pid"] for t in tasks for row in rows(k.output(t, "out"))}) == 1
        with open(short_tmp / "gate", "w"):  # the second worker goes on
            pass
        server.wait_log(f"gave 4 connection(s) to worker {held} to share the load")
        pids = finish_tasks(k, tasks)
    assert sorted(collections.Counter(pids.values()).values()) == [4, 4], pids
    assert held in pids.values()
    assert server.stop() == 0


def test_backoff_doubles_while_workers_fail_and_starts_over_after_a_healthy_one() -> None:
    backoff = Backoff(first=1.0, longest=8.0, healthy=30.0)
    assert [backoff.pause(None) for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert backoff.pause(60.0) == 0.0  # served a minute: replaced at once
    # A worker that dies soon after it served, again and again: a crash loop.
    assert [backoff.pause(0.5) for _ in range(4)] == [2.0, 4.0, 8.0, 8.0]


def test_share_plan_gives_the_newcomer_its_share_from_the_busiest() -> None:
    assert share_plan(0, {"a": 8}) == {"a": 4}
    assert share_plan(1, {"a": 7}) == {"a": 3}
    assert share_plan(0, {"a": 4, "b": 4}) == {"a": 1, "b": 1}
    assert share_plan(0, {"a": 6, "b": 1}) == {"a": 2}
    assert share_plan(0, {"a": 1}) == {}  # one connection: nowhere better
    assert share_plan(3, {"a": 3}) == {}
    assert share_plan(0, {}) == {}


def test_workers_serve_their_tasks_on_when_the_supervisor_is_killed(
    serve: Serve, short_tmp: Path
) -> None:
    (short_tmp / "versioned.py").write_text(HANDLER_CODE.format(version=1.0))
    server = serve(str(short_tmp / "versioned.py") + ":Avg", "--workers", "2")
    server.wait_log("serves its share")  # both workers serve
    workers = [int(pid) for pid in re.findall(r"worker (\d+) started", server.log())]
    with Kapacitord(short_tmp / "k", {"movingAverage": SocketUDF(str(server.path))}) as k:
        tasks = start_tasks(k, 2)
        server.process.kill()
        server.wait()
        # Each worker says so, and goes on: they log on after the supervisor
        # exited, so wait on the log itself, not on wait_log (which stops at
        # the supervisor's exit).
        k.wait_for(
            lambda: server.log().count("the supervisor is gone") >= 2,
            "both workers to see the supervisor gone",
        )
        finish_tasks(k, tasks)
    # Kapacitor closed its connections: the workers, orphans now, end with them.
    for pid in workers:
        k.wait_for(lambda pid=pid: not running(pid), f"worker {pid} to end")  # type: ignore[misc]


def running(pid: int) -> bool:
    """Whether process ``pid`` (not our child) runs: not gone, not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
