"""A real Kapacitor (``kapacitord`` 1.4.1) for end-to-end tests, run hermetically.

The binary is test equipment kept outside the project, in ``shared/kapacitor``
beside the checkout (CI lays a copy there too). :func:`find_kapacitord`
locates it; without it the tests that need it are skipped, except under
``CI=true``, where a missing binary is a failure rather than a silent skip.

:class:`Kapacitord` writes a configuration that keeps everything in one
temporary folder (data, tasks, log, HTTP on a free loopback port), starts the
daemon, and drives it over its HTTP API: define tasks, write line protocol,
read ``httpOut`` results and task errors, stop it. UDFs are declared with
:class:`ProcessUDF` and :class:`SocketUDF`, as ``[udf.functions.NAME]``.

Kapacitor offers no event for "a task has processed a point", so results are
awaited by polling the HTTP API with a deadline (:meth:`Kapacitord.wait_for`):
the condition, not a sleep, decides when a test goes on.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

#: Seconds a test waits for Kapacitor to show a result before failing.
DEFAULT_WAIT = 20.0


def find_kapacitord() -> Path | None:
    """The ``kapacitord`` binary in a ``shared/kapacitor/bin`` beside an ancestor folder."""
    here = Path(__file__).resolve()
    for folder in here.parents:
        candidate = folder / "shared" / "kapacitor" / "bin" / "kapacitord"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def require_kapacitord() -> Path:
    """The binary, or skip the test (fail under CI, where it must be present)."""
    binary = find_kapacitord()
    if binary is None:
        message = "no shared/kapacitor/bin/kapacitord beside the checkout"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI must provide it)")
        pytest.skip(message)
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


@dataclass
class ProcessUDF:
    """``[udf.functions.NAME]`` for a process UDF: Kapacitor starts ``prog args``."""

    prog: str
    args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: str = "10s"

    def toml(self, name: str) -> str:
        lines = [
            f"  [udf.functions.{name}]",
            f"    prog = {_toml_string(self.prog)}",
            f"    args = [{', '.join(_toml_string(a) for a in self.args)}]",
            f"    timeout = {_toml_string(self.timeout)}",
        ]
        if self.env:
            lines.append(f"    [udf.functions.{name}.env]")
            lines.extend(f"      {key} = {_toml_string(val)}" for key, val in self.env.items())
        return "\n".join(lines)


@dataclass
class SocketUDF:
    """``[udf.functions.NAME]`` for a socket UDF served at ``path``."""

    path: str
    timeout: str = "10s"

    def toml(self, name: str) -> str:
        return (
            f"  [udf.functions.{name}]\n"
            f"    socket = {_toml_string(self.path)}\n"
            f"    timeout = {_toml_string(self.timeout)}"
        )


class KapacitordError(AssertionError):
    """kapacitord did not do what the test needed; the message holds its log's tail."""


class Kapacitord:
    """One hermetic ``kapacitord`` process under ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        udfs: Mapping[str, ProcessUDF | SocketUDF],
        *,
        binary: Path | None = None,
        snapshot_interval: str = "1m0s",
    ) -> None:
        self.binary = binary or require_kapacitord()
        self.workdir = workdir
        self.udfs = dict(udfs)
        self.snapshot_interval = snapshot_interval
        self.port = free_port()
        self.log_path = workdir / "kapacitord.log"
        self.url = f"http://127.0.0.1:{self.port}/kapacitor/v1"
        self.process: subprocess.Popen[bytes] | None = None

    # ---- life -----------------------------------------------------------

    def config(self) -> str:
        w = self.workdir
        udfs = "\n".join(udf.toml(name) for name, udf in self.udfs.items())
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
  level = "DEBUG"
[[influxdb]]
  enabled = false
  name = "default"
  urls = ["http://127.0.0.1:1"]
[udf]
[udf.functions]
{udfs}
"""

    def start(self, timeout: float = DEFAULT_WAIT) -> Kapacitord:
        """Start the daemon and wait until its API answers (it has asked every UDF for Info)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "kapacitor.conf"
        config.write_text(self.config())
        self.process = subprocess.Popen(
            [str(self.binary), "-config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "kapacitord.stderr", "wb"),  # noqa: SIM115
            cwd=self.workdir,
        )

        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise KapacitordError(f"kapacitord exited with {self.process.returncode}")
            try:
                return self._request("GET", "/ping")[0] == 204
            except OSError:
                return False

        self.wait_for(ready, "kapacitord to answer /ping", timeout=timeout)
        return self

    def stop(self, timeout: float = DEFAULT_WAIT) -> int:
        """SIGTERM (Kapacitor closes its UDF connections), then wait for the exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise KapacitordError(f"kapacitord did not stop within {timeout} s") from None

    def __enter__(self) -> Kapacitord:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log(self) -> str:
        """kapacitord's log so far (UDF stderr lines land here as ``msg="UDF log"``)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

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
            raise KapacitordError(
                f"{method} {path} answered {status}: {data.decode(errors='replace')}"
            )
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
        """Define (and by default enable) a task; raise with Kapacitor's error if refused."""
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
        status = "enabled" if enabled else "disabled"
        result: dict[str, Any] = self._json("PATCH", f"/tasks/{task_id}", {"status": status})
        return result

    def task(self, task_id: str) -> dict[str, Any]:
        """The task as the API shows it: ``error`` holds a UDF's ErrorResponse."""
        result: dict[str, Any] = self._json("GET", f"/tasks/{task_id}")
        return result

    def write(
        self,
        lines: str | Iterable[str],
        *,
        db: str = "mydb",
        rp: str = "myrp",
        precision: str = "s",
    ) -> None:
        text = lines if isinstance(lines, str) else "\n".join(lines)
        status, data = self._request(
            "POST", f"/write?db={db}&rp={rp}&precision={precision}", text.encode()
        )
        if status != 204:
            raise KapacitordError(f"write answered {status}: {data.decode(errors='replace')}")

    def output(self, task_id: str, name: str) -> list[dict[str, Any]]:
        """The series an ``|httpOut(name)`` of the task holds now ([] before any)."""
        result = self._json("GET", f"/tasks/{task_id}/{name}")
        series: list[dict[str, Any]] = result.get("series") or []
        return series

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
        delay = 0.01
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise KapacitordError(
                    f"timed out after {timeout:g} s waiting for {what}; "
                    f"kapacitord log tail:\n{self.log()[-4000:]}"
                )
            time.sleep(delay)  # nothing to await: Kapacitor has no push API
            delay = min(delay * 2, 0.2)

    def wait_output(
        self, task_id: str, name: str, rows: int, *, timeout: float = DEFAULT_WAIT
    ) -> list[dict[str, Any]]:
        """Wait until the httpOut holds at least ``rows`` rows in all; return its series."""

        def enough() -> list[dict[str, Any]] | None:
            series = self.output(task_id, name)
            count = sum(len(s.get("values") or []) for s in series)
            if count >= rows:
                return series
            error = self.task(task_id).get("error")
            if error:
                raise KapacitordError(f"task {task_id} failed: {error}")
            return None

        return self.wait_for(enough, f"{rows} rows in {task_id}/{name}", timeout=timeout)

    def wait_task_error(self, task_id: str, *, timeout: float = DEFAULT_WAIT) -> str:
        """Wait until the task shows an error; return it."""

        def error() -> str | None:
            text: str = self.task(task_id).get("error") or ""
            return text or None

        return self.wait_for(error, f"task {task_id} to fail", timeout=timeout)


