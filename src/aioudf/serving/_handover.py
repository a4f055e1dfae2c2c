"""Hand-over: a socket server passes its sockets and live connections to another process.

Kapacitor dials a socket UDF once per task and never redials, so a server
that restarts fails every task using it. Instead, the new process takes
everything over from the running one:

* the **listening socket** and the **control socket** (file descriptors,
  ``SCM_RIGHTS``), so the socket answers throughout: the old process stops
  accepting only once the new one accepts;
* every **live connection**: its descriptor, the protocol state exported by
  :meth:`UDFConnection.export_state <aioudf.wire._protocol.UDFConnection.export_state>`
  (the Init request, the bytes received but not handled), the bytes still in
  the old process's read buffer, and the handler's ``snapshot()``. The new
  process builds a fresh handler of its (new) code, gives it the same Init
  and ``restore(snapshot)``, and answers *accepted*, or *refused* with the
  reason: then the connection stays with the old process, which serves it
  with the old code until it ends.

The conversation runs over a unix stream socket, the **control socket**
beside the served one (``PATH.ctl``, mode 0600, and only a peer of the same
user or root is answered), or a socket pair a supervisor sets up between two
workers. A message is::

    u32 header length | header: a JSON object with "op" | per blob: u64 length | bytes

with its descriptors (if any) as ``SCM_RIGHTS`` on its first bytes. On the
control socket (T: the process taking over, G: the one giving)::

    T: takeover {pid}
    G: listener {path, owns_path, metrics}   fds: listening socket, control socket
                                             (and the metrics endpoint's, if metrics)
    T: listening                             (or: failed {reason}; G carries on)
    G: channel                               fds: a channel G gives connections over
       ... one per process holding connections (a worker each under a supervisor)
    G: done

and on each channel::

    T: ready                                 (T has loaded its handler code)
    G: connection {name, task, node}         fds: the connection; blobs: its state,
                                             read-ahead bytes, handler snapshot
    T: accepted | refused {reason}
       ...
    G: done {kept}

This module is the wire and the two conversations; the server
(:mod:`aioudf.serving`) and the supervisor (:mod:`aioudf.serving`) fill in
what giving and taking mean for them.

Why one module of this size: the wire of a hand-over (SCM_RIGHTS messages)
and both sides of its conversation are one protocol, read against each
other; the server and the supervisor only fill in the two sides.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import struct
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio

from ..errors import HandoverError, NothingToTakeOver

__all__ = [
    "CONTROL_SUFFIX",
    "HANDOVER_TIMEOUT",
    "Channel",
    "Giver",
    "Message",
    "NothingToTakeOver",
    "Observer",
    "Taker",
    "control_path",
    "describe_exit",
    "give",
    "give_connections",
    "offer_connection",
    "process_exit",
    "socket_pair",
    "take_connections",
    "take_over",
]

logger = logging.getLogger("aioudf")

#: The control socket of a server on PATH is PATH + this.
CONTROL_SUFFIX = ".ctl"
#: Seconds one step of a hand-over may take before it is given up.
HANDOVER_TIMEOUT = 30.0
#: The most descriptors one message carries.
_MAX_FDS = 8
_HEADER = struct.Struct("!I")
_BLOB = struct.Struct("!Q")
_MAX_HEADER = 1 << 20


def control_path(path: str) -> str:
    """Where the control socket of the server on ``path`` is."""
    return path + CONTROL_SUFFIX


class Observer:
    """Call points for metrics and logs of processes and hand-overs.

    Every method does nothing; subclass and override the ones you count,
    and pass an instance to :class:`~aioudf.UnixServer` or the supervisor.
    """

    def handover_started(self) -> None:
        """Another process listens on the socket now; connections are offered to it next."""

    def connection_handed_over(self, task_id: str, node_id: str = "") -> None:
        """A connection (of task ``task_id``, UDF node ``node_id``) moved to another process."""

    def connection_taken_over(self, task_id: str, node_id: str = "") -> None:
        """A connection moved here from another process."""

    def connection_kept(self, task_id: str, reason: str, node_id: str = "") -> None:
        """A connection could not move and stays with the process that had it."""

    def worker_started(self, pid: int) -> None:
        """The supervisor started a worker process."""

    def worker_exited(self, pid: int, cause: str, *, replaced: bool) -> None:
        """A worker ended; ``replaced`` if it died and a new one took its place."""

    def worker_failed_to_start(self, pid: int, cause: str, retry_in: float | None) -> None:
        """A worker ended before it served; tried again in ``retry_in`` s (None: given up)."""

    def connections_balanced(self, source: int, target: int, moved: int, kept: int) -> None:
        """``moved`` connections went from worker ``source`` to ``target`` to share the load.

        ``kept``: connections offered that the handler's code refused to move.
        """


@dataclass
class Message:
    """One message of a hand-over conversation."""

    op: str
    header: dict[str, Any]
    blobs: list[bytes] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)

    def close_fds(self) -> None:
        """Close the descriptors nobody took."""
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []


class Channel:
    """A hand-over conversation over a connected unix stream socket."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._fds: list[int] = []  # descriptors received with the message being read
        self._sending = asyncio.Lock()  # one message at a time, whichever task sends

    @classmethod
    async def connect(cls, path: str) -> Channel:
        """Connect to the control socket at ``path`` (:class:`NothingToTakeOver` if none)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, path)
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.ENOENT, errno.ECONNREFUSED):
                raise NothingToTakeOver(f"no server answers on {path}") from None
            raise HandoverError(f"cannot connect to {path}: {exc}") from None
        return cls(sock)

    def close(self) -> None:
        self.sock.close()
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []

    def peer_uid(self) -> int:
        """The user id of the process at the other end."""
        creds = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return int(struct.unpack("3i", creds)[1])

    # ---- sending ------------------------------------------------------------

    async def send(
        self, op: str, *, blobs: Sequence[bytes] = (), fds: Sequence[int] = (), **fields: object
    ) -> None:
        header = json.dumps({"op": op, "blobs": len(blobs), "fds": len(fds), **fields}).encode()
        data = b"".join(
            [_HEADER.pack(len(header)), header]
            + [part for blob in blobs for part in (_BLOB.pack(len(blob)), blob)]
        )
        # The descriptors ride on the first bytes, sent alone so sendmsg()
        # cannot send them only in part; the rest follows as a stream.
        first, rest = data[:4], data[4:]
        async with self._sending:
            while True:
                try:
                    sent = socket.send_fds(self.sock, [first], list(fds)) if fds else 0
                    break
                except BlockingIOError:
                    await self._wait(writable=True)
            loop = asyncio.get_running_loop()
            await loop.sock_sendall(self.sock, first[sent:] + rest)

    # ---- receiving ----------------------------------------------------------

    async def receive(self, *ops: str) -> Message:
        """The next message; :class:`HandoverError` if it is not one of ``ops``."""
        (size,) = _HEADER.unpack(await self._read(_HEADER.size))
        if size > _MAX_HEADER:
            raise HandoverError(f"hand-over message header of {size} bytes: not a hand-over peer")
        try:
            header = json.loads(await self._read(size))
            op = header["op"]
            blobs = [
                await self._read(_BLOB.unpack(await self._read(_BLOB.size))[0])
                for _ in range(int(header.get("blobs", 0)))
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise HandoverError(f"malformed hand-over message: {exc}") from None
        fds, self._fds = self._fds, []
        message = Message(op, header, blobs, fds)
        if len(fds) != int(header.get("fds", 0)):
            message.close_fds()
            raise HandoverError(f"hand-over message {op!r} arrived without its descriptors")
        if op == "failed":
            message.close_fds()
            raise HandoverError(str(header.get("reason", "the peer gave up")))
        if ops and op not in ops:
            message.close_fds()
            raise HandoverError(
                f"unexpected hand-over message {op!r} (expected {' or '.join(ops)})"
            )
        return message

    async def _read(self, n: int) -> bytes:
        chunks: list[bytes] = []
        while n:
            try:
                data, fds, flags, _ = socket.recv_fds(self.sock, min(n, 1 << 20), _MAX_FDS)
            except BlockingIOError:
                await self._wait(writable=False)
                continue
            self._fds.extend(fds)
            if flags & socket.MSG_CTRUNC:
                raise HandoverError("too many descriptors in one hand-over message")
            if not data:
                raise HandoverError("the other process closed the hand-over channel")
            chunks.append(data)
            n -= len(data)
        return b"".join(chunks)

    async def _wait(self, *, writable: bool) -> None:
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        fd = self.sock.fileno()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        if writable:
            loop.add_writer(fd, wake)
        else:
            loop.add_reader(fd, wake)
        try:
            await ready
        finally:
            if writable:
                loop.remove_writer(fd)
            else:
                loop.remove_reader(fd)


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """Two connected ends of a channel."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


