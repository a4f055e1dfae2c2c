"""A real Kapacitor for end-to-end tests: your TICKscript with your UDF, hermetically.

:class:`Kapacitord` starts a ``kapacitord`` binary with everything in one
temporary folder (data, tasks, its log), its HTTP API on a free port of
``127.0.0.1``, and nothing reached outside: no InfluxDB but the kit's own
(:mod:`aioudf.testing.influxdb`, which answers batch tasks' queries with rows
the test gives), no usage reporting. The UDFs are configured as
``[udf.functions.NAME]``, each one of:

* a Handler class or ``"module:Class"``: a process UDF Kapacitor starts as
  ``python -m aioudf run module:Class`` (the class must be importable);
* an argv list, or :class:`ProcessUDF`: a process UDF of any kind;
* :class:`ServedUDF` (a Handler class): a socket UDF the kit serves in this
  process, in a thread of its own, for the test's duration;
* :class:`SocketUDF`: a socket some other server already listens on.

Then a test defines a task from a TICKscript, writes line protocol or
:class:`~aioudf.formats.DataPoint` s, and reads what ``|httpOut()`` holds
(as DataPoints), the task's error and the UDF's log lines::

    with Kapacitord(udfs={"movingAverage": MovingAvg}) as k:
        k.define_task("t", TICKSCRIPT)
        k.write([DataPoint("cpu", {"idle": 1.0}, time=0), ...])
        assert k.wait_points("t", "out", 3) == [...]

:class:`AsyncKapacitord` is the same for ``async`` tests: every call that
waits on kapacitord runs in a worker thread, never on the event loop. The
pytest plugin gives both a ``kapacitord`` fixture (a factory: started
daemons are stopped at the test's end) and skips the tests that need one on
a machine without the binary.

The binary is found by :func:`find_kapacitord`: the ``--kapacitord PATH``
pytest option, the ``AIOUDF_KAPACITORD`` environment variable, or
``kapacitord`` on ``PATH``.

The UDF declarations and the binary's lookup are in ``_udfs`` (re-exported
here); this module is the daemon and its HTTP API, one method each, twice
(:class:`Kapacitord`, and :class:`AsyncKapacitord` over it), which is why it
is longer than the others.

Kapacitor has no event for "a task has processed a point", so results are
awaited by polling its HTTP API with a deadline (:meth:`Kapacitord.wait_for`):
the condition, not a sleep, decides when a test goes on.
"""

# AsyncKapacitord's waits take ``timeout=`` as Kapacitord's do: a deadline whose
# error names what was awaited, with kapacitord's log (anyio.fail_after would not).
# ruff: noqa: ASYNC109

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from ..errors import KapacitordError, KapacitordNotFound
from ..formats._fields import parse_time
from ..formats._lineprotocol import format_line
from ..formats._points import DataPoint
from ._udfs import (
    HOW_TO_GET as HOW_TO_GET,
)
from ._udfs import (
    KAPACITORD_ENV as KAPACITORD_ENV,
)
from ._udfs import (
    ProcessUDF as ProcessUDF,
)
from ._udfs import (
    ServedUDF as ServedUDF,
)
from ._udfs import (
    SocketUDF as SocketUDF,
)
from ._udfs import (
    UDFSpec as UDFSpec,
)
from ._udfs import (
    _as_udf,
    _LogKeeper,
    _RootLevel,
    _Served,
    _toml_string,
)
from ._udfs import (
    find_kapacitord as find_kapacitord,
)
from ._udfs import (
    free_port as free_port,
)
from ._udfs import (
    handler_process as handler_process,
)
from ._udfs import (
    locate_kapacitord as locate_kapacitord,
)
from .influxdb import Answer, QueryServer

__all__ = [
    "DEFAULT_WAIT",
    "KAPACITORD_ENV",
    "AsyncKapacitord",
    "Kapacitord",
    "KapacitordError",
    "KapacitordNotFound",
    "ProcessUDF",
    "ServedUDF",
    "SocketUDF",
    "UDFSpec",
    "find_kapacitord",
    "free_port",
    "handler_process",
    "locate_kapacitord",
    "processed",
    "series_points",
]

T = TypeVar("T")
_K = TypeVar("_K", bound="Kapacitord")

#: Seconds a test waits for Kapacitor to show a result before failing.
DEFAULT_WAIT = 20.0


# ---- results ----------------------------------------------------------------------


def _field(key: str, value: Any, ints: Collection[str]) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and key not in ints:
        return float(value)
    return value


