"""``aioudf compat``: scripts for Kapacitor's own Python agent, under a real Kapacitor.

Kapacitor's example UDFs (shared/kapacitor/peers/python/examples) run
unchanged, once on Kapacitor's own agent and once under ``aioudf compat``,
in the same kapacitord, on the same points: their outputs must be identical.
Then what aioudf adds without a change to the script: a slow handler keeps
its task where the agent's fails it, and a socket UDF reloads with SIGHUP
while points stream, carrying its state through the script's own
snapshot()/restore(), or staying where it is when it has none.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kapacitord import (
    VALUES,
    Kapacitord,
    ProcessUDF,
    Servers,
    SocketServer,
    SocketUDF,
    expected_moving_averages,
    rows,
    wait_until_handled,
    write_two_hosts,
)
from test_compat import SCRIPTS, official_agent

pytestmark = pytest.mark.usefixtures("kapacitord_binary")


@pytest.fixture
def agent() -> Path:
    """Kapacitor's Python agent (the folder holding ``kapacitor/udf/agent.py``)."""
    found = official_agent()
    assert found is not None  # kapacitord_binary skipped or failed already
    return found


def on_agent(agent: Path, script: Path, *args: str, timeout: str = "10s") -> ProcessUDF:
    """The script as Kapacitor's docs run it: ``python -u script.py`` beside the agent."""
    env = {"PYTHONPATH": str(agent)}
    return ProcessUDF(sys.executable, ["-u", str(script), *args], env=env, timeout=timeout)


def under_compat(
    python_env: dict[str, str], agent: Path, script: Path, *args: str, timeout: str = "10s"
) -> ProcessUDF:
    """The one-line change: ``aioudf compat script.py`` (the real agent still on PYTHONPATH)."""
    env = {"PYTHONPATH": f"{agent}:{python_env['PYTHONPATH']}"}
    argv = ["-m", "aioudf", "compat", str(script), *args]
    return ProcessUDF(sys.executable, argv, env=env, timeout=timeout)


@pytest.fixture
def servers(python_env: dict[str, str], short_tmp: Path) -> Iterator[Servers]:
    found = Servers(python_env, short_tmp)
    yield found
    found.kill()


def socket_server(
    servers: Servers, command: list[str], script: Path, name: str, *args: str
) -> SocketServer:
    path = servers.folder / f"{name}.sock"
    server = SocketServer(
        servers.env,
        [str(script), str(path), *args],
        path,
        servers.folder / f"{name}.log",
        command=command,
    )
    servers.started.append(server)
    return server


#: The two tasks of a side-by-side run: the script on the agent, and under compat.
SIDES = ["onAgent", "onCompat"]


@contextlib.contextmanager
def side_by_side(
    python_env: dict[str, str], agent: Path, folder: Path, example: str, tickscript: str
) -> Iterator[Kapacitord]:
    """kapacitord running Kapacitor's ``example`` script both ways, one task each."""
    script = agent / "examples" / f"{example}.py"
    udfs = {"onAgent": on_agent(agent, script), "onCompat": under_compat(python_env, agent, script)}
    with Kapacitord(folder / "k", udfs) as k:
        for udf in SIDES:
            k.define_task(udf, tickscript.format(udf=udf))
        yield k
        assert not any(k.task(udf)["error"] for udf in SIDES)


def outputs(k: Kapacitord, count: int) -> list[list[dict[str, Any]]]:
    """Both sides' httpOut rows, once each holds ``count``."""
    return [rows(k.wait_output(task, "out", count)) for task in SIDES]


MOVING_AVG = """stream
    |from()
        .measurement('cpu')
        .groupBy('host')
    @{udf}()
        .field('usage_idle')
        .size(3)
        .as('avg')
    |window().period(10s).every(10s)
    |httpOut('out')
"""


def test_moving_avg_example_output_is_the_agents(
    python_env: dict[str, str], agent: Path, short_tmp: Path
) -> None:
    with side_by_side(python_env, agent, short_tmp, "moving_avg", MOVING_AVG) as k:
        values = write_two_hosts(k)
        official, compat = outputs(k, 20)
        assert compat == official
        for host, series in values.items():
            got = [row["avg"] for row in compat if row["host"] == host]
            assert got == pytest.approx(expected_moving_averages(series, 3), rel=1e-12)


OUTLIERS = """stream
    |from()
        .measurement('cpu')
    |window()
        .period(20s)
        .every(20s)
    @{udf}()
        .field('v')
        .scale(1.5)
    |httpOut('out')
"""


def test_outliers_example_on_batches_output_is_the_agents(
    python_env: dict[str, str], agent: Path, short_tmp: Path
) -> None:
    with side_by_side(python_env, agent, short_tmp, "outliers", OUTLIERS) as k:
        values = [1, 2, 3, 4, 5, 6, 7, 8, 9, 100, -100, 5, 5, 4, 6, 5]
        k.write(f"cpu v={v}.0 {t}" for t, v in enumerate(values))
        k.write("cpu v=5.0 20")  # closes the window: one batch of sixteen points
        official, compat = outputs(k, 2)
        assert compat == official
        # The batch's points the script kept past later requests, not overwritten.
        assert sorted(row["v"] for row in compat) == [-100.0, 100.0]


