"""The byte streams a connection runs on, as the agent sees them.

A leaf module: the transports (:mod:`aioudf.stdio`, sockets, the test kit's
pipes) build objects of these shapes without importing the agent, and the
agent accepts anything that fits (``asyncio.StreamReader``/``StreamWriter`` do).

A reader may also *push* (:class:`PushReader`): hand what it receives to a
callback as it arrives, from the transport's own callback, instead of
waiting to be read. The agent then decodes Kapacitor's small writes where
they arrive and wakes only the task that handles them, not a reader task
first (one pass of the event loop and one task switch less per read).
:class:`PushStreamReader` is an ``asyncio.StreamReader`` that can, and
:func:`start_unix_server` / :func:`open_unix_connection` open sockets with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "ByteReader",
    "ByteWriter",
    "PushReader",
    "PushStreamReader",
    "Receiver",
    "open_unix_connection",
    "start_unix_server",
]

#: What a pushing reader calls: with the bytes received, ``b""`` at the end
#: of input, or the exception that ended it.
Receiver = Callable[["bytes | Exception"], None]


class ByteReader(Protocol):
    """What the agent reads from (``asyncio.StreamReader`` fits)."""

    async def read(self, n: int = -1) -> bytes: ...


@runtime_checkable
class PushReader(Protocol):
    """A reader that can also hand what it receives to a callback as it arrives."""

    async def read(self, n: int = -1) -> bytes: ...

    def push_to(self, receiver: Receiver | None) -> None:
        """From now on deliver to ``receiver`` (``None``: buffer for ``read()`` again).

        Whatever was buffered (and the end of input, if it came) is
        delivered first, at once.
        """

    def pause_reading(self) -> None:
        """Stop taking bytes from the transport (idempotent)."""

    def resume_reading(self) -> None:
        """Take bytes from the transport again (idempotent)."""


class ByteWriter(Protocol):
    """What the agent writes to (``asyncio.StreamWriter`` fits)."""

    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def close(self) -> None: ...
    async def wait_closed(self) -> None: ...


class PushStreamReader(asyncio.StreamReader):
    """An ``asyncio.StreamReader`` that can push (see :class:`PushReader`).

    While a receiver is set, the bytes the transport delivers go to it
    uncopied and the reader's own buffer stays empty; its limit no longer
    pauses the transport (the receiver bounds its input with
    :meth:`pause_reading`). Without one it is a plain ``StreamReader``.
    """

    _receiver: Receiver | None = None
    _push_paused = False

    def push_to(self, receiver: Receiver | None) -> None:
        if receiver is None:
            self._receiver = None
            self.resume_reading()  # the StreamReader's own limit bounds it again
            return
        buffer: bytearray = self._buffer  # type: ignore[attr-defined]
        data = bytes(buffer)
        buffer.clear()
        self._maybe_resume_transport()  # type: ignore[attr-defined]
        self._receiver = receiver
        if data:
            receiver(data)
        if self._receiver is receiver:
            if (error := self.exception()) is not None:
                receiver(error)
            elif self.at_eof():
                receiver(b"")

    def pause_reading(self) -> None:
        transport: Any = self._transport  # type: ignore[attr-defined]
        if not self._push_paused and transport is not None:
            self._push_paused = True
            transport.pause_reading()

    def resume_reading(self) -> None:
        transport: Any = self._transport  # type: ignore[attr-defined]
        if self._push_paused and transport is not None:
            self._push_paused = False
            transport.resume_reading()

    def feed_data(self, data: Any) -> None:
        receiver = self._receiver
        if receiver is None:
            super().feed_data(data)
        elif data:
            receiver(data)

    def feed_eof(self) -> None:
        super().feed_eof()
        if (receiver := self._receiver) is not None:
            receiver(b"")

    def set_exception(self, exc: Exception) -> None:
        super().set_exception(exc)
        if (receiver := self._receiver) is not None:
            receiver(exc)


async def start_unix_server(
    client_connected_cb: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any],
    *,
    limit: int,
    **kwargs: Any,
) -> asyncio.Server:
    """``asyncio.start_unix_server``, each connection read by a :class:`PushStreamReader`."""
    loop = asyncio.get_running_loop()

    def factory() -> asyncio.StreamReaderProtocol:
        reader = PushStreamReader(limit=limit, loop=loop)
        return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)

    return await loop.create_unix_server(factory, **kwargs)


async def open_unix_connection(
    *, limit: int, **kwargs: Any
) -> tuple[PushStreamReader, asyncio.StreamWriter]:
    """``asyncio.open_unix_connection``, read by a :class:`PushStreamReader`."""
    loop = asyncio.get_running_loop()
    reader = PushStreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await loop.create_unix_connection(lambda: protocol, **kwargs)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer
