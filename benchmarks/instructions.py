"""Instructions per point, counted by callgrind: a measure that does not drift.

Timings on a shared or virtual machine wander by tens of percent from one
second to the next; instruction counts do not. This runs the agent (or the
protobuf-only baseline) over an in-memory stream of N points under
``valgrind --tool=callgrind`` twice, with N = 2,000 and N = 12,000, and
reports the difference divided by 10,000: the instructions one more point
costs, start-up and workload generation cancelled out. No sockets, no pipes:
a stream reader is fed 256 KiB chunks (``--chunk``), one a pass of the event
loop as a socket's transport would, the writer discards what it is given.
Kernel time (system calls, page faults) is not counted; use run.py for that.

    .venv/bin/python benchmarks/instructions.py            # baseline, mirror, moving_avg
    .venv/bin/python benchmarks/instructions.py mirror     # one of them

``--processes`` counts whole UDF processes instead, each run the way Kapacitor
runs it and fed the same frames: a process UDF through a pipe on stdin, the
mirror (a socket server) over one connection to its socket. The rows: this
checkout's example, Kapacitor's Python agent's script of the same name, that
script on ``aioudf compat`` (those found in ``shared/kapacitor/peers``
beside the checkout; not the Go agent, which valgrind cannot run), every
thread counted, their clocks slowed as valgrind slows them (slowed.py). It
gives the peers' user-space cost a point in a figure that does not move with
the machine, where under_kapacitord.py's CPU times swing from run to run.

    .venv/bin/python benchmarks/instructions.py --processes moving_avg

Needs valgrind. Takes about a minute per target. String hashing is fixed
(PYTHONHASHSEED=0) so that two runs of the same code count the same.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "examples")]

from baseline import baseline_point_loop  # noqa: E402
from peers import COMPAT, peers_for  # noqa: E402
from slowed import SLOWDOWN  # noqa: E402
from workload import batch_stream, point_stream  # noqa: E402

from aioudf._pb import udf_pb2 as pb  # noqa: E402
from aioudf.runtime import _agent as agent_module  # noqa: E402
from aioudf.runtime._agent import Agent  # noqa: E402
from aioudf.runtime._streams import PushStreamReader  # noqa: E402
from aioudf.toolkit._handler import Handler  # noqa: E402
from aioudf.wire._kapacitor import KapacitorConnection  # noqa: E402
from aioudf.wire._layout import frame_bounds  # noqa: E402
from aioudf.wire._values import encode_options  # noqa: E402

TARGETS = (
    "baseline",
    "mirror",
    "moving_avg",
    "moving_avg_handrolled",
    "mirror+metrics",
    "moving_avg+metrics",
    "baseline-batch",
    "outliers",
)
#: The examples ``--processes`` counts, each run as Kapacitor runs it: the
#: mirror a socket server, the others process UDFs.
PROCESS_TARGETS = ("mirror", "moving_avg", "outliers")
#: Seconds a socket server under callgrind may take to start listening.
_SERVER_START = 120.0
#: The targets fed batches of 1,000 points (the others: a stream of points).
BATCH_TARGETS = ("baseline-batch", "outliers")
#: What runs when no target is named.
DEFAULT_TARGETS = TARGETS[:4]
#: Points in the two counted runs; the workload is always built for the larger.
SMALL, LARGE = 2_000, 12_000
_CHUNK = 256 * 1024
#: The stream reader's limit, as the server's sockets have it.
_READ_LIMIT = 1 << 20
#: What a read from Kapacitor's socket holds in practice (strace: about 11
#: points of the workload's 163 bytes): ``--chunk`` to count per wake-up costs.
KAPACITOR_CHUNK = 11 * 163
#: What runs a command under callgrind, counting its instructions.
CALLGRIND = ("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null")
#: Runs a whole UDF process with its clocks slowed as much.
SLOWED = Path(__file__).with_name("slowed.py")
_NATIVE_SLICE = agent_module._TIME_SLICE


class _Feed:
    """Plays a socket's transport: hands ``data`` to ``reader``, one chunk a pass of the loop.

    ``reader`` is an ``asyncio.StreamReader`` (read by the agent's reader
    task) or a :class:`~aioudf.runtime.PushStreamReader` (which pushes to
    the agent, as the server's sockets do); either pauses this "transport"
    as it would a socket's.
    """

    def __init__(self, reader: asyncio.StreamReader, data: bytes, chunk: int = _CHUNK) -> None:
        self._reader = reader
        self._data = data
        self._pos = 0
        self._chunk = chunk
        self._paused = False
        self._scheduled = False
        reader.set_transport(self)  # type: ignore[arg-type]
        self._schedule()

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        self._paused = False
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled and self._pos <= len(self._data):
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._deliver)

    def _deliver(self) -> None:
        self._scheduled = False
        if self._paused:
            return
        chunk = self._data[self._pos : self._pos + self._chunk]
        self._pos += len(chunk) or 1
        if chunk:
            self._reader.feed_data(chunk)
            self._schedule()
        else:
            self._reader.feed_eof()


class _NullWriter:
    def write(self, data: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        pass

    async def wait_closed(self) -> None:
        pass


def _init(target: str) -> bytes:
    options = []
    if target.startswith("moving_avg"):
        # `as` given: Kapacitor's agent's moving_avg has no default for it.
        options = encode_options({"field": "usage_idle", "size": 10, "as": "avg"})
    elif target.startswith("outliers"):
        options = encode_options({"field": "usage_idle", "scale": 1.5})
    return KapacitorConnection().send_init(options, task_id="", node_id="")


def _data(target: str, points: int) -> bytes:
    """The data frames of a count: the first ``points`` points of the largest workload."""
    batched = target in BATCH_TARGETS
    # Batches of 1,000 points: the counted runs differ by whole batches.
    workload = batch_stream(LARGE // 1000) if batched else point_stream(LARGE)
    # Where each frame ends, found for all of them whatever ``points`` is:
    # only the work on the points may differ.
    ends = [end for _, end in frame_bounds(workload.data)]
    return workload.data[: ends[points // 1000 * 1002 - 1 if batched else points - 1]]


def run_once(target: str, points: int, loop: str, chunk: int = _CHUNK, pull: bool = False) -> None:
    """The measured work: ``points`` points through ``target`` (in the child)."""
    data = _data(target, points)
    if target.startswith("baseline"):
        baseline_point_loop(data)
        return
    metrics = None
    if target.endswith("+metrics"):  # the same, recording Prometheus metrics
        from aioudf.serving._metrics import Metrics

        target = target.removesuffix("+metrics")
        metrics = Metrics()
    handler_class: type[Handler]
    if target == "mirror":
        from mirror import Mirror as handler_class
    elif target == "outliers":
        from outliers import Outliers as handler_class
    elif target == "moving_avg":
        from moving_avg import MovingAvg as handler_class
    else:  # the hand-rolled one the toolkit's rewrite replaced, as a yardstick
        from moving_avg_handrolled import MovingAvg as handler_class

    # The dispatcher yields the loop every 2 ms of wall time; under callgrind
    # a point takes ~80 times longer, so it would yield ~80 times as often
    # per point as it does for real. Scaled to match, the slice costs here
    # what it costs natively.
    agent_module._TIME_SLICE = _NATIVE_SLICE * SLOWDOWN

    async def serve() -> None:
        reader = (asyncio.StreamReader if pull else PushStreamReader)(limit=_READ_LIMIT)
        _Feed(reader, _init(target) + data, chunk)
        agent = Agent(handler_class(), reader, _NullWriter(), metrics=metrics)
        await agent.run()

    if loop == "uvloop":
        import uvloop

        uvloop.run(serve())
    else:
        asyncio.run(serve())


def count(target: str, points: int, loop: str, chunk: int = _CHUNK, pull: bool = False) -> int:
    """Instructions callgrind counts for one child run."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    command = [
        *CALLGRIND,
        sys.executable,
        __file__,
        "--child",
        target,
        str(points),
        "--loop",
        loop,
        "--chunk",
        str(chunk),
        *(["--pull"] if pull else []),
    ]
    result = subprocess.run(command, capture_output=True, env=env, check=True)
    return collected(result.stderr, result.returncode)


