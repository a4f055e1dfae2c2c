"""The metrics endpoint: ``GET /metrics`` over HTTP/1.1, served on the event loop.

Written here rather than taken from ``prometheus_client``'s own HTTP server
because its listening socket must move with the server's sockets in a
hand-over (``start_handed_over``): prometheus_client's server binds its own
socket in a thread and cannot be given one, nor handed on. The exposition
itself is prometheus_client's (:meth:`~aioudf.serving.Metrics.render_as`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import TYPE_CHECKING, Any

from ..errors import AioudfError

if TYPE_CHECKING:
    from ._metrics import Metrics

__all__ = ["MetricsEndpoint", "socket_of", "start_handed_over"]

logger = logging.getLogger("aioudf")

#: Seconds a request may take to arrive.
_ANSWER_TIMEOUT = 10.0
#: Seconds close() gives the requests already accepted to be answered (an
#: answer takes milliseconds; a client that sends nothing must not hold a
#: shutdown or a hand-over for long).
_CLOSE_WAIT = 1.0


class MetricsEndpoint:
    """``GET /metrics`` over HTTP/1.1 on the event loop: the Prometheus text format.

    One request per connection (the answer closes it); any other path is 404,
    any other method 405. Serving on the loop, in the server's process, means
    the queue depths are read where the queues live, without threads.
    """

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self._server: asyncio.AbstractServer | None = None
        # The requests being answered: close() lets them finish, so a scrape
        # accepted just before a hand-over still gets its answer.
        self._answering: set[asyncio.Task[Any]] = set()
        #: The listening socket, once started (handed over with the others).
        self.sock: socket.socket | None = None

    async def start(self, sock: socket.socket | None = None) -> None:
        """Listen (on ``sock``, handed over by the previous process, if it is our address).

        Raise :class:`AioudfError` naming the address if it cannot be used.
        """
        if sock is not None and not self._is_mine(sock):
            logger.info("metrics move from %s to %s:%d", _address_of(sock), self.host, self.port)
            sock.close()
            sock = None
        try:
            if sock is None:
                # Bound here rather than by asyncio, to have the socket to hand over.
                family, _, _, _, address = socket.getaddrinfo(
                    self.host, self.port, type=socket.SOCK_STREAM
                )[0]
                sock = socket.create_server(address[:2], family=family)
            self._server = await asyncio.start_server(self._serve, sock=sock)
        except OSError as exc:
            if sock is not None:
                sock.close()
            raise AioudfError(
                f"cannot serve metrics on {self.host}:{self.port}: "
                # (errno's text: create_server's own repeats the address)
                f"{os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror or exc}"
            ) from exc
        self.sock = sock
        self.port = sock.getsockname()[1]  # the real one, for port 0
        logger.info("serving metrics on http://%s:%d/metrics", self.host, self.port)

    def _is_mine(self, sock: socket.socket) -> bool:
        """Whether ``sock`` listens on this endpoint's address (port 0: any port)."""
        host, port = sock.getsockname()[:2]
        if self.port not in (0, port):
            return False
        with contextlib.suppress(OSError):
            infos = socket.getaddrinfo(self.host, port, sock.family, socket.SOCK_STREAM)
            return any(info[4][0] == host for info in infos)
        return False

    async def close(self) -> None:
        """Stop accepting; the requests already accepted are answered first.

        (On Python 3.11 ``wait_closed()`` does not wait for them, and a scrape
        accepted just before a hand-over would be cut without an answer.)
        """
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        if self._answering:
            await asyncio.wait(set(self._answering), timeout=_CLOSE_WAIT)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._answering.add(task)
            task.add_done_callback(self._answering.discard)
        try:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.IncompleteReadError):
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _ANSWER_TIMEOUT)
                request_line, _, headers = head.partition(b"\r\n")
                writer.write(self._answer(request_line.split(), _header(headers, b"accept")))
                await writer.drain()
        except (OSError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _answer(self, request_line: list[bytes], accept: str = "") -> bytes:
        if len(request_line) != 3:
            return _response(400, b"bad request\n")
        method, target, _ = request_line
        if target.split(b"?", 1)[0] not in (b"/metrics", b"/metrics/"):
            return _response(404, b"not found: try /metrics\n")
        if method not in (b"GET", b"HEAD"):
            return _response(405, b"only GET and HEAD\n")
        try:
            body, content_type = self.metrics.render_as(accept)
        except Exception as exc:  # a collector's bug must not end the server
            logger.exception("rendering metrics failed")
            return _response(500, f"rendering metrics failed: {exc!r}\n".encode())
        return _response(200, b"" if method == b"HEAD" else body, content_type, len(body))


async def start_handed_over(endpoint: MetricsEndpoint | None, sock: socket.socket | None) -> None:
    """Start ``endpoint`` on the metrics socket a hand-over brought, if any.

    A process without metrics closes that socket: the endpoint then ends
    with the process that gave it.
    """
    if endpoint is not None:
        await endpoint.start(sock)
    elif sock is not None:
        sock.close()


def socket_of(endpoint: MetricsEndpoint | None) -> socket.socket | None:
    """The metrics socket to hand over with the others (None without metrics)."""
    return endpoint.sock if endpoint is not None else None


def _header(headers: bytes, name: bytes) -> str:
    """The value of header ``name`` (lower case) in an HTTP head's header lines; '' if absent."""
    for line in headers.split(b"\r\n"):
        key, sep, text = line.partition(b":")
        if sep and key.strip().lower() == name:
            return text.strip().decode("latin-1")
    return ""


def _address_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


def _response(
    status: int,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    length: int | None = None,
) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Internal Server Error')}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body) if length is None else length}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body
