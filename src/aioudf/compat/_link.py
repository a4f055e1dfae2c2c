"""One Kapacitor connection between aioudf's agent and a script's Agent and Handler.

:class:`ScriptAdapter` is the handler aioudf's own agent serves: a
:class:`~aioudf.BlockingHandler` whose methods forward each request to the
script's handler and turn its ``Response`` objects into aioudf's answers.
Its plain methods run, through the agent's ``_aioudf_run_sync`` hook, on the
:class:`Link`'s worker thread: one thread per connection, started by the
script's ``Agent.start()`` and ended with the connection, so the script's
handler is called from one thread, one call at a time, in the order
Kapacitor sent the requests, as Kapacitor's agent calls it, while the event
loop answers keepalives. ``Agent.wait()`` joins that thread.

Output goes the other way: the script's ``write_response()`` hands a data
response's message to the agent's emitter, from whatever thread calls it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import queue
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from .._pb import udf_pb2
from ..errors import CompatError, InitError, RestoreError
from ..toolkit._handler import BlockingHandler
from ..wire._messages import BeginBatch, EndBatch, InfoResponse, InitRequest, Point, RestoreRequest
from .handler import inherited

__all__ = ["Link", "ScriptAdapter"]

logger = logging.getLogger("aioudf")

# The request type in Kapacitor's agent's error text, by handler method.
_KINDS = {"begin_batch": "begin", "end_batch": "end"}
_DATA = ("point", "begin", "end")


# Seconds the event loop waits, blocked, for a handler call to return before
# it awaits the call instead (and answers keepalives meanwhile). Once a call
# has taken longer, the next ones are awaited at once, until one returns
# within it: a run of 512 points in bulk takes longer, and the loop is
# better off reading and writing meanwhile.
_SYNC_WAIT = 0.002


class _ScriptProblem(Exception):
    """The script's handler cannot answer: no such method, not a Response, no Agent."""


class _ErrorResponse(Exception):
    """The script answered with an ErrorResponse of its own: sent word for word."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


# A handler call queued for the worker thread, run in its caller's context
# (the records it logs carry the connection, the task and the node).
_Call = tuple[
    contextvars.Context,
    Callable[..., Any],
    tuple[Any, ...],
    "asyncio.Future[Any]",
    asyncio.AbstractEventLoop,
]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled (the connection ended meanwhile)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


_E = TypeVar("_E", bound=BaseException)


def script_frames(error: _E) -> _E:
    """``error`` with the frames that called the script's code (aioudf's, runpy's) left out."""
    tb: TracebackType | None = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        if not (module.startswith("aioudf.") or module == "runpy"):
            break
        tb = tb.tb_next
    return error.with_traceback(tb)