MIRROR = """stream
    |from()
        .measurement('cpu')
    @{udf}()
    |window()
        .period(10s)
        .every(10s)
    |httpOut('out')
"""


def test_mirror_example_as_a_socket_output_is_the_agents(
    python_env: dict[str, str], agent: Path, short_tmp: Path, servers: Servers
) -> None:
    script = agent / "examples" / "mirror.py"
    servers.env = dict(python_env, PYTHONPATH=f"{agent}:{python_env['PYTHONPATH']}")
    official = socket_server(servers, [sys.executable, "-u"], script, "agent")
    compat = socket_server(servers, [sys.executable, "-m", "aioudf", "compat"], script, "compat")
    udfs = {"onAgent": SocketUDF(str(official.path)), "onCompat": SocketUDF(str(compat.path))}
    waiter = Kapacitord(short_tmp / "k", udfs)
    # The sockets must answer before kapacitord asks them for Info at start-up.
    waiter.wait_for(lambda: official.path.exists() and compat.path.exists(), "both to listen")
    compat.wait_log("serving")
    with waiter as k:
        for udf in udfs:
            k.define_task(udf, MIRROR.format(udf=udf))
        k.write(f"cpu,host=h v={t}i,w={t / 2} {t}" for t in range(11))
        on_official, on_compat = outputs(k, 10)
        assert on_compat == on_official
        assert [row["w"] for row in on_compat] == [t / 2 for t in range(10)]
    # kapacitord closed its connections: both ended as the script logs it.
    compat.wait_log("Agent finished connection 2")
    assert compat.stop() == 0  # SIGTERM: a clean exit (the agent's dies with -15)


SLOW = "stream\n    |from().measurement('{udf}')\n    @{udf}()\n    |httpOut('out')\n"


def test_a_slow_handler_fails_on_the_agent_and_runs_under_compat(
    python_env: dict[str, str], agent: Path, short_tmp: Path
) -> None:
    # 3 s a point under a 1 s UDF timeout: Kapacitor sends a keepalive every
    # 0.5 s and fails the task if one goes unanswered for 1 s.
    script = SCRIPTS / "slow.py"
    udfs = {
        "onAgent": on_agent(agent, script, "3", timeout="1s"),
        "onCompat": under_compat(python_env, agent, script, "3", timeout="1s"),
    }
    with Kapacitord(short_tmp / "k", udfs) as k:
        for udf in udfs:
            k.define_task(udf, SLOW.format(udf=udf))
        k.write(f"{udf} v=1 1" for udf in udfs)
        (row,) = rows(k.wait_output("onCompat", "out", 1))
        assert (row["v"], row["slow"]) == (1, 1.0)
        # Kapacitor logs the timeout at once and fails the task when the UDF
        # node next takes a point.
        timedout = 'task=onAgent node=onAgent2 err="keepalive timedout'
        k.wait_for(lambda: timedout in k.log(), "the agent's keepalive timeout")
        k.write(f"{udf} v=2 2" for udf in udfs)
        assert "keepalive timedout" in k.wait_task_error("onAgent")
        assert not k.task("onCompat")["error"]
        assert timedout.replace("onAgent", "onCompat") not in k.log()


SUMS = """stream
    |from()
        .measurement('{task}')
        .groupBy('host')
    @{task}()
    |httpOut('out')
"""


def test_sighup_reload_carries_the_scripts_state_or_leaves_it_in_place(
    python_env: dict[str, str], agent: Path, short_tmp: Path, servers: Servers
) -> None:
    command = [sys.executable, "-m", "aioudf", "compat"]
    script = SCRIPTS / "sums.py"
    stateful = socket_server(servers, command, script, "stateful")
    stateless = socket_server(servers, command, script, "stateless", "stateless")
    for server in (stateful, stateless):
        server.wait_log("serving")
    udfs = {
        "stateful": SocketUDF(str(stateful.path), timeout="2s"),
        "stateless": SocketUDF(str(stateless.path), timeout="2s"),
    }
    with Kapacitord(short_tmp / "k", udfs) as k:
        for task in udfs:
            k.define_task(task, SUMS.format(task=task))

        def stream(times: range) -> dict[str, dict[str, dict[str, Any]]]:
            for t in times:
                k.write(f"{task},host={h} v={VALUES[h][t]} {t}" for task in udfs for h in VALUES)
            return {task: wait_until_handled(k, task, times[-1]) for task in udfs}

        before = stream(range(0, 6))
        for server in (stateful, stateless):
            server.process.send_signal(signal.SIGHUP)
        assert stateful.wait() == 0  # everything moved: the old process is done
        assert "handed everything over" in stateful.log()
        stateless.wait_log("stays with this process")
        after = stream(range(6, 12))

        for host, values in VALUES.items():
            for task in udfs:  # the sums of every point written, across the reload
                assert after[task][host]["sum"] == sum(values)
            # Served by the new process, its state restored by the script's restore().
            assert after["stateful"][host]["pid"] != before["stateful"][host]["pid"]
            # restore() not implemented: the task stays with the process it started on.
            assert after["stateless"][host]["pid"] == before["stateless"][host]["pid"]
        assert not any(k.task(task)["error"] for task in udfs)
        assert stateless.process.poll() is None  # until its task stops
        assert "does not implement restore()" in stateless.log()
        k.set_enabled("stateless", False)
        assert stateless.wait() == 0
