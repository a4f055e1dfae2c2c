"""Kapacitor's side of a UDF connection, built to never be the bottleneck.

The driver speaks the wire protocol with blocking sockets and pipes, not with
an event loop: requests are sent from one pre-encoded ``bytes`` object by a
sender thread (a single ``sendall``, which releases the GIL while the kernel
copies), and responses are read in large chunks by the calling thread and only
*counted* once the clock has stopped. The UDF runs in a process of its own, so
the two share nothing but the connection.

Targets are what Kapacitor can talk to: :class:`SocketTarget` (a socket UDF
already listening on a path; every run is a new connection) and
:class:`CommandTarget` (a process UDF; every run spawns the program, as
Kapacitor does for every task).

Measurements, each over one fresh connection after Init has been answered:

* :func:`throughput` sends a whole workload, half-closes, and reads until the
  UDF closes its side: time from the first byte sent to end of stream.
* :func:`paced_latency` sends one point at a time on a fixed schedule and
  times each round trip (send to last byte of the response frame).
* :func:`stalled_reader` sends a workload while never reading, waits until
  the sender cannot make progress, samples the UDF's memory, then reads
  everything and checks that nothing was lost.
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import select
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from workload import Workload

from aioudf._pb import udf_pb2 as pb
from aioudf.errors import ProtocolError
from aioudf.wire._kapacitor import KapacitorConnection, KapacitorEvent
from aioudf.wire._layout import frame_bounds
from aioudf.wire._values import parse_option_args

__all__ = [
    "CommandTarget",
    "Connection",
    "Latency",
    "Stall",
    "SocketTarget",
    "Target",
    "Throughput",
    "UDFFailed",
    "count_frames",
    "init_request",
    "paced_latency",
    "proc_memory",
    "query_info",
    "start_socket_server",
    "stalled_reader",
    "throughput",
]

_READ_SIZE = 1 << 20
_SEND_CHUNK = 64 * 1024


class UDFFailed(Exception):
    """The UDF answered with an error, closed early, or misbehaved."""


# ---- connections ------------------------------------------------------------


class Connection(Protocol):
    """Both directions of one connection to one UDF instance (blocking)."""

    #: Process id of the UDF serving this connection (for memory figures).
    pid: int

    def send(self, data: bytes | memoryview) -> None:
        """Send all of ``data``; blocks while the UDF does not read."""

    def close_write(self) -> None:
        """Half-close: the UDF sees the end of its input, as at a task stop."""

    def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes; ``b""`` once the UDF has closed its side."""

    def close(self) -> str:
        """Tear down; return the UDF's stderr (processes) or ``""``."""

    def cpu_time(self) -> float:
        """CPU seconds (user + system) the UDF process has used so far."""


