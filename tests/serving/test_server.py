"""Socket UDFs: `aioudf serve`, UnixServer and serve() over real unix sockets."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from serverproc import ServerProcess
from standin import Peer, kind, request
from udf_handlers import Recorder, no_database, not_a_handler

from aioudf import Handler, SocketPathError, UnixServer, serve
from aioudf._pb import udf_pb2 as pb

INIT = request(init=pb.InitRequest())


def point(t: int) -> bytes:
    return request(point=pb.Point(name="cpu", time=t, fieldsDouble={"v": 1.0}))


Spawn = Callable[..., Awaitable[ServerProcess]]


@pytest.fixture
async def spawn(python_env: dict[str, str], socket_path: Path) -> AsyncIterator[Spawn]:
    """Start `aioudf serve udf_handlers:Recorder --socket socket_path` plus extra arguments."""
    started: list[ServerProcess] = []

    async def start(*extra: str) -> ServerProcess:
        server = await ServerProcess.start(python_env, "udf_handlers:Recorder", socket_path, *extra)
        started.append(server)
        return server

    yield start
    for server in started:
        await server.kill()


async def test_sigterm_lets_open_connections_finish_then_exits_0(
    spawn: Spawn, socket_path: Path
) -> None:
    server = await spawn("--grace", "30")
    peer = await Peer.unix(socket_path)
    await peer.send(INIT, point(1))
    assert kind(await peer.receive_kind("point")) == "point"

    server.process.send_signal(signal.SIGTERM)
    await server.wait_for_log("waiting up to 30 s for 1 connection(s) to finish")
    # No longer accepting: the socket file is gone and connecting fails.
    assert not socket_path.exists()
    with pytest.raises((FileNotFoundError, ConnectionRefusedError)):
        await Peer.unix(socket_path)

    # The open connection goes on until Kapacitor closes it, losing nothing.
    await peer.send(point(2), point(3))
    await peer.half_close()
    responses = await peer.receive_all()
    assert [r.point.time for r in responses if kind(r) == "point"] == [2, 3, 0]
    assert responses[-1].point.name == "stopped"
    assert await server.exit_code() == 0
    assert any("stopped serving" in line for line in server.log)


async def test_connections_still_open_after_the_grace_period_are_told_why(
    spawn: Spawn, socket_path: Path
) -> None:
    server = await spawn("--grace", "0.2")
    peer = await Peer.unix(socket_path)
    await peer.send(INIT, point(1))
    await peer.receive_kind("point")
    server.process.send_signal(signal.SIGTERM)
    responses = await peer.receive_all()
    assert kind(responses[-1]) == "error"
    assert responses[-1].error.error == "the UDF server is shutting down"
    assert await server.exit_code() == 0
    assert not socket_path.exists()


async def test_second_sigint_closes_connections_at_once(spawn: Spawn, socket_path: Path) -> None:
    server = await spawn("--grace", "600")
    peer = await Peer.unix(socket_path)
    await peer.send(INIT)
    await peer.receive_kind("init")
    server.process.send_signal(signal.SIGINT)
    await server.wait_for_log("waiting up to 600 s")
    server.process.send_signal(signal.SIGINT)
    responses = await peer.receive_all()
    assert kind(responses[-1]) == "error"
    assert await server.exit_code() == 0
    assert any("closing all connections now" in line for line in server.log)
    assert not socket_path.exists()


async def test_sigterm_with_no_connection(spawn: Spawn, socket_path: Path) -> None:
    server = await spawn()
    assert stat.S_ISSOCK(socket_path.stat().st_mode)
    server.process.send_signal(signal.SIGTERM)
    assert await server.exit_code() == 0
    assert not socket_path.exists()


async def assert_serves(path: Path) -> None:
    """A server answers an InfoRequest on ``path``."""
    peer = await Peer.unix(path)
    await peer.send(request(info=pb.InfoRequest()))
    assert kind(await peer.receive_kind("info")) == "info"
    await peer.close()


def make_stale_socket(path: Path) -> None:
    """A socket file nobody listens on, as a crashed server leaves behind."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()


