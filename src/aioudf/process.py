"""Process UDFs: one agent on stdin/stdout, for Kapacitor's ``prog``/``args``.

:func:`run` is what a UDF script calls at the bottom::

    if __name__ == "__main__":
        aioudf.run(MyHandler)

It serves until Kapacitor closes stdin and every response is written, then
returns (exit status 0). A protocol error or a handler exception is sent to
Kapacitor as an ErrorResponse, logged on stderr, and the process exits with
status 1.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .agent import Agent
from .errors import ConnectionFailed
from .handler import BaseHandler
from .logs import configure_logging
from .loops import run_async
from .stdio import open_stdio, reserved_stdout

__all__ = ["run", "run_stdio"]

logger = logging.getLogger("aioudf")


async def run_stdio(handler_factory: Callable[[], BaseHandler], **agent_options: Any) -> int:
    """Serve Kapacitor on stdin/stdout with one handler; return the exit status."""
    with reserved_stdout() as frames_fd:
        reader, writer = await open_stdio(frames_fd)
        try:
            handler = handler_factory()
        except Exception as exc:
            logger.exception("could not create the handler")
            agent_failure = f"could not create the UDF handler: {type(exc).__name__}: {exc}"
            await _send_error(writer, agent_failure)
            return 1
        agent = Agent(handler, reader, writer, name="stdio", **agent_options)
        try:
            await agent.run()
        except ConnectionFailed as exc:
            logger.error("UDF stopped: %s", exc.reason)
            return 1
    return 0


async def _send_error(writer: Any, reason: str) -> None:
    from .messages import Response, encode_response

    response = Response()
    response.error.error = reason
    try:
        writer.write(encode_response(response))
        await writer.drain()
    finally:
        writer.close()


def run(
    handler_factory: Callable[[], BaseHandler],
    *,
    loop: str = "auto",
    log_level: str | int = "INFO",
    **agent_options: Any,
) -> None:
    """Run a process UDF until stdin closes; exit with status 1 on error.

    ``handler_factory`` is the Handler class (or any callable returning a
    handler). ``loop`` picks the event loop (``auto``, ``asyncio``,
    ``uvloop``); ``agent_options`` are passed to :class:`~aioudf.Agent`
    (``max_frame_size``, ``max_backlog``, ``max_output``, ``stop_timeout``).
    """
    configure_logging(log_level)
    status = run_async(run_stdio(handler_factory, **agent_options), loop)
    if status:
        raise SystemExit(status)
