"""What the figures were measured on: CPU, load, and the versions that matter.

Throughput figures are only comparable on the same machine, which is why
every one of them is also given as a ratio to a baseline measured in the same
run; this records the rest of the context a reader needs.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

__all__ = ["checkout_env", "describe_machine", "load_average", "log", "machine_line"]


def log(message: str) -> None:
    """Progress, on stderr: the reports go to stdout."""
    print(message, file=sys.stderr, flush=True)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _protobuf() -> str:
    try:
        from google.protobuf.internal import api_implementation

        backend = api_implementation.Type()
    except ImportError:
        backend = "?"
    return f"{_version('protobuf')} ({backend})"


def _git_revision(root: Path) -> str:
    def git(*args: str) -> str:
        command = ["git", "-C", str(root), *args]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()

    try:
        revision = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return revision + (" (modified)" if dirty else "")


def load_average() -> str:
    """The 1/5/15-minute load averages, as ``uptime`` shows them."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def describe_machine(root: Path) -> dict[str, str]:
    """The machine and software versions, as name -> text."""
    import aioudf

    cpus = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    return {
        "cpu": _cpu_model(),
        "cores": f"{cpus} logical CPUs ({usable} usable by this process)",
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "protobuf": _protobuf(),
        "uvloop": _version("uvloop"),
        "anyio": _version("anyio"),
        "aioudf": f"{aioudf.__version__}, git {_git_revision(root)}",
        "executable": sys.executable,
    }


def checkout_env(root: Path) -> dict[str, str]:
    """Environment of child processes: the checkout's ``src`` first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root / "src"), *filter(None, [env.get("PYTHONPATH")])])
    return env


def machine_line(machine: dict[str, str], load_start: str, load_end: str) -> str:
    """The last line of a report: the machine, Python, and the load around the run."""
    return (
        f"{machine['cpu']}, {machine['cores']}; Python {machine['python']}; "
        f"load average {load_start} at start, {load_end} at end."
    )