# ---- moving connections (over a channel) ------------------------------------


async def offer_connection(
    channel: Channel,
    *,
    fd: int,
    state: bytes,
    read_ahead: bytes,
    snapshot: bytes,
    name: str,
    task: str,
    node: str,
) -> str | None:
    """Offer one paused connection; ``None`` if taken, else the reason it was refused."""
    await channel.send(
        "connection",
        blobs=[state, read_ahead, snapshot],
        fds=[fd],
        name=name,
        task=task,
        node=node,
    )
    reply = await channel.receive("accepted", "refused")
    return None if reply.op == "accepted" else str(reply.header.get("reason", "refused"))


async def give_connections(channel: Channel, offer_all: Callable[[Channel], Awaitable[int]]) -> int:
    """The giving side of a channel: wait for the taker, offer everything, say done.

    ``offer_all(channel)`` offers each connection (see :func:`offer_connection`)
    and returns how many stay here. Returns that number.
    """
    with anyio.fail_after(HANDOVER_TIMEOUT):
        await channel.receive("ready")
    kept = await offer_all(channel)
    await channel.send("done", kept=kept)
    return kept


async def take_connections(
    channel: Channel, adopt: Callable[[Message], Awaitable[str | None]]
) -> int:
    """The taking side of a channel: adopt each connection offered until done.

    ``adopt(message)`` takes the connection (its descriptor is then its own)
    or returns the reason it refuses (the descriptor is closed here, never
    read from). Returns how many connections were taken.
    """
    taken = 0
    await channel.send("ready")
    while True:
        message = await channel.receive("connection", "done")
        if message.op == "done":
            return taken
        try:
            reason = await adopt(message)
        except Exception as exc:  # a bug of ours: the connection stays where it was
            logger.exception("could not take over connection %s", message.header.get("name"))
            reason = f"internal error taking it over: {type(exc).__name__}: {exc}"
        if reason is None:
            taken += 1
            await channel.send("accepted")
        else:
            message.close_fds()
            await channel.send("refused", reason=reason)


