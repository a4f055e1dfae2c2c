"""UDFs under a real Kapacitor: points written over HTTP, counted by Kapacitor.

    .venv/bin/python benchmarks/under_kapacitord.py            # about ten minutes
    .venv/bin/python benchmarks/under_kapacitord.py --quick    # about two

The bulk benchmark (run.py) hands a UDF pre-encoded frames in one write;
Kapacitor writes to a UDF in small pieces (about 11 points a read on a
socket, 70 on a pipe), so what a UDF pays per wake-up, and how it writes
back, decides what Kapacitor gets through. Here one hermetic ``kapacitord``
1.4.1 (from ``shared/kapacitor`` beside the checkout) serves every
implementation of every case at once, each declared as a UDF of its own;
each run defines a task on one of them::

    stream|from().measurement('cpu').groupBy('host') @UDF(options) |count('usage_idle')

writes ``--points`` points to Kapacitor's HTTP write endpoint (line
protocol, in bodies of ``--body`` lines from one thread, so the writer is
never the bottleneck), and waits until Kapacitor's own count of points on
the edge out of the UDF node (the task's DOT) reaches them. The clock runs
from the first write to that count; CPU times (user and system, from
``/proc/PID/stat``) and read/write system calls (``/proc/PID/io``) of
kapacitord and of the UDF's processes are read just before and just after.
``no UDF`` is the same task without the UDF node. In the same round, each
aioudf row of a stream case is also fed as many points by the bulk driver
(:class:`Bulk`: run.py's ``throughput()``, input in large reads), and the
report sets its CPU a point under kapacitord against that.

A batch case (``outliers``) runs the batch task::

    batch|query('SELECT usage_idle FROM ...').period(10s).every(1ms).groupBy('host')
        @UDF(options) |count('usage_idle')

whose queries the test kit's InfluxDB stand-in answers to a plan
(:class:`BatchAnswers`): each answer is :data:`BATCH_SERIES` series, each one
of Kapacitor's own batches of ``--batch`` points, as many queries as
``--points`` takes. Kapacitor's query node asks again as soon as it has
handed a query's batches on (``every(1ms)``; Go's ticker drops the ticks it
missed), so the answers, not the schedule, set the pace. One warm-up answer
goes through first; the next query is held until the counters are read,
and the clock starts as it is answered; the query after the measured ones
is held until the run ends (no empty answers spin meanwhile). ``|count()``
takes one message a batch, so the wait is for Kapacitor's count of batches
out of the UDF (one for every batch in, whatever the UDF keeps of it);
points/s and the µs a point count the points into the UDF. The
implementations of a case are measured in turn, round after round, so each round's figures come
from the same minutes of the machine; every figure is the median of
``--runs`` rounds.

The cases and the implementations are two tables (:data:`CASES`,
:func:`implementations`): a row added there is measured like the others.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from driver import (  # noqa: E402
    CommandTarget,
    SocketTarget,
    Target,
    _accepts,
    init_request,
    query_info,
    throughput,
)
from machine import checkout_env, describe_machine, load_average, log, machine_line  # noqa: E402
from peers import find_peers  # noqa: E402
from workload import Workload, point_stream  # noqa: E402

from aioudf._pb import udf_pb2 as pb  # noqa: E402
from aioudf.testing import Batch, DataPoint  # noqa: E402
from aioudf.testing import kapacitord as kit  # noqa: E402
from aioudf.testing.influxdb import QueryServer, series_of  # noqa: E402
from aioudf.wire._frames import encode_frame  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: The database and retention policy the points are written to.
DB, RP = "telegraf", "autogen"
LOOPS = ("asyncio", "uvloop")


# ---- what is measured ---------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One workload: a UDF of each implementation in the same task."""

    #: Short name (``--cases``) and the title of its rows.
    name: str
    title: str
    #: Which example each implementation runs, and how Kapacitor reaches it.
    example: str
    transport: str  # "socket" or "process"
    #: The UDF call's options in TICKscript (``.field('usage_idle').size(10)``).
    options: str = ""
    #: What the echo UDF declares so that Kapacitor accepts ``options``.
    echo_options: Mapping[str, Sequence[pb.ValueType.ValueType]] = field(default_factory=dict)
    #: ``"stream"``: points written over HTTP; ``"batch"``: a batch task whose
    #: queries the benchmark answers (its "points" are the points in the batches).
    kind: str = "stream"
    #: ``options`` as the bulk driver's InitRequest takes them: aioudf's rows
    #: are also measured in bulk each round (None: not, as for batch cases).
    bulk: Mapping[str, Sequence[str]] | None = None