def series_points(
    series: Iterable[Mapping[str, Any]], *, ints: Iterable[str] = ()
) -> list[DataPoint]:
    """``|httpOut()`` series as DataPoints: name, the series' tags, time, and fields.

    JSON does not keep a number's type, and Kapacitor writes the float
    ``3.0`` as ``3``; so numbers read back as floats, except the fields
    named in ``ints``, which read back as ints. Strings and booleans are kept.
    """
    integer_fields = frozenset(ints)
    points = []
    for s in series:
        columns = list(s.get("columns") or [])
        tags = dict(s.get("tags") or {})
        for values in s.get("values") or []:
            row = dict(zip(columns, values, strict=True))
            stamp = row.pop("time", None)
            when = parse_time(stamp) if isinstance(stamp, str) else int(stamp or 0)
            fields = {
                key: _field(key, value, integer_fields)
                for key, value in row.items()
                if value is not None
            }
            points.append(DataPoint(s.get("name", ""), fields, tags=tags, time=when))
    return points


def processed(dot: str) -> dict[tuple[str, str], int]:
    """Kapacitor's own count of the points that went along each edge of a task (its DOT)."""
    return {
        (source, target): int(count)
        for source, target, count in re.findall(r'(\w+) -> (\w+) \[processed="(\d+)"\]', dot)
    }


_LOGFMT_PAIR = re.compile(r'([\w.]+)=("(?:[^"\\]|\\.)*"|\S*)')


def _logfmt(line: str) -> dict[str, str]:
    out = {}
    for key, raw in _LOGFMT_PAIR.findall(line):
        if raw.startswith('"'):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError:  # Go's \x escapes: keep the text as written
                raw = raw[1:-1]
        out[key] = raw
    return out


# ---- waiting ----------------------------------------------------------------------


def _delays() -> Iterator[float]:
    """Poll intervals: quick at first (most results come at once), then 0.2 s."""
    delay = 0.01
    while True:
        yield delay
        delay = min(delay * 2, 0.2)


def _refused(method: str, path: str, status: int, data: bytes) -> KapacitordError:
    """The error for an API call Kapacitor answered with ``status`` (300 or more)."""
    return KapacitordError(f"{method} {path} answered {status}: {data.decode(errors='replace')}")


# ---- the daemon ----------------------------------------------------------------