def _proc_cpu_time(pid: int) -> float:
    """User + system CPU seconds of a live process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        # Fields after the command name (which may hold spaces), from field 3.
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: Seconds without a byte from the UDF before the driver gives up on it.
TIMEOUT = 120.0


class _SocketConnection:
    def __init__(self, path: str, pid: int) -> None:
        self.pid = pid
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(TIMEOUT)
        self._sock.connect(path)

    def send(self, data: bytes | memoryview) -> None:
        self._sock.sendall(data)

    def close_write(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)

    def recv(self, size: int) -> bytes:
        return self._sock.recv(size)

    def close(self) -> str:
        self._sock.close()
        return ""

    def cpu_time(self) -> float:
        # Unknown without the server's process id (a --socket target without --pid).
        return _proc_cpu_time(self.pid) if self.pid else math.nan


class _PipeConnection:
    def __init__(self, argv: Sequence[str], env: Mapping[str, str] | None) -> None:
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115  # closed by close()
        self._process = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=dict(env) if env is not None else None,
            bufsize=0,
        )
        self.pid = self._process.pid
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._in = self._process.stdin.fileno()
        self._out = self._process.stdout.fileno()
        self._cpu: float | None = None  # set once the process is reaped

    def send(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._in, view[:_READ_SIZE]) :]

    def close_write(self) -> None:
        assert self._process.stdin is not None
        with contextlib.suppress(OSError):
            self._process.stdin.close()

    def recv(self, size: int) -> bytes:
        readable, _, _ = select.select([self._out], [], [], TIMEOUT)
        if not readable:
            raise TimeoutError(f"the UDF sent nothing for {TIMEOUT:g} s")
        return os.read(self._out, size)

    def close(self) -> str:
        self.close_write()
        # Reap the process with wait4() for its resource usage: its CPU time
        # is still known once it has exited.
        deadline = time.monotonic() + 30
        while True:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                self._process.kill()
                pid, status, usage = os.wait4(self.pid, 0)
                break
            time.sleep(0.005)
        self._process.returncode = os.waitstatus_to_exitcode(status)
        self._cpu = usage.ru_utime + usage.ru_stime
        assert self._process.stdout is not None
        self._process.stdout.close()
        self._stderr.seek(0)
        stderr = self._stderr.read().decode(errors="replace")
        self._stderr.close()
        if self._process.returncode != 0:
            raise UDFFailed(f"UDF exited with status {self._process.returncode}: {stderr[-2000:]}")
        return stderr

    def cpu_time(self) -> float:
        if self._cpu is not None:
            return self._cpu
        return _proc_cpu_time(self.pid)


class Target(Protocol):
    """Something the driver can open UDF connections to."""

    def open(self) -> Connection: ...
    def describe(self) -> str: ...


@dataclass
class SocketTarget:
    """A socket UDF listening on ``path``, served by process ``pid`` (0: unknown)."""

    path: str
    pid: int

    def open(self) -> Connection:
        return _SocketConnection(self.path, self.pid)

    def describe(self) -> str:
        return f"socket {self.path}"


@dataclass
class CommandTarget:
    """A process UDF: ``argv`` is started for every connection."""

    argv: Sequence[str]
    env: Mapping[str, str] | None = None

    def open(self) -> Connection:
        return _PipeConnection(self.argv, self.env)

    def describe(self) -> str:
        return " ".join(self.argv)


@contextlib.contextmanager
def start_socket_server(
    argv: Sequence[str],
    path: str,
    env: Mapping[str, str] | None = None,
    wait: float = 30.0,
    log: str | None = None,
) -> collections.abc.Iterator[SocketTarget]:
    """Run a socket UDF server (``argv`` serves on ``path``); stop it with SIGTERM.

    ``log``: a file to keep its stderr in, for the caller to read as it runs.
    """
    with open(log, "w+b") if log else tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            list(argv), stderr=stderr, env=dict(env) if env is not None else None
        )
        try:
            deadline = time.monotonic() + wait
            while not _accepts(path):
                if process.poll() is not None or time.monotonic() > deadline:
                    stderr.seek(0)
                    raise UDFFailed(
                        f"socket server {' '.join(argv)} did not start: "
                        + stderr.read().decode(errors="replace")[-2000:]
                    )
                time.sleep(0.02)
            yield SocketTarget(path, process.pid)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _accepts(path: str) -> bool:
    if not os.path.exists(path):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


# ---- reading responses --------------------------------------------------------


def count_frames(data: bytes) -> collections.Counter[str]:
    """Count the Response frames in ``data`` by kind, without decoding data frames.

    Only the tag of each frame is looked at for points and batch markers
    (:meth:`~aioudf.wire.KapacitorConnection.count_responses`); an
    ErrorResponse raises :class:`UDFFailed` with the UDF's text.
    """
    protocol = KapacitorConnection()
    protocol.receive_data(data)
    try:
        counts = protocol.count_responses()
        protocol.receive_eof()
    except ProtocolError as exc:
        raise UDFFailed(str(exc)) from None
    return counts


def _reply(conn: Connection, protocol: KapacitorConnection) -> KapacitorEvent:
    """Read until the UDF's next response (used for handshakes only)."""
    while True:
        try:
            event = protocol.next_event()
        except ProtocolError as exc:
            raise UDFFailed(str(exc)) from None
        if isinstance(event, pb.ErrorResponse):
            raise UDFFailed(f"the UDF sent an ErrorResponse: {event.error}")
        if event is not None:
            return event
        chunk = conn.recv(_READ_SIZE)
        if not chunk:
            raise UDFFailed("the UDF closed the connection before it replied")
        protocol.receive_data(chunk)


