"""A handler that blocks its event loop past the UDF timeout fails, as under Kapacitor.

Kapacitor fails the task with "keepalive timedout" when a UDF's loop is
blocked for longer than the timeout. The test kit and ``aioudf replay`` keep
that clock for every target: a process UDF, and an in-process handler too,
which shares the client's loop (so the stall itself is measured).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from udf_handlers import SleepsInThread, SleepsOnLoop

from aioudf.testing import DataPoint, Kapacitor, KeepaliveTimeout

POINTS = "cpu v=1 1\n"


def replay(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aioudf", "replay", *args, "--timeout", "1", "-O", "seconds=1.3"],
        input=POINTS,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_replay_in_process_fails_and_names_the_blocking_code(python_env: dict[str, str]) -> None:
    done = replay(python_env, "udf_handlers:SleepsOnLoop")
    assert done.returncode == 1, done.stderr
    assert "aioudf replay: error: the UDF failed: keepalive timedout" in done.stderr
    assert "event loop blocked" in done.stderr and "SleepsOnLoop.point()" in done.stderr


def test_replay_of_a_process_udf_fails_without_its_own_warning(python_env: dict[str, str]) -> None:
    udf = f"{sys.executable} -m aioudf run udf_handlers:SleepsOnLoop --warn-blocked 0"
    done = replay(python_env, "--cmd", udf)
    assert done.returncode == 1, done.stderr
    assert "aioudf replay: error: the UDF failed: keepalive timedout" in done.stderr


@pytest.mark.parametrize(
    "udf", ["udf_handlers:SleepsInThread", "--cmd=python -m aioudf run udf_handlers:SleepsInThread"]
)
def test_blocking_in_a_worker_thread_passes(python_env: dict[str, str], udf: str) -> None:
    done = replay(python_env, udf.replace("python", sys.executable))
    assert done.returncode == 0, done.stderr
    assert "1 point in, 1 point out" in done.stderr


async def test_the_test_kit_fails_an_in_process_handler_that_blocks() -> None:
    with pytest.raises(KeepaliveTimeout, match="keepalive timedout"):
        await Kapacitor(SleepsOnLoop, timeout=0.5).run(
            {"seconds": 1.0}, points=[DataPoint("cpu", {"v": 1.0}, time=1)]
        )


async def test_the_test_kit_passes_the_same_work_in_a_thread() -> None:
    result = await Kapacitor(SleepsInThread, timeout=0.5).run(
        {"seconds": 1.0}, points=[DataPoint("cpu", {"v": 1.0}, time=1)]
    )
    assert len(result.points) == 1
