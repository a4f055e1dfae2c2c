"""Runs a Python UDF with its clocks slowed as much as valgrind slows it: for ``instructions.py``.

    python [-u] benchmarks/slowed.py [--aioudf] SCRIPT [ARGS...]
    python [-u] benchmarks/slowed.py [--aioudf] -m MODULE [ARGS...]

Under callgrind a point takes about 80 times longer, so whatever a process
does every so many milliseconds (CPython's hand-over of the GIL between
threads every 5 ms; aioudf's time slice, ``--aioudf``) it would do about 80
times as often per point as it does for real, and its count would move with
the machine's load. Both are slowed to match; nothing else changes. This
file imports nothing of aioudf unless told to: Kapacitor's own agent loads
a ``udf.proto`` of its own, which protobuf refuses to hold twice.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

#: How much slower a Python UDF runs under callgrind (measured: a mirror, ~4
#: µs a point natively, ~310 µs under callgrind).
SLOWDOWN = 80


def main(argv: list[str]) -> None:
    sys.setswitchinterval(sys.getswitchinterval() * SLOWDOWN)
    if argv[0] == "--aioudf":
        argv = argv[1:]
        from aioudf.runtime import _agent

        _agent._TIME_SLICE *= SLOWDOWN
    if argv[0] == "-m":
        sys.argv = argv[1:]
        sys.path[0] = ""  # as `python -m` has it: the working folder
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = argv
        sys.path[0] = str(Path(argv[0]).resolve().parent)  # as `python SCRIPT` has it
        runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