CASES = (
    Case("mirror", "socket mirror", "mirror", "socket", bulk={}),
    Case(
        "moving_avg",
        "process moving_avg",
        "moving_avg",
        "process",
        ".field('usage_idle').size(10).as('usage_idle')",
        {"field": [pb.STRING], "size": [pb.INT], "as": [pb.STRING]},
        bulk={"field": ["usage_idle"], "size": ["10"], "as": ["usage_idle"]},
    ),
    Case(
        "outliers",
        "process outliers (batch)",
        "outliers",
        "process",
        ".field('usage_idle').scale(1.5)",
        {"field": [pb.STRING], "scale": [pb.DOUBLE]},
        kind="batch",
    ),
)


@dataclass(frozen=True)
class Implementation:
    """One way of serving a case's example, as a row of the report."""

    #: The column it is reported under ("aioudf asyncio", "Python agent"...).
    name: str
    #: The command; ``{socket}`` is replaced by the socket path.
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)


def implementations(
    case: Case, peers: Path | None, compare: Sequence[Path] = ()
) -> list[Implementation]:
    """Every implementation of ``case`` that can run here, in report order.

    A socket implementation's command serves ``{socket}`` until SIGTERM; a
    process implementation's is what Kapacitor starts (``prog`` and ``args``).
    ``compare``: other checkouts of aioudf whose examples (and compat
    rows) run beside this one's, named after their folder (the same code
    before a change, say).
    """
    found = [
        *_aioudf(case, ROOT, ""),
        *(row for other in compare for row in _aioudf(case, other, f" ({other.name})")),
    ]
    if peers is None:
        return found
    python = peers / "python" / "examples" / f"{case.example}.py"
    if python.is_file():
        args: tuple[str, ...] = ("{socket}",) if case.transport == "socket" else ()
        found.append(
            Implementation(
                "Python agent",
                (sys.executable, "-u", str(python), *args),
                {**os.environ, "PYTHONPATH": str(peers / "python")},
            )
        )
        # The same script, unchanged, on aioudf (issue 17): `aioudf compat`,
        # with the real agent still on PYTHONPATH as kapacitor.conf sets it.
        found.append(_compat(ROOT, "", python, args, peers))
        found.extend(_compat(other, f" ({other.name})", python, args, peers) for other in compare)
    go = peers / "go" / case.example
    if go.is_file():
        args = ("-socket", "{socket}") if case.transport == "socket" else ()
        found.append(Implementation("Go agent", (str(go), *args), dict(os.environ)))
    echo = peers / "echo" / "echo_udf"
    if echo.is_file():
        where = "{socket}" if case.transport == "socket" else "-"
        edges = pb.BATCH if case.kind == "batch" else pb.STREAM
        echo_env = {**os.environ, "ECHO_INFO": echo_info(case.echo_options, edges).hex()}
        found.append(Implementation("echo UDF", (str(echo), where), echo_env))
    return found


def _compat(
    checkout: Path, suffix: str, script: Path, args: tuple[str, ...], peers: Path
) -> Implementation:
    """The agent's ``script`` on ``aioudf compat`` of ``checkout``."""
    env = checkout_env(checkout)
    return Implementation(
        f"aioudf compat (agent's script){suffix}",
        (sys.executable, "-m", "aioudf", "compat", "--log-level", "WARNING", str(script), *args),
        {**env, "PYTHONPATH": os.pathsep.join((env["PYTHONPATH"], str(peers / "python")))},
    )


def _aioudf(case: Case, checkout: Path, suffix: str) -> list[Implementation]:
    """``case``'s example from ``checkout``, on each loop."""
    env = checkout_env(checkout)
    script = str(checkout / "examples" / f"{case.example}.py")
    socket_args = ("--socket", "{socket}") if case.transport == "socket" else ()
    return [
        Implementation(
            f"aioudf {loop}{suffix}",
            (sys.executable, script, "--loop", loop, "--log-level", "WARNING", *socket_args),
            env,
        )
        for loop in LOOPS
        if loop == "asyncio" or _has_uvloop()
    ]


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def echo_info(
    options: Mapping[str, Sequence[pb.ValueType.ValueType]],
    edges: pb.EdgeType.ValueType = pb.STREAM,
) -> bytes:
    """The Info frame the echo UDF answers with: ``edges`` in and out, ``options``.

    Batch requests and responses share their field numbers (BeginBatch 16,
    Point 17, EndBatch 18), so the echo UDF echoes batches as they came.
    """
    response = pb.Response()
    response.info.wants = edges
    response.info.provides = edges
    for name, types in options.items():
        response.info.options[name].valueTypes.extend(types)
    return encode_frame(response.SerializeToString())


# ---- the points -----------------------------------------------------------------


