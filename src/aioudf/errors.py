"""The exceptions aioudf raises, in one family, all defined here.

Everything derives from :class:`AioudfError`. Errors that end a connection
carry the text that goes into the ErrorResponse sent to Kapacitor, so the
message of each one is written for the person reading Kapacitor's task error.
Every message is one line naming the cause::

    AioudfError
    ├── ProtocolError            the peer broke the wire contract
    │   └── FrameError           the bytes cannot be split into frames
    │       └── FrameTooLarge    a frame over the size limit
    ├── InitError                a handler refuses Init (raise it in init())
    │   └── OptionError          options do not match the declaration
    ├── RestoreError             a handler refuses a snapshot (raise it in restore())
    ├── ConnectionFailed         a connection ended with an ErrorResponse
    ├── ConfigError              an unknown or invalid setting (also a ValueError)
    ├── DeclarationError         a handler class declares what cannot work (also a TypeError)
    ├── HandlerLoadError         the handler named on a command line cannot be loaded
    ├── StateError               a protocol object used out of turn, or bad exported state
    │   └── EmitError            a handler emitted data out of turn (a batch not nested...)
    ├── SocketPathError          a socket path that cannot be served on
    ├── ActivationError          sockets passed by systemd (LISTEN_FDS) that cannot be served
    ├── HandoverError            taking over from, or handing over to, another server failed
    │   └── NothingToTakeOver    no server answers on the control socket
    ├── StdioError               a process UDF's stdin or stdout is closed
    ├── CompatError              ``aioudf compat`` cannot run a script (see aioudf.compat)
    ├── MissingDependency        an optional dependency is not installed
    │   ├── MissingExtra         numpy or pandas (the aioudf[numpy]/[pandas] extras) missing
    │   ├── MetricsUnavailable   metrics asked for without prometheus_client
    │   └── KapacitordNotFound   no kapacitord binary for an end-to-end test (aioudf.testing)
    ├── StartupError             a @startup loader failed
    ├── LineProtocolError        invalid line protocol (also a ValueError)
    ├── RecordingError           a recording that cannot be read (also a ValueError)
    ├── ReplayError              ``aioudf replay`` cannot do what it was asked
    ├── KapacitordError          a real kapacitord under test did not do what was asked
    │                            (also an AssertionError: a test fails, not errors)
    └── UDFError                 the UDF under test failed the task (aioudf.testing)
        ├── InitFailed           InitResponse with success=false
        ├── RestoreFailed        RestoreResponse with success=false
        ├── UDFUnreachable       no such socket, no such program: no connection at all
        └── KeepaliveTimeout     no response within the timeout

Each is also importable from the module that raises it (``aioudf.serving``,
``aioudf.formats``, ``aioudf.formats``, ``aioudf.testing``...).

This module is the leaf of the package: it imports nothing of aioudf, not
even for annotations, so that every other module may import it. Where an
error carries a value of a higher layer (``UDFError.result``, the test kit's
:class:`~aioudf.testing.Result`), the type is a :class:`typing.Protocol`
written here that the value fits (:class:`TaskOutput`, :class:`OutputPoint`,
:class:`OutputBatch`); mypy checks the fit where the test kit sets it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

__all__ = [
    "ActivationError",
    "AioudfError",
    "CompatError",
    "ConfigError",
    "ConnectionFailed",
    "DeclarationError",
    "EmitError",
    "FrameError",
    "FrameTooLarge",
    "HandlerLoadError",
    "HandoverError",
    "InitError",
    "InitFailed",
    "KapacitordError",
    "KapacitordNotFound",
    "KeepaliveTimeout",
    "LineProtocolError",
    "MetricsUnavailable",
    "MissingDependency",
    "MissingExtra",
    "NothingToTakeOver",
    "OptionError",
    "ProtocolError",
    "RecordingError",
    "ReplayError",
    "RestoreError",
    "RestoreFailed",
    "SocketPathError",
    "StartupError",
    "StateError",
    "StdioError",
    "UDFError",
    "UDFUnreachable",
]


# ---- the types of values errors carry (structural: no import) ---------------


class OutputPoint(Protocol):
    """A point a UDF emitted, as the test kit reads it: :class:`aioudf.testing.DataPoint`."""

    @property
    def name(self) -> str: ...
    @property
    def fields(self) -> dict[str, float | int | str | bool]: ...
    @property
    def tags(self) -> dict[str, str]: ...
    @property
    def time(self) -> int: ...
    @property
    def group(self) -> str: ...
    @property
    def dimensions(self) -> tuple[str, ...]: ...
    @property
    def by_name(self) -> bool: ...
    @property
    def database(self) -> str: ...
    @property
    def retention_policy(self) -> str: ...
    def to_message(self) -> Any:
        """The protobuf Point (:class:`aioudf.Point`)."""

    def replace(self, **changes: object) -> OutputPoint:
        """A copy with some constructor arguments changed."""


class OutputBatch(Protocol):
    """A batch a UDF emitted, as the test kit reads it: :class:`aioudf.testing.Batch`."""

    @property
    def name(self) -> str: ...
    @property
    def group(self) -> str: ...
    @property
    def tags(self) -> dict[str, str]: ...
    @property
    def tmax(self) -> int: ...
    @property
    def by_name(self) -> bool: ...
    @property
    def size(self) -> int | None: ...
    @property
    def points(self) -> Sequence[OutputPoint]: ...
    def __len__(self) -> int: ...
    def begin(self) -> Any:
        """The protobuf BeginBatch (:class:`aioudf.BeginBatch`)."""

    def end(self) -> Any:
        """The protobuf EndBatch (:class:`aioudf.EndBatch`)."""

    def point_messages(self) -> list[Any]:
        """The points as protobuf Points, as Kapacitor sends them inside a batch."""


class TaskOutput(Protocol):
    """What a UDF emitted on one task connection: :class:`aioudf.testing.Result`."""

    # Each item is an OutputPoint or an OutputBatch; typed Any so that code
    # narrowing with isinstance(item, aioudf.testing.Batch) sees the else
    # branch as a point, as it does on the test kit's own Result.
    @property
    def items(self) -> Sequence[Any]: ...
    @property
    def snapshot(self) -> bytes | None: ...
    @property
    def stderr(self) -> str: ...
    @property
    def points(self) -> Sequence[OutputPoint]: ...
    @property
    def batches(self) -> Sequence[OutputBatch]: ...


# ---- the exceptions -----------------------------------------------------------


class AioudfError(Exception):
    """Base class of every error aioudf raises on purpose."""


class ProtocolError(AioudfError):
    """The peer broke the wire contract: bad framing, bad protobuf, bad order."""


class FrameError(ProtocolError):
    """The byte stream cannot be split into frames (bad or truncated header)."""


class FrameTooLarge(FrameError):
    """A frame header announced a body larger than the configured maximum."""

    def __init__(self, size: int, limit: int, *, at_least: bool = False) -> None:
        # ``at_least``: the header was not read to its end, ``size`` is what
        # its first bytes already announce.
        announced = f"at least {size}" if at_least else str(size)
        super().__init__(
            f"frame of {announced} bytes exceeds the maximum frame size of {limit} bytes"
        )
        self.size = size
        self.limit = limit


class ConfigError(AioudfError, ValueError):
    """A setting is unknown or has a value that cannot work (named in the message).

    Raised when the server, process UDF or agent is built, never later.
    """


class DeclarationError(AioudfError, TypeError):
    """A handler class declares something that cannot work, such as a default of the wrong type.

    Raised when the class is defined (so at import). ``reason`` says what is
    wrong; ``filename`` and ``lineno`` where the declaration is written, when
    known (the message ends with them: a traceback shows the class line).
    """

    def __init__(self, reason: str, *, filename: str = "", lineno: int = 0) -> None:
        super().__init__(f"{reason} (at {filename}:{lineno})" if filename else reason)
        self.reason = reason
        self.filename = filename
        self.lineno = lineno


class HandlerLoadError(AioudfError):
    """The handler named on a command line (``module:Class``) cannot be loaded.

    The message is one line: ``cannot load SPEC: file.py:LINE: Type: text``
    when the user's module failed at import. ``error`` is what the module
    raised, its traceback cut to start at the user's first frame, when that
    traceback says more than the message (the error was raised below the
    module's own line); else None. Log it as the record's ``exc_info``.
    """

    def __init__(self, message: str, *, error: BaseException | None = None) -> None:
        super().__init__(message)
        self.error = error


class StateError(AioudfError):
    """A protocol object was asked for what its state does not allow.

    Our side's mistake, where :class:`ProtocolError` is the peer's: a reply
    nobody asked for, a connection state exported inside a batch, bytes that
    are not an exported state.
    """


class EmitError(StateError):
    """A handler emitted data the protocol does not allow at that moment.

    Raised by ``emit()`` itself, before anything is queued: an EndBatch with
    no batch open, a BeginBatch inside an open batch, a Point outside a
    batch from a handler that provides a BATCH edge, or a batch from one
    that provides a STREAM edge. Nothing of the refused message is sent; a
    handler that lets it propagate ends its connection (and no other) with
    an ErrorResponse naming it.
    """


class InitError(AioudfError):
    """Raise from ``Handler.init`` to answer Init with ``success=false``.

    The message becomes the InitResponse's ``error``, which Kapacitor shows as
    the task's error. Use it for invalid option combinations and the like.
    """


class OptionError(InitError):
    """Options sent with Init do not match what the handler declared."""


class RestoreError(AioudfError):
    """Raise from ``Handler.restore`` to answer Restore with ``success=false``."""


class ConnectionFailed(AioudfError):
    """A UDF connection ended with an error (after an ErrorResponse, if possible).

    ``reason`` is the text that was sent to Kapacitor in the ErrorResponse.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SocketPathError(AioudfError):
    """The socket path cannot be used (in use, not a socket, too long...)."""


class StdioError(AioudfError):
    """A process UDF's stdin or stdout cannot carry frames (closed, for one)."""


class CompatError(AioudfError):
    """A script written for Kapacitor's Python agent cannot run under ``aioudf compat``.

    Not a file, not Python, never starts an Agent or a Server, or uses the
    agent's API in a way aioudf cannot serve; the message says which.
    """


class MissingDependency(AioudfError):
    """An optional dependency is not installed; the message says how to get it."""


class MissingExtra(MissingDependency, ImportError):
    """An optional extra (``aioudf[numpy]``, ``aioudf[pandas]``) is not installed."""


class StartupError(AioudfError):
    """A start-up loader (``@startup``) failed; the message names it and its error."""


class MetricsUnavailable(MissingDependency):
    """Metrics were asked for, but ``prometheus_client`` is not installed."""

    def __init__(self) -> None:
        super().__init__(
            "metrics need the prometheus_client package: pip install 'aioudf[metrics]'"
        )


class LineProtocolError(AioudfError, ValueError):
    """A line that is not valid line protocol.

    ``source`` and ``lineno`` say where (when known), ``line`` is the text.
    """

    def __init__(self, reason: str, line: str, *, source: str = "", lineno: int = 0) -> None:
        self.reason = reason
        self.line = line
        self.source = source
        self.lineno = lineno
        where = f"line {lineno}: " if lineno else ""
        if source and lineno:
            where = f"{source}:{lineno}: "
        shown = line if len(line) <= 120 else line[:117] + "..."
        if not shown.isprintable():  # a terminal is no place for raw control characters
            shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in shown)
        super().__init__(f"{where}invalid line protocol ({reason}): {shown}")