def query_info(target: Target) -> pb.InfoResponse:
    """Kapacitor's first contact: Info on a connection of its own."""
    conn = target.open()
    protocol = KapacitorConnection()
    try:
        conn.send(protocol.send_info())
        info = _reply(conn, protocol)
        conn.close_write()
        while conn.recv(_READ_SIZE):
            pass
    finally:
        conn.close()
    if not isinstance(info, pb.InfoResponse):
        raise UDFFailed(f"the UDF answered Info with {type(info).__name__}")
    return info


def init_request(options: Mapping[str, Sequence[str]], info: pb.InfoResponse) -> pb.InitRequest:
    """The InitRequest of a benchmark task, option values typed as the UDF declares them.

    ``options`` maps a TICKscript option name to the texts of its values
    (``{"field": ["usage_idle"], "size": ["10"]}``), read as TICKscript
    literals (:func:`aioudf.toolkit.parse_option_args`).
    """
    args = [f"{name}={','.join(texts)}" if texts else name for name, texts in options.items()]
    try:
        messages = parse_option_args(args, info)
    except ValueError as exc:
        raise UDFFailed(str(exc)) from None
    return pb.InitRequest(options=messages, taskID="benchmark", nodeID="udf1")


def start_task(target: Target, init: pb.InitRequest) -> Connection:
    """Open a connection and complete Init, as Kapacitor does for a task."""
    conn = target.open()
    protocol = KapacitorConnection()
    try:
        conn.send(protocol.send_init(init.options, task_id=init.taskID, node_id=init.nodeID))
        response = _reply(conn, protocol)
    except BaseException:
        with contextlib.suppress(Exception):
            conn.close()
        raise
    if not isinstance(response, pb.InitResponse) or not response.success:
        conn.close()
        error = getattr(response, "error", type(response).__name__)
        raise UDFFailed(f"Init refused: {error}")
    return conn


class _Sender(threading.Thread):
    """Sends a buffer in chunks, recording progress, then half-closes."""

    def __init__(self, conn: Connection, data: bytes, chunk: int | None = None) -> None:
        super().__init__(daemon=True, name="sender")
        self._conn = conn
        self._data = data
        self._chunk = chunk
        #: Bytes handed to the kernel so far.
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            if self._chunk is None:
                self._conn.send(self._data)  # one call: the kernel paces it
                self.sent = len(self._data)
            else:
                view = memoryview(self._data)
                for start in range(0, len(view), self._chunk):
                    piece = view[start : start + self._chunk]
                    self._conn.send(piece)
                    self.sent += len(piece)
            self._conn.close_write()
        except BaseException as exc:  # reported by the caller
            self.error = exc


# ---- measurements -----------------------------------------------------------


@dataclass
class Throughput:
    """One throughput run."""

    seconds: float
    points_in: int
    responses: collections.Counter[str]
    #: CPU seconds the UDF process used from the first byte sent to the end.
    udf_cpu: float
    #: What the UDF wrote, when its counting was left to the caller (``count=False``).
    output: bytes = b""

    @property
    def points_per_second(self) -> float:
        return self.points_in / self.seconds

    @property
    def cpu_per_point(self) -> float:
        """The UDF's CPU seconds per point (user + system)."""
        return self.udf_cpu / self.points_in


def throughput(
    target: Target,
    init: pb.InitRequest,
    workload: Workload,
    *,
    count: bool = True,
    conn: Connection | None = None,
) -> Throughput:
    """Send all of ``workload``, half-close, read to end of stream; time it.

    The responses are counted by kind once the clock has stopped; with
    ``count=False`` they are not, and ``output`` keeps them for the caller
    to count when no other connection is being timed (``count_frames``).
    ``conn``: a connection opened with :func:`start_task` before (default:
    one opened here).
    """
    conn = conn or start_task(target, init)
    chunks: list[bytes] = []
    sender = _Sender(conn, workload.data)
    recv = conn.recv
    try:
        cpu = conn.cpu_time()
        start = time.perf_counter()
        sender.start()
        while chunk := recv(_READ_SIZE):
            chunks.append(chunk)
        seconds = time.perf_counter() - start
        sender.join()
    finally:
        conn.close()
    cpu = conn.cpu_time() - cpu
    if sender.error is not None:
        raise UDFFailed(f"sending failed: {sender.error!r}")
    output = b"".join(chunks)
    if not count:
        return Throughput(seconds, workload.points, collections.Counter(), cpu, output)
    return Throughput(seconds, workload.points, count_frames(output), cpu)