# ---- the control conversation -----------------------------------------------


class Giver(Protocol):
    """What a process that hands everything over provides (server or supervisor)."""

    def handover_sockets(self) -> tuple[socket.socket, socket.socket, bool]:
        """(listening socket, control socket, whether the socket file is ours to remove)."""

    def metrics_socket(self) -> socket.socket | None:
        """The metrics endpoint's listening socket, if metrics are served here."""

    async def stop_accepting(self) -> None:
        """The taker accepts now: stop, and let go of the socket files."""

    async def open_channels(self) -> list[tuple[socket.socket, Coroutine[Any, Any, int]]]:
        """One channel end per process holding connections, and the giving over it.

        Each giving (which returns how many connections stay) is awaited in
        :func:`give`'s own task, in turn, once every end has reached the
        taker; one not begun when the hand-over fails is closed unstarted.
        """

    async def resume_accepting(self) -> None:
        """The taker failed after :meth:`stop_accepting`: accept (and answer) again."""


class Taker(Protocol):
    """What a process that takes everything over provides (server or supervisor)."""

    async def listen_on(
        self, listener: socket.socket, owns_path: bool, metrics: socket.socket | None
    ) -> None:
        """Start accepting on the listening socket handed over.

        ``metrics``: the giver's metrics endpoint socket (serve on it, or close it).
        """

    async def take_from(self, channel: socket.socket) -> None:
        """Take over the connections given over ``channel`` (the end is the taker's)."""

    async def serve_control(self, control: socket.socket) -> None:
        """Answer later hand-overs on the control socket handed over."""