class RecordingError(AioudfError, ValueError):
    """A recording that cannot be read (further); the message says where."""

    def __init__(self, message: str, *, path: str, record: int = 0, line: int = 0) -> None:
        self.path = path
        self.record = record
        self.line = line
        super().__init__(f"{path}: {message}")


class ReplayError(AioudfError):
    """The replay could not be done as asked (before any data was sent)."""


class UDFError(AioudfError):
    """The UDF failed the task: ErrorResponse, unexpected close, bad response."""

    def __init__(self, text: str, *, stderr: str = "") -> None:
        super().__init__(text)
        #: The UDF's own words (the ErrorResponse text), or what went wrong.
        self.text = text
        #: The UDF's stderr, for a child process.
        self.stderr = stderr
        #: What the UDF emitted on the connection before it failed, if known.
        self.result: TaskOutput | None = None

    def __str__(self) -> str:
        if not self.stderr.strip():
            return self.text
        tail = "\n".join(self.stderr.rstrip().splitlines()[-20:])
        return f"{self.text}\n--- the UDF's stderr (last lines) ---\n{tail}"


class InitFailed(UDFError):
    """InitResponse came back with success=false; ``text`` is the UDF's error."""


class RestoreFailed(UDFError):
    """RestoreResponse came back with success=false; ``text`` is the UDF's error."""


class KeepaliveTimeout(UDFError):
    """No response at all within the timeout: Kapacitor fails the task."""


class UDFUnreachable(UDFError):
    """The UDF could not be reached at all: no socket at the path, no such program."""


class KapacitordNotFound(MissingDependency):
    """No ``kapacitord`` binary for an end-to-end test: the message says how to get one."""


class KapacitordError(AioudfError, AssertionError):
    """A kapacitord under test failed to start, refused a request, or showed no result in time.

    The message holds what Kapacitor answered or the tail of its log.
    """


class ActivationError(AioudfError):
    """The sockets a service manager passed (``LISTEN_FDS``) cannot be served."""


class HandoverError(AioudfError):
    """Taking over from, or handing over to, another server process failed."""


class NothingToTakeOver(HandoverError):
    """No server answers on the control socket: there is nothing to take over."""
