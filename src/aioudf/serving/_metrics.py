"""Prometheus metrics: what each task's UDF connection is doing, and the server's state.

:class:`Metrics` owns the metric families (in a registry of its own) and
hands each agent a :class:`ConnectionMetrics`, labelled with the ``task``
and ``node`` of Kapacitor's Init. :class:`MetricsEndpoint` serves the
Prometheus text format at ``/metrics`` on the event loop. ``aioudf serve
--metrics HOST:PORT`` and ``UnixServer(..., metrics="HOST:PORT")`` set both
up; every metric and label is described in docs/observability.md.

Cost. Nothing here runs once per point. The agent counts points per decoded
run (``len()`` of up to 256 points) and per write of its output (the
emitter keeps two plain integers, published when the writer flushes), times
one ``point()`` call in :data:`POINT_SAMPLE`, and the queue depths are read
when Prometheus scrapes (:meth:`Metrics.refresh`), not kept up to date.

Many processes, one endpoint. With ``PROMETHEUS_MULTIPROC_DIR`` set before
``prometheus_client`` is imported, every process's values live in files of
that directory (prometheus_client's multiprocess mode), and
:meth:`Metrics.exposition_registry` sums them for the endpoint: counters of
processes that exited stay in the sum, so a task's counters continue across
a hand-over to a new process or a worker's restart instead of restarting at
zero; gauges count live processes only (``livesum``) once the supervisor
calls :meth:`Metrics.process_exited`. :func:`use_multiprocess_dir` prepares
this (``aioudf serve --metrics`` does, in :func:`shared_dir`);
:class:`MetricsObserver` turns hand-over and worker events into
:meth:`Metrics.handover`, :meth:`Metrics.workers`,
:meth:`Metrics.worker_restarted` and :meth:`Metrics.process_exited`. The
endpoint's listening socket is handed over with the server's sockets, so
its port answers throughout a hand-over.

``prometheus_client`` is the optional extra ``aioudf[metrics]``; asking for
metrics without it raises :class:`MetricsUnavailable`, one line naming the extra.

Why one module of this size: the families, the per-connection hooks that
feed them and the multiprocess directory are one registry's business; the
HTTP endpoint is ``_metrics_http``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ..errors import AioudfError, MetricsUnavailable
from ..wire._messages import EndBatch, InitRequest, Point
from ._handover import Observer

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ..runtime._output import Emitter, OutputQueue

__all__ = [
    "ERROR_KINDS",
    "POINT_SAMPLE",
    "ConnectionMetrics",
    "Metrics",
    "MetricsObserver",
    "MetricsUnavailable",
    "parse_address",
    "shared_dir",
    "use_multiprocess_dir",
]

logger = logging.getLogger("aioudf")

#: One ``point()`` call in this many is timed for ``aioudf_handler_seconds``
#: (a histogram observation costs about as much as a mirror's whole point).
POINT_SAMPLE = 64

#: Points between two calls of :meth:`ConnectionMetrics.sample` (the agent asks
#: at its time-slice check, every ``agent._SLICE_CHECK`` requests).
SAMPLE_CALLS = 16

_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: The metrics directory of a server on PATH is PATH + this (unless
#: ``PROMETHEUS_MULTIPROC_DIR`` names one): see :func:`shared_dir`.
DIR_SUFFIX = ".metrics"

#: Seconds between two publications of a worker's queue depths (the
#: supervisor's endpoint cannot read another process's queues).
REFRESH_INTERVAL = 1.0

# Handler call durations: from 10 µs (a mirror's point) to 10 s (a slow lookup).
_HANDLER_BUCKETS = (
    1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# Keepalive answers: Kapacitor fails the task at its UDF timeout (10 s by default).
_KEEPALIVE_BUCKETS = (1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0)

# Request types as the `request` label names them (on requests_received_total
# and handler_seconds alike).
_REQUEST_LABELS = {
    "InfoRequest": "info",
    "InitRequest": "init",
    "KeepaliveRequest": "keepalive",
    "SnapshotRequest": "snapshot",
    "RestoreRequest": "restore",
    "BeginBatch": "begin_batch",
    "Point": "point",
    "EndBatch": "end_batch",
}

# Why a connection ended, by the first words of the ErrorResponse's text.
_ERROR_KINDS = (
    ("protocol error", "protocol"),
    ("connection lost", "connection_lost"),
    ("internal error", "internal"),
    ("UDF connection cancelled", "cancelled"),
    ("Kapacitor stopped reading", "peer_not_reading"),
)

#: Every ``kind`` of ``aioudf_errors_total``: a task node's series start at 0
#: at Init. ``handler``: a handler method raised; the ``*_refused`` kinds are
#: refusals the connection survives (``options_refused``: the TICKscript's
#: options do not fit the declaration, before ``init()`` runs).
ERROR_KINDS = (
    "handler",
    *(kind for _, kind in _ERROR_KINDS),
    "options_refused",
    "init_refused",
    "restore_refused",
)


def _prometheus() -> Any:
    try:
        import prometheus_client
        import prometheus_client.exposition
        import prometheus_client.multiprocess
    except ImportError:
        raise MetricsUnavailable() from None
    return prometheus_client


def use_multiprocess_dir(path: str | os.PathLike[str], *, fresh: bool = True) -> None:
    """Make this process (and the processes it starts) share metrics through ``path``.

    For a supervisor: call it before anything imports ``prometheus_client``
    (the library chooses its storage then) and before starting workers,
    which inherit the environment variable. ``fresh`` removes the files a
    previous run left (their counters would be summed in); a process taking
    over from another (a re-executed supervisor) passes ``fresh=False`` to
    continue its counts. Raises :class:`AioudfError` if ``prometheus_client``
    was already imported without it.
    """
    path = os.fspath(path)
    imported = sys.modules.get("prometheus_client") is not None  # (None: blocked)
    if imported and os.environ.get(_MULTIPROC_ENV) != path:
        raise AioudfError(
            "prometheus_client was imported before the metrics directory was set; "
            "call use_multiprocess_dir() first"
        )
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        if fresh:
            for name in os.listdir(path):
                if name.endswith(".db"):
                    os.unlink(os.path.join(path, name))
    except OSError as exc:
        raise AioudfError(
            f"cannot use the metrics directory {path}: {exc.strerror or exc} "
            f"(set {_MULTIPROC_ENV} to another one)"
        ) from None
    os.environ[_MULTIPROC_ENV] = path


def shared_dir(socket_path: str | os.PathLike[str]) -> str:
    """The metrics directory every process serving ``socket_path`` shares.

    ``PROMETHEUS_MULTIPROC_DIR`` if set (a supervisor's workers and a
    reload's new process inherit it), else ``PATH.metrics`` beside the
    socket: found again by an independent process that takes the socket
    over (``aioudf serve --takeover``), so counters continue there too.
    """
    return os.environ.get(_MULTIPROC_ENV) or os.fspath(socket_path) + DIR_SUFFIX


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6, ``:PORT`` for every interface)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise AioudfError(f"expected HOST:PORT for the metrics endpoint, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "0.0.0.0", int(port_text)


class Metrics:
    """The metric families of one UDF server (or process), and its live connections.

    ``registry``: a ``prometheus_client.CollectorRegistry`` to register into
    (an embedding service's own); by default one of this object's.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        prom = _prometheus()
        self.multiprocess_dir: str | None = os.environ.get(_MULTIPROC_ENV) or None
        self.registry: CollectorRegistry = registry or prom.CollectorRegistry()
        task_node = ("task", "node")

        def counter(name: str, doc: str, labels: Sequence[str] = task_node) -> Any:
            return prom.Counter(name, doc, labels, registry=self.registry)

        def gauge(name: str, doc: str, labels: Sequence[str] = task_node) -> Any:
            return prom.Gauge(
                name, doc, labels, registry=self.registry, multiprocess_mode="livesum"
            )

        self.requests = counter(
            "aioudf_requests_received_total",
            "Requests received from Kapacitor, by request type.",
            (*task_node, "request"),
        )
        self.points_received = counter("aioudf_points_received_total", "Points received.")
        self.points_emitted = counter("aioudf_points_emitted_total", "Points emitted.")
        self.batches_received = counter(
            "aioudf_batches_received_total", "Batches received (EndBatch requests)."
        )
        self.batches_emitted = counter(
            "aioudf_batches_emitted_total", "Batches emitted (EndBatch responses)."
        )
        self.handler_seconds = prom.Histogram(
            "aioudf_handler_seconds",
            f"Time a handler method took per request (point(): 1 call in {POINT_SAMPLE}).",
            (*task_node, "request"),
            registry=self.registry,
            buckets=_HANDLER_BUCKETS,
        )
        self.keepalive_latency = prom.Histogram(
            "aioudf_keepalive_latency_seconds",
            "From Kapacitor sending a keepalive to the UDF queueing its answer.",
            task_node,
            registry=self.registry,
            buckets=_KEEPALIVE_BUCKETS,
        )
        self.backlog = gauge(
            "aioudf_backlog_requests", "Requests read and waiting for the handler."
        )
        self.output_queue = gauge(
            "aioudf_output_queue_bytes", "Encoded responses waiting to be written to Kapacitor."
        )
        self.errors = counter(
            "aioudf_errors_total", "Connections ended on an error or requests refused, by kind.",
            (*task_node, "kind"),
        )  # fmt: skip
        self.handovers = counter(
            "aioudf_handovers_total", "Connections handed over to another process."
        )
        self.connections_open = gauge("aioudf_connections_open", "Connections being served.", ())
        self.connections = counter(
            "aioudf_connections_total", "Connections accepted since start.", ()
        )
        # Made at the first workers() call, by a supervisor: a single-process
        # server exports no workers_alive rather than a misleading 0.
        self._gauge = gauge
        self.workers_alive: Any = None
        self.worker_restarts = counter(
            "aioudf_worker_restarts_total", "Worker processes restarted after they died.", ()
        )
        self.worker_starts = counter(
            "aioudf_worker_starts_total", "Worker processes started (replacements included).", ()
        )
        self.worker_start_failures = counter(
            "aioudf_worker_start_failures_total",
            "Worker processes that ended before they served (started again after a pause).",
            (),
        )
        self.connections_balanced = counter(
            "aioudf_connections_balanced_total",
            "Live connections moved to a worker that came up late, to share the load.",
            (),
        )
        self._live: set[ConnectionMetrics] = set()
        self._depth_labels: set[tuple[str, str]] = set()
        # The process's own standard metrics and the build, served by the
        # endpoint (not recorded in the multiprocess files: the endpoint's
        # process reports itself). A registry of the embedding service's
        # has its own process and platform collectors already.
        build = prom.Info("aioudf_build", "The aioudf serving these metrics.", registry=None)
        build.info({"version": __version__})
        self._own: list[Any] = [build]
        if registry is None:
            self._own += [
                prom.ProcessCollector(registry=None),
                prom.PlatformCollector(registry=None),
            ]
        if self.multiprocess_dir is None:
            for collector in self._own:
                self.registry.register(collector)

    # ---- connections ------------------------------------------------------

    def connection(self, emitter: Emitter, backlog: Any, output: OutputQueue) -> ConnectionMetrics:
        """The metrics of one agent's connection (see :class:`ConnectionMetrics`)."""
        return ConnectionMetrics(self, emitter, backlog, output)

    def opened(self) -> None:
        """A connection was accepted."""
        self.connections.inc()
        self.connections_open.inc()

    def closed(self) -> None:
        """A connection accepted with :meth:`opened` is gone."""
        self.connections_open.dec()

    # ---- hooks for a supervisor (workers, hand-over) ------------------------

    def handover(self, task: str, node: str) -> None:
        """A connection of ``task``/``node`` was handed over to another process."""
        self.handovers.labels(task, node).inc()

    def workers(self, alive: int) -> None:
        """The number of worker processes running now."""
        if self.workers_alive is None:
            self.workers_alive = self._gauge(
                "aioudf_workers_alive", "Worker processes running (with --workers).", ()
            )
        self.workers_alive.set(alive)

    def worker_restarted(self) -> None:
        """A worker died and was replaced."""
        self.worker_restarts.inc()

    def worker_start_failed(self) -> None:
        """A worker ended before it served."""
        self.worker_start_failures.inc()

    def balanced(self, moved: int) -> None:
        """``moved`` connections went to another worker to share the load."""
        self.connections_balanced.inc(moved)

    def process_exited(self, pid: int) -> None:
        """Drop a process that exited from the live gauges (multiprocess mode only)."""
        if self.multiprocess_dir is not None:
            _prometheus().multiprocess.mark_process_dead(pid, self.multiprocess_dir)

    # ---- scraping ---------------------------------------------------------

    def refresh(self) -> None:
        """Publish what the live connections hold now: queue depths, pending counts."""
        depths: dict[tuple[str, str], list[int]] = {}
        for connection in list(self._live):
            connection.publish()
            depth = depths.setdefault(connection.labels, [0, 0])
            depth[0] += len(connection.backlog)
            depth[1] += connection.output.size
        for labels in self._depth_labels - depths.keys():
            # No connection of this task node left: zero (for other
            # processes' sums), then drop the series from this one.
            for family in (self.backlog, self.output_queue):
                family.labels(*labels).set(0)
                family.remove(*labels)
        for labels, (backlog, output) in depths.items():
            self.backlog.labels(*labels).set(backlog)
            self.output_queue.labels(*labels).set(output)
        self._depth_labels = set(depths)

    def exposition_registry(self) -> CollectorRegistry:
        """What the endpoint serves: this registry, or every process's in multiprocess mode."""
        if self.multiprocess_dir is None:
            return self.registry
        prom = _prometheus()
        registry: CollectorRegistry = prom.CollectorRegistry()
        prom.multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        for collector in self._own:
            registry.register(collector)
        return registry

    def render(self) -> bytes:
        """The Prometheus text format of everything, refreshed."""
        return self.render_as("")[0]

    def render_as(self, accept: str) -> tuple[bytes, str]:
        """Everything, refreshed, in the format ``accept`` asks for; and its content type.

        ``accept`` is the scraper's Accept header: OpenMetrics when it asks
        for ``application/openmetrics-text``, else the Prometheus text format.
        """
        self.refresh()
        encode, content_type = _prometheus().exposition.choose_encoder(accept)
        data: bytes = encode(self.exposition_registry())
        return data, content_type

    def observer(self, inner: Observer | None = None) -> MetricsObserver:
        """An observer that counts hand-overs and workers here, then tells ``inner``."""
        return MetricsObserver(self, inner)


class MetricsObserver(Observer):
    """Counts hand-overs and workers into a :class:`Metrics`; passes every event on to ``inner``.

    A server or supervisor given metrics wraps its observer in one, so the
    hand-over and worker metrics need no call of their own.
    """

    def __init__(self, metrics: Metrics, inner: Observer | None = None) -> None:
        self.metrics = metrics
        self.inner = inner or Observer()
        self._workers: set[int] = set()

    def handover_started(self) -> None:
        self.inner.handover_started()

    def connection_handed_over(self, task_id: str, node_id: str = "") -> None:
        self.metrics.handover(task_id, node_id)
        self.inner.connection_handed_over(task_id, node_id)

    def connection_taken_over(self, task_id: str, node_id: str = "") -> None:
        self.inner.connection_taken_over(task_id, node_id)

    def connection_kept(self, task_id: str, reason: str, node_id: str = "") -> None:
        self.inner.connection_kept(task_id, reason, node_id)

    def worker_started(self, pid: int) -> None:
        self._workers.add(pid)
        self.metrics.workers(len(self._workers))
        self.metrics.worker_starts.inc()
        self.inner.worker_started(pid)

    def worker_exited(self, pid: int, cause: str, *, replaced: bool) -> None:
        self._workers.discard(pid)
        self.metrics.process_exited(pid)  # its gauges leave the sums; its counters stay
        self.metrics.workers(len(self._workers))
        if replaced:
            self.metrics.worker_restarted()
        self.inner.worker_exited(pid, cause, replaced=replaced)

    def worker_failed_to_start(self, pid: int, cause: str, retry_in: float | None) -> None:
        self.metrics.worker_start_failed()
        self.inner.worker_failed_to_start(pid, cause, retry_in)

    def connections_balanced(self, source: int, target: int, moved: int, kept: int) -> None:
        self.metrics.balanced(moved)
        self.inner.connections_balanced(source, target, moved, kept)


class ConnectionMetrics:
    """The hooks an agent calls, labelled by the task and node of its Init.

    Requests before Init (Kapacitor's Info probe) are counted with empty
    ``task`` and ``node`` labels.
    """

    __slots__ = (
        "_children",
        "_countdown",
        "_metrics",
        "_published",
        "backlog",
        "emitter",
        "labels",
        "output",
    )

    def __init__(
        self, metrics: Metrics, emitter: Emitter, backlog: Any, output: OutputQueue
    ) -> None:
        self._metrics = metrics
        self.emitter = emitter
        self.backlog = backlog
        self.output = output
        self._published = (0, 0)  # the emitter's point and batch counts published so far
        self._countdown = 1
        self._bind("", "")
        metrics._live.add(self)

    def bind(self, task: str, node: str) -> None:
        """Label what follows with ``task`` and ``node`` (a connection taken over after Init)."""
        self._bind(task, node)

    def _bind(self, task: str, node: str) -> None:
        """Label what follows with ``task`` and ``node``."""
        self.labels = (task, node)
        self._children: dict[tuple[Any, str], Any] = {}
        if task or node:
            # A task node's counters exist from Init on: 0 says "nothing came".
            m = self._metrics
            for family in (
                m.points_received, m.points_emitted, m.batches_received, m.batches_emitted,
                m.handovers,
            ):  # fmt: skip
                self._child(family)
            for kind in ERROR_KINDS:
                self._child(m.errors, kind)

    def _child(self, family: Any, label: str = "") -> Any:
        """The family's series for this connection's labels (and ``label``, if given)."""
        key = (family, label)
        child = self._children.get(key)
        if child is None:
            labels = (*self.labels, label) if label else self.labels
            child = self._children[key] = family.labels(*labels)
        return child

    # ---- reading ----------------------------------------------------------

    def received(self, requests: list[Any]) -> None:
        """A run of Points, or one request of another kind, was decoded."""
        m = self._metrics
        kind = type(requests[0])
        if kind is Point or kind is bytes:  # bytes: Points a blocking point() parses itself
            self._child(m.requests, "point").inc(len(requests))
            self._child(m.points_received).inc(len(requests))
            return
        if kind is InitRequest:
            init: InitRequest = requests[0]
            self._bind(init.taskID, init.nodeID)
        elif kind is EndBatch:
            self._child(m.batches_received).inc()
        self._child(m.requests, _REQUEST_LABELS.get(kind.__name__, kind.__name__)).inc()

    def keepalive(self, sent_ns: int) -> None:
        """A keepalive Kapacitor sent at ``sent_ns`` (its clock) was answered."""
        self._child(self._metrics.requests, "keepalive").inc()
        latency = time.time() - sent_ns / 1e9
        if 0 <= latency < 3600:  # Kapacitor's clock, on this machine; else not a time
            self._child(self._metrics.keepalive_latency).observe(latency)

    # ---- handling ---------------------------------------------------------

    def sample(self) -> bool:
        """Called every ``SAMPLE_CALLS`` points: True when the next point() is to be timed."""
        self._countdown -= 1
        if self._countdown:
            return False
        self._countdown = POINT_SAMPLE // SAMPLE_CALLS
        return True

    def handled(self, request: str, seconds: float, count: int = 1) -> None:
        """A handler method took ``seconds`` for ``count`` requests of type ``request``."""
        self._child(self._metrics.handler_seconds, request).observe(seconds / count)

    def failed(self, reason: str) -> None:
        """The connection ends on an error whose text is ``reason``."""
        # Else "Class.method() failed ...": the handler raised.
        kind = next((k for prefix, k in _ERROR_KINDS if reason.startswith(prefix)), "handler")
        self.refused(kind)

    def refused(self, kind: str) -> None:
        """Count an error of ``kind`` (``init_refused``, ``restore_refused``...)."""
        self._child(self._metrics.errors, kind).inc()

    # ---- writing ----------------------------------------------------------

    def publish(self) -> None:
        """Publish what the emitter counted since the last call."""
        # The emitter's counts only grow (a worker thread may be adding to
        # them): publish the difference from what was published before.
        emitter = self.emitter
        points = emitter.points_emitted - self._published[0]
        batches = emitter.batches_emitted - self._published[1]
        if points:
            self._child(self._metrics.points_emitted).inc(points)
        if batches:
            self._child(self._metrics.batches_emitted).inc(batches)
        self._published = (self._published[0] + points, self._published[1] + batches)

    def close(self) -> None:
        """The connection is over: publish the last counts, stop reporting its queues."""
        self.publish()
        self._metrics._live.discard(self)