def line_bodies(points: int, per_body: int, seed: int = 1) -> list[bytes]:
    """``points`` lines of telegraf's ``cpu`` (10 hosts x 4 cpus), in write bodies.

    The same shape as the bulk benchmark's points (workload.py). Times are
    in nanoseconds, one series' points a second apart.
    """
    rng = random.Random(seed)
    start = 1_700_000_000 * 10**9
    bodies = []
    lines: list[str] = []
    for index in range(points):
        idle = rng.uniform(60.0, 99.0)
        user = rng.uniform(0.0, 100.0 - idle)
        lines.append(
            f"cpu,cpu=cpu{(index // 10) % 4},host=server{index % 10:02d} "
            f"usage_idle={idle!r},usage_user={user!r},usage_system={100.0 - idle - user!r} "
            f"{start + (index // 40) * 10**9}"
        )
        if len(lines) == per_body:
            bodies.append("\n".join(lines).encode())
            lines = []
    if lines:
        bodies.append("\n".join(lines).encode())
    return bodies


#: The series (hosts) of one query's answer: each one is a batch of the task.
BATCH_SERIES = 10
#: Every query is answered at once; Go's ticker drops the ticks it missed,
#: so the query node asks again as soon as it has handed its batches on.
BATCH_EVERY = "1ms"


def batch_rows(size: int, seed: int = 1) -> list[Batch]:
    """One query's answer: :data:`BATCH_SERIES` batches of ``cpu`` of ``size`` points each.

    ``usage_idle`` about 85 (normal, standard deviation 3), one point in 50
    a dip 30 lower: a few outliers in every batch, the rest inside the fences.
    Points 10 ms apart; the same answer every query (Kapacitor does not look
    at whether the times fall in the query's range).
    """
    rng = random.Random(seed)
    start = 1_700_000_000 * 10**9
    return [
        Batch(
            "cpu",
            [
                DataPoint(
                    "cpu",
                    {"usage_idle": rng.gauss(85.0, 3.0) - (30.0 if index % 50 == 7 else 0.0)},
                    time=start + index * 10**7,
                )
                for index in range(size)
            ],
            tags={"host": f"server{host:02d}"},
        )
        for host in range(BATCH_SERIES)
    ]


class BatchAnswers(QueryServer):
    """The test kit's InfluxDB stand-in, answering one run's queries to a plan.

    Per run (:meth:`prepare`): ``warm`` answers of the warm-up rows; the next
    query is held until :meth:`go` (the clock starts there); ``queries``
    answers of the measured rows; the query after them held until
    :meth:`release` (so kapacitord does not spin on empty answers while the
    last batches go through, and nothing but the measured batches costs CPU
    during the run); then empty answers. The results are built once, with the
    kit's ``series_of``, so a query costs the benchmark only their JSON.
    """

    def __init__(self) -> None:
        super().__init__()
        self._plan_lock = threading.Lock()
        self._served = 0
        self._warm = self._queries = 0
        self._warm_result: dict[str, object] = {}
        self._run_result: dict[str, object] = {}
        self._go = threading.Event()
        self._done = threading.Event()
        self._done.set()

    def prepare(self, warmup: list[Batch], rows: list[Batch], warm: int, queries: int) -> None:
        self.release()  # a query still held from the last run is let go first
        with self._plan_lock:
            self._served = 0
            self._warm, self._queries = warm, queries
            self._warm_result = {"results": [{"statement_id": 0, "series": series_of(warmup)}]}
            self._run_result = {"results": [{"statement_id": 0, "series": series_of(rows)}]}
            self._go, self._done = threading.Event(), threading.Event()

    @property
    def served(self) -> int:
        """Queries answered (or being answered) in this run, warm-up ones included."""
        return self._served

    def go(self) -> None:
        """Answer the first measured query."""
        self._go.set()

    def release(self) -> None:
        """Answer the query held after the measured ones, and every one after it, with nothing."""
        self._go.set()
        self._done.set()

    def result(self, query: str, epoch: str = "") -> dict[str, object]:
        with self._plan_lock:
            number = self._served
            self._served += 1
            go, done = self._go, self._done
        if epoch:  # kapacitord 1.4 asks for RFC 3339 times; a later one might not
            raise ValueError(f"the benchmark answers without epoch, not epoch={epoch}")
        if number < self._warm:
            return self._warm_result
        if number < self._warm + self._queries:
            if number == self._warm:
                go.wait(300)
            return self._run_result
        if number == self._warm + self._queries:
            done.wait(300)
        return {"results": [{"statement_id": 0}]}


# ---- processes' counters --------------------------------------------------------