class Link:
    """A connection's worker thread and the script's ``Agent`` that serves it.

    ``name`` names the thread (``stdio``, or the connection's number).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        #: The script's Agent for this connection, once it has been built.
        self.agent: Any = None
        #: The adapter aioudf's agent serves.
        self.adapter: ScriptAdapter | None = None
        #: The text of an ErrorResponse the script wrote: it ends the connection.
        self.error_text: str | None = None
        self._lock = threading.Lock()
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._abandoned: str | None = None
        self._ended = False
        # The call the loop waits for synchronously (see _SYNC_WAIT), its outcome,
        # and the lock the worker releases once it is there.
        self._waited: asyncio.Future[Any] | None = None
        self._outcome: tuple[Any, BaseException | None] = (None, None)
        self._returned = threading.Lock()
        self._returned.acquire()
        self._quick = True  # the last call returned within _SYNC_WAIT

    # ---- the script's side ------------------------------------------------

    def bind(self, agent: Any) -> None:
        """The script built ``agent`` for this connection."""
        with self._lock:
            if self.agent is not None and self.agent is not agent:
                raise CompatError(
                    "this connection is served by an Agent already: build one Agent per "
                    "connection the accepter is given"
                )
            self.agent = agent

    def start(self) -> None:
        """``Agent.start()``: the worker thread starts calling the handler."""
        with self._lock:
            if self._worker is not None:
                raise CompatError("Agent.start() was called twice for one connection")
            if self._abandoned is not None:
                raise CompatError(f"the connection was given up: {self._abandoned}")
            self._worker = threading.Thread(
                target=self._work, name=f"aioudf compat {self.name}", daemon=True
            )
        self._worker.start()

    @property
    def started(self) -> bool:
        return self._worker is not None

    def join(self) -> None:
        """``Agent.wait()``: until the connection has ended and its last call returned."""
        worker = self._worker
        if worker is None:
            raise CompatError("Agent.wait() was called before Agent.start()")
        worker.join()

    def abandon(self, reason: str) -> None:
        """Nothing will serve the connection (the accepter never started an Agent)."""
        with self._lock:
            if self._worker is not None or self._abandoned is not None:
                return
            self._abandoned = reason
            pending: list[_Call] = []
            while True:
                try:
                    call = self._calls.get_nowait()
                except queue.Empty:
                    break
                if call is not None:
                    pending.append(call)
        for _, _, _, future, loop in pending:
            self._deliver(loop, future, None, _ScriptProblem(reason))

    def write(self, response: Any, flush: bool = False) -> None:
        """``Agent.write_response()``: a data response goes out at once, from any thread."""
        if type(response) is udf_pb2.Response:  # the bulk of the traffic: no checks to fail
            which = response.WhichOneof("message")
            adapter = self.adapter
            if which == "point" and adapter is not None:
                emitter: Any = adapter._aioudf_emitter  # aioudf's agent's Emitter
                if emitter is not None:
                    emitter.emit_response(response, which)
                    return
        elif response is None:
            raise TypeError("cannot write None response")
        else:
            try:
                which = response.WhichOneof("message")
            except (AttributeError, TypeError, ValueError):
                raise TypeError(
                    f"write_response() takes a udf_pb2.Response, not {type(response).__name__}"
                ) from None
        if which in _DATA:
            adapter = self.adapter
            # aioudf's agent's Emitter (emit_response() is the compat agent's)
            emitter = adapter._aioudf_emitter if adapter is not None else None
            if emitter is None:
                raise CompatError(
                    "write_response(): the connection is not served yet (points and batches "
                    "can be written once Kapacitor's requests reach the handler)"
                )
            if type(response) is udf_pb2.Response:
                emitter.emit_response(response, which)
            else:  # another Response class: its message, in aioudf's
                emitter.emit(getattr(response, which))
        elif which == "error":
            self.error_text = response.error.error
        else:
            raise ValueError(
                f"write_response() sends points, batches and errors; a Response carrying "
                f"{which or 'nothing'} is what the handler's method returns instead"
            )

    # ---- aioudf's side (the event loop) -------------------------------------

    def run(self, function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Call ``function(*args)`` on the worker thread; the future of its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            if self._abandoned is not None:
                future.set_exception(_ScriptProblem(self._abandoned))
                return future
            quick = self._quick
            self._waited = future if quick else None
            self._calls.put((contextvars.copy_context(), function, args, future, loop))
        if not quick:
            return future
        returned = self._returned.acquire(timeout=_SYNC_WAIT)
        if not returned:
            with self._lock:
                if self._waited is future:
                    self._waited = None  # the worker delivers it through the loop
                    self._quick = False
                    return future
            self._returned.acquire()  # released just after the timeout
        result, error = self._outcome
        self._outcome = (None, None)
        _settle(future, result, error)
        return future

    def end(self) -> None:
        """The connection ended: the worker thread ends after the calls queued."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
        self._calls.put(None)

    def describe(self, method: str, error: BaseException) -> tuple[str, str, BaseException | None]:
        """The ErrorResponse text (Kapacitor's agent's words), the log entry and its traceback."""
        if isinstance(error, _ErrorResponse):
            return error.text, f"the handler answered with an ErrorResponse: {error.text}", None
        reason = f"error processing request of type {_KINDS.get(method, method)}: {error}"
        if isinstance(error, _ScriptProblem):
            return reason, reason, None
        handler = self.handler_name()
        account = f"{handler}.{method}() failed: {type(error).__name__}: {error}"
        return reason, account, script_frames(error)

    def handler_name(self) -> str:
        handler = getattr(self.agent, "handler", None)
        return type(handler).__name__ if handler is not None else "the handler"

    # ---- the worker thread --------------------------------------------------

    def _work(self) -> None:
        calls = self._calls
        deliver = self._deliver
        clock = time.monotonic
        while (call := calls.get()) is not None:
            context, function, args, future, loop = call
            started = clock()
            try:
                result = context.run(function, *args)
            except Exception as exc:
                deliver(loop, future, None, exc)
            except BaseException as exc:  # SystemExit in a handler: it ends this connection only
                deliver(loop, future, None, _ScriptProblem(f"{type(exc).__name__}: {exc}"))
            else:
                deliver(loop, future, result, None)
            self._quick = clock() - started < _SYNC_WAIT

    def _deliver(
        self,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
        result: Any,
        error: BaseException | None,
    ) -> None:
        with self._lock:
            if self._waited is future:  # the loop is waiting right there
                self._waited = None
                self._outcome = (result, error)
                self._returned.release()
                return
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for it
            loop.call_soon_threadsafe(_settle, future, result, error)