class SocketServer:
    """``aioudf serve ARGS`` in a child process, its log (stderr) in a file."""

    def __init__(
        self,
        env: Mapping[str, str],
        args: Sequence[str],
        path: Path,
        log: Path,
        *,
        command: Sequence[str] | None = None,
        pass_fds: Sequence[int] = (),
    ) -> None:
        self.path = path
        self.log_path = log
        argv = list(command or [sys.executable, "-m", "aioudf", "serve"]) + list(args)
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(log, "ab"),  # noqa: SIM115
            env=dict(env),
            pass_fds=pass_fds,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, *, count: int = 1, timeout: float = DEFAULT_WAIT) -> None:
        """Wait until the log holds ``text`` ``count`` times (fail if the server exits first)."""
        deadline = time.monotonic() + timeout
        delay = 0.01
        while self.log().count(text) < count:
            if self.process.poll() is not None and self.log().count(text) < count:
                raise AssertionError(f"server exited before logging {text!r}:\n{self.log()}")
            if time.monotonic() >= deadline:
                raise AssertionError(f"server did not log {text!r} in {timeout} s:\n{self.log()}")
            time.sleep(delay)  # a log file has no event to await
            delay = min(delay * 2, 0.1)

    def successors(self) -> list[int]:
        """Processes a SIGHUP reload started (they log as this one does)."""
        return [int(pid) for pid in re.findall(r"process (\d+) loads the code anew", self.log())]

    def wait(self, timeout: float = 30) -> int:
        return self.process.wait(timeout)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(30)

    def kill(self) -> None:
        """Kill it and the processes its reloads started (not our children), if they run."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid in self.successors():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class Servers:
    """``aioudf serve`` processes for one test, their logs in ``folder``; kill them at the end."""

    def __init__(self, env: Mapping[str, str], folder: Path) -> None:
        self.env = env
        self.folder = folder
        self.started: list[SocketServer] = []

    def start(self, *args: str, path: Path | None = None, **options: Any) -> SocketServer:
        """``aioudf serve ARGS --socket PATH`` (default: ``udf.sock`` in the folder)."""
        path = path or self.folder / "udf.sock"
        log = self.folder / f"serve{len(self.started)}.log"
        server = SocketServer(self.env, [*args, "--socket", str(path)], path, log, **options)
        self.started.append(server)
        return server

    def kill(self) -> None:
        for server in self.started:
            server.kill()


def processed(dot: str) -> dict[tuple[str, str], int]:
    """Kapacitor's own count of the points that went along each edge of a task (its DOT)."""
    return {
        (source, target): int(count)
        for source, target, count in re.findall(r'(\w+) -> (\w+) \[processed="(\d+)"\]', dot)
    }


def rows(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """httpOut series flattened to one dict per row (columns -> values, plus tags)."""
    out = []
    for s in series:
        columns = s["columns"]
        for values in s.get("values") or []:
            row = dict(zip(columns, values, strict=True))
            row.update(s.get("tags") or {})
            out.append(row)
    return out
