"""``aioudf serve --workers N``: one socket, N worker processes, replaced when they die.

The :class:`Supervisor` owns the listening socket and the control socket and
never imports the handler's code: a fault in that code (an exception outside
a handler, a segfault in a C extension, an OOM kill) can only end a worker.
Each worker is this program started again (:data:`sys.orig_argv`) with the
listening socket inherited and ``AIOUDF_WORKER`` describing its descriptors;
it loads the handler, serves the socket like a single-process server
(:func:`run_worker`) and accepts connections from it in turn with the other
workers, so tasks spread over the cores.

A worker that dies is logged with its cause (exit status or signal) and
replaced at once; only its connections end, and the socket keeps answering
meanwhile, since it belongs to the supervisor. A worker that dies before it
is ready (its code does not import, say) is replaced after a pause, so a
broken install does not spin.

Hand-over with workers (see :mod:`aioudf.handover`):

* SIGHUP: each worker in turn is replaced by a new worker, started from
  the code on disk, that takes its connections over through a socket pair;
  the supervisor itself stays (its pid is the service's).
* ``--takeover`` to or from a supervisor: the listening and control sockets
  move between the supervisors, and each old worker gives its connections to
  one of the new workers.

The supervisor talks to each worker over a socket pair of its own::

    supervisor -> worker:  give (fd: a channel to give the connections over)
                           take (fd: a channel to take connections from)
    worker -> supervisor:  ready        (serving)
                           given {kept} (every connection offered)

Why so thin: gunicorn's arbiter was weighed (it is WSGI-bound, forks after
importing the app, which is what a reload must avoid, and would be a
dependency for ~200 lines); ``multiprocessing`` with the spawn context too
(its children are not started from the command line, so they could not be
the same program as ``aioudf serve`` and ``aioudf.main()`` scripts alike,
and it pickles arguments but does not pass sockets to running processes).
A plain ``subprocess`` with inherited descriptors, a pidfd per worker to
learn of its end, and the hand-over channel for everything else is all this
needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from .activation import notify
from .errors import AioudfError, HandoverError
from .handler import BaseHandler
from .handover import (
    Channel,
    NothingToTakeOver,
    Observer,
    describe_exit,
    give_connections,
    process_exit,
    socket_pair,
    take_over,
)
from .metrics import (
    REFRESH_INTERVAL,
    Metrics,
    MetricsEndpoint,
    parse_address,
    socket_of,
    start_handed_over,
)
from .server import (
    DEFAULT_GRACE,
    DEFAULT_SOCKET_MODE,
    ControlSocket,
    UnixServer,
    _first,
    _inode_of,
    _remove_if_same,
    prepare_socket_path,
)

__all__ = ["WORKER_ENV", "Supervisor", "run_worker", "worker_count"]

logger = logging.getLogger("aioudf")

#: Set in a worker's environment: its descriptors, as JSON.
WORKER_ENV = "AIOUDF_WORKER"
#: Seconds before replacing a worker that died before it was ready.
RESTART_PAUSE = 1.0
#: Seconds a new worker may take to load its code and start serving.
START_TIMEOUT = 60.0


def worker_count(text: str) -> int:
    """``--workers``: a positive number, or ``auto`` for the cores this process may use."""
    if text == "auto":
        return len(os.sched_getaffinity(0))
    try:
        count = int(text)
    except ValueError:
        raise AioudfError(f"--workers must be a number or 'auto', got {text!r}") from None
    if count < 1:
        raise AioudfError(f"--workers must be at least 1, got {count}")
    return count


@dataclass(eq=False)
class _Worker:
    process: subprocess.Popen[bytes]
    channel: Channel
    started: float
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    given: asyncio.Future[int] | None = None
    retiring: bool = False  # handing over: its end is not a death

    @property
    def pid(self) -> int:
        return self.process.pid


class Supervisor:
    """Own the socket, keep ``workers`` worker processes serving it.

    ``command`` starts a worker (default: :data:`sys.orig_argv`).
    """

    def __init__(
        self,
        path: str,
        workers: int,
        *,
        command: Sequence[str] | None = None,
        mode: int = DEFAULT_SOCKET_MODE,
        grace: float = DEFAULT_GRACE,
        sock: socket.socket | None = None,
        takeover: bool = False,
        observer: Observer | None = None,
        metrics: str | None = None,
    ) -> None:
        self.path = path
        self.count = workers
        self.command = list(command or sys.orig_argv)
        self.mode = mode
        self.grace = grace
        self.takeover = takeover
        self.observer: Observer = observer or Observer()
        #: The metrics endpoint covering every worker (``metrics``: ``"HOST:PORT"``).
        self.metrics_endpoint: MetricsEndpoint | None = None
        if metrics is not None:
            host, port = parse_address(metrics)
            self.metrics_endpoint = MetricsEndpoint(Metrics(), host, port)
            self.observer = self.metrics_endpoint.metrics.observer(self.observer)
        self.workers: list[_Worker] = []
        self._listener = sock
        self._owns_path = False  # whether the socket file is ours to remove
        self._inode: tuple[int, int] | None = None
        self._stop = asyncio.Event()
        self._handed_over = asyncio.Event()
        self._control = ControlSocket(path, self, self._handed_over)
        self._tasks: anyio.abc.TaskGroup | None = None
        self._next_taker = 0
        self._reloading = False

    # ---- life -------------------------------------------------------------

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT (or until everything was handed over); exit status."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_stop, signum)
        loop.add_signal_handler(signal.SIGHUP, self._on_hangup)
        failure: AioudfError | None = None
        try:
            async with anyio.create_task_group() as tg:
                self._tasks = tg
                try:
                    started = await self._start()
                except AioudfError as exc:  # raised below, outside the task group's wrapping
                    failure, started = exc, False
                if started:
                    notify("READY=1", f"MAINPID={os.getpid()}")
                    await _first(self._stop.wait(), self._handed_over.wait())
                    if not self._handed_over.is_set():
                        notify("STOPPING=1")
                        self._remove_files()
                    await self._stop_workers()
                tg.cancel_scope.cancel()
            if failure is not None:
                raise failure
            if not started:
                return 1
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(signum)
            self._remove_files()
            if self.metrics_endpoint is not None:
                await self.metrics_endpoint.close()
                self.metrics_endpoint.metrics.process_exited(os.getpid())
        logger.info("supervisor stopped")
        return 0

    async def _start(self) -> bool:
        if self.takeover:
            try:
                await take_over(self.path, self)
                return True
            except NothingToTakeOver:
                logger.info("no server to take over from on %s: starting afresh", self.path)
        if self.metrics_endpoint is not None:
            await self.metrics_endpoint.start()
        if self._listener is None:
            await prepare_socket_path(self.path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(self.path)
            os.chmod(self.path, self.mode)
            sock.listen(1024)
            self._listener = sock
            self._owns_path = True
            self._inode = _inode_of(self.path)
        if not await self._start_workers([]):
            return False
        await self._control.open()
        return True

    def _on_stop(self, signum: signal.Signals) -> None:
        if self._stop.is_set():
            logger.warning("received %s again: workers close their connections now", signum.name)
            self._signal_workers(signal.SIGINT)
        else:
            logger.info("received %s: stopping %d worker(s)", signum.name, len(self.workers))
            self._stop.set()

    def _signal_workers(self, signum: signal.Signals) -> None:
        for worker in self.workers:
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(signum)

    async def _stop_workers(self) -> None:
        """Stop the workers; after a hand-over, let them end once their connections did."""
        if not self._handed_over.is_set():
            self._signal_workers(signal.SIGTERM)
        for worker in list(self.workers):
            worker.retiring = True
        while self.workers:
            worker = self.workers[0]
            await process_exit(worker.pid)
            with contextlib.suppress(ValueError):  # (its reaper may have removed it)
                self.workers.remove(worker)

    def _remove_files(self) -> None:
        if self._owns_path:
            _remove_if_same(self.path, self._inode)
            self._owns_path = False
        self._control.close()

    # ---- workers ------------------------------------------------------------

    async def _start_workers(self, channels: list[socket.socket]) -> bool:
        """Start the workers; False if the first one cannot even start."""
        for index in range(self.count):
            take = channels[index :: self.count]
            worker = self._spawn(take)
            if not await self._until_ready(worker):
                status = worker.process.wait()
                logger.error(
                    "worker %d could not start (%s): see its log above",
                    worker.pid,
                    describe_exit(status),
                )
                return False
            self._watch(worker)
        return True

    def _spawn(self, take: Sequence[socket.socket] = ()) -> _Worker:
        assert self._listener is not None
        mine, theirs = socket_pair()
        fds = {"listen": self._listener.fileno(), "channel": theirs.fileno()}
        env = dict(
            os.environ, **{WORKER_ENV: json.dumps({**fds, "take": [s.fileno() for s in take]})}
        )
        env.pop("AIOUDF_TAKEOVER", None)
        process = subprocess.Popen(
            self.command,
            env=env,
            stdin=subprocess.DEVNULL,
            pass_fds=[*fds.values(), *(s.fileno() for s in take)],
        )
        theirs.close()
        for end in take:
            end.close()
        worker = _Worker(process, Channel(mine), time.monotonic())
        self.workers.append(worker)
        self.observer.worker_started(worker.pid)
        logger.info("worker %d started", worker.pid)
        assert self._tasks is not None
        self._tasks.start_soon(self._listen_to, worker)
        return worker

    async def _until_ready(self, worker: _Worker) -> bool:
        with anyio.move_on_after(START_TIMEOUT):
            await _first(worker.ready.wait(), process_exit(worker.pid))
        return worker.ready.is_set()

    async def _listen_to(self, worker: _Worker) -> None:
        """Read what a worker tells the supervisor until it ends."""
        with contextlib.suppress(HandoverError, OSError):
            while True:
                message = await worker.channel.receive("ready", "given")
                if message.op == "ready":
                    worker.ready.set()
                elif worker.given is not None and not worker.given.done():
                    worker.given.set_result(int(message.header.get("kept", 0)))
        if worker.given is not None and not worker.given.done():
            worker.given.set_result(0)

    def _watch(self, worker: _Worker) -> None:
        assert self._tasks is not None
        self._tasks.start_soon(self._reap, worker)

    async def _reap(self, worker: _Worker) -> None:
        """Wait for a worker's end; replace it unless it was meant to end."""
        await process_exit(worker.pid)
        status = worker.process.wait()
        worker.channel.close()
        with contextlib.suppress(ValueError):
            self.workers.remove(worker)
        cause = describe_exit(status)
        if worker.retiring or self._stop.is_set() or self._handed_over.is_set():
            logger.info("worker %d ended (%s)", worker.pid, cause)
            self.observer.worker_exited(worker.pid, cause, replaced=False)
            return
        logger.error("worker %d died (%s); starting a new one", worker.pid, cause)
        self.observer.worker_exited(worker.pid, cause, replaced=True)
        while not self._stop.is_set():
            replacement = self._spawn()
            if await self._until_ready(replacement):
                self._watch(replacement)
                return
            status = replacement.process.wait()
            with contextlib.suppress(ValueError):
                self.workers.remove(replacement)
            logger.error(
                "worker %d could not start (%s); trying again in %g s",
                replacement.pid,
                describe_exit(status),
                RESTART_PAUSE,
            )
            await anyio.sleep(RESTART_PAUSE)

    # ---- reload (SIGHUP) ------------------------------------------------------

    def _on_hangup(self) -> None:
        if self._reloading:
            logger.warning("received SIGHUP: a reload is already under way")
            return
        assert self._tasks is not None
        self._tasks.start_soon(self._reload)

    async def _reload(self) -> None:
        """Replace each worker by one of the code on disk that takes its connections."""
        self._reloading = True
        try:
            logger.info(
                "received SIGHUP: replacing %d worker(s) with the code on disk", len(self.workers)
            )
            for old in [w for w in self.workers if w.ready.is_set() and not w.retiring]:
                mine, theirs = socket_pair()
                new = self._spawn([theirs])
                if not await self._until_ready(new):
                    mine.close()
                    status = new.process.wait()
                    with contextlib.suppress(ValueError):
                        self.workers.remove(new)
                    logger.error(
                        "reload failed: the new worker exited (%s) before serving; worker %d "
                        "keeps serving with the code loaded before",
                        describe_exit(status),
                        old.pid,
                    )
                    return
                self._watch(new)
                await self._tell_give(old, mine)
        finally:
            self._reloading = False

    async def _tell_give(self, worker: _Worker, end: socket.socket) -> int:
        """Have ``worker`` give its connections over ``end`` and retire; the number it kept."""
        worker.retiring = True
        worker.given = asyncio.get_running_loop().create_future()
        await worker.channel.send("give", fds=[end.fileno()])
        end.close()
        return await worker.given

    # ---- hand-over: giving (another supervisor or server takes over) ----------

    def metrics_socket(self) -> socket.socket | None:
        return socket_of(self.metrics_endpoint)

    def handover_sockets(self) -> tuple[socket.socket, socket.socket, bool]:
        if self._listener is None or self._control.sock is None:
            raise HandoverError("this supervisor is not serving: nothing to hand over")
        return self._listener, self._control.sock, self._owns_path

    async def stop_accepting(self) -> None:
        self.observer.handover_started()
        self._owns_path = False
        self._control.release()

    async def resume_accepting(self) -> None:
        # The workers told to give have stopped accepting; the others still
        # accept on the socket, which the dead taker shared with us.
        logger.error("the other process failed part way; restart this service to recover")

    async def open_channels(self) -> list[tuple[socket.socket, Awaitable[int]]]:
        channels: list[tuple[socket.socket, Awaitable[int]]] = []
        for worker in [w for w in self.workers if not w.retiring]:
            mine, theirs = socket_pair()
            channels.append((theirs, self._tell_give(worker, mine)))
        return channels

    # ---- hand-over: taking ----------------------------------------------------

    async def listen_on(
        self, listener: socket.socket, owns_path: bool, metrics: socket.socket | None
    ) -> None:
        await start_handed_over(self.metrics_endpoint, metrics)
        self._listener = listener
        self._owns_path = owns_path
        if owns_path:
            self._inode = _inode_of(self.path)
        if not await self._start_workers([]):
            raise HandoverError("the new workers could not start")

    async def take_from(self, end: socket.socket) -> None:
        """Pass the channel on to one of the workers, in turn."""
        ready = [w for w in self.workers if w.ready.is_set() and not w.retiring]
        worker = ready[self._next_taker % len(ready)]
        self._next_taker += 1
        await worker.channel.send("take", fds=[end.fileno()])
        end.close()

    async def serve_control(self, control: socket.socket) -> None:
        self._control.serve(control)


