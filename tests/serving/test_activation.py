"""Socket activation: ``aioudf serve`` on a listening socket passed as systemd does.

systemd binds the socket, then starts the service with it as descriptor 3 and
``LISTEN_FDS=1``, ``LISTEN_PID=<the service's pid>``. The tests do the same
in a small launcher: it moves the socket to descriptor 3, sets ``LISTEN_PID``
to its own pid, and execs ``aioudf serve`` (exec keeps the pid).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from standin import Peer, kind, request

from aioudf._pb import udf_pb2 as pb
from aioudf.errors import ActivationError
from aioudf.serving import _activation as activation


@pytest.fixture
def listening(socket_path: Path) -> Iterator[socket.socket]:
    """A listening socket at socket_path, as a .socket unit creates it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(socket_path))
    sock.listen(16)
    yield sock
    sock.close()


LAUNCHER = """\
import os, sys
os.dup2(int(sys.argv[1]), 3)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[2], sys.argv[2:])
"""


def start_activated(
    env: dict[str, str], sock: socket.socket, path: Path, *extra: str, names: str = ""
) -> subprocess.Popen[bytes]:
    """``aioudf serve`` with ``sock`` as descriptor 3 and the LISTEN_* variables set."""
    fd = sock.fileno()
    env = dict(env, LISTEN_FDS="1")
    if names:
        env["LISTEN_FDNAMES"] = names
    argv = [sys.executable, "-m", "aioudf", "serve", "udf_handlers:Recorder"]
    return subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(fd), *argv, "--socket", str(path), *extra],
        env=env,
        pass_fds=[fd],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_for_line(process: subprocess.Popen[bytes], text: str) -> list[str]:
    assert process.stderr is not None
    lines = []
    for raw in process.stderr:
        lines.append(raw.decode())
        if text in lines[-1]:
            return lines
    raise AssertionError(f"exited before logging {text!r}: {lines}")


async def answers_info(path: Path) -> bool:
    peer = await Peer.unix(path)
    await peer.send(request(info=pb.InfoRequest()))
    response = await peer.receive_kind("info")
    await peer.close()
    return kind(response) == "info"


async def test_serves_the_passed_socket_and_leaves_it_for_the_next_start(
    python_env: dict[str, str], listening: socket.socket, socket_path: Path
) -> None:
    first = start_activated(python_env, listening, socket_path, names="udf.socket")
    wait_for_line(first, "serving ")
    assert await answers_info(socket_path)
    first.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0
    # The socket belongs to the service manager: still there, still listening.
    assert socket_path.exists()
    # A connection made while no server runs waits in the socket's queue...
    waiting = await Peer.unix(socket_path)
    await waiting.send(request(info=pb.InfoRequest()))
    # ... and the next start answers it.
    second = start_activated(python_env, listening, socket_path)
    try:
        wait_for_line(second, "serving ")
        assert kind(await waiting.receive_kind("info")) == "info"
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0


def test_a_socket_bound_elsewhere_is_refused_with_the_reason(
    python_env: dict[str, str], listening: socket.socket, short_tmp: Path
) -> None:
    process = start_activated(python_env, listening, short_tmp / "other.sock")
    _, err = process.communicate(timeout=30)
    assert process.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1
    assert "socket activation passed no socket bound to" in lines[0]
    assert "ListenStream=" in lines[0]


def test_variables_meant_for_another_process_are_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))
    monkeypatch.setenv("LISTEN_FDS", "1")
    assert activation.listen_fds() == []
    assert "LISTEN_FDS" not in os.environ  # not passed on to child processes either


def test_malformed_variables_are_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    monkeypatch.setenv("LISTEN_FDS", "one")
    with pytest.raises(ActivationError, match="must be whole numbers"):
        activation.listen_fds()


def test_notify_sends_to_the_service_manager(
    monkeypatch: pytest.MonkeyPatch, short_tmp: Path
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(str(short_tmp / "notify"))
        monkeypatch.setenv("NOTIFY_SOCKET", str(short_tmp / "notify"))
        assert activation.notify("READY=1", "MAINPID=42")
        assert manager.recv(100) == b"READY=1\nMAINPID=42"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not activation.notify("READY=1")
