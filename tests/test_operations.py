"""A socket UDF's life under operations, checked with a real Kapacitor.

Shutdown, socket activation, workers and hand-over of live connections
(docs/operations.md): each test runs ``aioudf serve`` as a child process, a
hermetic ``kapacitord`` 1.4.1 whose tasks use it, and checks what the tasks
see. Expected numbers are computed here, independently of the UDF's code.
"""

from __future__ import annotations

import signal
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kapacitord import Kapacitord, SocketServer, SocketUDF, require_kapacitord, rows

pytestmark = pytest.mark.usefixtures("kapacitord_binary")


@pytest.fixture(scope="module")
def kapacitord_binary() -> Path:
    return require_kapacitord()


Serve = Callable[..., SocketServer]


@pytest.fixture
def serve(python_env: dict[str, str], short_tmp: Path) -> Iterator[Serve]:
    """Start ``aioudf serve ARGS`` (its log in short_tmp); stopped after the test."""
    servers: list[SocketServer] = []

    def start(*args: str, path: Path | None = None, **options: object) -> SocketServer:
        path = path or short_tmp / "udf.sock"
        log = short_tmp / f"serve{len(servers)}.log"
        server = SocketServer(python_env, [*args, "--socket", str(path)], path, log, **options)  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


AVG_BY_HOST = """stream
    |from()
        .measurement('{measurement}')
        .groupBy('host')
    @movingAverage()
        .field('v')
        .size(3)
        .as('avg')
    |httpOut('out')
"""


def expected_averages(values: list[float], size: int = 3) -> list[float]:
    return [statistics.fmean(values[max(0, i + 1 - size) : i + 1]) for i in range(len(values))]


def averages(k: Kapacitord, task: str, host: str) -> list[float]:
    """The task's ``avg`` values for ``host``, in time order (httpOut keeps the last point only)."""
    return [row["avg"] for row in rows(k.output(task, "out")) if row["host"] == host]


def test_sigterm_with_live_tasks_answers_them_and_exits_0(serve: Serve, short_tmp: Path) -> None:
    server = serve("moving_avg:MovingAvg")
    server.wait_log("serving ")
    with Kapacitord(short_tmp / "k", {"movingAverage": SocketUDF(str(server.path))}) as k:
        for task in ("a", "b"):
            k.define_task(task, AVG_BY_HOST.format(measurement=task))
        k.write(["a,host=h v=1 1", "b,host=h v=2 1"])
        k.wait_output("a", "out", 1)
        k.wait_output("b", "out", 1)

        sent = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        took = time.monotonic() - sent
        # Each connection was told why it ended; Kapacitor fails the task
        # with that text when the UDF node next takes a point.
        k.wait_for(
            lambda: k.log().count("the UDF server is shutting down") >= 2, "both ErrorResponses"
        )
        k.write(["a,host=h v=1 2", "b,host=h v=2 2"])
        assert "the UDF server is shutting down" in k.wait_task_error("a")
    assert not server.path.exists()
    assert "stopped serving" in server.log()
    # Docker and systemd send SIGKILL 10 s after SIGTERM; the default settings
    # end well before (the bound here is loose on purpose: a shared CI machine).
    assert took < 10, server.log()
