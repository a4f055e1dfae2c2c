"""What ``aioudf compat`` was asked, and what the script it runs has started.

The command line fills :class:`Settings` once, before the script runs; the
script's ``Agent`` and ``Server`` read it when they start serving (a script
run without the command line gets the defaults, the same as ``aioudf run``
and ``aioudf serve``). :data:`RUNTIME` counts what the script started, so
that the command can tell a script that never became a UDF, and collects the
exit status of the process UDF it served.
"""

from __future__ import annotations

import dataclasses
import gc
import threading

from ..config import Config
from ..runtime._loops import resolve_loop

__all__ = ["RUNTIME", "Runtime", "Settings"]


@dataclasses.dataclass(frozen=True)
class Settings:
    """aioudf's flags for a compat script (the names of ``aioudf run``/``serve``).

    ``config`` holds every setting of the script's agent and server (checked
    when it was built); the others say how the script's ``Server`` serves.
    """

    loop: str = "auto"
    config: Config = dataclasses.field(default_factory=Config)
    workers: int = 1
    takeover: bool = False
    metrics: str | None = None

    def __post_init__(self) -> None:
        resolve_loop(self.loop)  # uvloop asked for and missing: an error before the script runs

    def socket_flags(self) -> list[str]:
        """The flags given that only a socket UDF uses (to refuse them for a process UDF)."""
        given = {
            "--workers": self.workers != 1,
            "--takeover": self.takeover,
            "--metrics": self.metrics is not None,
        }
        return [flag for flag, on in given.items() if on]


class Runtime:
    """The settings in force and what the script started with them (thread-safe)."""

    def __init__(self) -> None:
        self.settings = Settings()
        self._lock = threading.Lock()
        self.agents_created = 0
        self.agents_started = 0
        self.servers_created = 0
        self.servers_served = 0
        #: The worst exit status of what was served (1: a connection failed).
        self.status = 0
        self.stdio_claimed = False
        self._threads: list[threading.Thread] = []
        #: The process is the script's (run_script()): settle() may freeze what it loaded.
        self.owns_process = False
        self._settled = False

    def count(self, what: str) -> None:
        with self._lock:
            setattr(self, what, getattr(self, what) + 1)

    def claim_stdio(self) -> bool:
        """True the first time: only one Agent may serve stdin/stdout."""
        with self._lock:
            claimed, self.stdio_claimed = self.stdio_claimed, True
            return not claimed

    def settle(self) -> None:
        """The script is set up and starts serving: what it built so far is left out of GC passes.

        Once a process, and only in one that runs the script
        (:attr:`owns_process`), not in a program of its own that imports
        the compat API. What aioudf, the script and their imports loaded
        (some 25,000 objects for Kapacitor's outliers example, 15,000 on
        Kapacitor's agent) lives as long as the process: ``gc.freeze()``
        keeps the collector's passes, which a batch script's thousands of
        points held per batch trigger, and the one at exit, from going
        through it each time (measured: 30 ms less CPU from Init to exit).
        """
        with self._lock:
            settled, self._settled = self._settled, True
        if not settled and self.owns_process:
            gc.freeze()

    def served(self, status: int) -> None:
        with self._lock:
            self.status = max(self.status, status)

    def keep(self, thread: threading.Thread) -> None:
        """A thread serving Kapacitor that the command waits for once the script returns."""
        with self._lock:
            self._threads.append(thread)

    def join(self) -> None:
        for thread in list(self._threads):
            thread.join()


#: The one runtime of this process.
RUNTIME = Runtime()
