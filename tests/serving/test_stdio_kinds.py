"""A process UDF on every kind of stdin and stdout a shell, cron or systemd gives it.

Each case is a real child process with a real descriptor: a pipe, a socket,
a regular file, ``/dev/null``, or closed (``<&-``, ``>&-``). Each either works
(a file is read to its end, ``/dev/null`` is an empty stream: exit 0) or ends
at once with one line naming the problem and exit status 2: never an abort,
a hang or a traceback.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES
from standin import decode_responses, kind, request

from aioudf._pb import udf_pb2 as pb

LOOPS = ["asyncio", "uvloop"]
UDF = [sys.executable, str(EXAMPLES / "moving_avg.py")]
INFO = request(info=pb.InfoRequest())


def run_shell(
    redirects: str, loop: str, env: dict[str, str], input: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    """The example UDF started by bash with ``redirects`` applied (``<&-`` and the like)."""
    command = 'exec "$@" ' + redirects
    return subprocess.run(
        ["bash", "-c", command, "bash", *UDF, "--loop", loop],
        capture_output=True,
        env=env,
        timeout=60,  # a hang fails the test instead of the suite
        input=input,
    )


def assert_clean(done: subprocess.CompletedProcess[bytes]) -> None:
    stderr = done.stderr.decode()
    assert "Traceback" not in stderr, stderr
    assert done.returncode >= 0, f"killed by signal {-done.returncode}: {stderr}"


@pytest.mark.parametrize("loop", LOOPS)
def test_dev_null_stdin_is_an_empty_stream(loop: str, python_env: dict[str, str]) -> None:
    done = run_shell("</dev/null", loop, python_env)
    assert_clean(done)
    assert done.returncode == 0
    assert done.stdout == b""


@pytest.mark.parametrize("loop", LOOPS)
def test_dev_null_both_ways(loop: str, python_env: dict[str, str]) -> None:
    done = run_shell("</dev/null >/dev/null", loop, python_env)
    assert_clean(done)
    assert done.returncode == 0


@pytest.mark.parametrize("loop", LOOPS)
def test_requests_from_a_pipe_answers_into_dev_null(loop: str, python_env: dict[str, str]) -> None:
    done = run_shell(">/dev/null", loop, python_env, input=INFO)
    assert_clean(done)
    assert done.returncode == 0


@pytest.mark.parametrize("loop", LOOPS)
def test_regular_files_are_read_to_the_end(
    loop: str, python_env: dict[str, str], tmp_path: Path
) -> None:
    requests, responses = tmp_path / "requests.bin", tmp_path / "responses.bin"
    requests.write_bytes(INFO * 3)
    done = run_shell(f"<{requests} >{responses}", loop, python_env)
    assert_clean(done)
    assert done.returncode == 0
    assert [kind(r) for r in decode_responses(responses.read_bytes())] == ["info"] * 3


@pytest.mark.parametrize("loop", LOOPS)
def test_a_socket_as_stdin_and_stdout(loop: str, python_env: dict[str, str]) -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        child = subprocess.Popen(
            [*UDF, "--loop", loop],
            stdin=theirs.fileno(),
            stdout=theirs.fileno(),
            stderr=subprocess.PIPE,
            env=python_env,
        )
        theirs.close()
        ours.sendall(INFO)
        ours.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := ours.recv(65536):
            received += chunk
        _, stderr = child.communicate(timeout=60)
    assert child.returncode == 0, stderr.decode()
    assert [kind(r) for r in decode_responses(received)] == ["info"]


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize(
    ("redirects", "named"),
    [("<&-", "stdin is closed"), (">&-", "stdout is closed"), ("<&- >&-", "stdin is closed")],
)
def test_a_closed_descriptor_is_one_line_and_status_2(
    loop: str, redirects: str, named: str, python_env: dict[str, str]
) -> None:
    done = run_shell(redirects, loop, python_env)
    assert_clean(done)
    assert done.returncode == 2
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and named in lines[0], lines


def test_aioudf_run_refuses_a_closed_stdin_too(python_env: dict[str, str]) -> None:
    done = subprocess.run(
        [
            "bash",
            "-c",
            'exec "$@" <&-',
            "bash",
            sys.executable,
            "-m",
            "aioudf",
            "run",
            "moving_avg:MovingAvg",
        ],
        capture_output=True,
        env=python_env,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.decode().splitlines() == [
        "aioudf run: error: stdin is closed: a process UDF reads requests from it "
        "(Kapacitor connects it to a pipe)"
    ]


def test_uvloop_asked_for_but_missing_is_one_line(python_env: dict[str, str]) -> None:
    # uvloop hidden from the child: what a machine without it sees.
    code = (
        "import sys; sys.modules['uvloop'] = None; "
        "from aioudf.cli import cli; sys.exit(cli(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "run", "moving_avg:MovingAvg", "--loop", "uvloop"],
        capture_output=True,
        env=python_env,
        timeout=60,
        input=b"",
    )
    assert done.returncode == 2
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and "uvloop is not installed" in lines[0], lines
    assert "never awaited" not in done.stderr.decode()


def test_check_stdio_passes_on_open_descriptors() -> None:
    from aioudf.serving._stdio import check_stdio

    os.fstat(0)
    check_stdio()  # pytest's own stdin and stdout are open


@pytest.mark.skipif(not hasattr(__import__("fcntl"), "F_GETPIPE_SZ"), reason="Linux pipes only")
def test_the_pipes_to_and_from_kapacitor_are_widened_to_a_mebibyte(
    python_env: dict[str, str],
) -> None:
    """Kapacitor can then be 1 MiB of points ahead of the UDF, not 64 KiB."""
    import fcntl

    udf = subprocess.Popen(
        [*UDF, "--loop", "asyncio"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=python_env
    )
    assert udf.stdin is not None and udf.stdout is not None
    try:
        udf.stdin.write(INFO)
        udf.stdin.flush()
        # The Info answer comes once the pipes are set up.
        header = udf.stdout.read(1)
        assert header
        sizes = [fcntl.fcntl(pipe, fcntl.F_GETPIPE_SZ) for pipe in (udf.stdin, udf.stdout)]
        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
        assert sizes == [min(1 << 20, limit)] * 2
    finally:
        udf.stdin.close()
        udf.wait(timeout=60)
        udf.stdout.close()


async def test_every_task_waiting_for_a_full_stdout_is_woken() -> None:
    # The agent's writer and its dispatcher may both wait in drain() while
    # Kapacitor is not reading the UDF's stdout; when it reads again both
    # must go on (a forgotten waiter stops keepalive answers for good).
    from aioudf.serving._stdio import _PipeWriter

    read_fd, write_fd = os.pipe()
    loop = asyncio.get_running_loop()
    pipe = os.fdopen(write_fd, "wb", buffering=0)
    _, writer = await loop.connect_write_pipe(_PipeWriter, pipe)
    data = b"x" * (4 << 20)  # more than the pipe and the transport's buffer hold
    writer.write(data)
    assert writer._paused
    drains = [asyncio.ensure_future(writer.drain()) for _ in range(3)]

    def read_all() -> int:
        received = 0
        while received < len(data):
            received += len(os.read(read_fd, 1 << 20))
        return received

    assert await asyncio.to_thread(read_all) == len(data)
    await asyncio.wait_for(asyncio.gather(*drains), 30)
    writer.close()
    os.close(read_fd)