async def test_stale_socket_file_is_replaced(spawn: Spawn, socket_path: Path) -> None:
    make_stale_socket(socket_path)
    server = await spawn()
    assert any("removing stale socket file" in line for line in server.log)
    await assert_serves(socket_path)


async def test_live_socket_is_refused_and_left_alone(socket_path: Path) -> None:
    async with UnixServer(Recorder, socket_path):
        second = UnixServer(Recorder, socket_path)
        with pytest.raises(SocketPathError, match="is in use: another server answers on it"):
            await second.start()
        # The first server still serves on its socket.
        await assert_serves(socket_path)


async def test_live_socket_refused_by_the_command_line(
    python_env: dict[str, str], socket_path: Path
) -> None:
    async with UnixServer(Recorder, socket_path):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "aioudf",
            "serve",
            "udf_handlers:Recorder",
            "--socket",
            str(socket_path),
            stderr=asyncio.subprocess.PIPE,
            env=python_env,
        )
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 2
        assert f"{socket_path} is in use" in stderr.decode()
        assert stat.S_ISSOCK(socket_path.stat().st_mode)


async def test_regular_file_is_never_deleted(socket_path: Path) -> None:
    socket_path.write_text("precious")
    with pytest.raises(SocketPathError, match="exists and is not a socket; refusing to replace it"):
        await UnixServer(Recorder, socket_path).start()
    assert socket_path.read_text() == "precious"


async def test_directory_is_refused(short_tmp: Path) -> None:
    with pytest.raises(SocketPathError, match="is not a socket"):
        await UnixServer(Recorder, short_tmp).start()
    assert short_tmp.is_dir()


async def test_path_too_long_is_refused(short_tmp: Path) -> None:
    path = short_tmp / ("x" * 120)
    with pytest.raises(SocketPathError, match="unix sockets allow at most 107"):
        await UnixServer(Recorder, path).start()


async def test_socket_mode_default_is_not_world_writable(socket_path: Path) -> None:
    async with UnixServer(Recorder, socket_path):
        assert stat.S_IMODE(socket_path.stat().st_mode) == 0o660


async def test_socket_mode_is_configurable(spawn: Spawn, socket_path: Path) -> None:
    await spawn("--mode", "600")
    assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600


async def test_socket_file_replaced_by_someone_else_is_not_removed(socket_path: Path) -> None:
    server = UnixServer(Recorder, socket_path)
    await server.start()
    os.unlink(socket_path)
    make_stale_socket(socket_path)  # another program's socket now
    await server.shutdown()
    assert stat.S_ISSOCK(socket_path.stat().st_mode)


async def test_embedded_server_installs_no_signal_handlers(socket_path: Path) -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    async with UnixServer(Recorder, socket_path):
        assert {sig: signal.getsignal(sig) for sig in before} == before
    assert not socket_path.exists()


async def test_serve_restores_signal_handlers_and_cleans_up_when_cancelled(
    socket_path: Path,
) -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    ready = asyncio.Event()
    task = asyncio.create_task(serve(Recorder, socket_path, ready=ready))
    await ready.wait()
    peer = await Peer.unix(socket_path)
    await peer.send(INIT)
    await peer.receive_kind("init")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert {sig: signal.getsignal(sig) for sig in before} == before
    assert not socket_path.exists()
    assert kind((await peer.receive_all())[-1]) == "error"


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (no_database, "could not create the UDF handler: RuntimeError: no database"),
        (
            not_a_handler,
            "could not create the UDF handler: "
            "test_failing_handler_factory_is_reported_per_connection.<locals>.factory() "
            "returned a str, not a Handler or BlockingHandler",
        ),
    ],
)
async def test_failing_handler_factory_is_reported_per_connection(
    socket_path: Path, failure: Callable[[], Handler], reason: str
) -> None:
    calls = 0

    def factory() -> Handler:
        nonlocal calls
        calls += 1
        return failure() if calls == 1 else Recorder()

    async with UnixServer(factory, socket_path):
        first = await Peer.unix(socket_path)
        (error,) = await first.receive_all()
        assert error.error.error == reason
        await assert_serves(socket_path)  # the next connection is served
