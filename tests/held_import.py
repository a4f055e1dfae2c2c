"""Put first in a handler's file: the second process to import it waits in its import.

As a worker loading a large model does, until the gate (a FIFO named ``gate``
beside the file) is opened for writing by whoever holds it back; the others
go on at once. Opening a FIFO blocks until its other end is opened: no
polling. Each importer's pid is appended to ``imports`` beside the file.
Used by the workers tests and benchmarks/workers.py.
"""

import fcntl
import os
import sys
from pathlib import Path

_here = Path(__file__).parent
with open(_here / "imports", "a+") as _log:
    fcntl.flock(_log, fcntl.LOCK_EX)
    _log.seek(0)
    _order = len(_log.read().split())
    _log.write(f"{os.getpid()}\n")
if _order == 1:
    print(f"worker {os.getpid()} holds in its import", file=sys.stderr, flush=True)
    with open(_here / "gate"):
        pass
