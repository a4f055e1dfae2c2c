"""Kapacitor's Python agent API — ``Agent``, ``Handler``, ``Server`` — served by aioudf.

Under ``aioudf compat`` this module *is* ``kapacitor.udf.agent``, so a script
written for Kapacitor's own agent runs unchanged::

    from kapacitor.udf.agent import Agent, Handler, Server
    from kapacitor.udf import udf_pb2

or, for a script edited to say so, ``from aioudf.compat import Agent,
Handler, Server``. The API and its semantics are the official agent's:

``Agent(_in=stdin, out=stdout, handler=None)``
    ``start()`` returns at once and serves; ``wait()`` blocks until
    Kapacitor has closed the connection; ``write_response(response,
    flush=False)`` sends a point or a batch's BeginBatch/EndBatch, from
    any thread, at any time (never held back for a flush).
``Server(socket_path, accepter)``
    ``serve()`` blocks, serving the socket (also from a thread of the
    script's own); each connection is given to ``accepter.accept(conn,
    addr)`` in a thread of its own, which builds ``Agent(conn, conn)`` and
    calls ``start()`` and ``wait()``. ``stop()`` ends it, from any thread.

What runs underneath is aioudf's own agent and server: handler methods are
called on the Agent's thread, one at a time and in request order, while the
event loop answers keepalives; a failing handler ends its connection only,
with the ErrorResponse text Kapacitor's agent sends; the socket is served
by :class:`aioudf.UnixServer`, with SIGHUP reloads, ``--takeover`` and
``--workers``. See docs/compat.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import io
import itertools
import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Any, NoReturn

from ..errors import CompatError
from ..runtime._loops import run_async
from ..serving._activation import activated_socket
from ..serving._metrics import Metrics
from ..serving._process import run_stdio
from ..serving._server import serve, share_metrics
from ..serving._stdio import check_stdio
from ._link import Link, ScriptAdapter, script_frames
from ._runtime import RUNTIME, Settings
from .handler import Handler

__all__ = ["Agent", "Connection", "Handler", "Server"]

logger = logging.getLogger("aioudf")

# The methods Kapacitor calls on every UDF (begin_batch/end_batch only on batch edges).
_REQUIRED = ("info", "init", "point")


def _is_stdin(stream: Any) -> bool:
    try:
        return bool(stream.fileno() == 0)
    except (AttributeError, OSError, ValueError):
        return False


class Connection:
    """One Kapacitor connection, as ``Server`` hands it to ``accepter.accept(conn, addr)``.

    aioudf reads and writes it; the script passes it to ``Agent(conn, conn)``.
    Reading or writing it directly is refused (the bytes are aioudf's);
    ``close()`` does nothing (the connection closes when it ends).
    """

    def __init__(self, link: Link) -> None:
        self._link = link

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise io.UnsupportedOperation(
            "under aioudf compat the connection's bytes are aioudf's: give it to "
            "Agent(conn, conn) and write with agent.write_response()"
        )

    read = write = readline = flush = _refuse

    def close(self) -> None:
        """Nothing to do: the connection closes when Kapacitor's task ends."""

    def __repr__(self) -> str:
        return f"<aioudf compat connection {self._link.name}>"


class Agent:
    """Serve one Kapacitor connection with ``handler``: stdin/stdout, or a ``Server``'s connection.

    ``_in``/``out``: the process's stdin and stdout (the default: a process
    UDF), or the connection an accepter was given (``Agent(conn, conn)``).
    ``handler`` may be set later, as ``agent.handler``, before :meth:`start`.
    """

    def __init__(self, _in: Any = None, out: Any = None, handler: Any = None) -> None:
        self._in = _in
        self._out = out
        self.handler = handler
        self._link: Link | None = None
        self._loop_thread: threading.Thread | None = None
        RUNTIME.count("agents_created")
        if isinstance(_in, Connection):
            if out is not None and out is not _in:
                raise CompatError(
                    "Agent(conn, out): a Server's connection is both ways: use Agent(conn, conn)"
                )
            self._link = _in._link
            self._link.bind(self)
        elif _in is not None and not _is_stdin(_in):
            raise CompatError(
                f"Agent(_in={type(_in).__name__}): aioudf compat serves stdin/stdout (a process "
                "UDF) and the connections its Server accepts, not other streams"
            )

    def start(self) -> None:
        """Start serving; returns at once (the handler is called on the agent's thread)."""
        handler = self.handler
        if handler is None:
            raise CompatError("Agent.start(): the agent has no handler: set agent.handler first")
        missing = [m for m in _REQUIRED if not callable(getattr(handler, m, None))]
        if missing:
            raise CompatError(
                f"{type(handler).__name__} has no method {', '.join(m + '()' for m in missing)}, "
                "which Kapacitor calls: subclass Handler and implement it"
            )
        if self._link is None:
            self._start_stdio()
        assert self._link is not None
        self._link.start()
        # One call a point instead of two: the method below, bound to its link.
        self.write_response = self._link.write  # type: ignore[method-assign]
        RUNTIME.count("agents_started")

    def _start_stdio(self) -> None:
        settings = RUNTIME.settings
        if flags := settings.socket_flags():
            raise CompatError(
                f"{', '.join(flags)} serve a socket (a Server): this script's Agent serves "
                "stdin/stdout, one process per task"
            )
        if not RUNTIME.claim_stdio():
            raise CompatError("stdin/stdout is served by another Agent of this process already")
        check_stdio()
        RUNTIME.settle()
        link = Link("stdio")
        link.bind(self)
        self._link = link
        self._loop_thread = threading.Thread(
            target=_serve_stdio, args=(link, settings), name="aioudf compat event loop"
        )
        RUNTIME.keep(self._loop_thread)
        self._loop_thread.start()

    def wait(self) -> None:
        """Block until Kapacitor has closed the connection and the handler's last call returned."""
        if self._link is None:
            raise CompatError("Agent.wait() was called before Agent.start()")
        self._link.join()
        if self._loop_thread is not None:
            self._loop_thread.join()

    def write_response(self, response: Any, flush: bool = False) -> None:
        """Send a ``udf_pb2.Response`` carrying a point, a BeginBatch or an EndBatch.

        Thread-safe; the response is serialized at once (the message may be
        changed or reused after the call) and written without waiting for a
        flush (``flush`` changes nothing): once the handler's method returns,
        or 10 ms after the call if the method works on meanwhile. While
        Kapacitor reads slower than responses come, the call blocks (the
        output is bounded). A Response carrying an ``error`` ends the
        connection with that text.
        """
        if self._link is None:
            raise CompatError("write_response() was called before Agent.start()")
        self._link.write(response)


async def _announce(ready: asyncio.Event, serving: threading.Event) -> None:
    await ready.wait()
    serving.set()


class _Factory:
    """The handler factory of a Server: named after the accepter in aioudf's logs."""

    def __init__(self, connection: Callable[[], ScriptAdapter], accepter: Any) -> None:
        self._connection = connection
        self.__qualname__ = f"{type(accepter).__name__}.accept"

    def __call__(self) -> ScriptAdapter:
        return self._connection()


def _serve_stdio(link: Link, settings: Settings) -> None:
    """The event loop's thread of a process UDF: aioudf's agent on stdin/stdout."""
    status = 1
    try:
        status = run_async(
            run_stdio(lambda: ScriptAdapter(link), config=settings.config),
            settings.loop,
        )
    except Exception as exc:
        logger.error("cannot serve stdin/stdout: %s", exc)
    finally:
        link.end()
        RUNTIME.served(status)


class Server:
    """Serve ``socket_path`` (a socket UDF), one ``accepter.accept(conn, addr)`` per connection.

    The socket is bound when :meth:`serve` starts (not here, as Kapacitor's
    agent does), so that a reload or ``--takeover`` can take it over from
    the process serving it.
    """

    def __init__(self, socket_path: str | os.PathLike[str], accepter: Any) -> None:
        if not isinstance(socket_path, (str, os.PathLike)):
            raise CompatError(f"Server(socket_path): a path, not {type(socket_path).__name__}")
        if not callable(getattr(accepter, "accept", None)):
            raise CompatError(
                f"Server(path, accepter): {type(accepter).__name__} has no accept(conn, addr)"
            )
        self._socket_path = os.fspath(socket_path)
        self._accepter = accepter
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stopped = False
        self._signal_stop = False  # stop() is a SIGTERM (a supervisor or worker handles it)
        self._numbers = itertools.count(1)
        #: Set once the socket accepts connections (aioudf's addition to the API).
        self.serving = threading.Event()
        RUNTIME.count("servers_created")

    def serve(self) -> None:
        """Serve until SIGTERM/SIGINT (in the main thread), :meth:`stop`, or a hand-over."""
        settings = RUNTIME.settings
        RUNTIME.count("servers_served")
        RUNTIME.settle()
        status = run_async(self._serve(settings), settings.loop)
        RUNTIME.served(status)

    def stop(self) -> None:
        """Stop serving (as SIGTERM does: connections get ``--grace`` seconds); any thread."""
        with self._lock:
            self._stopped = True
            loop, stop, by_signal = self._loop, self._stop, self._signal_stop
        if by_signal:
            os.kill(os.getpid(), signal.SIGTERM)
        elif loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop: serve() has returned
                loop.call_soon_threadsafe(stop.set)

    async def _serve(self, settings: Settings) -> int:
        # (Imported here: a process UDF starts without the supervisor's modules.)
        from ..serving._supervisor import Supervisor
        from ..serving._worker import WORKER_ENV, run_worker

        path = self._socket_path
        main = threading.current_thread() is threading.main_thread()
        worker = os.environ.pop(WORKER_ENV, None)
        if settings.metrics:
            share_metrics(path, worker=worker is not None, takeover=settings.takeover)
        with self._lock:
            if self._stopped:
                return 0
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._signal_stop = worker is not None or settings.workers > 1
        if worker is not None:
            metrics = Metrics() if settings.metrics else None
            await run_worker(
                _Factory(self._connection, self._accepter), path, worker, metrics=metrics
            )
            return 0
        if settings.workers > 1:
            if not main:
                raise CompatError("--workers: call Server.serve() in the main thread")
            supervisor = Supervisor(
                path,
                settings.workers,
                config=settings.config,
                sock=activated_socket(path),
                takeover=settings.takeover,
                metrics=settings.metrics,
            )
            status: int = await supervisor.run()
            return status
        ready = asyncio.Event()
        announce = asyncio.create_task(_announce(ready, self.serving))
        try:
            await serve(
                _Factory(self._connection, self._accepter),
                path,
                config=settings.config,
                handle_signals=main,
                sock=activated_socket(path),
                takeover=settings.takeover,
                metrics=settings.metrics,
                stop=self._stop,
                ready=ready,
            )
        finally:
            announce.cancel()
        return 0

    def _connection(self) -> ScriptAdapter:
        """The handler of a new connection (on the event loop): its accepter starts."""
        number = next(self._numbers)
        link = Link(f"conn {number}")
        adapter = ScriptAdapter(link)
        # The accepter's thread logs with the connection's context (conn, task, node).
        context = contextvars.copy_context()
        threading.Thread(
            target=context.run,
            args=(self._accept, link),
            name=f"aioudf compat accept {number}",
            daemon=True,
        ).start()
        return adapter

    def _accept(self, link: Link) -> None:
        accepter = type(self._accepter).__name__
        try:
            self._accepter.accept(Connection(link), "")
        except Exception as exc:
            if isinstance(exc, CompatError):
                logger.error("%s.accept(): %s", accepter, exc)
            else:
                logger.error(
                    "%s.accept() failed: %s: %s",
                    accepter,
                    type(exc).__name__,
                    exc,
                    exc_info=script_frames(exc),
                )
            link.abandon(f"{accepter}.accept() failed: {exc}")
        else:
            link.abandon(f"{accepter}.accept() returned without starting an Agent")
