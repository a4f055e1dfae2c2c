"""The examples and the agent's guarantees, checked with a real Kapacitor.

Each test starts ``kapacitord`` 1.4.1 hermetically with the public kit
(``aioudf.testing.Kapacitord``; ``aioudf serve`` in a child from tests/kapacitord.py),
defines a task that runs a UDF of ours as Kapacitor runs it (a process it
starts, or a socket served by ``aioudf serve``), writes line protocol to it
and reads what the task put out through ``|httpOut()``, or the task's error.
Expected numbers are computed here, independently of the UDF's code.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest
from conftest import EXAMPLES
from kapacitord import SocketServer, expected_moving_averages, rows, write_two_hosts
from logcapture import parse_logfmt
from scrape import documented_metrics, names, parse, value
from scrape import scrape as scrape_port

from aioudf.testing import Kapacitord, ProcessUDF, SocketUDF
from aioudf.testing.kapacitord import free_port, processed

pytestmark = pytest.mark.usefixtures("kapacitord_binary")


def process_udf(python_env: dict[str, str], *args: str, timeout: str = "10s") -> ProcessUDF:
    """A process UDF Kapacitor starts as ``python -u ARGS``, finding aioudf and the tests."""
    env = {"PYTHONPATH": python_env["PYTHONPATH"]}
    return ProcessUDF(sys.executable, ["-u", *args], env=env, timeout=timeout)


@pytest.fixture
def serve(python_env: dict[str, str], short_tmp: Path) -> Iterator[Callable[..., SocketServer]]:
    """Start ``aioudf serve HANDLER [ARGS]`` on a socket in ``short_tmp``; stopped at the end."""
    servers: list[SocketServer] = []

    def start(handler: str, *args: str) -> SocketServer:
        path = short_tmp / f"udf{len(servers)}.sock"
        server = SocketServer(
            python_env,
            [handler, "--socket", str(path), *args],
            path,
            short_tmp / f"serve{len(servers)}.log",
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.process.poll() is None:
            server.stop()


def cpu_through(udf: str) -> str:
    """A stream task sending measurement ``cpu`` through ``@udf()`` to ``httpOut('out')``."""
    return f"stream\n    |from().measurement('cpu')\n    @{udf}()\n    |httpOut('out')\n"


def udf_log(k: Kapacitord) -> list[str]:
    """What process UDFs wrote to stderr, one entry a line, as kapacitord logged it."""
    entries = map(parse_logfmt, k.log().splitlines())
    return [e["text"] for e in entries if e.get("msg") == "UDF log"]


CPU_BY_HOST = """stream
    |from()
        .measurement('cpu')
        .groupBy('host')
    @movingAverage()
        .field('usage_idle')
        .size(3)
        .as('avg')
    |httpOut('out')
"""


def test_moving_avg_process_udf_per_group(python_env: dict[str, str], short_tmp: Path) -> None:
    udf = process_udf(python_env, str(EXAMPLES / "moving_avg.py"))
    with Kapacitord(short_tmp / "k", {"movingAverage": udf}) as k:
        k.define_task(
            "avg",
            CPU_BY_HOST.replace("|httpOut", "|window().period(10s).every(10s)\n    |httpOut"),
        )
        values = write_two_hosts(k)
        out = rows(k.wait_output("avg", "out", 20))
        for host, series in values.items():
            got = [row["avg"] for row in out if row["host"] == host]
            assert got == pytest.approx(expected_moving_averages(series, 3), rel=1e-12)
        assert not k.task("avg")["error"]


def test_mirror_socket_udf_sets_fields(
    serve: Callable[[str], SocketServer], short_tmp: Path
) -> None:
    server = serve("mirror:Mirror")
    udf = SocketUDF(str(server.path))
    # The socket must answer before kapacitord asks it for Info at start-up.
    waiter = Kapacitord(short_tmp / "k", {"mirror": udf})
    waiter.wait_for(lambda: "serving" in server.log(), "aioudf serve to listen")
    with waiter as k:
        k.define_task(
            "m",
            """stream
    |from().measurement('cpu')
    @mirror().field('mirrored', 1.0).field('usage_idle', -1.0)
    |window().period(10s).every(10s)
    |httpOut('out')