def per_point(target: str, loop: str, chunk: int = _CHUNK, pull: bool = False) -> float:
    large = count(target, LARGE, loop, chunk, pull)
    small = count(target, SMALL, loop, chunk, pull)
    return (large - small) / (LARGE - SMALL)


# ---- whole processes (--processes) ------------------------------------------


def process_commands(target: str, loop: str) -> list[tuple[str, list[str], dict[str, str]]]:
    """Each process UDF of ``target`` found here, run through ``slowed.py``: (column, command, env).

    Not the Go agent: valgrind cannot run Go's runtime (it aborts in it).
    """
    ours = [sys.executable, str(ROOT / "examples" / f"{target}.py"), "--loop", loop]
    ours += ["--log-level", "WARNING"]
    if target == "mirror":
        ours += ["--socket", "{socket}"]
    found = [(f"aioudf {loop}", slowed(ours, True), dict(os.environ))]
    found.extend(
        (peer.name, slowed(peer.command("{socket}"), peer.name == COMPAT), dict(peer.env))
        for peer in peers_for(target)
        if peer.name != "Go agent"
    )
    return found


def slowed(command: list[str], aioudf: bool) -> list[str]:
    """``command`` (``python [-u] SCRIPT|-m MODULE ...``) run through ``slowed.py``."""
    python, *rest = command
    flags = []
    while rest[0].startswith("-") and rest[0] != "-m":
        flags.append(rest.pop(0))
    return [python, *flags, str(SLOWED), *(["--aioudf"] if aioudf else []), *rest]


