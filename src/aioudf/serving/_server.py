"""Socket UDFs: a unix socket server with one agent per Kapacitor connection.

Embedded in an existing async service::

    async with UnixServer(MyHandler, "/run/udf.sock") as server:
        ...                     # the service runs; connections are served
    # leaving the block stops accepting, gives connections ``grace`` seconds
    # to end, then ends the rest (each answers what it received and is told
    # the server is shutting down) and removes the socket file

As the whole program (installs SIGINT/SIGTERM handlers, since it owns the
loop)::

    asyncio.run(aioudf.serve(MyHandler, "/run/udf.sock"))

The server reads top to bottom as a life: :meth:`UnixServer.start` prepares
the path and listens, connections are served in the server's task group, and
:meth:`UnixServer.shutdown` stops accepting, waits, cancels and cleans up.
Every connection gets a fresh handler; a failing connection is logged and
closed without affecting the others.

Why one module of this size: a server's life and its hand-over (giving and
taking connections and sockets) touch the same connection table and task
group; the wire of the hand-over is ``_handover``, the sockets' files
``_control``, the shared life ``_lifecycle``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Coroutine, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

import anyio
import anyio.abc

from ..config import DEFAULT_GRACE, DEFAULT_SOCKET_MODE, Config
from ..errors import ConnectionFailed, HandoverError, SocketPathError
from ..runtime import _streams as streams
from ..runtime._agent import Agent
from ..runtime._handlers import create_handler, prepare_handler, refuse
from ..runtime._logs import connection_context
from ..runtime._watchdog import LoopWatchdog
from ..toolkit._handler import BaseHandler
from ..wire._protocol import UDFConnection
from ._activation import notify
from ._control import ControlSocket, bind_socket, inode_of, remove_if_same
from ._handover import (
    HANDOVER_TIMEOUT,
    Channel,
    Message,
    NothingToTakeOver,
    Observer,
    control_path,
    describe_exit,
    give_connections,
    offer_connection,
    process_exit,
    socket_pair,
    take_connections,
    take_over,
)
from ._lifecycle import Lifecycle, first
from ._metrics import Metrics, parse_address, shared_dir, use_multiprocess_dir
from ._metrics_http import MetricsEndpoint, socket_of, start_handed_over

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..config import ServerSettings

__all__ = ["DEFAULT_GRACE", "DEFAULT_SOCKET_MODE", "SocketPathError", "UnixServer", "serve"]

logger = logging.getLogger("aioudf")

#: Seconds connections get, once told to end, to answer what they received.
FINISH_TIMEOUT = 2.0
#: The reason the ErrorResponse gives to each connection ended by a shutdown.
SHUTDOWN_REASON = "the UDF server is shutting down"

# Bytes a connection's stream reads ahead of the agent.
_READ_LIMIT = 1 << 20


class UnixServer:
    """Serve a handler class on a unix socket, one agent per connection.

    ``handler_factory``: the Handler class, or any callable returning a new
    handler. ``path``: the socket file (see :func:`~aioudf.serving.prepare_socket_path` for
    what happens when it exists). ``config`` and ``settings``: a
    :class:`~aioudf.config.Config` with any setting changed by keyword
    (:class:`~aioudf.config.ServerSettings`: ``mode``, ``grace``,
    ``backlog``, ``warn_blocked``, ``max_frame_size``, ``max_backlog``,
    ``max_output``, ``read_size``, ``stop_timeout``, ``close_timeout``),
    checked here: an unknown or invalid one raises
    :class:`~aioudf.ConfigError` naming it (an unset ``warn_blocked`` is off
    here, since an embedding service owns the loop).
    ``sock``: a listening socket to serve instead of binding ``path`` (from
    systemd or a supervisor; its file is left in place at shutdown).
    ``metrics``: ``"HOST:PORT"`` to serve Prometheus metrics at ``/metrics``,
    or a :class:`~aioudf.serving.Metrics` to record into (the
    ``aioudf[metrics]`` extra; docs/observability.md).

    Hand-over (docs/operations.md): with ``handover`` (on by default) another
    process of the same user takes everything over through ``PATH.ctl``:
    ``await server.start(takeover=True)`` takes the sockets (metrics' too)
    and live connections from the server on ``path``, or starts afresh. The
    giver sets :attr:`handed_over` and keeps serving what the new process
    refused. ``observer`` (an :class:`~aioudf.serving.Observer`) is told of
    every hand-over. No signal handler is installed for any of this.
    """

    def __init__(
        self,
        handler_factory: Callable[[], BaseHandler],
        path: str | os.PathLike[str],
        *,
        config: Config | None = None,
        sock: socket.socket | None = None,
        handover: bool = True,
        observer: Observer | None = None,
        metrics: str | Metrics | None = None,
        **settings: Unpack[ServerSettings],
    ) -> None:
        self.config = Config.of(config, **settings)
        self.handler_factory = handler_factory
        self.path = os.fspath(path)
        self.mode = self.config.mode
        self.grace = self.config.grace
        self.backlog = self.config.backlog
        warn_blocked = self.config.blocked_threshold(owns_loop=False)
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
        # The connections being served, by number: agent, reader, writer.
        self._connections: dict[int, tuple[Agent, asyncio.StreamReader, asyncio.StreamWriter]] = {}
        self._inode: tuple[int, int] | None = None  # the socket file, while it is ours
        self._watchdog = LoopWatchdog(warn_blocked) if warn_blocked else None
        self._given_sock = sock
        self._listen_sock: socket.socket | None = None
        self.handover = handover
        self.observer: Observer = observer or Observer()
        #: Set once another process took the listening socket over: this
        #: server accepts no more, and serves only the connections it kept.
        self.handed_over = asyncio.Event()
        #: Who took everything over, when it was not a process that asked on
        #: the control socket (whose pid the last line names): a worker's
        #: replacement, say. Only for the last log line.
        self.successor: str | None = None
        self._control = ControlSocket(self.path, self, self.handed_over)
        # (listener, control socket, inode): to accept again if a taker fails part way.
        self._spare: tuple[socket.socket, socket.socket | None, tuple[int, int] | None] | None = (
            None
        )

        #: The metrics recorded (None when off); settings checked here, before serving.
        self.metrics: Metrics | None = None
        self.metrics_endpoint: MetricsEndpoint | None = None
        if isinstance(metrics, str):
            host, port = parse_address(metrics)
            self.metrics = Metrics()
            self.metrics.workers(1)  # serving alone (a supervisor's workers get a Metrics)
            self.metrics_endpoint = MetricsEndpoint(self.metrics, host, port)
        elif metrics is not None:
            self.metrics = metrics
        if self.metrics is not None:  # hand-overs counted too
            self.observer = self.metrics.observer(self.observer)

    # ---- start ----------------------------------------------------------

    async def start(self, *, takeover: bool = False) -> None:
        """Prepare the path, bind, set the mode and start accepting.

        With a ``sock`` given, serve it instead: nothing is bound. With
        ``takeover``, take the sockets and live connections over from the
        server running on the path, if one answers on its control socket.
        """
        if takeover:
            try:
                await take_over(self.path, self)  # the metrics socket comes along
                return
            except NothingToTakeOver:
                logger.info("no server to take over from on %s: starting afresh", self.path)
        if self.metrics_endpoint is not None:
            await self.metrics_endpoint.start()
        if self._given_sock is not None:
            sock = self._given_sock
        else:
            sock, self._inode = await bind_socket(self.path, self.mode)
        try:
            await self._listen(sock)
        except BaseException:
            sock.close()
            self._remove_socket_file()
            raise
        if self.handover:
            assert self._tasks is not None  # (started by _listen)
            await self._control.open(self._tasks)

    async def _listen(self, sock: socket.socket) -> None:
        """Start the connections' task group and accept on ``sock``."""
        try:
            ready = asyncio.Event()
            # A task, not a task group: an anyio group must be left by the
            # task that entered it, and start() and shutdown() may be called
            # from different tasks. Owned all the same: shutdown() (or a
            # failed start) releases it, which cancels the group, and awaits it.
            self._supervisor = asyncio.create_task(self._supervise(ready), name="aioudf server")
            await ready.wait()
            self._server = await streams.start_unix_server(
                self._accept, sock=sock, backlog=self.backlog, limit=_READ_LIMIT
            )
        except BaseException:
            await self._close_supervisor()
            if self.metrics_endpoint is not None:
                await self.metrics_endpoint.close()
            raise
        self._listen_sock = sock
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
        self._start_connection(reader, writer, None)

    def _start_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, agent: Agent | None
    ) -> None:
        assert self._tasks is not None
        self.accepted += 1
        self.active += 1
        self._idle.clear()
        number = self.accepted
        self._tasks.start_soon(
            self._serve_connection, reader, writer, number, agent, name=f"udf-{number}"
        )

    async def _serve_connection(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        number: int,
        agent: Agent | None,
    ) -> None:
        metrics = self.metrics
        if metrics is not None:
            metrics.opened()
        # Every record about this connection (the agent's, the handler's) carries conn=N.
        with connection_context(str(number)):
            try:
                await self._run_agent(reader, writer, number, agent)
            finally:
                self._connections.pop(number, None)
                self.active -= 1
                if self.active == 0:
                    self._idle.set()
                if metrics is not None:
                    metrics.closed()

    async def _run_agent(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        number: int,
        agent: Agent | None,
    ) -> None:
        name = f"conn {number}"
        logger.debug("connected")
        try:
            if agent is None:
                try:
                    handler = create_handler(self.handler_factory)
                except ConnectionFailed as exc:
                    logger.error("%s", exc.reason, exc_info=exc.__cause__)
                    await refuse(writer, exc.reason)
                    return
                agent = Agent(
                    handler, reader, writer, name=name, config=self.config, metrics=self.metrics
                )
            else:
                agent.name = name
            self._connections[number] = (agent, reader, writer)
            if self._closing:
                await agent.finish(SHUTDOWN_REASON)  # accepted as the server stopped
            await agent.run()
            logger.debug("handed over" if agent.handed_over else "closed")
        except ConnectionFailed as exc:
            if exc.reason == SHUTDOWN_REASON:
                logger.debug("ended: %s", exc.reason)
            else:
                logger.warning("ended with an error: %s", exc.reason)
        except Exception as exc:
            # Never let one connection take the server down, nor leave it
            # open: Kapacitor would wait on it, and its socket would leak.
            logger.exception("failed unexpectedly")
            with contextlib.suppress(Exception):
                await refuse(
                    writer, f"internal error in the UDF server: {type(exc).__name__}: {exc}"
                )

    # ---- hand-over: giving ------------------------------------------------

    async def serve_control(self, control: socket.socket) -> None:
        """Answer hand-over requests on the listening ``control`` socket."""
        assert self._tasks is not None
        self._control.serve(control, self._tasks)

    def metrics_socket(self) -> socket.socket | None:
        return socket_of(self.metrics_endpoint)

    def handover_sockets(self) -> tuple[socket.socket, socket.socket, bool]:
        if self._listen_sock is None or self._control.sock is None or self._closing:
            raise HandoverError("this server is not serving: nothing to hand over")
        return self._listen_sock, self._control.sock, self._inode is not None

    async def stop_accepting(self) -> None:
        """The taker accepts now: stop accepting; the socket files are its own."""
        # Copies to take everything back with, should the taker fail part way
        # (a worker has no control socket: its supervisor has).
        if self._listen_sock is not None:
            control = self._control.sock.dup() if self._control.sock is not None else None
            self._spare = (self._listen_sock.dup(), control, self._inode)
        if self._server is not None:
            self._server.close()
        self._inode = None
        self._control.release()
        self.observer.handover_started()

    async def resume_accepting(self) -> None:
        if self._spare is None:
            return
        listener, control, self._inode = self._spare
        self._spare = None
        self._server = await streams.start_unix_server(
            self._accept, sock=listener, backlog=self.backlog, limit=_READ_LIMIT
        )
        self._listen_sock = listener
        if control is not None and self._tasks is not None:
            self._control.serve(control, self._tasks)
        logger.warning("the other process failed part way: serving the socket here again")

    async def open_channels(self) -> list[tuple[socket.socket, Coroutine[Any, Any, int]]]:
        mine, theirs = socket_pair()

        async def giving() -> int:  # awaited by give() once the taker has the channel
            try:
                return await give_connections(Channel(mine), self.offer_all)
            finally:
                mine.close()

        return [(theirs, giving())]

    async def offer_all(self, channel: Channel) -> int:
        """Offer every connection over ``channel``; return how many stay here."""
        kept: set[int] = set()
        offered: set[int] = set()
        # Until none is left: connections accepted while the taker started
        # accepting too are offered as well.
        while pending := [number for number in self._connections if number not in offered]:
            for number in pending:
                offered.add(number)
                if number in self._connections and not await self._offer(number, channel):
                    kept.add(number)
        return len(kept & self._connections.keys())

    async def _offer_some(self, channel: Channel, count: int) -> tuple[int, int]:
        """Move up to ``count`` tasks' connections over ``channel``, and keep serving.

        Another worker of the same code takes its share of the load: the
        newest connections are offered first, those the taker refuses stay
        here, and connections that are no task's (Kapacitor's Info probe)
        are left alone. Returns (moved, refused).
        """
        moved = refused = 0
        for number in sorted(self._connections, reverse=True):
            if moved >= count:
                break
            if number in self._connections:
                taken = await self._offer(number, channel, tasks_only=True)
                if taken:
                    moved += 1
                elif taken is not None:
                    refused += 1
        return moved, refused

    async def _offer(
        self, number: int, channel: Channel, *, tasks_only: bool = False
    ) -> bool | None:
        """Pause one connection and offer it; True if the other process took it.

        ``None`` (with ``tasks_only``): it is no task's connection, and was not offered.
        """
        agent, reader, writer = self._connections[number]
        handoff = None
        with anyio.move_on_after(HANDOVER_TIMEOUT):  # Kapacitor not reading, say
            handoff = await agent.pause_for_handover()
        about = {"conn": str(number)}  # [logs] logged from the giver's task, not the connection's
        if handoff is None:
            logger.warning("cannot be handed over now: it stays here", extra=about)
            return False
        if tasks_only and not handoff.task_id:
            handoff.resume()
            return None
        about.update(task=handoff.task_id, node=handoff.node_id)
        transport = cast(asyncio.Transport, writer.transport)
        transport.pause_reading()  # what arrives now waits in the socket for the taker
        try:
            # Everything answered so far reaches the socket before it moves.
            transport.set_write_buffer_limits(0)
            await writer.drain()
            sock = writer.get_extra_info("socket")
            reason = await offer_connection(
                channel,
                fd=sock.fileno(),
                state=handoff.state,
                read_ahead=_read_ahead(reader),
                snapshot=handoff.snapshot,
                name=agent.name,
                task=handoff.task_id,
                node=handoff.node_id,
            )
        except BaseException:
            transport.set_write_buffer_limits()
            transport.resume_reading()
            handoff.resume()
            raise
        if reason is None:
            handoff.commit()
            self.observer.connection_handed_over(handoff.task_id, handoff.node_id)
            logger.info("task %r handed over", handoff.task_id, extra=about)
            return True
        logger.warning(
            "task %r stays with this process, served by the code it started with: "
            "the new process refused it: %s",
            handoff.task_id,
            reason,
            extra=about,
        )
        self.observer.connection_kept(handoff.task_id, reason, handoff.node_id)
        transport.set_write_buffer_limits()
        transport.resume_reading()
        handoff.resume()
        return False

    # ---- hand-over: taking ------------------------------------------------

    async def listen_on(
        self, listener: socket.socket, owns_path: bool, metrics: socket.socket | None
    ) -> None:
        await start_handed_over(self.metrics_endpoint, metrics)
        if owns_path:
            self._inode = inode_of(self.path)
        await self._listen(listener)

    async def take_from(self, end: socket.socket) -> None:
        # (A giver failing part way ends none of the connections taken here.)
        channel = Channel(end)
        try:
            taken = await take_connections(channel, self._adopt)
            logger.info("took over %d connection(s)", taken)
        except (HandoverError, OSError) as exc:
            # What was adopted is served here; what was not stays with the giver.
            logger.error("the giving process failed part way (%s): serving what it gave", exc)
        finally:
            channel.close()

    async def _adopt(self, message: Message) -> str | None:
        """Take one offered connection; the reason if it is refused."""
        state, read_ahead, snapshot = message.blobs
        task = message.header.get("task", "")
        try:
            conn = UDFConnection.from_state(state, max_frame_size=self.config.max_frame_size)
            handler = create_handler(self.handler_factory)
            if conn.init_request is not None:
                await prepare_handler(handler, conn.init_request, snapshot)
        except ConnectionFailed as exc:
            return exc.reason
        except Exception as exc:
            logger.warning("task %r stays with the previous process: %s", task, exc)
            return f"{type(exc).__name__}: {exc}"
        conn.receive_data(read_ahead)
        sock = socket.socket(fileno=message.fds.pop())
        reader, writer = await streams.open_unix_connection(sock=sock, limit=_READ_LIMIT)
        agent = Agent(
            handler, reader, writer, connection=conn, config=self.config, metrics=self.metrics
        )
        self._start_connection(reader, writer, agent)
        self.observer.connection_taken_over(task, message.header.get("node", ""))
        logger.info("task %r taken over", task)
        return None

    # ---- stop -----------------------------------------------------------

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop accepting, end the open connections, remove the socket file.

        Open connections get ``grace`` seconds (default: the server's) to end
        on their own. Then each is told to end: it stops reading, answers
        every request it has received, and gets an ErrorResponse saying
        ``the UDF server is shutting down`` (Kapacitor fails the task with
        that text). Connections that have not ended :data:`FINISH_TIMEOUT`
        seconds later are cancelled: their queued output, then an
        ErrorResponse, is written as is. :meth:`cut_short` skips what is left
        of both waits.
        """
        if self._tasks is None or self._closing:
            return
        grace = self.grace if grace is None else grace
        self._closing = True
        if self._server is not None:
            self._server.close()
        self._remove_socket_file()
        if self.active and grace > 0:
            logger.info("waiting up to %g s for %d connection(s) to finish", grace, self.active)
            await self._wait_idle(grace)
        if self.active and not self._cut_short.is_set():
            logger.info("ending %d open connection(s): %s", self.active, SHUTDOWN_REASON)
            async with anyio.create_task_group() as tg:
                for agent, _, _ in list(self._connections.values()):
                    tg.start_soon(agent.finish, SHUTDOWN_REASON)
            await self._wait_idle(FINISH_TIMEOUT)
        if self.active:
            logger.warning("cancelling %d connection(s) still open", self.active)
        await self._close_supervisor()
        if self._watchdog is not None:
            self._watchdog.stop()
        self._control.close()
        if self._spare is not None:
            for spare in self._spare[:2]:
                if spare is not None:
                    spare.close()
        if self.metrics_endpoint is not None:
            await self.metrics_endpoint.close()
        if self.handed_over.is_set():  # not an outage: another process serves the socket now
            taker = self._control.taker_pid
            successor = self.successor or (f"pid {taker}" if taker else "another process")
            logger.info("handed over to %s; exiting", successor)
        else:
            logger.info("stopped serving on %s", self.path)

    async def wait_idle(self) -> None:
        """Wait until no connection is open."""
        await self._idle.wait()

    async def _wait_idle(self, seconds: float) -> None:
        """Wait up to ``seconds`` until no connection is open, or until cut_short()."""
        with anyio.move_on_after(seconds):
            await first(self._idle.wait(), self._cut_short.wait())

    def cut_short(self) -> None:
        """End a running :meth:`shutdown`'s grace period now."""
        self._cut_short.set()

    def _remove_socket_file(self) -> None:
        """Remove the socket file, but only if it is still the one we created."""
        remove_if_same(self.path, self._inode)


def _read_ahead(reader: asyncio.StreamReader) -> bytes:
    """What the stream has read from the socket but the agent has not taken yet.

    asyncio's StreamReader offers no public way to see its buffer; the
    transport's reading is paused first, so it no longer changes.
    """
    return bytes(reader._buffer)  # type: ignore[attr-defined]


def _factory_name(factory: Callable[..., Any]) -> str:
    return getattr(factory, "__qualname__", repr(factory))


#: Set to 1 in a process started to take over (a reload): serve() then does.
TAKEOVER_ENV = "AIOUDF_TAKEOVER"


def share_metrics(path: str, *, worker: bool, takeover: bool) -> None:
    """Record metrics in the directory every process serving the socket ``path`` shares.

    So that one endpoint covers a supervisor's workers, and counters carry
    on in the process that takes over (a SIGHUP reload, ``--takeover``).
    Its files are kept when this process continues another's counts: as a
    ``worker``, a reload's new process, or a ``takeover`` of a live server.
    Call it before the metrics are created.
    """
    continuing = (
        worker
        or os.environ.get(TAKEOVER_ENV) == "1"
        or (takeover and os.path.exists(control_path(path)))
    )
    use_multiprocess_dir(shared_dir(path), fresh=not continuing)


async def serve(
    handler_factory: Callable[[], BaseHandler],
    path: str | os.PathLike[str],
    *,
    config: Config | None = None,
    handle_signals: bool = True,
    ready: asyncio.Event | None = None,
    sock: socket.socket | None = None,
    takeover: bool = False,
    reload_command: Sequence[str] | None = None,
    observer: Observer | None = None,
    metrics: str | Metrics | None = None,
    stop: asyncio.Event | None = None,
    **settings: Unpack[ServerSettings],
) -> None:
    """Serve a socket UDF until SIGINT or SIGTERM; for ``asyncio.run``.

    ``config``, ``settings``, ``sock`` and ``metrics`` are :class:`UnixServer`'s;
    an unset ``warn_blocked`` is :data:`~aioudf.config.DEFAULT_WARN_BLOCKED`
    here, since serve() owns the loop. ``ready`` is set once the socket
    accepts connections; ``stop``, once set, stops the server as the first
    signal does. The first signal stops accepting and gives open connections
    ``grace`` seconds; a second cancels them. Signal handlers are put back on
    return (none are installed with ``handle_signals=False``); systemd's
    ``Type=notify`` is told of readiness and stopping. ``takeover`` (or
    ``AIOUDF_TAKEOVER=1``) takes everything over from the server on ``path``;
    SIGHUP starts ``reload_command`` (default :data:`sys.orig_argv`) to do so
    with the code anew from disk (docs/operations.md).
    """
    config = Config.of(config, **settings)
    config = config.with_settings(warn_blocked=config.blocked_threshold(owns_loop=True))
    server = UnixServer(
        handler_factory, path, config=config, sock=sock, observer=observer, metrics=metrics
    )
    takeover = takeover or os.environ.pop(TAKEOVER_ENV, "") == "1"
    command = list(reload_command or sys.orig_argv)
    serving = _Serving(server, takeover=takeover, ready=ready, reload_command=command)
    await Lifecycle(serving, stop=stop, handle_signals=handle_signals).run()


class _Serving:
    """serve()'s part in the :class:`~aioudf.serving.Lifecycle`: one server, reloaded on SIGHUP.

    It serves until stopped, or until another process took everything over
    and the connections it refused have ended here.
    """

    def __init__(
        self,
        server: UnixServer,
        *,
        takeover: bool,
        ready: asyncio.Event | None,
        reload_command: list[str],
    ) -> None:
        self.server = server
        self.takeover = takeover
        self.ready_event = ready
        self.reload_command = reload_command
        self.reloading = False  # while a SIGHUP's new process starts

    async def startup(self, tasks: anyio.abc.TaskGroup) -> bool:
        await self.server.start(takeover=self.takeover)
        return True

    async def ready(self) -> None:
        notify("READY=1", f"MAINPID={os.getpid()}")
        if self.ready_event is not None:
            self.ready_event.set()

    async def main_loop(self) -> None:
        await self.server.handed_over.wait()
        # What the new process refused is served here until it ends.
        await self.server.wait_idle()

    def stopping(self, signum: signal.Signals, again: bool) -> None:
        if again:
            logger.warning("received %s again: closing all connections now", signum.name)
            self.server.cut_short()
        else:
            logger.info("received %s: shutting down (again to force)", signum.name)

    def hangup(self, tasks: anyio.abc.TaskGroup) -> None:
        if self.reloading:
            logger.warning("received SIGHUP: a reload is already under way")
        elif not self.server.handed_over.is_set():
            self.reloading = True
            tasks.start_soon(self._reload, name="aioudf reload")

    async def _reload(self) -> None:
        try:
            await _reload(self.server, self.reload_command)
        finally:
            self.reloading = False

    async def shutdown(self, started: bool) -> None:
        if not started:
            return
        if not self.server.handed_over.is_set():
            notify("STOPPING=1")
        await self.server.shutdown()
        if self.server.metrics is not None:
            self.server.metrics.process_exited(os.getpid())  # our gauges leave the shared sums

    async def cleanup(self) -> None:
        # Cancelled from outside (or failed): no grace, but still close and
        # clean up. (After shutdown() this finds nothing left to do.)
        await self.server.shutdown(grace=0)


async def _reload(server: UnixServer, command: list[str]) -> None:
    """SIGHUP: start ``command`` to take everything over; report if it fails to."""
    # Not asyncio's subprocess API: its transport kills the child when it is
    # closed, and this child must outlive us. Popen() only forks and execs.
    process = subprocess.Popen(  # noqa: ASYNC220
        command, env=dict(os.environ, **{TAKEOVER_ENV: "1"}), stdin=subprocess.DEVNULL
    )
    logger.info("received SIGHUP: process %d loads the code anew and takes over", process.pid)
    await first(process_exit(process.pid), server.handed_over.wait())
    if server.handed_over.is_set():
        notify(f"MAINPID={process.pid}")
        return
    status = process.wait()
    logger.error(
        "reload failed: process %d exited (%s) before taking over; still serving with the "
        "code loaded before",
        process.pid,
        describe_exit(status),
    )
