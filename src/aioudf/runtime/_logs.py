"""Logs that stay whole, and the connection they are about.

Kapacitor copies each line a process UDF writes on stderr into its own log
as a separate entry (``msg="UDF log" ... text="..."``), so a multi-line
traceback would arrive as a dozen entries, interleaved with other tasks'.
Here every event is **one line**: by default in logfmt, the format of
Kapacitor's own log (``ts=... lvl=... msg=...``), with a traceback folded
into the ``exc`` field (newlines escaped). ``json`` gives one JSON object per
line; ``text`` is the multi-line format for a terminal.

Every record logged while a connection is served carries its connection id
(``conn``) and, once Kapacitor's Init has named them, its ``task`` and
``node``: the agent keeps them in a context variable, so a handler's own
``logging`` calls (``self.log.info(...)``), the tasks it starts and the
worker threads of a :class:`~aioudf.BlockingHandler` get them too, with no
logger passed around. :class:`ContextFilter` copies them onto the record;
:func:`configure_logging` installs it for the command line, and an embedding
service may add it to its own handlers.

Logs go to stderr only: for a process UDF, stdout is the frame stream.
Embedded use (an :class:`~aioudf.UnixServer` inside someone's service)
configures nothing: the ``aioudf`` logger propagates to what the service set up.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
import logging
import re
import sys
from collections.abc import Iterator

__all__ = [
    "LOG_FORMATS",
    "MAX_FIELD",
    "ConnectionContext",
    "ContextFilter",
    "JsonFormatter",
    "LogfmtFormatter",
    "TextFormatter",
    "configure_logging",
    "connection_context",
    "current_connection",
    "ensure_connection_context",
    "log_level",
]

#: The values ``--log-format`` accepts.
LOG_FORMATS = ("logfmt", "json", "text")
#: The values ``--log-level`` accepts (in any case; ``warn``, Kapacitor's name, too).
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def log_level(text: str) -> str:
    """The level ``text`` names, in any case (``debug``, ``DEBUG``, ``warn``); else ValueError."""
    level = text.strip().upper()
    level = "WARNING" if level == "WARN" else level
    if level not in LOG_LEVELS:
        raise ValueError(
            f"unknown log level {text!r}; expected one of {', '.join(LOG_LEVELS)} (any case)"
        )
    return level


class ConnectionContext:
    """Who a log record is about: a connection, and the task node it serves.

    One object per connection, shared (not copied) by every task and thread
    that serves it, so ``task`` and ``node``, filled in at Init, reach tasks
    started before it.
    """

    __slots__ = ("conn", "node", "task")

    def __init__(self, conn: str) -> None:
        self.conn = conn
        self.task = ""
        self.node = ""

    def __repr__(self) -> str:
        return f"ConnectionContext(conn={self.conn!r}, task={self.task!r}, node={self.node!r})"


_CONNECTION: contextvars.ContextVar[ConnectionContext | None] = contextvars.ContextVar(
    "aioudf_connection", default=None
)


def current_connection() -> ConnectionContext | None:
    """The connection being served by the calling task or thread, if any."""
    return _CONNECTION.get()


@contextlib.contextmanager
def connection_context(conn: str) -> Iterator[ConnectionContext]:
    """Mark everything logged inside the block as about connection ``conn``.

    Tasks created inside the block (and worker threads started through
    ``anyio.to_thread`` or ``asyncio.to_thread``) inherit it.
    """
    context = ConnectionContext(conn)
    token = _CONNECTION.set(context)
    try:
        yield context
    finally:
        _CONNECTION.reset(token)


def ensure_connection_context(conn: str) -> contextlib.AbstractContextManager[ConnectionContext]:
    """The current connection's context if there is one, else a new one for ``conn``.

    The agent enters it, so records carry a connection id even when no
    server set one up (an :class:`~aioudf.Agent` used directly).
    """
    context = _CONNECTION.get()
    if context is not None:
        return contextlib.nullcontext(context)
    return connection_context(conn)


class ContextFilter(logging.Filter):
    """Copy the current connection's ``conn``, ``task`` and ``node`` onto each record.

    Attach it to a handler (``handler.addFilter(ContextFilter())``): handler
    filters run in the thread that logs, where the context is the caller's.
    Records logged outside any connection get empty strings; a record that
    names its ``conn`` in ``extra=`` keeps it (and its ``task`` and ``node``).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        context = _CONNECTION.get()
        # A record may name its connection itself (``extra={"conn": ...}``):
        # one logged about a connection from outside its tasks (a hand-over).
        if not getattr(record, "conn", ""):
            if context is None:
                record.conn = record.task = record.node = ""
            else:
                record.conn = context.conn
                record.task = context.task
                record.node = context.node
        else:
            record.task = getattr(record, "task", "")
            record.node = getattr(record, "node", "")
        return True


