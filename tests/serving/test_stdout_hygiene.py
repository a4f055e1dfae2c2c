"""Process UDFs: nothing but frames on stdout, whoever else writes to it.

tests/serving/test_process.py covers ``print()`` and ``os.write(1, ...)``. Here: the
writers that bypass ``sys.stdout`` or buffer behind its back, each of which
once ended up in the frame stream when the UDF exited:

* C stdio (``puts`` from a C extension), flushed or left in libc's buffer;
* a child process inheriting fd 1;
* a library holding the ``sys.stdout`` object from before ``run()`` (a
  logging handler configured at import), writing without a newline;
* ``sys.__stdout__``.

Every one must land on stderr (which Kapacitor copies to its log), and the
frames must decode to exactly the replies, with nothing after them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from standin import decode_responses, kind, options, request

from aioudf._pb import udf_pb2 as pb


@pytest.fixture
def buffered_env(python_env: dict[str, str]) -> dict[str, str]:
    """The child's environment as Kapacitor gives it: stdout block-buffered."""
    env = dict(python_env)
    env.pop("PYTHONUNBUFFERED", None)
    return env


@pytest.mark.parametrize("via", ["libc", "libc_flushed", "child", "early", "dunder"])
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_stray_output_goes_to_stderr(buffered_env: dict[str, str], via: str, loop: str) -> None:
    stream = request(init=pb.InitRequest(options=options(via=via))) + request(
        point=pb.Point(name="cpu", time=7)
    )
    done = subprocess.run(
        [sys.executable, "-m", "aioudf", "run", "udf_handlers:StrayWriters", "--loop", loop],
        input=stream,
        capture_output=True,
        env=buffered_env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    # decode_responses fails on any byte that is not part of a whole frame.
    responses = decode_responses(done.stdout)
    assert [kind(r) for r in responses] == ["init", "point"]
    assert responses[1].point.time == 7
    assert f"stray {via} output at t=7".encode() in done.stderr


def test_a_child_outliving_the_udf_does_not_hold_the_frames_open(
    python_env: dict[str, str], tmp_path: Path
) -> None:
    # A child started by the handler (here with close_fds=False) inherits fd 1,
    # which is stderr by then, but never the frame stream: Kapacitor sees EOF
    # when the UDF exits, not when the child does.
    pid_file = tmp_path / "child.pid"
    script = (
        "import aioudf, subprocess, sys\n"
        "class Spawns(aioudf.Handler):\n"
        "    async def point(self, point):\n"
        "        child = subprocess.Popen(\n"
        "            [sys.executable, '-c', 'import time; time.sleep(120)'], close_fds=False)\n"
        f"        open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "        await self.emit(point)\n"
        "aioudf.run(Spawns)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=python_env,
    )
    try:
        # communicate() reads stdout to EOF: a leaked frames fd would keep it
        # open for the child's 120 s, and the timeout turns that into a failure.
        output, _ = process.communicate(
            request(init=pb.InitRequest()) + request(point=pb.Point(time=3)), timeout=30
        )
        assert process.returncode == 0
        assert [kind(r) for r in decode_responses(output)] == ["init", "point"]
        os.kill(int(pid_file.read_text()), 0)  # the child is indeed still running
    finally:
        process.kill()
        process.wait()
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
