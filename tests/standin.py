"""A raw Kapacitor-side peer for tests that need to control every frame.

Unlike ``aioudf.testing`` (which behaves like Kapacitor, keepalive timer and
all), this sends exactly the requests a test writes, when it writes them, and
hands back each response as it arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aioudf._pb import udf_pb2 as pb
from aioudf.wire._frames import FrameDecoder, encode_frame
from aioudf.wire._values import encode_options


def request(**message: Any) -> bytes:
    """One framed Request, e.g. ``request(keepalive=pb.KeepaliveRequest(time=1))``."""
    return encode_frame(pb.Request(**message).SerializeToString())


def decode_responses(data: bytes) -> list[pb.Response]:
    """Every Response frame in ``data``, which must hold whole, non-empty ones only."""
    decoder = FrameDecoder()
    decoder.feed(data)
    out = []
    while (body := decoder.next_frame()) is not None:
        response = pb.Response.FromString(bytes(body))
        assert response.WhichOneof("message") is not None, "an empty Response was written"
        out.append(response)
    decoder.feed_eof()
    return out


def kind(response: pb.Response) -> str:
    return response.WhichOneof("message") or ""


def options(**values: Any) -> list[pb.Option]:
    """Option messages from Python values (tuples give several values), typed by
    the one option table (:func:`aioudf.toolkit.encode_options`)."""
    return encode_options(values)


class Peer:
    """Kapacitor's end of one connection, driven frame by frame."""

    def __init__(self, reader: Any, writer: Any) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = FrameDecoder()

    @classmethod
    async def unix(cls, path: Any) -> Peer:
        reader, writer = await asyncio.open_unix_connection(str(path))
        return cls(reader, writer)

    async def send(self, *frames: bytes) -> None:
        self.writer.write(b"".join(frames))
        await self.writer.drain()

    async def receive(self, timeout: float = 10.0) -> pb.Response | None:
        """The next response, or None at end of stream."""
        while True:
            body = self.decoder.next_frame()
            if body is not None:
                return pb.Response.FromString(bytes(body))
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                self.decoder.feed_eof()
                return None
            self.decoder.feed(data)

    async def receive_kind(self, wanted: str, timeout: float = 10.0) -> pb.Response:
        """Skip responses until one of kind ``wanted`` arrives; return it."""
        while True:
            response = await self.receive(timeout)
            assert response is not None, f"stream ended before a {wanted} response"
            if kind(response) == wanted:
                return response

    async def receive_all(self, timeout: float = 10.0) -> list[pb.Response]:
        """Every response until the UDF closes its side."""
        out = []
        while (response := await self.receive(timeout)) is not None:
            out.append(response)
        return out

    async def half_close(self) -> None:
        if self.writer.can_write_eof():
            self.writer.write_eof()
        else:
            self.writer.close()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()