@dataclass
class Latency:
    """Round-trip times of single points sent on a fixed schedule."""

    rate: float
    #: Round trips in seconds, in the order they were measured.
    samples: list[float] = field(default_factory=list)

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.samples)
        index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
        return ordered[index]

    @property
    def maximum(self) -> float:
        return max(self.samples)


def _split_frames(workload: Workload) -> list[bytes]:
    """The workload's frames, each whole (header included)."""
    frames: list[bytes] = []
    pos = 0
    for _, end in frame_bounds(workload.data):
        frames.append(workload.data[pos:end])
        pos = end
    return frames


def paced_latency(
    target: Target, init: pb.InitRequest, workload: Workload, rate: float, warmup: int = 200
) -> Latency:
    """Send the workload's points one by one, ``rate`` per second; time each round trip.

    Every point must produce exactly one response frame (a stream-to-stream
    UDF like mirror). The first ``warmup`` round trips are not recorded.
    """
    frames = _split_frames(workload)
    if len(frames) <= warmup:
        raise ValueError(f"need more than {warmup} points for a latency run")
    conn = start_task(target, init)
    protocol = KapacitorConnection()
    result = Latency(rate)
    period = 1.0 / rate
    clock = time.perf_counter
    try:
        next_send = clock()
        for number, frame in enumerate(frames):
            delay = next_send - clock()
            if delay > 0:
                time.sleep(delay)
            sent = clock()
            conn.send(frame)
            _read_one_frame(conn, protocol)
            elapsed = clock() - sent
            if number >= warmup:
                result.samples.append(elapsed)
            next_send += period
        conn.close_write()
        while conn.recv(_READ_SIZE):
            pass
    finally:
        conn.close()
    return result


def _read_one_frame(conn: Connection, protocol: KapacitorConnection) -> None:
    """Read until a whole response frame has arrived (any after it are counted too)."""
    while True:
        try:
            if protocol.count_responses():
                return
        except ProtocolError as exc:
            raise UDFFailed(str(exc)) from None
        chunk = conn.recv(_READ_SIZE)
        if not chunk:
            raise UDFFailed("the UDF closed the connection during a latency run")
        protocol.receive_data(chunk)


def proc_memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in bytes, from /proc."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


@dataclass
class Stall:
    """What happened when the driver stopped reading."""

    bytes_total: int
    #: Bytes the UDF (and the kernel buffers in between) took before writes blocked.
    bytes_accepted: int
    #: The UDF's memory before any data, while the driver was not reading, and at the end.
    rss_idle: int
    rss_stalled: int
    peak_rss: int
    points_returned: int
    points_sent: int


def stalled_reader(
    target: Target,
    init: pb.InitRequest,
    workload: Workload,
    settle: float = 1.0,
    limit: float = 120.0,
) -> Stall:
    """Send ``workload`` without reading; measure the UDF's memory; then read it all.

    The driver considers the UDF stalled once the sender has made no progress
    for ``settle`` seconds (or it sent everything, which means backpressure
    did not hold). ``limit`` bounds the whole wait.
    """
    conn = start_task(target, init)
    idle = proc_memory(conn.pid)["VmRSS"]
    sender = _Sender(conn, workload.data, chunk=_SEND_CHUNK)
    chunks: list[bytes] = []
    try:
        sender.start()
        deadline = time.monotonic() + limit
        last = -1
        last_change = time.monotonic()
        while sender.is_alive() and time.monotonic() < deadline:
            if sender.sent != last:
                last = sender.sent
                last_change = time.monotonic()
            elif time.monotonic() - last_change >= settle:
                break
            time.sleep(0.05)
        accepted = sender.sent
        stalled = proc_memory(conn.pid)
        while chunk := conn.recv(_READ_SIZE):
            chunks.append(chunk)
        sender.join()
        final = proc_memory(conn.pid)
    finally:
        conn.close()
    if sender.error is not None:
        raise UDFFailed(f"sending failed: {sender.error!r}")
    counts = count_frames(b"".join(chunks))
    return Stall(
        bytes_total=len(workload.data),
        bytes_accepted=accepted,
        rss_idle=idle,
        rss_stalled=stalled["VmRSS"],
        peak_rss=max(final["VmHWM"], stalled["VmHWM"]),
        points_returned=counts["point"],
        points_sent=workload.points,
    )