""",
        )
        k.write(f"cpu,host=h usage_idle={t}i,usage_user={t / 2} {t}" for t in range(11))
        out = rows(k.wait_output("m", "out", 10))
        assert [row["usage_user"] for row in out] == [t / 2 for t in range(10)]
        # .field() replaced the integer field by a double of the same name.
        assert all(row["mirrored"] == 1.0 and row["usage_idle"] == -1.0 for row in out)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_socket_udf_keeps_order_when_handlers_sometimes_suspend(
    serve: Callable[..., SocketServer], short_tmp: Path, loop: str
) -> None:
    # Kapacitor's small writes are decoded where they arrive (in the socket
    # transport's callback, asyncio's or uvloop's) and handled in runs without
    # a task switch; handlers that suspend part way (or are cancelled inside)
    # must not reorder, drop or hold back a point.
    server = serve("udf_handlers:SometimesSuspends", "--loop", loop)
    waiter = Kapacitord(short_tmp / "k", {"some": SocketUDF(str(server.path))})
    waiter.wait_for(lambda: "serving" in server.log(), "aioudf serve to listen")
    with waiter as k:
        k.define_task(
            "s",
            """stream
    |from().measurement('cpu')
    @some()
    |window().period(2000s).every(2000s)
    |httpOut('out')
""",
        )
        k.write(f"cpu,host=h usage_idle={t} {t}" for t in range(2001))
        out = rows(k.wait_output("s", "out", 2000))
        assert [row["usage_idle"] for row in out] == [float(t) for t in range(2000)]
        assert not k.task("s")["error"]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_process_udf_fed_fast_under_a_short_timeout_keeps_every_point_and_its_task(
    python_env: dict[str, str], short_tmp: Path, loop: str
) -> None:
    # Kapacitor writes each point on its own; fed fast, the agent paces its
    # reads of the pipe (a millisecond's pause after each read). Through a
    # real kapacitord with a 1 s UDF timeout (a keepalive every 0.5 s), the
    # points must all come back in order and every keepalive in time.
    points = 30_000
    udf = process_udf(
        python_env, "-m", "aioudf", "run", "udf_handlers:SometimesSuspends", "--loop", loop,
        timeout="1s",
    )  # fmt: skip
    with Kapacitord(short_tmp / "k", {"some": udf}) as k:
        k.define_task(
            "s",
            f"""stream
    |from().measurement('cpu')
    @some()
    |window().period({points}s).every({points}s)
    |httpOut('out')