# ---- the worker's side --------------------------------------------------------


async def run_worker(
    handler_factory: Callable[[], BaseHandler],
    path: str,
    description: str,
    *,
    grace: float = DEFAULT_GRACE,
    warn_blocked: float | None = None,
    **settings: Any,
) -> None:
    """Serve as one worker of a :class:`Supervisor` (``description``: AIOUDF_WORKER).

    ``settings`` are the server's (:class:`~aioudf.config.Config`).
    """
    fds = json.loads(description)
    listener = socket.socket(fileno=fds["listen"])
    supervisor = Channel(socket.socket(fileno=fds["channel"]))
    server = UnixServer(
        handler_factory,
        path,
        grace=grace,
        warn_blocked=warn_blocked,
        sock=listener,
        handover=False,
        **settings,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: signal.Signals) -> None:
        if stop.is_set():
            server.cut_short()
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, lambda: None)  # the supervisor reloads, not us
    await server.start()
    try:
        # Ready once serving: the worker this one replaces gives its
        # connections only then (over the "take" channels).
        await supervisor.send("ready")
        async with anyio.create_task_group() as tg:
            if server.metrics is not None:
                tg.start_soon(_publish_metrics, server.metrics)
            for fd in fds.get("take", []):
                tg.start_soon(server.take_from, socket.socket(fileno=fd))

            async def orders() -> None:
                with contextlib.suppress(HandoverError, OSError):
                    while True:
                        message = await supervisor.receive("give", "take")
                        end = socket.socket(fileno=message.fds[0])
                        if message.op == "take":
                            tg.start_soon(server.take_from, end)
                            continue
                        await server.stop_accepting()
                        kept = await give_connections(Channel(end), server.offer_all)
                        end.close()
                        await supervisor.send("given", kept=kept)
                        await server.wait_idle()  # what was refused ends here
                        break
                stop.set()  # given everything, or the supervisor is gone

            tg.start_soon(orders)
            await stop.wait()
            tg.cancel_scope.cancel()
    finally:
        await server.shutdown()
        supervisor.close()


async def _publish_metrics(metrics: Metrics) -> None:
    """Publish this worker's queue depths and pending counts for the supervisor's endpoint."""
    while True:
        metrics.refresh()
        await anyio.sleep(REFRESH_INTERVAL)
