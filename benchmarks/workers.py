"""``aioudf serve --workers N``: does the throughput of many connections grow with workers?

    .venv/bin/python benchmarks/workers.py            # about a minute
    .venv/bin/python benchmarks/workers.py --quick

``--connections`` tasks (default 8) send the suite's ``cpu`` stream at once
to ``aioudf serve examples/mirror.py:Mirror --workers 1``, then to the same
with ``--workers 2`` (and any other counts given), in turn, run after run. The
aggregate throughput is all points over the wall time from the first byte
sent to the last response read; the report gives each count's median and its
ratio to ``--workers 1`` (paired run by run). Beside it: the CPU the load
generator (this process: one thread per connection, sendall and recv) used,
the CPU of the main server process (with ``--workers 1`` it serves the
connections itself; with more it is the supervisor, which should do nothing
per point), and the workers' CPU.

The second table is the case Kapacitor makes when it starts beside the UDF:
every connection is opened (Init done) while the second worker is still
starting (held in its import until the connections are open), and streamed
once that worker serves and has taken its share of them. Its ratio is to
``--workers 1`` in the same run; without the sharing it would be about 1.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from driver import (  # noqa: E402
    Connection,
    SocketTarget,
    Throughput,
    _proc_cpu_time,
    count_frames,
    init_request,
    query_info,
    start_socket_server,
    start_task,
    throughput,
)
from machine import checkout_env, describe_machine, load_average, log, machine_line  # noqa: E402
from workload import point_stream  # noqa: E402


def children(pid: int) -> list[int]:
    """The process ids of ``pid``'s children (its workers)."""
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as file:
                out.extend(int(p) for p in file.read().split())
    except OSError:
        pass
    return out


