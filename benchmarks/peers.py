"""Kapacitor's own UDF agents, measured on the same workloads as ours.

The peers are test equipment kept outside the project, in
``shared/kapacitor/peers`` beside the checkout (see that folder's README):
Kapacitor's official Python agent with its ``mirror``, ``moving_avg`` and
``outliers`` examples (also run unchanged by ``aioudf compat``, the same
script on aioudf's agent), and its Go agent's examples built as binaries. Each
is started exactly as Kapacitor starts it (``mirror`` serves a unix socket;
the others are process UDFs on stdin/stdout) and takes the same options as
our example of the same name, so the driver, the workload and the baseline
are the same for both sides of a comparison.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["COMPAT", "Peer", "find_peers", "peers_for"]

#: The column of Kapacitor's Python agent's scripts run by ``aioudf compat``.
COMPAT = "Python agent's script on aioudf compat"


def find_peers(start: Path | None = None) -> Path | None:
    """``shared/kapacitor/peers`` beside an ancestor of this file, or None."""
    here = (start or Path(__file__)).resolve()
    for folder in here.parents:
        candidate = folder / "shared" / "kapacitor" / "peers"
        if candidate.is_dir():
            return candidate
    return None


@dataclass(frozen=True)
class Peer:
    """One peer implementation of an example: how to start it."""

    #: "Python agent", :data:`COMPAT` or "Go agent": the column it is reported under.
    name: str
    #: The command; ``{socket}`` in it is replaced by the socket path.
    argv: tuple[str, ...]
    env: Mapping[str, str]
    #: True: a socket server started once; False: a process per connection.
    serves_socket: bool

    def command(self, socket_path: str = "") -> list[str]:
        return [arg.replace("{socket}", socket_path) for arg in self.argv]


def peers_for(example: str, root: Path | None = None) -> list[Peer]:
    """The peers that implement ``example`` (mirror, moving_avg, outliers)."""
    peers_dir = root or find_peers()
    if peers_dir is None:
        return []
    found = []
    python_dir = peers_dir / "python"
    script = python_dir / "examples" / f"{example}.py"
    if script.is_file():
        env = dict(os.environ)
        # The peer imports ``kapacitor.udf``, which lives beside its examples;
        # its log goes to stderr at DEBUG, which the driver discards.
        env["PYTHONPATH"] = str(python_dir)
        command = [sys.executable, "-u", str(script)]
        if example == "mirror":
            command.append("{socket}")
        found.append(Peer("Python agent", tuple(command), env, example == "mirror"))
        # The same script, unchanged, on aioudf (the real agent still on the path).
        compat = [sys.executable, "-m", "aioudf", "compat", *command[2:]]
        found.append(Peer(COMPAT, tuple(compat), env, example == "mirror"))
    binary = peers_dir / "go" / example
    if binary.is_file() and os.access(binary, os.X_OK):
        command = [str(binary)]
        if example == "mirror":
            command += ["-socket", "{socket}"]
        found.append(Peer("Go agent", tuple(command), dict(os.environ), example == "mirror"))
    return found