@dataclass(frozen=True)
class Counters:
    """CPU seconds (user, system) and read/write system calls of some processes."""

    user: float = 0.0
    system: float = 0.0
    reads: int = 0
    writes: int = 0
    #: Voluntary context switches of all its threads: how often it slept.
    wakeups: int = 0
    #: Minor page faults: memory the kernel had to hand it (and zero) anew.
    faults: int = 0

    @property
    def cpu(self) -> float:
        return self.user + self.system

    def __sub__(self, other: Counters) -> Counters:
        return Counters(
            self.user - other.user,
            self.system - other.system,
            self.reads - other.reads,
            self.writes - other.writes,
            self.wakeups - other.wakeups,
            self.faults - other.faults,
        )

    def __add__(self, other: Counters) -> Counters:
        return Counters(
            self.user + other.user,
            self.system + other.system,
            self.reads + other.reads,
            self.writes + other.writes,
            self.wakeups + other.wakeups,
            self.faults + other.faults,
        )


def counters_of(pid: int) -> Counters:
    """One process's counters (all its threads'); zeros if it has gone."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            stat = file.read()
        with open(f"/proc/{pid}/io") as file:
            io = dict(line.split(": ") for line in file.read().splitlines())
    except OSError:
        return Counters()
    wakeups = 0
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/status") as file:
                for line in file:
                    if line.startswith("voluntary_ctxt_switches:"):
                        wakeups += int(line.split()[1])
    fields = stat.rpartition(")")[2].split()
    # minflt, utime and stime are fields 10, 14 and 15 of stat(5); fields[0] is field 3.
    return Counters(
        int(fields[11]) / CLOCK_TICKS,
        int(fields[12]) / CLOCK_TICKS,
        int(io["syscr"]),
        int(io["syscw"]),
        wakeups,
        int(fields[7]),
    )


def descendants(pid: int) -> list[int]:
    """``pid``'s children, their children..., from ``/proc/PID/task/*/children``."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{parent}/task"):
                with open(f"/proc/{parent}/task/{task}/children") as file:
                    kids = [int(p) for p in file.read().split()]
                found.extend(kids)
                todo.extend(kids)
    return found


def total(pids: Sequence[int]) -> Counters:
    result = Counters()
    for pid in pids:
        result = result + counters_of(pid)
    return result


# ---- kapacitord -----------------------------------------------------------------


def find_kapacitord() -> Path | None:
    """``shared/kapacitor/bin/kapacitord`` beside an ancestor of this file."""
    peers = find_peers()
    if peers is None:
        return None
    binary = peers.parent / "bin" / "kapacitord"
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


@dataclass
class UDF:
    """One ``[udf.functions.NAME]``: a process Kapacitor starts, or a socket."""

    name: str
    implementation: Implementation
    socket: str = ""  # served by a server of ours when set
    server: subprocess.Popen[bytes] | None = None

    def spec(self) -> kit.ProcessUDF | kit.SocketUDF:
        """How kapacitord is to reach it (the test kit's ``[udf.functions.NAME]``)."""
        if self.socket:
            return kit.SocketUDF(self.socket)
        prog, *args = self.implementation.argv
        env = {k: v for k, v in self.implementation.env.items() if k in ("PYTHONPATH", "ECHO_INFO")}
        return kit.ProcessUDF(prog, args, env)

    def pids(self, kapacitord: int) -> list[int]:
        """The processes serving this UDF's task connection now."""
        if self.server is not None:
            return [self.server.pid, *descendants(self.server.pid)]
        prog = self.implementation.argv[0]
        args = self.implementation.argv[1:]
        found = []
        for pid in descendants(kapacitord):
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/cmdline", "rb") as file:
                    argv = [a.decode() for a in file.read().split(b"\0") if a]
                if (
                    argv
                    and os.path.basename(argv[0]) == os.path.basename(prog)
                    and (argv[1:] == list(args))
                ):
                    found.append(pid)
        return found


