"""The asyncio shell of one connection, and what it runs on.

- ``_streams``: the shape of a connection's streams; the socket reader that
  pushes bytes from the transport callback.
- ``_logs``: one line per event (logfmt, json, text), with conn/task/node
  from context variables.
- ``_loops``: choosing and running the event loop.
- ``_watchdog``: warns when the event loop is blocked.
- ``_loader``: loads ``module:Class`` / ``file.py:Class`` (the only place).
- ``_hooks``: what the agent calls to be measured (an interface, and the
  one that does nothing); serving's Prometheus metrics implement it.
- ``_output``: :class:`OutputQueue` and :class:`Emitter`, a connection's
  output.
- ``_handlers``: creating, refusing and preparing a connection's handler;
  the hooks an adapter of another API may define.
- ``_agent``: :class:`Agent`, one handler on one connection.
"""

from __future__ import annotations

from ._agent import (
    DEFAULT_MAX_BACKLOG,
    DEFAULT_MAX_OUTPUT,
    DEFAULT_STOP_TIMEOUT,
    Agent,
    HandOff,
)
from ._handlers import (
    create_handler,
    prepare_handler,
    refuse,
)
from ._hooks import (
    NO_METRICS,
    ConnectionHooks,
    MetricsHooks,
)
from ._loader import (
    handler_path,
    load_handler,
)
from ._logs import (
    LOG_FORMATS,
    MAX_FIELD,
    ConnectionContext,
    ContextFilter,
    JsonFormatter,
    LogfmtFormatter,
    TextFormatter,
    configure_logging,
    connection_context,
    current_connection,
    ensure_connection_context,
    log_level,
)
from ._loops import (
    LOOP_CHOICES,
    LoopName,
    exit_past_stuck_threads,
    loop_factory,
    resolve_loop,
    run_async,
)
from ._output import (
    Emitter,
    OutputQueue,
)
from ._streams import (
    ByteReader,
    ByteWriter,
    PushReader,
    PushStreamReader,
    Receiver,
    open_unix_connection,
    start_unix_server,
)
from ._watchdog import (
    DEFAULT_WARN_BLOCKED,
    LoopWatchdog,
)

__all__ = [
    "Agent",
    "ByteReader",
    "ByteWriter",
    "ConnectionContext",
    "ConnectionHooks",
    "ContextFilter",
    "DEFAULT_MAX_BACKLOG",
    "DEFAULT_MAX_OUTPUT",
    "DEFAULT_STOP_TIMEOUT",
    "DEFAULT_WARN_BLOCKED",
    "Emitter",
    "HandOff",
    "JsonFormatter",
    "LOG_FORMATS",
    "LOOP_CHOICES",
    "LogfmtFormatter",
    "LoopName",
    "LoopWatchdog",
    "MAX_FIELD",
    "MetricsHooks",
    "NO_METRICS",
    "OutputQueue",
    "PushReader",
    "PushStreamReader",
    "Receiver",
    "TextFormatter",
    "configure_logging",
    "connection_context",
    "create_handler",
    "current_connection",
    "ensure_connection_context",
    "exit_past_stuck_threads",
    "handler_path",
    "load_handler",
    "log_level",
    "loop_factory",
    "open_unix_connection",
    "prepare_handler",
    "refuse",
    "resolve_loop",
    "run_async",
    "start_unix_server",
]
