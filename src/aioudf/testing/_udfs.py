"""The kit's UDFs and binary: what :class:`~aioudf.testing.Kapacitord` configures and runs.

How a UDF is declared to the hermetic kapacitord (:class:`ProcessUDF`,
:class:`SocketUDF`, :class:`ServedUDF`, a Handler class or ``"module:Class"``
through :func:`handler_process`), the socket UDFs the kit serves in this
process, and where the ``kapacitord`` binary is found
(:func:`find_kapacitord`). Re-exported by ``aioudf.testing.kapacitord``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import os
import shutil
import socket
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, KapacitordError, KapacitordNotFound
from ..runtime._loader import load_handler
from ..runtime._logs import ContextFilter, LogfmtFormatter
from ..serving._server import UnixServer
from ..toolkit._handler import BaseHandler

__all__ = [
    "KAPACITORD_ENV",
    "ProcessUDF",
    "ServedUDF",
    "SocketUDF",
    "UDFSpec",
    "find_kapacitord",
    "free_port",
    "handler_process",
    "locate_kapacitord",
]

#: The environment variable naming the ``kapacitord`` binary.
KAPACITORD_ENV = "AIOUDF_KAPACITORD"

HOW_TO_GET = (
    "get kapacitord (Kapacitor 1.4 or later) from "
    "https://portal.influxdata.com/downloads/ or your distribution, then put it on "
    f"PATH, set {KAPACITORD_ENV}=/path/to/kapacitord, or pass --kapacitord=PATH to pytest"
)


# ---- the binary ---------------------------------------------------------------


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_kapacitord(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The ``kapacitord`` binary: ``explicit``, else ``$AIOUDF_KAPACITORD``, else on ``PATH``.

    Returns None when there is none. A path given explicitly or in the
    environment that is not an executable file raises
    :class:`~aioudf.ConfigError` (a typo is not "no Kapacitor here").
    """
    for given, origin in ((explicit, "the path given"), (os.environ.get(KAPACITORD_ENV), None)):
        if given is None or given == "":
            continue
        path = Path(given).expanduser()
        if not _executable(path):
            where = origin or f"{KAPACITORD_ENV}"
            raise ConfigError(f"{where} ({path}) is not an executable kapacitord")
        return path.resolve()
    found = shutil.which("kapacitord")
    return Path(found).resolve() if found else None


def locate_kapacitord(explicit: str | os.PathLike[str] | None = None) -> Path:
    """:func:`find_kapacitord`, or raise :class:`~aioudf.errors.KapacitordNotFound` saying how."""
    binary = find_kapacitord(explicit)
    if binary is None:
        raise KapacitordNotFound(f"no kapacitord found: {HOW_TO_GET}")
    return binary