class UDFServers:
    """The socket UDFs' servers, started before kapacitord (it asks them for Info)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.logs: list[Path] = []

    @contextlib.contextmanager
    def serving(self, udfs: Sequence[UDF]) -> Iterator[None]:
        try:
            for udf in udfs:
                if udf.socket:
                    self._start(udf)
            yield
        finally:
            for udf in udfs:
                if udf.server is not None:
                    udf.server.send_signal(signal.SIGTERM)
            for udf in udfs:
                if udf.server is not None:
                    try:
                        udf.server.wait(10)
                    except subprocess.TimeoutExpired:
                        udf.server.kill()
                        udf.server.wait()

    def _start(self, udf: UDF) -> None:
        argv = [a.replace("{socket}", udf.socket) for a in udf.implementation.argv]
        log_path = self.folder / f"{udf.name}.log"
        self.logs.append(log_path)
        with open(log_path, "wb") as stderr:
            udf.server = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                env=dict(udf.implementation.env),
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while not _accepts(udf.socket):
            if udf.server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{udf.name} did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.02)


class Kapacitor:
    """One hermetic kapacitord under ``folder`` (the test kit's), driven over one HTTP connection.

    The kit writes its configuration and starts and stops it; the benchmark
    keeps one connection open for its polls, so that they cost kapacitord as
    little as they can. INFO logging and an hourly snapshot: nothing but the
    points costs kapacitord CPU during a run.
    """

    def __init__(self, binary: Path, folder: Path, udfs: Sequence[UDF]) -> None:
        self.daemon = kit.Kapacitord(
            folder,
            {udf.name: udf.spec() for udf in udfs},
            binary=binary,
            snapshot_interval="1h0m0s",
            log_level="INFO",
        )
        # The kit's InfluxDB, answering batch tasks' queries to the benchmark's plan.
        self.daemon.influxdb.stop()  # never started: only its socket is closed
        self.answers = BatchAnswers()
        self.daemon.influxdb = self.answers
        try:
            self.daemon.start(timeout=60)
        except kit.KapacitordError as exc:
            raise SystemExit(str(exc)) from None
        assert self.daemon.process is not None
        self.process = self.daemon.process
        self.port = self.daemon.port
        self.http = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)

    def log_tail(self) -> str:
        return self.daemon.log()[-3000:]

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        try:
            self.http.request(method, "/kapacitor/v1" + path, body=body)
            response = self.http.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self.http.close()  # reconnect on the next request
            raise

    def json(self, method: str, path: str, payload: object = None) -> object:
        body = None if payload is None else json.dumps(payload).encode()
        status, data = self.request(method, path, body)
        if status >= 300:
            raise SystemExit(f"{method} {path}: {status} {data.decode(errors='replace')}")
        return json.loads(data) if data else None

    def stop(self) -> None:
        self.answers.release()
        self.http.close()
        with contextlib.suppress(kit.KapacitordError):  # killed when it does not stop in time
            self.daemon.stop(30)


def collected(document: Mapping[str, object], prefix: str = "count") -> int:
    """Points the task's node ``prefix``N (``count2``...) has taken in, from Kapacitor's stats."""
    stats = document.get("stats")
    nodes = stats.get("node-stats") if isinstance(stats, dict) else None
    for node, values in (nodes or {}).items():
        if node.startswith(prefix) and isinstance(values, dict):
            return int(values.get("collected") or 0)
    return 0


# ---- one run -----------------------------------------------------------------------


@dataclass
class Run:
    """One task through kapacitord: rate and per-point costs."""

    points: int
    seconds: float
    kapacitord: Counters
    udf: Counters

    @property
    def rate(self) -> float:
        return self.points / self.seconds


class Bench:
    def __init__(
        self,
        kapacitor: Kapacitor,
        bodies: list[bytes],
        warmup: list[bytes],
        batch_size: int = 1000,
        queries: int = 20,
    ) -> None:
        self.k = kapacitor
        self.bodies = bodies
        self.warmup = warmup
        self.points = sum(body.count(b"\n") + 1 for body in bodies)
        self.tasks = 0
        #: A batch run: ``queries`` answers of :func:`batch_rows`, after one warm-up answer
        #: of 200-point batches (2,000 points, as the stream's warm-up).
        self.batch_rows = batch_rows(batch_size)
        self.batch_warmup = batch_rows(200, seed=2)
        self.queries = queries
        self.batch_points = queries * BATCH_SERIES * batch_size

    def _write(self, bodies: Sequence[bytes], errors: list[str]) -> None:
        """Write ``bodies`` on a connection of its own (a thread: the main one polls)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.k.port, timeout=300)
        query = urllib.parse.urlencode({"db": DB, "rp": RP, "precision": "ns"})
        try:
            for body in bodies:
                connection.request("POST", f"/kapacitor/v1/write?{query}", body=body)
                response = connection.getresponse()
                data = response.read()
                if response.status != 204:
                    errors.append(f"write answered {response.status}: {data[:500]!r}")
                    return
        except (OSError, http.client.HTTPException) as exc:
            errors.append(f"write failed: {exc!r}")
        finally:
            connection.close()

    def _count(self, task: str) -> tuple[int, str]:
        document = self.k.json("GET", f"/tasks/{task}")
        assert isinstance(document, dict)
        return collected(document), document.get("error") or ""

    def _processes(self, udf: UDF | None) -> tuple[int, list[int]]:
        """kapacitord's process and those serving ``udf`` now, whose counters are read."""
        kpid = self.k.process.pid
        pids = udf.pids(kpid) if udf is not None else []
        if udf is not None and not pids:
            raise RuntimeError(f"no process found serving {udf.name}")
        return kpid, pids

    def _define(self, task: str, kind: str, script: str) -> None:
        """Define and enable ``task``, a ``kind`` task on the benchmark's database."""
        document = {"id": task, "type": kind, "dbrps": [{"db": DB, "rp": RP}], "script": script}
        self.k.json("POST", "/tasks", {**document, "status": "enabled"})

    def _wait_count(self, task: str, points: int, busy: Callable[[], bool] | None) -> None:
        deadline = time.monotonic() + 300
        while True:
            count, error = self._count(task)
            if count >= points:
                return
            if error:
                raise RuntimeError(f"task failed: {error}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{count:,} of {points:,} points counted after 300 s")
            # Coarse while the writes go on (each poll costs kapacitord a
            # little), fine once they are done: the end is what is timed.
            time.sleep(0.05 if busy is not None and busy() else 0.005)

    def run(self, udf: UDF | None, options: str, kind: str = "stream") -> Run:
        """One task through ``udf`` (None: without a UDF node), ``kind`` as :attr:`Case.kind`."""
        if kind == "batch":
            return self._run_batch(udf, options)
        self.tasks += 1
        task = f"t{self.tasks}"
        call = f"@{udf.name}(){options}" if udf is not None else ""
        script = f"stream|from().measurement('cpu').groupBy('host'){call}|count('usage_idle')"
        self._define(task, "stream", script)
        try:
            errors: list[str] = []
            # Warm-up: the UDF's connection up, its first points through.
            self._write(self.warmup, errors)
            warm = sum(body.count(b"\n") + 1 for body in self.warmup)
            self._wait_count(task, warm, None)
            kpid, pids = self._processes(udf)
            k0, u0 = counters_of(kpid), total(pids)
            started = time.perf_counter()
            writer = threading.Thread(target=self._write, args=(self.bodies, errors))
            writer.start()
            try:
                self._wait_count(task, warm + self.points, writer.is_alive)
            finally:
                writer.join()
            seconds = time.perf_counter() - started
            k1, u1 = counters_of(kpid), total(pids)
            if errors:
                raise RuntimeError(errors[0])
            return Run(self.points, seconds, k1 - k0, u1 - u0)
        finally:
            self.k.request("DELETE", f"/tasks/{task}")

    def _run_batch(self, udf: UDF | None, options: str) -> Run:
        """A batch task whose queries :class:`BatchAnswers` answers: batches counted by Kapacitor.

        ``|count()`` takes one message a batch, so its node's ``collected``
        is the number of batches out of the UDF, the same for every
        implementation (outliers keeps a few points of each batch, the echo
        UDF all of them; each sends one batch back for every batch in).
        """
        self.tasks += 1
        task = f"t{self.tasks}"
        call = f"@{udf.name}(){options}" if udf is not None else ""
        query = f'SELECT usage_idle FROM "{DB}"."{RP}"."cpu"'
        script = (
            f"batch|query('{query}').period(10s).every({BATCH_EVERY}).groupBy('host')"
            f"{call}|count('usage_idle')"
        )
        answers = self.k.answers
        answers.prepare(self.batch_warmup, self.batch_rows, 1, self.queries)
        self._define(task, "batch", script)
        try:
            self._wait_count(task, BATCH_SERIES, None)  # the warm-up answer's batches
            kpid, pids = self._processes(udf)
            k0, u0 = counters_of(kpid), total(pids)
            started = time.perf_counter()
            answers.go()
            last = 1 + self.queries  # warm-up and measured answers
            self._wait_count(task, BATCH_SERIES * last, lambda: answers.served < last)
            seconds = time.perf_counter() - started
            k1, u1 = counters_of(kpid), total(pids)
            return Run(self.batch_points, seconds, k1 - k0, u1 - u0)
        finally:
            answers.release()
            self.k.request("DELETE", f"/tasks/{task}")