class Kapacitord:
    """One hermetic ``kapacitord`` process; a context manager (``with Kapacitord(...) as k``).

    ``workdir``: the folder for its files (default: a new temporary folder,
    removed at :meth:`stop`). ``udfs``: ``{name: UDF}`` (see the module's
    documentation), called in TICKscript as ``@name()``. ``binary``: the
    ``kapacitord`` to run (default: :func:`locate_kapacitord`).
    ``snapshot_interval``: how often Kapacitor asks its UDFs for a snapshot.
    ``log_level``: kapacitord's (``DEBUG`` shows each UDF's log lines and
    Kapacitor's view of the protocol; a benchmark wants ``INFO``, which costs
    kapacitord less a point). Tasks read from and write to database
    ``mydb``, retention policy ``myrp``, unless told otherwise.
    """

    def __init__(
        self,
        workdir: Path | None = None,
        udfs: Mapping[str, UDFSpec] | None = None,
        *,
        binary: str | os.PathLike[str] | None = None,
        snapshot_interval: str = "1m0s",
        log_level: str = "DEBUG",
    ) -> None:
        self.binary = Path(binary) if binary is not None else locate_kapacitord()
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp("-k"))
        self.udfs = {name: _as_udf(name, udf) for name, udf in (udfs or {}).items()}
        self.snapshot_interval = snapshot_interval
        self.log_level = log_level
        self.port = free_port()
        self.log_path = self.workdir / "kapacitord.log"
        self.url = f"http://127.0.0.1:{self.port}/kapacitor/v1"
        self.process: subprocess.Popen[bytes] | None = None
        #: The kit's InfluxDB, which answers batch tasks' queries (see :meth:`answer_queries`).
        self.influxdb = QueryServer()
        self._served: list[_Served] = []
        self._socket_dir: str | None = None
        self._log_keeper: _LogKeeper | None = None

    # ---- life -----------------------------------------------------------

    def _udf_table(self) -> str:
        tables = []
        for name, udf in self.udfs.items():
            if isinstance(udf, ServedUDF):
                served = next(s for s in self._served if s.name == name)
                udf_toml = SocketUDF(str(served.path), udf.timeout).toml(name)
            else:
                udf_toml = udf.toml(name)
            tables.append(udf_toml)
        return "\n".join(tables)

    def config(self) -> str:
        """The configuration file kapacitord is started with."""
        w = self.workdir
        return f"""\
hostname = "localhost"
data_dir = {_toml_string(str(w / "data"))}
[http]
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
[replay]
  dir = {_toml_string(str(w / "replay"))}
[storage]
  boltdb = {_toml_string(str(w / "kapacitor.db"))}
[task]
  dir = {_toml_string(str(w / "tasks"))}
  snapshot-interval = {_toml_string(self.snapshot_interval)}
[load]
  enabled = false
[reporting]
  enabled = false
[stats]
  enabled = false
[logging]
  file = {_toml_string(str(self.log_path))}
  level = {_toml_string(self.log_level)}
[[influxdb]]
  enabled = true
  default = true
  name = "default"
  urls = [{_toml_string(self.influxdb.url)}]
  disable-subscriptions = true
[udf]
[udf.functions]
{self._udf_table()}
"""

    def _serve_udfs(self, timeout: float) -> None:
        served = {name: udf for name, udf in self.udfs.items() if isinstance(udf, ServedUDF)}
        if not served:
            return
        # A short folder: a unix socket's path has at most 107 bytes.
        self._socket_dir = tempfile.mkdtemp(prefix="aioudf-")
        self._log_keeper = _LogKeeper()
        _RootLevel.acquire(self._log_keeper)
        for name, udf in served.items():
            one = _Served(name, udf, Path(self._socket_dir) / f"{name}.sock")
            self._served.append(one)
            one.start(timeout)

    def start(self: _K, timeout: float = DEFAULT_WAIT) -> _K:
        """Start the daemon and wait until its API answers (it has asked every UDF for Info)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.influxdb.start()
            self._serve_udfs(timeout)
            config = self.workdir / "kapacitor.conf"
            config.write_text(self.config())
            with open(self.workdir / "kapacitord.stderr", "wb") as stderr:
                self.process = subprocess.Popen(
                    [str(self.binary), "-config", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    cwd=self.workdir,
                )
            self.wait_for(self._ready, "kapacitord to answer /ping", timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise KapacitordError(
                f"kapacitord exited with {self.process.returncode} at start-up: "
                f"{self.start_error() or self.log()[-2000:]}"
            )
        try:
            return self._request("GET", "/ping")[0] == 204
        except OSError:
            return False

    def start_error(self) -> str:
        """Why kapacitord refused to start (``failed to load process info for ...``), or ""."""
        try:
            text = (self.workdir / "kapacitord.stderr").read_text(errors="replace")
        except FileNotFoundError:
            text = ""
        lines = [line for line in (text + self.log()).splitlines() if "run: open server" in line]
        return lines[-1].strip() if lines else ""

    def stop(self, timeout: float = DEFAULT_WAIT) -> int:
        """SIGTERM (Kapacitor closes its UDF connections), then wait for the exit status."""
        status = 0
        try:
            if self.process is not None:
                if self.process.poll() is None:
                    self.process.send_signal(signal.SIGTERM)
                try:
                    status = self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
                    raise KapacitordError(f"kapacitord did not stop within {timeout} s") from None
        finally:
            for served in self._served:
                served.stop()
            if self._log_keeper is not None:
                _RootLevel.release(self._log_keeper)
                self._log_keeper = None
            self.influxdb.stop()
            if self._socket_dir is not None:
                shutil.rmtree(self._socket_dir, ignore_errors=True)
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
        return status

    def __enter__(self: _K) -> _K:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- logs ---------------------------------------------------------------

    def log(self) -> str:
        """kapacitord's log so far (UDF stderr lines land here as ``msg="UDF log"``)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def udf_log(self, udf: str | None = None, *, task: str | None = None) -> list[str]:
        """The lines the UDFs logged, oldest first; only ``udf``'s, or ``task``'s, if given.

        A process UDF's lines are what it wrote to stderr, as Kapacitor's log
        holds them (``msg="UDF log" ... text="..."``); a :class:`ServedUDF`'s
        are its log records as logfmt lines (what ``aioudf serve`` writes).
        """
        lines = []
        if udf is None or not isinstance(self.udfs.get(udf), ServedUDF):
            for entry in map(_logfmt, self.log().splitlines()):
                if entry.get("msg") != "UDF log":
                    continue
                if task is not None and entry.get("task") != task:
                    continue
                if udf is None or entry.get("node", "").rstrip("0123456789") == udf:
                    lines.append(entry.get("text", ""))
        if self._log_keeper is not None:
            for name, kept in self._log_keeper.lines.items():
                if udf is None or name == udf:
                    lines.extend(
                        line for line in kept if task is None or f"task={task}" in line.split()
                    )
        return lines

    def udf_errors(self, task: str | None = None) -> list[str]:
        """The ErrorResponses UDFs sent (only ``task``'s, if given), from Kapacitor's log.

        Kapacitor logs one at once (``msg="received error message"``), but
        fails the task (:meth:`task_error`) only when the UDF's node next
        takes a point or the task stops.
        """
        return [
            entry.get("err", "")
            for entry in map(_logfmt, self.log().splitlines())
            if entry.get("msg") == "received error message"
            and (task is None or entry.get("task") == task)
        ]

    # ---- HTTP -------------------------------------------------------------

    def _request(
        self, method: str, path: str, body: bytes | None = None, content_type: str = ""
    ) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path, data=body, method=method)
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def _json(self, method: str, path: str, payload: object = None) -> Any:
        body = None if payload is None else json.dumps(payload).encode()
        status, data = self._request(method, path, body, "application/json")
        if status >= 300:
            raise _refused(method, path, status, data)
        return json.loads(data) if data else None

    def define_task(
        self,
        task_id: str,
        script: str,
        *,
        kind: str = "stream",
        db: str = "mydb",
        rp: str = "myrp",
        enabled: bool = True,
    ) -> dict[str, Any]:
        """Define (and by default enable) a task; raise with Kapacitor's error if refused.

        ``kind``: ``"stream"`` or ``"batch"`` (a batch task's queries are
        answered by :meth:`answer_queries`).
        """
        result: dict[str, Any] = self._json(
            "POST",
            "/tasks",
            {
                "id": task_id,
                "type": kind,
                "dbrps": [{"db": db, "rp": rp}],
                "script": script,
                "status": "enabled" if enabled else "disabled",
            },
        )
        return result

    def set_enabled(self, task_id: str, enabled: bool) -> dict[str, Any]:
        """Enable or disable a task (disabling closes its UDF connections)."""
        status = "enabled" if enabled else "disabled"
        result: dict[str, Any] = self._json("PATCH", f"/tasks/{task_id}", {"status": status})
        return result

    def task(self, task_id: str) -> dict[str, Any]:
        """The task as the API shows it: ``error`` holds a UDF's ErrorResponse, ``dot`` counts."""
        result: dict[str, Any] = self._json("GET", f"/tasks/{task_id}")
        return result

    def task_error(self, task_id: str) -> str:
        """The task's error now ("" while it runs well)."""
        error: str = self.task(task_id).get("error") or ""
        return error

    def processed(self, task_id: str) -> dict[tuple[str, str], int]:
        """Points gone along each edge of the task, by Kapacitor's count."""
        return processed(self.task(task_id).get("dot") or "")

    def write(
        self,
        lines: str | Iterable[str | DataPoint],
        *,
        db: str = "mydb",
        rp: str = "myrp",
        precision: str | None = None,
    ) -> None:
        """Write line protocol, or DataPoints, into ``db``/``rp`` (tasks on it see them).

        ``precision``: the unit of the lines' timestamps (default ``s``;
        DataPoints are written in ``ns``, their own unit).
        """
        items = [lines] if isinstance(lines, str) else list(lines)
        if precision is None:
            has_points = any(isinstance(item, DataPoint) for item in items)
            precision = "ns" if has_points else "s"
        text = "\n".join(
            format_line(item, precision=precision) if isinstance(item, DataPoint) else item
            for item in items
        )
        status, data = self._request(
            "POST", f"/write?db={db}&rp={rp}&precision={precision}", text.encode()
        )
        if status != 204:
            raise KapacitordError(f"write answered {status}: {data.decode(errors='replace')}")

    def answer_queries(self, rows: Answer) -> None:
        """Answer batch tasks' queries from now on with ``rows`` (Batches, DataPoints).

        Or a function of the query text returning them. The queries
        Kapacitor sent are in ``self.influxdb.queries``.
        """
        self.influxdb.answer(rows)

    def output(self, task_id: str, name: str) -> list[dict[str, Any]]:
        """The series an ``|httpOut(name)`` of the task holds now ([] before any).

        Kapacitor answers ``{"series": null}`` before the first result and
        ``{"series": [null]}`` while the node holds an empty one: both are [].
        It serves the path only once the task runs (its UDF may still be
        starting): until then too, for a task that exists, this is [].
        """
        path = f"/tasks/{task_id}/{name}"
        status, data = self._request("GET", path)
        if status == 404:
            self.task(task_id)  # a task that does not exist raises here
            return []
        if status >= 300:
            raise _refused("GET", path, status, data)
        return [s for s in json.loads(data).get("series") or () if s is not None]

    def points(self, task_id: str, name: str, *, ints: Iterable[str] = ()) -> list[DataPoint]:
        """What ``|httpOut(name)`` holds now, as DataPoints.

        Numbers read back as floats, but the fields named in ``ints`` (see
        :func:`series_points`).
        """
        return series_points(self.output(task_id, name), ints=ints)

    # ---- waiting --------------------------------------------------------

    def wait_for(
        self,
        condition: Callable[[], T | None],
        what: str,
        *,
        timeout: float = DEFAULT_WAIT,
    ) -> T:
        """Poll ``condition`` until it returns something truthy; fail naming ``what``."""
        deadline = time.monotonic() + timeout
        for delay in _delays():
            value = condition()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise self._timed_out(what, timeout)
            time.sleep(delay)  # nothing to await: Kapacitor has no push API
        raise AssertionError("unreachable")  # pragma: no cover

    def _timed_out(self, what: str, timeout: float) -> KapacitordError:
        return KapacitordError(
            f"timed out after {timeout:g} s waiting for {what}; "
            f"kapacitord log tail:\n{self.log()[-4000:]}"
        )

    def _enough_rows(self, task_id: str, name: str, rows: int) -> list[dict[str, Any]] | None:
        series = self.output(task_id, name)
        count = sum(len(s.get("values") or []) for s in series)
        if count >= rows:
            return series
        error = self.task_error(task_id)
        if error:
            raise KapacitordError(f"task {task_id} failed: {error}")
        return None

    def wait_output(
        self, task_id: str, name: str, rows: int, *, timeout: float = DEFAULT_WAIT
    ) -> list[dict[str, Any]]:
        """Wait until the httpOut holds at least ``rows`` rows in all; return its series.

        A task that fails meanwhile raises at once, with its error.
        """
        return self.wait_for(
            lambda: self._enough_rows(task_id, name, rows),
            f"{rows} rows in {task_id}/{name}",
            timeout=timeout,
        )

    def wait_points(
        self,
        task_id: str,
        name: str,
        count: int = 1,
        *,
        ints: Iterable[str] = (),
        timeout: float = DEFAULT_WAIT,
    ) -> list[DataPoint]:
        """:meth:`wait_output`, as DataPoints (``ints``: see :meth:`points`)."""
        return series_points(self.wait_output(task_id, name, count, timeout=timeout), ints=ints)

    def wait_task_error(self, task_id: str, *, timeout: float = DEFAULT_WAIT) -> str:
        """Wait until the task shows an error; return it.

        A UDF's ErrorResponse fails the task when the UDF's node next takes
        a point: wait for :meth:`udf_errors` first, then write one more.
        """
        return self.wait_for(
            lambda: self.task_error(task_id) or None, f"task {task_id} to fail", timeout=timeout
        )


