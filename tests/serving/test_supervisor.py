"""``aioudf serve --workers``: the supervisor, and hand-over between its forms.

A live connection (a Kapacitor stand-in from tests/standin.py streaming to the
moving average example) moves from a single-process server to a supervisor
with workers and back, by ``--takeover``; its answers must be those of a run
that never moved.
"""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from serverproc import ServerProcess
from standin import Peer, kind, request
from test_handover import INIT, averages, stream, unmoved_run
from test_server import assert_serves

from aioudf._pb import udf_pb2 as pb
from aioudf.cli import cli
from aioudf.errors import AioudfError
from aioudf.serving._supervisor import worker_count

Spawn = Callable[..., Awaitable[ServerProcess]]


@pytest.fixture
async def spawn(python_env: dict[str, str], socket_path: Path) -> AsyncIterator[Spawn]:
    started: list[ServerProcess] = []

    async def start(*extra: str, handler: str = "moving_avg:MovingAvg") -> ServerProcess:
        server = await ServerProcess.start(python_env, handler, socket_path, *extra)
        started.append(server)
        return server

    yield start
    for server in started:
        await server.kill()


@pytest.mark.parametrize(
    ("before", "after"),
    [((), ("--workers", "2")), (("--workers", "2"), ()), (("--workers", "2"), ("--workers", "3"))],
    ids=["single-to-workers", "workers-to-single", "workers-to-workers"],
)
async def test_takeover_moves_live_connections_between_forms(
    spawn: Spawn,
    socket_path: Path,
    short_tmp: Path,
    before: tuple[str, ...],
    after: tuple[str, ...],
) -> None:
    data = stream(20)
    half = len(stream(10))
    expected = await unmoved_run(short_tmp / "ref.sock", data)
    old = await spawn(*before)
    if before:
        await old.wait_for_log("serving ")  # the second worker
    peers = [await Peer.unix(socket_path) for _ in range(3)]
    first = []
    for peer in peers:
        await peer.send(INIT, data[:half])
        first.append([await peer.receive() for _ in range(1 + 20)])
    new = await spawn("--takeover", *after)
    assert await old.exit_code() == 0, "".join(old.log)
    assert any("handed over" in line for line in old.log)
    for peer, responses in zip(peers, first, strict=True):
        await peer.send(data[half:])
        await peer.half_close()
        got = [r for r in responses if r is not None] + await peer.receive_all()
        assert averages(got) == averages(expected)
    new.process.send_signal(signal.SIGTERM)
    assert await new.exit_code() == 0, "".join(new.log)
    assert not socket_path.exists()


async def test_worker_that_cannot_import_stops_the_supervisor(
    python_env: dict[str, str], socket_path: Path
) -> None:
    server = ServerProcess(
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aioudf",
            "serve",
            "no_such_module:Handler",
            "--socket",
            str(socket_path),
            "--workers",
            "2",
            stdin=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=python_env,
        )
    )
    assert await server.exit_code() == 1
    assert any("could not start (exit status 2)" in line for line in server.log)
    assert any("cannot import module 'no_such_module'" in line for line in server.log)
    assert not socket_path.exists()


def test_worker_count() -> None:
    assert worker_count("3") == 3
    assert worker_count("auto") == len(os.sched_getaffinity(0))
    with pytest.raises(AioudfError, match="at least 1"):
        worker_count("0")


def test_bad_worker_count_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli(["serve", "m:C", "--socket", "/tmp/x.sock", "--workers", "many"])
    assert exit_info.value.code == 2
    assert "must be a number or 'auto', got 'many'" in capsys.readouterr().err


async def test_reload_whose_code_does_not_import_keeps_the_old_server(
    spawn: Spawn, socket_path: Path, short_tmp: Path
) -> None:
    code = short_tmp / "handler.py"
    code.write_text("from moving_avg import MovingAvg as Avg\n")
    server = await spawn(handler=f"{code}:Avg")
    peer = await Peer.unix(socket_path)
    await peer.send(INIT, stream(2))
    assert len([await peer.receive() for _ in range(1 + 4)]) == 5
    code.write_text("this is not python\n")  # a broken install
    server.process.send_signal(signal.SIGHUP)
    line = await server.wait_for_log("reload failed")
    assert "before taking over; still serving with the code loaded before" in line
    # The connection and the socket are still served by the old process.
    await peer.send(stream(3)[len(stream(2)) :])
    assert len([await peer.receive() for _ in range(2)]) == 2
    await assert_serves(socket_path)
    server.process.send_signal(signal.SIGTERM)
    assert await server.exit_code() == 0


# ---- settings: checked once, passed to the workers whole ----------------------

EMBEDDED_SUPERVISOR = """
import sys
from aioudf.config import Config
from aioudf.runtime._loops import run_async
from aioudf.serving._supervisor import Supervisor

path = sys.argv[1]
# The workers' own command line names no setting: they get the Config.
command = [sys.executable, "-m", "aioudf", "serve", "moving_avg:MovingAvg", "--socket", path]
config = Config(max_frame_size=100, mode=0o600)
# (asyncio's loop: a second pidfd on a worker once hung its SIGTERM there.)
sys.exit(run_async(Supervisor(path, 2, config=config, command=command).run(), "asyncio"))
"""


async def test_the_supervisors_config_reaches_every_worker(
    python_env: dict[str, str], socket_path: Path, short_tmp: Path
) -> None:
    script = short_tmp / "supervise.py"
    script.write_text(textwrap.dedent(EMBEDDED_SUPERVISOR))
    # A worker that read its settings from its environment would allow 1 MB frames.
    env = dict(python_env, AIOUDF_MAX_FRAME_SIZE=str(1 << 20))
    server = ServerProcess(
        await asyncio.create_subprocess_exec(
            sys.executable, str(script), str(socket_path),
            stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env,
        )
    )  # fmt: skip
    try:
        for _ in range(2):
            await server.wait_for_log("serving ")
        assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o600
        # Connections go to both workers in turn: each refuses the frame over 100 bytes.
        for _ in range(4):
            peer = await Peer.unix(socket_path)
            await peer.send(request(info=pb.InfoRequest()))
            assert kind(await peer.receive_kind("info")) == "info"
            await peer.send(request(point=pb.Point(name="x" * 200)))
            error = await peer.receive_kind("error")
            assert "exceeds the maximum frame size of 100 bytes" in error.error.error
            await peer.close()
        server.process.send_signal(signal.SIGTERM)
        assert await server.exit_code() == 0, "".join(server.log)
    finally:
        await server.kill()


def test_the_supervisors_settings_are_checked_before_it_binds(
    socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["serve", "moving_avg:MovingAvg", "--socket", str(socket_path), "--workers", "2"]
    assert cli([*argv, "--mode", "77777"]) == 2
    assert "aioudf serve: error: invalid setting mode=32767: give file permissions" in (
        capsys.readouterr().err
    )
    assert not socket_path.exists()
