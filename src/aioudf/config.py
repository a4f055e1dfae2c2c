"""The settings of agents and servers: one typed configuration, checked once.

A :class:`Config` is built when a server, a process UDF or an agent is
created, from keyword arguments or command-line flags, and every value is
checked there: a misspelt name (``UnixServer(H, path, max_backlgo=5)``), a
negative time or a size limit below 1 raises :class:`~aioudf.ConfigError`
naming the setting, before anything is bound or read. The connections then
share the checked object. Each limit bounds the memory of one connection:

``max_frame_size``
    largest request accepted, in bytes; a larger one ends the connection.
``max_backlog``
    requests read ahead of the handler before reading pauses.
``max_output``
    bytes of encoded responses queued before ``emit()`` waits.
``read_size``
    bytes asked of the transport per read.
``stop_timeout``
    seconds ``Handler.stop()`` may take before it is cancelled.
``close_timeout``
    seconds the final flush may take when Kapacitor stops reading at close.

and for a socket server:

``mode``
    the socket file's permissions (default 0o660: not world-writable).
``grace``
    seconds open connections get to end on their own at shutdown, before
    the server ends them.
``backlog``
    connections the kernel queues before they are accepted.
``warn_blocked``
    seconds the event loop may be blocked before a warning is logged; 0: no
    check. Left ``None``, it is :data:`DEFAULT_WARN_BLOCKED` where aioudf
    owns the event loop (:func:`aioudf.serve`, :func:`aioudf.run`, the
    command line, a supervisor's workers) and off in an embedded
    :class:`~aioudf.UnixServer` or :class:`~aioudf.lowlevel.Agent`, whose
    service owns the loop (:meth:`Config.blocked_threshold`).

Keyword settings are typed: the functions that take them
(``UnixServer(H, path, max_backlog=5)``, ``serve``, ``run``, ``Agent``)
declare them as ``**settings: Unpack[ServerSettings]`` (or the narrower
:class:`ConnectionSettings`, :class:`ProcessSettings`), so mypy and an
editor know every name and its type, and a misspelt one is an error before
the code runs as well as when it does.

A process that starts another (a supervisor its workers) passes the
checked object on as JSON (:meth:`Config.to_dict`, :meth:`Config.from_dict`),
never as command-line flags to parse again.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypedDict

from .errors import ConfigError
from .wire._frames import DEFAULT_MAX_FRAME_SIZE

if TYPE_CHECKING:
    # (typing.Unpack is 3.11's; type checkers bundle typing_extensions.)
    from typing_extensions import Unpack

__all__ = [
    "DEFAULT_BACKLOG",
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_GRACE",
    "DEFAULT_MAX_BACKLOG",
    "DEFAULT_MAX_FRAME_SIZE",
    "DEFAULT_MAX_OUTPUT",
    "DEFAULT_READ_SIZE",
    "DEFAULT_SOCKET_MODE",
    "DEFAULT_STOP_TIMEOUT",
    "DEFAULT_WARN_BLOCKED",
    "Config",
    "ConnectionSettings",
    "ProcessSettings",
    "ServerSettings",
]

#: Requests queued between the reader and the handler before reading pauses.
DEFAULT_MAX_BACKLOG = 10_000
#: Bytes of encoded output queued before ``emit()`` waits.
DEFAULT_MAX_OUTPUT = 1024 * 1024
#: Bytes asked of the transport per read.
DEFAULT_READ_SIZE = 256 * 1024
#: Seconds ``Handler.stop()`` may take before it is cancelled.
DEFAULT_STOP_TIMEOUT = 10.0
#: Seconds the final flush may take when the peer stops reading at close.
DEFAULT_CLOSE_TIMEOUT = 10.0
#: Socket file permissions: owner and group may connect, others may not.
DEFAULT_SOCKET_MODE = 0o660
#: Seconds open connections get to end on their own at shutdown. Kapacitor
#: closes a task's connection only when the task stops, so after this the
#: server ends them itself (see :meth:`aioudf.UnixServer.shutdown`). Short
#: enough that a SIGTERM ends in exit 0 well within the 10 s Docker and
#: systemd give before SIGKILL.
DEFAULT_GRACE = 2.0
#: Connections the kernel queues before they are accepted (Kapacitor opens
#: one per task node, all at once when it starts).
DEFAULT_BACKLOG = 1024
#: Seconds the loop may be blocked before a warning where aioudf owns the
#: loop (well under Kapacitor's keepalive timeout, 10 s unless configured
#: otherwise).
DEFAULT_WARN_BLOCKED = 1.0


class ConnectionSettings(TypedDict, total=False):
    """The settings of one connection, as keywords (``Agent(..., max_output=4096)``)."""

    max_frame_size: int
    max_backlog: int
    max_output: int
    read_size: int
    stop_timeout: float
    close_timeout: float


class ProcessSettings(ConnectionSettings, total=False):
    """A process UDF's settings as keywords (``aioudf.run(H, warn_blocked=0.5)``)."""

    warn_blocked: float | None


