"""Metrics under workers and hand-over, checked with a real Kapacitor.

``aioudf serve --metrics`` with ``--workers 2`` serves one endpoint for
every worker; across a SIGHUP reload (with and without workers) and a
``--takeover`` by a second process, a task's counters carry on where they
were instead of restarting from zero, and the move is counted. Expected
numbers are Kapacitor's own (the points along each edge of the task) and
what the test wrote; the scrape is read with prometheus_client's parser.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest
from kapacitord import (
    Kapacitord,
    Servers,
    SocketServer,
    SocketUDF,
    free_port,
    processed,
)
from scrape import Samples, parse, scrape, value

pytestmark = pytest.mark.usefixtures("kapacitord_binary")

NODE = "fails2"
SCRIPT = (
    "stream\n    |from().measurement('{task}')\n    @fails().in('point')\n    |httpOut('out')\n"
)


Serve = Callable[..., SocketServer]


@pytest.fixture
def serve(python_env: dict[str, str], short_tmp: Path) -> Iterator[Serve]:
    """Start ``aioudf serve udf_handlers:Fails ARGS`` on one socket; killed after the test."""
    servers = Servers(python_env, short_tmp)
    yield partial(servers.start, "udf_handlers:Fails")
    servers.kill()


def send(k: Kapacitord, counts: dict[str, int], start: int = 0) -> None:
    """Write ``counts[task]`` points to each task's measurement, from time ``start`` on."""
    k.write(f"{task} v={i} {start + i + 1}" for task, n in counts.items() for i in range(n))


def wait_through(k: Kapacitord, counts: dict[str, int]) -> None:
    """Wait until Kapacitor counts ``counts[task]`` points into and out of each UDF node."""
    for task, n in counts.items():

        def through(task: str = task, n: int = n) -> bool:
            state = k.task(task)
            assert not state["error"], f"task {task} failed: {state['error']}"
            edges = processed(state["dot"])
            return edges.get(("from1", NODE)) == n and edges.get((NODE, "http_out3")) == n

        k.wait_for(through, f"{n} points through {task}'s UDF")


def assert_counts(samples: Samples, counts: dict[str, int]) -> None:
    for task, n in counts.items():
        labels = {"task": task, "node": NODE}
        assert value(samples, "aioudf_points_received_total", **labels) == n, task
        assert value(samples, "aioudf_points_emitted_total", **labels) == n, task


def test_one_endpoint_counts_the_tasks_of_every_worker(serve: Serve, short_tmp: Path) -> None:
    port = free_port()
    server = serve("--workers", "2", "--metrics", f"127.0.0.1:{port}")
    server.wait_log("serving Fails", count=2)
    with Kapacitord(short_tmp / "k", {"fails": SocketUDF(str(server.path))}) as k:
        counts = {"cpu": 300, "mem": 7}
        for task in counts:
            k.define_task(task, SCRIPT.format(task=task))
        send(k, counts)
        wait_through(k, counts)
        samples = parse(scrape(port))
        assert_counts(samples, counts)
        assert value(samples, "aioudf_workers_alive") == 2
        assert value(samples, "aioudf_connections_open") == 2
        assert value(samples, "aioudf_worker_restarts_total") == 0

        # Both workers killed, one after the other: replaced and counted, and
        # what they counted (every task's points) stays counted.
        for n, pid in enumerate(map(int, re.findall(r"worker (\d+) started", server.log())), 1):
            os.kill(pid, signal.SIGKILL)
            server.wait_log(f"worker {pid} died (killed by SIGKILL)")
            server.wait_log("serves its share", count=1 + n)  # its replacement, balanced

            def restart_counted(n: int = n) -> Samples | None:
                samples = parse(scrape(port))
                return samples if value(samples, "aioudf_worker_restarts_total") == n else None

            samples = k.wait_for(restart_counted, f"restart {n} to be counted")
            assert value(samples, "aioudf_workers_alive") == 2
            assert_counts(samples, counts)
        # Their connections died with them (their gauges left the sums), but
        # for those a replacement took from the other worker to share the load.
        moved = value(samples, "aioudf_connections_balanced_total")
        assert value(samples, "aioudf_connections_open") == moved


@contextlib.contextmanager
def scraping(port: int) -> Iterator[list[str]]:
    """Scrape ``port`` over and over in a thread meanwhile; yields the failures seen."""
    failures: list[str] = []
    scrapes = 0
    done = threading.Event()

    def loop() -> None:
        nonlocal scrapes
        while not done.is_set():
            try:
                parse(scrape(port))
                scrapes += 1
            except Exception as exc:  # refused, reset, cut short, unparsable
                failures.append(repr(exc))

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        yield failures
    finally:
        done.set()
        thread.join()
    assert scrapes > 0


def move(serve: Serve, server: SocketServer, how: str, metrics: tuple[str, str]) -> None:
    """Move ``server``'s connections to new processes: ``how`` names the way."""
    if how == "takeover":
        serve("--takeover", *metrics).wait_log("took over 2 connection(s)")
    else:
        server.process.send_signal(signal.SIGHUP)
    if how == "reload with workers":  # each old worker hands its connections over, then ends
        server.wait_log("ended (exit status 0)", count=2)
    else:  # it exits once everything moved
        assert server.wait() == 0
        assert "handed everything over" in server.log()


@pytest.mark.parametrize("how", ["reload", "reload with workers", "takeover"])
def test_counters_carry_on_across_a_handover(serve: Serve, short_tmp: Path, how: str) -> None:
    metrics = ("--metrics", f"127.0.0.1:{free_port()}")
    port = int(metrics[1].rpartition(":")[2])
    workers = ("--workers", "2") if how == "reload with workers" else ()
    server = serve(*workers, *metrics)
    server.wait_log("serving Fails", count=2 if workers else 1)
    udf = SocketUDF(str(server.path), timeout="2s")
    with Kapacitord(short_tmp / "k", {"fails": udf}) as k:
        before = {"cpu": 200, "mem": 5}
        for task in before:
            k.define_task(task, SCRIPT.format(task=task))
        send(k, before)
        wait_through(k, before)
        assert_counts(parse(scrape(port)), before)

        with scraping(port) as failures:
            move(serve, server, how, metrics)
        assert failures == [], "the endpoint did not answer throughout the move"

        # The old process is gone: the same port answers, nothing restarted at zero.
        samples = parse(scrape(port))
        assert_counts(samples, before)
        for task in before:
            assert value(samples, "aioudf_handovers_total", task=task, node=NODE) == 1
        assert value(samples, "aioudf_connections_open") == 2  # the old one's gauge left

        after = {"cpu": 100, "mem": 3}
        send(k, after, start=1000)
        total = {task: before[task] + after[task] for task in before}
        wait_through(k, total)
        assert_counts(parse(scrape(port)), total)
        for task in total:
            assert not k.task(task)["error"]
