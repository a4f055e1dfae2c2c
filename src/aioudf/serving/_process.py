"""Process UDFs: one agent on stdin/stdout, for Kapacitor's ``prog``/``args``.

:func:`run` is what a UDF script calls at the bottom::

    if __name__ == "__main__":
        aioudf.run(MyHandler)

It serves until Kapacitor closes stdin and every response is written, then
returns (exit status 0). A protocol error or a handler exception is sent to
Kapacitor as an ErrorResponse, logged on stderr, and the process exits with
status 1.

A UDF that cannot even start (its module fails at import, say) still
answers: :func:`refuse_to_start` logs the cause once, answers Kapacitor's
first request with an ErrorResponse naming it and reads stdin until
Kapacitor closes it, so that Kapacitor's own error reads ``failed to load
process info for "NAME": <the cause>`` rather than ``write error: broken
pipe`` (what it says when the process is gone before it has read that
answer). ``aioudf run`` and ``aioudf compat`` use it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from ..config import Config
from ..errors import AioudfError, ConnectionFailed
from ..runtime._agent import Agent
from ..runtime._handlers import create_handler, refuse
from ..runtime._logs import configure_logging, connection_context
from ..runtime._loops import exit_past_stuck_threads, run_async
from ..runtime._watchdog import LoopWatchdog
from ..toolkit._handler import BaseHandler
from ..wire._messages import encode_error
from ._stdio import check_stdio, open_stdio, reserved_stdout

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..config import ProcessSettings

__all__ = ["refuse_stdio", "refuse_to_start", "run", "run_stdio"]

logger = logging.getLogger("aioudf")


async def run_stdio(
    handler_factory: Callable[[], BaseHandler], *, config: Config | None = None
) -> int:
    """Serve Kapacitor on stdin/stdout with one handler; return the exit status.

    ``config``: the agent's settings (:class:`~aioudf.config.Config`); since
    this owns the loop, an unset ``warn_blocked`` starts a
    :class:`~aioudf.runtime.LoopWatchdog` of
    :data:`~aioudf.config.DEFAULT_WARN_BLOCKED` seconds (0: none).
    """
    config = config if config is not None else Config()
    warn_blocked = config.blocked_threshold(owns_loop=True)
    # Records about the connection, the last "UDF stopped" one included, carry
    # conn=stdio and the task and node of Init.
    with reserved_stdout() as frames_fd, _watchdog(warn_blocked), connection_context("stdio"):
        reader, writer = await open_stdio(frames_fd)
        try:
            handler = create_handler(handler_factory)
        except ConnectionFailed as exc:
            logger.error("%s", exc.reason, exc_info=exc.__cause__)
            await refuse(writer, exc.reason)
            return 1
        agent = Agent(handler, reader, writer, name="stdio", config=config)
        try:
            await agent.run()
        except ConnectionFailed as exc:
            logger.error("UDF stopped: %s", exc.reason)
            return 1
    return 0


async def refuse_stdio(reason: str) -> None:
    """Answer Kapacitor's first request with an ErrorResponse, then read stdin to its end.

    Kapacitor reports the ErrorResponse's text only if the process is still
    there to take its next writes: exiting at once turns the cause into
    ``broken pipe`` in Kapacitor's log. What arrives after the first
    request is read and dropped until Kapacitor closes stdin.
    """
    with reserved_stdout() as frames_fd:
        reader, writer = await open_stdio(frames_fd)
        try:
            if await reader.read(1 << 16):  # Info (or Init): the first request
                writer.write(encode_error(reason))
                await writer.drain()
                while await reader.read(1 << 16):
                    pass
        except OSError:  # Kapacitor already gone: nothing more to tell it
            pass
        finally:
            writer.close()


def refuse_to_start(reason: str, *, loop: str = "auto") -> int:
    """A process UDF that cannot start tells Kapacitor why; returns the exit status (2).

    Serves :func:`refuse_stdio` until Kapacitor closes stdin, unless stdin
    is a terminal (a person, not Kapacitor) or stdin or stdout is closed.
    Log or print ``reason`` before calling it: this only answers Kapacitor.
    """
    try:
        check_stdio()
        if not os.isatty(0):
            run_async(refuse_stdio(reason), loop)
    except AioudfError:  # stdin or stdout closed, no uvloop: the caller's line says why
        pass
    return 2


@contextlib.contextmanager
def _watchdog(threshold: float) -> Iterator[None]:
    """A running LoopWatchdog for the block, unless ``threshold`` is 0."""
    if threshold > 0:
        with LoopWatchdog(threshold):
            yield
    else:
        yield


def run(
    handler_factory: Callable[[], BaseHandler],
    *,
    argv: Sequence[str] | None = None,
    loop: str = "auto",
    log_level: str | int = "INFO",
    log_format: str = "logfmt",
    config: Config | None = None,
    **settings: Unpack[ProcessSettings],
) -> None:
    """Run a process UDF until stdin closes; exit with status 1 on error.

    ``handler_factory``: the Handler class (or a callable returning a
    handler). ``loop``: ``auto``, ``asyncio`` or ``uvloop``; ``log_format``:
    ``logfmt``, ``json`` or ``text``. ``config`` and ``settings``: a
    :class:`~aioudf.config.Config` with settings changed by keyword
    (:class:`~aioudf.config.ProcessSettings`), checked before anything is set
    up. What cannot start (a closed stdin or stdout, uvloop missing, a bad
    flag in ``argv``, default ``sys.argv[1:]``) is one line on stderr and exit
    status 2.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments:
        prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "aioudf"
        print(
            f"{prog}: error: aioudf.run() takes no command-line arguments, got: "
            f"{' '.join(arguments)}; end the script with aioudf.main(Handler) to take "
            "aioudf's flags (--socket, --log-level...), or call run(..., argv=[]) if the "
            "script reads its own",
            file=sys.stderr,
        )
        raise SystemExit(2)
    config = Config.of(config, **settings)  # an error before any set-up
    configure_logging(log_level, log_format)
    try:
        check_stdio()
        status = run_async(run_stdio(handler_factory, config=config), loop)
    except AioudfError as exc:
        print(f"aioudf: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    exit_past_stuck_threads(status)
    if status:
        raise SystemExit(status)
