"""One worker of a supervisor: serve the inherited socket, follow the supervisor's orders.

A worker is a :class:`~aioudf.serving.UnixServer` on the listening socket
the supervisor passed it, with the supervisor's settings (``AIOUDF_WORKER``,
:func:`worker_config`: the JSON the supervisor wrote, not the worker's own
command line), run by the same :class:`~aioudf.serving.Lifecycle` as
``serve()``. Over its socket pair it answers the supervisor's orders: give
everything and retire, share some connections, take some, count them,
resume.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import signal
import socket
from collections.abc import Callable

import anyio

from ..config import Config
from ..errors import AioudfError, HandoverError
from ..toolkit._handler import BaseHandler
from ._handover import (
    Channel,
    give_connections,
)
from ._lifecycle import Lifecycle
from ._metrics import REFRESH_INTERVAL, Metrics
from ._server import UnixServer

__all__ = ["WORKER_ENV", "run_worker", "worker_config"]

logger = logging.getLogger("aioudf")

#: Set in a worker's environment: its descriptors and settings, as JSON.
WORKER_ENV = "AIOUDF_WORKER"


async def run_worker(
    handler_factory: Callable[[], BaseHandler],
    path: str,
    description: str,
    *,
    metrics: Metrics | None = None,
) -> None:
    """Serve as one worker of a :class:`Supervisor` (``description``: AIOUDF_WORKER).

    The settings are the supervisor's, in ``description``
    (:func:`worker_config`); ``metrics``: where to record this worker's.
    """
    fds = json.loads(description)
    config = worker_config(description)
    listener = socket.socket(fileno=fds["listen"])
    supervisor = Channel(socket.socket(fileno=fds["channel"]))
    server = UnixServer(
        handler_factory,
        path,
        # A worker owns its loop: an unset warn_blocked is the default's.
        config=config.with_settings(warn_blocked=config.blocked_threshold(owns_loop=True)),
        sock=listener,
        handover=False,
        metrics=metrics,
    )
    worker = _WorkerService(server, supervisor, fds.get("take", []))
    await Lifecycle(worker, stop=worker.stop).run()


class _WorkerService:
    """A worker's part in the :class:`~aioudf.serving.Lifecycle`: serve, follow orders.

    Ready once serving: the worker this one replaces gives its connections
    only then (over the "take" channels). It serves until stopped, or until
    it retires after giving its connections away.
    """

    def __init__(self, server: UnixServer, supervisor: Channel, take: list[int]) -> None:
        self.server = server
        self.supervisor = supervisor
        self.take = take
        self.stop = asyncio.Event()
        self._orders: _Orders | None = None

    async def startup(self, tasks: anyio.abc.TaskGroup) -> bool:
        await self.server.start()
        return True

    async def ready(self) -> None:
        await self.supervisor.send("ready")

    async def main_loop(self) -> None:
        # Its own task group, cancelled at a stop before the server shuts
        # down: no order is followed while it does.
        async with anyio.create_task_group() as tg:
            if self.server.metrics is not None:
                tg.start_soon(_publish_metrics, self.server.metrics)
            for fd in self.take:
                tg.start_soon(self.server.take_from, socket.socket(fileno=fd))
            self._orders = _Orders(self.server, self.supervisor, tg, self.stop)
            tg.start_soon(self._orders.follow)
            await anyio.sleep_forever()  # until stop is set: by a signal, or by the orders

    def stopping(self, signum: signal.Signals, again: bool) -> None:
        if again:
            self.server.cut_short()

    def hangup(self, tasks: anyio.abc.TaskGroup) -> None:
        pass  # the supervisor reloads, not its workers

    async def shutdown(self, started: bool) -> None:
        # Without its supervisor (killed), a worker accepts no more but
        # serves its connections until they end (a signal ends them now).
        orphaned = self._orders is not None and self._orders.orphaned
        await self.server.shutdown(grace=math.inf if orphaned else None)

    async def cleanup(self) -> None:
        await self.server.shutdown(grace=0)  # (failed or cancelled: at once)
        self.supervisor.close()


def worker_config(description: str) -> Config:
    """The settings a supervisor gave its worker in ``description`` (AIOUDF_WORKER), checked."""
    try:
        settings = json.loads(description).get("config", {})
    except (ValueError, AttributeError):
        raise AioudfError(f"{WORKER_ENV} is not a worker's description: {description!r}") from None
    return Config.from_dict(settings)


class _Orders:
    """What a worker does on its supervisor's word (the messages in the module's docstring)."""

    def __init__(
        self,
        server: UnixServer,
        supervisor: Channel,
        tasks: anyio.abc.TaskGroup,
        stop: asyncio.Event,
    ) -> None:
        self.server = server
        self.supervisor = supervisor
        self.tasks = tasks
        self.stop = stop
        #: True once the supervisor is gone without a word.
        self.orphaned = False
        self._retiring: anyio.CancelScope | None = None

    async def follow(self) -> None:
        try:
            while True:
                message = await self.supervisor.receive("give", "share", "take", "count", "resume")
                if message.op == "count":
                    await self.supervisor.send("count", connections=self.server.active)
                elif message.op == "take":
                    self.tasks.start_soon(
                        self.server.take_from, socket.socket(fileno=message.fds[0])
                    )
                elif message.op == "share":
                    end = socket.socket(fileno=message.fds[0])
                    moved, refused = await self._share(end, int(message.header.get("count", 0)))
                    await self.supervisor.send("shared", moved=moved, refused=refused)
                elif message.op == "give":
                    await self._give(socket.socket(fileno=message.fds[0]))
                elif self._retiring is not None:  # resume: the taker failed, serve on
                    self._retiring.cancel()
                    self._retiring = None
                    await self.server.resume_accepting()
        except (HandoverError, OSError):
            if not self.stop.is_set():
                logger.error(
                    "the supervisor is gone: serving %d open connection(s) until they end",
                    self.server.active,
                )
                self.orphaned = True
        self.stop.set()

    async def _give(self, end: socket.socket) -> None:
        """Give every connection over ``end``; retire once what stays has ended."""
        await self.server.stop_accepting()
        failed: str | None = None
        try:
            kept = await give_connections(Channel(end), self.server.offer_all)
        except (HandoverError, OSError, TimeoutError) as exc:
            # The taker failed part way: what did not move is served here.
            kept, failed = self.server.active, str(exc) or type(exc).__name__
            logger.error(
                "the hand-over failed part way (%s): %d connection(s) stay here", failed, kept
            )
        finally:
            end.close()
        if not kept and failed is None:  # its last line must not read like an outage
            self.server.successor = "the new worker"
            self.server.handed_over.set()
        await self.supervisor.send("given", kept=kept, failed=failed)
        self._retiring = anyio.CancelScope()
        self.tasks.start_soon(self._retire, self._retiring)

    async def _retire(self, scope: anyio.CancelScope) -> None:
        with scope:
            await self.server.wait_idle()  # what was refused ends here
            self.stop.set()

    async def _share(self, end: socket.socket, count: int) -> tuple[int, int]:
        """Give up to ``count`` connections over ``end`` and keep serving; (moved, refused)."""
        result = (0, 0)

        async def offer(channel: Channel) -> int:
            nonlocal result
            result = await self.server._offer_some(channel, count)
            return result[1]

        try:
            await give_connections(Channel(end), offer)
        except (HandoverError, OSError, TimeoutError) as exc:
            logger.warning("the worker taking connections failed (%s): the rest stay here", exc)
        finally:
            end.close()
        return result


async def _publish_metrics(metrics: Metrics) -> None:
    """Publish this worker's queue depths and pending counts for the supervisor's endpoint."""
    while True:
        try:
            metrics.refresh()
        except Exception:  # a metrics fault must not end the worker's connections
            logger.exception("publishing metrics failed")
        await anyio.sleep(REFRESH_INTERVAL)