""",
        )
        for start in range(0, points + 1, 5_000):
            stop = min(start + 5_000, points + 1)
            k.write(f"cpu,host=h usage_idle={t} {t}" for t in range(start, stop))
        out = rows(k.wait_output("s", "out", points))
        assert [row["usage_idle"] for row in out] == [float(t) for t in range(points)]
        assert not k.task("s")["error"]


def test_handler_exception_fails_only_its_task(python_env: dict[str, str], short_tmp: Path) -> None:
    udf = process_udf(python_env, "-m", "aioudf", "run", "udf_handlers:Fails")
    with Kapacitord(short_tmp / "k", {"fails": udf}) as k:
        script = "stream\n    |from().measurement('{m}')\n    @fails().in('point')\n"
        script += "    |httpOut('out')\n"
        k.define_task("bad", script.format(m="cpu"))
        k.define_task("good", script.format(m="mem"))
        k.write(["cpu boom=1 1", "mem ok=1 1"])
        # Kapacitor logs the ErrorResponse at once, and fails the task when
        # the UDF node next takes a point.
        k.wait_for(lambda: "received error message" in k.log(), "the ErrorResponse")
        k.write("cpu boom=0 2")
        error = k.wait_task_error("bad")
        assert "Fails.point() failed" in error
        assert "ValueError: bad value at t=1000000000" in error
        assert rows(k.wait_output("good", "out", 1))[0]["ok"] == 1
        assert not k.task("good")["error"]
        # The traceback is ONE entry of kapacitord's log (each stderr line of
        # a process UDF is one), carrying the exception and the failing line.
        (entry,) = [parse_logfmt(text) for text in udf_log(k) if "Traceback" in text]
        assert (entry["lvl"], entry["task"], entry["node"]) == ("error", "bad", "fails2")
        assert entry["exc"].startswith("Traceback (most recent call last):\n")
        assert '\n    raise ValueError(f"bad value at t={point.time}")\n' in entry["exc"]
        assert entry["exc"].endswith("ValueError: bad value at t=1000000000")


def test_an_emit_out_of_turn_fails_the_task_with_one_line(
    python_env: dict[str, str], short_tmp: Path
) -> None:
    udf = process_udf(python_env, "-m", "aioudf", "run", "udf_handlers:Unbatched")
    with Kapacitord(short_tmp / "k", {"unbatched": udf}) as k:
        k.define_task("t", cpu_through("unbatched"))
        k.write("cpu v=1 1")
        k.wait_for(lambda: "received error message" in k.log(), "the ErrorResponse")
        k.write("cpu v=2 2")
        error = k.wait_task_error("t")
        assert "Unbatched.point() failed handling Point: EmitError: cannot emit a Point " in error
        assert "the UDF provides a BATCH edge (emit a BeginBatch first)" in error
        # The UDF's log says it in one line: no traceback of aioudf's frames.
        udf_lines = udf_log(k)
        assert any("EmitError: cannot emit a Point" in text for text in udf_lines), udf_lines
        assert not [text for text in udf_lines if "Traceback" in text]


def test_a_huge_log_message_does_not_silence_the_udf(
    python_env: dict[str, str], short_tmp: Path
) -> None:
    # Kapacitor forwards nothing more of a process UDF's stderr after a line
    # over 64 KiB (measured with 1.4.1): aioudf's log lines stay below it.
    udf = process_udf(python_env, "-m", "aioudf", "run", "udf_handlers:LogsHugeMessage")
    with Kapacitord(short_tmp / "k", {"huge": udf}) as k:
        k.define_task("t", cpu_through("huge"))
        k.write("cpu v=1 1")
        k.wait_for(lambda: "after the huge message" in k.log(), "the line after the huge one")
        (huge,) = [parse_logfmt(text) for text in udf_log(k) if "huge: x" in text]
        assert "characters cut...]" in huge["msg"] and huge["task"] == "t"


def test_init_error_names_the_option(python_env: dict[str, str], short_tmp: Path) -> None:
    udf = process_udf(python_env, str(EXAMPLES / "moving_avg.py"))
    with Kapacitord(short_tmp / "k", {"movingAverage": udf}) as k:
        k.define_task("avg", CPU_BY_HOST.replace(".size(3)", ".size(0)"))
        k.write("cpu,host=a usage_idle=1 1")
        assert "size" in k.wait_task_error("avg")


def test_slow_lookup_keeps_the_task_alive_past_the_timeout(
    python_env: dict[str, str], short_tmp: Path
) -> None:
    # The lookup takes 3 s under a 2 s UDF timeout: Kapacitor sends a
    # keepalive every second and fails the task if one goes unanswered for
    # 2 s, so the agent must answer while the handler awaits.
    udf = process_udf(python_env, str(EXAMPLES / "async_lookup.py"), timeout="2s")
    with Kapacitord(short_tmp / "k", {"lookup": udf}) as k:
        k.define_task(
            "slow",
            "stream\n    |from().measurement('cpu')\n    @lookup().delay(3s)\n"
            "    |httpOut('out')\n",
        )
        k.write("cpu v=1 1")
        out = rows(k.wait_output("slow", "out", 1))
        assert out[0]["looked_up"] == 1.0
        assert out[0]["v"] == 1
        assert not k.task("slow")["error"]
        assert "keepalive timedout" not in k.log()


def test_snapshot_restores_groups_after_task_restart(
    python_env: dict[str, str], short_tmp: Path
) -> None:
    udf = process_udf(python_env, "-m", "aioudf", "run", "udf_handlers:LoggedMovingAvg")
    with Kapacitord(short_tmp / "k", {"movingAverage": udf}, snapshot_interval="300ms") as k:
        k.define_task("avg", CPU_BY_HOST)
        k.write(f"cpu,host=a usage_idle={v} {t}" for t, v in enumerate([1.0, 2.0, 4.0, 8.0]))
        k.wait_for(
            lambda: any(
                row["avg"] == pytest.approx(14 / 3) for row in rows(k.output("avg", "out"))
            ),
            "the fourth average",
        )
        taken = k.log().count("snapshot taken")
        k.wait_for(lambda: k.log().count("snapshot taken") > taken, "a snapshot after it")
        k.set_enabled("avg", False)
        k.set_enabled("avg", True)  # a new UDF process, restored from the snapshot
        k.write("cpu,host=a usage_idle=16 10")
        # The window continues from [2, 4, 8]: (4 + 8 + 16) / 3, not 16.
        out = k.wait_for(
            lambda: [r for r in rows(k.output("avg", "out")) if r["time"].endswith(":10Z")],
            "the average after the restart",
        )
        assert out[0]["avg"] == pytest.approx(28 / 3)


def test_metrics_count_exactly_what_kapacitor_sent_and_received(
    serve: Callable[..., SocketServer], short_tmp: Path
) -> None:
    port = free_port()
    server = serve("udf_handlers:Fails", "--metrics", f"127.0.0.1:{port}")

    scrape = partial(scrape_port, port)

    # A 1 s UDF timeout: Kapacitor sends a keepalive every 0.5 s.
    waiter = Kapacitord(short_tmp / "k", {"fails": SocketUDF(str(server.path), timeout="1s")})
    waiter.wait_for(lambda: "serving Fails" in server.log(), "aioudf serve to listen")
    with waiter as k:
        script = "stream\n    |from().measurement('{m}')\n    @fails().in('point')\n"
        script += "    |httpOut('out')\n"
        sent = {"cpu": 700, "mem": 3}
        for task in [*sent, "disk"]:
            k.define_task(task, script.format(m=task))
        k.write(f"{task} v={i} {i + 1}" for task, n in sent.items() for i in range(n))
        k.write("disk boom=1 1")

        def through(task: str, n: int) -> dict[tuple[str, str], int] | None:
            edges = processed(k.task(task)["dot"])
            return edges if edges.get(("fails2", "http_out3")) == n else None

        for task, n in sent.items():
            # Kapacitor's count of what the UDF node took and gave back.
            edges = k.wait_for(partial(through, task, n), f"{n} points through {task}")
            samples = parse(scrape())
            labels = {"task": task, "node": "fails2"}
            assert value(samples, "aioudf_points_received_total", **labels) == n
            assert edges[("from1", "fails2")] == n
            assert value(samples, "aioudf_points_emitted_total", **labels) == n
        k.wait_for(lambda: "received error message" in k.log(), "the ErrorResponse")
        samples = parse(scrape())
        assert (
            value(samples, "aioudf_errors_total", task="disk", node="fails2", kind="handler") == 1
        )
        assert value(samples, "aioudf_connections_open") == 2  # the failed one is closed
        k.wait_for(
            lambda: value(
                parse(scrape()), "aioudf_keepalive_latency_seconds_count", task="cpu", node="fails2"
            ),
            "a keepalive answered",
        )
        # Every metric docs/observability.md names is in a real scrape.
        assert documented_metrics() - names(scrape()) == set()
