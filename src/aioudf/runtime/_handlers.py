"""A connection's handler: created, refused, brought back after a move; the adapters' hooks.

:func:`create_handler` calls the factory for one connection (its failure is
the reason Kapacitor is told), :func:`refuse` answers a connection no handler
serves, :func:`prepare_handler` brings a fresh handler to where a moved
connection's handler was (Init again, then the snapshot). The hooks below are
what an adapter of another API (``aioudf.compat``) may define on its handler;
the agent reads them, a native handler defines none.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio

from ..errors import ConnectionFailed
from ..toolkit._handler import BaseHandler
from ..toolkit._options import a_or_an, bind_options, parse_options
from ..wire._messages import (
    InitRequest,
    encode_error,
)
from ._streams import ByteWriter

__all__ = ["create_handler", "prepare_handler", "refuse"]


# Hooks a handler that adapts another API may define (aioudf.compat's adapter
# of Kapacitor's Python agent does; a native handler defines none of them):
#
# ``_aioudf_raw_init = True``
#     Init's options are not parsed against declared Options: ``init()``
#     reads the InitRequest itself.
# ``_aioudf_run_sync(function, *args)``
#     an awaitable running a plain method on the handler's own thread,
#     instead of anyio's worker threads.
# ``_aioudf_failure(method, error)``
#     ``(reason, account, exc_info)``: the ErrorResponse text for a failed
#     handler call, the log entry's text and the exception it shows (or None).
# ``_aioudf_ended()``
#     called once the agent serving the handler has ended, however it ended.
# ``_aioudf_restore_always = True``
#     a moved connection's handler is restored even from an empty snapshot,
#     so that a handler that cannot restore refuses the move.
# ``_aioudf_any_edge = True``
#     the class's ``provides`` does not say what the handler emits (the
#     adapted API declares it at run time): the connection checks only
#     that emitted batches nest, not which edge type they fit.


def _run_sync(handler: BaseHandler) -> Callable[..., Awaitable[Any]]:
    """How ``handler``'s plain methods run off the loop (see the hooks above)."""
    run: Callable[..., Awaitable[Any]] | None = getattr(handler, "_aioudf_run_sync", None)
    if run is not None:
        return run
    return partial(anyio.to_thread.run_sync, abandon_on_cancel=True)


async def prepare_handler(handler: BaseHandler, init: InitRequest, snapshot: bytes) -> None:
    """Bring a fresh handler to where a moved connection's handler was.

    The connection's Init is given again (options bound, ``init()`` called),
    then ``restore(snapshot)`` unless the snapshot is empty. Raises what the
    handler raises: :class:`~aioudf.InitError` or
    :class:`~aioudf.RestoreError` when it refuses, or any other exception;
    the caller leaves the connection where it was.
    """
    handler.task_id = init.taskID
    handler.node_id = init.nodeID
    if not getattr(handler, "_aioudf_raw_init", False):
        bind_options(handler, parse_options(type(handler).options, init.options))
    calls: list[tuple[str, object]] = [("init", init)]
    if snapshot or getattr(handler, "_aioudf_restore_always", False):
        calls.append(("restore", snapshot))
    for method, argument in calls:
        function = getattr(handler, method)
        if inspect.iscoroutinefunction(function):
            await function(argument)
        else:
            await _run_sync(handler)(function, argument)


def create_handler(factory: Callable[[], BaseHandler]) -> BaseHandler:
    """Call ``factory`` for one connection's handler.

    Raises :class:`~aioudf.ConnectionFailed` whose ``reason`` (the text for
    Kapacitor) names the cause, if the factory raises or returns something
    that is not a handler.
    """
    try:
        handler = factory()
    except Exception as exc:
        raise ConnectionFailed(
            f"could not create the UDF handler: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(handler, BaseHandler):
        name = getattr(factory, "__qualname__", repr(factory))
        got = "None" if handler is None else a_or_an(type(handler).__name__)
        raise ConnectionFailed(
            f"could not create the UDF handler: {name}() returned {got}, "
            "not a Handler or BlockingHandler"
        )
    return handler


async def refuse(writer: ByteWriter, reason: str) -> None:
    """Answer a connection no agent serves with one ErrorResponse, then close it."""
    try:
        writer.write(encode_error(reason))
        await writer.drain()
    except OSError:  # Kapacitor already gone: nothing more to tell it
        pass
    finally:
        writer.close()
