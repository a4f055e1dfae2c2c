"""Standard input and output as asyncio byte streams, for process UDFs.

Kapacitor writes requests to the UDF's stdin and reads responses from its
stdout; stdout must carry nothing but frames. :func:`reserved_stdout` takes the
real stdout file descriptor for the frames and points file descriptor 1 and
``sys.stdout`` at stderr, so a stray ``print()`` (or a C library writing to
fd 1) lands in Kapacitor's log instead of corrupting the stream.

Pipes, sockets and terminals go through asyncio's pipe transports. What the
event loop cannot watch (regular files, ``/dev/null`` and other character
devices: ``aioudf run mod:H < requests.bin > out.bin``, cron, systemd's
``StandardInput=null``) is read and written in a worker thread instead: a file
is read to its end, ``/dev/null`` is an empty stream. A closed stdin or
stdout (``<&-``) is refused up front by :func:`check_stdio`, with one line
naming it, before anything else can take over the descriptor.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import os
import select
import stat
import sys
from collections.abc import Iterator
from typing import Any

import anyio

from ..errors import StdioError
from ..runtime._streams import ByteReader, ByteWriter, Receiver

__all__ = ["StdioError", "check_stdio", "open_stdio", "reserved_stdout"]


@contextlib.contextmanager
def reserved_stdout() -> Iterator[int]:
    """Reserve the real stdout for frames; yield a file descriptor for it.

    Inside the block, fd 1 and ``sys.stdout`` are the process's stderr. Both
    are restored on exit. The yielded descriptor belongs to the caller.
    """
    sys.stdout.flush()
    saved_fd = os.dup(1)
    frames_fd = os.dup(1)
    saved_stdout = sys.stdout
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        yield frames_fd
    finally:
        # Text still buffered for fd 1 must reach stderr before fd 1 is the
        # frame stream again, or it is flushed into the frames at exit: the
        # original stdout objects (a library may hold sys.stdout from before,
        # or write to sys.__stdout__) and C stdio's own buffer (printf, puts).
        for stream in (saved_stdout, sys.__stdout__, sys.stderr):
            with contextlib.suppress(Exception):
                if stream is not None:
                    stream.flush()
        _flush_c_stdio()
        sys.stdout = saved_stdout
        os.dup2(saved_fd, 1)
        os.close(saved_fd)


def _flush_c_stdio() -> None:
    """fflush(NULL): write out every C stdio buffer (what C extensions printed)."""
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no C library to reach (not on POSIX)
        pass


def check_stdio() -> None:
    """Raise :class:`StdioError` if stdin or stdout is not open.

    Call it before creating the event loop: once a descriptor is closed, the
    next file the process opens (the loop's own epoll descriptor, say) takes
    its number, and frames would be read from or written to that.
    """
    for fd, name, role in ((0, "stdin", "reads requests from"), (1, "stdout", "writes frames to")):
        try:
            os.fstat(fd)
        except OSError:
            raise StdioError(
                f"{name} is closed: a process UDF {role} it (Kapacitor connects it to a pipe)"
            ) from None


def _pollable(fd: int, *, for_writing: bool = False) -> bool:
    """True if ``fd`` goes through the event loop: a pipe, a terminal, a socket to read.

    epoll refuses regular files and devices such as ``/dev/null`` (EPERM),
    and uvloop aborts the process on them. A socket is polled for reading
    only: a pipe transport writing to a socket takes the peer's end of input
    (``shutdown(SHUT_WR)``, what inetd-style callers do once the requests are
    sent) for a closed stdout, and stdin and stdout are then one socket.
    """
    mode = os.fstat(fd).st_mode
    if stat.S_ISSOCK(mode):
        return not for_writing
    return stat.S_ISFIFO(mode) or os.isatty(fd)


#: Bytes asked of the kernel for each of the pipes to and from Kapacitor.
PIPE_SIZE = 1 << 20


def _widen_pipe(fd: int) -> None:
    """Ask for a 1 MiB pipe buffer on Linux (a pipe's default is 64 KiB).

    With 64 KiB, Kapacitor can be at most ~400 points ahead of the UDF: a read
    returns at most that, and both sides wake each other thousands of times a
    second. The limit for unprivileged processes is /proc/sys/fs/pipe-max-size
    (1 MiB unless lowered); if the kernel refuses, the pipe stays as it is.
    """
    setter = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux only
    if setter is None or not stat.S_ISFIFO(os.fstat(fd).st_mode):
        return
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, setter, PIPE_SIZE)


class _PipeWriter(asyncio.Protocol):
    """A write-only pipe transport with ``drain()`` flow control.

    Several tasks may wait in ``drain()`` at once (the agent's writer and its
    dispatcher both write): each gets a future of its own.
    """

    def __init__(self) -> None:
        self._transport: Any = None  # uvloop's pipe transports are not asyncio's classes
        self._paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = exc or BrokenPipeError("stdout closed")
        self._wake(self._lost)
        if not self._closed.done():
            self._closed.set_result(None)

    def _wake(self, exc: Exception | None) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                if exc is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(exc)

    def write(self, data: bytes) -> None:
        if self._lost is not None or self._transport is None:
            raise BrokenPipeError("stdout is closed")
        self._transport.write(data)

    async def drain(self) -> None:
        if self._lost is not None:
            raise BrokenPipeError(f"stdout is closed: {self._lost}")
        if self._paused:
            waiter = asyncio.get_running_loop().create_future()
            self._drain_waiters.append(waiter)
            await waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    async def wait_closed(self) -> None:
        await self._closed


class _PipeReader(asyncio.Protocol):
    """A read-only pipe transport handing out the chunks it reads, uncopied.

    ``asyncio.StreamReader`` appends every chunk to one ``bytearray`` and
    copies the bytes out again on ``read()``; whenever the agent lets the
    transport read ahead, that buffer grows to twice its limit, and every
    resize and shift of it lands in fresh pages: on a mirror fed through a
    pipe, three times the page faults of this reader (measured). Here
    ``read()`` returns the chunks ``os.read()`` produced, as they are.
    Reading pauses while more than ``limit`` bytes wait. It can also push
    (:class:`~aioudf.runtime.PushReader`): hand each chunk to the agent as it
    arrives.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._transport: Any = None  # uvloop's pipe transports are not asyncio's classes
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0  # bytes in _chunks
        self._paused = False
        self._eof = False
        self._error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._receiver: Receiver | None = None
        self._push_paused = False

    def push_to(self, receiver: Receiver | None) -> None:
        self._receiver = receiver
        if receiver is None:
            self.resume_reading()
            return
        chunks = self._chunks
        while chunks and self._receiver is receiver:
            chunk = chunks.popleft()
            self._size -= len(chunk)
            receiver(chunk)
        if self._paused:
            self._paused = False
            self._transport.resume_reading()
        if self._receiver is receiver:
            if self._error is not None:
                receiver(self._error)
            elif self._eof:
                receiver(b"")

    def pause_reading(self) -> None:
        if not self._push_paused:
            self._push_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._push_paused:
            self._push_paused = False
            self._transport.resume_reading()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        if (receiver := self._receiver) is not None:
            receiver(data)
            return
        self._chunks.append(data)
        self._size += len(data)
        if self._size > self._limit and not self._paused:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        if (receiver := self._receiver) is not None:
            receiver(b"")
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        ended = self._eof
        self._eof = True
        self._error = exc
        if (receiver := self._receiver) is not None:
            if exc is not None:
                receiver(exc)
            elif not ended:
                receiver(b"")
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read(self, n: int = -1) -> bytes:
        """The next chunk received (at most ``n`` bytes); ``b""`` at end of input."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._eof:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        chunk = self._chunks.popleft()
        if 0 < n < len(chunk):
            self._chunks.appendleft(chunk[n:])
            chunk = chunk[:n]
        self._size -= len(chunk)
        if self._paused and self._size <= self._limit // 2:
            self._paused = False
            self._transport.resume_reading()
        return chunk


class _FileReader:
    """Reads a regular file or a device in a worker thread."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    async def read(self, n: int = -1) -> bytes:
        return await anyio.to_thread.run_sync(os.read, self._fd, n if n > 0 else 1 << 20)


class _FileWriter:
    """Writes a regular file or a device in a worker thread."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pending: list[bytes] = []
        # Drains in turn (the agent's writer and dispatcher may both drain):
        # each thread writes what was pending when its turn came, in order.
        self._turn = asyncio.Lock()

    def write(self, data: bytes) -> None:
        self._pending.append(data)

    async def drain(self) -> None:
        async with self._turn:
            data, self._pending = b"".join(self._pending), []
            if data:
                await anyio.to_thread.run_sync(self._write_all, data)

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:
                # A socket shared with stdin, which the read transport made
                # non-blocking: wait until it takes more.
                select.select([], [self._fd], [])

    def close(self) -> None:
        if self._pending:
            self._write_all(b"".join(self._pending))
            self._pending = []
        with contextlib.suppress(OSError):
            os.close(self._fd)

    async def wait_closed(self) -> None:
        return None


async def open_stdio(frames_fd: int, *, limit: int = 1 << 20) -> tuple[ByteReader, ByteWriter]:
    """Streams over stdin and ``frames_fd`` (from :func:`reserved_stdout`)."""
    loop = asyncio.get_running_loop()
    check_stdio()
    in_fd = os.dup(0)  # the transport closes what it is given; keep fd 0 open
    reader: ByteReader
    writer: ByteWriter
    if not _pollable(in_fd):
        reader = _FileReader(in_fd)
    else:
        _widen_pipe(in_fd)
        pipe: Any = os.fdopen(in_fd, "rb", buffering=0)
        _, reader = await loop.connect_read_pipe(lambda: _PipeReader(limit), pipe)
    if not _pollable(frames_fd, for_writing=True):
        writer = _FileWriter(frames_fd)
    else:
        _widen_pipe(frames_fd)
        out: Any = os.fdopen(frames_fd, "wb", buffering=0)
        _, protocol = await loop.connect_write_pipe(_PipeWriter, out)
        writer = protocol
    return reader, writer