class ServerSettings(ProcessSettings, total=False):
    """A socket server's settings as keywords: every :class:`Config` field."""

    mode: int
    grace: float
    backlog: int


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of an agent and a server, checked when it is built.

    Build it with keywords (``Config(max_backlog=100)``) or from another one
    with :meth:`with_settings`; see the module documentation for what each
    setting means. Every default is here, once.
    """

    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    max_backlog: int = DEFAULT_MAX_BACKLOG
    max_output: int = DEFAULT_MAX_OUTPUT
    read_size: int = DEFAULT_READ_SIZE
    stop_timeout: float = DEFAULT_STOP_TIMEOUT
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT
    mode: int = DEFAULT_SOCKET_MODE
    grace: float = DEFAULT_GRACE
    backlog: int = DEFAULT_BACKLOG
    warn_blocked: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_frame_size", "max_backlog", "max_output", "read_size", "backlog"):
            _count(name, getattr(self, name))
        for name in ("stop_timeout", "close_timeout", "grace"):
            _seconds(name, getattr(self, name))
        if self.warn_blocked is not None:
            _seconds("warn_blocked", self.warn_blocked)
        mode = self.mode
        if type(mode) is not int or not 0 <= mode <= 0o7777:
            raise ConfigError(
                f"invalid setting mode={mode!r}: give file permissions as an int, like 0o660"
            )

    @classmethod
    def of(cls, config: Config | None = None, /, **settings: Unpack[ServerSettings]) -> Config:
        """``config`` (or the defaults) with ``settings`` changed, every name checked."""
        base = config if config is not None else cls()
        return base.with_settings(**settings) if settings else base

    def with_settings(self, **settings: Unpack[ServerSettings]) -> Config:
        """A copy with ``settings`` changed; an unknown name is a :class:`~aioudf.ConfigError`."""
        _check_names(settings)
        return dataclasses.replace(self, **settings)

    def blocked_threshold(self, *, owns_loop: bool) -> float:
        """Seconds the loop may be blocked before a warning; 0: no watchdog.

        ``owns_loop``: aioudf runs the event loop (serve, run, a worker), so
        an unset ``warn_blocked`` is :data:`DEFAULT_WARN_BLOCKED`; embedded,
        it is off unless asked for.
        """
        if self.warn_blocked is None:
            return DEFAULT_WARN_BLOCKED if owns_loop else 0.0
        return self.warn_blocked

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict, for a process this one starts (:meth:`from_dict`)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, settings: object) -> Config:
        """The :class:`Config` that :meth:`to_dict` gave (decoded from JSON), checked again."""
        if not isinstance(settings, dict):
            raise ConfigError(f"settings must be a mapping of names to values, not {settings!r}")
        _check_names(settings)
        return cls(**settings)


def _check_names(settings: Mapping[str, object]) -> None:
    known = [f.name for f in dataclasses.fields(Config)]
    for name in settings:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"unknown setting {name!r}{hint}; the settings are: {', '.join(known)}"
            )


def _count(name: str, value: Any) -> None:
    if type(value) is not int or value < 1:
        raise ConfigError(f"invalid setting {name}={value!r}: must be a whole number of 1 or more")


def _seconds(name: str, value: Any) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigError(f"invalid setting {name}={value!r}: must be 0 or more seconds")