async def give(channel: Channel, giver: Giver, *, path: str) -> int:
    """The giving side of the control conversation; returns the connections kept."""
    uid = channel.peer_uid()
    if uid not in (os.getuid(), 0):
        await channel.send("failed", reason="hand-over refused: another user asked")
        raise HandoverError(f"refused a hand-over asked by user id {uid}")
    with anyio.fail_after(HANDOVER_TIMEOUT):
        request = await channel.receive("takeover")
        logger.info("handing over to process %s", request.header.get("pid"))
        listener, control, owns_path = giver.handover_sockets()
        # The metrics endpoint's socket moves too: the new process answers
        # scrapes on the same port with no gap (the giver answers until it ends).
        metrics = giver.metrics_socket()
        await channel.send(
            "listener",
            fds=[listener.fileno(), control.fileno(), *([metrics.fileno()] if metrics else [])],
            path=path,
            owns_path=owns_path,
            metrics=metrics is not None,
        )
        await channel.receive("listening")
    await giver.stop_accepting()
    kept = 0
    givings: list[Coroutine[Any, Any, int]] = []
    try:
        opened = await giver.open_channels()
        givings = [giving for _, giving in opened]
        for end, _ in opened:
            with end:  # (the taker's now; ours closed)
                await channel.send("channel", fds=[end.fileno()])
        while givings:
            kept += await givings.pop(0)
        await channel.send("done", kept=kept)
    except Exception:
        for giving in givings:  # not begun: nothing of theirs moved
            giving.close()
        # The taker went away part way: what was not moved is still here;
        # take the socket back so that it keeps answering.
        await giver.resume_accepting()
        raise
    return kept


async def take_over(path: str, taker: Taker) -> None:
    """Take everything over from the server on ``path``: the taking side.

    Raises :class:`NothingToTakeOver` when no server answers on its control
    socket (start afresh then), :class:`HandoverError` when it fails part
    way (the old server carries on with what it still has).
    """
    channel = await Channel.connect(control_path(path))
    try:
        with anyio.fail_after(HANDOVER_TIMEOUT):
            await channel.send("takeover", pid=os.getpid())
            message = await channel.receive("listener")
        listener = socket.socket(fileno=message.fds[0])
        control = socket.socket(fileno=message.fds[1])
        metrics = socket.socket(fileno=message.fds[2]) if len(message.fds) > 2 else None
        try:
            await taker.listen_on(listener, bool(message.header.get("owns_path")), metrics)
        except Exception as exc:
            control.close()
            if metrics is not None:
                metrics.close()
            with contextlib.suppress(Exception):
                await channel.send("failed", reason=f"the new server could not listen: {exc}")
            raise
        await channel.send("listening")
        # From here on this process serves the socket: should the giver fail
        # part way, what was taken is served here, and what was not stays
        # with it (or ended with it); nothing is given back.
        try:
            async with anyio.create_task_group() as tg:
                while True:
                    message = await channel.receive("channel", "done")
                    if message.op == "done":
                        break
                    tg.start_soon(taker.take_from, socket.socket(fileno=message.fds[0]))
        except (HandoverError, OSError) as exc:
            logger.error(
                "the previous process failed part way through the hand-over (%s): "
                "serving here what it gave",
                exc,
            )
        else:
            kept = int(message.header.get("kept", 0))
            if kept:
                logger.warning("%d connection(s) stay with the previous process", kept)
        await taker.serve_control(control)
    finally:
        channel.close()


async def process_exit(pid: int) -> None:
    """Wait until the child process ``pid`` has exited (it is not reaped here).

    A pidfd becomes readable when the process ends: no thread, no polling.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def wake() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(pidfd, wake)
    try:
        await done
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


def describe_exit(status: int) -> str:
    """A child's exit status as a person reads it: ``exit status 2``, ``killed by SIGKILL``."""
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"killed by {name}"
    return f"exit status {status}"
