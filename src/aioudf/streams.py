"""The byte streams a connection runs on, as the agent sees them.

A leaf module: the transports (:mod:`aioudf.stdio`, sockets, the test kit's
pipes) build objects of these shapes without importing the agent, and the
agent accepts anything that fits (``asyncio.StreamReader``/``StreamWriter`` do).
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["ByteReader", "ByteWriter"]


class ByteReader(Protocol):
    """What the agent reads from (``asyncio.StreamReader`` fits)."""

    async def read(self, n: int = -1) -> bytes: ...


class ByteWriter(Protocol):
    """What the agent writes to (``asyncio.StreamWriter`` fits)."""

    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def close(self) -> None: ...
    async def wait_closed(self) -> None: ...
