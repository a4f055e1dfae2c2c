"""``aioudf serve --workers N``: one socket, N worker processes, replaced when they die.

The :class:`Supervisor` owns the listening socket and the control socket and
never imports the handler's code: a fault in that code (an exception outside
a handler, a segfault in a C extension, an OOM kill) can only end a worker.
Each worker is this program started again (:data:`sys.orig_argv`) with the
listening socket inherited and ``AIOUDF_WORKER`` describing its descriptors
and carrying the supervisor's :class:`~aioudf.config.Config` as JSON (the
worker does not parse its settings from the command line again); it loads
the handler, serves the socket like a single-process server
(``_worker.run_worker``) and accepts connections from it in turn with the other
workers, so tasks spread over the cores.

Kapacitor never dials a task's UDF again, so nothing one process does wrong
may end a connection another process serves:

* The socket answers once the first worker serves; the others start beside
  it. Only if that first worker cannot start (its code does not import, say)
  does the supervisor give up, with exit status 1: nothing is served yet,
  and broken code must not loop.
* From then on a worker that dies, or ends before it serves (killed while
  it imports, a crash in its start-up), is logged, counted and started again;
  its pauses (:class:`Backoff`) double while the new workers keep failing, so
  a crash loop cannot become a busy loop. The other workers' connections are
  never touched.
* A worker that comes up late or in place of one that died takes its share
  of the live connections (:func:`share_plan`): the busiest workers hand
  connections to it at a safe point, with their handler's state, as in a
  reload; those whose new handler refuses them stay where they are.

Hand-over with workers (see :mod:`aioudf.serving`):

* SIGHUP: each worker in turn is replaced by a new worker, started from
  the code on disk, that takes its connections over through a socket pair;
  the supervisor itself stays (its pid is the service's).
* ``--takeover`` to or from a supervisor: the listening and control sockets
  move between the supervisors, and each old worker gives its connections to
  one of the new workers.

If the taking side fails part way, the giving worker keeps what it still
has and serves it (docs/operations.md lists every such event).

The supervisor talks to each worker over a socket pair of its own::

    supervisor -> worker:  give (fd: a channel)   give every connection, then retire
                           share {count} (fd)     give up to count, keep serving
                           take (fd)              take connections from a channel
                           count                  how many connections it serves
                           resume                 (after give) accept and serve again
    worker -> supervisor:  ready                  serving
                           given {kept, failed}   every connection offered
                           shared {moved, refused}
                           count {connections}

Why so thin: gunicorn's arbiter was weighed (it is WSGI-bound, forks after
importing the app, which is what a reload must avoid, and would be a
dependency for ~200 lines); ``multiprocessing`` with the spawn context too
(its children are not started from the command line, so they could not be
the same program as ``aioudf serve`` and ``aioudf.main()`` scripts alike,
and it pickles arguments but does not pass sockets to running processes).
A plain ``subprocess`` with inherited descriptors, a pidfd per worker to
learn of its end, and the hand-over channel for everything else is all this
needs.

Why this module is long: the :class:`Supervisor` is one state machine over
its workers (start, replace with backoff, share connections, hand
everything over, stop), and its parts read the same table of workers; a
worker's side is ``_worker``.
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
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio

from ..config import Config
from ..errors import AioudfError, HandoverError
from ._activation import notify
from ._control import ControlSocket, bind_socket, inode_of, remove_if_same
from ._handover import (
    HANDOVER_TIMEOUT,
    Channel,
    NothingToTakeOver,
    Observer,
    describe_exit,
    process_exit,
    socket_pair,
    take_over,
)
from ._lifecycle import Lifecycle, first
from ._metrics import Metrics, parse_address
from ._metrics_http import MetricsEndpoint, socket_of, start_handed_over
from ._worker import WORKER_ENV

__all__ = [
    "Backoff",
    "Supervisor",
    "share_plan",
    "worker_count",
]

logger = logging.getLogger("aioudf")

#: Seconds before starting again a worker that ended before it served;
#: doubled for each such end in a row, up to :data:`MAX_RESTART_PAUSE`.
RESTART_PAUSE = 1.0
#: The longest pause between two starts of a worker that keeps failing.
MAX_RESTART_PAUSE = 30.0
#: A worker that served this many seconds before it died was healthy: its
#: replacement starts at once, and the pauses start over from the first.
HEALTHY_AFTER = 30.0
#: Seconds a new worker may take to load its code and start serving.
START_TIMEOUT = 60.0
#: Seconds a worker may take to answer how many connections it serves.
ASK_TIMEOUT = 5.0

K = TypeVar("K")


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


@dataclass
class Backoff:
    """The pauses between the starts of one worker after another, should they keep failing.

    A worker that served and then died is replaced at once the first time;
    each further end in a row of a worker that served less than ``healthy``
    seconds, or did not serve at all, waits twice as long as the one before,
    from ``first`` to at most ``longest`` seconds. A worker that served
    ``healthy`` seconds starts the count over.
    """

    first: float = RESTART_PAUSE
    longest: float = MAX_RESTART_PAUSE
    healthy: float = HEALTHY_AFTER
    #: Quick ends in a row, this one included.
    failures: int = 0

    def pause(self, served: float | None) -> float:
        """Seconds to wait before the next start, after a worker that served ``served`` s.

        ``served`` is None for a worker that ended before it served.
        """
        if served is not None and served >= self.healthy:
            self.failures = 0
        self.failures += 1
        if served is not None and self.failures == 1:
            return 0.0
        return min(self.first * 2.0 ** (self.failures - 1), self.longest)


def share_plan(newcomer: int, others: Mapping[K, int]) -> dict[K, int]:
    """How many connections each of ``others`` gives a worker that has ``newcomer``.

    The newcomer gets its even share (the total divided by the workers,
    rounded down), each connection from the busiest worker at that moment,
    and none from a worker that would then hold fewer than it.
    """
    counts = dict(others)
    total = newcomer + sum(counts.values())
    need = total // (len(counts) + 1) - newcomer
    plan: dict[K, int] = {}
    while need > 0 and counts:
        busiest = max(counts, key=lambda k: counts[k])
        if counts[busiest] <= newcomer + 1:
            break
        counts[busiest] -= 1
        plan[busiest] = plan.get(busiest, 0) + 1
        newcomer += 1
        need -= 1
    return plan


@dataclass(eq=False)
class _Worker:
    process: subprocess.Popen[bytes]
    channel: Channel
    started: float
    backoff: Backoff
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    ready_at: float | None = None
    retiring: bool = False  # handing over: its end is not a death
    gone: bool = False  # its channel closed: it ended, or is ending
    # Replies awaited from it, by the name of the reply.
    replies: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def serving(self) -> bool:
        """Ready, not handing over, not ended."""
        return self.ready.is_set() and not self.retiring and not self.gone


class Supervisor:
    """Own the socket, keep ``workers`` worker processes serving it.

    ``config``: the settings (:class:`~aioudf.config.Config`): the
    supervisor binds the socket with its ``mode`` and ``backlog``, and each
    worker serves with all of it (``grace`` at shutdown, the connection
    limits...), received as JSON. ``command`` starts a worker (default:
    :data:`sys.orig_argv`).
    """

    def __init__(
        self,
        path: str,
        workers: int,
        *,
        config: Config | None = None,
        command: Sequence[str] | None = None,
        sock: socket.socket | None = None,
        takeover: bool = False,
        observer: Observer | None = None,
        metrics: str | None = None,
    ) -> None:
        self.path = path
        self.count = workers
        self.command = list(command or sys.orig_argv)
        self.config = config if config is not None else Config()
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
        # Set while no worker is to be started: stopping, or handing over.
        self._ending = asyncio.Event()
        self._control = ControlSocket(path, self, self._handed_over)
        self._spare_control: socket.socket | None = None  # to answer again if a taker fails
        self._tasks: anyio.abc.TaskGroup | None = None
        self._next_taker = 0
        self._reloading = False
        # Connections move between workers one conversation at a time
        # (a reload, or a late worker taking its share).
        self._moving = asyncio.Lock()
        self._worker_ended = asyncio.Event()  # set each time a worker is forgotten

    # ---- life (a Service of lifecycle.Lifecycle) ----------------------------

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT (or until everything was handed over); exit status."""
        if not await Lifecycle(self, stop=self._stop).run():
            return 1
        logger.info("supervisor stopped")
        return 0

    async def startup(self, tasks: anyio.abc.TaskGroup) -> bool:
        """Bind (or take over) the socket and start the workers; False if the first cannot."""
        self._tasks = tasks
        return await self._start()

    async def ready(self) -> None:
        notify("READY=1", f"MAINPID={os.getpid()}")

    async def main_loop(self) -> None:
        await self._handed_over.wait()

    def stopping(self, signum: signal.Signals, again: bool) -> None:
        if again:
            logger.warning("received %s again: workers close their connections now", signum.name)
            self._signal_workers(signal.SIGINT)
        else:
            logger.info("received %s: stopping %d worker(s)", signum.name, len(self.workers))
            self._ending.set()

    async def shutdown(self, started: bool) -> None:
        """Stop the workers (those still serving after a hand-over end with their connections)."""
        if started and not self._handed_over.is_set():
            notify("STOPPING=1")
            self._remove_files()
        self._ending.set()
        await self._stop_workers()

    async def cleanup(self) -> None:
        self._remove_files()
        if self.metrics_endpoint is not None:
            await self.metrics_endpoint.close()
            self.metrics_endpoint.metrics.process_exited(os.getpid())

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
            sock, self._inode = await bind_socket(self.path, self.config.mode)
            sock.listen(self.config.backlog)
            self._listener = sock
            self._owns_path = True
        if not await self._start_workers():
            return False
        assert self._tasks is not None
        await self._control.open(self._tasks)
        return True

    def _signal_workers(self, signum: signal.Signals) -> None:
        for worker in self.workers:
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(signum)

    async def _stop_workers(self) -> None:
        """Stop the workers; after a hand-over, let them end once their connections did."""
        if self._handed_over.is_set():
            # Workers still starting serve nothing: they need not finish.
            for worker in self.workers:
                if not worker.ready.is_set():
                    with contextlib.suppress(ProcessLookupError):
                        worker.process.send_signal(signal.SIGTERM)
        else:
            self._signal_workers(signal.SIGTERM)
        for worker in list(self.workers):
            worker.retiring = True
        # Each worker has a task waiting for its end (its reaper, or the one
        # starting it), which forgets it: wait for those rather than watch
        # the same process twice. (A second pidfd on one process, added to
        # asyncio's own event loop while the first waits, was seen never to
        # wake: `--workers 2 --loop asyncio` then hung at SIGTERM.)
        while self.workers:
            self._worker_ended.clear()
            await self._worker_ended.wait()

    def _remove_files(self) -> None:
        if self._owns_path:
            remove_if_same(self.path, self._inode)
            self._owns_path = False
        self._control.close()
        if self._spare_control is not None:
            self._spare_control.close()
            self._spare_control = None

    # ---- workers ------------------------------------------------------------

    async def _start_workers(self) -> bool:
        """Start the first worker, then the others beside it; False if the first cannot start.

        Nothing is served before the first worker is ready, so a failure then
        is the code's (it does not import...): give up rather than loop.
        From then on, workers that cannot start are tried again (:meth:`_fill`).
        """
        opener = self._spawn(Backoff())
        if not await self._until_ready(opener):
            cause = await self._abandon(opener)
            logger.error("worker %d could not start (%s): see its log above", opener.pid, cause)
            self.observer.worker_failed_to_start(opener.pid, cause, None)
            return False
        self._watch(opener)
        assert self._tasks is not None
        for _ in range(self.count - 1):
            self._tasks.start_soon(self._fill, Backoff(), 0.0)
        return True

    def _spawn(self, backoff: Backoff, take: Sequence[socket.socket] = ()) -> _Worker:
        assert self._listener is not None
        mine, theirs = socket_pair()
        fds = {"listen": self._listener.fileno(), "channel": theirs.fileno()}
        description = {**fds, "take": [s.fileno() for s in take], "config": self.config.to_dict()}
        env = dict(os.environ, **{WORKER_ENV: json.dumps(description)})
        env.pop("AIOUDF_TAKEOVER", None)
        try:
            process = subprocess.Popen(
                self.command,
                env=env,
                stdin=subprocess.DEVNULL,
                pass_fds=[*fds.values(), *(s.fileno() for s in take)],
            )
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
            for end in take:
                end.close()
        worker = _Worker(process, Channel(mine), time.monotonic(), backoff)
        self.workers.append(worker)
        self.observer.worker_started(worker.pid)
        logger.info("worker %d started", worker.pid)
        assert self._tasks is not None
        self._tasks.start_soon(self._listen_to, worker)
        return worker

    async def _until_ready(self, worker: _Worker) -> bool:
        with anyio.move_on_after(START_TIMEOUT):
            await first(worker.ready.wait(), process_exit(worker.pid))
        return worker.ready.is_set()

    async def _abandon(self, worker: _Worker) -> str:
        """A worker that did not become ready: make sure it ended, forget it; why it ended."""
        running = worker.process.poll() is None
        if running:  # alive but not serving after START_TIMEOUT: stuck
            worker.process.kill()
        cause = await self._ended(worker)
        if running:
            cause = f"not serving after {START_TIMEOUT:g} s: {cause}"
        if self._ending.is_set():
            logger.info("worker %d ended (%s) before it served", worker.pid, cause)
        self.observer.worker_exited(worker.pid, cause, replaced=False)
        return cause

    async def _fill(self, backoff: Backoff, pause: float) -> None:
        """Start a worker after ``pause`` s, and again until one serves; then give it its share.

        The pauses grow (``backoff``) while new workers end before serving.
        """
        while True:
            if pause > 0:
                with anyio.move_on_after(pause):
                    await self._ending.wait()
            if self._ending.is_set():
                return
            try:
                worker = self._spawn(backoff)
            except OSError as exc:  # fork() or exec() failed: out of memory, say
                pause = backoff.pause(None)
                logger.error("cannot start a worker (%s); trying again in %g s", exc, pause)
                self.observer.worker_failed_to_start(0, str(exc), pause)
                continue
            if await self._until_ready(worker):
                break
            ending = self._ending.is_set()
            pause = backoff.pause(None)
            cause = await self._abandon(worker)
            if ending:
                return
            logger.error(
                "worker %d could not start (%s); trying again in %g s", worker.pid, cause, pause
            )
            self.observer.worker_failed_to_start(worker.pid, cause, pause)
        self._watch(worker)
        await self._balance(worker)

    async def _listen_to(self, worker: _Worker) -> None:
        """Read what a worker tells the supervisor until it ends."""
        with contextlib.suppress(HandoverError, OSError):
            while True:
                message = await worker.channel.receive("ready", "given", "shared", "count")
                if message.op == "ready":
                    worker.ready_at = time.monotonic()
                    worker.ready.set()
                    continue
                reply = worker.replies.pop(message.op, None)
                if reply is not None and not reply.done():
                    reply.set_result(message.header)
        worker.gone = True
        for reply in worker.replies.values():
            if not reply.done():
                reply.set_exception(HandoverError(f"worker {worker.pid} ended"))
        worker.replies.clear()

    async def _ask(
        self,
        worker: _Worker,
        op: str,
        reply: str,
        *,
        fds: Sequence[int] = (),
        within: float | None = None,
        **fields: object,
    ) -> dict[str, Any]:
        """Tell ``worker`` ``op`` and wait for its ``reply`` (HandoverError if it ends first)."""
        if worker.gone:
            raise HandoverError(f"worker {worker.pid} ended")
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        worker.replies[reply] = answer
        try:
            await worker.channel.send(op, blobs=(), fds=fds, **fields)
            with anyio.fail_after(within):
                return await answer
        except TimeoutError:
            raise HandoverError(f"worker {worker.pid} did not answer {op!r} in time") from None
        finally:
            if worker.replies.get(reply) is answer:
                del worker.replies[reply]

    def _watch(self, worker: _Worker) -> None:
        assert self._tasks is not None
        self._tasks.start_soon(self._reap, worker)

    async def _ended(self, worker: _Worker) -> str:
        """Wait for a worker's end and forget it; how it ended."""
        await process_exit(worker.pid)
        status = worker.process.wait()
        worker.channel.close()
        with contextlib.suppress(ValueError):
            self.workers.remove(worker)
        self._worker_ended.set()
        return describe_exit(status)

    async def _reap(self, worker: _Worker) -> None:
        """Wait for a worker's end; replace it unless it was meant to end."""
        cause = await self._ended(worker)
        if worker.retiring or self._ending.is_set():
            logger.info("worker %d ended (%s)", worker.pid, cause)
            self.observer.worker_exited(worker.pid, cause, replaced=False)
            return
        served = time.monotonic() - (worker.ready_at or worker.started)
        pause = worker.backoff.pause(served)
        logger.error(
            "worker %d died (%s); starting a new one%s",
            worker.pid,
            cause,
            f" in {pause:g} s" if pause else "",
        )
        self.observer.worker_exited(worker.pid, cause, replaced=True)
        await self._fill(worker.backoff, pause)

    # ---- sharing the load ---------------------------------------------------

    async def _balance(self, newcomer: _Worker) -> None:
        """A worker came up late, or in place of one that died: move its share to it.

        Each busier worker gives it connections at a safe point, with their
        handler's state (``share``); those the newcomer's handler refuses
        stay where they are. Nothing is moved while a reload or a hand-over
        moves connections.
        """
        async with self._moving:
            if self._ending.is_set() or not newcomer.serving:
                return
            counts: dict[_Worker, int] = {}
            for worker in [newcomer, *(w for w in self.workers if w is not newcomer)]:
                if not worker.serving:
                    continue
                try:
                    answer = await self._ask(worker, "count", "count", within=ASK_TIMEOUT)
                except HandoverError as exc:
                    logger.warning("not sharing connections with worker %d: %s", worker.pid, exc)
                    continue
                counts[worker] = int(answer.get("connections", 0))
            if newcomer not in counts:
                return
            mine = counts.pop(newcomer)
            for donor, count in share_plan(mine, counts).items():
                moved = await self._move(donor, newcomer, count)
                counts[donor] -= moved
                mine += moved
            logger.info(
                "worker %d serves its share: %d connection(s); the other workers: %s",
                newcomer.pid,
                mine,
                ", ".join(str(n) for n in counts.values()) or "none",
            )

    async def _move(self, donor: _Worker, newcomer: _Worker, count: int) -> int:
        """Have ``donor`` give ``newcomer`` up to ``count`` of its connections; how many moved."""
        if not (donor.serving and newcomer.serving):
            return 0
        giving, taking = socket_pair()
        try:
            try:
                await newcomer.channel.send("take", fds=[taking.fileno()])
            finally:
                taking.close()
            answer = await self._ask(
                donor,
                "share",
                "shared",
                fds=[giving.fileno()],
                count=count,
                within=HANDOVER_TIMEOUT * (count + 1),
            )
        except (HandoverError, OSError) as exc:
            # Whatever did not move is still served by the donor.
            logger.warning(
                "worker %d could not give connections to worker %d: %s",
                donor.pid,
                newcomer.pid,
                exc,
            )
            return 0
        finally:
            giving.close()
        moved, refused = int(answer.get("moved", 0)), int(answer.get("refused", 0))
        logger.info(
            "worker %d gave %d connection(s) to worker %d to share the load%s",
            donor.pid,
            moved,
            newcomer.pid,
            f" ({refused} refused by its handler stay)" if refused else "",
        )
        self.observer.connections_balanced(donor.pid, newcomer.pid, moved, refused)
        return moved

    # ---- reload (SIGHUP) ------------------------------------------------------

    def hangup(self, tasks: anyio.abc.TaskGroup) -> None:
        """SIGHUP: replace the workers, one by one, by workers of the code on disk."""
        if self._reloading:
            logger.warning("received SIGHUP: a reload is already under way")
            return
        self._reloading = True
        tasks.start_soon(self._reload, name="aioudf reload")

    async def _reload(self) -> None:
        """Replace each worker by one of the code on disk that takes its connections."""
        try:
            async with self._moving:
                await self._replace_workers()
        finally:
            self._reloading = False

    async def _replace_workers(self) -> None:
        logger.info(
            "received SIGHUP: replacing %d worker(s) with the code on disk", len(self.workers)
        )
        for old in [w for w in self.workers if w.serving]:
            if self._ending.is_set():
                return
            mine, theirs = socket_pair()
            new = self._spawn(Backoff(), [theirs])
            if not await self._until_ready(new):
                mine.close()
                cause = await self._abandon(new)
                logger.error(
                    "reload failed: the new worker exited (%s) before serving; worker %d "
                    "keeps serving with the code loaded before",
                    cause,
                    old.pid,
                )
                self.observer.worker_failed_to_start(new.pid, cause, None)
                return
            self._watch(new)
            answer = await self._tell_give(old, mine)
            if answer.get("failed") and not old.gone:
                # The new worker failed part way (it died, say): the old one
                # serves what it still has, and accepts again.
                old.retiring = False
                with contextlib.suppress(OSError):
                    await old.channel.send("resume")
                logger.error(
                    "reload failed part way: worker %d keeps serving %s connection(s) with "
                    "the code loaded before (%s)",
                    old.pid,
                    answer.get("kept", 0),
                    answer["failed"],
                )
                return

    async def _tell_give(self, worker: _Worker, end: socket.socket) -> dict[str, Any]:
        """Have ``worker`` give its connections over ``end`` and retire; its answer.

        The answer's ``kept``: connections that stay with it; ``failed``:
        why the taker failed part way, if it did (the rest stay with it too).
        """
        worker.retiring = True
        try:
            return await self._ask(worker, "give", "given", fds=[end.fileno()])
        except (HandoverError, OSError):
            return {"kept": 0}  # it ended: nothing stays
        finally:
            end.close()

    async def _kept(self, worker: _Worker, end: socket.socket) -> int:
        return int((await self._tell_give(worker, end)).get("kept", 0))

    # ---- hand-over: giving (another supervisor or server takes over) ----------

    def metrics_socket(self) -> socket.socket | None:
        return socket_of(self.metrics_endpoint)

    def handover_sockets(self) -> tuple[socket.socket, socket.socket, bool]:
        if self._listener is None or self._control.sock is None:
            raise HandoverError("this supervisor is not serving: nothing to hand over")
        return self._listener, self._control.sock, self._owns_path

    async def stop_accepting(self) -> None:
        self.observer.handover_started()
        self._ending.set()  # no worker starts from now on
        if self._control.sock is not None:
            self._spare_control = self._control.sock.dup()
        self._owns_path = False
        self._control.release()

    async def resume_accepting(self) -> None:
        """The taker failed part way: take the sockets back, and every worker accepts again."""
        if self._stop.is_set():
            return
        self._ending.clear()
        if self._spare_control is not None:
            control, self._spare_control = self._spare_control, None
            assert self._tasks is not None
            self._control.serve(control, self._tasks)
        self._owns_path = self._inode is not None
        live = 0
        for worker in self.workers:
            if worker.retiring and not worker.gone:
                worker.retiring = False
                with contextlib.suppress(OSError):
                    await worker.channel.send("resume")
            live += not worker.gone
        assert self._tasks is not None
        for _ in range(self.count - live):  # those that gave everything and ended
            self._tasks.start_soon(self._fill, Backoff(), 0.0)
        logger.warning("the other process failed part way: serving the socket here again")

    async def open_channels(self) -> list[tuple[socket.socket, Coroutine[Any, Any, int]]]:
        channels: list[tuple[socket.socket, Coroutine[Any, Any, int]]] = []
        for worker in [w for w in self.workers if w.serving]:
            mine, theirs = socket_pair()
            channels.append((theirs, self._kept(worker, mine)))
        return channels

    # ---- hand-over: taking ----------------------------------------------------

    async def listen_on(
        self, listener: socket.socket, owns_path: bool, metrics: socket.socket | None
    ) -> None:
        await start_handed_over(self.metrics_endpoint, metrics)
        self._listener = listener
        self._owns_path = owns_path
        if owns_path:
            self._inode = inode_of(self.path)
        if not await self._start_workers():
            self._owns_path = False  # the giver keeps the socket and its file
            raise HandoverError("the new workers could not start")

    async def take_from(self, end: socket.socket) -> None:
        """Pass the channel on to one of the workers, in turn."""
        try:
            ready = [w for w in self.workers if w.serving]
            if not ready:
                logger.error("no worker serves to take connections over: they stay with the giver")
                return
            worker = ready[self._next_taker % len(ready)]
            self._next_taker += 1
            with contextlib.suppress(OSError):  # (it died: the giver keeps them)
                await worker.channel.send("take", fds=[end.fileno()])
        finally:
            end.close()

    async def serve_control(self, control: socket.socket) -> None:
        assert self._tasks is not None
        self._control.serve(control, self._tasks)
