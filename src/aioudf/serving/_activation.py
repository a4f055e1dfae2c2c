"""What a service manager hands a socket server: sockets and a readiness channel.

systemd's socket activation (``sd_listen_fds(3)``) keeps the listening socket
in the service manager, so it exists and queues Kapacitor's connections even
while the service restarts. The manager starts the service with the sockets
as file descriptors 3, 4, ... and sets ``LISTEN_FDS`` (how many),
``LISTEN_PID`` (the process they are meant for) and optionally
``LISTEN_FDNAMES`` (their names, ``:``-separated). :func:`activated_socket`
finds the one to serve.

``sd_notify(3)``: with ``Type=notify`` the manager learns through the
datagram socket named by ``NOTIFY_SOCKET`` that the server is ready
(``READY=1``), reloading, stopping, or that another process now is the
service's main process (``MAINPID=``) after a hand-over. :func:`notify` sends
those; without ``NOTIFY_SOCKET`` it does nothing.

Nothing here imports the rest of aioudf but its errors: the supervisor uses
it before any user code is loaded.
"""

from __future__ import annotations

import logging
import os
import socket
import stat

from ..errors import ActivationError

__all__ = ["LISTEN_FDS_START", "activated_socket", "listen_fds", "notify"]

logger = logging.getLogger("aioudf")

#: The first descriptor a service manager passes (``SD_LISTEN_FDS_START``).
LISTEN_FDS_START = 3

_ENVIRONMENT = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def listen_fds(*, unset_environment: bool = True) -> list[tuple[int, str]]:
    """The descriptors passed to this process, with their names (``sd_listen_fds``).

    Empty when nothing was passed, or when ``LISTEN_PID`` names another
    process (the variables were inherited from a parent they were meant for).
    The variables are removed from the environment, so that child processes
    do not take them for theirs, unless ``unset_environment`` is false.
    """
    pid = os.environ.get("LISTEN_PID")
    count = os.environ.get("LISTEN_FDS")
    names = os.environ.get("LISTEN_FDNAMES")
    if unset_environment:
        for name in _ENVIRONMENT:
            os.environ.pop(name, None)
    if pid is None or count is None:
        return []
    try:
        if int(pid) != os.getpid():
            return []
        number = int(count)
    except ValueError:
        raise ActivationError(
            f"LISTEN_PID={pid!r} and LISTEN_FDS={count!r} must be whole numbers"
        ) from None
    if number < 0:
        raise ActivationError(f"LISTEN_FDS={count!r} is negative")
    labels = names.split(":") if names else []
    fds = range(LISTEN_FDS_START, LISTEN_FDS_START + number)
    return [(fd, labels[i] if i < len(labels) else "unknown") for i, fd in enumerate(fds)]


def activated_socket(path: str) -> socket.socket | None:
    """The listening unix socket for ``path`` the service manager passed, if any.

    ``None`` without socket activation. With it, the passed socket bound to
    ``path`` (or the only one passed, if it is bound to ``path``); anything
    else is an :class:`~aioudf.errors.ActivationError` naming what was
    passed, since serving another socket than the one configured would leave
    Kapacitor connecting to nothing.
    """
    passed = listen_fds()
    if not passed:
        return None
    found: list[str] = []
    chosen: socket.socket | None = None
    for fd, name in passed:
        try:
            info = os.fstat(fd)
        except OSError as exc:
            raise ActivationError(
                f"LISTEN_FDS names descriptor {fd}, which is not open: {exc}"
            ) from None
        if not stat.S_ISSOCK(info.st_mode):
            raise ActivationError(f"descriptor {fd} ({name}) passed by LISTEN_FDS is not a socket")
        sock = socket.socket(fileno=fd)
        bound = sock.getsockname() if sock.family == socket.AF_UNIX else None
        if isinstance(bound, bytes):
            bound = os.fsdecode(bound)
        if bound and os.path.abspath(bound) == os.path.abspath(path) and chosen is None:
            if sock.type != socket.SOCK_STREAM or not sock.getsockopt(
                socket.SOL_SOCKET, socket.SO_ACCEPTCONN
            ):
                sock.detach()
                raise ActivationError(
                    f"the socket passed for {path} ({name}) is not a listening stream "
                    "socket: set ListenStream= in the .socket unit"
                )
            sock.set_inheritable(False)
            chosen = sock
        else:
            found.append(f"{name}: {bound or sock.family.name}")
            sock.detach()  # not ours to serve or to close
    if chosen is None:
        raise ActivationError(
            f"socket activation passed no socket bound to {path} (passed: {', '.join(found)}); "
            "the .socket unit's ListenStream= must be the path given to --socket"
        )
    logger.info("serving the socket passed by the service manager (LISTEN_FDS)")
    return chosen


def notify(*messages: str) -> bool:
    """Tell the service manager ``messages`` (``"READY=1"``...); False without one.

    Errors sending are logged, never raised: the manager's bookkeeping must
    not take the server down.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto("\n".join(messages).encode(), address)
    except OSError as exc:
        logger.warning("could not notify the service manager at %s: %s", address, exc)
        return False
    return True