def cpu_of(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += _proc_cpu_time(pid)
    return total


def one_run(
    target: SocketTarget,
    init: object,
    data: object,
    connections: int,
    opened: Sequence[Connection] = (),
) -> tuple[float, float, float, float]:
    """(points/s of all connections, CPU s of: the load generator, the server, its workers).

    ``opened``: connections opened (Init done) before; else each is opened at the start.
    """
    results: list[Throughput | BaseException] = []
    start_line = threading.Barrier(connections + 1)

    def connection(conn: Connection | None) -> None:
        try:
            start_line.wait()
            # Counted once every connection is done: not in the timed part.
            results.append(
                throughput(target, init, data, count=False, conn=conn)  # type: ignore[arg-type]
            )
        except BaseException as exc:  # reported below
            results.append(exc)

    workers = children(target.pid)
    conns: list[Connection | None] = [*opened] or [None] * connections
    threads = [threading.Thread(target=connection, args=(conn,)) for conn in conns]
    for thread in threads:
        thread.start()
    supervisor_cpu = _proc_cpu_time(target.pid)
    workers_cpu = cpu_of(workers)
    own = os.times()
    start_line.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    own_end = os.times()
    for result in results:
        if isinstance(result, BaseException):
            raise SystemExit(f"a connection failed: {result!r}")
    points = sum(r.points_in for r in results if isinstance(r, Throughput))
    for result in results:
        assert isinstance(result, Throughput)
        back = count_frames(result.output)["point"]
        if back != result.points_in:
            raise SystemExit(f"a connection got {back:,} of its {result.points_in:,} points back")
    return (
        points / seconds,
        (own_end.user + own_end.system) - (own.user + own.system),
        _proc_cpu_time(target.pid) - supervisor_cpu,
        cpu_of(workers) - workers_cpu,
    )


# The second worker waits in its import until the connections are open.
GATED_MIRROR = (ROOT / "tests" / "held_import.py").read_text() + "from mirror import Mirror\n"


def late_run(
    folder: Path, env: dict[str, str], data: object, connections: int
) -> tuple[float, float, float, float]:
    """One run of ``--workers 2`` whose second worker comes up once the connections are open."""
    folder.mkdir()
    os.mkfifo(folder / "gate")
    (folder / "gated.py").write_text(GATED_MIRROR)
    path, log_file = str(folder / "udf.sock"), folder / "serve.log"
    argv = [
        sys.executable, "-m", "aioudf", "serve", str(folder / "gated.py") + ":Mirror",
        "--socket", path, "--workers", "2",
    ]  # fmt: skip
    with start_socket_server(argv, path, env, log=str(log_file)) as target:
        init = init_request({}, query_info(target))
        opened = [start_task(target, init) for _ in range(connections)]
        with open(folder / "gate", "w"):  # the second worker goes on
            pass
        deadline = time.monotonic() + 60
        while "serves its share" not in log_file.read_text():
            if time.monotonic() > deadline:
                raise SystemExit(f"the second worker took no share:\n{log_file.read_text()}")
            time.sleep(0.05)
        moved = sum(int(n) for n in re.findall(r"gave (\d+) connection", log_file.read_text()))
        if moved != connections // 2:
            raise SystemExit(f"{moved} of {connections} connections moved:\n{log_file.read_text()}")
        return one_run(target, init, data, connections, opened)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer points and runs")
    parser.add_argument("--runs", type=int, help="runs per count (default 7, quick 3)")
    parser.add_argument(
        "--points", type=int, help="points per connection (default 50,000; quick 20,000)"
    )
    parser.add_argument("--connections", type=int, default=8, help="concurrent tasks (8)")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare (1,2)")
    parser.add_argument(
        "--no-late",
        dest="late",
        action="store_false",
        help="skip the case of connections opened before the second worker is up",
    )
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 7)
    points = args.points or (20_000 if args.quick else 50_000)
    counts = [int(n) for n in args.workers.split(",")]
    load_start = load_average()
    machine = describe_machine(ROOT)
    log(f"load average {load_start}; {machine['cpu']}, {machine['cores']}")
    workload = point_stream(points)
    env = checkout_env(ROOT)
    samples: dict[int, list[tuple[float, float, float, float]]] = {n: [] for n in counts}
    late: list[tuple[float, float, float, float]] = []
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "examples"), *filter(None, [env.get("PYTHONPATH")])]
    )
    with tempfile.TemporaryDirectory() as directory:
        servers = {}
        with contextlib.ExitStack() as stack:
            for n in counts:
                path = os.path.join(directory, f"mirror{n}.sock")
                argv = [
                    sys.executable, "-m", "aioudf", "serve",
                    str(ROOT / "examples" / "mirror.py") + ":Mirror",
                    "--socket", path, "--workers", str(n), "--log-level", "WARNING",
                ]  # fmt: skip
                target = stack.enter_context(start_socket_server(argv, path, env))
                servers[n] = (target, init_request({}, query_info(target)))
            for run in range(1, runs + 1):
                for n in counts:
                    target, init = servers[n]
                    sample = one_run(target, init, workload, args.connections)
                    samples[n].append(sample)
                    log(
                        f"run {run}/{runs} --workers {n}: {sample[0]:,.0f} points/s; CPU s: "
                        f"load generator {sample[1]:.2f}, main process {sample[2]:.2f}, "
                        f"workers {sample[3]:.2f}"
                    )
                if args.late:
                    sample = late_run(
                        Path(directory) / f"late{run}", env, workload, args.connections
                    )
                    late.append(sample)
                    log(
                        f"run {run}/{runs} --workers 2, second worker late: "
                        f"{sample[0]:,.0f} points/s; workers' CPU s {sample[3]:.2f}"
                    )
    load_end = load_average()
    first = counts[0]
    print(
        f"## aioudf serve --workers N: {args.connections} connections x {points:,} points, "
        f"mirror, medians of {runs} runs\n"
    )
    print(
        f"| --workers | points/s (all connections) | x --workers {first} | "
        "load generator CPU s | main process CPU s | workers' CPU s |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for n in counts:
        rates = [s[0] for s in samples[n]]
        ratio = statistics.median(
            s[0] / b[0] for s, b in zip(samples[n], samples[first], strict=True)
        )
        print(
            f"| {n} | {statistics.median(rates):,.0f} | {ratio:.2f} | "
            f"{statistics.median(s[1] for s in samples[n]):.2f} | "
            f"{statistics.median(s[2] for s in samples[n]):.2f} | "
            f"{statistics.median(s[3] for s in samples[n]):.2f} |"
        )
    if late:
        print(
            f"\n### Connections opened before the second worker is up "
            f"({args.connections} x {points:,} points, medians of {runs} runs)\n"
        )
        print(f"| case | points/s (all connections) | x --workers {first} | workers' CPU s |")
        print("|---|---:|---:|---:|")
        print(
            f"| --workers {first} | {statistics.median(s[0] for s in samples[first]):,.0f} "
            f"| 1.00 | {statistics.median(s[2] for s in samples[first]):.2f} |"
        )
        ratio = statistics.median(s[0] / b[0] for s, b in zip(late, samples[first], strict=True))
        print(
            f"| --workers 2, the second up late, then sharing | "
            f"{statistics.median(s[0] for s in late):,.0f} | {ratio:.2f} | "
            f"{statistics.median(s[3] for s in late):.2f} |"
        )
    print("\n" + machine_line(machine, load_start, load_end))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