class ScriptAdapter(BlockingHandler):
    """The aioudf handler of one connection, forwarding to the script's handler."""

    # The hooks of aioudf's agent (see aioudf.runtime._agent).
    _aioudf_raw_init = True  # the script reads the InitRequest's options itself
    _aioudf_restore_always = True  # a hand-over asks the script's restore(), even of b""
    _aioudf_any_edge = True  # the script's info() says what it provides, not this class

    def __init__(self, link: Link) -> None:
        self._link = link
        link.adapter = self

    def _aioudf_run_sync(self, function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        return self._link.run(function, *args)

    def _aioudf_ended(self) -> None:
        self._link.end()

    def _aioudf_failure(
        self, method: str, error: BaseException
    ) -> tuple[str, str, BaseException | None]:
        return self._link.describe(method, error)

    # ---- calling the script -------------------------------------------------

    def _handler(self) -> Any:
        handler = getattr(self._link.agent, "handler", None)
        if handler is None:
            raise _ScriptProblem("the Agent has no handler (set agent.handler before start())")
        return handler

    def _call(self, method: str, *args: Any) -> Any:
        handler = self._handler()
        function = getattr(handler, method, None)
        if function is None:
            raise _ScriptProblem(f"{type(handler).__name__} has no method {method}()")
        result = function(*args)
        if self._link.error_text is not None:
            raise _ErrorResponse(self._link.error_text)
        return result

    def _answer(self, method: str, *args: Any) -> Any:
        """Call ``method`` and check it returned a Response carrying its answer."""
        response = self._call(method, *args)
        which = response.WhichOneof("message") if isinstance(response, udf_pb2.Response) else None
        if which == method:
            return response
        if which == "error":
            raise _ErrorResponse(response.error.error)
        name = type(self._handler()).__name__
        got = "None" if response is None else f"a {type(response).__name__}"
        if which is not None or isinstance(response, udf_pb2.Response):
            got = f"a Response carrying {which or 'nothing'}"
        raise _ScriptProblem(f"{name}.{method}() returned {got}, not a Response with {method}")

    def _unless_served(self) -> None:
        # Init or Restore of a connection taken over from another process,
        # before an agent serves it: refused, it stays with the other process,
        # and nothing here will end the link but this.
        if self._aioudf_emitter is None:
            self._link.end()

    # ---- the requests -------------------------------------------------------

    def info(self) -> InfoResponse:
        response: InfoResponse = self._answer("info").info
        return response

    def init(self, request: InitRequest) -> None:
        try:
            response = self._answer("init", request)
            if not response.init.success:
                raise InitError(response.init.error)
        except BaseException:
            self._unless_served()
            raise

    def snapshot(self) -> bytes:
        if inherited(self._handler(), "snapshot"):
            return b""  # nothing to save (Kapacitor's agent would fail the task)
        data: bytes = self._answer("snapshot").snapshot.snapshot
        return data

    def restore(self, snapshot: bytes) -> None:
        try:
            handler = self._handler()
            if inherited(handler, "restore"):
                raise RestoreError(f"{type(handler).__name__} does not implement restore()")
            response = self._answer("restore", RestoreRequest(snapshot=snapshot))
            if not response.restore.success:
                raise RestoreError(response.restore.error)
        except BaseException:
            self._unless_served()
            raise

    def begin_batch(self, begin: BeginBatch) -> None:
        self._call("begin_batch", begin)

    def point(self, point: Point) -> None:
        # The bulk of the traffic: _call() without its checks, unless they fail.
        link = self._link
        try:
            function = link.agent.handler.point
        except AttributeError:
            self._call("point", point)
            return
        function(point)
        if link.error_text is not None:
            raise _ErrorResponse(link.error_text)

    def end_batch(self, end: EndBatch) -> None:
        self._call("end_batch", end)

    def stop(self) -> None:
        """Kapacitor closed its side: the script's agent has nothing to be told."""
