"""How the test client reaches a UDF: in process, over a socket, or a child process.

Each target opens *connections*: a pair of byte streams to one fresh UDF
instance, the way Kapacitor opens one per use (one for Info, one per task).

* :class:`InProcess` runs an :class:`~aioudf.Agent` with a new handler in this
  event loop, connected by in-memory pipes: no socket, no subprocess.
* :class:`Socket` connects to a socket UDF that is already serving.
* :class:`Command` spawns the UDF program (a new process per connection, as
  Kapacitor does) and keeps its stderr.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import shutil
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..config import Config
from ..errors import ConnectionFailed, UDFUnreachable
from ..runtime._agent import Agent
from ..toolkit._handler import BaseHandler

__all__ = ["Command", "InProcess", "MemoryPipe", "Socket", "Target", "UDFConnection"]


class UDFConnection(Protocol):
    """Two byte streams to one UDF instance, plus how to end them."""

    async def read(self, n: int) -> bytes: ...
    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    async def close_write(self) -> None:
        """Half-close: the UDF sees end of input (Kapacitor's stop)."""

    async def wait_closed(self) -> None:
        """Wait until the UDF side is completely done (process exited...)."""

    def abort(self) -> None:
        """Tear the connection down now."""

    @property
    def stderr(self) -> str:
        """What the UDF wrote to stderr (child processes only)."""


class Target(Protocol):
    """Something the client can open UDF connections to."""

    async def open(self) -> UDFConnection: ...
    def describe(self) -> str: ...


class MemoryPipe:
    """One direction of an in-memory byte stream, with flow control.

    ``write`` queues bytes; ``drain`` waits while more than ``limit`` bytes
    are unread; ``read`` waits for bytes or end of stream.
    """

    def __init__(self, limit: int = 1 << 20) -> None:
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._limit = limit
        self._eof = False
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()

    # writer side
    def write(self, data: bytes) -> None:
        if self._eof:
            raise BrokenPipeError("write to a closed pipe")
        if data:
            self._chunks.append(bytes(data))
            self._size += len(data)
            self._readable.set()
            if self._size > self._limit:
                self._writable.clear()

    async def drain(self) -> None:
        while self._size > self._limit and not self._eof:
            await self._writable.wait()

    def close(self) -> None:
        self._eof = True
        self._readable.set()
        self._writable.set()

    async def wait_closed(self) -> None:
        return None

    # reader side
    async def read(self, n: int = -1) -> bytes:
        while not self._chunks:
            if self._eof:
                return b""
            self._readable.clear()
            await self._readable.wait()
        chunk = self._chunks.popleft()
        if 0 < n < len(chunk):
            self._chunks.appendleft(chunk[n:])
            chunk = chunk[:n]
        self._size -= len(chunk)
        if self._size <= self._limit:
            self._writable.set()
        return chunk


class _InProcessConnection:
    #: The UDF runs on the client's own event loop (see TaskConnection).
    shares_loop = True

    def __init__(self, handler: BaseHandler, agent_options: Mapping[str, Any]) -> None:
        self._to_udf = MemoryPipe()
        self._from_udf = MemoryPipe()
        self.agent = Agent(
            handler, self._to_udf, self._from_udf, name="in-process", **agent_options
        )
        self.failure: ConnectionFailed | None = None
        # The connection's task (opened and closed by separate calls, so no
        # task group can hold it): abort() cancels it, wait_closed() awaits it.
        self._task = asyncio.create_task(self._run(), name="aioudf in-process agent")

    async def _run(self) -> None:
        try:
            await self.agent.run()
        except ConnectionFailed as exc:
            self.failure = exc
        finally:
            self._from_udf.close()

    async def read(self, n: int) -> bytes:
        return await self._from_udf.read(n)

    def write(self, data: bytes) -> None:
        self._to_udf.write(data)

    async def drain(self) -> None:
        await self._to_udf.drain()

    async def close_write(self) -> None:
        self._to_udf.close()

    async def wait_closed(self) -> None:
        await asyncio.wait({self._task})

    def abort(self) -> None:
        self._to_udf.close()
        self._task.cancel()

    @property
    def stderr(self) -> str:
        return ""


@dataclass
class InProcess:
    """A handler class run in this process, one new instance per connection."""

    handler_factory: Callable[[], BaseHandler]
    agent_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        Config.of(**self.agent_options)  # a bad setting fails here, not per connection

    async def open(self) -> UDFConnection:
        return _InProcessConnection(self.handler_factory(), self.agent_options)

    def describe(self) -> str:
        return getattr(self.handler_factory, "__qualname__", repr(self.handler_factory))


class _StreamConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, n: int) -> bytes:
        return await self._reader.read(n)

    def write(self, data: bytes) -> None:
        self._writer.write(data)

    async def drain(self) -> None:
        await self._writer.drain()

    async def close_write(self) -> None:
        if self._writer.can_write_eof():
            self._writer.write_eof()
        else:  # pragma: no cover - unix sockets can
            self._writer.close()

    async def wait_closed(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    def abort(self) -> None:
        transport = self._writer.transport
        transport.abort()

    @property
    def stderr(self) -> str:
        return ""


@dataclass
class Socket:
    """A socket UDF already serving on ``path``."""

    path: str | os.PathLike[str]

    async def open(self) -> UDFConnection:
        path = os.fspath(self.path)
        try:
            reader, writer = await asyncio.open_unix_connection(path, limit=1 << 20)
        except OSError as exc:
            raise UDFUnreachable(
                f"cannot connect to the socket UDF at {path}: {_why(path, exc)}"
            ) from exc
        return _StreamConnection(reader, writer)

    def describe(self) -> str:
        return f"socket {os.fspath(self.path)}"


def _why(path: str, exc: OSError) -> str:
    """Why connecting to ``path`` failed, in the words a user acts on."""
    if isinstance(exc, FileNotFoundError):
        return "no such file (is the UDF serving? is the path right?)"
    with contextlib.suppress(OSError):
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return "not a socket"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: nothing is serving on it (a socket left by a stopped UDF?)"
    return exc.strerror or str(exc)


def _path(env: Mapping[str, str] | None) -> str | None:
    return (env or os.environ).get("PATH")


class _ProcessConnection:
    def __init__(
        self,
        process: asyncio.subprocess.Process,
        on_stderr: Callable[[str], None] | None = None,
    ) -> None:
        self.process = process
        assert process.stdin is not None
        assert process.stdout is not None
        assert process.stderr is not None
        self._stdin = process.stdin
        self._stdout = process.stdout
        self._stderr_lines: list[str] = []
        self._on_stderr = on_stderr
        # The connection's task: it ends with the process's stderr (abort()
        # kills the process), and wait_closed() awaits it.
        self._stderr_task = asyncio.create_task(
            self._collect_stderr(process.stderr), name="aioudf UDF stderr"
        )

    async def _collect_stderr(self, stream: asyncio.StreamReader) -> None:
        # Like Kapacitor, which copies every stderr line into its log.
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line longer than the stream's limit
                line = await stream.read(1 << 16)
            if not line:
                return
            text = line.decode(errors="replace")
            self._stderr_lines.append(text)
            if self._on_stderr is not None:
                self._on_stderr(text.rstrip("\n"))

    async def read(self, n: int) -> bytes:
        return await self._stdout.read(n)

    def write(self, data: bytes) -> None:
        self._stdin.write(data)

    async def drain(self) -> None:
        await self._stdin.drain()

    async def close_write(self) -> None:
        self._stdin.close()
        with contextlib.suppress(OSError):
            await self._stdin.wait_closed()

    async def wait_closed(self) -> None:
        await self.process.wait()
        await self._stderr_task

    def abort(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    @property
    def stderr(self) -> str:
        return "".join(self._stderr_lines)


@dataclass
class Command:
    """A process UDF: ``argv`` is spawned for every connection, like Kapacitor's prog/args.

    ``env`` is added to this process's environment. The child's stderr is
    kept (:attr:`UDFConnection.stderr`, and in errors); ``on_stderr`` is also
    called with each line as it arrives.
    """

    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    on_stderr: Callable[[str], None] | None = None

    async def open(self) -> UDFConnection:
        env = None
        if self.env is not None:
            env = {**os.environ, **self.env}
        try:
            process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd=self.cwd,
                limit=1 << 20,
            )
        except OSError as exc:
            program = self.argv[0]
            why = exc.strerror or str(exc)
            if (
                isinstance(exc, FileNotFoundError)
                and shutil.which(program, path=_path(env)) is None
            ):
                why = "no such program" + ("" if os.sep in program else " on PATH")
            raise UDFUnreachable(f"cannot start the UDF {program!r}: {why}") from exc
        return _ProcessConnection(process, self.on_stderr)

    def describe(self) -> str:
        return " ".join(self.argv)