def count_process(command: list[str], env: dict[str, str], stdin: Path) -> tuple[int, bytes]:
    """Instructions callgrind counts for ``command`` fed ``stdin`` (all threads); its output.

    A command with ``{socket}`` in it is a socket server: see count_server().

    The frames come through a pipe, as Kapacitor's do (a file would be read
    in another way), from ``cat``: the pipe stays full while the UDF,
    slowed by valgrind, reads it.
    """
    if any("{socket}" in arg for arg in command):
        return count_server(command, env, stdin)
    with subprocess.Popen(["cat", str(stdin)], stdout=subprocess.PIPE) as feed:
        result = subprocess.run(
            [*CALLGRIND, *command],
            stdin=feed.stdout,
            capture_output=True,
            env=dict(env, PYTHONHASHSEED="0"),
        )
    if result.returncode:
        raise RuntimeError(f"exit status {result.returncode}: {_tail(result.stderr)}")
    return collected(result.stderr, result.returncode), result.stdout


def count_server(command: list[str], env: dict[str, str], frames: Path) -> tuple[int, bytes]:
    """Instructions callgrind counts for the socket server ``command`` over one connection.

    The server listens on a socket beside ``frames``; one connection sends
    it all the frames (from a thread, while this one reads) and reads a
    Response for each of them (the mirror answers every request once), then
    closes, and the server is stopped with SIGTERM. Start-up and stop
    cancel out between two counts, as a process's do.
    """
    path = frames.with_suffix(".sock")
    path.unlink(missing_ok=True)
    argv = [arg.replace("{socket}", str(path)) for arg in command]
    data = frames.read_bytes()
    expected = sum(1 for _ in frame_bounds(data))
    with subprocess.Popen(
        [*CALLGRIND, *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=dict(env, PYTHONHASHSEED="0"),
    ) as server:
        try:
            output = _converse(server, path, data, expected)
        finally:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
            _, errors = server.communicate(timeout=_SERVER_START)
    return collected(errors, server.returncode), output


def collected(stderr: bytes, status: int) -> int:
    """The instructions callgrind reports in ``stderr`` (its process's exit ``status``)."""
    match = re.search(rb"Collected : (\d+)", stderr)
    if match is None:
        raise RuntimeError(f"no instruction count (exit status {status}): {_tail(stderr)}")
    return int(match.group(1))


def _tail(stderr: bytes) -> str:
    return stderr.decode(errors="replace").strip()[-300:]


def _converse(server: subprocess.Popen[bytes], path: Path, data: bytes, expected: int) -> bytes:
    """Send ``data`` to the server at ``path`` and read back ``expected`` frames."""
    deadline = time.monotonic() + _SERVER_START
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        while True:  # a benchmark's wait for a process it cannot be told by
            if server.poll() is not None:
                raise RuntimeError(f"the server exited with status {server.returncode}")
            try:
                sock.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nothing listened on {path}") from None
                time.sleep(0.05)
        sender = threading.Thread(target=sock.sendall, args=(data,), daemon=True)
        sender.start()
        output = bytearray()
        frames = position = 0
        while frames < expected:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            output += chunk
            with memoryview(output) as view:
                whole = [end for _, end in frame_bounds(view, position)]
            frames += len(whole)
            position = whole[-1] if whole else position
        sender.join()
    if frames < expected:
        raise RuntimeError(f"the server answered {frames} of {expected} requests")
    return bytes(output)


def responses(output: bytes) -> list[pb.Response]:
    """A UDF's output as messages (maps compare by content, whatever their order).

    Not its Info answer: what each implementation declares may differ (the
    agent's mirror takes no options, aioudf's a ``field``).
    """
    found = (pb.Response.FromString(output[start:end]) for start, end in frame_bounds(output))
    return [response for response in found if response.WhichOneof("message") != "info"]


def processes(targets: Sequence[str], loop: str, folder: Path) -> None:
    """Print each process UDF's instructions a point, and the ratio to the Python agent's."""
    for target in targets:
        inputs = {}
        for points in (SMALL, LARGE):
            inputs[points] = folder / f"{target}-{points}.bin"
            frames = KapacitorConnection().send_info() + _init(target) + _data(target, points)
            inputs[points].write_bytes(frames)
        rows: dict[str, float | str] = {}
        answers: dict[str, list[pb.Response]] = {}
        for name, command, env in process_commands(target, loop):
            try:
                small, _ = count_process(command, env, inputs[SMALL])
                large, output = count_process(command, env, inputs[LARGE])
            except RuntimeError as exc:
                rows[name] = f"failed ({exc})"
                continue
            rows[name] = (large - small) / (LARGE - SMALL)
            answers[name] = responses(output)
        agent = rows.get("Python agent")
        if len(rows) == 1:
            print(f"{target:<11} (no peers: shared/kapacitor/peers is not beside the checkout)")
        ours = next(iter(answers.values()), None)
        for name, value in rows.items():
            if isinstance(value, str):
                print(f"{target:<11} {name:<40} {value}")
                continue
            against = ""
            if isinstance(agent, float):
                against = f"  {value / agent:.2f} x the Python agent"
            other = "  (its output differs!)" if answers[name] != ours else ""
            print(f"{target:<11} {name:<40} {value:>9,.0f} instructions/point{against}{other}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("targets", nargs="*", choices=[[], *TARGETS], default=[])
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument(
        "--chunk",
        type=int,
        default=_CHUNK,
        help="bytes a read hands the agent (default 256 KiB; Kapacitor's socket writes: about "
        f"{KAPACITOR_CHUNK:,}, 11 points)",
    )
    parser.add_argument(
        "--pull",
        action="store_true",
        help="a reader the agent reads with a task (a file's), instead of one that pushes "
        "what it receives (a socket's, a pipe's)",
    )
    parser.add_argument(
        "--processes",
        action="store_true",
        help=f"count whole process UDFs, aioudf's and the peers' ({', '.join(PROCESS_TARGETS)})",
    )
    parser.add_argument("--child", nargs=2, metavar=("TARGET", "POINTS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_once(args.child[0], int(args.child[1]), args.loop, args.chunk, args.pull)
        return 0
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed")
    if args.processes:
        wrong = [t for t in args.targets if t not in PROCESS_TARGETS]
        if wrong:
            parser.error(f"--processes counts {' and '.join(PROCESS_TARGETS)}, not {wrong[0]}")
        with tempfile.TemporaryDirectory() as folder:
            processes(args.targets or PROCESS_TARGETS, args.loop, Path(folder))
        return 0
    targets = args.targets or list(DEFAULT_TARGETS)
    # Each target is compared with the baseline on the same kind of data.
    if any(t not in BATCH_TARGETS for t in targets) and "baseline" not in targets:
        targets.insert(0, "baseline")
    if any(t in BATCH_TARGETS for t in targets) and "baseline-batch" not in targets:
        targets.insert(0, "baseline-batch")
    targets.sort(key=lambda t: not t.startswith("baseline"))
    baselines: dict[bool, float] = {}
    for target in targets:
        value = per_point(
            target,
            args.loop,
            args.chunk if not target.startswith("baseline") else _CHUNK,
            args.pull,
        )
        batched = target in BATCH_TARGETS
        if target.startswith("baseline"):
            baselines[batched] = value
            print(f"{target:<14} {value:>9,.0f} instructions/point", flush=True)
        else:
            ratio = baselines[batched] / value
            print(f"{target:<14} {value:>9,.0f} instructions/point  ({ratio:.2f} x baseline)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
