"""Socket UDFs: a unix socket server with one agent per Kapacitor connection.

Embedded in an existing async service::

    async with UnixServer(MyHandler, "/run/udf.sock") as server:
        ...                     # the service runs; connections are served
    # leaving the block stops accepting, lets connections finish
    # (up to ``grace`` seconds), cancels the rest and removes the socket file

As the whole program (installs SIGINT/SIGTERM handlers, since it owns the
loop)::

    asyncio.run(aioudf.serve(MyHandler, "/run/udf.sock"))

The server reads top to bottom as a life: :meth:`UnixServer.start` prepares
the path and listens, connections are served in the server's task group, and
:meth:`UnixServer.shutdown` stops accepting, waits, cancels and cleans up.
Every connection gets a fresh handler; a failing connection is logged and
closed without affecting the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import stat
from collections.abc import Callable
from types import TracebackType
from typing import Any

import anyio
import anyio.abc

from .agent import Agent, create_handler, refuse
from .errors import AioudfError, ConnectionFailed
from .handler import BaseHandler
from .logs import connection_context
from .metrics import Metrics, MetricsEndpoint, parse_address
from .watchdog import DEFAULT_WARN_BLOCKED, LoopWatchdog

__all__ = ["DEFAULT_GRACE", "DEFAULT_SOCKET_MODE", "SocketPathError", "UnixServer", "serve"]

logger = logging.getLogger("aioudf")

#: Socket file permissions: owner and group may connect, others may not.
DEFAULT_SOCKET_MODE = 0o660
#: Seconds open connections get to finish at shutdown before they are cancelled.
DEFAULT_GRACE = 10.0

# sun_path is 108 bytes on Linux (104 on the BSDs), including the final NUL.
_MAX_SOCKET_PATH = 107


class SocketPathError(AioudfError):
    """The socket path cannot be used (in use, not a socket, too long...)."""


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


class UnixServer:
    """Serve a handler class on a unix socket, one agent per connection.

    ``handler_factory``
        the Handler class, or any callable returning a new handler.
    ``path``
        the socket file. See :func:`prepare_socket_path` for what happens
        when it exists.
    ``mode``
        the socket file's permissions (default 0o660: not world-writable;
        Kapacitor needs write permission to connect).
    ``grace``
        seconds open connections get to finish at shutdown.
    ``backlog``
        connections the kernel queues before they are accepted (Kapacitor
        opens one per task node, all at once when it starts).
    ``warn_blocked``
        if set, seconds the event loop may be blocked before a warning is
        logged (a :class:`~aioudf.watchdog.LoopWatchdog` runs while the
        server does). Off by default here, since an embedding service owns
        the loop; :func:`serve` turns it on.
    ``metrics``
        Prometheus metrics (needs the ``aioudf[metrics]`` extra): an address
        ``"HOST:PORT"`` to serve them on at ``/metrics`` while the server
        runs, or a :class:`~aioudf.metrics.Metrics` to record into (whose
        registry the embedding service exposes itself). See
        docs/observability.md.
    ``agent_options``
        passed to every :class:`~aioudf.Agent` (``max_frame_size``,
        ``max_backlog``, ``max_output``, ``stop_timeout``).
    """

    def __init__(
        self,
        handler_factory: Callable[[], BaseHandler],
        path: str | os.PathLike[str],
        *,
        mode: int = DEFAULT_SOCKET_MODE,
        grace: float = DEFAULT_GRACE,
        backlog: int = 1024,
        warn_blocked: float | None = None,
        metrics: str | Metrics | None = None,
        **agent_options: Any,
    ) -> None:
        self.handler_factory = handler_factory
        self.path = os.fspath(path)
        self.mode = mode
        self.grace = grace
        self.backlog = backlog
        self.agent_options = agent_options
        #: Connections being served right now.
        self.active = 0
        #: Connections accepted since start.
        self.accepted = 0
        self._server: asyncio.AbstractServer | None = None
        # The connections' task group lives in a supervisor task of the
        # server's own, so start() and shutdown() may be called from any task.
        self._tasks: anyio.abc.TaskGroup | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._release = asyncio.Event()  # tells the supervisor to close the group
        self._closing = False
        self._idle = asyncio.Event()  # set while no connection is open
        self._idle.set()
        self._cut_short = asyncio.Event()  # set to end the grace period early
        self._inode: tuple[int, int] | None = None
        self._watchdog = LoopWatchdog(warn_blocked) if warn_blocked else None
        #: The metrics recorded (None when off); settings checked here, before serving.
        self.metrics: Metrics | None = None
        self.metrics_endpoint: MetricsEndpoint | None = None
        if isinstance(metrics, str):
            host, port = parse_address(metrics)
            self.metrics = Metrics()
            self.metrics_endpoint = MetricsEndpoint(self.metrics, host, port)
        elif metrics is not None:
            self.metrics = metrics

    # ---- start ----------------------------------------------------------

    async def start(self) -> None:
        """Prepare the path, bind, set the mode and start accepting."""
        await prepare_socket_path(self.path)
        if self.metrics_endpoint is not None:
            await self.metrics_endpoint.start()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.path)
            # Before listen(): nobody can connect while the mode is still the umask's.
            os.chmod(self.path, self.mode)
            info = os.stat(self.path)
            self._inode = (info.st_dev, info.st_ino)
            ready = asyncio.Event()
            self._supervisor = asyncio.create_task(self._supervise(ready))
            await ready.wait()
            self._server = await asyncio.start_unix_server(
                self._accept, sock=sock, backlog=self.backlog, limit=1 << 20
            )
        except BaseException:
            sock.close()
            self._remove_socket_file()
            await self._close_supervisor()
            if self.metrics_endpoint is not None:
                await self.metrics_endpoint.close()
            raise
        if self._watchdog is not None:
            self._watchdog.start()
        logger.info("serving %s on %s", _factory_name(self.handler_factory), self.path)

    async def __aenter__(self) -> UnixServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    # ---- serving --------------------------------------------------------

    async def _supervise(self, ready: asyncio.Event) -> None:
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            ready.set()
            await self._release.wait()
            tasks.cancel_scope.cancel()

    async def _close_supervisor(self) -> None:
        self._tasks = None
        self._release.set()
        if self._supervisor is not None:
            await self._supervisor
            self._supervisor = None

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing or self._tasks is None:
            writer.close()
            return
        self.accepted += 1
        self.active += 1
        self._idle.clear()
        number = self.accepted
        self._tasks.start_soon(self._serve_connection, reader, writer, number, name=f"udf-{number}")

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int
    ) -> None:
        metrics = self.metrics
        if metrics is not None:
            metrics.opened()
        # Every record about this connection (the agent's, the handler's) carries conn=N.
        with connection_context(str(number)):
            try:
                await self._run_agent(reader, writer, number)
            finally:
                self.active -= 1
                if self.active == 0:
                    self._idle.set()
                if metrics is not None:
                    metrics.closed()

    async def _run_agent(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int
    ) -> None:
        logger.debug("connected")
        try:
            try:
                handler = create_handler(self.handler_factory)
            except ConnectionFailed as exc:
                logger.error("%s", exc.reason, exc_info=exc.__cause__)
                await refuse(writer, exc.reason)
                return
            agent = Agent(
                handler, reader, writer, name=f"conn {number}", metrics=self.metrics,
                **self.agent_options,
            )  # fmt: skip
            await agent.run()
            logger.debug("closed")
        except ConnectionFailed as exc:
            logger.warning("ended with an error: %s", exc.reason)
        except Exception as exc:
            # Never let one connection take the server down, nor leave it
            # open: Kapacitor would wait on it, and its socket would leak.
            logger.exception("failed unexpectedly")
            with contextlib.suppress(Exception):
                await refuse(
                    writer, f"internal error in the UDF server: {type(exc).__name__}: {exc}"
                )

    async def serve_forever(self) -> None:
        """Serve until cancelled (the server keeps running after an error)."""
        await anyio.sleep_forever()

    # ---- stop -----------------------------------------------------------

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop accepting, wait for connections, cancel the rest, remove the socket.

        Open connections get ``grace`` seconds (default: the server's) to end
        on their own; :meth:`cut_short` ends that wait early. Connections still
        open then are cancelled: each gets an ErrorResponse saying the server is
        shutting down, after whatever output it had queued.
        """
        if self._tasks is None or self._closing:
            return
        grace = self.grace if grace is None else grace
        self._closing = True
        if self._server is not None:
            self._server.close()
        self._remove_socket_file()
        if self.active:
            logger.info("waiting up to %g s for %d connection(s) to finish", grace, self.active)
            with anyio.move_on_after(grace):
                async with anyio.create_task_group() as tg:

                    async def wait_for(event: asyncio.Event) -> None:
                        await event.wait()
                        tg.cancel_scope.cancel()

                    tg.start_soon(wait_for, self._idle)
                    tg.start_soon(wait_for, self._cut_short)
            if self.active:
                logger.warning("cancelling %d connection(s) still open", self.active)
        await self._close_supervisor()
        if self._watchdog is not None:
            self._watchdog.stop()
        if self.metrics_endpoint is not None:
            await self.metrics_endpoint.close()
        logger.info("stopped serving on %s", self.path)

    def cut_short(self) -> None:
        """End a running :meth:`shutdown`'s grace period now."""
        self._cut_short.set()

    def _remove_socket_file(self) -> None:
        """Remove the socket file, but only if it is still the one we created."""
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return
        if self._inode == (info.st_dev, info.st_ino) and stat.S_ISSOCK(info.st_mode):
            os.unlink(self.path)


