"""The project's real-Kapacitor harness: the public kit, found where this project keeps it.

The end-to-end kit is public (:mod:`aioudf.testing.kapacitord`, documented in
docs/testing.md); this module re-exports it under the names the suite has
always used, and adds what only this project needs:

* the binary: ``AIOUDF_KAPACITORD`` or ``PATH`` as for any user, else the
  copy in ``shared/kapacitor/bin`` beside an ancestor folder of the checkout
  (CI lays one there too); without it the tests that need it are skipped,
  except under ``CI=true``, where a missing binary is a failure rather than
  a silent skip;
* :class:`SocketServer` / :class:`Servers`: ``aioudf serve`` in child
  processes, with their logs in files, for the hand-over and reload tests.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from aioudf.testing import kapacitord as kit
from aioudf.testing.kapacitord import (
    DEFAULT_WAIT,
    KapacitordError,
    ProcessUDF,
    ServedUDF,
    SocketUDF,
    UDFSpec,
    free_port,
    processed,
)

__all__ = [
    "DEFAULT_WAIT",
    "Kapacitord",
    "KapacitordError",
    "ProcessUDF",
    "Servers",
    "ServedUDF",
    "SocketServer",
    "SocketUDF",
    "find_kapacitord",
    "free_port",
    "processed",
    "require_kapacitord",
    "rows",
]


def find_kapacitord() -> Path | None:
    """The binary a user's setting names, else ``shared/kapacitor/bin`` beside an ancestor."""
    found = kit.find_kapacitord()
    if found is not None:
        return found
    for folder in Path(__file__).resolve().parents:
        candidate = folder / "shared" / "kapacitor" / "bin" / "kapacitord"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def require_kapacitord() -> Path:
    """The binary, or skip the test (fail under CI, where it must be present)."""
    binary = find_kapacitord()
    if binary is None:
        message = f"no kapacitord: {kit.HOW_TO_GET}, or lay shared/kapacitor/ beside the checkout"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI must provide it)")
        pytest.skip(message)
    return binary


class Kapacitord(kit.Kapacitord):
    """:class:`aioudf.testing.Kapacitord` with the project's binary (or the test skipped)."""

    def __init__(
        self,
        workdir: Path | None,
        udfs: Mapping[str, UDFSpec],
        *,
        binary: Path | None = None,
        snapshot_interval: str = "1m0s",
    ) -> None:
        super().__init__(
            workdir,
            udfs,
            binary=binary or require_kapacitord(),
            snapshot_interval=snapshot_interval,
        )


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


# ---- what several real-Kapacitor tests write and expect ----------------------


def expected_moving_averages(values: list[float], size: int) -> list[float]:
    return [statistics.fmean(values[max(0, i + 1 - size) : i + 1]) for i in range(len(values))]


def write_two_hosts(k: kit.Kapacitord) -> dict[str, list[float]]:
    """Ten points for each of hosts a and b, then one past a 10 s window: the values."""
    values = {"a": [float(t * t % 17) for t in range(10)], "b": [100.0 - t for t in range(10)]}
    k.write(
        f"cpu,host={host} usage_idle={series[t]} {t}"
        for t in range(10)
        for host, series in values.items()
    )
    k.write(f"cpu,host={host} usage_idle=0 10" for host in values)  # closes the window
    return values


VALUES = {"a": [float(t * t % 11) for t in range(12)], "b": [float(100 - 3 * t) for t in range(12)]}


def wait_until_handled(k: kit.Kapacitord, task: str, t: int) -> dict[str, dict[str, float]]:
    """Wait until the task put out the point at time ``t`` for every host; the last rows."""
    stamp = f":{t:02d}Z"

    def done() -> dict[str, dict[str, float]] | None:
        last = {row["host"]: row for row in rows(k.output(task, "out"))}
        if set(last) == set(VALUES) and all(row["time"].endswith(stamp) for row in last.values()):
            return last
        error = k.task(task).get("error")
        if error:
            raise AssertionError(f"task {task} failed: {error}")
        return None

    return k.wait_for(done, f"{task} to handle the points at t={t}")
