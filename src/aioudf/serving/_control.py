"""The socket files: a served socket bound with its mode, and the control socket beside it.

:func:`bind_socket` is the one bind of a unix socket (a single server's, a
supervisor's, the control socket's): the path checked (a stale socket file
removed, a live one or a non-socket refused), the mode set before anyone can
connect, and the file's identity kept so that :func:`remove_if_same` removes
only the file this process made, never one that another process bound since.

:class:`ControlSocket` answers hand-over requests on ``PATH.ctl``; the
server and the supervisor each hold one, so neither imports the other's
privates.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
import struct

import anyio
import anyio.abc

from ..errors import AioudfError, SocketPathError
from ._handover import Channel, Giver, control_path, give

__all__ = ["ControlSocket", "bind_socket", "inode_of", "prepare_socket_path", "remove_if_same"]

logger = logging.getLogger("aioudf")

# sun_path is 108 bytes on Linux (104 on the BSDs), including the final NUL.
_MAX_SOCKET_PATH = 107


def _why(path: str, exc: OSError) -> str:
    """Why a socket cannot be created at ``path``, in the words a user acts on."""
    directory = os.path.dirname(os.path.abspath(path))
    if exc.errno == errno.ENOENT:
        return f"no such directory: {directory}"
    if exc.errno == errno.ENOTDIR:
        return f"a part of {directory} is not a directory"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (
            f"permission denied to this user (uid {os.geteuid()}): check the owner and "
            f"mode of {directory} and of the path (a volume mounted with the wrong owner?)"
        )
    return exc.strerror or str(exc)


async def _socket_is_live(path: str) -> bool:
    """True if something accepts connections on the socket at ``path``."""
    try:
        with anyio.fail_after(2):
            stream = await anyio.connect_unix(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except TimeoutError:
        return True  # it exists and is busy: treat as live, never delete it
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return False
        raise
    await stream.aclose()
    return True


async def bind_socket(path: str, mode: int) -> tuple[socket.socket, tuple[int, int]]:
    """A unix socket bound at ``path`` with permissions ``mode``, not yet listening; its file.

    The path is checked first (:func:`prepare_socket_path`); a failure is a
    :class:`~aioudf.SocketPathError` in the words a user acts on. The mode is
    set before the caller listens: nobody can connect while it is still the
    umask's. The server, the supervisor and the control socket all bind here.
    """
    try:
        await prepare_socket_path(path)
    except OSError as exc:
        raise SocketPathError(f"cannot use the socket path {path}: {_why(path, exc)}") from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.bind(path)
        except OSError as exc:
            raise SocketPathError(f"cannot create the socket {path}: {_why(path, exc)}") from None
        inode = inode_of(path)
        try:
            os.chmod(path, mode)
        except BaseException:
            remove_if_same(path, inode)
            raise
    except BaseException:
        sock.close()
        raise
    return sock, inode


async def prepare_socket_path(path: str) -> None:
    """Make ``path`` available for bind(), or raise SocketPathError.

    A stale socket file (nothing listens) is removed; a live socket, a path
    that is not a socket, or a path too long for the platform is refused and
    left alone.
    """
    if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
        raise SocketPathError(
            f"socket path is {len(os.fsencode(path))} bytes long; unix sockets allow "
            f"at most {_MAX_SOCKET_PATH}: {path}"
        )
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise SocketPathError(f"{path} exists and is not a socket; refusing to replace it")
    if await _socket_is_live(path):
        raise SocketPathError(f"{path} is in use: another server answers on it")
    logger.info("removing stale socket file %s", path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class ControlSocket:
    """The control socket ``PATH.ctl`` through which another process takes over.

    Shared by :class:`UnixServer` and the supervisor: bound with mode 0600
    beside the served socket (or handed over), answered with
    :func:`~aioudf.serving.give`; ``done`` is set once a hand-over completed.
    Its answering task runs in the task group its owner gives
    :meth:`open` or :meth:`serve`, and ends at :meth:`close` or with that group.
    """

    def __init__(self, path: str, giver: Giver, done: asyncio.Event) -> None:
        self.path = control_path(path)
        self.sock: socket.socket | None = None
        self._giver = giver
        self._served = path
        self._done = done
        self._inode: tuple[int, int] | None = None  # the file, while it is ours
        self._scope: anyio.CancelScope | None = None  # the answering task's
        #: The process a hand-over went to, once one completed (for the last log line).
        self.taker_pid = 0

    async def open(self, tasks: anyio.abc.TaskGroup) -> None:
        """Bind it beside the served socket; without it (path too long...), warn."""
        try:
            sock, _ = await bind_socket(self.path, 0o600)
            sock.listen(8)
        except (AioudfError, OSError) as exc:
            logger.warning("no hand-over on this server: %s", exc)
            return
        self.serve(sock, tasks)

    def serve(self, sock: socket.socket, tasks: anyio.abc.TaskGroup) -> None:
        """Answer hand-over requests on the listening ``sock``, in a task of ``tasks``."""
        self.sock = sock
        sock.setblocking(False)
        if sock.getsockname() == self.path:
            with contextlib.suppress(FileNotFoundError):
                self._inode = inode_of(self.path)  # ours to remove at the end
        self._scope = scope = anyio.CancelScope()
        tasks.start_soon(self._answer_within, scope, sock, name="aioudf control socket")

    async def _answer_within(self, scope: anyio.CancelScope, sock: socket.socket) -> None:
        # Nothing raised here may reach the owner's task group: in a server,
        # that group holds every connection.
        with scope:
            try:
                await self._answer(sock)
            except OSError as exc:
                if sock.fileno() != -1:  # (closed: released or closed, as meant)
                    logger.warning("the control socket stopped answering: %s", exc)

    async def _answer(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while not self._done.is_set():
            conn, _ = await loop.sock_accept(sock)
            channel = Channel(conn)
            try:
                kept = await give(channel, self._giver, path=self._served)
                self.taker_pid = _peer_pid(conn)
            except Exception as exc:
                logger.error("hand-over failed: %s; what was not moved is served here", exc)
                if sock is not self.sock:
                    return  # taken back: serve() answers on a fresh copy now
                continue
            finally:
                channel.close()
            self._done.set()
            if kept:
                logger.warning("handed over; %d connection(s) stay here until they end", kept)
            else:
                logger.info("handed everything over")

    def release(self) -> None:
        """Another process took it over: stop answering; the file is the new owner's."""
        self._inode = None
        if self.sock is not None:
            self.sock.close()

    def close(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
        if self.sock is not None:
            self.sock.close()
        remove_if_same(self.path, self._inode)
        self._inode = None


def _peer_pid(sock: socket.socket) -> int:
    """The process id at the other end of a unix socket (0 if it cannot be told)."""
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return 0
    return int(struct.unpack("3i", creds)[0])


def inode_of(path: str) -> tuple[int, int]:
    """The file at ``path`` (device, inode): to remove it later only if it is still ours."""
    info = os.stat(path)
    return info.st_dev, info.st_ino


def remove_if_same(path: str, inode: tuple[int, int] | None) -> None:
    """Remove the socket file at ``path`` if it is the one with ``inode``."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if inode == (info.st_dev, info.st_ino) and stat.S_ISSOCK(info.st_mode):
        os.unlink(path)