def _factory_name(factory: Callable[..., Any]) -> str:
    return getattr(factory, "__qualname__", repr(factory))


async def serve(
    handler_factory: Callable[[], BaseHandler],
    path: str | os.PathLike[str],
    *,
    mode: int = DEFAULT_SOCKET_MODE,
    grace: float = DEFAULT_GRACE,
    handle_signals: bool = True,
    ready: asyncio.Event | None = None,
    warn_blocked: float = DEFAULT_WARN_BLOCKED,
    metrics: str | Metrics | None = None,
    **agent_options: Any,
) -> None:
    """Serve a socket UDF until SIGINT or SIGTERM; for ``asyncio.run``.

    ``ready``, if given, is set once the socket accepts connections.
    ``warn_blocked`` is the number of seconds the event loop may be blocked
    before a warning is logged (0 disables the check). ``metrics``: see
    :class:`UnixServer` (``"HOST:PORT"`` serves Prometheus metrics there).

    The first signal stops accepting and gives open connections ``grace``
    seconds to finish; the socket file is removed and the call returns. A
    second signal cancels the remaining connections at once. With
    ``handle_signals=False`` nothing is installed and the call serves until
    cancelled. Signal handlers that were there before are restored.
    """
    loop = asyncio.get_running_loop()
    server = UnixServer(
        handler_factory,
        path,
        mode=mode,
        grace=grace,
        warn_blocked=warn_blocked,
        metrics=metrics,
        **agent_options,
    )
    stop = asyncio.Event()

    def on_signal(signum: signal.Signals) -> None:
        if stop.is_set():
            logger.warning("received %s again: closing all connections now", signum.name)
            server.cut_short()
        else:
            logger.info("received %s: shutting down (again to force)", signum.name)
            stop.set()

    installed: dict[signal.Signals, Any] = {}
    try:
        if handle_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                installed[signum] = signal.getsignal(signum)
                loop.add_signal_handler(signum, on_signal, signum)
        await server.start()
        if ready is not None:
            ready.set()
        try:
            await stop.wait()
        except BaseException:
            # Cancelled from outside: no grace, but still close and clean up.
            with anyio.CancelScope(shield=True):
                await server.shutdown(grace=0)
            raise
        await server.shutdown()
    finally:
        for signum, previous in installed.items():
            loop.remove_signal_handler(signum)
            signal.signal(signum, previous)
