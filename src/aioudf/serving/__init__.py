"""Processes and sockets: how a handler is run and kept running.

- ``_stdio``: stdin/stdout as streams (pipes, sockets, files, /dev/null).
- ``_activation``: systemd's LISTEN_FDS sockets and sd_notify.
- ``_lifecycle``: what ``serve()``, the supervisor and a worker share.
- ``_handover``: the hand-over wire (SCM_RIGHTS) and its conversations.
- ``_control``: the socket files (the one bind) and the control socket.
- ``_metrics``: Prometheus metrics (per-task families, shared across
  processes); implements the runtime's hooks.
- ``_metrics_http``: the ``/metrics`` endpoint, on the loop, its socket
  handed over with the server's.
- ``_process``: process UDFs: :func:`run`, :func:`run_stdio`.
- ``_server``: socket UDFs: :class:`UnixServer`, :func:`serve`.
- ``_worker``: one worker: the inherited socket, the supervisor's orders.
- ``_supervisor``: ``--workers``: owns the socket, runs and replaces workers.
- ``_reload``: ``--reload``: watches the handler's files, sends SIGHUP.
"""

from __future__ import annotations

from ._activation import (
    LISTEN_FDS_START,
    activated_socket,
    listen_fds,
    notify,
)
from ._control import (
    ControlSocket,
    bind_socket,
    inode_of,
    prepare_socket_path,
    remove_if_same,
)
from ._handover import (
    CONTROL_SUFFIX,
    HANDOVER_TIMEOUT,
    Channel,
    Giver,
    Message,
    NothingToTakeOver,
    Observer,
    Taker,
    control_path,
    describe_exit,
    give,
    give_connections,
    offer_connection,
    process_exit,
    socket_pair,
    take_connections,
    take_over,
)
from ._lifecycle import (
    Lifecycle,
    Service,
    first,
    signal_handlers,
)
from ._metrics import (
    ERROR_KINDS,
    POINT_SAMPLE,
    ConnectionMetrics,
    Metrics,
    MetricsObserver,
    MetricsUnavailable,
    parse_address,
    shared_dir,
    use_multiprocess_dir,
)
from ._metrics_http import (
    MetricsEndpoint,
    socket_of,
    start_handed_over,
)
from ._process import (
    refuse_stdio,
    refuse_to_start,
    run,
    run_stdio,
)
from ._reload import (
    POLL_INTERVAL,
    changes,
    python_files,
    watch_and_reload,
    with_reload,
)
from ._server import (
    DEFAULT_GRACE,
    DEFAULT_SOCKET_MODE,
    SocketPathError,
    UnixServer,
    serve,
)
from ._stdio import (
    StdioError,
    check_stdio,
    open_stdio,
    reserved_stdout,
)
from ._supervisor import (
    Backoff,
    Supervisor,
    share_plan,
    worker_count,
)
from ._worker import (
    WORKER_ENV,
    run_worker,
    worker_config,
)

__all__ = [
    "Backoff",
    "CONTROL_SUFFIX",
    "Channel",
    "ConnectionMetrics",
    "ControlSocket",
    "DEFAULT_GRACE",
    "DEFAULT_SOCKET_MODE",
    "ERROR_KINDS",
    "Giver",
    "HANDOVER_TIMEOUT",
    "LISTEN_FDS_START",
    "Lifecycle",
    "Message",
    "Metrics",
    "MetricsEndpoint",
    "MetricsObserver",
    "MetricsUnavailable",
    "NothingToTakeOver",
    "Observer",
    "POINT_SAMPLE",
    "POLL_INTERVAL",
    "Service",
    "SocketPathError",
    "StdioError",
    "Supervisor",
    "Taker",
    "UnixServer",
    "WORKER_ENV",
    "activated_socket",
    "bind_socket",
    "changes",
    "check_stdio",
    "control_path",
    "describe_exit",
    "first",
    "give",
    "give_connections",
    "inode_of",
    "listen_fds",
    "notify",
    "offer_connection",
    "open_stdio",
    "parse_address",
    "prepare_socket_path",
    "process_exit",
    "python_files",
    "refuse_stdio",
    "refuse_to_start",
    "remove_if_same",
    "reserved_stdout",
    "run",
    "run_stdio",
    "run_worker",
    "serve",
    "share_plan",
    "shared_dir",
    "signal_handlers",
    "socket_of",
    "socket_pair",
    "start_handed_over",
    "take_connections",
    "take_over",
    "use_multiprocess_dir",
    "watch_and_reload",
    "with_reload",
    "worker_config",
    "worker_count",
]