# ---- the report -------------------------------------------------------------------


class Bulk:
    """aioudf's UDFs fed the same number of points by the bulk driver, in the same round.

    What a UDF costs a point when its input comes in large reads (run.py's
    measure), beside what it costs under kapacitord: their ratio is how
    much a UDF pays for Kapacitor's small writes.
    """

    def __init__(self, points: int) -> None:
        self.workload: Workload = point_stream(points)
        self._inits: dict[str, tuple[Target, pb.InitRequest]] = {}

    def cpu_per_point(self, udf: UDF, options: Mapping[str, Sequence[str]]) -> float:
        """The UDF's CPU µs a point over the workload, sent in one go."""
        if udf.name not in self._inits:
            target: Target
            if udf.server is not None:
                target = SocketTarget(udf.socket, udf.server.pid)
            else:
                target = CommandTarget(udf.implementation.argv, dict(udf.implementation.env))
            self._inits[udf.name] = target, init_request(options, query_info(target))
        target, init = self._inits[udf.name]
        result = throughput(target, init, self.workload)
        return result.cpu_per_point * 1e6


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def per_point(runs: Sequence[Run], pick: Callable[[Run], float]) -> float:
    return median([pick(r) / r.points for r in runs])


def table(title: str, columns: Sequence[str], results: Mapping[str, Sequence[Run]]) -> list[str]:
    """The rows of one case: each figure's median over the rounds."""

    def cells(make: Callable[[Sequence[Run]], str]) -> str:
        return " | ".join(make(results[c]) if results.get(c) else "—" for c in columns)

    def cpu(pick: Callable[[Run], Counters], kind: str) -> Callable[[Sequence[Run]], str]:
        def make(runs: Sequence[Run]) -> str:
            user = per_point(runs, lambda r: pick(r).user) * 1e6
            system = per_point(runs, lambda r: pick(r).system) * 1e6
            if kind == "udf" and not pick(runs[0]).user and not pick(runs[0]).system:
                return "—"
            return f"{user + system:.1f} ({user:.1f} + {system:.1f})"

        return make

    def calls(pick: Callable[[Counters], int]) -> Callable[[Sequence[Run]], str]:
        def make(runs: Sequence[Run]) -> str:
            reads = per_point(runs, lambda r: pick(r.udf))
            return f"{reads:.3f}" if any(pick(r.udf) for r in runs) else "—"

        return make

    lines = [
        f"| {title} | {' | '.join(columns)} |",
        "|---|" + "---:|" * len(columns),
        f"| points/s | {cells(lambda runs: f'{median([r.rate for r in runs]):,.0f}')} |",
        f"| UDF CPU µs/point (user + system) | {cells(cpu(lambda r: r.udf, 'udf'))} |",
        f"| kapacitord CPU µs/point (user + system) | {cells(cpu(lambda r: r.kapacitord, 'k'))} |",
        f"| UDF wake-ups/point | {cells(calls(lambda c: c.wakeups))} |",
        f"| UDF read(2)s/point | {cells(calls(lambda c: c.reads))} |",
        f"| UDF write(2)s/point | {cells(calls(lambda c: c.writes))} |",
        f"| UDF page faults/point | {cells(calls(lambda c: c.faults))} |",
    ]
    return lines