# Attributes every LogRecord has: anything else came from ``extra=`` and is
# written as a field of its own.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "conn",
    "task",
    "node",
    "taskName",
}

# Kapacitor's level names (the Go logger's).
_LEVELS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warn",
    logging.ERROR: "error",
    logging.CRITICAL: "crit",
}


# Kapacitor reads a process UDF's stderr with a line scanner that gives up on
# a line over 64 KiB: it forwards no later line (measured with 1.4.1), and
# once the pipe is full the UDF blocks on its next write. So no field value
# goes over this many characters: a longer one keeps its head and its tail
# (where a traceback names the exception) around a note of what was cut.
MAX_FIELD = 8192


def _cap(text: str) -> str:
    if len(text) <= MAX_FIELD:
        return text
    cut = len(text) - MAX_FIELD
    head = MAX_FIELD // 4
    return f"{text[:head]} [...{cut} characters cut...] {text[head + cut :]}"


def _level(record: logging.LogRecord) -> str:
    return _LEVELS.get(record.levelno) or record.levelname.lower()


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _OneLineFormatter(logging.Formatter):
    """Base of the one-line formats: the fields of a record, in a fixed order."""

    def fields(self, record: logging.LogRecord) -> list[tuple[str, object]]:
        """``ts lvl msg logger pid conn task node``, then ``extra=`` fields, then ``exc``.

        ``pid`` is on every line: during a hand-over the old and the new
        process write to the same stderr. Text values longer than
        :data:`MAX_FIELD` characters are shortened.
        """
        fields: list[tuple[str, object]] = [
            ("ts", _timestamp(record)),
            ("lvl", _level(record)),
            ("msg", record.getMessage()),
            ("logger", record.name),
            ("pid", record.process),
        ]
        for key in ("conn", "task", "node"):
            value = getattr(record, key, "")
            if value:
                fields.append((key, value))
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                fields.append((key, value))
        if record.exc_info and record.exc_info[0] is not None:
            fields.append(("exc", self.formatException(record.exc_info).rstrip("\n")))
        if record.stack_info:
            fields.append(("stack", self.formatStack(record.stack_info).rstrip("\n")))
        return [(key, _cap(value) if isinstance(value, str) else value) for key, value in fields]


# A logfmt value needs quotes if it is empty or holds a space, a quote, an
# equals sign or any control character.
_NEEDS_QUOTES = re.compile(r'[\s"=\\\x00-\x1f\x7f]|^$')
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_TO_ESCAPE = re.compile(r'[\\"\x00-\x1f\x7f]')


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _ESCAPES.get(char) or f"\\u{ord(char):04x}"


def logfmt_value(value: object) -> str:
    """One logfmt value: bare if it can be, else double-quoted with escapes."""
    text = value if isinstance(value, str) else str(value)
    if _NEEDS_QUOTES.search(text) is None:
        return text
    return '"' + _TO_ESCAPE.sub(_escape, text) + '"'


def _logfmt_key(key: str) -> str:
    return re.sub(r'[\s="\x00-\x1f]', "_", key) or "_"


class LogfmtFormatter(_OneLineFormatter):
    """``ts=... lvl=... msg=...``: Kapacitor's own log format, one line per record."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(
            f"{_logfmt_key(key)}={logfmt_value(value)}" for key, value in self.fields(record)
        )


class JsonFormatter(_OneLineFormatter):
    """One JSON object per line, with the same fields as :class:`LogfmtFormatter`."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(dict(self.fields(record)), default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """For a terminal: a readable line, the connection in brackets, tracebacks as usual."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s[%(process)d]%(where)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"{key}={value}"
            for key in ("task", "node", "conn")
            if (value := getattr(record, key, ""))
        ]
        record.where = f" [{' '.join(parts)}]" if parts else ""
        return super().format(record)


def make_formatter(log_format: str) -> logging.Formatter:
    """The formatter for a ``--log-format`` value."""
    if log_format == "logfmt":
        return LogfmtFormatter()
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return TextFormatter()
    raise ValueError(f"unknown log format {log_format!r}; expected one of {', '.join(LOG_FORMATS)}")


def configure_logging(level: str | int = "INFO", log_format: str = "logfmt") -> None:
    """Send log records to stderr, one line each, unless the root logger is configured.

    ``log_format`` is ``logfmt`` (default), ``json`` or ``text``. Records carry
    the connection context (see :class:`ContextFilter`).
    """
    formatter = make_formatter(log_format)  # a bad format fails even if nothing is installed
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    root.setLevel(log_level(level) if isinstance(level, str) else level)