class AsyncKapacitord:
    """:class:`Kapacitord` for ``async`` tests: ``async with AsyncKapacitord(...) as k``.

    Takes the same arguments. Every call that talks to kapacitord, or
    starts or stops it, runs in a worker thread; the waits poll with
    ``await anyio.sleep``, so they can be cancelled and the event loop
    (the test's own servers, a UDF it serves) keeps running meanwhile.
    """

    def __init__(
        self,
        workdir: Path | None = None,
        udfs: Mapping[str, UDFSpec] | None = None,
        *,
        binary: str | os.PathLike[str] | None = None,
        snapshot_interval: str = "1m0s",
        log_level: str = "DEBUG",
    ) -> None:
        #: The synchronous daemon underneath (its attributes: ``url``, ``workdir``...).
        self.sync = Kapacitord(
            workdir, udfs, binary=binary, snapshot_interval=snapshot_interval, log_level=log_level
        )

    async def _call(self, function: Callable[..., T], *args: object) -> T:
        return await anyio.to_thread.run_sync(function, *args)

    async def start(self, timeout: float = DEFAULT_WAIT) -> AsyncKapacitord:
        """Start the daemon; see :meth:`Kapacitord.start`."""
        await self._call(self.sync.start, timeout)
        return self

    async def stop(self, timeout: float = DEFAULT_WAIT) -> int:
        """Stop the daemon; see :meth:`Kapacitord.stop`."""
        status = 0
        with anyio.CancelScope(shield=True):  # a cancelled test still stops its daemon
            status = await self._call(self.sync.stop, timeout)
        return status

    async def __aenter__(self) -> AsyncKapacitord:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def log(self) -> str:
        """kapacitord's log so far (a local file: read at once)."""
        return self.sync.log()

    def udf_log(self, udf: str | None = None, *, task: str | None = None) -> list[str]:
        """See :meth:`Kapacitord.udf_log`."""
        return self.sync.udf_log(udf, task=task)

    def udf_errors(self, task: str | None = None) -> list[str]:
        """See :meth:`Kapacitord.udf_errors`."""
        return self.sync.udf_errors(task)

    def answer_queries(self, rows: Answer) -> None:
        """See :meth:`Kapacitord.answer_queries`."""
        self.sync.answer_queries(rows)

    async def define_task(
        self,
        task_id: str,
        script: str,
        *,
        kind: str = "stream",
        db: str = "mydb",
        rp: str = "myrp",
        enabled: bool = True,
    ) -> dict[str, Any]:
        """See :meth:`Kapacitord.define_task`."""
        return await self._call(
            lambda: self.sync.define_task(task_id, script, kind=kind, db=db, rp=rp, enabled=enabled)
        )

    async def set_enabled(self, task_id: str, enabled: bool) -> dict[str, Any]:
        """See :meth:`Kapacitord.set_enabled`."""
        return await self._call(self.sync.set_enabled, task_id, enabled)

    async def task(self, task_id: str) -> dict[str, Any]:
        """See :meth:`Kapacitord.task`."""
        return await self._call(self.sync.task, task_id)

    async def task_error(self, task_id: str) -> str:
        """See :meth:`Kapacitord.task_error`."""
        return await self._call(self.sync.task_error, task_id)

    async def processed(self, task_id: str) -> dict[tuple[str, str], int]:
        """See :meth:`Kapacitord.processed`."""
        return await self._call(self.sync.processed, task_id)

    async def write(
        self,
        lines: str | Iterable[str | DataPoint],
        *,
        db: str = "mydb",
        rp: str = "myrp",
        precision: str | None = None,
    ) -> None:
        """See :meth:`Kapacitord.write`."""
        items = lines if isinstance(lines, str) else list(lines)
        await self._call(lambda: self.sync.write(items, db=db, rp=rp, precision=precision))

    async def output(self, task_id: str, name: str) -> list[dict[str, Any]]:
        """See :meth:`Kapacitord.output`."""
        return await self._call(self.sync.output, task_id, name)

    async def points(self, task_id: str, name: str, *, ints: Iterable[str] = ()) -> list[DataPoint]:
        """See :meth:`Kapacitord.points`."""
        return series_points(await self.output(task_id, name), ints=ints)

    async def wait_for(
        self, condition: Callable[[], T | None], what: str, *, timeout: float = DEFAULT_WAIT
    ) -> T:
        """Poll ``condition`` (run in a worker thread) until it returns something truthy."""
        deadline = time.monotonic() + timeout
        for delay in _delays():
            value = await self._call(condition)
            if value:
                return value
            if time.monotonic() >= deadline:
                raise self.sync._timed_out(what, timeout)
            await anyio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def wait_output(
        self, task_id: str, name: str, rows: int, *, timeout: float = DEFAULT_WAIT
    ) -> list[dict[str, Any]]:
        """See :meth:`Kapacitord.wait_output`."""
        return await self.wait_for(
            lambda: self.sync._enough_rows(task_id, name, rows),
            f"{rows} rows in {task_id}/{name}",
            timeout=timeout,
        )

    async def wait_points(
        self,
        task_id: str,
        name: str,
        count: int = 1,
        *,
        ints: Iterable[str] = (),
        timeout: float = DEFAULT_WAIT,
    ) -> list[DataPoint]:
        """See :meth:`Kapacitord.wait_points`."""
        series = await self.wait_output(task_id, name, count, timeout=timeout)
        return series_points(series, ints=ints)

    async def wait_task_error(self, task_id: str, *, timeout: float = DEFAULT_WAIT) -> str:
        """See :meth:`Kapacitord.wait_task_error`."""
        return await self.wait_for(
            lambda: self.sync.task_error(task_id) or None,
            f"task {task_id} to fail",
            timeout=timeout,
        )