def free_port() -> int:
    """A TCP port of ``127.0.0.1`` free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


# ---- the UDFs -----------------------------------------------------------------


@dataclass
class ProcessUDF:
    """``[udf.functions.NAME]`` for a process UDF: Kapacitor starts ``prog args``.

    ``env`` is the whole environment Kapacitor gives it. ``timeout`` is
    Kapacitor's keepalive timeout (a keepalive every half of it).
    """

    prog: str
    args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: str = "10s"

    def toml(self, name: str) -> str:
        lines = [
            f"  [udf.functions.{name}]",
            f"    prog = {_toml_string(self.prog)}",
            f"    args = [{', '.join(_toml_string(a) for a in self.args)}]",
            f"    timeout = {_toml_string(self.timeout)}",
        ]
        if self.env:
            lines.append(f"    [udf.functions.{name}.env]")
            lines.extend(f"      {key} = {_toml_string(val)}" for key, val in self.env.items())
        return "\n".join(lines)


@dataclass
class SocketUDF:
    """``[udf.functions.NAME]`` for a socket UDF served at ``path`` (it must listen first)."""

    path: str
    timeout: str = "10s"

    def toml(self, name: str) -> str:
        return (
            f"  [udf.functions.{name}]\n"
            f"    socket = {_toml_string(self.path)}\n"
            f"    timeout = {_toml_string(self.timeout)}"
        )


@dataclass
class ServedUDF:
    """A socket UDF the kit serves itself, in this process, for the daemon's life.

    ``handler``: a Handler class (or factory), or ``"module:Class"``. It runs
    on an event loop of its own in a thread, so a test may use a class
    defined inside it, and a debugger or coverage sees it. Its log records
    (any logger, while it serves a connection) are kept as one logfmt line
    each, as a process UDF writes them to Kapacitor: see
    :meth:`Kapacitord.udf_log`.
    """

    handler: Callable[[], BaseHandler] | str
    timeout: str = "10s"


#: What a ``udfs`` mapping value may be.
UDFSpec = ProcessUDF | SocketUDF | ServedUDF | type[BaseHandler] | str | Sequence[str]


def _python_path() -> str:
    return os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))


def handler_process(handler: type[BaseHandler] | str, *, timeout: str = "10s") -> ProcessUDF:
    """A process UDF running ``handler`` with this interpreter: ``python -m aioudf run SPEC``.

    ``handler`` is a class importable by its module name, or
    ``"module:Class"`` / ``"path/file.py:Class"``. The process imports it
    with this process's ``sys.path``.
    """
    if isinstance(handler, str):
        spec = handler
        target, sep, attribute = spec.rpartition(":")
        if target.endswith(".py") or os.sep in target:  # Kapacitor's cwd is not ours
            spec = f"{os.path.abspath(target)}{sep}{attribute}"
    else:
        module, name = handler.__module__, handler.__qualname__
        if "<locals>" in name or module == "__main__":
            raise TypeError(
                f"{name} cannot run as a process UDF: the process must import it, and it "
                f"is defined {'inside a function' if '<locals>' in name else 'in __main__'}; "
                "define it at module level, or give ServedUDF(...) to serve it in this process"
            )
        spec = f"{module}:{name}"
    env = {"PYTHONPATH": _python_path(), "PYTHONUNBUFFERED": "1"}
    for key in ("PATH", "HOME", "LANG", "LC_ALL", "TZ"):  # Kapacitor passes only ``env``
        if key in os.environ:
            env[key] = os.environ[key]
    return ProcessUDF(sys.executable, ["-m", "aioudf", "run", spec], env=env, timeout=timeout)


def _as_udf(name: str, udf: Any) -> ProcessUDF | SocketUDF | ServedUDF:
    if isinstance(udf, (ProcessUDF, SocketUDF, ServedUDF)):
        return udf
    if isinstance(udf, str) or (isinstance(udf, type) and issubclass(udf, BaseHandler)):
        return handler_process(udf)
    if isinstance(udf, (list, tuple)) and udf and all(isinstance(a, str) for a in udf):
        return ProcessUDF(udf[0], list(udf[1:]), env=dict(os.environ))
    raise TypeError(
        f"UDF {name!r}: give a Handler class, 'module:Class', an argv list, "
        f"ProcessUDF, SocketUDF or ServedUDF, not {udf!r}"
    )


# ---- UDFs served here --------------------------------------------------------

# The name of the served UDF a connection belongs to (inherited by its tasks
# and worker threads), so that its log records are told from the test's own.
_SERVED: contextvars.ContextVar[str | None] = contextvars.ContextVar("aioudf_served", default=None)


class _LogKeeper(logging.Handler):
    """Keeps, per served UDF, its log records as logfmt lines."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: dict[str, list[str]] = {}
        self.addFilter(ContextFilter())
        self.setFormatter(LogfmtFormatter())

    def filter(self, record: logging.LogRecord) -> bool:
        return _SERVED.get() is not None and bool(super().filter(record))

    def emit(self, record: logging.LogRecord) -> None:
        name = _SERVED.get()
        if name is not None:
            self.lines.setdefault(name, []).append(self.format(record))


class _Served:
    """One :class:`ServedUDF` on a unix socket, served by a thread with its own loop."""

    def __init__(self, name: str, udf: ServedUDF, path: Path) -> None:
        self.name = name
        factory = load_handler(udf.handler) if isinstance(udf.handler, str) else udf.handler
        self.factory = factory
        self.path = path
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name=f"aioudf-udf-{name}", daemon=True)

    def start(self, timeout: float) -> None:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise KapacitordError(f"UDF {self.name!r} did not start serving in {timeout:g} s")
        if self._error is not None:
            raise KapacitordError(f"UDF {self.name!r} cannot be served: {self._error}")

    def _run(self) -> None:
        _SERVED.set(self.name)
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start() (or lost after stop())
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        server = UnixServer(self.factory, self.path, handover=False)
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await server.start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await server.shutdown(grace=1.0)

    def stop(self) -> None:
        if self._thread.ident is None:
            return  # never started
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # its loop has ended already
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


class _RootLevel:
    """While UDFs are served here, the root logger passes INFO records on (to be kept)."""

    _lock = threading.Lock()
    _users = 0
    _saved = logging.NOTSET

    @classmethod
    def acquire(cls, keeper: logging.Handler) -> None:
        with cls._lock:
            root = logging.getLogger()
            if cls._users == 0:
                cls._saved = root.level
                if root.getEffectiveLevel() > logging.INFO:
                    root.setLevel(logging.INFO)
            cls._users += 1
            root.addHandler(keeper)

    @classmethod
    def release(cls, keeper: logging.Handler) -> None:
        with cls._lock:
            root = logging.getLogger()
            root.removeHandler(keeper)
            cls._users -= 1
            if cls._users == 0:
                root.setLevel(cls._saved)