def ratios(
    results: Mapping[str, Sequence[Run]], ours: str, theirs: str
) -> tuple[float, float] | None:
    """Median per-round ratios ours/theirs: (points/s, UDF CPU a point)."""
    a, b = results.get(ours) or [], results.get(theirs) or []
    pairs = list(zip(a, b, strict=False))
    if not pairs:
        return None

    def cpu(run: Run) -> float:
        return (run.udf.user + run.udf.system) / run.points

    rate = median([x.rate / y.rate for x, y in pairs])
    cpus = [cpu(x) / cpu(y) for x, y in pairs if cpu(y) > 0]
    return rate, median(cpus)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer points and rounds")
    parser.add_argument("--runs", type=int, help="rounds (default 5, quick 3)")
    parser.add_argument("--points", type=int, help="points per run (default 200,000; quick 60,000)")
    parser.add_argument("--body", type=int, default=5000, help="lines per HTTP write (5,000)")
    parser.add_argument(
        "--batch",
        type=int,
        default=1000,
        help=f"points a batch in batch cases (1,000; {BATCH_SERIES} batches a query, "
        "as many queries as --points takes)",
    )
    parser.add_argument("--cases", default=",".join(c.name for c in CASES))
    parser.add_argument(
        "--only", default="", help="implementations to run, by column name, comma-separated"
    )
    parser.add_argument(
        "--compare",
        action="append",
        type=Path,
        default=[],
        metavar="CHECKOUT",
        help="another checkout of aioudf whose examples run beside this one's (repeatable)",
    )
    parser.add_argument("--json", help="also save every run to this file")
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 5)
    points = args.points or (60_000 if args.quick else 200_000)
    queries = max(1, points // (BATCH_SERIES * args.batch))  # a batch case's, a run
    binary = find_kapacitord()
    if binary is None:
        log("no shared/kapacitor/bin/kapacitord beside the checkout: nothing to measure")
        print("## Under kapacitord\n\nSkipped: no kapacitord beside the checkout.")
        return 0
    peers = find_peers()
    cases = [c for c in CASES if c.name in args.cases.split(",")]
    only = [name for name in args.only.split(",") if name]

    load_start = load_average()
    machine = describe_machine(ROOT)
    folder = Path(tempfile.mkdtemp(prefix="aioudf-k-", dir="/tmp"))  # short socket paths
    udfs: dict[tuple[str, str], UDF] = {}
    for case in cases:
        for number, implementation in enumerate(implementations(case, peers, args.compare)):
            if only and implementation.name not in only:
                continue
            name = f"{case.name}{number}"
            path = str(folder / f"{name}.sock") if case.transport == "socket" else ""
            udfs[case.name, implementation.name] = UDF(name, implementation, path)
    bodies = line_bodies(points, args.body)
    warmup = line_bodies(2_000, args.body, seed=2)
    log(f"load average {load_start}; {len(udfs)} UDFs, {points:,} points a run, {runs} rounds")
    results: dict[str, dict[str, list[Run]]] = {c.name: {} for c in cases}
    # [case][column]: (UDF CPU µs a point under kapacitord, in bulk) a round
    in_bulk: dict[str, dict[str, list[tuple[float, float]]]] = {c.name: {} for c in cases}
    bulk = Bulk(points) if any(c.bulk is not None for c in cases) else None
    kinds = sorted({c.kind for c in cases}, reverse=True)  # "stream" first
    baselines: dict[str, list[Run]] = {kind: [] for kind in kinds}
    servers = UDFServers(folder)
    try:
        with servers.serving(list(udfs.values())):
            kapacitor = Kapacitor(binary, folder, list(udfs.values()))
            try:
                bench = Bench(kapacitor, bodies, warmup, args.batch, queries)
                for round_number in range(runs):
                    for kind in kinds:
                        run = bench.run(None, "", kind)
                        baselines[kind].append(run)
                        log(f"round {round_number + 1}: no UDF ({kind}) {run.rate:,.0f} points/s")
                    for case in cases:
                        for (name, column), udf in udfs.items():
                            if name != case.name:
                                continue
                            try:
                                run = bench.run(udf, case.options, case.kind)
                            except RuntimeError as exc:
                                log(f"  {case.name} {column}: failed: {exc}")
                                continue
                            results[case.name].setdefault(column, []).append(run)
                            under = run.udf.cpu / run.points * 1e6
                            line = (
                                f"  {case.name} {column}: {run.rate:,.0f} points/s; µs a point: "
                                f"UDF {under:.2f}, "
                                f"kapacitord {run.kapacitord.cpu / run.points * 1e6:.2f}"
                            )
                            if bulk and case.bulk is not None and column.startswith("aioudf "):
                                alone = bulk.cpu_per_point(udf, case.bulk)
                                in_bulk[case.name].setdefault(column, []).append((under, alone))
                                line += f"; in bulk {alone:.2f}"
                            log(line)
            finally:
                kapacitor.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    load_end = load_average()

    lines = [
        f"## Under kapacitord: {points:,} points over HTTP a run, medians of {runs} rounds",
        "",
        "Every implementation in the same kapacitord 1.4.1, measured in turn in each round "
        "(benchmarks/under_kapacitord.py). CPU in µs a point, user + system. Wake-ups: the UDF's "
        "voluntary context switches a point. read(2)s and write(2)s: its syscr and syscw in "
        "/proc/PID/io, which count read()/write() but not recv()/send() (asyncio's selector "
        "loop and the Python agent use those on sockets: — there). Page faults: its minor "
        "faults (minflt in /proc/PID/stat), a process UDF's start included.",
    ]
    if "batch" in kinds:
        lines[-1] += (
            f" Batch cases: {queries:,} queries answered by the benchmark a run, "
            f"{BATCH_SERIES} batches of {args.batch:,} points each, counted in batches "
            "by Kapacitor; points/s and µs a point count the points into the UDF."
        )
    for case in cases:
        columns = [c for (n, c) in udfs if n == case.name]
        results[case.name]["no UDF"] = baselines[case.kind]
        lines += ["", *table(case.title, [*columns, "no UDF"], results[case.name])]
        notes = []
        compat = "aioudf compat (agent's script)"
        compared = [(f"aioudf {loop}", f"aioudf {loop} ({{}})") for loop in LOOPS]
        for ours, theirs in (*compared, (compat, f"{compat} ({{}})")):
            others = [theirs.format(other.name) for other in args.compare]
            for peer in (*others, "Python agent", "echo UDF"):
                found = ratios(results[case.name], ours, peer)
                if found is not None:
                    notes.append(
                        f"{ours} / {peer}: points/s {found[0]:.2f} x, "
                        f"UDF CPU a point {found[1]:.2f} x"
                    )
        if notes:
            lines += ["", "Per-round ratios (medians): " + "; ".join(notes) + "."]
        if in_bulk[case.name]:
            parts = [
                f"{column} {median([u for u, _ in pairs]):.1f} µs in bulk "
                f"{median([b for _, b in pairs]):.1f}: {median([u / b for u, b in pairs]):.2f} x"
                for column, pairs in in_bulk[case.name].items()
            ]
            lines += [
                "",
                "UDF CPU a point under kapacitord against the same UDF fed the same "
                "number of points in bulk by the benchmark driver in the same round "
                "(medians; the ratio per round): " + "; ".join(parts) + ".",
            ]
    lines += ["", machine_line(machine, load_start, load_end)]
    print("\n".join(lines))
    if args.json:
        document = {
            case: {column: [vars(r) | {"rate": r.rate} for r in rs] for column, rs in per.items()}
            for case, per in results.items()
        }
        Path(args.json).write_text(json.dumps(document, default=vars, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
